//! Session settings as PostgreSQL has them, through the real binary:
//! `SET x TO DEFAULT`, `SET x = DEFAULT`, `RESET x` and `RESET ALL` go
//! back to the server's configured value (config file, flag or
//! environment), not to a built-in one; `SHOW x` and `current_setting('x')`
//! agree; an unknown setting is 42704 and a bad value 22023 naming it. In
//! the simple protocol and the extended one (tokio-postgres), and in psql.

mod common;

use common::WeirProcess;

/// The server's defaults in this test: set by a config file, a flag and an
/// environment variable, one each, to prove each is what RESET returns to.
fn start(dir: &std::path::Path) -> WeirProcess {
    let config = dir.join("weir.toml");
    std::fs::write(&config, "statement_timeout = \"2s\"\n").expect("write config");
    WeirProcess::start_with(
        &dir.join("data"),
        &[
            "--config",
            config.to_str().expect("utf8"),
            "--query-memory-limit",
            "256MB",
        ],
        &[("WEIR_SUBSCRIBE_SLOW_CLIENT", "block")],
    )
}

/// The one value `sql` returns, in the simple protocol.
async fn simple(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = common::sorted_rows(client, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0].clone()
}

/// The one text value `sql` returns, in the extended protocol.
async fn extended(client: &tokio_postgres::Client, sql: &str) -> String {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {:?}", e.as_db_error()))
        .get(0)
}

/// `SHOW name` and `current_setting('name')`, in both protocols: all four
/// must agree; returns the value.
async fn setting(client: &tokio_postgres::Client, name: &str) -> String {
    let show = simple(client, &format!("SHOW {name}")).await;
    let current = format!("SELECT current_setting('{name}')");
    assert_eq!(simple(client, &current).await, show, "{current}");
    assert_eq!(extended(client, &format!("SHOW {name}")).await, show);
    assert_eq!(
        extended(client, &current).await,
        show,
        "{current} (extended)"
    );
    show
}

