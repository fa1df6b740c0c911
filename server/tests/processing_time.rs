//! Windows over processing time (`TUMBLE(s, PROCTIME(), ..)`, design 0012
//! section 6) through the real binary: a window closes by the clock, with
//! no further input; and a kill -9 neither loses nor double-counts a row.
//!
//! The input is a stream Weir owns, written with `INSERT`: rows come only
//! when the test writes them, so a window that closes does so by the clock
//! alone (over event time it would wait for a later row for ever).

mod common;
#[path = "common/jobs.rs"]
mod jobs;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{WeirProcess, connect};
use tokio_postgres::Client;

/// A generous deadline for what a test waits on: only a broken server
/// reaches it.
const DEADLINE: Duration = Duration::from_secs(60);

const ARGS: [&str; 2] = ["--checkpoint-interval", "200ms"];

/// Two-second windows of processing time over `clicks`, each emitted once
/// when the clock passes its end.
const CLOSED: &str = "CREATE MATERIALIZED VIEW closed AS
  SELECT window_start, window_end, count(*) AS n, sum(id) AS ids
  FROM TUMBLE(clicks, PROCTIME(), INTERVAL '2 seconds')
  GROUP BY window_start, window_end EMIT ON WINDOW CLOSE";

/// The same windows, updated as rows come.
const OPEN: &str = "CREATE MATERIALIZED VIEW open AS
  SELECT window_start, window_end, count(*) AS n, sum(id) AS ids
  FROM TUMBLE(clicks, PROCTIME(), INTERVAL '2 seconds')
  GROUP BY window_start, window_end";

/// Milliseconds since the Unix epoch, on the test's clock (the server's:
/// both run on this machine).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

/// The view's windows: (start ms, end ms, rows, sum of ids), by start.
async fn windows(client: &Client, view: &str) -> Vec<(i64, i64, i64, i64)> {
    let sql = format!(
        "SELECT CAST(date_part('epoch', window_start) * 1000 AS BIGINT),
                CAST(date_part('epoch', window_end) * 1000 AS BIGINT), n, ids
         FROM {view} ORDER BY 1"
    );
    client
        .query(&sql, &[])
        .await
        .expect("read the view")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// Wait until `view` holds windows with `rows` rows in all.
async fn wait_for_rows(client: &Client, view: &str, rows: i64) -> Vec<(i64, i64, i64, i64)> {
    let started = Instant::now();
    loop {
        let found = windows(client, view).await;
        if found.iter().map(|w| w.2).sum::<i64>() >= rows {
            return found;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{view} never held {rows} rows: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processing_time_window_closes_by_the_clock_with_no_further_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE STREAM clicks (id BIGINT); {CLOSED}; {OPEN};"
        ))
        .await
        .expect("create the stream and views");
    let written = now_ms();
    client
        .batch_execute("INSERT INTO clicks VALUES (1), (2), (3)")
        .await
        .expect("insert");
    // No more input from here on: only the clock can close the window.
    let started = Instant::now();
    let closed = loop {
        let found = windows(&client, "closed").await;
        if !found.is_empty() {
            break (found, now_ms());
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the window never closed with no further input"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (found, seen) = closed;
    assert_eq!(found.len(), 1, "the three rows in one window: {found:?}");
    let (start, end, n, ids) = found[0];
    assert_eq!((n, ids), (3, 6), "{found:?}");
    assert_eq!(end - start, 2000, "a two-second window: {found:?}");
    assert_eq!(start % 2000, 0, "aligned to the epoch: {found:?}");
    // The rows were stamped after the test wrote them (one clock, one
    // machine), so their window ends after that.
    assert!(
        end > written,
        "window {found:?} ends before the rows came ({written})"
    );
    // Emitted only once the clock passed its end, and soon after: the
    // watermark is the clock, sent every 100 ms (the bound is loose for a
    // loaded machine; it is seconds, not for ever).
    assert!(
        seen >= end,
        "emitted at {seen}, before the window's end {end}"
    );
    eprintln!(
        "window [{start}, {end}) emitted {} ms after its end",
        seen - end
    );
    assert!(
        seen - end < 10_000,
        "emitted {} ms after the window's end",
        seen - end
    );
    // The updating view has the same window (and kept it after it closed).
    assert_eq!(windows(&client, "open").await, found);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_processing_time_windows_open_no_row_is_lost_or_counted_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE STREAM clicks (id BIGINT); {CLOSED}; {OPEN};"
        ))
        .await
        .expect("create the stream and views");
    // Rows in several windows, some closed and checkpointed, the last ones
    // still open when the server is killed.
    let mut written = 0;
    for round in 0..6 {
        let values: Vec<String> = (0..5).map(|i| format!("({})", round * 5 + i + 1)).collect();
        client
            .batch_execute(&format!("INSERT INTO clicks VALUES {}", values.join(", ")))
            .await
            .expect("insert");
        written += 5;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    wait_for_rows(&client, "open", written).await;
    drop(client);
    server.kill();

    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = connect(&server).await;
    // Both views restored their windows from a checkpoint (the rows were
    // written over four seconds, at a 200 ms interval).
    for view in ["open", "closed"] {
        let events = jobs::events(&client, view).await;
        assert!(
            events
                .iter()
                .any(|e| e.2.starts_with("resumed from checkpoint")),
            "{view} did not resume from a checkpoint: {events:?}"
        );
    }
    client
        .batch_execute("INSERT INTO clicks VALUES (31), (32)")
        .await
        .expect("insert after the restart");
    written += 2;
    let all_ids: i64 = (1..=written).sum();
    // Rows replayed after the restore are stamped by the new run's clock, so
    // the windows may differ from a run without the kill; each row is
    // still in exactly one of them.
    for view in ["open", "closed"] {
        wait_for_rows(&client, view, written).await;
    }
    // Longer than a window: a row counted twice would show by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for view in ["open", "closed"] {
        let found = windows(&client, view).await;
        let rows: i64 = found.iter().map(|w| w.2).sum();
        let ids: i64 = found.iter().map(|w| w.3).sum();
        assert_eq!(
            (rows, ids),
            (written, all_ids),
            "{view}: every row once after the kill: {found:?}"
        );
        for (start, end, _, _) in &found {
            assert_eq!(end - start, 2000, "{view}: {found:?}");
        }
        let starts: std::collections::BTreeSet<i64> = found.iter().map(|w| w.0).collect();
        assert_eq!(
            starts.len(),
            found.len(),
            "{view}: one row per window: {found:?}"
        );
    }
}
