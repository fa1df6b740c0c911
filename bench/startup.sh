#!/usr/bin/env bash
# Start weir on an empty data dir, wait until a query is answered, stop it.
# Prints the milliseconds from spawn to the first answered `SELECT 1`.
# Usage: bench/startup.sh [path/to/weir]
set -euo pipefail
WEIR=${1:-target/${PROFILE:-dist}/weir}
dir=$(mktemp -d)
port=$(( 20000 + RANDOM % 20000 ))
start=$(date +%s%N)
"$WEIR" serve --data-dir "$dir/data" --pg-addr "127.0.0.1:$port" --http-addr 127.0.0.1:0 --log warn &
pid=$!
until psql -X -q -h 127.0.0.1 -p "$port" -U weir -d weir -c 'SELECT 1' >/dev/null 2>&1; do
  sleep 0.002
done
end=$(date +%s%N)
kill -TERM "$pid"; wait "$pid" || true
rm -rf "$dir"
echo "startup_to_first_query_ms=$(( (end - start) / 1000000 ))"
