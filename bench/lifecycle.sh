#!/usr/bin/env bash
# The data lifecycle at scale: online export and import speed, retention throughput with
# the callback latency while it deletes, and the store's size before, after and on reuse.
#
#   bench/lifecycle.sh                  # COUNT=1000000 RATE=500 by default, sled
#   STORE=postgres bench/lifecycle.sh   # the same on PostgreSQL: on the server of
#                                       # STATUSHOOK_TEST_DATABASE_URL if set, else on a
#                                       # throwaway scripts/pg cluster
#
#   1. fill COUNT messages (examples/fill), size on disk (PostgreSQL: pg_database_size)
#   2. serve it; `statushook export --url` (GET /v1/export): messages/s
#   3. `statushook import` of that export into an empty store: messages/s
#   4. baseline: wrk paced at ~RATE callbacks/s for 20 s, p50/p99
#   5. serve with STATUSHOOK_RETENTION=30s: every filled message is older, so retention
#      deletes them all while wrk keeps sending ~RATE callbacks/s; deletions/s, p50/p99
#   6. size after the deletion; callbacks without retention again (a second baseline);
#      size after filling COUNT new messages into the same store right away, with no
#      VACUUM but the store's own (with PostgreSQL and WAIT_FOR_VACUUM=1, once autovacuum
#      has caught up, at most VACUUM_WAIT=1800 seconds later), against the first fill
#   7. the p99 of the callbacks while retention deleted (each window's, median and
#      worst), against the baseline's of step 4 in the same run
#
# With PostgreSQL it also shows, in each window, the dead rows left for (auto)vacuum and
# how often autovacuum ran, and after the deletion the statements retention spent its
# time in (pg_stat_statements, reset before retention starts).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-1000000}
RATE=${RATE:-500}
STORE=${STORE:-sled}
PORT=${PORT:-9093}
OUT=bench/out
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$OUT"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin statushook --example fill --example presign
BIN=${BIN:-$TARGET/release/statushook}  # BIN=… to compare two builds
WORK=$(mktemp -d -p "$OUT" lifecycle.XXXX)
PID= POLL=
drop_stores() { :; }
cleanup() {
  kill $PID $POLL 2>/dev/null || true
  drop_stores
  rm -rf "$WORK"
}
trap cleanup EXIT
export CALLBACKS="$WORK/callbacks.tsv" WRK_THREADS=2
"$TARGET"/release/examples/presign 200000 https://hooks.example.com bench-auth-token "$CALLBACKS"

# A store is a folder (sled) or a database URL (PostgreSQL): where() names it to the
# service, size() measures it.
case $STORE in
  sled)
    new_store() { echo "$WORK/$1"; }
    where() { echo "STATUSHOOK_DATA_DIR=$1"; }
    size() { du -sb "$1" | cut -f1; }
    ;;
  postgres)
    OWN_PG=
    if [ -z "${STATUSHOOK_TEST_DATABASE_URL:-}" ]; then
      eval "$(scripts/pg start)"
      OWN_PG=$STATUSHOOK_PG_DIR
    fi
    # The server without its database, and the TLS parameters (scripts/pg: verify-full),
    # which psql reads as statushook does.
    SERVER=${STATUSHOOK_TEST_DATABASE_URL%%\?*}
    TLS=${STATUSHOOK_TEST_DATABASE_URL#"$SERVER"}
    SERVER=${SERVER%/*}
    sql() { psql -qAtX "$SERVER/$1$TLS" -c "$2"; }
    database() { local url=${1%%\?*}; echo "${url##*/}"; }
    sql postgres "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
    # The databases of this run end with the work folder's suffix.
    SUFFIX=$(basename "$WORK" | tr -dc 'a-zA-Z0-9' | tr 'A-Z' 'a-z')
    new_store() { # name: a new empty database, dropped at the end
      sql postgres "CREATE DATABASE lifecycle_$1_$SUFFIX"
      echo "$SERVER/lifecycle_$1_$SUFFIX$TLS"
    }
    drop_stores() {
      for db in $(sql postgres "SELECT datname FROM pg_database WHERE datname LIKE 'lifecycle\_%\_$SUFFIX'"); do
        sql postgres "DROP DATABASE $db"
      done
      if [ -n "$OWN_PG" ]; then scripts/pg stop "$OWN_PG"; fi
    }
    where() { echo "STATUSHOOK_DATABASE_URL=$1"; }
    size() { sql "$(database "$1")" "SELECT pg_database_size(current_database())"; }
    # Dead rows of the big tables, how many times autovacuum has processed each, and
    # which one it is vacuuming now.
    vacuum_state() {
      sql "$(database "$1")" "SELECT string_agg(format('%s %s dead (%s autovacuums%s)', s.relname,
        s.n_dead_tup, s.autovacuum_count, ', vacuuming: ' || p.phase), ', ' ORDER BY s.relname)
        FROM pg_stat_user_tables s LEFT JOIN pg_stat_progress_vacuum p ON p.relid = s.relid
        WHERE s.relname IN ('messages', 'events', 'positions')"
    }
    # Waits, at most VACUUM_WAIT seconds, until no big table holds more than 1% dead rows.
    vacuumed() {
      local waited=0
      while [ "$waited" -lt "${VACUUM_WAIT:-1800}" ]; do
        [ "$(sql "$(database "$1")" "SELECT count(*) FROM pg_stat_user_tables WHERE relname IN
          ('messages', 'events', 'positions') AND n_dead_tup > 0.01 * greatest(n_live_tup, 100000)")" = 0 ] \
          && { echo "autovacuum caught up ${waited}s after the deletion"; return 0; }
        sleep 10; waited=$((waited + 10))
      done
      echo "autovacuum had not caught up ${waited}s after the deletion: $(vacuum_state "$1")"
    }
    ;;
  *) echo "STORE is sled or postgres" >&2; exit 2 ;;
