//! Lookup joins (`FOR SYSTEM_TIME AS OF`) through the real binary: a
//! misplaced clause is refused at its position, and a lookup join killed
//! (kill -9, at a failpoint in its workers) while stream rows go through
//! comes back with its table side restored from its checkpoint and every
//! stream row's pairs exactly once, each with the table as it was when the
//! row passed. Views created over a stream that already holds thousands of
//! rows join every one of them with the table's rows (the table first),
//! while checkpoints run and across a kill -9 right after they start.

mod common;
#[path = "common/jobs.rs"]
mod jobs;

use std::time::{Duration, Instant};

use common::WeirProcess;
use tokio_postgres::Client;

/// A generous deadline for what a test waits on (never a timed assertion:
/// only a broken server reaches it).
const DEADLINE: Duration = Duration::from_secs(120);

const ARGS: [&str; 2] = ["--checkpoint-interval", "100ms"];

const SETUP: &str = "
    CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
    CREATE STREAM clicks (id BIGINT, user_id BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts);
    INSERT INTO users SELECT v, 'old' || v FROM generate_series(0, 49) AS s(v);
    CREATE MATERIALIZED VIEW enriched AS
      SELECT c.id, c.user_id, u.name
      FROM clicks c JOIN users FOR SYSTEM_TIME AS OF c.ts AS u ON c.user_id = u.id";

/// Insert clicks `from..from + count`, 20 to a statement, each on user
/// `id % 50`.
async fn clicks(client: &Client, from: i64, count: i64) -> Result<(), tokio_postgres::Error> {
    insert_clicks(client, from, count, 50, 20).await
}

/// Insert clicks `from..from + count`, `per_statement` to a statement, each
/// on user `id % users`.
async fn insert_clicks(
    client: &Client,
    from: i64,
    count: i64,
    users: i64,
    per_statement: usize,
) -> Result<(), tokio_postgres::Error> {
    for start in (from..from + count).step_by(per_statement) {
        client
            .batch_execute(&format!(
                "INSERT INTO clicks SELECT v, v % {users}, to_timestamp_seconds(1704067200 + v)
                 FROM generate_series({start}, {}) AS s(v)",
                start + per_statement as i64 - 1
            ))
            .await?;
    }
    Ok(())
}

