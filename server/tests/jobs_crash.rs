//! kill -9 in the middle of a suspend, of a savepoint and of an upgrade
//! (the server aborts at the `savepoint-before-info` failpoint: the
//! checkpoint is written and its chunks copied, the savepoint's
//! `savepoint.json` not yet), then a restart: the job is where its desired
//! state says, the half-written savepoint is not listed, and the view's
//! file sink adds up to the batch answer with every row exactly once.

mod common;
#[path = "common/jobs.rs"]
mod jobs;

use std::path::Path;
use std::time::{Duration, Instant};

use common::WeirProcess;
use tokio_postgres::Client;

/// A generous deadline for what a test waits on (never a timed assertion:
/// only a broken server reaches it).
const DEADLINE: Duration = Duration::from_secs(120);

const ARGS: [&str; 2] = ["--checkpoint-interval", "200ms"];

/// Abort (as kill -9) at the first savepoint's last step.
const ABORT_IN_SAVEPOINT: (&str, &str) = ("WEIR_FAILPOINT", "savepoint-before-info@1");

const BATCH: &str = "SELECT k, count(*) AS n, sum(id) AS total FROM t GROUP BY k";

/// What the sink's committed files add up to, as `k|n|total` lines
/// (inserts +1, deletes -1); panics on a row written or deleted twice.
fn folded(folder: &Path) -> Vec<String> {
    common::folded_sink(folder, &["k", "n", "total"])
}

/// Wait until the view and its sink's committed files equal the batch answer.
async fn settled(client: &Client, out: &Path) {
    client.simple_query("FLUSH").await.expect("FLUSH");
    let expected = common::sorted_rows(client, BATCH).await;
    assert_eq!(
        common::sorted_rows(client, "SELECT k, n, total FROM per_k").await,
        expected,
        "the view"
    );
    let deadline = Instant::now() + DEADLINE;
    loop {
        if folded(out) == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sink never added up to the batch answer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn write(client: &Client, from: i64) {
    client
        .batch_execute(&format!(
            "INSERT INTO t SELECT v, v % 11 FROM generate_series({from}, {}) AS s(v);
             UPDATE t SET k = k + 1 WHERE id BETWEEN {from} AND {from} + 9;
             DELETE FROM t WHERE id BETWEEN {from} + 10 AND {from} + 14",
            from + 299
        ))
        .await
        .expect("write");
}

async fn savepoints(client: &Client) -> Vec<String> {
    common::sorted_rows(client, "SHOW SAVEPOINTS FOR JOB per_k").await
}

/// Run `statement` on a server armed to abort in its savepoint: it must
/// not answer, and the process must be gone.
async fn aborted(server: WeirProcess, client: Client, statement: &str) {
    let outcome = client.simple_query(statement).await;
    assert!(outcome.is_err(), "{statement}: the server aborted");
    let mut server = server;
    let deadline = Instant::now() + DEADLINE;
    while !server.exited() {
        assert!(Instant::now() < deadline, "the server did not abort");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_suspend_a_savepoint_and_an_upgrade_leaves_jobs_savepoints_and_sinks_consistent()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[ABORT_IN_SAVEPOINT]);
    let client = common::connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT);
             CREATE MATERIALIZED VIEW per_k AS
               SELECT k, count(*) AS n, sum(id) AS total FROM t GROUP BY k;
             CREATE SINK per_k_out FROM per_k WITH (connector = 'file', path = '{}', format = 'json')",
            out.display()
        ))
        .await
        .expect("a view over a table, written out");
    write(&client, 1).await;
    settled(&client, &out).await;

    // 1. During a suspend.
    write(&client, 1001).await;
    aborted(server, client, "ALTER JOB per_k SUSPEND").await;
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[ABORT_IN_SAVEPOINT]);
    let client = common::connect(&server).await;
    let jobs = common::sorted_rows(&client, "SHOW JOBS").await;
    assert!(
        jobs.iter()
            .any(|r| r.starts_with("per_k|view|suspended|suspended|")),
        "suspended after the crash, as its desired state says: {jobs:?}"
    );
    assert_eq!(savepoints(&client).await, Vec::<String>::new());
    write(&client, 2001).await;
    client
        .simple_query("ALTER JOB per_k RESUME")
        .await
        .expect("resume");
    settled(&client, &out).await;

    // 2. During a savepoint (the restart above suspended the job again
    // without a new savepoint, so this is this process's first).
    write(&client, 3001).await;
    aborted(
        server,
        client,
        "CREATE SAVEPOINT before_upgrade FOR JOB per_k",
    )
    .await;
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[ABORT_IN_SAVEPOINT]);
    let client = common::connect(&server).await;
    assert_eq!(savepoints(&client).await, Vec::<String>::new());
    settled(&client, &out).await;
    write(&client, 4001).await;
    settled(&client, &out).await;

    // 3. During an upgrade (its savepoint of origin `upgrade`).
    let new = "SELECT k, n, total, total * 2 AS twice FROM
               (SELECT k, count(*) AS n, sum(id) AS total FROM t GROUP BY k)";
    aborted(
        server,
        client,
        &format!("CREATE OR REPLACE MATERIALIZED VIEW per_k AS {new}"),
    )
    .await;
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    assert_eq!(savepoints(&client).await, Vec::<String>::new());
    // The old version, whole.
    write(&client, 5001).await;
    settled(&client, &out).await;
    // The upgrade, tried again, goes through, and the sink goes on with
    // the new version: every row once still.
    client
        .simple_query("CREATE SAVEPOINT before_upgrade FOR JOB per_k")
        .await
        .expect("the savepoint's name is free");
    client
        .simple_query(&format!(
            "CREATE OR REPLACE MATERIALIZED VIEW per_k AS {new}"
        ))
        .await
        .expect("upgrade");
    write(&client, 6001).await;
    settled(&client, &out).await;
    assert_eq!(
        common::sorted_rows(&client, "SELECT k, twice FROM per_k").await,
        common::sorted_rows(&client, "SELECT k, sum(id) * 2 FROM t GROUP BY k").await
    );
    let listed = savepoints(&client).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().any(|r| r.ends_with("|upgrade")), "{listed:?}");
}

