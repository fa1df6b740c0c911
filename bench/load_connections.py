#!/usr/bin/env python3
"""Load: 1,000 connections at once against a real `weir serve` (issue 22, item 9).

    bench/load_connections.py [--weir target/release/weir] [--clients 1000]
                              [--seconds 30]

1. Starts weir on free ports with a fresh data dir and
   `--max-connections` above the client count.
2. Memory per idle connection: the server's RSS (VmRSS from /proc) before and
   after `--clients` idle psycopg connections, divided by their number.
3. Throughput under load: pgbench with a custom script of small queries,
   `-c <clients> -j 2 -T <seconds>`, every client connected at once; any
   failed transaction or aborted client is a failure (exit code 1).

Prints one JSON object with the figures. Needs psycopg (bench/requirements.txt)
and pgbench (Debian's postgresql-contrib / postgresql-client).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import psycopg

SCRIPT = """\\set id random(1, 1000)
SELECT :id + 1 AS n;
SELECT count(*) FROM (VALUES (1), (2), (3)) v(x) WHERE x <= :id;
"""


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def settle_rss(pid, seconds=2.0):
    """RSS once it stops moving (allocator caches settle after a burst)."""
    time.sleep(seconds)
    return rss_kib(pid)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weir", default=os.environ.get("WEIR_BIN", "target/release/weir"))
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="weir-load-")
    server = subprocess.Popen(
        [
            args.weir, "serve", "--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
            "--data-dir", data, "--print-addrs", "--log", "warn",
            "--max-connections", str(args.clients + 50),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        addrs = json.loads(server.stdout.readline())
        port = int(addrs["pg_addr"].rsplit(":", 1)[1])
        url = f"postgresql://weir@127.0.0.1:{port}/weir"
        with psycopg.connect(url, autocommit=True) as warm:
            warm.execute("SELECT 1").fetchall()
        before = settle_rss(server.pid)

        # Idle connections: each has done its startup and one query.
        conns = []
        started = time.monotonic()
        for _ in range(args.clients):
            c = psycopg.connect(url, autocommit=True)
            c.execute("SELECT 1").fetchall()
            conns.append(c)
        connect_s = time.monotonic() - started
        idle = settle_rss(server.pid)
        for c in conns:
            c.close()
        after_close = settle_rss(server.pid)

        # All clients busy at once with small queries.
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
            f.write(SCRIPT)
            script = f.name
        bench = subprocess.run(
            [
                "pgbench", "-n", "-c", str(args.clients), "-j", "2", "-T", str(args.seconds),
                "-f", script, "-h", "127.0.0.1", "-p", str(port), "-U", "weir", "weir",
            ],
            capture_output=True,
            text=True,
        )
        loaded = rss_kib(server.pid)
        out = bench.stdout + bench.stderr

        def figure(pattern, cast=float):
            m = re.search(pattern, out)
            return cast(m.group(1)) if m else None

        result = {
            "clients": args.clients,
            "connect_all_s": round(connect_s, 2),
            "rss_before_kib": before,
            "rss_idle_kib": idle,
            "rss_per_idle_connection_kib": round((idle - before) / args.clients, 1),
            "rss_after_close_kib": after_close,
            "pgbench_exit": bench.returncode,
            "transactions": figure(r"number of transactions actually processed: (\d+)", int),
            "failed": figure(r"number of failed transactions: (\d+)", int),
            "tps": figure(r"tps = ([\d.]+)"),
            "latency_ms": figure(r"latency average = ([\d.]+) ms"),
            "rss_under_load_kib": loaded,
            "server_alive": server.poll() is None,
        }
        print(json.dumps(result, indent=2))
        ok = (
            bench.returncode == 0
            and (result["failed"] or 0) == 0
            and result["server_alive"]
            and "aborted" not in out
        )
        if not ok:
            print(out[-4000:], file=sys.stderr)
        return 0 if ok else 1
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
