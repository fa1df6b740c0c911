"""The benchmark's queries, once per engine dialect, the tables they read and
the columns they return.

Every engine computes the same result multiset for a query; the texts differ
only where the dialects do. Window bounds are epoch-aligned everywhere and
every timestamp is a millisecond event time without time zone.

Two data sets, each generated once per row count and read from the same CSV
files by every engine (bench.py makes them):

- `bids`: the bids of `weir-bench gen-bids` (auction, bidder, price,
  date_time), out of order by up to 2 s. Queries tumble, hop, session, join.
- Nexmark's `person`, `auction` and `bid`, written by Weir's built-in
  `nexmark` generator (`COPY (SELECT ..) TO STDOUT`): N bids, N / 10
  auctions and N / 20 people over the same span of event time (the
  generator picks a bid's auction among the first N / 10 and its bidder
  among the first N / 20), in order. Queries q0 .. q8.

Sessions: every engine starts a new session when two events of a bidder are
more than `gap` apart; events exactly `gap` apart are one session. That is
Flink's streaming SESSION window (it merges windows that touch) and Weir's
SESSION, streaming and batch. Flink 2.x has no session windows in batch mode
("Unaligned windows like session are not supported in batch mode yet"), so
Flink batch computes sessions with LAG and a running SUM over the bidder's
events, like DuckDB and like Weir's own batch rewrite.

Join: Nexmark Q7-style, the highest bid(s) of every 10-second window, as a
join of the bids with their per-window maximum. In Flink streaming this is a
window join (state is dropped per window). Weir runs the same text as a
streaming view (it refused it as one until several stateful stages could be
in one query, 0012): without EMIT ON WINDOW CLOSE, which Weir refuses over
a join (0A000: a join's rows could still arrive for a closed window), so the
maximum per window is an updating aggregate and the join a regular hash
join whose view is updating and whose state is kept.

Nexmark q0 .. q8: Flink's texts (the nexmark repository's
`nexmark-flink/src/main/resources/queries/`) are the reference; Weir runs the
forms of `sql-tests/nexmark/` (the same results: the README there says where
and why they differ from the reference); DuckDB computes windows from
`epoch_ms(date_time)`. Differences kept on purpose:

- q1: `0.908 * price` is a DECIMAL(23, 3) in Flink and DuckDB and a DOUBLE in
  Weir (DataFusion reads a decimal literal as a float); the check compares
  the column as DECIMAL(38, 3), to which every engine's value rounds exactly.
- q3: the generator's states are lower case ('or', 'id', 'ca').
- q4: Flink's AVG of a BIGINT is a BIGINT (integer division); Flink averages
  `CAST(final AS DOUBLE)` here, as Weir and DuckDB average to a DOUBLE.
- q6: the append-only form of `sql-tests/nexmark/q6.slt` (the reference
  form, an OVER over an updating aggregate, runs in no engine's streaming
  mode: the Flink repository marks it "not supported yet"). Flink streaming
  does not run this form either: its OVER must be ordered by one time
  attribute, and its join of the auctions with their bids, bounded by
  `expires`, is a regular join whose aggregate is updating. Flink batch and
  DuckDB run it.
"""

TIMESTAMP = "TIMESTAMP"
BIGINT = "BIGINT"
VARCHAR = "VARCHAR"
DOUBLE = "DOUBLE"
DECIMAL = "DECIMAL"  # DECIMAL(23, 3) in Flink and DuckDB, a DOUBLE in Weir

# ---- The input tables and their columns (`bids` is gen-bids' file, the rest Nexmark's) ----
TABLES = {
    "bids": [("auction", BIGINT), ("bidder", BIGINT), ("price", BIGINT), ("date_time", TIMESTAMP)],
    "bid": [("auction", BIGINT), ("bidder", BIGINT), ("price", BIGINT), ("channel", VARCHAR),
            ("url", VARCHAR), ("date_time", TIMESTAMP), ("extra", VARCHAR)],
    "auction": [("id", BIGINT), ("item_name", VARCHAR), ("description", VARCHAR),
                ("initial_bid", BIGINT), ("reserve", BIGINT), ("date_time", TIMESTAMP),
                ("expires", TIMESTAMP), ("seller", BIGINT), ("category", BIGINT),
                ("extra", VARCHAR)],
    "person": [("id", BIGINT), ("name", VARCHAR), ("email_address", VARCHAR),
               ("credit_card", VARCHAR), ("city", VARCHAR), ("state", VARCHAR),
               ("date_time", TIMESTAMP), ("extra", VARCHAR)],
}
NEXMARK_TABLES = ["bid", "auction", "person"]

