#!/usr/bin/env bash
# Runs every test of the project (the README's second command; .ci/run calls exactly this).
# Installs what the tests need first: the system packages and a regtest bitcoind (project-local, see
# scripts/install-deps.sh). Tests that need bitcoind find it through L402_BITCOIND. Then the Python package:
# built into a wheel with maturin and installed into .venv/ (scripts/install-python.sh), and its pytest suite
# run against the `l402` binary `cargo test` built (on a real regtest network, LND and `l402 proxy`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh

echo "== dependency direction: l402-proto stays free of I/O stacks"
scripts/check-deps.sh

echo "== tests"
cargo test --workspace --locked

echo "== python: the l402 package (crates/l402-py + python/), built with maturin into .venv/"
bash scripts/install-python.sh
echo "== python tests (pytest, real regtest LND and l402 proxy)"
.venv/bin/pytest -q python/tests
