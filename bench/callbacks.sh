#!/usr/bin/env bash
# Throughput and latency of verified, durable callbacks, next to the ceiling of the HTTP
# stack (a bare actix-web handler answering 200), measured in one run on this machine.
#
#   bench/callbacks.sh     # SIDS=random STORES="empty 1m" DURATION=20s RUNS=3 by default
#   SIDS=sequential bench/callbacks.sh              # SIDs that count up, as before 2026-12-08
#   SIDS="random sequential" bench/callbacks.sh     # both, one after the other
#   BIN=path/to/other/statushook bench/callbacks.sh # the same runs with another build
#   TEMPLATE_DIR=bench/out/templates bench/callbacks.sh  # keep the 1M stores for a next run
#
# For each kind of SID in SIDS:
#   1. COUNT pre-signed callbacks (examples/presign: the realistic mix, SIDs of that kind),
#      enough that no run sends one twice (wrk's RESULT line counts repeats);
#   2. ceiling     examples/ceiling: actix-web answering 200, nothing else;
#   3. statushook  max throughput: verify, store, fsync (group commit), answer; RUNS runs
#      on each store of STORES, and their median:
#        empty  a fresh, empty store;
#        1m     a copy of a store pre-filled with PREFILL messages (3.18 events each, SIDs
#               of the same kind) through Store::record (examples/fill), the path a
#               callback takes after its HTTP handler, so its files are those callbacks
#               would leave. The fill runs once per invocation into a template folder (or
#               is reused from TEMPLATE_DIR) and each run starts on a fresh copy, written
#               back to disk (sync) before the service starts: sled's cache starts empty
#               and reads its pages as the run needs them (most of the files are still in
#               the kernel's page cache after the copy), and segment cleaning works on a
#               log that is mostly live data;
#   4. statushook  paced at RATE requests/second on an empty store, for latency under
#      ordinary load (PACED=0 skips it).
# Each statushook line ends with the store's size on disk and the service's RSS at the end
# of the run.
set -euo pipefail
cd "$(dirname "$0")/.."

SIDS=${SIDS:-random}
STORES=${STORES:-empty 1m}
DURATION=${DURATION:-20s}
CONNS=${CONNS:-64}
COUNT=${COUNT:-800000}
PREFILL=${PREFILL:-1000000}
RATE=${RATE:-2000}
RUNS=${RUNS:-3}
PACED=${PACED:-1}
BIN=${BIN:-target/release/statushook}
OUT=bench/out
mkdir -p "$OUT"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin statushook --example ceiling --example presign --example fill

# Templates live in a folder of this invocation unless TEMPLATE_DIR keeps them.
if [ -n "${TEMPLATE_DIR:-}" ]; then
  TEMPLATES=$TEMPLATE_DIR
  mkdir -p "$TEMPLATES"
else
  TEMPLATES=$(mktemp -d "$OUT/templates.XXXX")
fi
PID=
DATA=
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi
  if [ -n "$DATA" ]; then rm -rf "$DATA"; fi
  if [ -z "${TEMPLATE_DIR:-}" ]; then rm -rf "$TEMPLATES"; fi
}
trap cleanup EXIT

wait_for_port() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

template() { # sids: prints the folder of a store holding PREFILL messages with such SIDs
  local dir="$TEMPLATES/$1-$PREFILL"
  if [ ! -f "$dir/filled" ]; then
    rm -rf "$dir"
    echo "   filling $dir: $PREFILL messages ($1 SIDs) through Store::record" >&2
    target/release/examples/fill "$dir/db" "$PREFILL" "$1" >&2
    touch "$dir/filled"
  fi
  echo "$dir/db"
}

start_statushook() { # store sids
  DATA=$(mktemp -d "$OUT/run.XXXX")
  if [ "$1" = 1m ]; then
    cp -r "$(template "$2")" "$DATA/db"
    sync "$DATA/db"/*
  fi
  STATUSHOOK_LISTEN=127.0.0.1:9092 STATUSHOOK_DATA_DIR="$DATA/db" \
  STATUSHOOK_PUBLIC_URL=https://hooks.example.com STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 \
  TWILIO_AUTH_TOKEN=bench-auth-token RUST_LOG=warn \
    "$BIN" serve & PID=$!
  wait_for_port 9092
}

stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }

run_wrk() { # label port [delay_ms conns]
  local delay=${3:-0} conns=${4:-$CONNS}
  local line
  line=$(WRK_DELAY_MS=$delay wrk -t2 -c"$conns" -d"$DURATION" -s bench/callbacks.lua "http://127.0.0.1:$2" | grep '^RESULT')
  printf '%-44s %s\n' "$1" "${line#RESULT }"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "== callbacks: $(nproc) cores, wrk -t2 -c$CONNS -d$DURATION on the same machine; $(uptime | sed 's/.*load/load/')"
for sids in $SIDS; do
  export CALLBACKS="$OUT/callbacks-$sids.tsv" WRK_THREADS=2
  target/release/examples/presign "$COUNT" https://hooks.example.com bench-auth-token "$CALLBACKS" "$sids"
  echo "-- $sids SIDs, $COUNT pre-signed callbacks"
  target/release/examples/ceiling 127.0.0.1:9091 & PID=$!
  wait_for_port 9091
  run_wrk "ceiling (bare actix, 200)" 9091
  stop

  for store in $STORES; do
    case $store in
      empty) what="empty store" ;;
      1m) what="$PREFILL-message store"; template "$sids" >/dev/null ;;
      *) echo "STORES takes empty and 1m, not $store" >&2; exit 2 ;;
    esac
    # The machine is shared and noisy: several runs, each on a fresh store, and their median.
    results=()
    for run in $(seq 1 "$RUNS"); do
      start_statushook "$store" "$sids"
      line=$(run_wrk "statushook, $sids, $store #$run" 9092)
      rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$PID/status")
      stop
      echo "$line   store $(du -sm "$DATA/db" | cut -f1) MiB, RSS $rss MiB; $(uptime | sed 's/.*load/load/')"
      results+=("$(echo "$line" | sed -E 's/.*rps=([0-9]+).*/\1/')")
      rm -rf "$DATA"; DATA=
    done
    echo "statushook, $sids SIDs, $what: median of $RUNS runs $(printf '%s\n' "${results[@]}" | median) requests/s"
  done
done

if [ "$PACED" = 1 ]; then
  # Paced: CONNS_PACED connections each waiting DELAY ms between requests ≈ RATE/s.
  CONNS_PACED=20
  DELAY=$(( 1000 * CONNS_PACED / RATE ))
  start_statushook empty "$sids"
  run_wrk "statushook paced at ~$RATE/s ($sids SIDs)" 9092 "$DELAY" "$CONNS_PACED"
  stop
  rm -rf "$DATA"; DATA=
fi
