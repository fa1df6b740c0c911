//! What psql's `\dp` (and `pg_class.relacl`, and
//! `information_schema.role_table_grants`) show for grants on views,
//! materialized views, streams and tables, against what PostgreSQL shows
//! for the same GRANTs: the owner's item with every privilege Postgres
//! gives an owner (`weir=arwdDxt/weir`), each grantee's after it, PUBLIC
//! with no name, and an empty column while the default privileges hold.
//!
//! The expected text is what `psql -At -c '\dp'` printed against
//! PostgreSQL 15 for the same statements.
//!
//! And psql's other describe commands a first user types: `\d+` of a
//! table and of a view works (it failed with "table function 'unnest' not
//! found": psql 15 asks for the TOAST table's options), and `\dt` names
//! the relations' owner as the role that exists (`weir`), not `postgres`.

mod common;

use std::process::Command;

use common::WeirProcess;

fn psql(server: &WeirProcess, command: &str) -> String {
    let output = Command::new("psql")
        .args(["-X", "-At", "-h", "127.0.0.1", "-U", "weir", "-d", "weir"])
        .args(["-p", &server.pg_port.to_string(), "-c", command])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_shows_grants_on_views_as_postgres_does() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(&dir.path().join("data"));
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE ROLE alice;
             CREATE TABLE t (a BIGINT);
             CREATE VIEW v AS SELECT 1 AS x;
             CREATE VIEW v2 AS SELECT 2 AS y;
             CREATE VIEW v3 AS SELECT 3 AS z;
             CREATE STREAM s (n BIGINT) WITH (connector = 'datagen', rate = 1);",
        )
        .await
        .expect("setup");

    // Nothing granted: the default privileges, an empty column.
    assert_eq!(
        psql(&server, "\\dp v"),
        "public|v|view|||\n",
        "default privileges"
    );

    client
        .batch_execute(
            "GRANT SELECT ON v TO alice;
             GRANT SELECT ON v2 TO PUBLIC;
             GRANT SELECT ON t TO alice;
             GRANT SELECT ON s TO alice;",
        )
        .await
        .expect("grants");
    let dp = psql(&server, "\\dp");
    for expected in [
        "public|t|table|weir=arwdDxt/weir\nalice=r/weir||\n",
        "public|v|view|weir=arwdDxt/weir\nalice=r/weir||\n",
        "public|v2|view|weir=arwdDxt/weir\n=r/weir||\n",
        "public|v3|view|||\n",
    ] {
        assert!(dp.contains(expected), "\\dp shows {expected:?}: {dp}");
    }
    // A stream is a relation too: its owner and grantee as a table's.
    assert!(
        dp.contains("|s|") && dp.contains("weir=arwdDxt/weir\nalice=r/weir"),
        "\\dp shows the stream's grants: {dp}"
    );

    // What `\dp` reads, and the SQL-standard view of the same grants.
    let relacl = common::sorted_rows(
        &client,
        "SELECT relname, array_to_string(relacl, ',') FROM pg_catalog.pg_class \
         WHERE relname IN ('v', 'v2', 'v3')",
    )
    .await;
    assert_eq!(
        relacl,
        [
            "v2|weir=arwdDxt/weir,=r/weir",
            "v3|NULL",
            "v|weir=arwdDxt/weir,alice=r/weir",
        ]
    );
    let grants = common::sorted_rows(
        &client,
        "SELECT grantor, grantee, table_name, privilege_type, is_grantable, with_hierarchy \
         FROM information_schema.role_table_grants WHERE table_name IN ('v', 'v2')",
    )
    .await;
    assert_eq!(
        grants,
        [
            "weir|PUBLIC|v2|SELECT|NO|YES",
            "weir|alice|v|SELECT|NO|YES",
            "weir|weir|v2|DELETE|YES|NO",
            "weir|weir|v2|INSERT|YES|NO",
            "weir|weir|v2|REFERENCES|YES|NO",
            "weir|weir|v2|SELECT|YES|YES",
            "weir|weir|v2|TRIGGER|YES|NO",
            "weir|weir|v2|TRUNCATE|YES|NO",
            "weir|weir|v2|UPDATE|YES|NO",
            "weir|weir|v|DELETE|YES|NO",
            "weir|weir|v|INSERT|YES|NO",
            "weir|weir|v|REFERENCES|YES|NO",
            "weir|weir|v|SELECT|YES|YES",
            "weir|weir|v|TRIGGER|YES|NO",
            "weir|weir|v|TRUNCATE|YES|NO",
            "weir|weir|v|UPDATE|YES|NO",
        ]
    );
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

    let out = psql(&server, "\\d+ t");
    assert!(
        out.contains("id|bigint|"),
        "\\d+ t lists the columns: {out}"
    );
    let out = psql(&server, "\\d+ v");
    assert!(
        out.contains("id|bigint|"),
        "\\d+ v lists the columns: {out}"
    );

    let out = psql(&server, "\\dt");
    assert_eq!(out, "public|t|table|weir\n", "\\dt");
}
