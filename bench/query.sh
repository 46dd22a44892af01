#!/usr/bin/env bash
# The query API on a large store: fills COUNT messages (about 3.2 events each, a realistic
# outcome mix) and prints, in one run: fill time, size on disk per message, start-up time,
# the server's RSS, and latencies of lookups, a filtered page and the 100th page.
#
#   bench/query.sh            # COUNT=1000000 SIDS=random by default (SIDS=sequential: SIDs
#                             # that count up, as every fill before 2026-12-08)
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-1000000}
SIDS=${SIDS:-random}
DB=bench/out/query-db
mkdir -p bench/out
cargo build --release --quiet --bin statushook --example fill --example query_bench

echo "== query: $COUNT messages, $SIDS SIDs, $(nproc) cores"
rm -rf "$DB"
target/release/examples/fill "$DB" "$COUNT" "$SIDS"
bytes=$(du -sb "$DB" | cut -f1)
echo "disk: $((bytes / 1024 / 1024)) MiB, $((bytes / COUNT)) bytes a message"

start=$(date +%s.%N)
STATUSHOOK_LISTEN=127.0.0.1:9093 STATUSHOOK_DATA_DIR="$DB" \
STATUSHOOK_PUBLIC_URL=https://hooks.example.com STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 \
TWILIO_AUTH_TOKEN=bench-auth-token RUST_LOG=warn \
  target/release/statushook serve & PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
until curl -sf http://127.0.0.1:9093/healthz >/dev/null; do sleep 0.01; done
echo "start-up (open the store, answer /healthz): $(echo "$(date +%s.%N) - $start" | bc) s"
echo "server RSS right after opening: $(( $(awk '/VmRSS/ {print $2}' /proc/$PID/status) / 1024 )) MiB"

target/release/examples/query_bench http://127.0.0.1:9093 bench-api-token-0123456789abcdef0123 "$COUNT" "$SIDS"
echo "server RSS after the queries: $(( $(awk '/VmRSS/ {print $2}' /proc/$PID/status) / 1024 )) MiB"