esac
mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }
wait_for_port() {
  for _ in $(seq 1 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}
serve() { # store [env...]
  local store=$1; shift
  env "$@" STATUSHOOK_LISTEN=127.0.0.1:$PORT "$(where "$store")" \
    STATUSHOOK_PUBLIC_URL=https://hooks.example.com STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 \
    TWILIO_AUTH_TOKEN=bench-auth-token RUST_LOG=warn "$BIN" serve & PID=$!
  wait_for_port "$PORT"
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
SENT=0
paced() { # seconds: ~RATE callbacks/s over 10 connections, each window new callbacks
  local conns=10 delay=$(( 1000 * 10 / RATE ))
  WRK_OFFSET=$SENT WRK_DELAY_MS=$delay wrk -t2 -c$conns -d"$1"s -s bench/callbacks.lua \
    http://127.0.0.1:$PORT | grep '^RESULT'
  SENT=$(( SENT + RATE * $1 / 2 ))
}
deleted() {
  curl -s http://127.0.0.1:$PORT/metrics | awk -F'} ' '/^statushook_deleted_messages_total\{reason="retention"\}/ { print $2 }'
}

echo "== lifecycle on $STORE: $COUNT messages, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
DB=$(new_store db)
nice -n 10 "$TARGET"/release/examples/fill "$DB" "$COUNT"
BEFORE=$(size "$DB")
echo "size after fill: $(mib "$BEFORE")"

serve "$DB"
if [ -z "${SKIP_MOVE:-}" ]; then
start=$(date +%s.%N)
STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 "$BIN" export --url http://127.0.0.1:$PORT --output "$WORK/export.jsonl"
took=$(echo "$(date +%s.%N) - $start" | bc)
echo "online export: $COUNT messages in ${took}s: $(echo "$COUNT / $took" | bc) messages/s, $(mib "$(du -sb "$WORK/export.jsonl" | cut -f1)")"
BASELINE=$(paced 20)
echo "baseline callbacks (no retention): $BASELINE"
stop

IMPORTED=$(new_store imported)
start=$(date +%s.%N)
if [ "$STORE" = postgres ]; then
  "$BIN" import "$WORK/export.jsonl" --database-url "$IMPORTED"
else
  "$BIN" import "$WORK/export.jsonl" --data-dir "$IMPORTED"
fi
took=$(echo "$(date +%s.%N) - $start" | bc)
echo "import: $COUNT messages in ${took}s: $(echo "$COUNT / $took" | bc) messages/s; imported store $(mib "$(size "$IMPORTED")")"
if [ "$STORE" = postgres ]; then sql postgres "DROP DATABASE $(database "$IMPORTED")"; else rm -rf "$IMPORTED"; fi
rm -f "$WORK/export.jsonl"
else
BASELINE=$(paced 20)
echo "baseline callbacks (no retention): $BASELINE"
stop
fi

echo "load before retention: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$STORE" = postgres ]; then
  echo "before retention: $(vacuum_state "$DB")"
  sql postgres "SELECT pg_stat_statements_reset()" >/dev/null
fi
serve "$DB" STATUSHOOK_RETENTION=30s STATUSHOOK_RETENTION_INTERVAL=1s
( while :; do echo "$(date +%s.%N) $(deleted)"; sleep 0.2; done ) > "$WORK/deleted.log" & POLL=$!
# wrk in windows of 10 s while retention deletes, so the latency is that of the deletion.
while :; do
  window=$(paced 10)
  echo "$window" >> "$WORK/windows.log"
  n=$(deleted); n=${n:-0}
  echo "  callbacks while deleting ($n deleted so far, load $(cut -d' ' -f1 /proc/loadavg)): $window"
  if [ "$STORE" = postgres ]; then echo "    $(vacuum_state "$DB")"; fi
  if [ "$n" -ge "$COUNT" ]; then break; fi
done
kill "$POLL"; POLL=
awk -v count="$COUNT" '$2 > 0 && !t0 { t0 = $1 } $2 >= count && !t1 { t1 = $1; n = $2 }
  END { printf "retention: %d messages deleted in %.1fs: %.0f messages/s\n", n, t1 - t0, n / (t1 - t0) }' \
  "$WORK/deleted.log"
echo "size right after the deletion: $(mib "$(size "$DB")")"
stop
if [ "$STORE" = postgres ]; then
  echo "statements while retention ran, callbacks' included (pg_stat_statements, those over 1% of the time):"
  sql postgres "WITH s AS (SELECT calls, total_exec_time, rows, query FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '${DB##*/}'))
    SELECT format('  %5s%%  %8s calls  %8s ms/call  %9s rows  %s',
      round((100 * total_exec_time / sum(total_exec_time) OVER ())::numeric, 1), calls,
      round((total_exec_time / calls)::numeric, 2), rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110))
    FROM s ORDER BY total_exec_time DESC LIMIT 8" | awk -F'%' '$1 + 0 >= 1'
  echo "after the deletion: $(vacuum_state "$DB")"
  echo "size once the service has stopped: $(mib "$(size "$DB")")"
  if [ -n "${WAIT_FOR_VACUUM:-}" ]; then
    # Freed rows are reused once vacuum has found them: refill after it has.
    vacuumed "$DB"
    echo "size once vacuumed: $(mib "$(size "$DB")") ($(vacuum_state "$DB"))"
  fi
