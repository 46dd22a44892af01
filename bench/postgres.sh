#!/usr/bin/env bash
# The PostgreSQL store on one local PostgreSQL 15 (scripts/pg: fsync and synchronous_commit
# on), in one run:
#   1. a template database filled with PREFILL messages (examples/fill, random SIDs, through
#      Store::record as the writer records callbacks), and query latencies on it
#      (examples/query_bench);
#   2. durable callbacks a second with one replica, then with two replicas on one database,
#      on each store of STORES: `empty`, a new database, and `filled`, a copy of the
#      template (CREATE DATABASE … TEMPLATE); wrk + bench/callbacks.lua as in
#      bench/callbacks.sh (random SIDs, or SIDS=sequential), one wrk per replica, summed;
#   3. what one callback costs PostgreSQL: statements, rows and WAL bytes per stored
#      callback (pg_stat_statements, pg_current_wal_lsn), and bytes on disk per message.
#
#   bench/postgres.sh   # DURATION=20s CONNS=64 COUNT=400000 PREFILL=1000000 RUNS=3 STORES="empty filled"
#                       # TRANSPORTS=tls (verify-full); TRANSPORTS="tls plain" adds the same
#                       # runs over plain text, alternating, to price TLS in one run
#
# A filled database takes about 5 KB a message, and each run copies it: PREFILL=1000000
# needs about 10 GB free.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20s}
CONNS=${CONNS:-64}
COUNT=${COUNT:-400000}
PREFILL=${PREFILL:-1000000}
RUNS=${RUNS:-3}
SIDS=${SIDS:-random}
STORES=${STORES:-empty filled}
TRANSPORTS=${TRANSPORTS:-tls}
OUT=bench/out
mkdir -p "$OUT"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin statushook --example presign --example fill --example query_bench

