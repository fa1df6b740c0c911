#!/usr/bin/env bash
# The Kafka benchmark, against a real broker (noida-db, as the tests use):
#
# 1. Throughput: ROWS Nexmark-shaped bids as JSON in a PARTITIONS-partition
#    topic, read by a tumbling-window view (count + sum per auction per 10 s,
#    EMIT ON WINDOW CLOSE), in events per CPU-second of the server; beside it,
#    in the same run, the same view over the same bids from CSV (the peer:
#    what the engine does when decoding is cheap) and the batch SELECT.
# 2. Latency: live bids produced at a steady RATE per second for
#    LIVE_SECONDS, stamped with the wall clock; a subscriber (COPY (SUBSCRIBE
#    TO v) TO STDOUT, psql's way) to a filter view that keeps 1 % of them
#    takes its arrival time minus the row's stamp: p50, p99, max.
#
# Usage: bench/kafka.sh [ROWS] (default 5000000; PARTITIONS=4, RATE=100000,
# LIVE_SECONDS=20, PROFILE=dist). Needs psql, psycopg 3 and noida-db
# (`pip install -r bench/requirements.txt noida-db==0.2.3`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-5000000}
PARTITIONS=${PARTITIONS:-4}
RATE=${RATE:-100000}
LIVE_SECONDS=${LIVE_SECONDS:-20}
PROFILE=${PROFILE:-dist}
WEIR=target/$PROFILE/weir
BENCH=target/$PROFILE/weir-bench
[ -x "$BENCH" ] && [ -x "$WEIR" ] || cargo build --profile "$PROFILE" --bin weir --bin weir-bench
CSV=bench/data/bids-$ROWS.csv
JSON=bench/data/bids-$ROWS.json
[ -f "$CSV" ] || "$BENCH" gen-bids --rows "$ROWS" --out "$CSV"
[ -f "$JSON" ] || "$BENCH" gen-bids --rows "$ROWS" --format json --out "$JSON"

dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$dir"' EXIT

# The broker: the binary itself (killing the Python wrapper leaves it running).
NOIDA=$(python3 -c 'import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), "noida-db"))')
"$NOIDA" start --only kafka --host 127.0.0.1 --kafka-port 0 --data-dir "$dir/kafka" >"$dir/kafka.log" 2>&1 &
pids+=($!)
until brokers=$(awk '$1 == "kafka" { print $2; exit }' "$dir/kafka.log") && [ -n "$brokers" ]; do sleep 0.05; done
echo "broker at $brokers"

"$BENCH" produce --brokers "$brokers" --topic bids --partitions "$PARTITIONS" --in "$JSON"
# One bid per partition an hour ahead: every window of the data closes.
for p in $(seq 1 "$PARTITIONS"); do echo '{"auction": 1, "price": 0, "date_time": "2030-01-01 00:00:00.000"}'; done >"$dir/closers.json"
"$BENCH" produce --brokers "$brokers" --topic bids --partitions "$PARTITIONS" --in "$dir/closers.json"

port=$(( 20000 + RANDOM % 20000 ))
"$WEIR" serve --data-dir "$dir/data" --pg-addr "127.0.0.1:$port" --http-addr 127.0.0.1:0 --log warn &
pid=$!
pids+=($pid)
until psql -X -q -h 127.0.0.1 -p "$port" -U weir -d weir -c 'SELECT 1' >/dev/null 2>&1; do sleep 0.05; done

cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ticks=$(getconf CLK_TCK)
sql() { psql -X -q -t -A -h 127.0.0.1 -p "$port" -U weir -d weir -c "$1"; }
report() {
  awk -v n="$1" -v rows="$ROWS" -v c="$2" -v hz="$ticks" -v w="$3" \
    'BEGIN { cpu = c / hz; printf "%-30s wall %7.2f s  cpu %7.2f s  %6.2f M events/cpu-s  %6.2f M events/s\n", n, w, cpu, rows / cpu / 1e6, rows / w / 1e6 }'
}
WINDOWED="SELECT auction, window_start, window_end, count(*) AS bids, sum(price) AS total
  FROM TUMBLE({input}, date_time, INTERVAL '10 seconds')
  GROUP BY auction, window_start, window_end EMIT ON WINDOW CLOSE"
COLUMNS="auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP,
       WATERMARK FOR date_time AS date_time - INTERVAL '2 seconds'"

