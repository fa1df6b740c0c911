//! Failures are contained: a failed job affects its own view alone, and a
//! second server cannot take a data directory another one is using.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use common::WeirProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = WeirProcess::start(dir.path());
    let client = common::connect(&first).await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a')",
        )
        .await
        .expect("write through the first server");

    let mut second = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("serve")
        .args(["--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--workers", "1", "--print-addrs", "--log", "warn"])
        .current_dir(common::sql_tests_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run a second weir");
    // It prints its addresses once it listens: then it started, wrongly.
    let mut line = String::new();
    BufReader::new(second.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the second server's stdout");
    if !line.is_empty() {
        let _ = second.kill();
        let _ = second.wait();
        panic!("a second server started on a data directory in use: {line}");
    }
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = second.wait().expect("wait for the second weir");
    assert!(!status.success(), "the second server exited with {status}");
    let shown = dir.path().display().to_string();
    assert!(
        stderr.contains(&shown) && stderr.contains("in use by another weir process"),
        "the message must name the directory and say why: {stderr}"
    );

    // The first one keeps serving, its data untouched.
    client
        .batch_execute("INSERT INTO t VALUES (2, 'b')")
        .await
        .expect("the first server still writes");
    assert_eq!(
        common::sorted_rows(&client, "SELECT id, v FROM t").await,
        vec!["1|a", "2|b"]
    );
}

/// A client whose notices (WARNINGs) are collected.
async fn connect_with_notices(
    server: &WeirProcess,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use futures::StreamExt;
    let (client, mut connection) = server
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to weir");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                let _ = tx.send(notice.message().to_string());
            }
        }
    });
    (client, rx)
}

/// The error of `sql`, which must fail: (SQLSTATE, message).
async fn error_of(client: &tokio_postgres::Client, sql: &str) -> (String, String) {
    match client.simple_query(sql).await {
        Ok(_) => panic!("{sql} succeeded; it must fail"),
        Err(err) => {
            let db = err
                .as_db_error()
                .unwrap_or_else(|| panic!("{sql}: not a server error: {err}"));
            (db.code().code().to_string(), db.message().to_string())
        }
    }
}

