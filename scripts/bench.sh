#!/usr/bin/env bash
# Runs the whole benchmark suite of issue 6 on this machine and writes BENCHMARKS.md at the repository root.
#
# Installs what it needs (the project's dependencies and a regtest bitcoind via scripts/install-deps.sh; wrk
# and nginx from Debian if missing), builds the release binaries (`l402` and `l402-bench`), then runs, each on
# a real regtest network where it needs one:
#   - the criterion benches: l402-proto `verify`; l402-regtest `payments`; l402-testkit `lnd_sim_payments`;
#   - `l402-bench proxy` (beside nginx `proxy_pass`, which it starts itself from a generated configuration in a
#     temporary directory and stops: nothing under /etc is used, no daemon is left), `l402-bench addresses`
#     (a million client addresses), `l402-bench challenges`, `l402-bench client`, `l402-bench metered` (time
#     to first byte of a streamed completion through a metered service);
#   - `l402-bench peers`: `l402 proxy` beside the real Aperture, both on the same real LND node (the peers come
#     from scripts/install-peers.sh, which install-deps.sh sources), and real payment latency LND <-> LDK;
# and writes BENCHMARKS.md with `l402-bench report` from what they printed: the machine, then per command the
# figures (medians and ratios of this run) and a reading against the issues' targets. A benchmark, not a test.
#
# Outputs of every step stay in $L402_BENCH_RESULTS (default target/bench-results/<UTC time>).
# L402_BENCH_QUICK=1: short runs to check the pipeline; the report then goes to the results directory, and
# BENCHMARKS.md is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

source scripts/install-deps.sh
# apt_install PACKAGE: from Debian, updating the package lists once if the first try fails.
apt_install() {
  echo "== installing $1 (Debian)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null 2>&1 || {
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
  }
}
command -v wrk >/dev/null 2>&1 || apt_install wrk
# The bench runs its own nginx (L402_NGINX, default Debian's /usr/sbin/nginx) on a free loopback port.
export L402_NGINX=${L402_NGINX:-/usr/sbin/nginx}
if [ ! -x "$L402_NGINX" ]; then
  apt_install nginx
  # Debian's package starts the system nginx (port 80) where no policy-rc.d forbids it: stop that one, the
  # bench does not use it.
  if [ -s /run/nginx.pid ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO /usr/sbin/nginx -s quit 2>/dev/null || true
  fi
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RESULTS=${L402_BENCH_RESULTS:-$TARGET/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$RESULTS/criterion"
OUT=$ROOT/BENCHMARKS.md

if [ "${L402_BENCH_QUICK:-0}" = 1 ]; then
  PROXY_ARGS=(--rounds 1 --duration 3 --warmup 1 --tokens 20000)
  ADDRESS_ARGS=(--addresses 20000 --max-seconds 60)
  CHALLENGE_ARGS=(--count 50)
  CLIENT_ARGS=(--requests 200 --payments 5)
  METERED_ARGS=(--requests 50)
  PEERS_ARGS=(--rounds 1 --duration 3 --warmup 1 --challenges 40 --challenge-rounds 1 --payments 5)
  export L402_BENCH_PAYMENTS=5
  OUT=$RESULTS/BENCHMARKS.md
  CRITERION_ARGS=(--warm-up-time 1 --measurement-time 2)
else
  PROXY_ARGS=()
  ADDRESS_ARGS=()
  CHALLENGE_ARGS=()
  CLIENT_ARGS=()
  METERED_ARGS=()
  PEERS_ARGS=()
  CRITERION_ARGS=()
fi

echo "== building release binaries (l402, l402-bench)"
cargo build --release -p l402-cli -p l402-bench 2>&1 | tail -n 1
L402=$TARGET/release/l402
BENCH=$TARGET/release/l402-bench
show() { local p=$1; printf '%s' "${p#"$ROOT"/}"; }

date -u +"%Y-%m-%d %H:%M:%S" >"$RESULTS/started"
{
  echo "Rust: $(rustc -V)"
  echo "wrk: $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
  echo "nginx: $("$L402_NGINX" -v 2>&1 | sed 's/^nginx version: //') (Debian's package)"
  echo "bitcoind: $("$L402_BITCOIND" -version 2>&1 | head -n 1)"
  echo "LND: $("$L402_LND" --version 2>&1 | head -n 1)"
  echo "Aperture: $(go version -m "$L402_APERTURE" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/lightninglabs/aperture" { print $3 }')"
  commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
  case $commit in
    *-dirty) echo "Commit: $commit (built from a working tree with uncommitted changes)" ;;
    *) echo "Commit: $commit" ;;
  esac
} >"$RESULTS/versions"

