"""SUBSCRIBE from psycopg 3, the ways Materialize documents it for Python:
`cursor.stream("SUBSCRIBE TO v")` (extended protocol, one row at a time) and
`DECLARE c CURSOR FOR SUBSCRIBE TO v` with `FETCH`. The view reads a table,
so the subscription never ends: rows must arrive while it runs.

Usage: python_subscribe.py <port>. Creates its own table and view.
"""

import sys
import threading

import psycopg

port = int(sys.argv[1])
url = f"postgresql://weir@127.0.0.1:{port}/weir"

# Bounds for a broken server, not timing assertions.
PATIENCE_S = 30


def check(name, actual, expected):
    if actual != expected:
        print(f"FAIL {name}: expected {expected!r}, got {actual!r}")
        sys.exit(1)
    print(f"ok   {name}")


def watchdog(what):
    """Fail the script if `what` hangs (a subscription delivering nothing)."""

    def expire():
        print(f"FAIL {what}: no rows within {PATIENCE_S} s")
        sys.stdout.flush()
        import os

        os._exit(1)

    timer = threading.Timer(PATIENCE_S, expire)
    timer.start()
    return timer


with psycopg.connect(url, autocommit=True) as writer:
    writer.execute("CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT)")
    writer.execute("INSERT INTO items VALUES (1, 'a'), (2, 'b')")
    writer.execute(
        "CREATE MATERIALIZED VIEW per_name AS SELECT name, count(*) AS n FROM items GROUP BY name"
    )
    writer.execute("FLUSH")

    # cursor.stream: the current rows, then each change as it is made.
    with psycopg.connect(url, autocommit=True) as conn:
        timer = watchdog("cursor.stream")
        seen = []
        wanted = [
            ("a", 1, "insert"),
            ("b", 1, "insert"),
            ("b", 1, "delete"),
            ("b", 2, "insert"),
        ]
        with conn.cursor() as cur:
            for row in cur.stream("SUBSCRIBE TO per_name"):
                seen.append(row)
                if len(seen) == 2:
                    # The snapshot arrived while the subscription runs: now a
                    # change, from the other connection.
                    writer.execute("INSERT INTO items VALUES (3, 'b')")
                if len(seen) == len(wanted):
                    break
        timer.cancel()
        check("cursor.stream snapshot", sorted(seen[:2]), wanted[:2])
        check("cursor.stream change", sorted(seen[2:]), sorted(wanted[2:]))
        # The connection is usable after leaving the stream early.
        check("after cursor.stream", conn.execute("SELECT 1").fetchone(), (1,))

    # DECLARE / FETCH in a transaction, as drivers without streaming do it.
    with psycopg.connect(url) as conn:
        timer = watchdog("DECLARE / FETCH")
        with conn.cursor() as cur:
            cur.execute("DECLARE c CURSOR FOR SUBSCRIBE TO per_name")
            cur.execute("FETCH 1 c")
            first = cur.fetchall()
            check("FETCH 1", len(first), 1)
            cur.execute("FETCH ALL c")
            rest = cur.fetchall()
            check("FETCH ALL: the rest of the snapshot", sorted(first + rest), [("a", 1, "insert"), ("b", 2, "insert")])
            cur.execute("FETCH 10 c WITH (timeout = '0s')")
            check("FETCH with a timeout and nothing new", cur.fetchall(), [])
            writer.execute("DELETE FROM items WHERE id = 1")
            cur.execute("FETCH 10 c")
            check("FETCH waits for the change", cur.fetchall(), [("a", 1, "delete")])
        conn.commit()
        timer.cancel()

    # COPY (SUBSCRIBE ...) read row by row: Postgres sends each row in a
    # CopyData message of its own, and Copy.rows() reads one row per message.
    import queue

    got = queue.Queue()

    def copy_rows():
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.cursor().copy("COPY (SUBSCRIBE TO per_name) TO STDOUT") as copy:
                for row in copy.rows():
                    got.put(row)

    threading.Thread(target=copy_rows, daemon=True).start()
    timer = watchdog("COPY rows()")
    replay = {}

    def apply(row):
        name, n, op = row
        replay[(name, n)] = replay.get((name, n), 0) + (1 if op == "insert" else -1)
        return sorted(key for key, count in replay.items() for _ in range(count))

    expected = sorted((name, str(n)) for name, n in writer.execute("SELECT * FROM per_name"))
    while apply(got.get()) != expected:
        pass
    # One statement whose changes come as one batch per group.
    writer.execute("UPDATE items SET name = 'c' WHERE id = 2")
    writer.execute("INSERT INTO items VALUES (4, 'b'), (5, 'c'), (6, 'd')")
    writer.execute("FLUSH")
    expected = sorted((name, str(n)) for name, n in writer.execute("SELECT * FROM per_name"))
    while (replayed := apply(got.get())) != expected:
        if any(count < 0 for count in replay.values()):
            check("COPY rows() replay", replayed, expected)
    timer.cancel()
    check("COPY rows() replays to the view", replayed, expected)

print("psycopg subscribe: all ok")
