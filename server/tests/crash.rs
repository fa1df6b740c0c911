//! Crash tests through the front door: the real `weir` binary runs windowed
//! jobs with a short checkpoint interval and is killed with SIGKILL at random
//! moments (and aborted at failpoints: after the state is written but before
//! the manifest, after the manifest but before sinks commit, and while
//! recovering), restarted each time; at the end every view must hold exactly
//! what a run that never crashed holds, and the sinks' committed files too:
//! the append-only sink's rows are the same multiset, the updating sink's
//! changes add up to its view.
//!
//! The seed is printed; `WEIR_CRASH_SEED` replays a run, `WEIR_CRASH_ROWS`
//! makes it longer (the soak in `bench/crash-soak.sh`).

mod common;

use std::time::{Duration, Instant};

use common::crash::CrashRng;
use common::{WeirProcess, connect};

/// The same pipeline for both runs; `{rows}` and `{rate}` filled in.
const PIPELINE: &[&str] = &[
    "CREATE STREAM ev (id BIGINT, k BIGINT, ts TIMESTAMP,
       WATERMARK FOR ts AS ts - INTERVAL '3 seconds')
     WITH (connector = 'datagen', rows = '{rows}', rate = '{rate}',
       'fields.k.kind' = 'random', 'fields.k.min' = '0', 'fields.k.max' = '49',
       'fields.ts.step_ms' = '100')",
    "CREATE MATERIALIZED VIEW per_key AS
       SELECT k, count(*) AS n, sum(id) AS s FROM ev GROUP BY k",
    "CREATE MATERIALIZED VIEW tumbling AS
       SELECT k, window_start, window_end, count(*) AS n, sum(id) AS s
       FROM TUMBLE(ev, ts, INTERVAL '10 seconds')
       GROUP BY k, window_start, window_end EMIT ON WINDOW CLOSE",
    "CREATE MATERIALIZED VIEW hopping AS
       SELECT window_start, count(*) AS n, max(id) AS top
       FROM HOP(ev, ts, INTERVAL '5 seconds', INTERVAL '20 seconds')
       GROUP BY window_start",
    "CREATE MATERIALIZED VIEW sessions AS
       SELECT k, window_start, window_end, count(*) AS n
       FROM SESSION(ev, ts, INTERVAL '8 seconds')
       GROUP BY k, window_start, window_end EMIT ON WINDOW CLOSE",
    "CREATE SINK tumbling_out FROM tumbling
       WITH (connector = 'file', path = '{out}/tumbling', format = 'csv')",
    "CREATE SINK per_key_out FROM per_key
       WITH (connector = 'file', path = '{out}/per_key', format = 'json')",
];

const VIEWS: &[&str] = &["per_key", "tumbling", "hopping", "sessions"];

/// The committed rows of a CSV sink (headers dropped), sorted.
fn csv_rows(folder: &std::path::Path) -> Vec<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(folder).expect("sink folder").flatten() {
        if entry.path().extension().is_some_and(|e| e == "csv") {
            let text = std::fs::read_to_string(entry.path()).expect("read");
            rows.extend(text.lines().skip(1).map(str::to_string));
        }
    }
    rows.sort();
    rows
}

/// The rows a JSON changelog sink's committed files add up to, as
/// `k|n|s` lines sorted (inserts count +1, deletes -1; every count must end
/// at 0 or 1).
fn folded_json(folder: &std::path::Path) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, i64> = Default::default();
    for entry in std::fs::read_dir(folder).expect("sink folder").flatten() {
        if entry.path().extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(entry.path()).expect("read");
            for line in text.lines() {
                let row: serde_json::Value = serde_json::from_str(line).expect("json line");
                let key = format!("{}|{}|{}", row["k"], row["n"], row["s"]);
                *counts.entry(key).or_default() += if row["op"] == "delete" { -1 } else { 1 };
            }
        }
    }
    assert!(
        counts.values().all(|c| *c == 0 || *c == 1),
        "a row counted twice or deleted twice: {counts:?}"
    );
    counts
        .into_iter()
        .filter(|(_, c)| *c == 1)
        .map(|(k, _)| k)
        .collect()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

async fn contents(server: &WeirProcess) -> Vec<Vec<String>> {
    let client = connect(server).await;
    client.simple_query("FLUSH").await.expect("FLUSH");
    let mut all = Vec::new();
    for view in VIEWS {
        all.push(common::sorted_rows(&client, &format!("SELECT * FROM {view}")).await);
    }
    all
}

