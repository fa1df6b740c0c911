//! Real clients against the real server: psql's meta-commands, Python
//! (psycopg 3, SQLAlchemy, pandas), node-postgres and pgjdbc. Each client script
//! asserts the rows it gets back.
//!
//! A client that is not installed is skipped with a message, except under
//! CI (`CI=true`), where `.ci/run` installs them all and a missing one fails.

mod common;

use std::path::Path;
use std::process::Command;

use common::WeirProcess;

async fn server_with_tables(dir: &Path) -> WeirProcess {
    let server = WeirProcess::start(dir);
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE trips WITH (connector = 'file', path = 'data/trips.csv', format = 'csv');
             CREATE TABLE cities (city TEXT, country TEXT) WITH (connector = 'file', path = 'data/cities.psv', format = 'csv', delimiter = ';');
             CREATE VIEW paid_trips AS SELECT id, fare FROM trips WHERE paid;
             CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL, country TEXT);
             CREATE MATERIALIZED VIEW per_country AS SELECT country, count(*) AS n FROM users GROUP BY country;",
        )
        .await
        .expect("create the test tables");
    server
}

fn psql(server: &WeirProcess, command: &str) -> String {
    let output = Command::new("psql")
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "weir",
            "-d",
            "weir",
        ])
        .args(["-p", &server.pg_port.to_string(), "-c", command])
        .output()
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        output.status.success(),
        "psql {command} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

fn assert_contains(what: &str, output: &str, expected: &[&str]) {
    for e in expected {
        assert!(output.contains(e), "{what}: expected {e:?} in:\n{output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_meta_commands() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_tables(dir.path()).await;

    let out = psql(&server, "\\dt");
    assert_contains("\\dt", &out, &["cities", "trips", "table"]);
    assert!(!out.contains("paid_trips"), "\\dt lists a view:\n{out}");

    let out = psql(&server, "\\dv");
    assert_contains("\\dv", &out, &["paid_trips", "view"]);

    let out = psql(&server, "\\d trips");
    assert_contains(
        "\\d trips",
        &out,
        &[
            "id",
            "bigint",
            "city",
            "text",
            "fare",
            "double precision",
            "started_at",
            "timestamp without time zone",
            "paid",
            "boolean",
        ],
    );

    let out = psql(&server, "\\d");
    assert_contains("\\d", &out, &["cities", "trips", "paid_trips"]);

    // A primary key shows as its index, as in Postgres. (`\\d+ users`
    // still fails: psql maps `unnest` over a correlated column, which
    // DataFusion cannot plan; see client_queries.rs.)
    let out = psql(&server, "\\d users");
    assert_contains(
        "\\d users",
        &out,
        &[
            "Table \"public.users\"",
            "not null",
            "Indexes:",
            "\"users_pkey\" PRIMARY KEY, btree (id)",
        ],
    );
    let out = psql(&server, "\\dt+");
    assert_contains("\\dt+", &out, &["cities", "trips", "users", "Size"]);
    let out = psql(&server, "\\dm");
    assert_contains("\\dm", &out, &["per_country", "materialized view"]);
    let out = psql(&server, "\\dv");
    assert!(
        !out.contains("per_country"),
        "\\dv lists a materialized view:\n{out}"
    );
    let out = psql(&server, "\\df");
    assert_contains("\\df", &out, &["List of functions", "Result data type"]);
    let out = psql(&server, "\\df pg_catalog.lower");
    assert_contains("\\df lower", &out, &["lower", "text"]);
    let out = psql(&server, "\\du");
    assert_contains("\\du", &out, &["List of roles", "weir"]);

    let out = psql(&server, "\\l");
    assert_contains("\\l", &out, &["weir"]);

    let out = psql(
        &server,
        "SELECT city, count(*) FROM trips GROUP BY city ORDER BY city",
    );
    assert_contains(
        "select",
        &out,
        &[
            "berlin |     3",
            "lisbon |     1",
            "paris  |     2",
            "(3 rows)",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients() {
    let script = common::sql_tests_dir().join("clients/python_clients.py");
    let python = std::env::var("WEIR_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let probe = Command::new(&python)
        .args(["-c", "import psycopg, sqlalchemy, pandas"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !probe {
        assert!(
            !common::required(),
            "psycopg, SQLAlchemy and pandas are required under CI"
        );
        eprintln!("skipped: psycopg / SQLAlchemy / pandas are not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_tables(dir.path()).await;
    let output = Command::new(&python)
        .arg(&script)
        .arg(server.pg_port.to_string())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python clients failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres() {
    let node_dir = common::sql_tests_dir().join("clients/node");
    if !common::have("node", &["--version"]) {
        return;
    }
    if !node_dir.join("node_modules/pg").exists() {
        assert!(
            !common::required(),
            "node_modules/pg is required under CI (npm ci in sql-tests/clients/node)"
        );
        eprintln!("skipped: run `npm ci` in sql-tests/clients/node");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_tables(dir.path()).await;
    let output = Command::new("node")
        .arg("pg_client.js")
        .arg(server.pg_port.to_string())
        .current_dir(&node_dir)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node client failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc() {
    let jar = std::env::var("WEIR_TEST_PGJDBC")
        .unwrap_or_else(|_| "/usr/share/java/postgresql.jar".to_string());
    if !common::have("java", &["-version"]) {
        return;
    }
    if !Path::new(&jar).exists() {
        assert!(!common::required(), "pgjdbc ({jar}) is required under CI");
        eprintln!("skipped: pgjdbc is not installed (Debian: libpostgresql-jdbc-java)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_with_tables(dir.path()).await;
    let output = Command::new("java")
        .args(["-cp", &jar])
        .arg(common::sql_tests_dir().join("clients/jdbc/WeirJdbcTest.java"))
        .arg(server.pg_port.to_string())
        .output()
        .expect("run java");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pgjdbc client failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
}

/// README.md's first session (its first two ```sql blocks: a file table, a
/// table Weir owns loaded with `\copy`, views over it), run through psql
/// from the repository root as the README says, with the server started
/// there too. The third block subscribes to an endless stream and stays out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_first_session_runs_in_psql() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let root = common::sql_tests_dir().join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let blocks: Vec<&str> = readme
        .split("```sql\n")
        .skip(1)
        .map(|rest| rest.split("```").next().expect("a closed sql block"))
        .collect();
    assert!(blocks.len() >= 2, "README.md has fewer than two sql blocks");
    let session = blocks[..2].concat();
    assert!(
        session.contains("\\copy users from"),
        "README's first session no longer loads users"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::try_start_in(&root, dir.path(), &[], &[]).expect("start weir");
    let mut child = Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args([
            "-U",
            "weir",
            "-d",
            "weir",
            "-p",
            &server.pg_port.to_string(),
        ])
        .current_dir(&root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run psql");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("psql stdin");
        stdin
            .write_all(session.as_bytes())
            .expect("send the session");
    }
    let output = child.wait_with_output().expect("wait for psql");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "README's first session failed in psql:\n{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("ERROR"),
        "README's first session printed an error:\n{stdout}\n{stderr}"
    );
    assert_contains(
        "README first session",
        &stdout,
        &[
            // \copy loaded sql-tests/data/users.csv beside the two inserted rows.
            "COPY 3",
            "PT,2",
            "DE,1",
            "US,1",
            "KR,1",
            // per_page, and per_country after user 1 moved to ES.
            " home | 1",
            " ES      |      2",
        ],
    );
}