else
  AFTER=$(size "$DB")
  echo "size after the deletion and a restart: $(mib "$AFTER")"
  cp -a "$DB" "$WORK/copy"
  "$BIN" compact --data-dir "$WORK/copy"
  echo "size of a compacted copy: $(mib "$(size "$WORK/copy")")"
  rm -rf "$WORK/copy"
fi
# A second baseline on the emptied store, to tell the deletion's effect from the machine's.
serve "$DB"
echo "callbacks without retention, after it: $(paced 20)"
stop
if [ "$STORE" = postgres ]; then echo "before the refill: $(vacuum_state "$DB")"; fi
nice -n 10 "$TARGET"/release/examples/fill "$DB" "$COUNT"
REFILLED=$(size "$DB")
echo "size after filling $COUNT new messages into it: $(mib "$REFILLED") (first fill: $(mib "$BEFORE")): $(awk -v a="$REFILLED" -v b="$BEFORE" 'BEGIN { printf "%.2f", a / b }')x"
if [ "$STORE" = postgres ]; then echo "after the refill: $(vacuum_state "$DB")"; fi
# The callbacks' p99 while retention deleted, against the baseline's, in this run.
p99() { sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p'; }
base=$(echo "$BASELINE" | p99)
p99 < "$WORK/windows.log" | sort -n | awk -v b="$base" '{ p[NR] = $1 }
  END { m = p[int((NR + 1) / 2)]; printf "p99 while deleting: median %.2f ms, worst %.2f ms over %d windows; baseline %.2f ms: median %.2fx, worst %.2fx\n",
    m, p[NR], NR, b, m / b, p[NR] / b }'