/// The `SHOW MATERIALIZED VIEWS` row of `name`: (status, error).
async fn view_status(client: &tokio_postgres::Client, name: &str) -> (String, String) {
    let rows = client
        .simple_query("SHOW MATERIALIZED VIEWS")
        .await
        .expect("show views");
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get("name") == Some(name) => Some((
                r.get("status").unwrap_or_default().to_string(),
                r.get("error").unwrap_or_default().to_string(),
            )),
            _ => None,
        })
        .unwrap_or_else(|| panic!("SHOW MATERIALIZED VIEWS has no {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_fails_its_own_view_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");
    let bad = files.path().join("bad.csv");
    let good = files.path().join("good.csv");
    std::fs::write(&bad, "n\n1\n2\nx\n4\n").expect("write bad.csv");
    std::fs::write(&good, "n\n10\n20\n30\n").expect("write good.csv");
    let server = WeirProcess::start(dir.path());
    let (client, mut notices) = connect_with_notices(&server).await;
    client
        .batch_execute(&format!(
            "CREATE STREAM bad_s (n BIGINT) WITH (connector = 'file', path = '{}', format = 'csv');
             CREATE STREAM good_s (n BIGINT) WITH (connector = 'file', path = '{}', format = 'csv');
             CREATE MATERIALIZED VIEW a_bad AS SELECT n FROM bad_s;
             CREATE MATERIALIZED VIEW b_good AS SELECT count(*) AS c, sum(n) AS total FROM good_s;",
            bad.display(),
            good.display()
        ))
        .await
        .expect("create streams and views");

    // FLUSH of every view flushes the healthy ones and warns of the failed.
    client
        .simple_query("FLUSH")
        .await
        .expect("FLUSH must not fail because another view failed");
    let warning = notices.recv().await.expect("a warning");
    assert!(
        warning.contains("a_bad") && warning.contains("invalid input syntax"),
        "the warning names the failed view and why: {warning}"
    );
    assert_eq!(
        common::sorted_rows(&client, "SELECT c, total FROM b_good").await,
        vec!["3|60"]
    );

    // Reading, flushing or subscribing to the failed view says why, with the
    // class of the cause: a value in the user's data that does not parse.
    for sql in ["SELECT * FROM a_bad", "FLUSH a_bad", "SUBSCRIBE TO a_bad"] {
        let (code, message) = error_of(&client, sql).await;
        assert_eq!(code, "22P02", "{sql}: {message}");
        assert!(
            message.starts_with("materialized view \"a_bad\" failed: ")
                && message.contains("invalid input syntax"),
            "{sql}: {message}"
        );
    }
    let (status, error) = view_status(&client, "a_bad").await;
    assert_eq!(status, "failed");
    assert!(error.contains("invalid input syntax"), "{error}");
    assert_eq!(view_status(&client, "b_good").await.0, "finished");

    let metrics = common::http_get(server.http_port, "/metrics").await;
    assert!(
        metrics.contains("weir_job_failures_total{job=\"a_bad\"} 1"),
        "the failure is counted: {metrics}"
    );
    assert!(
        !metrics.contains("weir_job_failures_total{job=\"b_good\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_job_fails_that_job_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The third batch a worker of job `boom` takes panics, as a bug would.
    let server = WeirProcess::start_with(
        dir.path(),
        &[],
        &[("WEIR_FAILPOINT", "worker-batch/boom@3:panic")],
    );
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE STREAM ticks (n BIGINT, at TIMESTAMP) WITH (connector = 'datagen', rate = 200, 'fields.at.step_ms' = 5);
             CREATE MATERIALIZED VIEW steady AS SELECT count(*) AS c FROM ticks;
             CREATE MATERIALIZED VIEW boom AS SELECT n % 10 AS k, count(*) AS c FROM ticks GROUP BY n % 10;",
        )
        .await
        .expect("create the stream and the views");

    // FLUSH of the failing view ends: with its error once the panic came
    // (never a wait for ever). Bounded so that a broken server fails here.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (code, message) = loop {
        match client.simple_query("FLUSH boom").await {
            Ok(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the failpoint never failed the job"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(err) => {
                let db = err.as_db_error().expect("a server error");
                break (db.code().code().to_string(), db.message().to_string());
            }
        }
    };
    assert_eq!(code, "XX000", "{message}");
    assert!(
        message.starts_with("materialized view \"boom\" failed: internal error: ")
            && message.contains("panicked")
            && message.contains("failpoint worker-batch/boom"),
        "{message}"
    );
    // Again: at once, the same error.
    assert_eq!(error_of(&client, "FLUSH boom").await.0, "XX000");
    assert_eq!(error_of(&client, "SELECT * FROM boom").await.0, "XX000");
    let (status, error) = view_status(&client, "boom").await;
    assert_eq!(status, "failed");
    assert!(error.contains("panicked"), "{error}");

    // The other view keeps updating, and FLUSH of all views works.
    let count = |rows: Vec<String>| -> i64 { rows[0].parse().expect("a count") };
    client.simple_query("FLUSH").await.expect("FLUSH");
    let first = count(common::sorted_rows(&client, "SELECT c FROM steady").await);
    loop {
        client
            .simple_query("FLUSH steady")
            .await
            .expect("FLUSH steady");
        let now = count(common::sorted_rows(&client, "SELECT c FROM steady").await);
        if now > first {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the healthy view stopped at {now} rows"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(view_status(&client, "steady").await.0, "running");
    // New sessions work.
    let other = common::connect(&server).await;
    assert_eq!(common::sorted_rows(&other, "SELECT 1 + 1").await, vec!["2"]);
    let metrics = common::http_get(server.http_port, "/metrics").await;
    assert!(
        metrics.contains("weir_job_failures_total{job=\"boom\"} 1"),
        "{metrics}"
    );
}

/// The sum over a job's workers of `weir_operator_state_entries` for one
/// operator, from the Prometheus text.
fn state_entries(metrics: &str, job: &str, operator: &str) -> Option<i64> {
    let prefix = format!("weir_operator_state_entries{{job=\"{job}\",operator=\"{operator}\",");
    let values: Vec<i64> = metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stateful_operator_reports_its_state_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    // 7 keys, then 3 of them deleted: the updating aggregate holds 4 groups.
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT);
             INSERT INTO t SELECT v, v % 7 FROM generate_series(1, 70) AS s(v);
             CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n FROM t GROUP BY k;
             CREATE TABLE other (k BIGINT PRIMARY KEY, name TEXT);
             INSERT INTO other VALUES (1, 'a'), (2, 'b');
             CREATE MATERIALIZED VIEW joined AS
               SELECT t.id, other.name FROM t JOIN other ON t.k = other.k;
             FLUSH",
        )
        .await
        .expect("views over tables");
    let metrics = common::http_get(server.http_port, "/metrics").await;
    assert_eq!(
        state_entries(&metrics, "per_k", "updating aggregate"),
        Some(7),
        "{metrics}"
    );
    assert!(
        state_entries(&metrics, "joined", "join").is_some_and(|n| n > 0),
        "{metrics}"
    );
    client
        .batch_execute("DELETE FROM t WHERE k IN (0, 1, 2); FLUSH")
        .await
        .expect("delete three keys");
    let metrics = common::http_get(server.http_port, "/metrics").await;
    assert_eq!(
        state_entries(&metrics, "per_k", "updating aggregate"),
        Some(4),
        "{metrics}"
    );
}
