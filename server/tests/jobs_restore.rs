//! `restore_strategy` through the real binary: where `ALTER JOB RESTART`,
//! `ALTER JOB RESUME` and the server's start take a job from. Each view is
//! a projection of an append-only table, written out to a JSON file sink,
//! so how often each row is in the sink's committed files says exactly what
//! the new run read again:
//! - `latest_state`: nothing (each row once);
//! - `latest_savepoint`: the rows after the newest savepoint (twice);
//! - `none`: everything (the view starts empty and reads the table anew),
//!   while the view itself always equals the batch answer.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::WeirProcess;
use tokio_postgres::Client;

/// A generous deadline for what a test waits on (never a timed assertion:
/// only a broken server reaches it).
const DEADLINE: Duration = Duration::from_secs(120);

const ARGS: [&str; 2] = ["--checkpoint-interval", "200ms"];

const VIEWS: [(&str, &str); 3] = [
    ("st", "latest_state"),
    ("sp", "latest_savepoint"),
    ("fresh", "none"),
];

/// How many times each id is in the committed files of the sink in `folder`.
fn written(folder: &Path) -> BTreeMap<i64, u32> {
    let mut counts = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return counts;
    };
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(entry.path()).expect("read a sink file");
            for line in text.lines() {
                let row: serde_json::Value = serde_json::from_str(line).expect("a json line");
                let id = row["id"].as_i64().expect("an id");
                *counts.entry(id).or_default() += 1;
            }
        }
    }
    counts
}

/// `ids` each `times` times.
fn each(ids: std::ops::RangeInclusive<i64>, times: u32) -> BTreeMap<i64, u32> {
    ids.map(|id| (id, times)).collect()
}

/// Wait until `view` equals the table and its sink holds `expected`.
async fn settled(client: &Client, out: &Path, view: &str, expected: &BTreeMap<i64, u32>) {
    client
        .simple_query(&format!("FLUSH {view}"))
        .await
        .expect("FLUSH");
    assert_eq!(
        common::sorted_rows(client, &format!("SELECT id, k FROM {view}")).await,
        common::sorted_rows(client, "SELECT id, k FROM a").await,
        "view {view}"
    );
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = written(&out.join(view));
        if &got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sink of {view} never held {} rows as expected; it holds {} ({:?}...)",
            expected.len(),
            got.len(),
            got.iter()
                .filter(|(id, n)| expected.get(id) != Some(n))
                .take(5)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn insert(client: &Client, ids: std::ops::RangeInclusive<i64>) {
    client
        .batch_execute(&format!(
            "INSERT INTO a SELECT v, v % 7 FROM generate_series({}, {}) AS s(v)",
            ids.start(),
            ids.end()
        ))
        .await
        .expect("insert");
}

/// The reason of `view`'s latest `running` event.
async fn last_start(client: &Client, view: &str) -> String {
    common::sorted_rows(client, &format!("SHOW JOB EVENTS {view}"))
        .await
        .into_iter()
        .filter(|r| r.split('|').nth(3) == Some("running"))
        // seq is the first cell: the highest is the latest.
        .max_by_key(|r| {
            r.split('|')
                .next()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0)
        })
        .and_then(|r| r.split('|').nth(4).map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_strategies_decide_where_restart_resume_and_start_take_a_job_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    client
        .batch_execute("CREATE TABLE a (id BIGINT, k BIGINT)")
        .await
        .expect("table");
    for (view, strategy) in VIEWS {
        client
            .batch_execute(&format!(
                "CREATE MATERIALIZED VIEW {view} WITH (restore_strategy = '{strategy}')
                   AS SELECT id, k FROM a;
                 CREATE SINK {view}_out FROM {view}
                   WITH (connector = 'file', path = '{}/{view}', format = 'json')",
                out.display()
            ))
            .await
            .expect("a view and its sink");
    }
    insert(&client, 1..=100).await;
    for (view, _) in VIEWS {
        settled(&client, &out, view, &each(1..=100, 1)).await;
    }
    // A savepoint of each job at 100 rows, then more rows.
    for (view, _) in VIEWS {
        client
            .simple_query(&format!("CREATE SAVEPOINT {view}_at_100 FOR JOB {view}"))
            .await
            .expect("savepoint");
    }
    insert(&client, 101..=200).await;
    for (view, _) in VIEWS {
        settled(&client, &out, view, &each(1..=200, 1)).await;
    }

    // RESTART, per strategy.
    for (view, _) in VIEWS {
        client
            .simple_query(&format!("ALTER JOB {view} RESTART"))
            .await
            .expect("restart");
    }
    let mut twice_after_100 = each(1..=100, 1);
    twice_after_100.extend(each(101..=200, 2));
    settled(&client, &out, "st", &each(1..=200, 1)).await;
    settled(&client, &out, "sp", &twice_after_100).await;
    settled(&client, &out, "fresh", &each(1..=200, 2)).await;
    assert!(
        last_start(&client, "st")
            .await
            .starts_with("restarted from checkpoint"),
        "{}",
        last_start(&client, "st").await
    );
    assert!(
        last_start(&client, "sp")
            .await
            .starts_with("restarted from savepoint \"sp_at_100\" (epoch "),
        "{}",
        last_start(&client, "sp").await
    );
    assert_eq!(
        last_start(&client, "fresh").await,
        "restarted from the beginning of its inputs"
    );

    // SUSPEND takes a savepoint (the newest), RESUME goes on from it
    // (`none`: from the beginning again).
    insert(&client, 201..=300).await;
    let mut st = each(1..=300, 1);
    settled(&client, &out, "st", &st).await;
    let mut sp = twice_after_100.clone();
    sp.extend(each(201..=300, 1));
    settled(&client, &out, "sp", &sp).await;
    let mut fresh = each(1..=200, 2);
    fresh.extend(each(201..=300, 1));
    settled(&client, &out, "fresh", &fresh).await;
    for (view, _) in VIEWS {
        client
            .simple_query(&format!("ALTER JOB {view} SUSPEND"))
            .await
            .expect("suspend");
        client
            .simple_query(&format!("ALTER JOB {view} RESUME"))
            .await
            .expect("resume");
    }
    insert(&client, 301..=400).await;
    st.extend(each(301..=400, 1));
    settled(&client, &out, "st", &st).await;
    sp.extend(each(301..=400, 1));
    settled(&client, &out, "sp", &sp).await;
    fresh = each(1..=200, 3);
    fresh.extend(each(201..=300, 2));
    fresh.extend(each(301..=400, 1));
    settled(&client, &out, "fresh", &fresh).await;

    // The server's start, per strategy: its newest savepoint is the
    // suspend's (at 300 rows).
    drop(client);
    server.terminate();
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    insert(&client, 401..=500).await;
    st.extend(each(401..=500, 1));
    settled(&client, &out, "st", &st).await;
    sp.extend(each(301..=400, 2));
    sp.extend(each(401..=500, 1));
    settled(&client, &out, "sp", &sp).await;
    fresh = each(1..=200, 4);
    fresh.extend(each(201..=300, 3));
    fresh.extend(each(301..=400, 2));
    fresh.extend(each(401..=500, 1));
    settled(&client, &out, "fresh", &fresh).await;
    assert!(
        last_start(&client, "sp")
            .await
            .starts_with("resumed from savepoint \"sp_suspend_"),
        "{}",
        last_start(&client, "sp").await
    );
}
