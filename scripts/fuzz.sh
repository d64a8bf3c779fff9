#!/usr/bin/env bash
# Runs each fuzz target (l402-proto's parsers, l402-proxy's request path and HTTP/1.1 body framing) for a
# bounded time and prints, per target, the executions run, executions per second and the crashes found.
# Exits non-zero if any target crashed, timed out, ran out of memory or failed to build.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] (default 60; CI runs a few seconds each).
#
# cargo-fuzz needs nightly compiler flags; this machine has one stable toolchain, so RUSTC_BOOTSTRAP=1 lets
# stable accept them. Corpora live in fuzz/corpus/<target> (seeded here from the protocol's test vectors and
# the proxy's attack probes) and crashes in fuzz/artifacts/<target>; both are ignored by git.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

seed() {
  local dir="fuzz/corpus/$1"; shift
  mkdir -p "$dir"
  local i=0
  for s in "$@"; do printf '%s' "$s" > "$dir/seed-$i"; i=$((i + 1)); done
}
mac='AgEEbHNhdAJCAABjDc0pZsQzZpESVEi7sltP9BKknHMtssirwbhYG9cQ3aurq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urAAIOc2VydmljZXM9c3ZjOjAAAhFzdmNfY2FwYWJpbGl0aWVzPQACGnN2Y192YWxpZF91bnRpbD0xNzAwMDAwMDAwAAAGIG0V+aBA2vQcLxi+SKWqFqjWoKOMl3Al3o1qy4E5KVLj'
pre='000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'
seed challenge "LSAT macaroon=\"$mac\", invoice=\"lnbcrt1x\"" "L402 version=\"0\", token=\"$mac\", invoice=\"lnbc1\", Basic realm=\"a\\\"b\""
seed credential "L402 $mac:$pre" "LSAT $mac:$pre
L402 $mac:$pre"
seed payment "Payment id=\"x7Tg2pLqR9mKvNwY3hBcZa\", realm=\"api.example.com\", method=\"lightning\", intent=\"charge\", request=\"eyJhbW91bnQiOiIxMDAifQ\", expires=\"2026-03-15T12:05:00Z\"
LSAT macaroon=\"$mac\", invoice=\"lnbcrt1x\", payment id=a, realm=r, method=lightning, intent=session, request=cQ" \
  "Payment eyJjaGFsbGVuZ2UiOnsiaWQiOiJrTTl4UHFXdlQybkpySHNZNGFEZkViIiwicmVhbG0iOiJhcGkuZXhhbXBsZS5jb20iLCJtZXRob2QiOiJsaWdodG5pbmciLCJpbnRlbnQiOiJjaGFyZ2UiLCJyZXF1ZXN0IjoiZXlKaGJXOTFiblFpT2lJeE1EQWlmUSIsImV4cGlyZXMiOiIyMDI2LTAzLTE1VDEyOjA1OjAwWiJ9LCJwYXlsb2FkIjp7InByZWltYWdlIjoiYTNmMWUyZDRiNWM2YTdlOCJ9fQ"
mkdir -p fuzz/corpus/macaroon
printf '%s' "$mac" | base64 -d > fuzz/corpus/macaroon/seed-0
# Request heads: the attacks pinned by crates/l402-proxy/tests/hardening.rs.
crlf() { printf '%s\n' "$1" | sed 's/$/\r/'; printf '\r\n'; }
req_seed() {
  local dir="fuzz/corpus/proxy_request"; mkdir -p "$dir"
  local i=0
  for s in "$@"; do crlf "$s" > "$dir/seed-$i"; i=$((i + 1)); done
}
req_seed "GET /weather/docs/../forecast HTTP/1.1
Host: api.example.com
X-L402-Token-Id: deadbeef
X-L402-Service: weather" \
  "POST /weather//%61dmin/./x?q=a/../b HTTP/1.1
Host: API.example.com:8443
Authorization: Basic dXNlcjpwYXNz, L402 $mac:$pre
Content-Length: 0" \
  "GET /weather/docs%2F..%2Fforecast HTTP/1.1
Authorization: L402	$mac:$pre
Authorization: lsat $mac:$pre
X-Forwarded-For: 203.0.113.9, 10.0.0.1, [2001:db8::1]:443" \
  "DELETE /files/upload/%c3%a9%2e%5c HTTP/1.1
Macaroon: 00
Grpc-Metadata-Macaroon: 00
Connection: x-l402-token-id, keep-alive" \
  "GET http://api.example.com/a/b/../../.. HTTP/1.1
Host: [::1]:80"
# Chunked bodies (the first byte is the split the decoder is fed at).
mkdir -p fuzz/corpus/http1
printf '\003%s' $'5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1' > fuzz/corpus/http1/seed-0
printf '\001%s' $'2\r\nabc\r\n0\r\n\r\n' > fuzz/corpus/http1/seed-1

status=0
for target in challenge credential macaroon payment proxy_request http1; do
  log="fuzz/artifacts/$target.log"
  mkdir -p fuzz/artifacts
  set +e
  dict=()
  [ -f "fuzz/$target.dict" ] && dict=(-dict="fuzz/$target.dict")
  cargo fuzz run --fuzz-dir fuzz -s none "$target" -- -max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
    "${dict[@]}" > "$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || true)
  [ -n "$execs" ] || execs=$(grep -Eo '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
  crashes=$(find "fuzz/artifacts/$target" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) 2>/dev/null | wc -l)
  rate=$([ -n "$execs" ] && echo $(( execs / secs )) || echo '?')
  echo "$target: ${execs:-?} executions in ${secs}s ($rate/s), $crashes crash(es), exit $rc (log: $log)"
  [ "$rc" = 0 ] && [ "$crashes" = 0 ] || status=1
done
exit $status
