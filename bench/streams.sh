#!/usr/bin/env bash
# Twilio Event Streams: events stored per second from requests of 1, 10 and 50 events,
# next to the form-callback rate and the ceiling of the HTTP stack, measured in one run on
# this machine, each run on a fresh store.
#
#   bench/streams.sh      # DURATION=10s CONNS=64 COUNT=400000 BATCHES="1 10 50" by default
#   BIN=path/to/other/statushook bench/streams.sh    # the same runs with another build
#
# Runs of wrk with pre-signed requests (examples/presign.rs: the callbacks' realistic mix,
# and the same mix as CloudEvents, BATCH a request):
#   1. ceiling       examples/ceiling answering 200: callbacks, and the largest batches
#   2. callbacks     statushook: verify, store, fsync, answer, one callback a request
#   3. streams       statushook: verify the body's hash and signature, decode, store every
#                    event of the request as one write (one group), fsync, answer; one run
#                    per batch size, CONNS_<BATCH> connections: by default 64 for single
#                    events, 16 for batches of 10 and 8 for batches of 50 (64, 160 and 400
#                    events in flight), as a sink sends batches a few at a time
# A request's events are only as many as its file holds: a run that would replay its file
# (and meet only duplicates after the first pass) says so; raise COUNT then.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
COUNT=${COUNT:-400000}
BATCHES=${BATCHES:-1 10 50}
BIN=${BIN:-target/release/statushook}
OUT=bench/out
mkdir -p "$OUT"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin statushook --example ceiling --example presign

export CALLBACKS="$OUT/callbacks.tsv" WRK_THREADS=2
target/release/examples/presign "$COUNT" https://hooks.example.com bench-auth-token "$CALLBACKS"

wait_for_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

start_statushook() {
  DATA=$(mktemp -d)
  STATUSHOOK_LISTEN=127.0.0.1:9092 STATUSHOOK_DATA_DIR="$DATA/db" \
  STATUSHOOK_PUBLIC_URL=https://hooks.example.com STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 \
  TWILIO_AUTH_TOKEN=bench-auth-token RUST_LOG=warn \
    "$BIN" serve & PID=$!
  wait_for_port 9092
}

stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }

# label port script batch [conns] -> one line: requests/s, events/s, latencies of a request
run_wrk() {
  local label=$1 port=$2 script=$3 batch=$4 conns=${5:-$CONNS}
  local line rps requests
  line=$(wrk -t2 -c"$conns" -d"$DURATION" -s "$script" "http://127.0.0.1:$port" | grep '^RESULT')
  rps=$(echo "$line" | sed -E 's/.*rps=([0-9]+).*/\1/')
  requests=$(echo "$line" | sed -E 's/.*requests=([0-9]+).*/\1/')
  printf '%-40s events/s=%-7s %s\n' "$label" "$((rps * batch))" "${line#RESULT }"
  if [ "$port" != 9091 ] && [ $((requests * batch)) -gt "$COUNT" ]; then
    echo "  (replayed its file: $((requests * batch)) events sent, $COUNT written; raise COUNT)"
  fi
}

echo "== Event Streams: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), wrk -t2 -d$DURATION"
target/release/examples/ceiling 127.0.0.1:9091 & PID=$!
wait_for_port 9091
run_wrk "ceiling: callbacks, $CONNS conns" 9091 bench/callbacks.lua 1
largest=${BATCHES##* }
target/release/examples/presign "$COUNT" https://hooks.example.com bench-auth-token "$OUT/events.tsv" events "$largest"
EVENTS="$OUT/events.tsv" run_wrk "ceiling: batches of $largest, $CONNS conns" 9091 bench/streams.lua "$largest"
stop

start_statushook
run_wrk "statushook: callbacks, $CONNS conns" 9092 bench/callbacks.lua 1
stop
rm -rf "$DATA"

for batch in $BATCHES; do
  target/release/examples/presign "$COUNT" https://hooks.example.com bench-auth-token "$OUT/events.tsv" events "$batch"
  conns_var="CONNS_$batch"
  case $batch in 1) default=$CONNS ;; 10) default=16 ;; *) default=8 ;; esac
  conns=${!conns_var:-$default}
  start_statushook
  EVENTS="$OUT/events.tsv" run_wrk "statushook: batches of $batch, $conns conns" 9092 bench/streams.lua "$batch" "$conns"
  stop
  rm -rf "$DATA"
done
rm -f "$OUT/events.tsv"