async fn create(server: &WeirProcess, rows: u64, rate: u64, out: &std::path::Path) {
    let client = connect(server).await;
    for statement in PIPELINE {
        let sql = statement
            .replace("{rows}", &rows.to_string())
            .replace("{rate}", &rate.to_string())
            .replace("{out}", &out.to_string_lossy());
        client.batch_execute(&sql).await.expect(statement);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_the_views_match_an_uncrashed_run() {
    let rows = env_u64("WEIR_CRASH_ROWS").unwrap_or(40_000);
    let rate = 8_000;
    eprintln!("crash test: {rows} rows");
    let mut rng = CrashRng::from_env();
    let seed = rng.seed();

    // The run that never crashes (checkpoints off: nothing to restore).
    let reference_dir = tempfile::tempdir().expect("tempdir");
    let reference =
        WeirProcess::start_with(reference_dir.path(), &["--checkpoint-interval", "off"], &[]);
    let reference_out = reference_dir.path().join("out");
    create(&reference, rows, rate * 100, &reference_out).await;
    let expected = contents(&reference).await;
    reference.kill();
    assert!(expected.iter().all(|v| !v.is_empty()), "{expected:?}");
    let expected_csv = csv_rows(&reference_out.join("tumbling"));
    assert_eq!(expected_csv.len(), expected[1].len());
    let expected_json = folded_json(&reference_out.join("per_key"));
    assert_eq!(expected_json.len(), expected[0].len());

    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--checkpoint-interval", "100ms", "--checkpoint-retain", "2"];
    let mut server = WeirProcess::start_with(dir.path(), &args, &[]);
    let out = dir.path().join("out");
    create(&server, rows, rate, &out).await;
    // Planned crashes at the failpoints, then random SIGKILLs.
    let mut failpoints = vec![
        "checkpoint-before-manifest@3",
        "checkpoint-after-manifest@2",
        "restore@1",
    ];
    let started = Instant::now();
    let mut crashes = 0;
    let budget = Duration::from_secs(rows / rate * 4 + 30);
    loop {
        let wait = rng.between(100, 900);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let done = {
            let client = connect(&server).await;
            let status = client
                .simple_query("SHOW MATERIALIZED VIEWS")
                .await
                .expect("show views");
            let finished = status
                .iter()
                .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(1) == Some("finished")))
                .count();
            finished == VIEWS.len()
        };
        if done || started.elapsed() > budget {
            break;
        }
        server.kill();
        crashes += 1;
        let failpoint = if failpoints.is_empty() || rng.next().is_multiple_of(2) {
            None
        } else {
            Some(failpoints.remove(0))
        };
        eprintln!("crash {crashes} after {wait} ms; next start with failpoint {failpoint:?}");
        let env: Vec<(&str, &str)> = failpoint.iter().map(|f| ("WEIR_FAILPOINT", *f)).collect();
        server = match WeirProcess::try_start_with(dir.path(), &args, &env) {
            Some(mut s) => {
                // A failpoint may abort it a moment later: wait for that.
                if failpoint.is_some() {
                    for _ in 0..50 {
                        if s.exited() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                if s.exited() {
                    eprintln!("aborted at {failpoint:?}");
                    crashes += 1;
                    WeirProcess::start_with(dir.path(), &args, &[])
                } else {
                    s
                }
            }
            None => {
                eprintln!("aborted while recovering ({failpoint:?})");
                crashes += 1;
                WeirProcess::start_with(dir.path(), &args, &[])
            }
        };
    }
    assert!(
        crashes >= 3,
        "only {crashes} crashes: the run was too short"
    );
    let got = contents(&server).await;
    for ((view, want), have) in VIEWS.iter().zip(&expected).zip(&got) {
        assert_eq!(
            have, want,
            "view {view} differs from the uncrashed run (seed {seed})"
        );
    }
    assert_eq!(
        csv_rows(&out.join("tumbling")),
        expected_csv,
        "the csv sink's files differ from the uncrashed run (seed {seed})"
    );
    assert_eq!(
        folded_json(&out.join("per_key")),
        expected_json,
        "the json sink's changes do not add up to the uncrashed run's (seed {seed})"
    );
    eprintln!("{crashes} crashes, views and sink files identical (seed {seed})");
}
