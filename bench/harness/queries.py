"""The benchmark's queries, once per engine dialect, and the columns they return.

Every engine computes the same result multiset for a query; the texts differ
only where the dialects do. Window bounds are epoch-aligned everywhere and
every timestamp is a millisecond event time without time zone.

Sessions: every engine starts a new session when two events of a bidder are
more than `gap` apart; events exactly `gap` apart are one session. That is
Flink's streaming SESSION window (it merges windows that touch) and Weir's
SESSION, streaming and batch. Flink 2.x has no session windows in batch mode
("Unaligned windows like session are not supported in batch mode yet"), so
Flink batch computes sessions with LAG and a running SUM over the bidder's
events, like DuckDB and like Weir's own batch rewrite.

Join: Nexmark Q7-style, the highest bid(s) of every 10-second window, as a
join of the bids with their per-window maximum. In Flink streaming this is a
window join (state is dropped per window); Weir's streaming views refuse
joins today (0A000), so Weir answers it in batch only.
"""

TIMESTAMP = "TIMESTAMP"
BIGINT = "BIGINT"

# The columns each query returns, in order: what result files are read as.
COLUMNS = {
    "tumble": [("auction", BIGINT), ("window_start", TIMESTAMP), ("window_end", TIMESTAMP),
               ("bids", BIGINT), ("total", BIGINT)],
    "hop": [("auction", BIGINT), ("window_start", TIMESTAMP), ("window_end", TIMESTAMP),
            ("bids", BIGINT), ("top", BIGINT)],
    "session": [("bidder", BIGINT), ("window_start", TIMESTAMP), ("window_end", TIMESTAMP),
                ("bids", BIGINT), ("total", BIGINT)],
    "join": [("auction", BIGINT), ("price", BIGINT), ("bidder", BIGINT), ("date_time", TIMESTAMP)],
}

DESCRIBE = {
    "tumble": "TUMBLE 10 s: count(*), sum(price) per auction",
    "hop": "HOP 10 s every 5 s: count(*), max(price) per auction",
    "session": "SESSION gap 3 s: count(*), sum(price) per bidder",
    "join": "Q7-style join: the top bids of each 10 s window",
}

QUERIES = list(COLUMNS)

# ---- Weir: the same text for the streaming view and the batch SELECT ----
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
}
WEIR_WINDOWED = {"tumble", "hop", "session"}  # get EMIT ON WINDOW CLOSE as a view

WEIR_COLUMNS = "auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP"


def weir_stream_ddl(path):
    return f"""CREATE STREAM bids ({WEIR_COLUMNS},
  WATERMARK FOR date_time AS date_time - INTERVAL '2 seconds')
WITH (connector = 'file', path = '{path}', format = 'csv', header = 'false')"""


def weir_table_ddl(path):
    return f"""CREATE TABLE bids ({WEIR_COLUMNS})
WITH (connector = 'file', path = '{path}', format = 'csv', header = 'false')"""


def weir_digest(query):
    """A one-row SELECT that needs every column of every result row.

    The batch timing runs this, so the result rows are computed in full but
    not shipped to the client (the streaming view keeps its rows in the
    server, too). Every aggregate column is summed, so none can be pruned."""
    cols = COLUMNS[query]
    parts = ["count(*)"]
    for name, kind in cols:
        parts.append(f"sum({name})" if kind == BIGINT else f"max({name})")
    return f"SELECT {', '.join(parts)} FROM ({WEIR[query]}) AS r"


# ---- DuckDB ----
def duckdb_source(path):
    return (f"CREATE VIEW bids AS SELECT * FROM read_csv('{path}', header = false, "
            "columns = {'auction': 'BIGINT', 'bidder': 'BIGINT', 'price': 'BIGINT', "
            "'date_time': 'TIMESTAMP'}, timestampformat = '%Y-%m-%d %H:%M:%S.%g')")


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
}


# ---- Flink SQL ----
def flink_source(path):
    return f"""CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'csv')"""


def flink_sink_columns(query):
    return ", ".join(f"{n} {'TIMESTAMP(3)' if k == TIMESTAMP else 'BIGINT'}"
                     for n, k in COLUMNS[query])


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


def flink(query, mode):
    if query == "session":
        return _FLINK_SESSION_STREAM if mode == "stream" else _FLINK_SESSION_BATCH
    return {
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
    }[query]
