#!/usr/bin/env bash
# What forwarding costs the callbacks, and how fast it forwards, measured in one run here.
#
#   bench/forwarding.sh           # DURATION=10s CONNS=64 COUNT=400000 RUNS=3 by default
#
#   1. callbacks/s without forwarding                      (wrk, as bench/callbacks.sh)
#   2. callbacks/s with forwarding on, to a local receiver answering 200 at once
#      (examples/ceiling), and how long the outbox takes to drain after the load stops
#   3. forwards/s: the store filled by a run of 1 is opened with forwarding on, which
#      forwards its whole history from the first transition; timed until the outbox is empty
# Runs 1 and 2 alternate RUNS times on fresh stores; the medians are printed.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
COUNT=${COUNT:-400000}
RUNS=${RUNS:-3}
OUT=bench/out
mkdir -p "$OUT"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin statushook --example ceiling --example presign

export CALLBACKS="$OUT/callbacks.tsv" WRK_THREADS=2
[ -s "$CALLBACKS" ] && [ "$(wc -l < "$CALLBACKS")" -ge "$COUNT" ] ||
  target/release/examples/presign "$COUNT" https://hooks.example.com bench-auth-token "$CALLBACKS"

# Free ports, so that other benchmarks on the machine cannot answer in our place.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port) RECEIVER_PORT=$(free_port)

wait_for_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

# The receiver: a bare actix-web handler answering 200 at once, on /twilio/status.
target/release/examples/ceiling 127.0.0.1:$RECEIVER_PORT & RECEIVER=$!
trap 'kill $RECEIVER 2>/dev/null || true' EXIT
wait_for_port $RECEIVER_PORT

start_statushook() { # data_dir [forward]
  local forward=()
  if [ "${2:-}" = forward ]; then
    forward=(STATUSHOOK_FORWARD_URL=http://127.0.0.1:$RECEIVER_PORT/twilio/status
             STATUSHOOK_FORWARD_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw)
  fi
  env STATUSHOOK_LISTEN=127.0.0.1:$PORT STATUSHOOK_DATA_DIR="$1" \
    STATUSHOOK_PUBLIC_URL=https://hooks.example.com STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 \
    TWILIO_AUTH_TOKEN=bench-auth-token RUST_LOG=warn "${forward[@]}" \
    target/release/statushook serve & PID=$!
  wait_for_port $PORT
}

stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }

delivered() {
  curl -s http://127.0.0.1:$PORT/metrics |
    awk '$1 == "statushook_forward_deliveries_total{outcome=\"delivered\"}" { print $2 }'
}
# "depth delivered", from one scrape.
progress() {
  curl -s http://127.0.0.1:$PORT/metrics | awk '
    $1 == "statushook_forward_outbox_depth" { depth = $2 }
    $1 == "statushook_forward_deliveries_total{outcome=\"delivered\"}" { delivered = $2 }
    END { print depth, delivered }'
}

# Waits until the outbox is empty and something was delivered; prints the seconds waited.
drain() {
  local start now depth delivered
  start=$(date +%s.%N)
  while read -r depth delivered < <(progress); [ "$depth" != 0 ] || [ "$delivered" = 0 ]; do
    kill -0 "$RECEIVER" || { echo "the receiver died" >&2; exit 1; }
    if [ "$(echo "$(date +%s.%N) - $start > 600" | bc)" = 1 ]; then
      echo "the outbox did not drain in 10 minutes: depth $depth" >&2; exit 1
    fi
    sleep 0.1
  done
  now=$(date +%s.%N)
  echo "$now - $start" | bc
}

rps() { # port
  WRK_DELAY_MS=0 wrk -t2 -c"$CONNS" -d"$DURATION" -s bench/callbacks.lua "http://127.0.0.1:$1" |
    grep '^RESULT' | sed -E 's/.*rps=([0-9]+).*/\1/'
}

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "== forwarding: $(nproc) cores, wrk -t2 -c$CONNS -d$DURATION on the same machine"
plain=() forwarded=()
for run in $(seq 1 "$RUNS"); do
  DATA=$(mktemp -d)
  start_statushook "$DATA/db"
  plain+=("$(rps $PORT)")
  stop
  [ "$run" = 1 ] && KEEP="$DATA" || rm -rf "$DATA"

  DATA=$(mktemp -d)
  start_statushook "$DATA/db" forward
  forwarded+=("$(rps $PORT)")
  lag=$(drain)
  echo "run $run: without forwarding ${plain[-1]}/s, with forwarding ${forwarded[-1]}/s" \
       "($(delivered) forwarded; the outbox was empty ${lag}s after the load stopped)"
  stop
  rm -rf "$DATA"
done
p=$(median "${plain[@]}") f=$(median "${forwarded[@]}")
echo "median callbacks/s: without forwarding $p, with forwarding $f ($(echo "scale=1; 100 * ($f - $p) / $p" | bc)%)"

# Forwarding throughput: the history of run 1's store, forwarded from its first transition.
start_statushook "$KEEP/db" forward
seconds=$(drain)
count=$(delivered)
echo "forwarded a backlog of $count transitions in ${seconds}s: $(echo "$count / $seconds" | bc) forwards/s"
stop
rm -rf "$KEEP"
