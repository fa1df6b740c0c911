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
WEIR_ARGS="--checkpoint-interval 1s"
# shellcheck source=bench/serve.sh
. bench/serve.sh

sql "CREATE STREAM s (k BIGINT, v BIGINT) WITH (connector = 'datagen', rate = '$RATE',
       'fields.v.kind' = 'random', 'fields.v.min' = '0', 'fields.v.max' = '1000')"
sql "CREATE MATERIALIZED VIEW per_key AS
       SELECT k % $KEYS AS key, count(*) AS n, sum(v) AS total FROM s GROUP BY k % $KEYS"

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
