//! Savepoints through the real binary: `CREATE SAVEPOINT`, the savepoint a
//! suspend takes, `SHOW SAVEPOINTS`, `ALTER JOB .. RESUME FROM SAVEPOINT`
//! an older one, and savepoints across a kill -9.
//!
//! The job is a tumbling count over the `nexmark` generator, which makes
//! exactly `rate` bids per second of event time: every closed one-second
//! window of a run that lost or repeated nothing counts exactly `rate`, and
//! the windows follow each other without a gap. That is what an
//! uninterrupted run gives, so it is what a suspended, resumed and rewound
//! one must give.

mod common;

use std::time::{Duration, Instant};

use common::WeirProcess;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Bids per second of event time (and of wall-clock time).
const RATE: i64 = 2000;

/// A generous deadline for what a test waits on (only a broken server
/// reaches it; never a timed assertion).
const DEADLINE: Duration = Duration::from_secs(120);

/// (windows, distinct window starts, smallest count, largest count,
/// seconds from the first window start to the last).
async fn windows(client: &Client) -> (i64, i64, i64, i64, i64) {
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT window_start), coalesce(min(c), 0), coalesce(max(c), 0),
                    coalesce(CAST(extract(epoch FROM max(window_start) - min(window_start)) AS BIGINT), -1)
             FROM per_second",
            &[],
        )
        .await
        .expect("the view's windows");
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

/// Every window exact and none missing or repeated; how many there are.
async fn assert_exact(client: &Client, when: &str) -> i64 {
    let (n, distinct, min, max, span) = windows(client).await;
    assert_eq!(
        (distinct, min, max, span),
        (n, RATE, RATE, n - 1),
        "{when}: {n} windows, {distinct} distinct starts, counts {min}..{max}, span {span}s"
    );
    n
}

/// Wait until the view has closed at least `n` windows.
async fn wait_for_windows(client: &Client, n: i64) {
    let deadline = Instant::now() + DEADLINE;
    while windows(client).await.0 < n {
        assert!(Instant::now() < deadline, "fewer than {n} windows closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `SHOW SAVEPOINTS` as (name, job, epoch, origin).
async fn savepoints(client: &Client) -> Vec<(String, String, u64, String)> {
    client
        .simple_query("SHOW SAVEPOINTS")
        .await
        .expect("SHOW SAVEPOINTS")
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((
                r.get("name").unwrap_or_default().to_string(),
                r.get("job").unwrap_or_default().to_string(),
                r.get("epoch").unwrap_or("0").parse().expect("an epoch"),
                r.get("origin").unwrap_or_default().to_string(),
            )),
            _ => None,
        })
        .collect()
}

/// A column of job `per_second`'s `SHOW JOBS` row (`NULL` for none).
async fn job_column(client: &Client, column: &str) -> String {
    client
        .simple_query("SHOW JOBS")
        .await
        .expect("SHOW JOBS")
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) if r.get("name") == Some("per_second") => {
                Some(r.get(column).unwrap_or("NULL").to_string())
            }
            _ => None,
        })
        .expect("per_second is a job")
}

async fn status(client: &Client) -> String {
    job_column(client, "status").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_resume_and_rewind_to_an_older_savepoint_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--checkpoint-interval", "300ms"];
    let server = WeirProcess::start_with(dir.path(), &args, &[]);
    let client = common::connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = {RATE}, seed = 3);
             CREATE MATERIALIZED VIEW per_second AS
               SELECT window_start, count(*) AS c
               FROM TUMBLE(bid, date_time, INTERVAL '1 second')
               GROUP BY window_start
               EMIT ON WINDOW CLOSE"
        ))
        .await
        .expect("a windowed view over an unbounded generator");
    wait_for_windows(&client, 2).await;
    // The job's watermark is its sources' event time (the generator starts
    // at 2024-01-01 00:00:00).
    let watermark = job_column(&client, "watermark").await;
    assert!(watermark.starts_with("2024-01-01 00:"), "{watermark}");

    // A savepoint by name, of the running job.
    client
        .batch_execute("CREATE SAVEPOINT early FOR JOB per_second")
        .await
        .expect("CREATE SAVEPOINT");
    let listed = savepoints(&client).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let (_, job, early_epoch, origin) = &listed[0];
    assert_eq!((job.as_str(), origin.as_str()), ("per_second", "user"));
    let after_early = assert_exact(&client, "after CREATE SAVEPOINT").await;
    wait_for_windows(&client, after_early + 2).await;

    // Suspend: stopped with a savepoint of its own; the view keeps what it
    // had, and nothing closes while suspended.
    client
        .batch_execute("ALTER JOB per_second SUSPEND")
        .await
        .expect("SUSPEND");
    assert_eq!(status(&client).await, "suspended");
    let at_suspend = assert_exact(&client, "suspended").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        windows(&client).await.0,
        at_suspend,
        "a window closed while suspended"
    );
    let listed = savepoints(&client).await;
    let suspend: Vec<_> = listed.iter().filter(|s| s.3 == "suspend").collect();
    assert_eq!(suspend.len(), 1, "{listed:?}");
    assert!(suspend[0].2 > *early_epoch, "{listed:?}");

    // Resume: it goes on from the suspend, exact.
    client
        .batch_execute("ALTER JOB per_second RESUME")
        .await
        .expect("RESUME");
    wait_for_windows(&client, at_suspend + 2).await;
    let resumed = assert_exact(&client, "resumed").await;

    // Rewind: suspend again, resume from the older savepoint. The view
    // goes back to what it held then and closes the same windows again,
    // once each.
    client
        .batch_execute("ALTER JOB per_second SUSPEND")
        .await
        .expect("SUSPEND again");
    client
        .batch_execute("ALTER JOB per_second RESUME FROM SAVEPOINT early")
        .await
        .expect("RESUME FROM SAVEPOINT");
    assert_eq!(status(&client).await, "running");
    wait_for_windows(&client, resumed + 2).await;
    let rewound = assert_exact(&client, "resumed from the older savepoint").await;

    // kill -9: the savepoints are still there and the job resumes from its
    // latest state, still exact.
    server.kill();
    let server = WeirProcess::start_with(dir.path(), &args, &[]);
    let client = common::connect(&server).await;
    let listed = savepoints(&client).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed.iter().any(|s| s.0 == "early" && s.3 == "user"),
        "{listed:?}"
    );
    wait_for_windows(&client, rewound + 2).await;
    assert_exact(&client, "after kill -9").await;

    // A savepoint outlives its job's checkpoints and can be dropped.
    client
        .batch_execute("DROP MATERIALIZED VIEW per_second")
        .await
        .expect("drop the view");
    assert_eq!(savepoints(&client).await.len(), 3);
    client
        .batch_execute("DROP SAVEPOINT early")
        .await
        .expect("DROP SAVEPOINT");
    assert_eq!(savepoints(&client).await.len(), 2);
}
