//! A job's `state_size_limit` through the real binary: two views over the
//! same table, one with a tiny limit. Past it (operator state as of a
//! checkpoint, the figure `weir_job_state_bytes` shows) that job fails with
//! a reason naming the limit and the size, in `SHOW JOBS` and its events,
//! and reading its view says so with SQLSTATE 53400; the other view and
//! the session go on, and the other view equals the batch answer.

mod common;
#[path = "common/jobs.rs"]
mod jobs;

use std::time::{Duration, Instant};

use common::WeirProcess;
use jobs::{DEADLINE, job_row, wait_for_status};

/// `weir_job_state_bytes` of `job` on `/metrics`, if it has a series.
async fn state_bytes(server: &WeirProcess, job: &str) -> Option<u64> {
    let text = common::http_get(server.http_port, "/metrics").await;
    let label = format!("job=\"{job}\"");
    text.lines()
        .find(|l| l.starts_with("weir_job_state_bytes{") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

const PER_ID: &str = "SELECT id, count(*) AS n, sum(v) AS total FROM t GROUP BY id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_state_size_limit_fails_with_the_reason_and_the_others_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &["--checkpoint-interval", "200ms"], &[]);
    let client = common::connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE t (id BIGINT, v BIGINT);
             CREATE MATERIALIZED VIEW limited WITH (state_size_limit = '1kB') AS {PER_ID};
             CREATE MATERIALIZED VIEW unlimited AS {PER_ID}"
        ))
        .await
        .expect("two views, one with a tiny state size limit");
    // A bad limit is refused, naming the setting.
    let err = client
        .simple_query("ALTER JOB unlimited SET (state_size_limit = 'lots')")
        .await
        .expect_err("not a size");
    assert_eq!(err.code().map(|c| c.code()), Some("22023"), "{err}");

    client
        .batch_execute("INSERT INTO t SELECT v % 5000, v FROM generate_series(1, 20000) AS s(v)")
        .await
        .expect("5000 keys of state");

    let row = wait_for_status(&client, "limited", "failed").await;
    let reason = &row["last_error"];
    assert!(
        reason.contains("state_size_limit of 1024 bytes") && reason.contains("its state is "),
        "the reason names the limit and the size: {reason}"
    );
    let size: u64 = reason
        .split("its state is ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a size in bytes: {reason}"));
    assert!(size > 1024, "{reason}");
    let events = common::sorted_rows(&client, "SHOW JOB EVENTS limited").await;
    assert!(
        events
            .iter()
            .any(|e| e.contains("|failed|") && e.contains("state_size_limit")),
        "the failure is in the job's events: {events:?}"
    );
    // Reading the failed view says why, with the limit's SQLSTATE.
    let err = client
        .simple_query("SELECT count(*) FROM limited")
        .await
        .expect_err("the failed view says why");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53400", "{}", db.message());
    assert!(
        db.message().contains("state_size_limit"),
        "{}",
        db.message()
    );

    // The other job and the session go on: more rows, the exact answer.
    client
        .batch_execute(
            "INSERT INTO t SELECT v % 7000, v FROM generate_series(20001, 30000) AS s(v)",
        )
        .await
        .expect("more rows");
    client.simple_query("FLUSH unlimited").await.expect("FLUSH");
    assert_eq!(
        common::sorted_rows(&client, "SELECT id, n, total FROM unlimited").await,
        common::sorted_rows(&client, PER_ID).await,
        "the unlimited view equals the batch answer"
    );
    assert_eq!(job_row(&client, "unlimited").await["status"], "running");
    // Its state is past 1kB as well: the limit was the other job's alone.
    let deadline = Instant::now() + DEADLINE;
    loop {
        if state_bytes(&server, "unlimited")
            .await
            .is_some_and(|b| b > 1024)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "weir_job_state_bytes of unlimited never passed 1kB"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A higher limit, and the failed job runs again from its checkpoint.
    client
        .simple_query("ALTER JOB limited SET (state_size_limit = '64MB')")
        .await
        .expect("raise the limit");
    client
        .simple_query("ALTER JOB limited RESTART")
        .await
        .expect("restart the failed job");
    wait_for_status(&client, "limited", "running").await;
    client.simple_query("FLUSH limited").await.expect("FLUSH");
    assert_eq!(
        common::sorted_rows(&client, "SELECT id, n, total FROM limited").await,
        common::sorted_rows(&client, PER_ID).await,
        "the restarted view equals the batch answer"
    );
}
