#!/usr/bin/env bash
# Space and memory after a fill from outside: COUNT pre-signed callbacks of the realistic
# mix (3-4 statuses a message, ~15% undelivered/failed, ~20% out of order, duplicates),
# each sent once over HTTP at CONNS connections; then the store's size per message and the
# service's RSS, while it runs and again after a restart; then what of it is keys and values
# (examples/census.rs) and what is sled's own.
#
#   bench/space.sh            # COUNT=1200000 CONNS=64 by default
#   BIN=path/to/other/statushook bench/space.sh
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-1200000}
CONNS=${CONNS:-64}
BIN=${BIN:-target/release/statushook}
OUT=bench/out
DB=$OUT/space-db
mkdir -p "$OUT"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin statushook --example presign --example census
export CALLBACKS="$OUT/space.tsv" WRK_THREADS=2
target/release/examples/presign "$COUNT" https://hooks.example.com bench-auth-token "$CALLBACKS"

serve() {
  STATUSHOOK_LISTEN=127.0.0.1:9094 STATUSHOOK_DATA_DIR="$DB" \
  STATUSHOOK_PUBLIC_URL=https://hooks.example.com STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 \
  TWILIO_AUTH_TOKEN=bench-auth-token RUST_LOG=warn "$BIN" serve & PID=$!
  until curl -sf http://127.0.0.1:9094/healthz >/dev/null; do sleep 0.05; done
}
messages() { # the sum of the all-time counters by status
  curl -sf -H 'Authorization: Bearer bench-api-token-0123456789abcdef0123' http://127.0.0.1:9094/v1/stats |
    python3 -c 'import json,sys; print(sum(json.load(sys.stdin)["by_status"].values()))'
}
report() { # label
  local bytes count
  bytes=$(du -sb "$DB" | cut -f1)
  count=$(messages)
  echo "$1: $count messages, $((bytes / 1024 / 1024)) MiB, $((bytes / count)) bytes a message," \
    "RSS $(( $(awk '/VmRSS/ {print $2}' /proc/$PID/status) / 1024 )) MiB"
}

rm -rf "$DB"
serve
trap 'kill $PID 2>/dev/null || true' EXIT
# Each wrk thread sends its share of the file in order; runs of 10 s go on where the last
# stopped (WRK_OFFSET, per thread) until nearly all are sent, so that none is sent twice.
sent=0
while (( sent < COUNT * 95 / 100 )); do
  line=$(WRK_OFFSET=$((sent / 2)) wrk -t2 -c"$CONNS" -d10s -s bench/callbacks.lua \
    http://127.0.0.1:9094 | grep '^RESULT')
  sent=$(( sent + $(echo "$line" | sed -E 's/.*requests=([0-9]+).*/\1/') ))
  echo "fill ${line#RESULT }"
done
report "after the fill"
kill "$PID"; wait "$PID" 2>/dev/null || true
serve
report "after a restart"
kill "$PID"; wait "$PID" 2>/dev/null || true
target/release/examples/census "$DB"
