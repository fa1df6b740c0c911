//! kill -9 under views of several stateful stages in one query (issue 24):
//! a TopN over an aggregate and an aggregate over an aggregate, each stage
//! checkpointed by its own workers, over the Nexmark generator with a short
//! checkpoint interval. The server is killed at moments drawn from a
//! printed seed (`WEIR_CRASH_SEED` replays a run) and restarted each time;
//! at the end each view holds the batch answer over the same generated
//! rows, and the two-stage view's file sink adds up to it with every row
//! written once: nothing lost, nothing counted twice. An aggregate over a
//! regular join with a state TTL is killed the same way and equals the same
//! view run once; a LEFT interval join (each left row that never paired
//! padded once the right watermark passes its reach), killed at placed
//! failpoints, equals the batch answer: no padded row twice, none lost,
//! none for a row that paired.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::crash::{CrashRng, kill_at_drawn_moments};
use common::{WeirProcess, connect};

/// A generous deadline for what a test waits on (never a timed assertion:
/// only a broken server reaches it).
const DEADLINE: Duration = Duration::from_secs(180);

const ARGS: [&str; 2] = ["--checkpoint-interval", "200ms"];

const STREAM: &str = "CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 3000, rows = 24000, seed = 5)";

/// The TopN over an aggregate: the three busiest bidders per bucket.
const BUSIEST: &str = "SELECT * FROM (
    SELECT bucket, bidder, n, row_number() OVER (PARTITION BY bucket ORDER BY n DESC, bidder) AS rn
    FROM (SELECT auction % 5 AS bucket, bidder, count(*) AS n FROM bid GROUP BY auction % 5, bidder))
  WHERE rn <= 3";

/// The aggregate over an aggregate: how many auctions had each number of bids.
const HISTOGRAM: &str = "SELECT n, count(*) AS auctions
  FROM (SELECT auction, count(*) AS n FROM bid GROUP BY auction) GROUP BY n";

