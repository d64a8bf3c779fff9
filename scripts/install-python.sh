#!/usr/bin/env bash
# Builds the Python package `l402` (crates/l402-py, PyO3, + python/l402) into a wheel with maturin and installs
# it into the project-local virtual environment .venv/ (or $L402_VENV), with the pinned tools the tests use:
# maturin, pytest, httpx and requests. Idempotent: a second run reuses the venv and rebuilds only what changed.
#
# The build uses cargo's target directory ($CARGO_TARGET_DIR, else target/) and the dev profile by default, the
# ones `cargo test` uses, so the client's dependencies are compiled once for both; L402_PY_PROFILE=release
# builds an optimized wheel (for benchmarks). Prints the wheel it installed.
set -euo pipefail
_py_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_py_venv="${L402_VENV:-$_py_root/.venv}"
_py_profile="${L402_PY_PROFILE:-dev}"

command -v python3 >/dev/null 2>&1 || { echo "install-python: python3 is not installed" >&2; exit 1; }
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "== python: installing python3-venv (Debian's python3 splits venv out)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
if [ ! -x "$_py_venv/bin/python" ]; then
  echo "== python: creating $_py_venv"
  python3 -m venv "$_py_venv"
fi
"$_py_venv/bin/python" -m pip install -q --disable-pip-version-check \
  maturin==1.16.0 pytest==9.2.0 httpx==0.28.1 requests==2.34.2

echo "== python: building the l402 wheel (maturin, profile $_py_profile)"
_py_out="$(mktemp -d)"
trap 'rm -rf "$_py_out"' EXIT
(cd "$_py_root/python" && "$_py_venv/bin/maturin" build --quiet --profile "$_py_profile" \
  --interpreter "$_py_venv/bin/python" --out "$_py_out") 2>&1 | grep -v '^\s*Compiling ' | tail -n 3
"$_py_venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$_py_out"/l402-*.whl
echo "== python: installed $(basename "$_py_out"/l402-*.whl) into $_py_venv"
