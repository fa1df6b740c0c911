//! psql's describe commands as a first user types them, on the real
//! binary: `\d+` of a table and of a view works (it failed with "table
//! function 'unnest' not found": psql 15 asks for the TOAST table's
//! options), and `\dt` names the relations' owner as the role that exists
//! (`weir`), not `postgres`.

mod common;

use std::process::Command;

use common::WeirProcess;

/// `command` in psql, unaligned: (succeeded, stdout and stderr).
fn psql(server: &WeirProcess, command: &str) -> (bool, String) {
    let output = Command::new("psql")
        .args(["-X", "-At", "-h", "127.0.0.1", "-U", "weir", "-d", "weir"])
        .args(["-p", &server.pg_port.to_string(), "-c", command])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    (
        output.status.success() && output.stderr.is_empty(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_plus_works_on_tables_and_views_and_owners_are_weir() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(&dir.path().join("data"));
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT);
             CREATE VIEW v AS SELECT id FROM t",
        )
        .await
        .expect("setup");

    let (ok, out) = psql(&server, "\\d+ t");
    assert!(ok, "\\d+ t: {out}");
    assert!(out.contains("id|bigint|"), "\\d+ t lists the columns: {out}");
    let (ok, out) = psql(&server, "\\d+ v");
    assert!(ok, "\\d+ v: {out}");
    assert!(out.contains("id|bigint|"), "\\d+ v lists the columns: {out}");

    let (ok, out) = psql(&server, "\\dt");
    assert!(ok, "\\dt: {out}");
    assert_eq!(out, "public|t|table|weir\n", "\\dt");
}
