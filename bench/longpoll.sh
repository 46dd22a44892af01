#!/usr/bin/env bash
# What idle long polls cost one replica on PostgreSQL: POLLERS (1,000) requests
# `GET /v1/events?wait=30` held open at once (bench/longpoll.py: each asked again as soon as
# it is answered, after a position no callback reaches, so none is ever woken). Prints,
# without and then with the pollers:
#   - what the replica asks the database per second while no callback arrives: statements
#     (pg_stat_statements) and committed transactions (pg_stat_database), of the bench's
#     database only, over IDLE seconds (35: each poller is answered and asks again once in
#     that time, as a waiting consumer does every 30 s);
#   - callbacks' latency at a steady RATE per second for DURATION seconds (wrk, pre-signed
#     callbacks, 10 connections): p50 and p99.
#
#   bench/longpoll.sh                          # POLLERS=1000 RATE=200 DURATION=30 IDLE=35
#   BIN=path/to/other/statushook bench/longpoll.sh     # the same runs with another build
#
# On the server of STATUSHOOK_TEST_DATABASE_URL if set (it must load pg_stat_statements),
# else on a throwaway scripts/pg cluster (TLS, verify-full).
set -euo pipefail
cd "$(dirname "$0")/.."

POLLERS=${POLLERS:-1000}
RATE=${RATE:-200}
DURATION=${DURATION:-30}
IDLE=${IDLE:-35}
BIN=${BIN:-target/release/statushook}
PORT=${PORT:-9094}
OUT=bench/out
mkdir -p "$OUT"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin statushook --example presign
export CALLBACKS="$OUT/longpoll-callbacks.tsv" WRK_THREADS=2
target/release/examples/presign $(( RATE * DURATION * 3 )) https://hooks.example.com \
  bench-auth-token "$CALLBACKS"

OWN_PG=
if [ -z "${STATUSHOOK_TEST_DATABASE_URL:-}" ]; then
  eval "$(scripts/pg start)"
  OWN_PG=$STATUSHOOK_PG_DIR
fi
# The server without its database, and the TLS parameters, which psql reads as statushook does.
SERVER=${STATUSHOOK_TEST_DATABASE_URL%%\?*}
TLS=${STATUSHOOK_TEST_DATABASE_URL#"$SERVER"}
SERVER=${SERVER%/*}
sql() { psql -qAtX "$SERVER/$1$TLS" -c "$2"; }
DB=bench_longpoll_$$
sql postgres "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
sql postgres "CREATE DATABASE $DB"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  sql postgres "DROP DATABASE IF EXISTS $DB" || true
  if [ -n "$OWN_PG" ]; then scripts/pg stop "$OWN_PG"; fi
}
trap cleanup EXIT

wait_for_port() {
  for _ in $(seq 1 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

# What the replica asks of the database in IDLE seconds without callbacks, per second.
idle() {
  # A backend reports its transactions to pg_stat_database up to 10 s late.
  sleep 11
  sql postgres "SELECT pg_stat_statements_reset()" >/dev/null
  local commits calls
  commits=$(sql postgres "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'")
  sleep "$IDLE"
  calls=$(sql postgres "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s
    JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '$DB'")
  commits=$(( $(sql postgres "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'") - commits ))
  echo "idle: $(( calls / IDLE )) statements/s, $(( commits / IDLE )) transactions/s"
}

SENT=0
# Callbacks at RATE per second over 10 connections for DURATION seconds; new ones each time.
paced() {
  local conns=10
  WRK_OFFSET=$SENT WRK_DELAY_MS=$(( 1000 * conns / RATE )) wrk -t2 -c$conns -d"${1:-$DURATION}"s \
    -s bench/callbacks.lua http://127.0.0.1:$PORT | grep '^RESULT' | sed 's/^RESULT/callbacks:/'
  SENT=$(( SENT + RATE * ${1:-$DURATION} / 2 ))
}

echo "== long polls on one replica: $BIN, $POLLERS pollers, $RATE callbacks/s, $(nproc) cores"
STATUSHOOK_LISTEN=127.0.0.1:$PORT STATUSHOOK_DATABASE_URL="$SERVER/$DB$TLS" \
  STATUSHOOK_PUBLIC_URL=https://hooks.example.com STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 \
  TWILIO_AUTH_TOKEN=bench-auth-token RUST_LOG=warn "$BIN" serve & PIDS+=($!)
wait_for_port "$PORT"
paced 5 >/dev/null   # warm-up

echo "-- without long polls"
idle
paced

echo "-- with $POLLERS idle long polls"
python3 bench/longpoll.py 127.0.0.1 "$PORT" "$POLLERS" bench & POLLER=$!
PIDS+=("$POLLER")
sleep 5   # the pollers connect
idle
paced
kill "$POLLER"; wait "$POLLER" 2>/dev/null || true
