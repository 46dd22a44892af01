#!/usr/bin/env bash
# The data lifecycle at scale: online export and import speed, retention throughput with
# the callback latency while it deletes, and the store's size before, after and on reuse.
#
#   bench/lifecycle.sh           # COUNT=1000000 RATE=500 by default
#
#   1. fill COUNT messages (examples/fill), size on disk
#   2. serve it; `statushook export --url` (GET /v1/export): messages/s
#   3. `statushook import` of that export into an empty store: messages/s
#   4. baseline: wrk paced at ~RATE callbacks/s for 20 s, p50/p99
#   5. serve with STATUSHOOK_RETENTION=30s: every filled message is older, so retention
#      deletes them all while wrk keeps sending ~RATE callbacks/s; deletions/s, p50/p99
#   6. size after the deletion, and after filling COUNT new messages into the same store
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-1000000}
RATE=${RATE:-500}
OUT=bench/out
mkdir -p "$OUT"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin statushook --example fill --example presign
BIN=target/release/statushook
WORK=$(mktemp -d -p "$OUT" lifecycle.XXXX)
trap 'rm -rf "$WORK"' EXIT
export CALLBACKS="$WORK/callbacks.tsv" WRK_THREADS=2
target/release/examples/presign 200000 https://hooks.example.com bench-auth-token "$CALLBACKS"

size() { du -sb "$1" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }
wait_for_port() {
  for _ in $(seq 1 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}
serve() { # data_dir [env...]
  local data=$1; shift
  env "$@" STATUSHOOK_LISTEN=127.0.0.1:9093 STATUSHOOK_DATA_DIR="$data" \
    STATUSHOOK_PUBLIC_URL=https://hooks.example.com STATUSHOOK_API_TOKEN=bench \
    TWILIO_AUTH_TOKEN=bench-auth-token RUST_LOG=warn "$BIN" serve & PID=$!
  wait_for_port 9093
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
SENT=0
paced() { # seconds: ~RATE callbacks/s over 10 connections, each window new callbacks
  local conns=10 delay=$(( 1000 * 10 / RATE ))
  WRK_OFFSET=$SENT WRK_DELAY_MS=$delay wrk -t2 -c$conns -d"$1"s -s bench/callbacks.lua \
    http://127.0.0.1:9093 | grep '^RESULT'
  SENT=$(( SENT + RATE * $1 / 2 ))
}
deleted() {
  curl -s http://127.0.0.1:9093/metrics | awk -F'} ' '/^statushook_deleted_messages_total\{reason="retention"\}/ { print $2 }'
}

echo "== lifecycle: $COUNT messages, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
DB="$WORK/db"
nice -n 10 target/release/examples/fill "$DB" "$COUNT"
BEFORE=$(size "$DB")
echo "size after fill: $(mib "$BEFORE")"

serve "$DB"
if [ -z "${SKIP_MOVE:-}" ]; then
start=$(date +%s.%N)
STATUSHOOK_API_TOKEN=bench "$BIN" export --url http://127.0.0.1:9093 --output "$WORK/export.jsonl"
took=$(echo "$(date +%s.%N) - $start" | bc)
echo "online export: $COUNT messages in ${took}s: $(echo "$COUNT / $took" | bc) messages/s, $(mib "$(size "$WORK/export.jsonl")")"
echo "baseline callbacks (no retention): $(paced 20)"
stop

start=$(date +%s.%N)
"$BIN" import "$WORK/export.jsonl" --data-dir "$WORK/imported"
took=$(echo "$(date +%s.%N) - $start" | bc)
echo "import: $COUNT messages in ${took}s: $(echo "$COUNT / $took" | bc) messages/s; imported store $(mib "$(size "$WORK/imported")")"
rm -rf "$WORK/imported" "$WORK/export.jsonl"
else
echo "baseline callbacks (no retention): $(paced 20)"
stop
fi

echo "load before retention: $(cut -d' ' -f1-3 /proc/loadavg)"
serve "$DB" STATUSHOOK_RETENTION=30s STATUSHOOK_RETENTION_INTERVAL=1s
( while :; do echo "$(date +%s.%N) $(deleted)"; sleep 0.2; done ) > "$WORK/deleted.log" & POLL=$!
# wrk in windows of 10 s while retention deletes, so the latency is that of the deletion.
while :; do
  window=$(paced 10)
  n=$(deleted); n=${n:-0}
  echo "  callbacks while deleting ($n deleted so far): $window"
  if [ "$n" -ge "$COUNT" ]; then break; fi
done
kill "$POLL"
awk -v count="$COUNT" '$2 > 0 && !t0 { t0 = $1 } $2 >= count && !t1 { t1 = $1; n = $2 }
  END { printf "retention: %d messages deleted in %.1fs: %.0f messages/s\n", n, t1 - t0, n / (t1 - t0) }' \
  "$WORK/deleted.log"
echo "size right after the deletion: $(mib "$(size "$DB")")"
stop
AFTER=$(size "$DB")
echo "size after the deletion and a restart: $(mib "$AFTER")"
cp -a "$DB" "$WORK/copy"
"$BIN" compact --data-dir "$WORK/copy"
echo "size of a compacted copy: $(mib "$(size "$WORK/copy")")"
rm -rf "$WORK/copy"
nice -n 10 target/release/examples/fill "$DB" "$COUNT"
echo "size after filling $COUNT new messages into it: $(mib "$(size "$DB")") (first fill: $(mib "$BEFORE"))"
