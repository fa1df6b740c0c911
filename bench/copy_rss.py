"""Peak memory of the server while a client COPYs a large input into a table.

Starts `weir serve` (the binary given) on a fresh data directory, streams
`--mb` megabytes of CSV generated on the fly through psycopg's `copy()`,
and reports the server's resident memory (VmRSS) sampled during the COPY,
its peak (VmHWM), and the same after. Used for issue 22 item 6 (COPY FROM
in bounded chunks):

    python3 bench/copy_rss.py target/debug/weir --mb 500
"""

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time

import psycopg


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("weir")
    parser.add_argument("--mb", type=int, default=500)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="weir-copy-rss-")
    server = subprocess.Popen(
        [args.weir, "serve", "--data-dir", data, "--pg-addr", "127.0.0.1:0",
         "--http-addr", "127.0.0.1:0", "--print-addrs", "--log", "warn"],
        stdout=subprocess.PIPE,
    )
    addrs = json.loads(server.stdout.readline())
    port = int(addrs["pg_addr"].rsplit(":", 1)[1])
    dsn = f"host=127.0.0.1 port={port} dbname=weir user=weir"
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], status(server.pid, "VmRSS"))
            time.sleep(0.2)

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id BIGINT, name TEXT, note TEXT)")
        idle = status(server.pid, "VmRSS")
        filler = "x" * 80
        target = args.mb << 20
        sent = rows = 0
        threading.Thread(target=sample, daemon=True).start()
        start = time.time()
        with conn.cursor() as cur:
            with cur.copy("COPY big FROM STDIN WITH (FORMAT csv)") as copy:
                while sent < target:
                    lines = "".join(
                        f"{i},name{i},{filler}\n" for i in range(rows, rows + 10000)
                    ).encode()
                    copy.write(lines)
                    sent += len(lines)
                    rows += 10000
        seconds = time.time() - start
        done.set()
        count = conn.execute("SELECT count(*) FROM big").fetchone()[0]
        after = status(server.pid, "VmRSS")
        hwm = status(server.pid, "VmHWM")
    server.kill()
    server.wait()
    mib = lambda b: round(b / (1 << 20))
    print(json.dumps({
        "input_mib": mib(sent), "rows": count, "seconds": round(seconds, 1),
        "rss_idle_mib": mib(idle), "rss_peak_sampled_mib": mib(peak[0]),
        "vm_hwm_mib": mib(hwm), "rss_after_mib": mib(after),
    }))


if __name__ == "__main__":
    main()
