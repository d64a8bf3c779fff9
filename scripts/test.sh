#!/usr/bin/env bash
# Runs every test of the project (the README's second command; .ci/run calls exactly this).
# Installs what the tests need first: the system packages and a regtest bitcoind (project-local, see
# scripts/install-deps.sh). Tests that need bitcoind find it through L402_BITCOIND.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh

echo "== dependency direction: l402-proto stays free of I/O stacks"
scripts/check-deps.sh

echo "== tests"
cargo test --workspace --locked
