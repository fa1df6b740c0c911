//! Jobs through the real binary: restart policies after an injected panic
//! and after a bad row, failed when the attempts run out, a new parallelism
//! restarting from the latest state, and the event log and settings across a
//! kill -9. Each result is compared with an uninterrupted run of the same
//! query (a batch query over the same input).

mod common;
#[path = "common/jobs.rs"]
mod jobs;

use std::time::Duration;

use common::WeirProcess;
use jobs::{events, job_row, wait_for_status};

/// A CSV of `rows` rows `n,k` with `k = n % 97`.
fn numbers_csv(path: &std::path::Path, rows: usize) {
    let mut text = String::from("n,k\n");
    for n in 0..rows {
        text.push_str(&format!("{n},{}\n", n % 97));
    }
    std::fs::write(path, text).expect("write the csv");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_restarts_from_its_checkpoint_and_its_result_is_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");
    let csv = files.path().join("numbers.csv");
    numbers_csv(&csv, 200_000);
    // The fifth batch a worker of job `boom` takes panics, as a bug would.
    let server = WeirProcess::start_with(
        dir.path(),
        &["--checkpoint-interval", "50ms"],
        &[("WEIR_FAILPOINT", "worker-batch/boom@5:panic")],
    );
    let client = common::connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE STREAM numbers (n BIGINT, k BIGINT) WITH (connector = 'file', path = '{}', format = 'csv');
             CREATE MATERIALIZED VIEW boom
               WITH (restart_strategy = 'fixed_delay', restart_attempts = 3, restart_delay = '100ms')
               AS SELECT k, count(*) AS c, sum(n) AS total FROM numbers GROUP BY k;",
            csv.display()
        ))
        .await
        .expect("create the stream and the view");

    let row = wait_for_status(&client, "boom", "finished").await;
    assert_eq!(row["restarts"], "1", "{row:?}");
    assert_eq!(row["kind"], "view");
    assert_eq!(row["desired_state"], "running");
    let log = events(&client, "boom").await;
    let restarting = log
        .iter()
        .find(|(_, to, _)| to == "restarting")
        .unwrap_or_else(|| panic!("no restarting event: {log:?}"));
    assert!(
        restarting.2.contains("attempt 1 of 3") && restarting.2.contains("panicked"),
        "{restarting:?}"
    );
    assert!(
        log.iter().any(|(from, to, why)| from == "restarting"
            && to == "running"
            && why.starts_with("restarted from")),
        "{log:?}"
    );
    assert_eq!(
        log.last().map(|e| e.1.as_str()),
        Some("finished"),
        "{log:?}"
    );

    // The same as a run that never failed: the batch query over the file.
    let expected = common::sorted_rows(
        &client,
        &format!(
            "SELECT k, count(*) AS c, sum(n) AS total FROM read_csv('{}') GROUP BY k",
            csv.display()
        ),
    )
    .await;
    assert_eq!(expected.len(), 97);
    assert_eq!(
        common::sorted_rows(&client, "SELECT k, c, total FROM boom").await,
        expected
    );
    let metrics = common::http_get(server.http_port, "/metrics").await;
    assert!(
        metrics.contains("weir_job_restarts_total{job=\"boom\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_job_status{job=\"boom\",status=\"finished\"} 1")
            && metrics.contains("weir_job_status{job=\"boom\",status=\"running\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_failing_is_failed_when_its_attempts_run_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");
    let bad = files.path().join("bad.csv");
    std::fs::write(&bad, "n\n1\n2\nx\n4\n").expect("write bad.csv");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE STREAM bad_s (n BIGINT) WITH (connector = 'file', path = '{}', format = 'csv');
             CREATE STREAM ticks (n BIGINT, at TIMESTAMP) WITH (connector = 'datagen', rate = 200, 'fields.at.step_ms' = 5);
             CREATE MATERIALIZED VIEW steady AS SELECT count(*) AS c FROM ticks;
             CREATE MATERIALIZED VIEW a_bad
               WITH (restart_strategy = 'exponential_backoff', restart_attempts = 2,
                     restart_delay = '50ms', restart_max_delay = '80ms')
               AS SELECT n FROM bad_s;",
            bad.display()
        ))
        .await
        .expect("create the streams and the views");

    let row = wait_for_status(&client, "a_bad", "failed").await;
    assert_eq!(row["restarts"], "2", "{row:?}");
    assert!(
        row["last_error"].contains("2 restart attempts used")
            && row["last_error"].contains("invalid input syntax"),
        "{row:?}"
    );
    let log = events(&client, "a_bad").await;
    let tos: Vec<&str> = log.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        tos,
        [
            "created",
            "running",
            "restarting",
            "running",
            "restarting",
            "running",
            "failed"
        ],
        "{log:?}"
    );
    // The other job and new sessions are untouched.
    assert_eq!(job_row(&client, "steady").await["status"], "running");
    client
        .simple_query("FLUSH steady")
        .await
        .expect("FLUSH steady");
    let other = common::connect(&server).await;
    assert_eq!(common::sorted_rows(&other, "SELECT 1 + 1").await, vec!["2"]);

    // A failed job restarts when asked (and fails again, with its data).
    client
        .simple_query("ALTER JOB a_bad RESTART")
        .await
        .expect("restart a failed job");
    wait_for_status(&client, "a_bad", "failed").await;
    let metrics = common::http_get(server.http_port, "/metrics").await;
    assert!(
        metrics.contains("weir_job_status{job=\"a_bad\",status=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_job_status{job=\"steady\",status=\"running\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_parallelism_restarts_from_the_latest_state_and_settings_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &["--checkpoint-interval", "100ms"], &[]);
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT);
             INSERT INTO t SELECT v, v % 13 FROM generate_series(1, 5000) AS s(v);
             CREATE MATERIALIZED VIEW per_k WITH (parallelism = 2)
               AS SELECT k, count(*) AS n, sum(id) AS total FROM t GROUP BY k;
             FLUSH per_k",
        )
        .await
        .expect("a view over a table");
    let batch = "SELECT k, count(*) AS n, sum(id) AS total FROM t GROUP BY k";
    assert_eq!(
        common::sorted_rows(&client, "SELECT k, n, total FROM per_k").await,
        common::sorted_rows(&client, batch).await
    );

    client
        .simple_query("ALTER JOB per_k SET (parallelism = 1)")
        .await
        .expect("a new parallelism");
    assert_eq!(job_row(&client, "per_k").await["status"], "running");
    let log = events(&client, "per_k").await;
    assert!(
        log.iter()
            .any(|(_, to, why)| to == "restarting" && why == "parallelism changed to 1"),
        "{log:?}"
    );
    let restored = log.last().expect("an event");
    assert!(
        restored.1 == "running" && restored.2.starts_with("restarted from checkpoint"),
        "the restart took the latest state: {log:?}"
    );
    // Changes after the restart land on the restored state: the same as
    // an uninterrupted run.
    client
        .batch_execute(
            "INSERT INTO t SELECT v, v % 13 FROM generate_series(5001, 8000) AS s(v);
             DELETE FROM t WHERE id % 7 = 0;
             UPDATE t SET k = k + 1 WHERE id % 5 = 0;
             FLUSH per_k",
        )
        .await
        .expect("more changes");
    assert_eq!(
        common::sorted_rows(&client, "SELECT k, n, total FROM per_k").await,
        common::sorted_rows(&client, batch).await
    );
    let before = events(&client, "per_k").await;

    // kill -9: the settings and the event log are durable.
    server.kill();
    let server = WeirProcess::start_with(dir.path(), &["--checkpoint-interval", "100ms"], &[]);
    let client = common::connect(&server).await;
    let row = wait_for_status(&client, "per_k", "running").await;
    assert_eq!(row["restarts"], "1", "{row:?}");
    let after = events(&client, "per_k").await;
    assert_eq!(after[..before.len()], before[..], "the log lives on");
    assert_eq!(
        after[before.len()..]
            .iter()
            .map(|e| e.1.as_str())
            .collect::<Vec<_>>(),
        ["created", "running"],
        "{after:?}"
    );
    assert!(
        after
            .last()
            .is_some_and(|e| e.2.starts_with("resumed from checkpoint"))
    );
    client.simple_query("FLUSH per_k").await.expect("flush");
    assert_eq!(
        common::sorted_rows(&client, "SELECT k, n, total FROM per_k").await,
        common::sorted_rows(&client, batch).await
    );
    // The columns are typed (the REST API builds on them): read through
    // the extended protocol as Rust types.
    let typed = client
        .query("SHOW JOBS", &[])
        .await
        .expect("SHOW JOBS, extended protocol");
    let row = typed
        .iter()
        .find(|r| r.get::<_, String>("name") == "per_k")
        .expect("per_k");
    let started: chrono::DateTime<chrono::Utc> = row.get("started_at");
    assert!(started <= chrono::Utc::now());
    assert!(
        row.get::<_, Option<i64>>("last_checkpoint_epoch")
            .is_some_and(|e| e > 0)
    );
    assert!(row.get::<_, Option<i64>>("rows_in").is_some());
    assert_eq!(row.get::<_, i64>("restarts"), 1);
    let events = client
        .query("SHOW JOB EVENTS per_k", &[])
        .await
        .expect("SHOW JOB EVENTS, extended protocol");
    assert_eq!(events[0].get::<_, i64>("seq"), 1);
    let _: chrono::DateTime<chrono::Utc> = events[0].get("at");

    // Errors say what and whose.
    for (sql, code, says) in [
        (
            "ALTER JOB nope RESTART",
            "42704",
            "job \"nope\" does not exist",
        ),
        (
            "ALTER JOB per_k RESUME",
            "55000",
            "job \"per_k\" is running",
        ),
        (
            "ALTER JOB per_k SET (restart_delay = 'soon')",
            "22023",
            "restart_delay",
        ),
        ("ALTER JOB per_k SET (colour = 'blue')", "22023", "colour"),
        (
            "DROP SAVEPOINT nope",
            "42704",
            "savepoint \"nope\" does not exist",
        ),
    ] {
        let err = client.simple_query(sql).await.expect_err(sql);
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
        assert!(db.message().contains(says), "{sql}: {}", db.message());
    }
    let err = client
        .simple_query("ALTER JOB per_k PAUSE")
        .await
        .expect_err("syntax");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42601");
    assert!(
        matches!(
            db.position(),
            Some(tokio_postgres::error::ErrorPosition::Original(17))
        ),
        "{:?}",
        db.position()
    );

    let catalog = std::fs::read_to_string(dir.path().join("catalog.json")).expect("catalog");
    assert!(
        catalog.contains("\"parallelism\": \"1\""),
        "the setting is in the catalog: {catalog}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_and_resumed_job_equals_one_that_never_stopped_and_stays_suspended_across_kill_9()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let args = ["--checkpoint-interval", "200ms"];
    let server = WeirProcess::start_with(dir.path(), &args, &[]);
    let client = common::connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT);
             INSERT INTO t SELECT v, v % 11 FROM generate_series(1, 4000) AS s(v);
             CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n, sum(id) AS total FROM t GROUP BY k;
             CREATE SINK per_k_out FROM per_k WITH (connector = 'file', path = '{}', format = 'json');
             FLUSH per_k",
            out.display()
        ))
        .await
        .expect("a view over a table, written out");
    let view = "SELECT k, n, total FROM per_k";
    let batch = "SELECT k, count(*) AS n, sum(id) AS total FROM t GROUP BY k";
    // Mid-stream: more rows arrive while the suspend runs.
    let writer = {
        let config = server.pg_config();
        tokio::spawn(async move {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            for i in 0..20 {
                let from = 4001 + i * 100;
                client
                    .batch_execute(&format!(
                        "INSERT INTO t SELECT v, v % 11 FROM generate_series({from}, {}) AS s(v)",
                        from + 99
                    ))
                    .await
                    .expect("insert");
            }
        })
    };
    client
        .simple_query("ALTER JOB per_k SUSPEND")
        .await
        .expect("suspend");
    writer.await.expect("the writer");
    let row = job_row(&client, "per_k").await;
    assert_eq!(
        (row["status"].as_str(), row["desired_state"].as_str()),
        ("suspended", "suspended")
    );
    assert_eq!(job_row(&client, "per_k_out").await["status"], "suspended");
    // Suspended: the view keeps its contents while its input moves on.
    let frozen = common::sorted_rows(&client, view).await;
    client
        .batch_execute("INSERT INTO t SELECT v, v % 11 FROM generate_series(7001, 7500) AS s(v); DELETE FROM t WHERE id % 9 = 0")
        .await
        .expect("changes while suspended");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(common::sorted_rows(&client, view).await, frozen);
    assert_ne!(common::sorted_rows(&client, batch).await, frozen);

    // kill -9 while suspended: still suspended after the restart.
    server.kill();
    let server = WeirProcess::start_with(dir.path(), &args, &[]);
    let client = common::connect(&server).await;
    let row = wait_for_status(&client, "per_k", "suspended").await;
    assert_eq!(row["desired_state"], "suspended");
    client
        .batch_execute("INSERT INTO t SELECT v, v % 11 FROM generate_series(7501, 8000) AS s(v)")
        .await
        .expect("changes while suspended, after the restart");

    // Resumed: the same as a run that never stopped.
    client
        .simple_query("ALTER JOB per_k RESUME")
        .await
        .expect("resume");
    assert_eq!(job_row(&client, "per_k").await["status"], "running");
    client.simple_query("FLUSH per_k").await.expect("flush");
    let expected = common::sorted_rows(&client, batch).await;
    assert_eq!(common::sorted_rows(&client, view).await, expected);
    // The sink's committed files are compared with the batch answer, each
    // row exactly once, in server/tests/jobs_owned_tables.rs.
    let log = events(&client, "per_k").await;
    let tos: Vec<&str> = log.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        tos,
        [
            "created",
            "running",
            "suspending",
            "suspended",
            "created",
            "running",
            "suspending",
            "suspended",
            "running"
        ],
        "{log:?}"
    );
    assert!(log[3].2.starts_with("suspended at checkpoint"), "{log:?}");
    // From its checkpoint: the table kept its history from there.
    assert!(log[8].2.starts_with("resumed from checkpoint"), "{log:?}");
}