/// The SQLSTATE and message `sql` fails with.
async fn refused(client: &tokio_postgres::Client, sql: &str) -> String {
    let err = client
        .batch_execute(sql)
        .await
        .expect_err(&format!("{sql} should fail"));
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not a server error: {err}"));
    format!("{} {}", db.code().code(), db.message())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_to_default_and_reset_return_to_the_configured_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let client = common::connect(&server).await;

    // A session starts at the server's values, shown as Postgres shows them.
    assert_eq!(setting(&client, "statement_timeout").await, "2s");
    assert_eq!(setting(&client, "query_memory_limit").await, "256MB");
    assert_eq!(setting(&client, "subscribe_slow_client").await, "block");

    // Each way back to the default, in the simple protocol.
    for back in [
        "SET statement_timeout TO DEFAULT",
        "SET statement_timeout = DEFAULT",
        "RESET statement_timeout",
    ] {
        client
            .batch_execute("SET statement_timeout = 1500")
            .await
            .expect("set");
        assert_eq!(setting(&client, "statement_timeout").await, "1500ms");
        client.batch_execute(back).await.expect(back);
        assert_eq!(setting(&client, "statement_timeout").await, "2s", "{back}");
    }
    // And in the extended protocol.
    client
        .execute("SET statement_timeout = '1min'", &[])
        .await
        .expect("set");
    assert_eq!(setting(&client, "statement_timeout").await, "1min");
    client
        .execute("RESET statement_timeout", &[])
        .await
        .expect("reset");
    assert_eq!(setting(&client, "statement_timeout").await, "2s");

    // RESET ALL: every setting the session changed, the ones with a
    // server default and the others.
    client
        .batch_execute(
            "SET statement_timeout = 0; SET query_memory_limit = '64MB';
             SET subscribe_slow_client = 'disconnect'; SET TimeZone = 'Europe/Berlin';
             SET application_name = 'settings test'; SET myapp.flag = 'on'",
        )
        .await
        .expect("set");
    assert_eq!(setting(&client, "statement_timeout").await, "0");
    assert_eq!(setting(&client, "timezone").await, "Europe/Berlin");
    client.batch_execute("RESET ALL").await.expect("reset all");
    assert_eq!(setting(&client, "statement_timeout").await, "2s");
    assert_eq!(setting(&client, "query_memory_limit").await, "256MB");
    assert_eq!(setting(&client, "subscribe_slow_client").await, "block");
    assert_eq!(setting(&client, "timezone").await, "UTC");
    assert_eq!(setting(&client, "application_name").await, "");
    // A custom setting stays defined, empty, as in Postgres.
    assert_eq!(simple(&client, "SHOW myapp.flag").await, "");

    // The configured timeout is in force again after a reset: the session
    // turned it off, reset it, and an endless query stops with 57014.
    client
        .batch_execute("SET statement_timeout = 0; RESET statement_timeout")
        .await
        .expect("reset");
    assert_eq!(
        refused(
            &client,
            "SELECT count(*) FROM generate_series(1, 1000000) AS a(x) \
             CROSS JOIN generate_series(1, 1000000) AS b(y)"
        )
        .await,
        "57014 canceling statement due to statement timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_settings_and_bad_values_are_refused_as_postgres_refuses_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let client = common::connect(&server).await;
    for (sql, expected) in [
        (
            "SET nope = 1",
            "42704 unrecognized configuration parameter \"nope\"",
        ),
        (
            "SET nope TO DEFAULT",
            "42704 unrecognized configuration parameter \"nope\"",
        ),
        (
            "RESET nope",
            "42704 unrecognized configuration parameter \"nope\"",
        ),
        (
            "SHOW nope",
            "42704 unrecognized configuration parameter \"nope\"",
        ),
        (
            "SELECT current_setting('nope')",
            "42704 unrecognized configuration parameter \"nope\"",
        ),
        (
            "SET statement_timeout = 'soon'",
            "22023 invalid value for parameter \"statement_timeout\": \"soon\"",
        ),
        (
            "SET statement_timeout = -1",
            "22023 invalid value for parameter \"statement_timeout\": \"-1\"",
        ),
        (
            "SET query_memory_limit = 'lots'",
            "22023 invalid value for parameter \"query_memory_limit\": \"lots\"",
        ),
        (
            "SET subscribe_slow_client = 'wait'",
            "22023 invalid value for parameter \"subscribe_slow_client\": \"wait\"",
        ),
        (
            "RESET server_version",
            "55P02 parameter \"server_version\" cannot be changed",
        ),
    ] {
        assert_eq!(refused(&client, sql).await, expected, "{sql}");
    }
    // In the extended protocol too.
    let err = client
        .execute("RESET nope", &[])
        .await
        .expect_err("unknown");
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("42704"));
    // A refused value leaves the setting as it was.
    assert_eq!(setting(&client, "statement_timeout").await, "2s");
}

/// What a psql user types, one statement at a time: psql shows the
/// server's value, its own RESET, and the errors with their SQLSTATE.
#[test]
fn psql_sees_set_default_reset_and_reset_all() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let script = "SHOW statement_timeout;
SET statement_timeout = 3000;
SHOW statement_timeout;
SET statement_timeout TO DEFAULT;
SHOW statement_timeout;
SET statement_timeout = '5min';
RESET statement_timeout;
SELECT current_setting('statement_timeout');
SET statement_timeout = 0;
SET timezone = 'Asia/Tokyo';
RESET ALL;
SHOW statement_timeout;
SHOW timezone;
\\set VERBOSITY verbose
RESET nope;
SET statement_timeout = 'soon';
";
    let (stdout, stderr) = common::psql_script(&server, &["-At"], script);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "2s", "SET", "3s", "SET", "2s", "SET", "RESET", "2s", "SET", "SET", "RESET", "2s",
            "UTC"
        ],
        "psql's output; stderr: {stderr}"
    );
    assert!(
        stderr.contains("ERROR:  42704: unrecognized configuration parameter \"nope\""),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("ERROR:  22023: invalid value for parameter \"statement_timeout\": \"soon\""),
        "{stderr}"
    );
}
