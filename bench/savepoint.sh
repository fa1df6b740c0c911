#!/usr/bin/env bash
# What suspending and resuming a job with a large state costs, and a
# savepoint's cost beside a checkpoint's (issue 20's report figures): an
# updating GROUP BY over KEYS keys fed by a paced generator, checkpointed
# every second. Once every key exists it prints
#   - the last checkpoints' duration and bytes (written: what changed; state:
#     what the checkpoint names),
#   - CREATE SAVEPOINT's duration and size (a checkpoint now, copied whole),
#   - ALTER JOB SUSPEND's duration (a final savepoint, then stopped),
#   - ALTER JOB RESUME's duration, and how long until the resumed job
#     completes its first checkpoint (its state restored and running).
# Durations are wall time of the statement as psql sees it, on a machine
# that runs nothing else.
#
# Usage: bench/savepoint.sh [KEYS] [ROWS_PER_SECOND]
#        (defaults 1000000, 200000; PROFILE=release|dist, default dist)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-1000000}
RATE=${2:-200000}
WEIR_ARGS="--checkpoint-interval 1s"
# shellcheck source=bench/serve.sh
. bench/serve.sh
now_ms() { date +%s%3N; }
timed() { local t0; t0=$(now_ms); sql "$1" >/dev/null; echo $(( $(now_ms) - t0 )); }
ms() { awk -v d="$1" 'BEGIN { printf "%.1f", d * 1000 }'; }

sql "CREATE STREAM s (k BIGINT, v BIGINT) WITH (connector = 'datagen', rate = '$RATE',
       'fields.v.kind' = 'random', 'fields.v.min' = '0', 'fields.v.max' = '1000')"
sql "CREATE MATERIALIZED VIEW per_key AS
       SELECT k % $KEYS AS key, count(*) AS n, sum(v) AS total FROM s GROUP BY k % $KEYS"

echo "keys $KEYS, $RATE rows/s, checkpoint every 1 s ($WEIR, $(nproc) cores)"
until [ "$(sql 'SELECT count(*) FROM per_key')" -ge "$KEYS" ]; do sleep 1; done
# A few checkpoints with every key present: the steady state.
start_epoch=$(metric weir_checkpoint_epoch)
until [ "$(metric weir_checkpoint_epoch)" -ge $(( start_epoch + 3 )) ]; do sleep 0.2; done
echo "checkpoint:  $(ms "$(metric weir_checkpoint_duration_seconds)") ms," \
  "written $(metric weir_checkpoint_written_bytes) bytes, state $(metric weir_checkpoint_size_bytes) bytes"

sp_ms=$(timed "CREATE SAVEPOINT sp FOR JOB per_key")
echo "savepoint:   $sp_ms ms, $(sql 'SHOW SAVEPOINTS FOR JOB per_key' | awk -F'|' '$1=="sp" {print $5}') bytes"

suspend_ms=$(timed "ALTER JOB per_key SUSPEND")
echo "suspend:     $suspend_ms ms"

epoch=$(metric weir_checkpoint_epoch)
t0=$(now_ms)
resume_ms=$(timed "ALTER JOB per_key RESUME")
until [ "$(metric weir_checkpoint_epoch)" -gt "$epoch" ]; do sleep 0.05; done
echo "resume:      $resume_ms ms; first checkpoint after it $(( $(now_ms) - t0 )) ms after the statement began"
echo "groups after resume: $(sql 'SELECT count(*) FROM per_key')"
