//! Streaming through the front door: SUBSCRIBE read by real clients while
//! the job runs, the changelog of an updating view, and late rows counted on
//! /metrics.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::WeirProcess;

const BIDS: &str =
    "CREATE STREAM bids (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '2 seconds')
  WITH (connector = 'file', path = 'data/bids.csv', format = 'csv')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_shows_subscribed_rows_as_they_arrive() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    // An unbounded stream: 20 rows per second for as long as it runs.
    client
        .batch_execute(
            "CREATE STREAM ticks (n BIGINT, at TIMESTAMP) WITH (connector = 'datagen', rate = 20, 'fields.at.step_ms' = 50);
             CREATE MATERIALIZED VIEW even_ticks AS SELECT n, at FROM ticks WHERE n % 2 = 0;",
        )
        .await
        .expect("create the stream and the view");
    let mut psql = Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-U",
            "weir",
            "-d",
            "weir",
            "-p",
            &server.pg_port.to_string(),
        ])
        .args(["-c", "COPY (SUBSCRIBE TO even_ticks) TO STDOUT"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start psql");
    let stdout = psql.stdout.take().expect("stdout");
    // The subscription never ends by itself: read lines while they come, and
    // stop after a few (bounded in time so a broken server fails the test).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut lines = Vec::new();
    while lines.len() < 5 && started.elapsed() < Duration::from_secs(30) {
        if let Ok(Ok(line)) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(line);
        }
    }
    let _ = psql.kill();
    let _ = psql.wait();
    assert!(
        lines.len() >= 5,
        "psql printed {} subscribed rows: {lines:?}",
        lines.len()
    );
    for line in &lines {
        let n: i64 = line
            .split('\t')
            .next()
            .expect("n")
            .parse()
            .expect("a number");
        assert_eq!(n % 2, 0, "an odd row passed the filter: {line}");
    }
    // The server goes on serving after the subscriber went away.
    let row = client
        .query_one("SELECT 1::BIGINT", &[])
        .await
        .expect("still serving");
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_an_updating_view_replays_its_changelog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    client.batch_execute(BIDS).await.expect("stream");
    client
        .batch_execute("CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS n FROM bids GROUP BY auction")
        .await
        .expect("view");
    // A bounded stream: the subscription ends when the job does.
    let messages = client
        .simple_query("SUBSCRIBE TO per_auction")
        .await
        .expect("subscribe");
    let mut state: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for message in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            let key = format!(
                "{}|{}",
                row.get(0).unwrap_or("NULL"),
                row.get(1).unwrap_or("NULL")
            );
            let delta = match row.get(2) {
                Some("insert") => 1,
                Some("delete") => -1,
                other => panic!("unexpected op {other:?}"),
            };
            *state.entry(key).or_default() += delta;
        }
    }
    state.retain(|_, count| *count != 0);
    let final_rows: Vec<String> = client
        .simple_query("SELECT auction, n FROM per_auction ORDER BY auction")
        .await
        .expect("query the view")
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(format!(
                "{}|{}",
                row.get(0).unwrap_or("NULL"),
                row.get(1).unwrap_or("NULL")
            )),
            _ => None,
        })
        .collect();
    let replayed: Vec<String> = state.into_keys().collect();
    assert_eq!(
        replayed, final_rows,
        "the changelog does not add up to the view"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_rows_are_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    client.batch_execute(BIDS).await.expect("stream");
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW w AS SELECT auction, window_start, count(*) AS n
               FROM TUMBLE(bids, date_time, INTERVAL '10 seconds') GROUP BY auction, window_start EMIT ON WINDOW CLOSE;
             FLUSH;",
        )
        .await
        .expect("view");
    let rows = client
        .query("SELECT n FROM w WHERE auction = 9", &[])
        .await
        .expect("query");
    assert!(rows.is_empty(), "the late row reached the view");
    let metrics = common::http_get(server.http_port, "/metrics").await;
    assert!(
        metrics.contains("weir_late_rows_total{stream=\"bids\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    client.batch_execute(BIDS).await.expect("stream");
    let cases = [
        (
            "SELECT * FROM bids ORDER BY price",
            "0A000",
            "ORDER BY in a materialized view is not supported",
        ),
        (
            "SELECT * FROM bids LIMIT 10",
            "0A000",
            "LIMIT in a materialized view is not supported",
        ),
        (
            "SELECT auction, count(*) FROM bids GROUP BY auction EMIT ON WINDOW CLOSE",
            "42000",
            "EMIT ON WINDOW CLOSE needs a windowed aggregate",
        ),
        (
            "SELECT count(*) FROM HOP(bids, date_time, INTERVAL '3 seconds', INTERVAL '10 seconds') GROUP BY window_start",
            "42000",
            "HOP: the size must be a multiple of the slide",
        ),
    ];
    for (query, code, message) in cases {
        let err = client
            .simple_query(&format!("CREATE MATERIALIZED VIEW bad AS {query}"))
            .await
            .expect_err(query);
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), code, "{query}");
        assert!(
            db.message().starts_with(message),
            "{query}: {}",
            db.message()
        );
    }
}
