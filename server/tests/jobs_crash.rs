//! kill -9 in the middle of a suspend, of a savepoint and of an upgrade
//! (the server aborts at the `savepoint-before-info` failpoint: the
//! checkpoint is written and its chunks copied, the savepoint's
//! `savepoint.json` not yet), then a restart: the job is where its desired
//! state says, the half-written savepoint is not listed, and the view's
//! file sink adds up to the batch answer with every row exactly once.

mod common;

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
