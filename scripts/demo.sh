#!/usr/bin/env bash
# The README's first command: sets up a fresh machine and runs the main job, `l402 demo`: a local regtest
# Lightning network, `l402 proxy` in front of a small API, and the paying client, step by step.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
echo "== building l402 (the first build takes a few minutes)"
cargo build --locked -p l402-cli 2>&1 | tail -n 1
# The Python package (`import l402`), into .venv/: the same client for Python programs.
bash scripts/install-python.sh
exec target/debug/l402 demo "$@"
