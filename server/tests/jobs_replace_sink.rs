//! `CREATE OR REPLACE SINK` through the real binary: a sink switched to
//! another folder, and one switched to another format, while rows keep
//! arriving, continue from the switch. What the old and the new sink
//! committed, taken together, holds each row of the batch answer exactly
//! once (a row written by both, or by neither, fails the test); a savepoint
//! of origin `upgrade` is recorded; refused changes leave the old sink
//! writing; a kill -9 after the switch keeps the new sink.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::WeirProcess;
use tokio_postgres::Client;

/// A generous deadline for what a test waits on (never a timed assertion:
/// only a broken server reaches it).
const DEADLINE: Duration = Duration::from_secs(120);

const ARGS: [&str; 2] = ["--checkpoint-interval", "200ms"];

/// The rows of one committed sink file, as maps of column to text.
fn rows_of(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).expect("read a sink file");
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => text
            .lines()
            .map(|line| {
                let row: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(line).expect("a json line");
                row.into_iter()
                    .map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (k, v)
                    })
                    .collect()
            })
            .collect(),
        Some("csv") => {
            let mut lines = text.lines();
            let Some(header) = lines.next() else {
                return Vec::new();
            };
            let names: Vec<&str> = header.split(',').collect();
            lines
                .map(|line| {
                    names
                        .iter()
                        .zip(line.split(','))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// What the committed files of `folders` add up to, taken together:
/// `columns` joined by `|` per row, inserts counting +1 and deletes -1.
/// Panics if a row ends up counted twice or deleted more often than
/// inserted: then a change reached both sinks, or one sink twice.
fn folded(folders: &[PathBuf], columns: &[&str]) -> Vec<String> {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(folder) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.path().is_file() {
                continue;
            }
            for row in rows_of(&entry.path()) {
                let key = columns
                    .iter()
                    .map(|c| row.get(*c).cloned().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("|");
                let op = row.get("op").map(String::as_str);
                *counts.entry(key).or_default() += if op == Some("delete") { -1 } else { 1 };
            }
        }
    }
    assert!(
        counts.values().all(|c| *c == 0 || *c == 1),
        "a row written twice or deleted twice across {folders:?}: {:?}",
        counts
            .iter()
            .filter(|(_, c)| **c != 0 && **c != 1)
            .collect::<Vec<_>>()
    );
    counts
        .into_iter()
        .filter(|(_, c)| *c == 1)
        .map(|(k, _)| k)
        .collect()
}

/// Wait until what `folders` committed adds up to `query`'s batch answer.
async fn settled(client: &Client, query: &str, folders: &[PathBuf], columns: &[&str]) {
    client.simple_query("FLUSH").await.expect("FLUSH");
    let expected = common::sorted_rows(client, query).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let written = folded(folders, columns);
        if written == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sinks in {folders:?} never equalled the batch answer: {} rows written, {} expected",
            written.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Write `from..from+n` into both tables, and change some of `t`'s rows.
async fn write(client: &Client, from: i64, n: i64) {
    let to = from + n - 1;
    client
        .batch_execute(&format!(
            "INSERT INTO t SELECT v, v % 11 FROM generate_series({from}, {to}) AS s(v);
             INSERT INTO a SELECT v, v % 7 FROM generate_series({from}, {to}) AS s(v);
             UPDATE t SET k = k + 1 WHERE id BETWEEN {from} AND {from} + 9;
             DELETE FROM t WHERE id BETWEEN {from} + 10 AND {from} + 14"
        ))
        .await
        .expect("write");
}

const PER_K: &str = "SELECT k, count(*) AS n, sum(id) AS total FROM t GROUP BY k";
const PER_K_COLUMNS: [&str; 3] = ["k", "n", "total"];
const EVENS: &str = "SELECT id, k FROM a WHERE id % 2 = 0";
const EVENS_COLUMNS: [&str; 2] = ["id", "k"];

/// The committed files in `folder`, by name.
fn files_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .expect("a sink folder")
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The SQLSTATE of a statement that must fail.
async fn refused(client: &Client, sql: &str) -> String {
    let err = client
        .simple_query(sql)
        .await
        .expect_err("the statement must be refused");
    let db = err.as_db_error().expect("an error from the server");
    format!("{} {}", db.code().code(), db.message())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_sink_continues_from_the_switch_and_each_row_is_written_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT);
             CREATE TABLE a (id BIGINT, k BIGINT);
             CREATE MATERIALIZED VIEW per_k AS {PER_K};
             CREATE MATERIALIZED VIEW evens AS {EVENS};
             CREATE SINK per_k_out FROM per_k WITH (connector = 'file', path = '{0}/per_k_1', format = 'json');
             CREATE SINK evens_out FROM evens WITH (connector = 'file', path = '{0}/evens', format = 'json')",
            out.display()
        ))
        .await
        .expect("two views over owned tables, written out");
    write(&client, 1, 1000).await;
    let per_k_folders = [out.join("per_k_1"), out.join("per_k_2")];
    let evens_folders = [out.join("evens")];
    settled(&client, PER_K, &per_k_folders, &PER_K_COLUMNS).await;

    // Rows keep arriving from another session while both sinks switch:
    // one to another folder, the other to another format in its folder.
    let writer_client = common::connect(&server).await;
    let writer = tokio::spawn(async move {
        for i in 0..20 {
            write(&writer_client, 1001 + i * 100, 100).await;
        }
    });
    client
        .simple_query(&format!(
            "CREATE OR REPLACE SINK per_k_out FROM per_k WITH (connector = 'file', path = '{}/per_k_2', format = 'json')",
            out.display()
        ))
        .await
        .expect("switch per_k_out to another folder");
    client
        .simple_query(&format!(
            "CREATE OR REPLACE SINK evens_out FROM evens WITH (connector = 'file', path = '{}/evens', format = 'csv', header = 'true')",
            out.display()
        ))
        .await
        .expect("switch evens_out to csv");
    writer.await.expect("the writer");
    write(&client, 3001, 500).await;
    settled(&client, PER_K, &per_k_folders, &PER_K_COLUMNS).await;
    settled(&client, EVENS, &evens_folders, &EVENS_COLUMNS).await;
    let old_files = files_in(&out.join("per_k_1"));
    // Both sinks wrote: the old one before the switch, the new one after.
    for (folder, ext) in [
        (out.join("per_k_1"), "json"),
        (out.join("per_k_2"), "json"),
        (out.join("evens"), "json"),
        (out.join("evens"), "csv"),
    ] {
        let files = std::fs::read_dir(&folder)
            .expect("a sink folder")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == ext))
            .count();
        assert!(files > 0, "no .{ext} file in {}", folder.display());
    }

    // The switch left a savepoint of origin `upgrade`, and an event.
    let savepoints = common::sorted_rows(&client, "SHOW SAVEPOINTS FOR JOB per_k").await;
    assert!(
        savepoints
            .iter()
            .any(|r| r.starts_with("per_k_out_upgrade_") && r.ends_with("|upgrade")),
        "a savepoint of origin upgrade: {savepoints:?}"
    );
    let events = common::sorted_rows(&client, "SHOW JOB EVENTS per_k").await;
    assert!(
        events
            .iter()
            .any(|r| r.contains("sink \"per_k_out\" replaced at checkpoint")),
        "the switch is in the job's events: {events:?}"
    );

    // Refused changes touch nothing: the new sink goes on writing.
    for (sql, code) in [
        (
            format!("CREATE OR REPLACE SINK per_k_out FROM evens WITH (connector = 'file', path = '{}/x', format = 'json')", out.display()),
            "0A000",
        ),
        (
            "CREATE OR REPLACE SINK per_k_out FROM per_k WITH (connector = 'kafka', topic = 'x', brokers = '127.0.0.1:1', format = 'json')".to_string(),
            "0A000",
        ),
        (
            format!("CREATE OR REPLACE SINK per_k_out FROM per_k WITH (connector = 'file', path = '{}/x', format = 'json', upgrade_strategy = 'stateless')", out.display()),
            "0A000",
        ),
        (
            format!("CREATE OR REPLACE SINK per_k_out FROM per_k WITH (connector = 'file', path = '{}/x/*', format = 'json')", out.display()),
            "22023",
        ),
        (
            format!("CREATE OR REPLACE SINK per_k FROM per_k WITH (connector = 'file', path = '{}/x', format = 'json')", out.display()),
            "42809",
        ),
    ] {
        let got = refused(&client, &sql).await;
        assert!(got.starts_with(code), "{sql}: {got}");
    }
    write(&client, 3501, 500).await;
    settled(&client, PER_K, &per_k_folders, &PER_K_COLUMNS).await;
    assert!(
        !out.join("x").exists(),
        "a refused sink made no folder (its options were checked, nothing opened)"
    );

    // A suspended job's sink is not switched (55000), and resumes as it was.
    client
        .simple_query("ALTER JOB per_k SUSPEND")
        .await
        .expect("suspend");
    let got = refused(
        &client,
        &format!(
            "CREATE OR REPLACE SINK per_k_out FROM per_k WITH (connector = 'file', path = '{}/per_k_3', format = 'json')",
            out.display()
        ),
    )
    .await;
    assert!(got.starts_with("55000"), "{got}");
    client
        .simple_query("ALTER JOB per_k RESUME")
        .await
        .expect("resume");

    // kill -9, with writes before and after: the catalog keeps the new
    // sink, and still each row is written once.
    write(&client, 4001, 500).await;
    drop(client);
    server.kill();
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    write(&client, 4501, 500).await;
    settled(&client, PER_K, &per_k_folders, &PER_K_COLUMNS).await;
    settled(&client, EVENS, &evens_folders, &EVENS_COLUMNS).await;
    assert_eq!(
        files_in(&out.join("per_k_1")),
        old_files,
        "the old sink wrote nothing after the switch"
    );
}
