//! Per-stage metric labels (issue 24): two stages of one operator kind in
//! one job (an aggregate over an aggregate) are two `weir_operator_*`
//! series on `/metrics`, told apart by their `stage` label, which a
//! restarted job keeps.

mod common;

use std::time::{Duration, Instant};

use common::{WeirProcess, connect};

/// A generous deadline for what a test waits on (never a timed assertion:
/// only a broken server reaches it).
const DEADLINE: Duration = Duration::from_secs(120);

/// The value of the sample `series` (its name and labels as written) in
/// the Prometheus text `metrics`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Rows into worker 0 of the aggregate of stage `stage` of job `histogram`.
fn rows_in(metrics: &str, stage: usize) -> Option<f64> {
    sample(
        metrics,
        &format!(
            "weir_operator_rows_in_total{{job=\"histogram\",operator=\"updating aggregate\",stage=\"{stage}\",worker=\"0\"}}"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aggregates_of_one_job_are_two_series_that_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--checkpoint-interval", "200ms"];
    let mut server = WeirProcess::start_with(dir.path(), &args, &[]);
    let client = connect(&server).await;
    client
        .batch_execute(
            "CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 100000, rows = 3000, seed = 2);
             CREATE MATERIALIZED VIEW histogram WITH (parallelism = 1) AS
               SELECT n, count(*) AS auctions
               FROM (SELECT auction, count(*) AS n FROM bid GROUP BY auction) GROUP BY n;
             FLUSH",
        )
        .await
        .expect("the view");
    let metrics = common::http_get(server.http_port, "/metrics").await;
    // The inner aggregate (stage 0) takes every bid; the outer one (stage
    // 1) the inner one's changes.
    let inner = rows_in(&metrics, 0).unwrap_or_else(|| panic!("no stage 0 in\n{metrics}"));
    let outer = rows_in(&metrics, 1).unwrap_or_else(|| panic!("no stage 1 in\n{metrics}"));
    assert_eq!(inner, 3000.0, "the inner aggregate takes every bid");
    assert!(outer > 0.0, "the outer aggregate: {outer}");
    assert!(
        metrics.contains(
            "weir_operator_rows_out_total{job=\"histogram\",operator=\"source\",stage=\"0\",worker=\"0\"}"
        ),
        "the source partition is labelled with its source's number:\n{metrics}"
    );
    // A restart starts the job again from its checkpoint, under the same
    // stage labels: the series go on (none appears with another number).
    server.kill();
    server = WeirProcess::start_with(dir.path(), &args, &[]);
    let client = connect(&server).await;
    client.simple_query("FLUSH").await.expect("FLUSH");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let metrics = common::http_get(server.http_port, "/metrics").await;
        if rows_in(&metrics, 0).is_some() && rows_in(&metrics, 1).is_some() {
            assert!(
                !metrics.contains("operator=\"updating aggregate\",stage=\"2\""),
                "a third stage after the restart:\n{metrics}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no stage series after the restart:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
