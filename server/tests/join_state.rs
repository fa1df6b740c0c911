//! An interval join's state levels off over a long unbounded stream: each
//! side's rows are dropped once the other side's watermark passes their
//! reach, so its state (on `/metrics`) stays near the rows of a few seconds
//! of event time however many rows went through. A regular join's would
//! grow with every row, and the test shows that too. A window join over
//! HOP or CUMULATE windows (an interval join on the window ends) and a
//! regular join with a state TTL level off the same way; a regular join
//! without one grows.

mod common;

use std::time::{Duration, Instant};

use common::WeirProcess;

/// A generous deadline for what the test waits on (never a timed
/// assertion: only a broken server reaches it).
const DEADLINE: Duration = Duration::from_secs(300);

/// The state entries of a job's join workers (its only stateful stage)
/// and the job's rows in, from the `/metrics` exposition.
async fn figures(server: &WeirProcess, job: &str) -> (f64, f64) {
    let response = common::http_get(server.http_port, "/metrics").await;
    let sum = |family: &str| -> f64 {
        response
            .lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .filter(|l| l.contains(&format!("job=\"{job}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum("weir_operator_state_entries"),
        sum("weir_job_rows_in_total"),
    )
}

/// Wait until the job has read `rows` rows; returns its join's state then.
async fn state_after(server: &WeirProcess, job: &str, rows: f64) -> f64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (state, read) = figures(server, job).await;
        if read >= rows && state > 0.0 {
            eprintln!("{job}: {read} rows read, {state} rows in the join's state");
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "the job read only {read} rows (state {state})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The join state of `view` once its job has read 30,000 rows and again at
/// 120,000 (four times the input); then the view is dropped.
async fn early_and_late(
    server: &WeirProcess,
    client: &tokio_postgres::Client,
    view: &str,
) -> (f64, f64) {
    let early = state_after(server, view, 30_000.0).await;
    let late = state_after(server, view, 120_000.0).await;
    client
        .simple_query(&format!("DROP MATERIALIZED VIEW {view}"))
        .await
        .expect("drop the view");
    (early, late)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_joins_state_levels_off_over_an_unbounded_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Operator state is measured at each barrier.
    let server = WeirProcess::start_with(dir.path(), &["--checkpoint-interval", "200ms"], &[]);
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE STREAM auction WITH (connector = 'nexmark', table = 'auction', rate = 500, seed = 7);
             CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 5000, seed = 7);
             CREATE MATERIALIZED VIEW recent_bids AS
               SELECT a.id, b.bidder, b.price
               FROM auction AS a JOIN bid AS b
               ON a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.date_time + INTERVAL '2 seconds'",
        )
        .await
        .expect("an interval join over two unbounded generators");
    // 5 500 rows a second: about 5 s, then about 20 s, of event time.
    let (early, late) = early_and_late(&server, &client, "recent_bids").await;
    // Four times the rows, yet the state holds the same few seconds of
    // them.
    assert!(
        late < early * 2.0,
        "the state grew from {early} to {late} rows while the input grew fourfold"
    );
    // The same join without the time bound, measured the same way, keeps
    // every row: the figures above are not stuck.
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW all_bids AS
               SELECT a.id, b.bidder, b.price FROM auction AS a JOIN bid AS b ON a.id = b.auction",
        )
        .await
        .expect("a regular join over the same generators");
    let (early, late) = early_and_late(&server, &client, "all_bids").await;
    assert!(
        late > early * 2.0,
        "a regular join's state went from {early} to {late} rows only"
    );
}

/// A regular join with a state TTL (`join_state_ttl`) levels off too: each
/// side's rows are dropped once the other side's watermark is the TTL past
/// them. The same join without the setting (`all_bids` above, over the same
/// generators, measured alike) grows with every row. The setting is shown
/// with the job's settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regular_join_with_a_state_ttl_levels_off_and_one_without_grows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &["--checkpoint-interval", "200ms"], &[]);
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE STREAM auction WITH (connector = 'nexmark', table = 'auction', rate = 500, seed = 7);
             CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 5000, seed = 7);
             CREATE MATERIALIZED VIEW ttl_bids WITH (join_state_ttl = '2 seconds') AS
               SELECT a.id, b.bidder, b.price FROM auction AS a JOIN bid AS b ON a.id = b.auction",
        )
        .await
        .expect("a regular join with a state TTL over two unbounded generators");
    let job = common::http_get(server.http_port, "/api/v1/jobs/ttl_bids").await;
    assert!(
        job.contains("\"join_state_ttl\":\"2 seconds\""),
        "the job's settings show the TTL: {job}"
    );
    let (early, late) = early_and_late(&server, &client, "ttl_bids").await;
    assert!(
        late < early * 2.0,
        "the state grew from {early} to {late} rows while the input grew fourfold"
    );
}