# How the `nexmark` generator makes each table for N rows of bids: (rows,
# events per second of event time). All three span N / 10,000 s of event
# time; a bid's auction is among the first N / 10 auctions and its bidder
# among the first N / 20 people, so every id a bid names exists.
def nexmark_shape(rows):
    return {"bid": (rows, 10_000), "auction": (rows // 10, 1_000), "person": (rows // 20, 500)}


# The columns each query returns, in order: what result files are read as.
COLUMNS = {
    "tumble": [("auction", BIGINT), ("window_start", TIMESTAMP), ("window_end", TIMESTAMP),
               ("bids", BIGINT), ("total", BIGINT)],
    "hop": [("auction", BIGINT), ("window_start", TIMESTAMP), ("window_end", TIMESTAMP),
            ("bids", BIGINT), ("top", BIGINT)],
    "session": [("bidder", BIGINT), ("window_start", TIMESTAMP), ("window_end", TIMESTAMP),
                ("bids", BIGINT), ("total", BIGINT)],
    "join": [("auction", BIGINT), ("price", BIGINT), ("bidder", BIGINT), ("date_time", TIMESTAMP)],
    "q0": [("auction", BIGINT), ("bidder", BIGINT), ("price", BIGINT), ("date_time", TIMESTAMP),
           ("extra", VARCHAR)],
    "q1": [("auction", BIGINT), ("bidder", BIGINT), ("price", DECIMAL), ("date_time", TIMESTAMP),
           ("extra", VARCHAR)],
    "q2": [("auction", BIGINT), ("price", BIGINT)],
    "q3": [("name", VARCHAR), ("city", VARCHAR), ("state", VARCHAR), ("id", BIGINT)],
    "q4": [("category", BIGINT), ("avg_final", DOUBLE)],
    "q5": [("auction", BIGINT), ("num", BIGINT)],
    "q6": [("seller", BIGINT), ("id", BIGINT), ("final", BIGINT), ("window_end", TIMESTAMP),
           ("avg_final", DOUBLE)],
    "q7": [("auction", BIGINT), ("price", BIGINT), ("bidder", BIGINT), ("date_time", TIMESTAMP)],
    "q8": [("id", BIGINT), ("name", VARCHAR), ("starttime", TIMESTAMP)],
}

# The tables each query reads: its events are their rows.
SOURCES = {
    "tumble": ["bids"], "hop": ["bids"], "session": ["bids"], "join": ["bids"],
    "q0": ["bid"], "q1": ["bid"], "q2": ["bid"], "q3": ["auction", "person"],
    "q4": ["auction", "bid"], "q5": ["bid"], "q6": ["auction", "bid"], "q7": ["bid"],
    "q8": ["person", "auction"],
}

DESCRIBE = {
    "tumble": "TUMBLE 10 s: count(*), sum(price) per auction",
    "hop": "HOP 10 s every 5 s: count(*), max(price) per auction",
    "session": "SESSION gap 3 s: count(*), sum(price) per bidder",
    "join": "Q7-style join: the top bids of each 10 s window",
    "q0": "Nexmark q0: pass-through of the bids",
    "q1": "Nexmark q1: currency conversion (0.908 * price)",
    "q2": "Nexmark q2: selection (auction % 123 = 0)",
    "q3": "Nexmark q3: local item suggestion (auction x person join, filters)",
    "q4": "Nexmark q4: average final price per category (aggregate over an aggregate over a join)",
    "q5": "Nexmark q5: hot items (HOP 10 s every 2 s, the most-bid auctions per window)",
    "q6": "Nexmark q6: average selling price per seller over its last 11 closed auctions "
          "(interval join, TUMBLE, OVER; the append-only form)",
    "q7": "Nexmark q7: highest bid per 10 s window (join over a windowed aggregate)",
    "q8": "Nexmark q8: new users who opened an auction in their first 10 s window (window join)",
}

QUERIES = list(COLUMNS)

# ---- Weir: the same text for the streaming view and the batch SELECT ----
_NEXMARK_Q4 = """SELECT Q.category, AVG(Q.final) AS avg_final
  FROM (
    SELECT MAX(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, A.category
  ) Q
  GROUP BY Q.category"""

_NEXMARK_Q3 = """SELECT p.name, p.city, p.state, a.id
  FROM auction AS a
  INNER JOIN person AS p ON a.seller = p.id
  WHERE a.category = 10 AND (p.state = 'or' OR p.state = 'id' OR p.state = 'ca')"""

WEIR = {
    "tumble": """SELECT auction, window_start, window_end, count(*) AS bids, sum(price) AS total
  FROM TUMBLE(bids, date_time, INTERVAL '10 seconds')
  GROUP BY auction, window_start, window_end""",
    "hop": """SELECT auction, window_start, window_end, count(*) AS bids, max(price) AS top
  FROM HOP(bids, date_time, INTERVAL '5 seconds', INTERVAL '10 seconds')
  GROUP BY auction, window_start, window_end""",
    "session": """SELECT bidder, window_start, window_end, count(*) AS bids, sum(price) AS total
  FROM SESSION(bids, date_time, INTERVAL '3 seconds')
  GROUP BY bidder, window_start, window_end""",
    "join": """SELECT b.auction, b.price, b.bidder, b.date_time
  FROM TUMBLE(bids, date_time, INTERVAL '10 seconds') b
  JOIN (SELECT window_start, max(price) AS maxprice
        FROM TUMBLE(bids, date_time, INTERVAL '10 seconds') GROUP BY window_start) m
    ON b.window_start = m.window_start AND b.price = m.maxprice""",
    "q0": "SELECT auction, bidder, price, date_time, extra FROM bid",
    "q1": "SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid",
    "q2": "SELECT auction, price FROM bid WHERE auction % 123 = 0",
    "q3": _NEXMARK_Q3,
    "q4": _NEXMARK_Q4,
    "q5": """SELECT AuctionBids.auction, AuctionBids.num FROM (
    SELECT bid.auction, count(*) AS num, window_start AS starttime
    FROM HOP(bid, date_time, INTERVAL '2 seconds', INTERVAL '10 seconds')
    GROUP BY window_start, bid.auction
  ) AS AuctionBids
  JOIN (
    SELECT max(CountBids.num) AS maxn, CountBids.starttime_c
    FROM (
      SELECT count(*) AS num, window_start AS starttime_c
      FROM HOP(bid, date_time, INTERVAL '2 seconds', INTERVAL '10 seconds')
      GROUP BY bid.auction, window_start
    ) AS CountBids
    GROUP BY CountBids.starttime_c
  ) AS MaxBids
  ON AuctionBids.starttime = MaxBids.starttime_c AND AuctionBids.num >= MaxBids.maxn""",
    "q6": """SELECT seller, id, final, window_end,
    avg(final) OVER (PARTITION BY seller ORDER BY window_end, date_time, id
                     ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS avg_final
  FROM (
    SELECT a.id, a.seller, a.date_time, a.window_end, max(b.price) AS final
    FROM TUMBLE(auction, date_time, INTERVAL '10 seconds') AS a, bid AS b
    WHERE a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.expires
      AND b.date_time <= a.date_time + INTERVAL '30 seconds'
    GROUP BY a.id, a.seller, a.date_time, a.window_start, a.window_end
  ) AS q""",
    "q7": """SELECT B.auction, B.price, B.bidder, B.date_time
  FROM bid B
  JOIN (
    SELECT MAX(price) AS maxprice, window_end AS date_time
    FROM TUMBLE(bid, date_time, INTERVAL '10 seconds')
    GROUP BY window_end
  ) B1 ON B.price = B1.maxprice
  WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10 seconds' AND B1.date_time""",
    "q8": """SELECT P.id, P.name, P.starttime
  FROM (
    SELECT id, name, window_start AS starttime, window_end AS endtime
    FROM TUMBLE(person, date_time, INTERVAL '10 seconds')
    GROUP BY id, name, window_start, window_end
  ) P
  JOIN (
    SELECT seller, window_start AS starttime, window_end AS endtime
    FROM TUMBLE(auction, date_time, INTERVAL '10 seconds')
    GROUP BY seller, window_start, window_end
  ) A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime""",
}
# Views that get EMIT ON WINDOW CLOSE (their result is emitted once, final);
# the others are views whose rows are appended or updated as input arrives.
# EMIT ON WINDOW CLOSE is refused over a join (join, q5, q7, q8), and needs
# every aggregate windowed (q4's are not).
WEIR_EOWC = {"tumble", "hop", "session", "q6"}
# Why a query is not run as a Weir view, where it is not.
WEIR_STREAM_UNSUPPORTED = {}

_WEIR_TYPES = {BIGINT: "BIGINT", TIMESTAMP: "TIMESTAMP", VARCHAR: "VARCHAR"}


def _weir_columns(table):
    return ", ".join(f"{n} {_WEIR_TYPES[k]}" for n, k in TABLES[table])


def weir_stream_ddl(table, path, name=None):
    """`table`'s file as a stream named `name` (the table's name if none)."""
    return f"""CREATE STREAM {name or table} ({_weir_columns(table)},
  WATERMARK FOR date_time AS date_time - INTERVAL '2 seconds')
WITH (connector = 'file', path = '{path}', format = 'csv', header = 'false')"""


def weir_table_ddl(table, path):
    return f"""CREATE TABLE {table} ({_weir_columns(table)})
WITH (connector = 'file', path = '{path}', format = 'csv', header = 'false')"""


def weir_view(query):
    """The text after `CREATE MATERIALIZED VIEW r AS`."""
    return WEIR[query] + ("\n  EMIT ON WINDOW CLOSE" if query in WEIR_EOWC else "")


def weir_digest(query):
    """A one-row SELECT that needs every column of every result row.

    The batch timing runs this, so the result rows are computed in full but
    not shipped to the client (the streaming view keeps its rows in the
    server, too). Every numeric column is summed, so none can be pruned."""
    cols = COLUMNS[query]
    parts = ["count(*)"]
    for name, kind in cols:
        parts.append(f"sum({name})" if kind in (BIGINT, DOUBLE, DECIMAL) else f"max({name})")
    return f"SELECT {', '.join(parts)} FROM ({WEIR[query]}) AS r"


def weir_nexmark_generator(table, rows, rate, seed):
    """The generator stream whose rows are written to `table`'s file."""
    return (f"CREATE STREAM {table} WITH (connector = 'nexmark', table = '{table}', "
            f"rate = {rate}, rows = {rows}, seed = {seed})")


def weir_nexmark_export(table):
    """The rows of a generator stream as CSV, in event-time order (a batch
    SELECT may interleave its partitions' batches; the streams read the file
    with a watermark), timestamps in milliseconds (the generator's are in
    nanoseconds; Flink's TIMESTAMP(3) keeps milliseconds, so every engine
    reads the same truncated times)."""
    cols = ", ".join(f"to_char({n}, '%Y-%m-%d %H:%M:%S%.3f') AS {n}_ms" if k == TIMESTAMP else n
                     for n, k in TABLES[table])
    return f"COPY (SELECT {cols} FROM {table} ORDER BY date_time) TO STDOUT WITH (FORMAT csv)"


# ---- DuckDB ----
_DUCKDB_TYPES = {BIGINT: "BIGINT", TIMESTAMP: "TIMESTAMP", VARCHAR: "VARCHAR"}


def duckdb_source(table, path):
    cols = ", ".join(f"'{n}': '{_DUCKDB_TYPES[k]}'" for n, k in TABLES[table])
    return (f"CREATE VIEW {table} AS SELECT * FROM read_csv('{path}', header = false, "
            f"columns = {{{cols}}}, timestampformat = '%Y-%m-%d %H:%M:%S.%g', auto_detect = false)")


# A 10-second tumbling window's start and end from a timestamp, in DuckDB.
def _duck_window(col, size_ms=10_000, end=False):
    start = f"epoch_ms({col}) // {size_ms} * {size_ms}"
    return f"make_timestamp(({start}{f' + {size_ms}' if end else ''}) * 1000)"


DUCKDB = {
    "tumble": """SELECT auction, make_timestamp(ws * 1000) AS window_start,
       make_timestamp((ws + 10000) * 1000) AS window_end, count(*) AS bids, sum(price) AS total
  FROM (SELECT auction, price, epoch_ms(date_time) // 10000 * 10000 AS ws FROM bids)
  GROUP BY auction, ws""",
    "hop": """SELECT auction, make_timestamp(ws * 1000) AS window_start,
       make_timestamp((ws + 10000) * 1000) AS window_end, count(*) AS bids, max(price) AS top
  FROM (SELECT auction, price, unnest([s0, s0 - 5000]) AS ws
        FROM (SELECT auction, price, epoch_ms(date_time) // 5000 * 5000 AS s0 FROM bids))
  GROUP BY auction, ws""",
    "session": """SELECT bidder, min(date_time) AS window_start, max(date_time) + INTERVAL 3 SECOND AS window_end,
       count(*) AS bids, sum(price) AS total
  FROM (SELECT *, sum(new) OVER (PARTITION BY bidder ORDER BY date_time ROWS UNBOUNDED PRECEDING) AS sid
        FROM (SELECT bidder, price, date_time,
                     CASE WHEN date_time <= lag(date_time) OVER (PARTITION BY bidder ORDER BY date_time)
                                           + INTERVAL 3 SECOND THEN 0 ELSE 1 END AS new
              FROM bids))
  GROUP BY bidder, sid""",
    "join": """WITH w AS (SELECT *, epoch_ms(date_time) // 10000 AS ws FROM bids),
     m AS (SELECT ws, max(price) AS maxprice FROM w GROUP BY ws)
SELECT w.auction, w.price, w.bidder, w.date_time FROM w JOIN m ON w.ws = m.ws AND w.price = m.maxprice""",
    "q0": WEIR["q0"],
    "q1": WEIR["q1"],
    "q2": WEIR["q2"],
    "q3": _NEXMARK_Q3,
    "q4": _NEXMARK_Q4,
    # HOP 10 s every 2 s: a bid is in the five windows starting at its
    # 2-second slot and the four before it.
    "q5": """WITH h AS (SELECT auction, unnest([s0, s0 - 2000, s0 - 4000, s0 - 6000, s0 - 8000]) AS ws
                FROM (SELECT auction, epoch_ms(date_time) // 2000 * 2000 AS s0 FROM bid)),
     c AS (SELECT auction, ws, count(*) AS num FROM h GROUP BY auction, ws),
     m AS (SELECT ws, max(num) AS maxn FROM c GROUP BY ws)
SELECT c.auction, c.num FROM c JOIN m ON c.ws = m.ws AND c.num >= m.maxn""",
    "q6": f"""SELECT seller, id, final, window_end,
    avg(final) OVER (PARTITION BY seller ORDER BY window_end, date_time, id
                     ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS avg_final
  FROM (
    SELECT a.id, a.seller, a.date_time, {_duck_window('a.date_time', end=True)} AS window_end,
           max(b.price) AS final
    FROM auction AS a, bid AS b
    WHERE a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.expires
      AND b.date_time <= a.date_time + INTERVAL 30 SECOND
    GROUP BY ALL
  ) AS q""",
    "q7": f"""SELECT B.auction, B.price, B.bidder, B.date_time
  FROM bid B
  JOIN (
    SELECT MAX(price) AS maxprice, {_duck_window('date_time', end=True)} AS date_time
    FROM bid
    GROUP BY ALL
  ) B1 ON B.price = B1.maxprice
  WHERE B.date_time BETWEEN B1.date_time - INTERVAL 10 SECOND AND B1.date_time""",
    "q8": f"""SELECT P.id, P.name, P.starttime
  FROM (SELECT DISTINCT id, name, {_duck_window('date_time')} AS starttime FROM person) P
  JOIN (SELECT DISTINCT seller, {_duck_window('date_time')} AS starttime FROM auction) A
    ON P.id = A.seller AND P.starttime = A.starttime""",
}


# ---- Flink SQL ----
_FLINK_TYPES = {BIGINT: "BIGINT", TIMESTAMP: "TIMESTAMP(3)", VARCHAR: "STRING", DOUBLE: "DOUBLE",
                DECIMAL: "DECIMAL(23, 3)"}


def flink_source(table, path):
    cols = ", ".join(f"{n} {_FLINK_TYPES[k]}" for n, k in TABLES[table])
    return f"""CREATE TABLE {table} ({cols},
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'csv')"""


def flink_sink_columns(query):
    return ", ".join(f"{n} {_FLINK_TYPES[k]}" for n, k in COLUMNS[query])


_FLINK_SESSION_BATCH = """SELECT bidder, MIN(date_time) AS window_start,
       MAX(date_time) + INTERVAL '3' SECOND AS window_end, COUNT(*) AS bids, SUM(price) AS total
  FROM (SELECT bidder, price, date_time,
               SUM(new_s) OVER (PARTITION BY bidder ORDER BY date_time
                                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS sid
        FROM (SELECT bidder, price, date_time,
                     CASE WHEN date_time <= LAG(date_time) OVER (PARTITION BY bidder ORDER BY date_time)
                                           + INTERVAL '3' SECOND THEN 0 ELSE 1 END AS new_s
              FROM bids))
  GROUP BY bidder, sid"""

_FLINK_SESSION_STREAM = """SELECT bidder, window_start, window_end, COUNT(*) AS bids, SUM(price) AS total
  FROM TABLE(SESSION(TABLE bids PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '3' SECOND))
  GROUP BY bidder, window_start, window_end"""

FLINK = {
    "tumble": """SELECT auction, window_start, window_end, COUNT(*) AS bids, SUM(price) AS total
  FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY auction, window_start, window_end""",
    "hop": """SELECT auction, window_start, window_end, COUNT(*) AS bids, MAX(price) AS top
  FROM TABLE(HOP(TABLE bids, DESCRIPTOR(date_time), INTERVAL '5' SECOND, INTERVAL '10' SECOND))
  GROUP BY auction, window_start, window_end""",
    "join": """SELECT L.auction, L.price, L.bidder, L.date_time
  FROM (SELECT * FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))) L
  JOIN (SELECT window_start, window_end, MAX(price) AS maxprice
        FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
        GROUP BY window_start, window_end) R
    ON L.window_start = R.window_start AND L.window_end = R.window_end AND L.price = R.maxprice""",
    "q0": "SELECT auction, bidder, price, date_time, extra FROM bid",
    "q1": "SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid",
    "q2": "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0",
    "q3": """SELECT P.name, P.city, P.state, A.id
  FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
  WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')""",
    "q4": """SELECT Q.category, AVG(CAST(Q.final AS DOUBLE)) AS avg_final
  FROM (
    SELECT MAX(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, A.category
  ) Q
  GROUP BY Q.category""",
    "q5": """SELECT AuctionBids.auction, AuctionBids.num
  FROM (
    SELECT auction, COUNT(*) AS num, window_start AS starttime, window_end AS endtime
    FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
    GROUP BY auction, window_start, window_end
  ) AS AuctionBids
  JOIN (
    SELECT MAX(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
    FROM (
      SELECT COUNT(*) AS num, window_start AS starttime, window_end AS endtime
      FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
      GROUP BY auction, window_start, window_end
    ) AS CountBids
    GROUP BY CountBids.starttime, CountBids.endtime
  ) AS MaxBids
  ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
     AND AuctionBids.num >= MaxBids.maxn""",
    "q6": """SELECT seller, id, final, window_end,
    AVG(CAST(final AS DOUBLE)) OVER (PARTITION BY seller ORDER BY window_end, date_time, id
                                     ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS avg_final
  FROM (
    SELECT A.id, A.seller, A.date_time, A.window_end, MAX(B.price) AS final
    FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) AS A, bid AS B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
      AND B.date_time <= A.date_time + INTERVAL '30' SECOND
    GROUP BY A.id, A.seller, A.date_time, A.window_start, A.window_end
  ) AS Q""",
    "q7": """SELECT B.auction, B.price, B.bidder, B.date_time
  FROM bid B
  JOIN (
    SELECT MAX(price) AS maxprice, window_end AS date_time
    FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    GROUP BY window_start, window_end
  ) B1 ON B.price = B1.maxprice
  WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time""",
    "q8": """SELECT P.id, P.name, P.starttime
  FROM (
    SELECT id, name, window_start AS starttime, window_end AS endtime
    FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    GROUP BY id, name, window_start, window_end
  ) P
  JOIN (
    SELECT seller, window_start AS starttime, window_end AS endtime
    FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    GROUP BY seller, window_start, window_end
  ) A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime""",
}

# Why Flink does not run a query in a mode, where it does not.
FLINK_UNSUPPORTED = {
    # Tried (2.3.0): "The window can only be ordered by a single time column".
    # Ordered by one, its input (an aggregate over a join bounded by
    # `expires`, a regular join) would still be updating, which Flink's OVER
    # does not consume (the reference marks q6 "not supported yet").
    ("q6", "stream"): "unsupported: Flink streaming OVER takes one time column to order by "
                      "and an append-only input",
}


def flink(query, mode):
    if query == "session":
        return _FLINK_SESSION_STREAM if mode == "stream" else _FLINK_SESSION_BATCH
    return FLINK[query]
