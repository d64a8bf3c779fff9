#!/usr/bin/env bash
# The protocol core must stay pure: no async runtime, HTTP or gRPC stack in its normal dependency tree.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(cargo tree -p l402-proto -e normal --prefix none --locked)
bad=$(printf '%s\n' "$tree" | grep -E '^(tokio|hyper|tonic|reqwest|axum|tower)(-[a-z-]+)? ' | sort -u || true)
if [ -n "$bad" ]; then
  echo "l402-proto must not depend on these (cargo tree -p l402-proto -e normal):" >&2
  echo "$bad" >&2
  exit 1
fi
echo "ok: $(printf '%s\n' "$tree" | sort -u | wc -l) crates in l402-proto's tree, none of tokio/hyper/tonic/reqwest/axum/tower"