/// An interval join of two generators (auctions and the bids made on each
/// in the ten seconds after it opened): each side's rows are cut by the
/// other side's watermark, so its state is both sides' recent rows.
const INTERVAL_JOIN: &str = "SELECT a.id, b.bidder, b.price, b.date_time
  FROM auction AS a JOIN bid AS b
  ON a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.date_time + INTERVAL '10 seconds'";

/// The view's or the batch answer's `id|bidder|price` lines, sorted.
async fn pair_keys(client: &Client, query: &str) -> Vec<String> {
    common::sorted_rows(
        client,
        &format!("SELECT id, bidder, price FROM ({query}) AS pairs"),
    )
    .await
}

/// The sink's committed rows as sorted `id|bidder|price` lines; panics on a
/// pair written twice (each bid is in one pair at most: its auction's).
fn sink_pairs(folder: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut bids = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(entry.path()).expect("read a sink file");
            for line in text.lines() {
                let row: serde_json::Value = serde_json::from_str(line).expect("a json line");
                let bid = format!("{}|{}", row["bidder"], row["date_time"]);
                assert!(
                    bids.insert(bid.clone()),
                    "the pair of bid {bid} written twice"
                );
                lines.push(format!("{}|{}|{}", row["id"], row["bidder"], row["price"]));
            }
        }
    }
    lines.sort();
    lines
}

/// Is the view's job finished (its bounded inputs all read)?
async fn finished(client: &Client, view: &str) -> bool {
    common::sorted_rows(client, "SHOW MATERIALIZED VIEWS")
        .await
        .iter()
        .any(|r| r.starts_with(&format!("{view}|finished")))
}