/// A window join over HOP or CUMULATE windows is an interval join on the
/// window ends (`lower_join_interval::time_columns`): each side's rows of
/// a window are dropped once the other side's watermark passes its end,
/// so its state levels off too. The windows are short (1 s, every 500 ms)
/// so that the state at either measure holds the few windows still open,
/// not a share of one long window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hop_or_cumulate_window_joins_state_levels_off_over_an_unbounded_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &["--checkpoint-interval", "200ms"], &[]);
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE STREAM auction WITH (connector = 'nexmark', table = 'auction', rate = 500, seed = 7);
             CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 5000, seed = 7);",
        )
        .await
        .expect("two unbounded generators");
    for (view, tvf) in [("hop_bids", "HOP"), ("cumulate_bids", "CUMULATE")] {
        let window = |stream: &str| {
            format!("{tvf}({stream}, date_time, INTERVAL '500 milliseconds', INTERVAL '1 second')")
        };
        client
            .batch_execute(&format!(
                "CREATE MATERIALIZED VIEW {view} AS
                   SELECT a.id, b.bidder, b.price, a.window_end
                   FROM {} AS a JOIN {} AS b
                   ON a.id = b.auction AND a.window_start = b.window_start AND a.window_end = b.window_end",
                window("auction"),
                window("bid"),
            ))
            .await
            .unwrap_or_else(|e| panic!("a {tvf} window join: {e}"));
        let (early, late) = early_and_late(&server, &client, view).await;
        assert!(
            late < early * 2.0,
            "{view}: the state grew from {early} to {late} rows while the input grew fourfold"
        );
    }
}

/// A row behind its own side's watermark is dropped by the interval join,
/// and counted as its stream's late row on `/metrics`, never lost without
/// trace: `a`'s row 6 (10:00:05, after 10:01:00 set `a`'s watermark to
/// 10:00:58) and `b`'s row 109 (10:00:12, after 10:01:30).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_join_counts_each_sides_late_rows_as_its_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &[], &[]);
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE STREAM a (id BIGINT, k BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '2 seconds')
               WITH (connector = 'file', path = 'data/interval_a.csv', format = 'csv');
             CREATE STREAM b (id BIGINT, k BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '2 seconds')
               WITH (connector = 'file', path = 'data/interval_b.csv', format = 'csv');
             CREATE MATERIALIZED VIEW pairs AS
               SELECT a.id AS a_id, b.id AS b_id
               FROM a JOIN b ON a.k = b.k AND b.ts BETWEEN a.ts - INTERVAL '10 seconds' AND a.ts + INTERVAL '5 seconds';
             FLUSH",
        )
        .await
        .expect("an interval join over two files with a late row each");
    let pairs = common::sorted_rows(
        &client,
        "SELECT a_id, b_id FROM pairs WHERE a_id = 6 OR b_id = 109",
    )
    .await;
    assert!(pairs.is_empty(), "a late row was joined: {pairs:?}");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let metrics = common::http_get(server.http_port, "/metrics").await;
        let late = |stream: &str| {
            metrics.contains(&format!("weir_late_rows_total{{stream=\"{stream}\"}} 1\n"))
        };
        if late("a") && late("b") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "each stream's late row is not counted:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("late"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
