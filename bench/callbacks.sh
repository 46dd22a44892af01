#!/usr/bin/env bash
# Throughput and latency of verified, durable callbacks, next to the ceiling of the HTTP
# stack (a bare actix-web handler answering 200), measured in one run on this machine.
#
#   bench/callbacks.sh            # DURATION=10s CONNS=64 COUNT=400000 RATE=2000 RUNS=3 by default
#   BIN=path/to/other/statushook bench/callbacks.sh    # the same runs with another build
#
# Three runs of wrk with the same pre-signed requests:
#   1. ceiling     examples/ceiling: actix-web answering 200, nothing else
#   2. statushook  max throughput: verify, store, fsync (group commit), answer; RUNS times
#   3. statushook  paced at RATE requests/second, for latency under ordinary load
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
COUNT=${COUNT:-400000}
RATE=${RATE:-2000}
RUNS=${RUNS:-3}
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

run_wrk() { # label port [delay_ms conns]
  local delay=${3:-0} conns=${4:-$CONNS}
  local line
  line=$(WRK_DELAY_MS=$delay wrk -t2 -c"$conns" -d"$DURATION" -s bench/callbacks.lua "http://127.0.0.1:$2" | grep '^RESULT')
  printf '%-34s %s\n' "$1" "${line#RESULT }"
}

echo "== callbacks: $(nproc) cores, wrk -t2 -c$CONNS -d$DURATION on the same machine"
target/release/examples/ceiling 127.0.0.1:9091 & PID=$!
wait_for_port 9091
run_wrk "ceiling (bare actix, 200)" 9091
stop

# The machine is shared and noisy: several runs, each on a fresh store, and their median.
results=()
for run in $(seq 1 "$RUNS"); do
  start_statushook
  line=$(run_wrk "statushook (verified, durable) #$run" 9092)
  echo "$line   store: $(du -sh "$DATA/db" | cut -f1)"
  results+=("$(echo "$line" | sed -E 's/.*rps=([0-9]+).*/\1/')")
  stop
  rm -rf "$DATA"
done
median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo "statushook median of $RUNS runs: $median requests/s"

# Paced: CONNS_PACED connections each waiting DELAY ms between requests ≈ RATE/s.
CONNS_PACED=20
DELAY=$(( 1000 * CONNS_PACED / RATE ))
start_statushook
run_wrk "statushook paced at ~$RATE/s" 9092 "$DELAY" "$CONNS_PACED"
stop
rm -rf "$DATA"
