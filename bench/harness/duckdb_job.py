"""Run one benchmark query in DuckDB, in a process of its own.

Usage: python duckdb_job.py QUERY '{"TABLE": "FILE.csv", ..}' OUT.csv THREADS

Timed: `CREATE TEMP TABLE r AS <query>` (the result is computed in full and
kept in memory, as a Weir view keeps it). Then, untimed, the rows are written
to OUT.csv (no header) for the result check. Prints one JSON line: wall and
CPU seconds of the query (this process, all threads), the peak RSS of the
process and the number of result rows.
"""

import json
import resource
import sys
import time

import duckdb

sys.path.insert(0, __import__("os").path.dirname(__file__))
import queries  # noqa: E402


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    query, data, out, threads = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET preserve_insertion_order = false")
    for table, path in data.items():
        con.execute(queries.duckdb_source(table, path))
    c0, t0 = cpu(), time.perf_counter()
    con.execute(f"CREATE TEMP TABLE r AS {queries.DUCKDB[query]}")
    wall, cpu_s = time.perf_counter() - t0, cpu() - c0
    rows = con.execute("SELECT count(*) FROM r").fetchone()[0]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cols = ", ".join(n for n, _ in queries.COLUMNS[query])
    con.execute(f"COPY (SELECT {cols} FROM r) TO '{out}' (HEADER false)")
    print(json.dumps({"wall": wall, "cpu": cpu_s, "rss": rss, "rows": rows}))


if __name__ == "__main__":
    main()
