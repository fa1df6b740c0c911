//! kill -9 under OVER windows (issue 24): a frame of the last rows, a range
//! of time, and a running aggregate with row numbers, each checkpointed by
//! its workers (waiting rows, frames, accumulators), over the Nexmark
//! generator with a short checkpoint interval. The server is killed at
//! moments drawn from a printed seed (`WEIR_CRASH_SEED` replays a run) and
//! restarted each time; at the end each view holds the batch answer over
//! the same generated rows: every row once, with its frame's values.

mod common;

use common::crash::{CrashRng, kill_at_drawn_moments};
use common::{WeirProcess, connect};

const ARGS: [&str; 2] = ["--checkpoint-interval", "200ms"];

const STREAM: &str = "CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 3000, rows = 24000, seed = 11)";

/// The last five bids of each auction (ties in time broken by the rest of
/// the row, so that the batch answer is unique).
const LAST5: &str = "SELECT auction, bidder, price, date_time,
    count(*) OVER (PARTITION BY auction ORDER BY date_time, bidder, price, url ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS n,
    sum(price) OVER (PARTITION BY auction ORDER BY date_time, bidder, price, url ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS total,
    max(price) OVER (PARTITION BY auction ORDER BY date_time, bidder, price, url ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS top
  FROM bid";

/// Each bidder's bids of the last second.
const LAST_SECOND: &str = "SELECT auction, bidder, price, date_time,
    count(*) OVER (PARTITION BY bidder ORDER BY date_time RANGE BETWEEN INTERVAL '1 second' PRECEDING AND CURRENT ROW) AS n,
    min(price) OVER (PARTITION BY bidder ORDER BY date_time RANGE BETWEEN INTERVAL '1 second' PRECEDING AND CURRENT ROW) AS low
  FROM bid";

/// A running total per channel, and each bid's number in it.
const RUNNING: &str = "SELECT auction, bidder, price, date_time,
    sum(price) OVER (PARTITION BY channel ORDER BY date_time, auction, bidder, price, url ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS total,
    row_number() OVER (PARTITION BY channel ORDER BY date_time, auction, bidder, price, url ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS rn
  FROM bid";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_under_over_windows_the_views_equal_the_batch_answer() {
    let mut rng = CrashRng::from_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = connect(&server).await;
    client
        .batch_execute(&format!(
            "{STREAM};
             CREATE MATERIALIZED VIEW last5 AS {LAST5};
             CREATE MATERIALIZED VIEW last_second AS {LAST_SECOND};
             CREATE MATERIALIZED VIEW running AS {RUNNING}"
        ))
        .await
        .expect("the views");
    // Three kills at drawn moments while the generator runs (8 s of rows).
    let server = kill_at_drawn_moments(server, dir.path(), &ARGS, &mut rng, 3, (300, 1799)).await;
    let client = connect(&server).await;
    client.simple_query("FLUSH").await.expect("FLUSH");
    for (view, query) in [
        ("last5", LAST5),
        ("last_second", LAST_SECOND),
        ("running", RUNNING),
    ] {
        let rows = common::sorted_rows(&client, &format!("SELECT * FROM {view}")).await;
        assert_eq!(rows.len(), 24000, "{view}: every bid once");
        assert_eq!(
            rows,
            common::sorted_rows(&client, query).await,
            "{view}: the batch answer"
        );
    }
}