sql "CREATE STREAM bids_csv ($COLUMNS) WITH (connector = 'file', path = '$PWD/$CSV', format = 'csv')"
c0=$(cpu); t0=$(date +%s.%N)
sql "CREATE MATERIALIZED VIEW hot_csv AS ${WINDOWED//\{input\}/bids_csv}; FLUSH hot_csv" >/dev/null
c1=$(cpu); t1=$(date +%s.%N)
report "csv file -> view (peer)" $(( c1 - c0 )) "$(echo "$t1 - $t0" | bc)"
expected=$(sql "SELECT count(*) FROM hot_csv")

# The test broker answers a fetch with all it holds, past the consumer's
# fetch.max.bytes (182 MB for 2M bids in 4 partitions), which librdkafka
# refuses above receive.message.max.bytes (100 MB by default) and fetches
# again for ever: the view stayed empty. A real broker caps the response.
sql "CREATE STREAM bids_kafka ($COLUMNS) WITH (connector = 'kafka', topic = 'bids', brokers = '$brokers', format = 'json',
       'properties.receive.message.max.bytes' = '1000000000')"
c0=$(cpu); t0=$(date +%s.%N)
sql "CREATE MATERIALIZED VIEW hot_kafka AS ${WINDOWED//\{input\}/bids_kafka}" >/dev/null
# Complete when it holds every window the CSV view holds; polled every
# 100 ms (the polls' own CPU is in the figure, a fraction of a percent).
until [ "$(sql 'SELECT count(*) FROM hot_kafka')" = "$expected" ]; do sleep 0.1; done
c1=$(cpu); t1=$(date +%s.%N)
report "kafka json topic -> view" $(( c1 - c0 )) "$(echo "$t1 - $t0" | bc)"
same=$(sql "SELECT count(*) FROM (SELECT * FROM hot_kafka EXCEPT SELECT * FROM hot_csv)")
echo "windows: $expected in both views, $same differing"
# What the caught-up stream costs while nothing arrives: noida-db answers a
# fetch at once where a Kafka broker waits up to fetch.wait.max.ms, so each
# partition's consumer polls it in a loop. Part of the figure above is this.
c0=$(cpu); sleep 5; c1=$(cpu)
awk -v c="$(( c1 - c0 ))" -v hz="$ticks" -v p="$PARTITIONS" \
  'BEGIN { printf "idle stream (%d partitions, nothing to read): %.2f cpu-s per second\n", p, c / hz / 5 }'

# Latency. (Producing nothing creates the topic.)
"$BENCH" produce --brokers "$brokers" --topic live --partitions "$PARTITIONS" --in /dev/null
sql "CREATE STREAM live (auction BIGINT, price BIGINT, date_time TIMESTAMP,
       WATERMARK FOR date_time AS date_time - INTERVAL '10 milliseconds')
     WITH (connector = 'kafka', topic = 'live', brokers = '$brokers', format = 'json', scan_startup = 'latest');
     CREATE MATERIALIZED VIEW sampled AS SELECT auction, price, date_time FROM live WHERE price % 100 = 0"
python3 - "$port" "$(( RATE * LIVE_SECONDS ))" <<'PY' &
import datetime, os, sys
import psycopg
port, total = int(sys.argv[1]), int(sys.argv[2])
expected = sum(1 for n in range(total) if (100 + (n * 7919) % 10000) % 100 == 0)
lat = []
conn = psycopg.connect(f"host=127.0.0.1 port={port} user=weir dbname=weir", autocommit=True)
with conn.cursor().copy("COPY (SUBSCRIBE TO sampled) TO STDOUT") as copy:
    for row in copy.rows():
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        stamp = datetime.datetime.fromisoformat(str(row[2]))  # auction, price, date_time, op
        lat.append((now - stamp).total_seconds() * 1000)
        if len(lat) >= expected:
            break
    lat = lat[len(lat) // 10:]  # the first tenth warms up
    lat.sort()
    pick = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
    print(f"produce -> SUBSCRIBE latency over {len(lat)} rows: p50 {pick(50):.1f} ms  p99 {pick(99):.1f} ms  max {lat[-1]:.1f} ms", flush=True)
    # The subscription never ends by itself: leave without closing it.
    os._exit(0)
PY
sub=$!
sleep 1
"$BENCH" produce --brokers "$brokers" --topic live --partitions "$PARTITIONS" --live "$(( RATE * LIVE_SECONDS ))" --rate "$RATE"
wait $sub
echo "peak RSS: $(awk '/VmHWM/ {print $2/1024 " MiB"}' /proc/$pid/status)"
