//! A source that fails under a running job (issue 20 item 5): a file of a
//! file stream vanishes before its partition reaches it. The job restarts
//! from its latest checkpoint per its restart policy, each attempt meets
//! the same missing file, and the job is failed with the reason, naming
//! the file, once the attempts run out; another job and new sessions go on.
//!
//! Made deterministic with the `source-batch/<job>@2:pause` failpoint. The
//! files are dealt to the stream's two partitions in path order: partition
//! 0 reads `part-0.csv` then `part-2.csv`, partition 1 reads `part-1.csv`,
//! which holds only a header (so it ends sending nothing). The job's second
//! batch is therefore partition 0's, in `part-0.csv`, where it holds still;
//! `part-2.csv` is removed then, and `ALTER JOB RESTART` lets the run go
//! on from its checkpoint into the missing file.

mod common;
#[path = "common/jobs.rs"]
mod jobs;

use std::io::Write;
use std::path::Path;

use common::WeirProcess;
use jobs::{job_row, wait_until};

/// Rows of each non-empty input file: several batches (8192 rows each).
const ROWS: i64 = 60_000;

/// `part-<f>.csv` in `folder`, holding ids `from..from + rows` (none: the
/// header alone).
fn write_part(folder: &Path, f: usize, from: i64, rows: i64) {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(folder.join(format!("part-{f}.csv"))).expect("input file"),
    );
    writeln!(out, "id,k").expect("header");
    for id in from..from + rows {
        writeln!(out, "{id},{}", id % 13).expect("row");
    }
    out.flush().expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_vanishes_under_a_job_restarts_it_per_policy_then_fails_it_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("input folder");
    write_part(&input, 0, 1, ROWS);
    write_part(&input, 1, 0, 0);
    write_part(&input, 2, ROWS + 1, ROWS);
    let server = WeirProcess::start_with(
        dir.path(),
        &["--checkpoint-interval", "100ms"],
        &[("WEIR_FAILPOINT", "source-batch/per_k@2:pause")],
    );
    let client = common::connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE STREAM s (id BIGINT, k BIGINT)
               WITH (connector = 'file', path = '{}/*.csv', format = 'csv');
             CREATE STREAM ticks (n BIGINT) WITH (connector = 'datagen', rate = 200);
             CREATE MATERIALIZED VIEW steady AS SELECT count(*) AS c FROM ticks;
             CREATE MATERIALIZED VIEW per_k
               WITH (restart_strategy = 'fixed_delay', restart_attempts = 2, restart_delay = '100ms')
               AS SELECT k, count(*) AS n, sum(id) AS total FROM s GROUP BY k",
            input.display()
        ))
        .await
        .expect("a view over three files, and another job");

    // Held midway in part-0.csv: partition 1 (the header-only file) ended,
    // partition 0 has not opened part-2.csv yet.
    let row = wait_until(&client, "per_k", "held midway", |r| {
        r["progress"].contains("1/2 partitions ended") && r["last_checkpoint_epoch"] != "NULL"
    })
    .await;
    assert_eq!(row["status"], "running", "{row:?}");
    std::fs::remove_file(input.join("part-2.csv")).expect("remove part-2.csv");

    client
        .simple_query("ALTER JOB per_k RESTART")
        .await
        .expect("restart from the checkpoint");
    let row = wait_until(&client, "per_k", "failed", |r| r["status"] == "failed").await;
    // The restart asked for, then the policy's two attempts.
    assert_eq!(row["restarts"], "3", "{row:?}");
    assert!(
        row["last_error"].contains("2 restart attempts used")
            && row["last_error"].contains("part-2.csv"),
        "the reason names the file: {row:?}"
    );
    assert_eq!(row["desired_state"], "running", "{row:?}");

    // Each attempt restored a checkpoint and met the same missing file.
    let log: Vec<(String, String)> = jobs::events(&client, "per_k")
        .await
        .into_iter()
        .map(|(_, to, why)| (to, why))
        .collect();
    for attempt in ["attempt 1 of 2", "attempt 2 of 2"] {
        assert!(
            log.iter().any(|(to, why)| to == "restarting"
                && why.contains(attempt)
                && why.contains("part-2.csv")),
            "{attempt} names the file: {log:?}"
        );
    }
    assert!(
        log.iter()
            .filter(|(to, why)| to == "running" && why.starts_with("restarted from checkpoint"))
            .count()
            >= 3,
        "the asked restart and each attempt restore a checkpoint: {log:?}"
    );
    assert_eq!(log.last().map(|e| e.0.as_str()), Some("failed"), "{log:?}");

    // The failed view says why when read; the other job and new sessions
    // are untouched.
    let err = client
        .simple_query("SELECT * FROM per_k")
        .await
        .expect_err("a failed view is not read");
    let db = err.as_db_error().expect("a server error");
    assert!(db.message().contains("part-2.csv"), "{db:?}");
    assert_eq!(job_row(&client, "steady").await["status"], "running");
    client
        .simple_query("FLUSH steady")
        .await
        .expect("FLUSH steady");
    let other = common::connect(&server).await;
    assert_eq!(common::sorted_rows(&other, "SELECT 1 + 1").await, vec!["2"]);
}
