#!/usr/bin/env bash
# The dashboard's overview on a large store: fills COUNT messages with examples/fill.rs
# (as bench/query.sh does; reuses its store if it already holds COUNT messages), starts
# the release binary, and measures the overview's cold load in headless Chromium
# (tests/ui/measure.mjs): bytes transferred and the time until it is drawn with its data.
#
#   bench/ui.sh            # COUNT=1000000 by default
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-1000000}
DB=bench/out/query-db
mkdir -p bench/out
cargo build --release --quiet --bin statushook --example fill
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/ui --no-audit --no-fund --loglevel=error

if [[ "$(cat "$DB.count" 2>/dev/null)" != "$COUNT" ]]; then
  rm -rf "$DB"
  target/release/examples/fill "$DB" "$COUNT"
  echo "$COUNT" > "$DB.count"
fi
echo "== dashboard overview: $COUNT messages, $(nproc) cores"

STATUSHOOK_LISTEN=127.0.0.1:9094 STATUSHOOK_DATA_DIR="$DB" \
STATUSHOOK_PUBLIC_URL=https://hooks.example.com STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 \
TWILIO_AUTH_TOKEN=bench-auth-token RUST_LOG=warn \
  target/release/statushook serve & PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
until curl -sf http://127.0.0.1:9094/healthz >/dev/null; do sleep 0.01; done
curl -sf -H "Authorization: Bearer bench-api-token-0123456789abcdef0123" http://127.0.0.1:9094/v1/stats | head -c 300; echo

STATUSHOOK_URL=http://127.0.0.1:9094 STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 node tests/ui/measure.mjs
