#!/usr/bin/env bash
# Checkpoint cost against state size: an updating GROUP BY over 1M keys fed
# by a paced generator, checkpointed every second. Once every key exists,
# each checkpoint writes only the groups (and view rows) that changed since
# the last one: the figure to watch is written bytes per checkpoint against
# the total state the checkpoint names, and the checkpoint's duration.
#
# Usage: bench/checkpoint.sh [KEYS] [ROWS_PER_SECOND] [SECONDS]
#        (defaults 1000000, 100000, 30; release build)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-1000000}
RATE=${2:-100000}
SECONDS_TO_RUN=${3:-30}
WEIR=target/${PROFILE:-dist}/weir
[ -x "$WEIR" ] || cargo build --profile "${PROFILE:-dist}" --bin weir

dir=$(mktemp -d)
port=$(( 20000 + RANDOM % 20000 ))
http=$(( port + 1 ))
"$WEIR" serve --data-dir "$dir/data" --pg-addr "127.0.0.1:$port" --http-addr "127.0.0.1:$http" \
  --log warn --checkpoint-interval 1s &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
sql() { psql -X -q -t -A -h 127.0.0.1 -p "$port" -U weir -d weir -c "$1"; }
until sql 'SELECT 1' >/dev/null 2>&1; do sleep 0.05; done

sql "CREATE STREAM s (k BIGINT, v BIGINT) WITH (connector = 'datagen', rate = '$RATE',
       'fields.v.kind' = 'random', 'fields.v.min' = '0', 'fields.v.max' = '1000')"
sql "CREATE MATERIALIZED VIEW per_key AS
       SELECT k % $KEYS AS key, count(*) AS n, sum(v) AS total FROM s GROUP BY k % $KEYS"

metric() { curl -s "127.0.0.1:$http/metrics" | awk -v m="$1" '$1 ~ "^"m"\\{job=\"per_key\"\\}" {print $2}'; }
echo "keys $KEYS, $RATE rows/s, checkpoint every 1 s (release build, $(nproc) cores)"
printf "%6s %8s %12s %14s %14s %10s\n" "t(s)" "epoch" "groups" "state bytes" "written bytes" "ms"
last=""
for _ in $(seq "$SECONDS_TO_RUN"); do
  sleep 1
  epoch=$(metric weir_checkpoint_epoch)
  [ "$epoch" = "$last" ] && continue
  last=$epoch
  printf "%6s %8s %12s %14s %14s %10.1f\n" "$SECONDS" "$epoch" "$(sql 'SELECT count(*) FROM per_key')" \
    "$(metric weir_checkpoint_size_bytes)" "$(metric weir_checkpoint_written_bytes)" \
    "$(awk -v d="$(metric weir_checkpoint_duration_seconds)" 'BEGIN { print d * 1000 }')"
done
echo "checkpoint files: $(ls "$dir/data/checkpoints/per_key" | wc -l), on disk: $(du -sh "$dir/data/checkpoints/per_key" | cut -f1)"
