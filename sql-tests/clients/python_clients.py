"""Real Python clients against a running Weir: psycopg 3 (with parameters),
SQLAlchemy reflection and pandas.read_sql. Each check asserts the rows.

Usage: python_clients.py <port>. The server must have the tables that
server/tests/clients.rs creates (trips over data/trips.csv).
"""

import sys

import pandas as pd
import psycopg
import sqlalchemy as sa

port = int(sys.argv[1])
url = f"postgresql://weir@127.0.0.1:{port}/weir"


def check(name, actual, expected):
    if actual != expected:
        print(f"FAIL {name}: expected {expected!r}, got {actual!r}")
        sys.exit(1)
    print(f"ok   {name}")


# psycopg 3: server-side parameters go through the extended protocol.
with psycopg.connect(url, autocommit=True) as conn:
    rows = conn.execute(
        "SELECT id, city, fare FROM trips WHERE city = %s AND fare > %s ORDER BY id",
        ("berlin", 10.0),
    ).fetchall()
    check("psycopg parameters", rows, [(1, "berlin", 12.5), (6, "berlin", 22.0)])

    row = conn.execute("SELECT count(*) FROM trips WHERE id = %s", (3,)).fetchone()
    check("psycopg int parameter", row, (3 // 3,))

    row = conn.execute("SELECT %s::text AS greeting, %s::bigint + 1 AS n", ("hi", 41)).fetchone()
    check("psycopg typed parameters", row, ("hi", 42))

    # A prepared statement reused, and binary results.
    with conn.cursor(binary=True) as cur:
        for city, expected in [("paris", 2), ("lisbon", 1)]:
            cur.execute("SELECT count(*) FROM trips WHERE city = %s", (city,), prepare=True)
            check(f"psycopg prepared binary {city}", cur.fetchone(), (expected,))

    # Errors carry SQLSTATE and position, and the connection survives.
    try:
        conn.execute("SELECT nope FROM trips")
        check("psycopg error", "no error", "an error")
    except psycopg.errors.UndefinedColumn as e:
        check("psycopg error sqlstate", e.sqlstate, "42703")
        check("psycopg error position", e.diag.statement_position, "8")
    check("psycopg after error", conn.execute("SELECT 1").fetchone(), (1,))

    # NULLs, booleans, timestamps, decimals in text form.
    row = conn.execute(
        "SELECT fare, paid, started_at FROM trips WHERE id = 5"
    ).fetchone()
    check("psycopg null/bool", (row[0], row[1]), (None, False))
    check("psycopg timestamp", str(row[2]), "2024-01-01 10:00:00")

# A transaction, as drivers open one by default.
with psycopg.connect(url) as conn:
    check("psycopg in transaction", conn.execute("SELECT 2").fetchone(), (2,))
    conn.commit()

# A rollback with statements prepared server-side: psycopg then sends
# DEALLOCATE ALL and prepares them again under new names.
with psycopg.connect(url) as conn:
    for _ in range(2):
        row = conn.execute("SELECT count(*) FROM trips WHERE city = %s", ("paris",), prepare=True).fetchone()
        check("psycopg prepared in a transaction", row, (2,))
        conn.rollback()
    conn.execute("DEALLOCATE PREPARE some_name")
    row = conn.execute("SELECT count(*) FROM trips WHERE city = %s", ("berlin",), prepare=True).fetchone()
    check("psycopg prepared after DEALLOCATE ALL", row, (3,))

# SQLAlchemy: reflection through the catalog.
engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
inspector = sa.inspect(engine)
check("sqlalchemy get_table_names", sorted(inspector.get_table_names()), ["cities", "trips", "users"])
check("sqlalchemy get_view_names", inspector.get_view_names(), ["paid_trips"])
check("sqlalchemy get_materialized_view_names", inspector.get_materialized_view_names(), ["per_country"])
# Keys and indexes. Reflection runs each catalog query several times, so
# psycopg prepares them server-side and, on the pool's rollback, sends
# DEALLOCATE ALL.
keyed = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
inspector = sa.inspect(keyed)
pk = inspector.get_pk_constraint("users")
check("sqlalchemy get_pk_constraint", (pk["constrained_columns"], pk["name"]), (["id"], "users_pkey"))
# The primary key's index is the constraint's; SQLAlchemy lists other indexes only.
check("sqlalchemy get_indexes", inspector.get_indexes("users"), [])
check("sqlalchemy get_foreign_keys", inspector.get_foreign_keys("users"), [])
check("sqlalchemy get_unique_constraints", inspector.get_unique_constraints("users"), [])
check(
    "sqlalchemy get_columns users",
    [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns("users")],
    [("id", "BIGINT", False), ("name", "TEXT", False), ("country", "TEXT", True)],
)
users = sa.Table("users", sa.MetaData(), autoload_with=keyed)
check("sqlalchemy reflected primary key", [c.name for c in users.primary_key.columns], ["id"])
with keyed.begin() as conn:
    conn.execute(users.insert(), [{"id": 1, "name": "a_b", "country": "DE"}, {"id": 2, "name": "ab", "country": "FR"}])
with keyed.connect() as conn:
    # startswith(autoescape=True) sends LIKE .. ESCAPE '/'.
    rows = conn.execute(sa.select(users.c.id).where(users.c.name.startswith("a_", autoescape=True))).all()
    check("sqlalchemy LIKE ESCAPE", [tuple(r) for r in rows], [(1,)])
inspector = sa.inspect(engine)
columns = [(c["name"], str(c["type"])) for c in inspector.get_columns("trips")]
check(
    "sqlalchemy get_columns",
    columns,
    [
        ("id", "BIGINT"),
        ("city", "TEXT"),
        ("fare", "DOUBLE PRECISION"),
        ("distance_km", "DOUBLE PRECISION"),
        ("started_at", "TIMESTAMP"),
        ("paid", "BOOLEAN"),
    ],
)
with engine.connect() as conn:
    result = conn.execute(sa.text("SELECT city, count(*) AS n FROM trips GROUP BY city ORDER BY city")).all()
    check("sqlalchemy query", [tuple(r) for r in result], [("berlin", 3), ("lisbon", 1), ("paris", 2)])

# pandas.read_sql through SQLAlchemy.
df = pd.read_sql("SELECT id, fare FROM trips ORDER BY id", engine)
check("pandas shape", df.shape, (6, 2))
check("pandas sum", float(df["fare"].sum()), 89.75)
check("pandas dtypes", [str(t) for t in df.dtypes], ["int64", "float64"])

print("python clients: all checks passed")
