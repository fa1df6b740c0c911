#!/usr/bin/env bash
# Tables Weir owns against PostgreSQL, in the same run, on the same disk:
#   1. COPY FROM STDIN (psql \copy, csv) of ROWS rows into a table with a
#      primary key: rows per second.
#   2. single-row INSERTs over CLIENTS connections for SECONDS seconds
#      (pgbench, simple protocol, one statement per transaction): rows per
#      second.
# Both servers fsync every commit (PostgreSQL with its Debian defaults:
# fsync on, synchronous_commit on). Prints one key=value line per figure
# and the ratios weir/postgres.
#
# Usage: bench/tables.sh [ROWS] [CLIENTS] [SECONDS]
# Needs a build (cargo build --profile dist --bin weir; PROFILE=release picks the other), psql, pgbench
# and PostgreSQL's server binaries (apt-get install -y postgresql).
set -euo pipefail
ROWS=${1:-10000000}
CLIENTS=${2:-10}
SECONDS_=${3:-10}
WEIR=${WEIR:-target/${PROFILE:-dist}/weir}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
[ -x "$WEIR" ] || { echo "build it first: cargo build --profile ${PROFILE:-dist} --bin weir" >&2; exit 1; }

work=$(mktemp -d /tmp/weir-tables-bench.XXXXXX)
chmod 755 "$work"
cleanup() {
  [ -n "${weir_pid:-}" ] && kill -TERM "$weir_pid" 2>/dev/null && wait "$weir_pid" 2>/dev/null || true
  [ -d "$work/pg" ] && as_pg "$PGBIN/pg_ctl -D $work/pg -m immediate stop" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root: use the postgres user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}

now() { date +%s.%N; }

echo "generating $ROWS rows" >&2
csv="$work/rows.csv"
awk -v n="$ROWS" 'BEGIN { for (i = 1; i <= n; i++) printf "%d,name_%d,%d.%02d\n", i, i % 1000, i % 10000, i % 100 }' > "$csv"
chmod 644 "$csv"
cat > "$work/insert.sql" <<'SQL'
\set id random(1, 9000000000000000000)
INSERT INTO ins VALUES (:id, :client_id, 'some text');
SQL

run_both() { # $1: label, $2: port, $3: user
  local port=$2 user=$3
  local q="psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $port -U $user -d $4"
  $q -c "CREATE TABLE rows (id BIGINT PRIMARY KEY, name TEXT, value DOUBLE PRECISION)"
  $q -c "CREATE TABLE ins (id BIGINT PRIMARY KEY, client INT, note TEXT)"
  local t0 t1
  t0=$(now)
  $q -c "\\copy rows from '$csv' with (format csv)"
  t1=$(now)
  local n
  n=$($q -t -A -c "SELECT count(*) FROM rows")
  [ "$n" = "$ROWS" ] || { echo "$1: expected $ROWS rows, found $n" >&2; exit 1; }
  copy_s=$(echo "$t1 - $t0" | bc -l)
  copy_rps=$(echo "$ROWS / $copy_s" | bc -l)
  local out
  out=$("$PGBIN/pgbench" -n -h 127.0.0.1 -p "$port" -U "$user" -c "$CLIENTS" -j 2 -T "$SECONDS_" -M simple -f "$work/insert.sql" "$4" 2>&1)
  insert_rps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
  local inserted
  inserted=$($q -t -A -c "SELECT count(*) FROM ins")
  [ -n "$insert_rps" ] || { echo "$out" >&2; exit 1; }
  printf '%s_copy_seconds=%.2f\n%s_copy_rows_per_s=%.0f\n%s_insert_rows_per_s=%.0f\n%s_insert_rows=%s\n' \
    "$1" "$copy_s" "$1" "$copy_rps" "$1" "$insert_rps" "$1" "$inserted"
}

# Weir.
weir_port=$(( 20000 + RANDOM % 20000 ))
"$WEIR" serve --data-dir "$work/weir" --pg-addr "127.0.0.1:$weir_port" --http-addr 127.0.0.1:0 --log warn &
weir_pid=$!
until psql -X -q -h 127.0.0.1 -p "$weir_port" -U weir -d weir -c 'SELECT 1' >/dev/null 2>&1; do sleep 0.05; done
run_both weir "$weir_port" weir weir | tee "$work/weir.out"
kill -TERM "$weir_pid"; wait "$weir_pid" || true; weir_pid=

# PostgreSQL: a throwaway cluster.
pg_port=$(( 20000 + RANDOM % 20000 ))
mkdir -p "$work/pg" && chown postgres "$work/pg" 2>/dev/null || true
as_pg "$PGBIN/initdb -D $work/pg -A trust -U postgres" >/dev/null
as_pg "$PGBIN/pg_ctl -D $work/pg -l $work/pg/server.log -o '-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1' -w start" >/dev/null
run_both postgres "$pg_port" postgres postgres | tee "$work/pg.out"
as_pg "$PGBIN/pg_ctl -D $work/pg -m fast stop" >/dev/null

get() { sed -n "s/^$1=//p" "$2"; }
printf 'copy_ratio_weir_over_postgres=%.2f\n' \
  "$(echo "$(get weir_copy_rows_per_s "$work/weir.out") / $(get postgres_copy_rows_per_s "$work/pg.out")" | bc -l)"
printf 'insert_ratio_weir_over_postgres=%.2f\n' \
  "$(echo "$(get weir_insert_rows_per_s "$work/weir.out") / $(get postgres_insert_rows_per_s "$work/pg.out")" | bc -l)"
