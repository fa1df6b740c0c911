//! kill -9 under views that close windows over other views (issue 24,
//! watermarks through a view): a filter view over the Nexmark generator, a
//! `TUMBLE .. EMIT ON WINDOW CLOSE` over it, and a `TUMBLE` over that
//! one's window ends (windows of windows), with a short checkpoint
//! interval. The first kill comes while all three run: the filter view's
//! source is held midway (the `source-batch/dear@3:pause` failpoint) until
//! windows closed through it and checkpoints were taken; the second at a
//! moment drawn from a printed seed (`WEIR_CRASH_SEED` replays a run). The
//! views that read views derive their rows again from the views they read,
//! whose watermarks are restored and handed on again. At the end each view
//! holds the batch answer: no window lost, none counted twice, no row late
//! that was on time.

mod common;

use std::time::{Duration, Instant};

use common::crash::CrashRng;
use common::{WeirProcess, connect};

/// A generous deadline for what a test waits on (never a timed assertion:
/// only a broken server reaches it).
const DEADLINE: Duration = Duration::from_secs(180);

const ARGS: [&str; 2] = ["--checkpoint-interval", "200ms"];

/// Six batches of 8192 rows, 16 s of event time.
const STREAM: &str = "CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 3000, rows = 48000, seed = 3)";

/// The filter view: the stream's event-time column kept, so it has the
/// stream's watermark.
const DEAR: &str = "SELECT auction, bidder, price, date_time FROM bid WHERE price > 500";

/// Two-second totals over the filter view, as the batch answer over the
/// stream gives them.
const PER_2S_BATCH: &str = "SELECT window_end AS ts, count(*) AS n, sum(price) AS total
  FROM TUMBLE(bid, date_time, INTERVAL '2 seconds') WHERE price > 500 GROUP BY window_start, window_end";

/// Ten-second totals over the two-second view's window ends.
const PER_10S: &str =
    "SELECT window_start, window_end, count(*) AS windows, sum(n) AS n, sum(total) AS total
  FROM TUMBLE(per_2s, ts, INTERVAL '10 seconds') GROUP BY window_start, window_end";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_views_close_windows_over_views_each_view_equals_the_batch_answer() {
    let mut rng = CrashRng::from_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = WeirProcess::start_with(
        dir.path(),
        &ARGS,
        &[("WEIR_FAILPOINT", "source-batch/dear@3:pause")],
    );
    let client = connect(&server).await;
    client
        .batch_execute(&format!(
            "{STREAM};
             CREATE MATERIALIZED VIEW dear AS {DEAR};
             CREATE MATERIALIZED VIEW per_2s AS
               SELECT window_end AS ts, count(*) AS n, sum(price) AS total
               FROM TUMBLE(dear, date_time, INTERVAL '2 seconds') GROUP BY window_start, window_end
               EMIT ON WINDOW CLOSE;
             CREATE MATERIALIZED VIEW per_10s AS {PER_10S} EMIT ON WINDOW CLOSE"
        ))
        .await
        .expect("the stream and the views");
    // Held midway: windows close through the filter view while it and both
    // views over it run, and checkpoints are taken.
    let deadline = Instant::now() + DEADLINE;
    while common::sorted_rows(&client, "SELECT * FROM per_2s")
        .await
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "no window closed through the view"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        common::sorted_rows(&client, "SELECT * FROM per_10s")
            .await
            .is_empty(),
        "the ten-second window is still open while the source is held"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    eprintln!("crash 1, the filter view's source held midway");
    server.kill();
    server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let wait = rng.next() % 1500;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    eprintln!("crash 2 after {wait} ms");
    server.kill();
    server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = connect(&server).await;
    client.simple_query("FLUSH").await.expect("FLUSH");

    let per_2s = common::sorted_rows(&client, "SELECT * FROM per_2s").await;
    assert!(per_2s.len() >= 3, "several two-second windows: {per_2s:?}");
    assert_eq!(
        per_2s,
        common::sorted_rows(&client, PER_2S_BATCH).await,
        "the windows over the filter view against the batch answer over the stream"
    );
    assert_eq!(
        common::sorted_rows(&client, "SELECT * FROM per_10s").await,
        common::sorted_rows(&client, PER_10S).await,
        "the windows of windows against the batch answer over the view they read"
    );
    // Every row of the filter view in exactly one ten-second window.
    assert_eq!(
        common::sorted_rows(&client, "SELECT sum(n) FROM per_10s").await,
        common::sorted_rows(&client, "SELECT count(*) FROM bid WHERE price > 500").await,
        "the windows of windows count every row once"
    );
}
