#!/usr/bin/env bash
# Two builds compared on a busy machine: runs of A and B alternate (A B B A A B …), each on
# a fresh store, so that both meet the same load, and the ratio B/A of each pair is
# printed with the median ratio. On a shared machine the absolute figures say little; the
# ratio of neighbouring runs says what a change gained or cost.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY   # STORE=empty|1m SIDS=random PAIRS=4 DURATION=10s
#
# STORE=1m starts each run on a copy of a PREFILL-message store (see bench/callbacks.sh),
# kept in TEMPLATE_DIR (bench/out/templates by default) for later invocations: delete it
# when the store's layout changes.
set -euo pipefail
cd "$(dirname "$0")/.."

A=$1
B=$2
STORE=${STORE:-empty}
SIDS=${SIDS:-random}
PAIRS=${PAIRS:-4}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
COUNT=${COUNT:-800000}
PREFILL=${PREFILL:-1000000}
TEMPLATE_DIR=${TEMPLATE_DIR:-bench/out/templates}
OUT=bench/out
mkdir -p "$OUT" "$TEMPLATE_DIR"
cargo build --release --quiet --example presign --example fill

export CALLBACKS="$OUT/callbacks-$SIDS.tsv" WRK_THREADS=2
[ -f "$CALLBACKS" ] && [ "$(wc -l <"$CALLBACKS")" -ge "$COUNT" ] ||
  target/release/examples/presign "$COUNT" https://hooks.example.com bench-auth-token "$CALLBACKS" "$SIDS"

TEMPLATE="$TEMPLATE_DIR/$SIDS-$PREFILL"
if [ "$STORE" = 1m ] && [ ! -f "$TEMPLATE/filled" ]; then
  rm -rf "$TEMPLATE"
  target/release/examples/fill "$TEMPLATE/db" "$PREFILL" "$SIDS"
  touch "$TEMPLATE/filled"
fi

PID=
DATA=
trap 'if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; if [ -n "$DATA" ]; then rm -rf "$DATA"; fi' EXIT

wait_for_port() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

one() { # binary: prints requests/s, p99 and p99.9 of one run
  DATA=$(mktemp -d "$OUT/ab.XXXX")
  if [ "$STORE" = 1m ]; then
    cp -r "$TEMPLATE/db" "$DATA/db"
    sync "$DATA/db"/*
  fi
  STATUSHOOK_LISTEN=127.0.0.1:9095 STATUSHOOK_DATA_DIR="$DATA/db" \
  STATUSHOOK_PUBLIC_URL=https://hooks.example.com STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 \
  TWILIO_AUTH_TOKEN=bench-auth-token RUST_LOG=warn "$1" serve & PID=$!
  wait_for_port 9095
  wrk -t2 -c"$CONNS" -d"$DURATION" -s bench/callbacks.lua http://127.0.0.1:9095 |
    sed -nE 's/^RESULT rps=([0-9]+) .*p99_ms=([0-9.]+) p999_ms=([0-9.]+).*/\1 \2 \3/p'
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  rm -rf "$DATA"; DATA=
}

echo "== A $A / B $B: $STORE store, $SIDS SIDs, $DURATION runs, $PAIRS pairs"
ratios=()
for pair in $(seq 1 "$PAIRS"); do
  # A B, then B A: neither build always goes first.
  if (( pair % 2 )); then a=$(one "$A"); b=$(one "$B"); else b=$(one "$B"); a=$(one "$A"); fi
  ratio=$(echo "${b%% *} / ${a%% *}" | bc -l)
  ratios+=("$ratio")
  printf 'pair %d: A %s  B %s  (rps p99 p99.9)  B/A %.3f  %s\n' "$pair" "$a" "$b" "$ratio" \
    "$(uptime | sed 's/.*load/load/')"
done
printf 'median B/A: %.3f\n' "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
