//! Transactions on tables Weir owns, as other sessions and views see them,
//! through the real binary and tokio-postgres: read committed (a
//! transaction's writes are seen by others all at once at COMMIT, never
//! before, never after a ROLLBACK or a dropped connection), writers to one
//! table take turns (no lost update), a deadlock fails one of the two, and
//! after a kill -9 amid concurrent transactions exactly the committed ones
//! are there, in the tables and in a view over them. The rules one session
//! sees are in `sql-tests/tables/transactions.slt`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::WeirProcess;
use tokio_postgres::Client;

/// A generous deadline for what a test waits on (never a timed assertion:
/// only a broken server reaches it).
const DEADLINE: Duration = Duration::from_secs(120);

async fn one_number(client: &Client, sql: &str) -> i64 {
    let rows = common::sorted_rows(client, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0]
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {rows:?}: {e}"))
}

/// Within the deadline, or the test fails (a hang is a bug).
async fn within<F: std::future::Future>(what: &str, work: F) -> F::Output {
    tokio::time::timeout(DEADLINE, work)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {DEADLINE:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_see_a_transaction_whole_at_commit_and_never_after_rollback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let writer = common::connect(&server).await;
    let reader = common::connect(&server).await;
    writer
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT);
             INSERT INTO t VALUES (1, 100), (2, 0);
             CREATE MATERIALIZED VIEW total AS SELECT count(*) AS n, sum(v) AS s FROM t",
        )
        .await
        .expect("setup");

    // Open: the writer sees its own rows, the reader and the view do not.
    writer
        .batch_execute("BEGIN; INSERT INTO t VALUES (3, 7); UPDATE t SET v = v + 1 WHERE id = 1")
        .await
        .expect("begin and write");
    assert_eq!(one_number(&writer, "SELECT sum(v) FROM t").await, 108);
    assert_eq!(one_number(&reader, "SELECT sum(v) FROM t").await, 100);
    reader.batch_execute("FLUSH").await.expect("FLUSH");
    assert_eq!(
        common::sorted_rows(&reader, "SELECT n, s FROM total").await,
        vec!["2|100"]
    );
    // ROLLBACK: never seen.
    writer.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(one_number(&reader, "SELECT sum(v) FROM t").await, 100);

    // Transfers between two rows keep the sum; a reader polling the table
    // and the view while they commit never sees half of one.
    let transfers = 100;
    let writing = tokio::spawn(async move {
        for _ in 0..transfers {
            writer
                .batch_execute(
                    "BEGIN;
                     UPDATE t SET v = v - 1 WHERE id = 1;
                     UPDATE t SET v = v + 1 WHERE id = 2;
                     COMMIT",
                )
                .await
                .expect("a transfer");
        }
        writer
    });
    let mut seen = 0;
    while !writing.is_finished() {
        let rows = common::sorted_rows(&reader, "SELECT sum(v), count(*) FROM t").await;
        assert_eq!(rows, vec!["100|2"], "a reader saw part of a transfer");
        let view = common::sorted_rows(&reader, "SELECT n, s FROM total").await;
        assert!(
            view.is_empty() || view == vec!["2|100"],
            "the view showed part of a transfer: {view:?}"
        );
        seen += 1;
    }
    let writer = writing.await.expect("writer");
    assert!(seen > 0);
    reader.batch_execute("FLUSH").await.expect("FLUSH");
    assert_eq!(
        common::sorted_rows(&reader, "SELECT id, v FROM t").await,
        vec![format!("1|{}", 100 - transfers), format!("2|{transfers}")]
    );
    assert_eq!(
        common::sorted_rows(&reader, "SELECT n, s FROM total").await,
        vec!["2|100"]
    );
    drop(writer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_rolls_back_and_frees_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let other = common::connect(&server).await;
    other
        .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
        .await
        .expect("create");
    let gone = common::connect(&server).await;
    gone.batch_execute("BEGIN; INSERT INTO t VALUES (1, 'never committed')")
        .await
        .expect("write");
    drop(gone);
    // The same key is free once the server has rolled the session back;
    // until then the insert waits for the table (no error, no duplicate).
    within(
        "an insert after the other session dropped",
        other.batch_execute("INSERT INTO t VALUES (1, 'mine')"),
    )
    .await
    .expect("insert after the drop");
    assert_eq!(
        common::sorted_rows(&other, "SELECT * FROM t").await,
        vec!["1|mine"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_to_one_table_take_turns_and_lose_no_update() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let first = common::connect(&server).await;
    let second = common::connect(&server).await;
    first
        .batch_execute(
            "CREATE TABLE c (id BIGINT PRIMARY KEY, n BIGINT); INSERT INTO c VALUES (1, 0)",
        )
        .await
        .expect("setup");
    first
        .batch_execute("BEGIN; UPDATE c SET n = n + 100 WHERE id = 1")
        .await
        .expect("first update");
    // The second writer waits for the first one's COMMIT, then updates the
    // committed row.
    let waiting = tokio::spawn(async move {
        second
            .batch_execute("UPDATE c SET n = n + 1 WHERE id = 1")
            .await
            .expect("second update");
        second
    });
    first.batch_execute("COMMIT").await.expect("commit");
    let second = within("the waiting writer", waiting).await.expect("task");
    assert_eq!(one_number(&second, "SELECT n FROM c").await, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_fails_one_transaction_and_the_other_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let a = common::connect(&server).await;
    let b = common::connect(&server).await;
    a.batch_execute(
        "CREATE TABLE x (id BIGINT PRIMARY KEY); CREATE TABLE y (id BIGINT PRIMARY KEY)",
    )
    .await
    .expect("setup");
    a.batch_execute("BEGIN; INSERT INTO x VALUES (1)")
        .await
        .expect("a takes x");
    b.batch_execute("BEGIN; INSERT INTO y VALUES (1)")
        .await
        .expect("b takes y");
    // Each now wants the other's table.
    let cross = |client: Client, table: &'static str| {
        tokio::spawn(async move {
            let result = client
                .batch_execute(&format!("INSERT INTO {table} VALUES (2)"))
                .await;
            // The loser's block is aborted: end it, which frees its table.
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            client.batch_execute(end).await.expect("end the block");
            (client, result.err().and_then(|e| e.code().cloned()))
        })
    };
    let (a_task, b_task) = (cross(a, "y"), cross(b, "x"));
    let (a, a_err) = within("a", a_task).await.expect("a task");
    let (_b, b_err) = within("b", b_task).await.expect("b task");
    let deadlock = tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED;
    let failed: Vec<_> = [&a_err, &b_err].into_iter().flatten().collect();
    assert_eq!(failed, vec![&deadlock], "a: {a_err:?}, b: {b_err:?}");
    // The winner's two rows in each table it wrote, the loser's none.
    let x = common::sorted_rows(&a, "SELECT id FROM x").await;
    let y = common::sorted_rows(&a, "SELECT id FROM y").await;
    if a_err.is_none() {
        assert_eq!((x, y), (vec!["1".to_string()], vec!["2".to_string()]));
    } else {
        assert_eq!((x, y), (vec!["2".to_string()], vec!["1".to_string()]));
    }
}

/// How far a writer's transaction got, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Written, COMMIT not sent: must not survive.
    Open,
    /// COMMIT sent, no answer (the kill came first): either way, but whole.
    CommitSent,
    /// COMMIT acknowledged: must survive.
    Committed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_exactly_the_committed_transactions_are_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--checkpoint-interval", "200ms"];
    let server = WeirProcess::start_with(dir.path(), &args, &[]);
    let setup = common::connect(&server).await;
    setup
        .batch_execute(
            "CREATE TABLE a (id BIGINT PRIMARY KEY, txn BIGINT, writer BIGINT);
             CREATE TABLE b (txn BIGINT PRIMARY KEY, writer BIGINT);
             CREATE TABLE c (id BIGINT PRIMARY KEY);
             CREATE MATERIALIZED VIEW per_writer AS
               SELECT writer, count(*) AS rows, sum(txn) AS txns FROM a GROUP BY writer",
        )
        .await
        .expect("setup");

    // A transaction that is open at the kill for sure: its own table.
    let holder = common::connect(&server).await;
    holder
        .batch_execute("BEGIN; INSERT INTO c VALUES (1), (2), (3)")
        .await
        .expect("open transaction");

    // Writers commit transactions of three rows in `a` and one in `b`,
    // concurrently, until the kill; each records how far each got.
    let seen: Arc<parking_lot::Mutex<HashMap<i64, Seen>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..3i64 {
        let client = common::connect(&server).await;
        let seen = seen.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let txn = w * 1_000_000 + i;
                let body = format!(
                    "BEGIN;
                     INSERT INTO a VALUES ({0}, {1}, {2}), ({3}, {1}, {2});
                     INSERT INTO a VALUES ({4}, {1}, {2});
                     INSERT INTO b VALUES ({1}, {2})",
                    txn * 10,
                    txn,
                    w,
                    txn * 10 + 1,
                    txn * 10 + 2
                );
                seen.lock().insert(txn, Seen::Open);
                if client.batch_execute(&body).await.is_err() {
                    return;
                }
                seen.lock().insert(txn, Seen::CommitSent);
                if client.batch_execute("COMMIT").await.is_err() {
                    return;
                }
                seen.lock().insert(txn, Seen::Committed);
            }
        }));
    }
    within("five commits per writer", async {
        loop {
            let committed = {
                let seen = seen.lock();
                (0..3i64)
                    .map(|w| {
                        seen.iter()
                            .filter(|(t, s)| **t / 1_000_000 == w && **s == Seen::Committed)
                            .count()
                    })
                    .min()
                    .unwrap_or(0)
            };
            if committed >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    server.kill();
    for writer in writers {
        let _ = writer.await;
    }
    drop((holder, setup));
    let seen = seen.lock().clone();

    let server = WeirProcess::start_with(dir.path(), &args, &[]);
    let client = common::connect(&server).await;
    let mut rows_a: HashMap<i64, i64> = HashMap::new();
    for row in common::sorted_rows(&client, "SELECT txn, count(*) FROM a GROUP BY txn").await {
        let (txn, n) = row.split_once('|').expect("two columns");
        rows_a.insert(txn.parse().expect("txn"), n.parse().expect("count"));
    }
    let in_b: std::collections::HashSet<i64> = common::sorted_rows(&client, "SELECT txn FROM b")
        .await
        .iter()
        .map(|t| t.parse().expect("txn"))
        .collect();
    let mut committed = 0;
    for (txn, state) in &seen {
        let a = rows_a.get(txn).copied().unwrap_or(0);
        let b = in_b.contains(txn);
        // Whole or not at all, in both tables.
        assert!(
            (a == 3 && b) || (a == 0 && !b),
            "transaction {txn} ({state:?}) came back in part: {a} rows in a, in b: {b}"
        );
        match state {
            Seen::Committed => {
                assert!(b, "committed transaction {txn} is gone");
                committed += 1;
            }
            Seen::Open => assert!(!b, "transaction {txn} never committed but is there"),
            Seen::CommitSent => {}
        }
    }
    assert!(committed >= 15, "{committed} committed");
    // Nothing that no writer wrote.
    for txn in rows_a.keys() {
        assert!(seen.contains_key(txn), "transaction {txn} from nowhere");
    }
    assert_eq!(one_number(&client, "SELECT count(*) FROM c").await, 0);

    // The view over `a` holds exactly the committed rows.
    client.batch_execute("FLUSH").await.expect("FLUSH");
    let batch = common::sorted_rows(
        &client,
        "SELECT writer, count(*), sum(txn) FROM a GROUP BY writer",
    )
    .await;
    let view = common::sorted_rows(&client, "SELECT writer, rows, txns FROM per_writer").await;
    assert_eq!(view, batch);
}

// ---- COPY FROM: bounded chunks, all or nothing ----

/// Rows a COPY sends: more than one chunk's worth (a chunk is about 8 MiB
/// of parsed rows), so the failures below happen after chunks were written.
const COPY_ROWS: usize = 400_000;

/// Run a psycopg script (`sys.argv[1]` is the port); its stdout, or `None`
/// when psycopg is not installed (a skip, or a failure under CI).
fn psycopg(server: &WeirProcess, script: &str) -> Option<String> {
    let python = std::env::var("WEIR_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    if !common::have(&python, &["-c", "import psycopg"]) {
        return None;
    }
    let output = std::process::Command::new(&python)
        .args(["-c", script, &server.pg_port.to_string()])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(stdout)
}

const PSYCOPG_COPY: &str = r#"
import sys, psycopg
port, rows = sys.argv[1], int(sys.argv[2])
dsn = f"host=127.0.0.1 port={port} dbname=weir user=weir"

def data(bad_at=None):
    for start in range(0, rows, 10000):
        yield "".join(
            ("oops" if i == bad_at else str(i)) + f",name{i}\n"
            for i in range(start, min(start + 10000, rows))
        ).encode()

def copy(conn, bad_at=None):
    with conn.cursor().copy("COPY c FROM STDIN WITH (FORMAT csv)") as copy:
        for block in data(bad_at):
            copy.write(block)

def count(conn):
    return conn.execute("SELECT count(*) FROM c").fetchone()[0]

with psycopg.connect(dsn, autocommit=True) as conn:
    conn.execute("CREATE TABLE c (id BIGINT PRIMARY KEY, name TEXT)")
    # A bad row near the end: nothing of the COPY stays.
    try:
        copy(conn, bad_at=rows - 10)
        print("bad row accepted")
    except psycopg.errors.InvalidTextRepresentation:
        print("bad row", count(conn))
    # Inside a block: the COPY joins the transaction; ROLLBACK takes it back.
    with psycopg.connect(dsn) as tx:
        tx.execute("INSERT INTO c VALUES (-1, 'before')")
        copy(tx)
        print("own view", count(tx))
        print("others", count(conn))
        tx.rollback()
    print("rolled back", count(conn))
    # A good COPY, while another session reads: it sees none, then all.
    copy(conn)
    print("copied", count(conn))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_is_all_or_nothing_and_joins_a_block_psycopg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let script = PSYCOPG_COPY.replace("sys.argv[2]", &format!("'{COPY_ROWS}'"));
    let Some(out) = psycopg(&server, &script) else {
        return;
    };
    let n = COPY_ROWS;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "bad row 0".to_string(),
            format!("own view {}", n + 1),
            "others 0".to_string(),
            "rolled back 0".to_string(),
            format!("copied {n}"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_cut_off_by_a_dropped_connection_or_a_kill_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    client
        .batch_execute("CREATE TABLE c (id BIGINT PRIMARY KEY, name TEXT)")
        .await
        .expect("create");
    // The client goes away in the middle of its COPY (no CopyDone, no
    // CopyFail): the server rolls the COPY back and frees the table.
    let cut_off = r#"
import os, sys, psycopg
conn = psycopg.connect(f"host=127.0.0.1 port={sys.argv[1]} dbname=weir user=weir", autocommit=True)
cur = conn.cursor()
# Entered and never left: leaving (even by garbage collection) would send
# CopyDone or CopyFail.
copying = cur.copy("COPY c FROM STDIN WITH (FORMAT csv)")
copy = copying.__enter__()
for start in range(0, ROWS, 10000):
    copy.write("".join(f"{i},n{i}\n" for i in range(start, start + 10000)).encode())
print("sent", flush=True)
os._exit(0)
"#
    .replace("ROWS", &COPY_ROWS.to_string());
    if psycopg(&server, &cut_off).is_none() {
        return;
    }
    within(
        "an insert once the cut-off COPY is rolled back",
        client.batch_execute("INSERT INTO c VALUES (1, 'after')"),
    )
    .await
    .expect("insert");
    assert_eq!(one_number(&client, "SELECT count(*) FROM c").await, 1);

    // kill -9 while a COPY is open: after the restart, nothing of it.
    let mut python = std::process::Command::new("python3")
        .args(["-c", &cut_off.replace("os._exit(0)", "sys.stdin.read()")])
        .arg(server.pg_port.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(python.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    assert_eq!(line.trim(), "sent");
    drop(client);
    server.kill();
    let _ = python.kill();
    let _ = python.wait();
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    assert_eq!(
        common::sorted_rows(&client, "SELECT * FROM c").await,
        vec!["1|after"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_with_a_bad_row_leaves_nothing() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let files = tempfile::tempdir().expect("tempdir");
    let good = files.path().join("good.csv");
    let bad = files.path().join("bad.csv");
    let mut text = String::new();
    for i in 0..COPY_ROWS {
        text.push_str(&format!("{i},name {i}\n"));
    }
    std::fs::write(&good, &text).expect("write");
    text.push_str("not a number,x\n");
    std::fs::write(&bad, &text).expect("write");
    let psql = |args: &[&str]| {
        let output = std::process::Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                "weir",
                "-d",
                "weir",
            ])
            .args(["-p", &server.pg_port.to_string()])
            .args(args)
            .output()
            .expect("psql");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let copy =
        |file: &std::path::Path| format!("\\copy c FROM '{}' WITH (FORMAT csv)", file.display());
    let out = psql(&[
        "-c",
        "CREATE TABLE c (id BIGINT PRIMARY KEY, name TEXT)",
        "-c",
        &copy(&bad),
        "-c",
        "SELECT count(*) FROM c",
    ]);
    assert!(
        out.contains("invalid input syntax for type bigint"),
        "{out}"
    );
    assert!(out.lines().any(|l| l == "0"), "{out}");
    let out = psql(&["-c", &copy(&good), "-c", "SELECT count(*) FROM c"]);
    assert_eq!(
        out.lines().last(),
        Some(COPY_ROWS.to_string().as_str()),
        "{out}"
    );
}