case " $TRANSPORTS " in *" plain "*) export STATUSHOOK_PG_PLAIN=1 ;; esac
eval "$(scripts/pg start)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  scripts/pg stop "$STATUSHOOK_PG_DIR"
}
trap cleanup EXIT
# The server without its database, and the TLS parameters (scripts/pg: verify-full), which
# psql reads as statushook does.
SERVER=${STATUSHOOK_TEST_DATABASE_URL%%\?*}
TLS=${STATUSHOOK_TEST_DATABASE_URL#"$SERVER"}
SERVER=${SERVER%/*}
sql() { psql -qAtX "$SERVER/$1$TLS" -c "$2"; }
sql postgres "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"

wait_for_port() {
  for _ in $(seq 1 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

TRANSPORT=tls
url_of() { # database: its URL over the current TRANSPORT
  case $TRANSPORT in
    tls) echo "$SERVER/$1$TLS" ;;
    plain) echo "$SERVER/$1?sslmode=disable" ;;
    *) echo "TRANSPORTS takes tls and plain, not $TRANSPORT" >&2; exit 2 ;;
  esac
}

start_replica() { # database port
  STATUSHOOK_LISTEN=127.0.0.1:$2 STATUSHOOK_DATABASE_URL="$(url_of "$1")" \
  STATUSHOOK_PUBLIC_URL=https://hooks.example.com STATUSHOOK_API_TOKEN=bench-api-token-0123456789abcdef0123 \
  TWILIO_AUTH_TOKEN=bench-auth-token RUST_LOG=warn \
    target/release/statushook serve & PIDS+=($!)
  wait_for_port "$2"
}

stop_replicas() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

for replica in 1 2; do
  target/release/examples/presign "$COUNT" https://hooks.example.com bench-auth-token "$OUT/callbacks-$replica.tsv" "$SIDS"
done

template_events=0
if [[ " $STORES " == *" filled "* ]]; then
echo "== the template: $PREFILL messages, $SIDS SIDs; queries on it"
sql postgres "CREATE DATABASE bench_template"
target/release/examples/fill "$SERVER/bench_template$TLS" "$PREFILL" "$SIDS"
sql bench_template "VACUUM ANALYZE"
size=$(sql bench_template "SELECT pg_database_size('bench_template')")
echo "database: $((size / 1024 / 1024)) MiB, $((size / PREFILL)) bytes a message"
start_replica bench_template 9103
target/release/examples/query_bench http://127.0.0.1:9103 bench-api-token-0123456789abcdef0123 "$PREFILL" "$SIDS"
stop_replicas
template_events=$(sql bench_template "SELECT count(*) FROM statushook.events")
fi

# One wrk per replica, each with its own pre-signed callbacks; prints the summed rate.
run() { # replicas database events-before store
  local replicas=$1 db=$2 pids=() conns=$((CONNS / $1))
  sql postgres "SELECT pg_stat_statements_reset()" >/dev/null
  local wal_before
  wal_before=$(sql "$db" "SELECT pg_current_wal_lsn()")
  for r in $(seq 1 "$replicas"); do
    CALLBACKS="$OUT/callbacks-$r.tsv" WRK_THREADS=1 \
      wrk -t1 -c"$conns" -d"$DURATION" -s bench/callbacks.lua "http://127.0.0.1:$((9100 + r))" \
      >"$OUT/wrk-$r.txt" & pids+=($!)
  done
  wait "${pids[@]}"
  local stored wal statements rows rps
  rps=$(cat "$OUT"/wrk-[1-"$replicas"].txt | sed -nE 's/^RESULT rps=([0-9]+).*/\1/p' | paste -sd+ | bc)
  stored=$(( $(sql "$db" "SELECT count(*) FROM statushook.events") - $3 ))
  wal=$(sql "$db" "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$wal_before')::bigint")
  read -r statements rows < <(sql postgres "SELECT sum(calls), sum(rows) FROM pg_stat_statements \
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$db') AND query NOT LIKE '%pg_stat_statements%'" | tr '|' ' ')
  local p99
  p99=$(sed -nE 's/^RESULT .*p99_ms=([0-9.]+).*/\1/p' "$OUT"/wrk-[1-"$replicas"].txt | sort -n | tail -1)
  local p999
  p999=$(sed -nE 's/^RESULT .*p999_ms=([0-9.]+).*/\1/p' "$OUT"/wrk-[1-"$replicas"].txt | sort -n | tail -1)
  printf '%d replica(s): %6d callbacks/s (p99 %s ms, p99.9 %s ms)  per callback: %.2f statements, %.1f rows, %d WAL bytes; %d stored\n' \
    "$replicas" "$rps" "$p99" "$p999" "$(echo "$statements / $stored" | bc -l)" "$(echo "$rows / $stored" | bc -l)" \
    "$((wal / stored))" "$stored"
  echo "$rps" >>"$OUT/rates-$4.txt"
}

echo "== callbacks on PostgreSQL: $(nproc) cores, wrk -c$CONNS -d$DURATION in all, same machine; $(uptime | sed 's/.*load/load/')"
for store in $STORES; do
  for replicas in 1 2; do
    for TRANSPORT in $TRANSPORTS; do rm -f "$OUT/rates-$store-$replicas-$TRANSPORT.txt"; done
    for n in $(seq 1 "$RUNS"); do
    for TRANSPORT in $TRANSPORTS; do
      db="bench_${store}_${replicas}_${n}_$TRANSPORT"
      case $store in
        empty) sql postgres "CREATE DATABASE $db"; before=0 ;;
        filled) sql postgres "CREATE DATABASE $db TEMPLATE bench_template"; before=$template_events ;;
        *) echo "STORES takes empty and filled, not $store" >&2; exit 2 ;;
      esac
      for r in $(seq 1 "$replicas"); do start_replica "$db" $((9100 + r)); done
      echo -n "$store, $TRANSPORT, $(uptime | sed 's/.*load/load/'): "
      run "$replicas" "$db" "$before" "$store-$replicas-$TRANSPORT"
      stop_replicas
      size=$(sql "$db" "SELECT pg_database_size('$db')")
      messages=$(sql "$db" "SELECT count(*) FROM statushook.messages")
      echo "   database: $((size / 1024 / 1024)) MiB, $((size / messages)) bytes a message (with PostgreSQL's fixed ~8 MiB)"
      sql postgres "DROP DATABASE $db"
    done
    done
    for TRANSPORT in $TRANSPORTS; do
      echo "median with $replicas replica(s), $store, $TRANSPORT: $(sort -n "$OUT/rates-$store-$replicas-$TRANSPORT.txt" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }') callbacks/s"
    done
  done
done
