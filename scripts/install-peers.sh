#!/usr/bin/env bash
# Builds the real peers the tests, the demo and the benchmarks run beside our code, from source through the Go
# module proxy, pinned by the committed peers/<tool>/go.mod and go.sum:
#   lnd + lncli  v0.21.2-beta  tags: signrpc walletrpc chainrpc invoicesrpc peersrpc
#   aperture     v0.5.0
# (lnget is not served by the module proxy this machine reaches: see peers/README.md.)
#
# Binaries are cached once per machine, keyed by the pin files, the tags and the Go version, under
# ${L402_PEERS_CACHE:-$HOME/.cache/l402/peers}; .tools/peers/bin links to them. A second run takes a second.
# A cold build of all of them took 644 s on 2 cores (lnd 373 s, aperture 271 s, downloads included), 1.1 GB of
# module cache, 3.2 GB of Go build cache and 253 MB of binaries (peers/README.md).
# Prints each version. Exports L402_LND, L402_LNCLI and L402_APERTURE when sourced.
set -euo pipefail
_peers_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_peers_cache="${L402_PEERS_CACHE:-${HOME:-/root}/.cache/l402/peers}"
mkdir -p "$_peers_cache" "$_peers_root/.tools/peers/bin"

command -v go >/dev/null 2>&1 || { echo "install-peers: go is not installed (the peers are built from source)" >&2; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

# _peers_build NAME TAGS PACKAGE...: builds PACKAGEs of the wrapper module peers/NAME into the cache.
_peers_build() {
  local name="$1" tags="$2"; shift 2
  local mod="$_peers_root/peers/$name"
  local key
  key=$(cat "$mod/go.mod" "$mod/go.sum" <(echo "tags=$tags") <(go version) | sha256sum | cut -c1-16)
  local dest="$_peers_cache/$name-$key"
  if [ ! -f "$dest/.done" ]; then
    (
      flock 9
      if [ ! -f "$dest/.done" ]; then
        echo "== building $name from the Go module proxy (first time on this machine)" >&2
        local t0 tmp
        t0=$(date +%s)
        tmp="$dest.tmp.$$"
        rm -rf "$tmp" && mkdir -p "$tmp/bin"
        (cd "$mod" && go build -trimpath ${tags:+-tags="$tags"} -o "$tmp/bin/" "$@")
        echo "$(( $(date +%s) - t0 ))" > "$tmp/build-seconds"
        rm -rf "$dest" && mv "$tmp" "$dest" && touch "$dest/.done"
        echo "== built $name in $(cat "$dest/build-seconds") s" >&2
      fi
    ) 9>"$_peers_cache/$name.lock"
  fi
  local bin
  for bin in "$dest"/bin/*; do
    ln -sfn "$bin" "$_peers_root/.tools/peers/bin/$(basename "$bin")"
  done
}

_peers_build lnd "signrpc walletrpc chainrpc invoicesrpc peersrpc" \
  github.com/lightningnetwork/lnd/cmd/lnd github.com/lightningnetwork/lnd/cmd/lncli
_peers_build aperture "" github.com/lightninglabs/aperture/cmd/aperture

export L402_LND="$_peers_root/.tools/peers/bin/lnd"
export L402_LNCLI="$_peers_root/.tools/peers/bin/lncli"
export L402_APERTURE="$_peers_root/.tools/peers/bin/aperture"
echo "peers: $("$L402_LND" --version | head -n1)"
echo "peers: $("$L402_LNCLI" --version | head -n1)"
echo "peers: aperture $(cd "$_peers_root/peers/aperture" && go list -m -f '{{.Version}}' github.com/lightninglabs/aperture)"
