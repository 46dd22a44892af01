#!/usr/bin/env bash
# What an evaluation of the alert rules costs, and how long a failure burst takes to
# become a notification, measured in one run here.
#
#   bench/alerts.sh            # COUNTS="100000 1000000" by default
#
#   1. for each COUNT: a sled store filled with COUNT messages (examples/fill: a realistic
#      outcome mix, about 3.2 events a message), the service started on it evaluating
#      every second, 50 rules put, and the time of 30 passes read from its log; then a
#      51st rule filtered by sender (no counter answers it: it reads its window)
#   2. on the last store: 5 bursts of 20 failures, each on an error code of its own, each
#      right after a pass (the worst case), from the last callback's 200 to the webhook's
#      arrival, with the default 30 s interval
# With DATABASE_URL=postgres://… the stores are PostgreSQL databases instead (each COUNT
# into the database named by the URL, emptied first). KEEP=1 reuses the stores of an
# earlier run (sled) instead of filling them again.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-100000 1000000}
OUT=bench/out
mkdir -p "$OUT"
cargo build --release --quiet --bin statushook --example fill

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT

start_statushook() { # store interval log
  local store=(STATUSHOOK_DATA_DIR="$1")
  [ -n "${DATABASE_URL:-}" ] && store=(STATUSHOOK_DATABASE_URL="$DATABASE_URL")
  env STATUSHOOK_LISTEN=127.0.0.1:$PORT "${store[@]}" \
    STATUSHOOK_PUBLIC_URL=https://hooks.example.com STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 \
    TWILIO_AUTH_TOKEN=bench-auth-token STATUSHOOK_ALERT_INTERVAL="$2" STATUSHOOK_LOG_FORMAT=json \
    RUST_LOG=warn,statushook::jobs::alerts=debug \
    target/release/statushook serve 2>"$3" & PID=$!
  until curl -sf "$BASE/readyz" >/dev/null; do sleep 0.05; done
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
trap 'kill ${PID:-} 2>/dev/null || true' EXIT

echo "== alerts: $(nproc) cores, commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d)"
for COUNT in $COUNTS; do
  DB=$OUT/alerts-db-$COUNT
  if [ -n "${DATABASE_URL:-}" ]; then
    psql "$DATABASE_URL" -qc 'DROP SCHEMA IF EXISTS statushook CASCADE' >/dev/null
    target/release/examples/fill "$DATABASE_URL" "$COUNT"
  elif [ "${KEEP:-0}" != 1 ] || [ ! -d "$DB" ]; then
    rm -rf "$DB"
    target/release/examples/fill "$DB" "$COUNT"
  fi
  start_statushook "$DB" 1s "$OUT/alerts-$COUNT.log"
  echo -n "$COUNT messages: "
  python3 bench/alerts.py passes "$BASE" "$OUT/alerts-$COUNT.log"
  echo -n "$COUNT messages, with a rule on one sender: "
  python3 bench/alerts.py filtered "$BASE" "$OUT/alerts-$COUNT.log"
  stop
done
start_statushook "$DB" 30s "$OUT/alerts-latency.log"
python3 bench/alerts.py latency "$BASE" 30s
stop