/// What the sink's committed files add up to, as `n|auctions` lines
/// (inserts +1, deletes -1); panics on a row written or deleted twice.
fn folded(folder: &Path) -> Vec<String> {
    common::folded_sink(folder, &["n", "auctions"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_under_a_top_n_over_an_aggregate_and_an_aggregate_over_an_aggregate_the_views_equal_the_batch_answer()
 {
    let mut rng = CrashRng::from_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = connect(&server).await;
    client
        .batch_execute(&format!(
            "{STREAM};
             CREATE MATERIALIZED VIEW busiest AS {BUSIEST};
             CREATE MATERIALIZED VIEW histogram AS {HISTOGRAM};
             CREATE SINK histogram_out FROM histogram WITH (connector = 'file', path = '{}', format = 'json')",
            out.display()
        ))
        .await
        .expect("the views and the sink");
    // Three kills at drawn moments while the generator runs (8 s of rows).
    let server = kill_at_drawn_moments(server, dir.path(), &ARGS, &mut rng, 3, (300, 1799)).await;
    let client = connect(&server).await;
    client.simple_query("FLUSH").await.expect("FLUSH");
    let busiest = common::sorted_rows(&client, "SELECT * FROM busiest").await;
    assert!(!busiest.is_empty(), "the TopN view has rows");
    assert_eq!(
        busiest,
        common::sorted_rows(&client, BUSIEST).await,
        "the TopN over an aggregate"
    );
    let histogram = common::sorted_rows(&client, "SELECT * FROM histogram").await;
    assert_eq!(
        histogram,
        common::sorted_rows(&client, HISTOGRAM).await,
        "the aggregate over an aggregate"
    );
    let deadline = Instant::now() + DEADLINE;
    while folded(&out) != histogram {
        assert!(
            Instant::now() < deadline,
            "the sink never added up to the view: {:?} against {histogram:?}",
            folded(&out)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two bid streams from two seeds, with event time (the generators'
/// watermarks) over the same 120 s: bids for the same item (1 000 of them)
/// meet about once a second, so the join makes pairs all along the run and
/// a TTL of a second drops most of the batch answer's.
const TWO_BID_STREAMS: &str = "CREATE STREAM bid_a WITH (connector = 'nexmark', table = 'bid', rate = 1000, rows = 120000, seed = 5);
    CREATE STREAM bid_b WITH (connector = 'nexmark', table = 'bid', rate = 1000, rows = 120000, seed = 6)";

/// An aggregate over a regular join with a state TTL: per item, the pairs
/// of bids that met within the TTL.
const TTL_PAIRS: &str = "SELECT a.url, count(*) AS pairs, sum(a.price - b.price) AS spread
  FROM bid_a AS a JOIN bid_b AS b ON a.url = b.url GROUP BY a.url";

/// kill -9 under an aggregate over a regular join with a state TTL: the
/// join's rows (each with its side's watermark at arrival) are
/// checkpointed, the time index rebuilt on restore, and each side's rows
/// dropped at the same watermarks in the replay. After three kills the
/// view equals the same view run once without a crash, which the TTL made
/// smaller than the batch answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_under_a_join_with_a_state_ttl_the_view_equals_a_run_without_the_kills() {
    let mut rng = CrashRng::from_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = connect(&server).await;
    client
        .batch_execute(&format!(
            "{TWO_BID_STREAMS};
             CREATE MATERIALIZED VIEW ttl_pairs WITH (join_state_ttl = '1 second') AS {TTL_PAIRS}"
        ))
        .await
        .expect("the streams and the view");
    // The join runs for a second or two on an idle machine: the kills come
    // sooner than the other tests' (each restored run replays from its
    // checkpoint, so the later kills fall into replays).
    for crash in 1..=3 {
        let wait = 100 + rng.next() % 700;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let progress = connect(&server)
            .await
            .query_one("SELECT sum(pairs)::BIGINT FROM ttl_pairs", &[])
            .await
            .map(|row| row.get::<_, Option<i64>>(0));
        eprintln!("crash {crash} after {wait} ms, with {progress:?} pairs in the view");
        server.kill();
        server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    }
    let client = connect(&server).await;
    // The same view, run once from the start without a crash.
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "CREATE MATERIALIZED VIEW ttl_pairs_once WITH (join_state_ttl = '1 second') AS {TTL_PAIRS};
             FLUSH"
        ))
        .await
        .expect("the view run once");
    eprintln!("the view ran once in {:?}", started.elapsed());
    let crashed = common::sorted_rows(&client, "SELECT * FROM ttl_pairs").await;
    let once = common::sorted_rows(&client, "SELECT * FROM ttl_pairs_once").await;
    assert!(!once.is_empty(), "the join made pairs");
    assert_eq!(
        crashed, once,
        "the view after kill -9 and the view run once"
    );
    let pairs = |sql: &str| {
        let client = &client;
        let sql = sql.to_string();
        async move {
            let row = client.query_one(&sql, &[]).await.expect("count");
            row.get::<_, i64>(0)
        }
    };
    let kept = pairs("SELECT sum(pairs)::BIGINT FROM ttl_pairs_once").await;
    let all = pairs("SELECT count(*) FROM bid_a AS a JOIN bid_b AS b ON a.url = b.url").await;
    eprintln!("{kept} pairs of {all} in the batch answer");
    assert!(
        kept < all,
        "the TTL dropped no pair: {kept} pairs of {all} in the batch answer"
    );
}

/// A LEFT interval join of the two bid streams: each `bid_a` row with the
/// `bid_b` bids for the same item within half a second of it, or, when
/// there is none, padded with NULLs. Bids for an item meet about once a
/// second, so about half the left rows pair and half are padded, all along
/// the run.
const LEFT_INTERVAL: &str = "SELECT a.auction, a.bidder, a.price, a.date_time, b.bidder AS b_bidder, b.date_time AS b_date_time
  FROM bid_a AS a LEFT JOIN bid_b AS b
    ON a.url = b.url AND b.date_time BETWEEN a.date_time - INTERVAL '500 milliseconds' AND a.date_time + INTERVAL '500 milliseconds'";

/// kill -9 under a LEFT interval join: its rows are checkpointed with
/// whether each has paired, and a left row is padded only once the right
/// watermark passes its reach. The crashes are placed, as for the inner
/// interval join in `jobs_crash.rs`: the partition that reads the job's
/// second batch (of either stream) holds still while checkpoints complete
/// with rows, paired and not, in the join's state, and the process is
/// killed; then two restored runs abort (as kill -9) at their join
/// workers' 15th and 30th batch. At the end the view is the batch answer
/// exactly, as a multiset: a padded row emitted before a kill and again in
/// the replay would be there twice, one lost in between missing, and one
/// for a row whose "paired" flag was lost would be there beside that row's
/// pairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_under_a_left_interval_join_the_view_equals_the_batch_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--checkpoint-interval", "100ms"];
    let server = WeirProcess::start_with(
        dir.path(),
        &args,
        &[("WEIR_FAILPOINT", "source-batch/left_interval@2:pause")],
    );
    let client = connect(&server).await;
    client
        .batch_execute(&format!(
            "{TWO_BID_STREAMS};
             CREATE MATERIALIZED VIEW left_interval AS {LEFT_INTERVAL}"
        ))
        .await
        .expect("the streams and the view");
    let deadline = Instant::now() + DEADLINE;
    while rows(&client).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no row before the sources paused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let a checkpoint or two complete with the first rows in the state.
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!("killed with {} rows in the view", rows(&client).await);
    server.kill();
    for at in [15, 30] {
        let failpoint = format!("worker-batch/left_interval@{at}");
        let mut server =
            WeirProcess::start_with(dir.path(), &args, &[("WEIR_FAILPOINT", &failpoint)]);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if server.exited() {
                eprintln!("aborted at {failpoint}");
                break;
            }
            if finished_or_gone(&server).await {
                eprintln!("finished before {failpoint}");
                break;
            }
            assert!(Instant::now() < deadline, "neither aborted nor finished");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let server = WeirProcess::start_with(dir.path(), &args, &[]);
    let client = connect(&server).await;
    client.simple_query("FLUSH").await.expect("FLUSH");
    let view = common::sorted_rows(&client, "SELECT * FROM left_interval").await;
    let batch = common::sorted_rows(&client, LEFT_INTERVAL).await;
    let padded = batch.iter().filter(|r| r.ends_with("|NULL|NULL")).count();
    eprintln!("{} rows, {padded} of them padded", batch.len());
    assert!(
        padded > 0 && padded < batch.len(),
        "the batch answer has both pairs and padded rows"
    );
    if view != batch {
        fn count(rows: &[String]) -> std::collections::BTreeMap<&str, i64> {
            let mut counts = std::collections::BTreeMap::new();
            for r in rows {
                *counts.entry(r.as_str()).or_default() += 1;
            }
            counts
        }
        let (v, b) = (count(&view), count(&batch));
        let more = |x: &std::collections::BTreeMap<&str, i64>,
                    y: &std::collections::BTreeMap<&str, i64>| {
            x.iter()
                .filter(|(r, n)| y.get(*r).copied().unwrap_or(0) < **n)
                .take(5)
                .map(|(r, n)| format!("{r} x{n}"))
                .collect::<Vec<_>>()
        };
        let (extra, missing) = (more(&v, &b), more(&b, &v));
        panic!(
            "the view after kill -9 ({} rows) is not the batch answer ({} rows): more often in the view {extra:?}, more often in the batch answer {missing:?}",
            view.len(),
            batch.len()
        );
    }
}

/// How many rows the `left_interval` view holds now.
async fn rows(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM left_interval", &[])
        .await
        .map_or(0, |row| row.get::<_, i64>(0))
}

/// Is the `left_interval` job finished? `false` also when the server is
/// going (it may abort at its failpoint while asked).
async fn finished_or_gone(server: &WeirProcess) -> bool {
    let Ok((client, connection)) = server.pg_config().connect(tokio_postgres::NoTls).await else {
        return false;
    };
    tokio::spawn(connection);
    let Ok(messages) = client.simple_query("SHOW MATERIALIZED VIEWS").await else {
        return false;
    };
    messages.iter().any(|m| {
        matches!(m, tokio_postgres::SimpleQueryMessage::Row(r)
            if r.get(0) == Some("left_interval") && r.get(1) == Some("finished"))
    })
}
