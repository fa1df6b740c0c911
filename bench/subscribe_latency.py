"""Push latency of SUBSCRIBE, per protocol: from an INSERT's commit (the
statement's reply) to the changed row arriving at a subscriber.

    python3 bench/subscribe_latency.py --port 5488 [--changes 200]
    python3 bench/subscribe_latency.py --weir target/release/weir

With --weir it starts that binary on free ports in a temporary data dir
(and stops it at the end); with --port it uses a running server. It needs
psycopg 3 (bench/requirements.txt).

For each protocol a subscriber runs in a thread, over an updating view of a
table (`SELECT id, v FROM t` with a primary key); the main thread makes one
change at a time (an INSERT), notes the time its reply came back, and waits
until the subscriber saw the row before the next. Reported: p50, p99 and max
in milliseconds. Protocols:

- copy:   COPY (SUBSCRIBE TO v) TO STDOUT (psql's way), read with cursor.copy
- simple: SUBSCRIBE TO v in the simple protocol (a raw socket, rows as they come)
- stream: psycopg's cursor.stream("SUBSCRIBE TO v") (extended protocol, Execute 0)
- fetch:  DECLARE c CURSOR FOR SUBSCRIBE TO v, then FETCH 100 c in a loop
"""

import argparse
import json
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time

import psycopg


def percentile(values, p):
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


class Arrivals:
    """Arrival times by id, filled by a subscriber thread."""

    def __init__(self):
        self.times = {}
        self.cond = threading.Condition()
        self.error = None

    def arrived(self, ident):
        now = time.perf_counter()
        with self.cond:
            self.times.setdefault(ident, now)
            self.cond.notify_all()

    def wait(self, ident, timeout=30):
        with self.cond:
            ok = self.cond.wait_for(lambda: ident in self.times or self.error, timeout)
            if self.error:
                raise RuntimeError(self.error)
            if not ok:
                raise TimeoutError(f"row {ident} never arrived")
            return self.times[ident]


def copy_subscriber(url, view, arrivals, stop):
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY (SUBSCRIBE TO {view}) TO STDOUT") as copy:
                for data in copy:
                    for line in bytes(data).decode().splitlines():
                        arrivals.arrived(int(line.split("\t")[0]))
                    if stop.is_set():
                        return


def stream_subscriber(url, view, arrivals, stop):
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor() as cur:
            for row in cur.stream(f"SUBSCRIBE TO {view}"):
                arrivals.arrived(row[0])
                if stop.is_set():
                    return


def fetch_subscriber(url, view, arrivals, stop):
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            cur.execute(f"DECLARE c CURSOR FOR SUBSCRIBE TO {view}")
            while not stop.is_set():
                cur.execute("FETCH 100 c WITH (timeout = '1s')")
                for row in cur.fetchall():
                    arrivals.arrived(row[0])


def simple_subscriber(url_parts, view, arrivals, stop):
    """The simple protocol by hand: psycopg sends queries through the
    extended protocol, and libpq's simple-query API returns a result only
    once it is complete."""
    host, port = url_parts
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(kind, payload):
        sock.sendall(kind + struct.pack("!I", len(payload) + 4) + payload)

    params = b"user\0weir\0database\0weir\0\0"
    startup = struct.pack("!I", 196608) + params
    sock.sendall(struct.pack("!I", len(startup) + 4) + startup)
    buf = b""

    def messages():
        nonlocal buf
        while True:
            while len(buf) >= 5:
                kind = buf[:1]
                length = struct.unpack("!I", buf[1:5])[0]
                if len(buf) < 1 + length:
                    break
                body = buf[5 : 1 + length]
                buf = buf[1 + length :]
                yield kind, body
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk

    reader = messages()
    for kind, _ in reader:
        if kind == b"Z":
            break
    send(b"Q", f"SUBSCRIBE TO {view}\0".encode())
    for kind, body in reader:
        if kind == b"D":
            length = struct.unpack("!i", body[2:6])[0]
            arrivals.arrived(int(body[6 : 6 + length]))
        elif kind == b"E":
            arrivals.error = body.decode(errors="replace")
            return
        if stop.is_set():
            sock.close()
            return


def measure(url, host_port, protocol, changes, first_id):
    view = f"v_{protocol}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE t_{protocol} (id BIGINT PRIMARY KEY, v BIGINT)")
        conn.execute(f"CREATE MATERIALIZED VIEW {view} AS SELECT id, v FROM t_{protocol}")
        arrivals = Arrivals()
        stop = threading.Event()
        target = {
            "copy": copy_subscriber,
            "stream": stream_subscriber,
            "fetch": fetch_subscriber,
            "simple": simple_subscriber,
        }[protocol]
        where = host_port if protocol == "simple" else url

        def run():
            try:
                target(where, view, arrivals, stop)
            except Exception as err:  # noqa: BLE001 - reported, or the end of the run
                if not stop.is_set():
                    arrivals.error = repr(err)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        # Warm up: the subscription is running once a first row arrives.
        conn.execute(f"INSERT INTO t_{protocol} VALUES (%s, 0)", (first_id,))
        arrivals.wait(first_id)
        latencies = []
        for i in range(1, changes + 1):
            ident = first_id + i
            conn.execute(f"INSERT INTO t_{protocol} VALUES (%s, %s)", (ident, i))
            committed = time.perf_counter()
            arrived = arrivals.wait(ident)
            latencies.append((arrived - committed) * 1000)
        stop.set()
        # One more change wakes a subscriber blocked on its next row.
        conn.execute(f"INSERT INTO t_{protocol} VALUES (%s, 0)", (first_id + changes + 1,))
        thread.join(timeout=5)
    return latencies


def start_weir(binary):
    data = tempfile.mkdtemp(prefix="weir-sub-bench-")
    proc = subprocess.Popen(
        [binary, "serve", "--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
         "--data-dir", data, "--print-addrs", "--log", "warn"],
        stdout=subprocess.PIPE,
    )
    addrs = json.loads(proc.stdout.readline())
    port = int(addrs["pg_addr"].rsplit(":", 1)[1])
    return proc, port


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, help="a running server's pgwire port")
    parser.add_argument("--weir", help="start this weir binary instead")
    parser.add_argument("--changes", type=int, default=200, help="changes per protocol")
    parser.add_argument("--protocols", default="copy,simple,stream,fetch")
    args = parser.parse_args()
    proc = None
    if args.weir:
        proc, port = start_weir(args.weir)
    elif args.port:
        port = args.port
    else:
        parser.error("give --port or --weir")
    url = f"postgresql://weir@127.0.0.1:{port}/weir"
    try:
        print(f"{'protocol':<8} {'changes':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for n, protocol in enumerate(args.protocols.split(",")):
            latencies = measure(url, ("127.0.0.1", port), protocol, args.changes, n * 1_000_000)
            print(
                f"{protocol:<8} {len(latencies):>7} {percentile(latencies, 50):>8.2f} "
                f"{percentile(latencies, 99):>8.2f} {max(latencies):>8.2f}"
            )
    finally:
        if proc:
            proc.terminate()
            proc.wait()
    os._exit(0)


if __name__ == "__main__":
    main()
