"""Run one benchmark query in PyFlink (local MiniCluster), in a process of its own.

Usage: python flink_job.py QUERY MODE '{"TABLE": "FILE.csv", ..}' OUT_DIR|- PARALLELISM

MODE is `stream` or `batch`. Timed: `INSERT INTO` a blackhole sink. Then,
unless OUT_DIR is `-`, the query runs again (untimed) into a filesystem
sink of CSV files in OUT_DIR for the result check. A streaming query whose
result updates (Nexmark q4: an aggregate over an aggregate) cannot go to
the filesystem sink, which takes inserts only: its changelog is collected
instead and applied, and the final rows written to OUT_DIR/changelog.csv.

Nexmark queries (q0 ..) run in streaming mode with the table settings of
the Nexmark repository's Flink configuration (`conf/config.yaml`: mini-batch
on, 2 s, 50,000 rows), which Flink's own Nexmark figures are measured with;
the other queries keep Flink's defaults, as in earlier results.

CPU seconds are those of
this process and its children (the JVM that runs the MiniCluster), read
just before and after the timed job; peak RSS is the sum of their VmHWM.
Prints one JSON line.
"""

import collections
import csv
import json
import os
import sys
import time

import psutil
from pyflink.table import EnvironmentSettings, TableEnvironment

sys.path.insert(0, os.path.dirname(__file__))
import queries  # noqa: E402


def tree():
    me = psutil.Process()
    return [me] + me.children(recursive=True)


def cpu(procs):
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def peak_rss(procs):
    total = 0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


# Nexmark's Flink configuration (nexmark-flink/src/main/resources/conf/config.yaml).
NEXMARK_STREAM_SETTINGS = {
    "table.exec.mini-batch.enabled": "true",
    "table.exec.mini-batch.allow-latency": "2 s",
    "table.exec.mini-batch.size": "50000",
}


def write_changelog(env, sql, out):
    """Run `sql`, apply its changelog (+I and +U add a row, -U and -D take
    one away) and write the final rows as headerless CSV."""
    from pyflink.common import RowKind
    rows = collections.Counter()
    with env.execute_sql(sql).collect() as results:
        for row in results:
            values = tuple(row)
            if row.get_row_kind() in (RowKind.INSERT, RowKind.UPDATE_AFTER):
                rows[values] += 1
            else:
                rows[values] -= 1
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "changelog.csv"), "w", newline="") as f:
        w = csv.writer(f)
        for values, n in rows.items():
            if n < 0:
                raise RuntimeError(f"the changelog retracts a row it never inserted: {values}")
            for _ in range(n):
                w.writerow("" if v is None else v for v in values)


def main():
    query, mode, data, out, parallelism = sys.argv[1:6]
    settings = (EnvironmentSettings.in_streaming_mode() if mode == "stream"
                else EnvironmentSettings.in_batch_mode())
    env = TableEnvironment.create(settings)
    env.get_config().set("parallelism.default", parallelism)
    if mode == "stream" and query.startswith("q"):
        for key, value in NEXMARK_STREAM_SETTINGS.items():
            env.get_config().set(key, value)
    for table, path in json.loads(data).items():
        env.execute_sql(queries.flink_source(table, path))
    columns = queries.flink_sink_columns(query)
    env.execute_sql(f"CREATE TABLE timed ({columns}) WITH ('connector' = 'blackhole')")
    sql = queries.flink(query, mode)

    procs = tree()
    c0, t0 = cpu(procs), time.perf_counter()
    env.execute_sql(f"INSERT INTO timed {sql}").wait()
    wall = time.perf_counter() - t0
    procs = tree()
    cpu_s = cpu(procs) - c0
    rss = peak_rss(procs)

    rows = None
    if out != "-":
        env.execute_sql(f"CREATE TABLE checked ({columns}) WITH ("
                        f"'connector' = 'filesystem', 'path' = '{out}', 'format' = 'csv')")
        try:
            insert = env.execute_sql(f"INSERT INTO checked {sql}")
        except Exception as e:  # noqa: BLE001 (py4j's error type is not importable here)
            if "doesn't support consuming update" not in str(e):
                raise
            write_changelog(env, sql, out)
        else:
            insert.wait()
    print("RESULT " + json.dumps({"wall": wall, "cpu": cpu_s, "rss": rss, "rows": rows}),
          flush=True)


if __name__ == "__main__":
    main()