/// The view's rows as sorted `id|user_id|name` lines; panics on a click
/// there twice.
async fn view(client: &Client) -> Vec<String> {
    let rows = common::sorted_rows(client, "SELECT id, user_id, name FROM enriched").await;
    let mut ids = std::collections::BTreeSet::new();
    for row in &rows {
        let id = row.split('|').next().unwrap_or_default().to_string();
        assert!(ids.insert(id.clone()), "click {id} is in the view twice");
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misplaced_for_system_time_is_refused_at_its_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &[], &[]);
    let client = common::connect(&server).await;
    client.batch_execute(SETUP).await.expect("setup");
    // A stream on the lookup side: the error points at the clause's column.
    let sql = "CREATE MATERIALIZED VIEW bad AS SELECT * FROM users u JOIN clicks c FOR SYSTEM_TIME AS OF u.id ON u.id = c.user_id";
    let err = client.batch_execute(sql).await.expect_err("refused");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42601", "{}", db.message());
    assert!(db.message().contains("not a table"), "{}", db.message());
    let at = sql.find("u.id ON").expect("the column") + 1;
    assert_eq!(
        db.position(),
        Some(&tokio_postgres::error::ErrorPosition::Original(at as u32)),
        "{}",
        db.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_a_lookup_join_keeps_each_rows_lookup_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    client.batch_execute(SETUP).await.expect("setup");
    client.simple_query("FLUSH").await.expect("FLUSH");
    // The first clicks see the old names.
    clicks(&client, 0, 400).await.expect("clicks");
    client.simple_query("FLUSH").await.expect("FLUSH");
    let mut expected = view(&client).await;
    assert_eq!(expected.len(), 400, "every click has its user");
    assert!(expected.iter().all(|r| r.contains("|old")));
    // The names change, and the change is in a checkpoint (FLUSH's
    // barrier) before the next clicks: they see the new names, in the run
    // that crashes and in the one that replays them alike.
    client
        .batch_execute("UPDATE users SET name = 'new' || id")
        .await
        .expect("rename");
    client.simple_query("FLUSH").await.expect("FLUSH");
    // Two checkpoints complete after the rename (FLUSH's barrier reached
    // the view): the last one holds the new names in the table side.
    let epoch = |row: &std::collections::HashMap<String, String>| {
        row["last_checkpoint_epoch"].parse::<u64>().unwrap_or(0)
    };
    let now = epoch(&jobs::job_row(&client, "enriched").await);
    jobs::wait_until(&client, "enriched", "checkpointed twice more", |r| {
        epoch(r) >= now + 2
    })
    .await;
    server.kill();
    // The server aborts (as kill -9) at its join workers' 3rd batch, with
    // some of the clicks inserted and passed, perhaps others not.
    let server = WeirProcess::start_with(
        dir.path(),
        &ARGS,
        &[("WEIR_FAILPOINT", "worker-batch/enriched@3")],
    );
    let client = common::connect(&server).await;
    let written = clicks(&client, 400, 600).await;
    eprintln!("inserting the clicks after the rename: {written:?}");
    let mut server = server;
    let deadline = Instant::now() + DEADLINE;
    while !server.exited() {
        assert!(Instant::now() < deadline, "the server did not abort");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Restored: the rows inserted before the abort are read again from the
    // stream's log, the table side from the checkpoint.
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    client.simple_query("FLUSH").await.expect("FLUSH");
    let inserted = common::sorted_rows(&client, "SELECT count(*) FROM clicks").await;
    eprintln!("clicks in the stream after the abort: {inserted:?}");
    let new = common::sorted_rows(
        &client,
        "SELECT c.id, c.user_id, u.name FROM clicks c JOIN users u ON c.user_id = u.id WHERE c.id >= 400",
    )
    .await;
    assert!(!new.is_empty(), "no click after the rename went in");
    expected.extend(new);
    expected.sort();
    assert_eq!(
        view(&client).await,
        expected,
        "the view after kill -9 is not each click once with the names it saw"
    );
    // Later clicks keep going.
    clicks(&client, 1000, 20).await.expect("clicks");
    client.simple_query("FLUSH").await.expect("FLUSH");
    assert_eq!(view(&client).await.len(), expected.len() + 20);
}

/// Users 0..50; clicks on users `v % 60`, so a sixth of them find none.
const FIRST_SETUP: &str = "
    CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE nobody (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
    CREATE STREAM clicks (id BIGINT, user_id BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts);
    INSERT INTO users SELECT v, 'u' || v FROM generate_series(0, 49) AS s(v);";

/// Clicks in the stream before any view reads it.
const FIRST_CLICKS: i64 = 6000;

/// The views of round `round`: inner and LEFT over `users`, LEFT over the
/// empty `nobody`.
fn first_views(round: usize) -> String {
    format!(
        "CREATE MATERIALIZED VIEW inner_{round} AS
           SELECT c.id, u.name FROM clicks c
           JOIN users FOR SYSTEM_TIME AS OF c.ts AS u ON c.user_id = u.id;
         CREATE MATERIALIZED VIEW left_{round} AS
           SELECT c.id, u.name FROM clicks c
           LEFT JOIN users FOR SYSTEM_TIME AS OF c.ts AS u ON c.user_id = u.id;
         CREATE MATERIALIZED VIEW nobody_{round} AS
           SELECT c.id, n.name FROM clicks c
           LEFT JOIN nobody FOR SYSTEM_TIME AS OF c.ts AS n ON c.user_id = n.id;"
    )
}

/// Check round `round`'s views against the `clicks` clicks in the stream
/// (ids `0..clicks`, none on a user in 50..60 at any time).
async fn check_first_views(client: &Client, round: usize, clicks: i64) {
    let matched = (0..clicks).filter(|v| v % 60 < 50).count() as i64;
    let last_matched = (0..clicks).rfind(|v| v % 60 < 50).unwrap_or_default();
    let figures = |view: &str| {
        format!("SELECT count(*), count(name), count(DISTINCT id), min(id), max(id) FROM {view}")
    };
    let line =
        |rows: i64, named: i64, ids: i64, last: i64| format!("{rows}|{named}|{ids}|0|{last}");
    for (view, expected) in [
        (
            format!("inner_{round}"),
            line(matched, matched, matched, last_matched),
        ),
        (
            format!("left_{round}"),
            line(clicks, matched, clicks, clicks - 1),
        ),
        (
            format!("nobody_{round}"),
            line(clicks, 0, clicks, clicks - 1),
        ),
    ] {
        let got = common::sorted_rows(client, &figures(&view)).await;
        assert_eq!(
            got,
            vec![expected],
            "{view}: rows, named rows, distinct clicks, first and last click"
        );
    }
    // Each named row carries its own user's name.
    let wrong = common::sorted_rows(
        client,
        &format!(
            "SELECT count(*) FROM left_{round} l JOIN clicks c ON l.id = c.id
             WHERE l.name IS NOT NULL AND l.name <> 'u' || c.user_id"
        ),
    )
    .await;
    assert_eq!(
        wrong,
        vec!["0"],
        "left_{round}: a click with another user's name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_a_stream_with_rows_join_every_row_with_the_tables_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    client.batch_execute(FIRST_SETUP).await.expect("setup");
    insert_clicks(&client, 0, FIRST_CLICKS, 60, 1000)
        .await
        .expect("clicks");
    // Several rounds of new views, each racing its two inputs while
    // checkpoints are taken every 100ms.
    for round in 0..3 {
        client
            .batch_execute(&first_views(round))
            .await
            .expect("views");
        client.simple_query("FLUSH").await.expect("FLUSH");
        check_first_views(&client, round, FIRST_CLICKS).await;
    }
    // A round killed (kill -9) right after its views started, perhaps
    // before their first checkpoint, perhaps holding clicks: restarted,
    // each view has every click once.
    client.batch_execute(&first_views(3)).await.expect("views");
    server.kill();
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    client.simple_query("FLUSH").await.expect("FLUSH");
    for round in 0..4 {
        check_first_views(&client, round, FIRST_CLICKS).await;
    }
    // And they go on with later clicks.
    insert_clicks(&client, FIRST_CLICKS, 60, 60, 60)
        .await
        .expect("clicks");
    client.simple_query("FLUSH").await.expect("FLUSH");
    for round in 0..4 {
        check_first_views(&client, round, FIRST_CLICKS + 60).await;
    }
}
