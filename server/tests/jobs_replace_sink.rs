//! `CREATE OR REPLACE SINK` through the real binary: a sink switched to
//! another folder, and one switched to another format, while rows keep
//! arriving, continue from the switch. What the old and the new sink
//! committed, taken together, holds each row of the batch answer exactly
//! once (a row written by both, or by neither, fails the test); a savepoint
//! of origin `upgrade` is recorded; refused changes leave the old sink
//! writing; a kill -9 after the switch keeps the new sink.

mod common;

use std::path::{Path, PathBuf};

use common::WeirProcess;
use tokio_postgres::Client;

const ARGS: [&str; 2] = ["--checkpoint-interval", "200ms"];

/// Wait until what `folders` committed adds up to `query`'s batch answer.
async fn settled(client: &Client, query: &str, folders: &[PathBuf], columns: &[&str]) {
    common::wait_for_sinks(client, query, folders, columns).await;
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
    common::write_t_and_a(&client, 1, 1000).await;
    let per_k_folders = [out.join("per_k_1"), out.join("per_k_2")];
    let evens_folders = [out.join("evens")];
    settled(&client, PER_K, &per_k_folders, &PER_K_COLUMNS).await;

    // Rows keep arriving from another session while both sinks switch:
    // one to another folder, the other to another format in its folder.
    let writer_client = common::connect(&server).await;
    let writer = tokio::spawn(async move {
        for i in 0..20 {
            common::write_t_and_a(&writer_client, 1001 + i * 100, 100).await;
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
    common::write_t_and_a(&client, 3001, 500).await;
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
    common::write_t_and_a(&client, 3501, 500).await;
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
    common::write_t_and_a(&client, 4001, 500).await;
    drop(client);
    server.kill();
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    common::write_t_and_a(&client, 4501, 500).await;
    settled(&client, PER_K, &per_k_folders, &PER_K_COLUMNS).await;
    settled(&client, EVENS, &evens_folders, &EVENS_COLUMNS).await;
    assert_eq!(
        files_in(&out.join("per_k_1")),
        old_files,
        "the old sink wrote nothing after the switch"
    );
}
