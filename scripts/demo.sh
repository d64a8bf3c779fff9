#!/usr/bin/env bash
# The README's first command: sets up a fresh machine and runs the main job.
# For now the main job shows the protocol core at work: mint a token from a root key, decode it, and verify
# it; the full paid flow over a regtest Lightning network joins it as the server and client land.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
echo "== building l402"
cargo build --locked -p l402-cli 2>&1 | tail -n 1
l402=target/debug/l402

root=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
preimage=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
now=$(date +%s)

echo
echo "== 1. an operator mints a token for service 'weather', valid one hour, capability 'read'"
mac=$(L402_ROOT_KEY=$root $l402 token mint --preimage "$preimage" --service weather \
  --capabilities weather=read --valid-until weather=$((now + 3600)))
echo "macaroon: ${mac:0:40}... (${#mac} chars)"

echo
echo "== 2. what is inside it (l402 decode)"
$l402 decode "$mac"

cred="L402 $mac:$preimage"
echo
echo "== 3. the client, having paid, presents 'Authorization: L402 <macaroon>:<preimage>'; the server verifies"
printf '%s' "$cred" | L402_ROOT_KEY=$root $l402 token verify --service weather --capability read

echo
echo "== 4. refusals, each with its own reason"
set +e
printf '%s' "$cred" | L402_ROOT_KEY=$root $l402 token verify --service weather --now $((now + 7200))
printf '%s' "$cred" | L402_ROOT_KEY=$root $l402 token verify --service weather --capability write
printf '%s' "$cred" | L402_ROOT_KEY=$root $l402 token verify --service maps
printf '%s' "L402 $mac:$(printf '%064d' 0)" | L402_ROOT_KEY=$root $l402 token verify --service weather
set -e
echo
echo "done."
