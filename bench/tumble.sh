#!/usr/bin/env bash
# The tumbling-window benchmark: 10-second count(*) + sum(price) per auction
# over N Nexmark-shaped bids read from CSV, as a streaming materialized view
# (EMIT ON WINDOW CLOSE) and as a batch SELECT, on a release build.
#
# Prints wall seconds, the server's CPU seconds (user + system, read from
# /proc before and after) and events per CPU-second for each.
#
# Usage: bench/tumble.sh [ROWS] (default 20000000; data cached in bench/data)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-20000000}
DATA=bench/data/bids-$ROWS.csv
WEIR=target/${PROFILE:-dist}/weir
[ -x target/${PROFILE:-dist}/weir-bench ] && [ -x "$WEIR" ] || cargo build --profile "${PROFILE:-dist}" --bin weir --bin weir-bench
[ -f "$DATA" ] || target/${PROFILE:-dist}/weir-bench gen-bids --rows "$ROWS" --out "$DATA"

dir=$(mktemp -d)
port=$(( 20000 + RANDOM % 20000 ))
"$WEIR" serve --data-dir "$dir/data" --pg-addr "127.0.0.1:$port" --http-addr 127.0.0.1:0 --log warn &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
until psql -X -q -h 127.0.0.1 -p "$port" -U weir -d weir -c 'SELECT 1' >/dev/null 2>&1; do sleep 0.05; done

cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ticks=$(getconf CLK_TCK)
sql() { psql -X -q -t -A -h 127.0.0.1 -p "$port" -U weir -d weir -c "$1"; }

sql "CREATE STREAM bids (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP,
       WATERMARK FOR date_time AS date_time - INTERVAL '2 seconds')
     WITH (connector = 'file', path = '$PWD/$DATA', format = 'csv')"

measure() {
  local name=$1 statement=$2
  local c0 t0 c1 t1
  c0=$(cpu); t0=$(date +%s.%N)
  sql "$statement" >/dev/null
  c1=$(cpu); t1=$(date +%s.%N)
  awk -v n="$name" -v rows="$ROWS" -v c="$(( c1 - c0 ))" -v hz="$ticks" -v w="$(echo "$t1 - $t0" | bc)" \
    'BEGIN { cpu = c / hz; printf "%-28s wall %7.2f s  cpu %7.2f s  %6.2f M events/cpu-s  %6.2f M events/s\n", n, w, cpu, rows / cpu / 1e6, rows / w / 1e6 }'
}

measure "streaming (view, on close)" "CREATE MATERIALIZED VIEW hot AS
  SELECT auction, window_start, window_end, count(*) AS bids, sum(price) AS total
  FROM TUMBLE(bids, date_time, INTERVAL '10 seconds')
  GROUP BY auction, window_start, window_end EMIT ON WINDOW CLOSE; FLUSH"
measure "batch (SELECT)" "SELECT count(*) FROM (SELECT auction, window_start, window_end, count(*) AS bids, sum(price) AS total
  FROM TUMBLE(bids, date_time, INTERVAL '10 seconds') GROUP BY auction, window_start, window_end)"
echo "rows in view: $(sql 'SELECT count(*) FROM hot'), rows in batch: $(sql "SELECT count(*) FROM (SELECT auction, window_start FROM TUMBLE(bids, date_time, INTERVAL '10 seconds') GROUP BY auction, window_start, window_end)")"
echo "peak RSS: $(awk '/VmHWM/ {print $2/1024 " MiB"}' /proc/$pid/status)"
