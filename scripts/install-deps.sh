#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine, idempotently:
# - Debian packages: protobuf-compiler (protoc, for LND's gRPC definitions), pkg-config, PostgreSQL (its
#   server binaries, for the store tests; no cluster is started here); chromium and chromedriver (the
#   dashboard's headless-browser test); prometheus and promtool (the metrics scrape and alert-rule checks);
# - a regtest bitcoind, project-local under .tools/ (scripts/install-bitcoind.sh);
# - the real peers, LND + lncli and Aperture, built from the Go module proxy once per machine
#   (scripts/install-peers.sh).
# Sourced by scripts/test.sh and scripts/demo.sh; exports L402_BITCOIND, L402_LND, L402_LNCLI, L402_APERTURE.
set -euo pipefail
_l402_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_l402_need=()
command -v protoc >/dev/null 2>&1 || _l402_need+=(protobuf-compiler)
command -v pkg-config >/dev/null 2>&1 || _l402_need+=(pkg-config)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || _l402_need+=(postgresql)
command -v chromium >/dev/null 2>&1 || _l402_need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || _l402_need+=(chromium-driver)
command -v promtool >/dev/null 2>&1 || _l402_need+=(prometheus)
if [ "${#_l402_need[@]}" -gt 0 ]; then
  echo "== installing Debian packages: ${_l402_need[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${_l402_need[@]}" >/dev/null
fi

echo "== regtest bitcoind"
bash "$_l402_root/scripts/install-bitcoind.sh" | tail -n 2
export L402_BITCOIND="${L402_BITCOIND_DIR:-$_l402_root/.tools/bitcoind}/bin/bitcoind"
[ -x "$L402_BITCOIND" ] || { echo "bitcoind wrapper missing at $L402_BITCOIND" >&2; exit 1; }

echo "== peers: LND and Aperture (built once per machine; the first build takes several minutes)"
source "$_l402_root/scripts/install-peers.sh"
