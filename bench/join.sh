#!/usr/bin/env bash
# Joins and updating inputs in views, on a release build:
#
# 1. stream x table: N Nexmark-shaped bids from CSV joined with an
#    `auctions` table Weir owns (one row per auction, 50 categories), as a
#    view of bids and volume per category, as the same view over a lookup
#    join (FOR SYSTEM_TIME AS OF: no bid kept), and as the same batch SELECT;
# 2. a change to the table: 1 % of the auctions move category, and the view
#    follows (each moved auction retracts and re-adds its bids);
# 3. an updating input alone: every row of a keyed table is updated once,
#    and a GROUP BY view over it retracts and re-adds each.
#
# Prints wall and server CPU seconds (user + system, from /proc) and rows
# per CPU-second for each; the view is checked against the batch query.
#
# Usage: bench/join.sh [ROWS] (default 5000000; data cached in bench/data)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-5000000}
DATA=bench/data/bids-$ROWS.csv
AUCTIONS=bench/data/auctions-$ROWS.csv
WEIR=${WEIR:-target/${PROFILE:-dist}/weir}
[ -x target/${PROFILE:-dist}/weir-bench ] && [ -x "$WEIR" ] || cargo build --profile "${PROFILE:-dist}" --bin weir --bin weir-bench
[ -f "$DATA" ] || target/${PROFILE:-dist}/weir-bench gen-bids --rows "$ROWS" --out "$DATA"
# Auction ids run from 1000 to 1000 + ROWS / 10 + 10 (see bench/src/main.rs).
[ -f "$AUCTIONS" ] || seq 1000 $(( 1000 + ROWS / 10 + 10 )) | awk '{ print $1 ",cat" $1 % 50 }' > "$AUCTIONS"
AUCTION_ROWS=$(wc -l < "$AUCTIONS")

dir=$(mktemp -d)
port=$(( 20000 + RANDOM % 20000 ))
"$WEIR" serve --data-dir "$dir/data" --pg-addr "127.0.0.1:$port" --http-addr 127.0.0.1:0 --log warn &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
until psql -X -q -h 127.0.0.1 -p "$port" -U weir -d weir -c 'SELECT 1' >/dev/null 2>&1; do sleep 0.05; done

cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ticks=$(getconf CLK_TCK)
sql() { psql -X -q -t -A -h 127.0.0.1 -p "$port" -U weir -d weir -c "$1"; }

measure() {
  local name=$1 rows=$2 statement=$3
  local c0 t0 c1 t1
  c0=$(cpu); t0=$(date +%s.%N)
  sql "$statement" >/dev/null
  c1=$(cpu); t1=$(date +%s.%N)
  awk -v n="$name" -v rows="$rows" -v c="$(( c1 - c0 ))" -v hz="$ticks" -v w="$(echo "$t1 - $t0" | bc)" \
    'BEGIN { cpu = c / hz; printf "%-40s wall %7.2f s  cpu %7.2f s  %6.2f M rows/cpu-s\n", n, w, cpu, rows / cpu / 1e6 }'
}

sql "CREATE STREAM bids (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP,
       WATERMARK FOR date_time AS date_time - INTERVAL '2 seconds')
     WITH (connector = 'file', path = '$PWD/$DATA', format = 'csv')"
sql "CREATE TABLE auctions (id BIGINT PRIMARY KEY, category TEXT NOT NULL)"
measure "COPY auctions ($AUCTION_ROWS rows)" "$AUCTION_ROWS" "\\copy auctions FROM '$PWD/$AUCTIONS' WITH (FORMAT csv)"

QUERY="SELECT a.category, count(*) AS bids, sum(b.price) AS volume
       FROM bids b JOIN auctions a ON b.auction = a.id GROUP BY a.category"
measure "stream x table (view, $ROWS bids)" "$ROWS" "CREATE MATERIALIZED VIEW per_category AS $QUERY; FLUSH"
measure "stream x table (batch SELECT)" "$ROWS" "SELECT count(*) FROM ($QUERY)"
check() {
  local view=$1 query=$2
  sql "SELECT (SELECT count(*) FROM ($view EXCEPT ALL $query)) + (SELECT count(*) FROM ($query EXCEPT ALL $view))"
}
echo "view vs batch: $(check 'SELECT * FROM per_category' "$QUERY") rows differ"
# The same as a lookup join: each bid meets the auction as the table has it
# when the bid arrives, and no bid is kept (design 0016).
LOOKUP="SELECT a.category, count(*) AS bids, sum(b.price) AS volume
        FROM bids b JOIN auctions FOR SYSTEM_TIME AS OF b.date_time AS a ON b.auction = a.id
        GROUP BY a.category"
measure "stream x table (lookup view)" "$ROWS" "CREATE MATERIALIZED VIEW per_category_lookup AS $LOOKUP; FLUSH"
echo "lookup view vs batch: $(check 'SELECT * FROM per_category_lookup' "$QUERY") rows differ"

MOVED=$(( AUCTION_ROWS / 100 ))
measure "move 1% of auctions ($MOVED rows)" "$MOVED" "UPDATE auctions SET category = 'moved' WHERE id % 100 = 7; FLUSH"
echo "view vs batch after the move: $(check 'SELECT * FROM per_category' "$QUERY") rows differ"

sql "CREATE TABLE accounts (id BIGINT PRIMARY KEY, grp BIGINT NOT NULL, amount BIGINT)"
sql "INSERT INTO accounts SELECT id, id % 1000, id % 977 FROM auctions"
ACCOUNTS=$(sql "SELECT count(*) FROM accounts")
sql "CREATE MATERIALIZED VIEW per_grp AS SELECT grp, count(*) AS n, sum(amount) AS total, max(amount) AS top FROM accounts GROUP BY grp; FLUSH"
measure "update every keyed row ($ACCOUNTS rows)" "$ACCOUNTS" "UPDATE accounts SET amount = amount + 1; FLUSH"
echo "view vs batch: $(check 'SELECT * FROM per_grp' 'SELECT grp, count(*), sum(amount), max(amount) FROM accounts GROUP BY grp') rows differ"
echo "peak RSS: $(awk '/VmHWM/ {print $2/1024 " MiB"}' /proc/$pid/status)"