# Waits (up to $L402_BENCH_QUIET_WAIT seconds, default 600) for the 1-minute load average to fall below the
# number of cores, so that a step does not start while other work (or the previous step) still loads the machine.
quiet() {
  local waited=0 cores
  cores=$(nproc)
  while [ "$waited" -lt "${L402_BENCH_QUIET_WAIT:-600}" ]; do
    awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v n="$cores" 'BEGIN { exit !(l < n) }' && return 0
    sleep 5
    waited=$((waited + 5))
  done
}

STEP=0
# run NAME DISPLAYED-COMMAND -- COMMAND...: runs it, keeping its command line, output and the load before it.
run() {
  local name=$1 shown=${2%% }
  shift 3
  STEP=$((STEP + 1))
  local base
  base=$RESULTS/$(printf '%02d' "$STEP")-$name
  echo "$shown" >"$base.cmd"
  quiet
  cat /proc/loadavg >"$base.load"
  echo "== $shown"
  set +e
  "$@" 2>&1 | tee "$base.out"
  local rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" != 0 ]; then
    echo "bench: '$shown' failed (exit $rc); outputs in $RESULTS" >&2
    exit "$rc"
  fi
}

MARK=$RESULTS/criterion/.start
touch "$MARK"
run proto-verify "cargo bench -p l402-proto --bench verify" -- \
  cargo bench -p l402-proto --bench verify -- "${CRITERION_ARGS[@]}"
for d in "$TARGET"/criterion/*/new; do
  if [ "$d/estimates.json" -nt "$MARK" ]; then
    cp "$d/estimates.json" "$RESULTS/criterion/$(basename "$(dirname "$d")").json"
  fi
done

run regtest-payments "cargo bench -p l402-regtest --bench payments" -- \
  cargo bench -p l402-regtest --bench payments
run lnd-sim-payments "cargo bench -p l402-testkit --bench lnd_sim_payments" -- \
  cargo bench -p l402-testkit --bench lnd_sim_payments

run proxy "$(show "$BENCH") proxy --l402-bin $(show "$L402") ${PROXY_ARGS[*]}" -- \
  "$BENCH" proxy --l402-bin "$L402" "${PROXY_ARGS[@]}"
run addresses "$(show "$BENCH") addresses --l402-bin $(show "$L402") ${ADDRESS_ARGS[*]}" -- \
  "$BENCH" addresses --l402-bin "$L402" "${ADDRESS_ARGS[@]}"
run challenges "$(show "$BENCH") challenges ${CHALLENGE_ARGS[*]}" -- \
  "$BENCH" challenges "${CHALLENGE_ARGS[@]}"
run client "$(show "$BENCH") client --l402-bin $(show "$L402") ${CLIENT_ARGS[*]}" -- \
  "$BENCH" client --l402-bin "$L402" "${CLIENT_ARGS[@]}"
run metered "$(show "$BENCH") metered --l402-bin $(show "$L402") ${METERED_ARGS[*]}" -- \
  "$BENCH" metered --l402-bin "$L402" "${METERED_ARGS[@]}"
run peers "$(show "$BENCH") peers --l402-bin $(show "$L402") ${PEERS_ARGS[*]}" -- \
  "$BENCH" peers --l402-bin "$L402" "${PEERS_ARGS[@]}"

date -u +"%Y-%m-%d %H:%M:%S" >"$RESULTS/finished"
"$BENCH" report --dir "$RESULTS" --out "$OUT"
echo "== done: $OUT (outputs of every step in $RESULTS)"