/// Is the `pairs` job finished? `false` also when the server is going
/// (it may abort at its failpoint while asked).
async fn finished_or_gone(server: &WeirProcess) -> bool {
    let Ok((client, connection)) = server.pg_config().connect(tokio_postgres::NoTls).await else {
        return false;
    };
    tokio::spawn(connection);
    let Ok(messages) = client.simple_query("SHOW MATERIALIZED VIEWS").await else {
        return false;
    };
    messages.iter().any(|m| {
        matches!(m, tokio_postgres::SimpleQueryMessage::Row(r)
            if r.get(0) == Some("pairs") && r.get(1) == Some("finished"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_an_interval_join_runs_loses_and_repeats_no_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let args = ["--checkpoint-interval", "100ms"];
    // Bounded generators run as fast as they can, so the crashes are
    // placed: first the partition that reads the job's second batch (of
    // either stream) holds still there while the other stream runs to its
    // end, and the process is killed; then two runs abort (as kill -9) at
    // their join workers' 15th and 30th batch after restoring. Which
    // stream pauses, and whether a restored run ends before its first
    // checkpoint, depends on timing: the run that ends first is the case
    // of `a_restored_run_that_ends_before_its_first_barrier_keeps_the_views_rows`.
    let server = WeirProcess::start_with(
        dir.path(),
        &args,
        &[("WEIR_FAILPOINT", "source-batch/pairs@2:pause")],
    );
    let client = common::connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE STREAM auction WITH (connector = 'nexmark', table = 'auction', rate = 200, rows = 20000, seed = 7);
             CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 2000, rows = 200000, seed = 7);
             CREATE MATERIALIZED VIEW pairs AS {INTERVAL_JOIN};
             CREATE SINK pairs_out FROM pairs WITH (connector = 'file', path = '{}', format = 'json')",
            out.display()
        ))
        .await
        .expect("an interval join over two generators, written out");
    let deadline = Instant::now() + DEADLINE;
    while pair_keys(&client, "SELECT * FROM pairs").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no pair before the sources paused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let a checkpoint or two complete with the first rows in the state.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();
    for at in [15, 30] {
        let failpoint = format!("worker-batch/pairs@{at}");
        let mut server =
            WeirProcess::start_with(dir.path(), &args, &[("WEIR_FAILPOINT", &failpoint)]);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if server.exited() {
                eprintln!("aborted at {failpoint}");
                break;
            }
            if finished_or_gone(&server).await {
                eprintln!("finished before {failpoint}");
                break;
            }
            assert!(Instant::now() < deadline, "neither aborted nor finished");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let server = WeirProcess::start_with(dir.path(), &args, &[]);
    let client = common::connect(&server).await;
    let deadline = Instant::now() + DEADLINE;
    while !finished(&client, "pairs").await {
        assert!(Instant::now() < deadline, "the job never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.simple_query("FLUSH").await.expect("FLUSH");
    let expected = pair_keys(&client, INTERVAL_JOIN).await;
    assert!(
        expected.len() > 100,
        "too few pairs to test: {}",
        expected.len()
    );
    assert_eq!(
        pair_keys(&client, "SELECT * FROM pairs").await,
        expected,
        "the view after kill -9 differs from the batch answer"
    );
    let deadline = Instant::now() + DEADLINE;
    loop {
        if sink_pairs(&out) == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink's files never added up to the batch answer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bids under 5 000, an append-only view without a stateful stage.
const CHEAP: &str = "SELECT auction, bidder, price, date_time FROM bid WHERE price < 5000";

/// A run restored from a checkpoint whose inputs end before its first
/// barrier writes only its final snapshot (a view with a file sink). That
/// snapshot was labelled epoch 1 whatever the restored epoch, so it named
/// its view chunk `a1-0`, the name of the first checkpoint's chunk, and
/// replaced it: the rows the restored checkpoint held were gone from the
/// finished checkpoint. (The interval join's kill -9 test above lost its
/// earliest pairs so.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_run_that_ends_before_its_first_barrier_keeps_the_views_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The generator holds still after its second batch (16 384 of its
    // 20 000 rows) while checkpoints go on.
    let server = WeirProcess::start_with(
        dir.path(),
        &["--checkpoint-interval", "100ms"],
        &[("WEIR_FAILPOINT", "source-batch/cheap@2:pause")],
    );
    let client = common::connect(&server).await;
    // The file sink makes the job's end a checkpoint of its own (the final
    // snapshot): the files must be committed with what they hold.
    client
        .batch_execute(&format!(
            "CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 2000, rows = 20000, seed = 7);
             CREATE MATERIALIZED VIEW cheap AS {CHEAP};
             CREATE SINK cheap_out FROM cheap WITH (connector = 'file', path = '{}', format = 'json')",
            dir.path().join("out").display()
        ))
        .await
        .expect("a view over a bounded generator, written out");
    let deadline = Instant::now() + DEADLINE;
    while common::sorted_rows(&client, "SELECT * FROM cheap LIMIT 1")
        .await
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the view never held a row");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two checkpoints later, one holds the view's rows so far.
    let epoch = |row: &std::collections::HashMap<String, String>| {
        row["last_checkpoint_epoch"].parse::<u64>().unwrap_or(0)
    };
    let now = epoch(&jobs::job_row(&client, "cheap").await);
    jobs::wait_until(&client, "cheap", "checkpointed twice more", |r| {
        epoch(r) >= now + 2
    })
    .await;
    server.kill();
    // Restored, the last 3 616 rows come long before a checkpoint is due:
    // the run ends with its final snapshot alone.
    let server = WeirProcess::start_with(dir.path(), &["--checkpoint-interval", "1h"], &[]);
    let client = common::connect(&server).await;
    jobs::wait_for_status(&client, "cheap", "finished").await;
    server.kill();
    // The next run restores that final checkpoint.
    let server = WeirProcess::start_with(dir.path(), &["--checkpoint-interval", "100ms"], &[]);
    let client = common::connect(&server).await;
    jobs::wait_for_status(&client, "cheap", "finished").await;
    let expected = common::sorted_rows(&client, CHEAP).await;
    assert_eq!(
        common::sorted_rows(&client, "SELECT * FROM cheap").await,
        expected,
        "the view restored from the final checkpoint differs from the batch answer"
    );
}
