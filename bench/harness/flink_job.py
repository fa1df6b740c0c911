"""Run one benchmark query in PyFlink (local MiniCluster), in a process of its own.

Usage: python flink_job.py QUERY MODE DATA.csv OUT_DIR|- PARALLELISM

MODE is `stream` or `batch`. Timed: `INSERT INTO` a blackhole sink. Then,
unless OUT_DIR is `-`, the query runs again (untimed) into a filesystem
sink of CSV files in OUT_DIR for the result check. CPU seconds are those of
this process and its children (the JVM that runs the MiniCluster), read
just before and after the timed job; peak RSS is the sum of their VmHWM.
Prints one JSON line.
"""

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


def main():
    query, mode, data, out, parallelism = sys.argv[1:6]
    settings = (EnvironmentSettings.in_streaming_mode() if mode == "stream"
                else EnvironmentSettings.in_batch_mode())
    env = TableEnvironment.create(settings)
    env.get_config().set("parallelism.default", parallelism)
    env.execute_sql(queries.flink_source(data))
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
        env.execute_sql(f"INSERT INTO checked {sql}").wait()
    print("RESULT " + json.dumps({"wall": wall, "cpu": cpu_s, "rss": rss, "rows": rows}),
          flush=True)


if __name__ == "__main__":
    main()
