//! Who may connect, through the real binary and real clients: SCRAM
//! passwords with psql, tokio-postgres and psycopg; one 28P01 message for a
//! wrong password and an unknown user; roles made and changed with SQL,
//! stored as verifiers only; `trust` refused beyond loopback.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::WeirProcess;

const PASSWORD: &str = "correct horse 7";

/// A server with passwords on, the bootstrap password from WEIR_PASSWORD,
/// its log (at debug) going to `log`.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_scram(data_dir: &Path, log: &Path) -> Server {
    start_on(data_dir, log, "127.0.0.1:0")
}

fn start_on(data_dir: &Path, log: &Path, pg_addr: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("serve")
        .args(["--pg-addr", pg_addr, "--http-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--workers", "2", "--print-addrs", "--log", "debug"])
        .args(["--auth-method", "scram-sha-256"])
        .env("WEIR_PASSWORD", PASSWORD)
        .current_dir(common::sql_tests_dir())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start weir");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address line");
    let addrs: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("weir printed {line:?}: {e}; log: {}", read(log)));
    let port = addrs["pg_addr"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("pg port");
    Server { child, port }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn connect(
    port: u16,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname("weir")
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn code(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map(|e| format!("{} {}", e.code().code(), e.message()))
        .unwrap_or_else(|| err.to_string())
}

async fn one(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a row")
}

/// psql with PGPASSWORD; (success, stdout + stderr).
fn psql(port: u16, user: &str, password: &str, sql: &str) -> (bool, String) {
    let output = Command::new("psql")
        .args(["-X", "-At", "-h", "127.0.0.1", "-d", "weir", "-U", user])
        .args(["-p", &port.to_string(), "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_passwords_with_tokio_postgres_and_roles_in_sql() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("weir.log");
    let data = dir.path().join("data");
    let server = start_scram(&data, &log);

    let weir = connect(server.port, "weir", PASSWORD)
        .await
        .expect("weir logs in");
    assert_eq!(one(&weir, "SELECT current_user").await, "weir");
    assert_eq!(one(&weir, "SELECT session_user").await, "weir");
    assert_eq!(one(&weir, "SHOW is_superuser").await, "on");

    let wrong = connect(server.port, "weir", "not it")
        .await
        .expect_err("wrong password");
    let unknown = connect(server.port, "nobody", PASSWORD)
        .await
        .expect_err("unknown user");
    assert_eq!(
        code(&wrong),
        "28P01 password authentication failed for user \"weir\""
    );
    assert_eq!(
        code(&unknown),
        "28P01 password authentication failed for user \"nobody\""
    );

    // Roles: made, used, changed, refused, dropped.
    weir.batch_execute("CREATE ROLE alice WITH LOGIN PASSWORD 'alice-secret-1'")
        .await
        .expect("create role");
    let err = weir
        .batch_execute("CREATE ROLE alice LOGIN PASSWORD 'x'")
        .await
        .expect_err("duplicate");
    assert_eq!(code(&err), "42710 role \"alice\" already exists");
    weir.batch_execute("CREATE ROLE nologin_bob PASSWORD 'bob-secret-1'")
        .await
        .expect("role without login");
    let err = connect(server.port, "nologin_bob", "bob-secret-1")
        .await
        .expect_err("NOLOGIN");
    assert!(code(&err).starts_with("28P01"), "{}", code(&err));

    let alice = connect(server.port, "alice", "alice-secret-1")
        .await
        .expect("alice logs in");
    assert_eq!(one(&alice, "SELECT current_user").await, "alice");
    assert_eq!(one(&alice, "SHOW is_superuser").await, "off");
    let err = alice
        .batch_execute("CREATE ROLE mallory LOGIN PASSWORD 'm'")
        .await
        .expect_err("not a superuser");
    assert_eq!(code(&err), "42501 permission denied to create role");
    let err = alice
        .batch_execute("ALTER ROLE alice SUPERUSER")
        .await
        .expect_err("cannot promote herself");
    assert!(code(&err).starts_with("42501"), "{}", code(&err));
    alice
        .batch_execute("ALTER ROLE alice PASSWORD 'alice-secret-2'")
        .await
        .expect("own password");
    assert!(
        connect(server.port, "alice", "alice-secret-1")
            .await
            .is_err()
    );
    let alice2 = connect(server.port, "alice", "alice-secret-2")
        .await
        .expect("new password");
    drop(alice2);

    let err = weir
        .batch_execute("DROP ROLE weir")
        .await
        .expect_err("bootstrap");
    assert!(code(&err).starts_with("55006"), "{}", code(&err));
    let err = weir
        .batch_execute("DROP ROLE ghost")
        .await
        .expect_err("missing");
    assert_eq!(code(&err), "42704 role \"ghost\" does not exist");
    weir.batch_execute("DROP ROLE IF EXISTS ghost")
        .await
        .expect("if exists");
    weir.batch_execute("DROP ROLE alice, nologin_bob")
        .await
        .expect("drop");
    let err = connect(server.port, "alice", "alice-secret-2")
        .await
        .expect_err("dropped");
    assert!(code(&err).starts_with("28P01"), "{}", code(&err));

    // Nothing on disk or in the log holds a password.
    drop(server);
    let mut on_disk = String::new();
    for entry in std::fs::read_dir(&data).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            on_disk.push_str(&String::from_utf8_lossy(
                &std::fs::read(&path).expect("read"),
            ));
        }
    }
    let log_text = read(&log);
    assert!(
        log_text.contains("role created"),
        "the log is at debug: {log_text}"
    );
    for secret in [PASSWORD, "alice-secret-1", "alice-secret-2", "bob-secret-1"] {
        assert!(!on_disk.contains(secret), "{secret} is in the data dir");
        assert!(!log_text.contains(secret), "{secret} is in the log");
    }
    let roles = read(&data.join("roles.json"));
    assert!(
        roles.contains("salted_password") && roles.contains("\"iterations\": 4096"),
        "{roles}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("roles.json"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "roles.json is readable by others: {mode:o}"
        );
    }

    // The bootstrap password survives a restart; roles too.
    let server = start_scram(&data, &log);
    let weir = connect(server.port, "weir", PASSWORD)
        .await
        .expect("after restart");
    assert_eq!(one(&weir, "SELECT current_user").await, "weir");
}

#[test]
fn psql_with_pgpassword_and_a_wrong_one() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("weir.log");
    let server = start_scram(&dir.path().join("data"), &log);
    let (ok, out) = psql(
        server.port,
        "weir",
        PASSWORD,
        "SELECT current_user, session_user",
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "weir|weir");
    for (user, password) in [("weir", "wrong"), ("nobody", PASSWORD)] {
        let (ok, out) = psql(server.port, user, password, "SELECT 1");
        assert!(!ok, "{user} got in: {out}");
        assert!(
            out.contains(&format!(
                "password authentication failed for user \"{user}\""
            )),
            "{out}"
        );
    }
}

#[test]
fn psycopg_with_scram() {
    let python = std::env::var("WEIR_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    if !common::have(&python, &["-c", "import psycopg"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_scram(&dir.path().join("data"), &dir.path().join("weir.log"));
    let script = r#"
import sys, psycopg
port, password = sys.argv[1], sys.argv[2]
dsn = f"host=127.0.0.1 port={port} dbname=weir user=weir"
with psycopg.connect(dsn, password=password) as conn:
    print(conn.execute("select current_user").fetchone()[0])
try:
    psycopg.connect(dsn, password="nope")
    print("wrong password accepted")
except psycopg.OperationalError as e:
    print("refused" if "password authentication failed" in str(e) else f"other: {e}")
"#;
    let output = Command::new(&python)
        .args(["-c", script, &server.port.to_string(), PASSWORD])
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["weir", "refused"]);
}

/// Run `weir serve` expecting it to refuse to start; its stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--print-addrs", "--log", "warn"])
        .args(args)
        .envs(env.iter().copied())
        .env_remove("WEIR_PASSWORD")
        .output()
        .expect("run weir");
    assert!(!output.status.success(), "weir started with {args:?}");
    assert!(output.stdout.is_empty(), "weir printed its addresses");
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn trust_is_refused_beyond_loopback_and_scram_without_a_password() {
    let err = refused(
        &["--pg-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0"],
        &[],
    );
    assert!(
        err.contains("auth_method is trust")
            && err.contains("0.0.0.0")
            && err.contains("scram-sha-256"),
        "{err}"
    );
    let err = refused(
        &["--pg-addr", "127.0.0.1:0", "--http-addr", "0.0.0.0:0"],
        &[],
    );
    assert!(err.contains("HTTP listener"), "{err}");
    let err = refused(
        &[
            "--pg-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--auth-method",
            "scram-sha-256",
        ],
        &[],
    );
    assert!(err.contains("no role has a password"), "{err}");

    // With a password, 0.0.0.0 is fine.
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_on(
        &dir.path().join("data"),
        &dir.path().join("log"),
        "0.0.0.0:0",
    );
    assert!(server.port > 0);
}

#[test]
fn password_file_sets_the_bootstrap_password() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-a-file\n").expect("write");
    let server = WeirProcess::start_with(
        &dir.path().join("data"),
        &[
            "--auth-method",
            "scram-sha-256",
            "--password-file",
            file.to_str().expect("utf8"),
        ],
        &[],
    );
    let (ok, out) = psql(server.pg_port, "weir", "from-a-file", "SELECT current_user");
    assert!(ok, "{out}");
    let (ok, _) = psql(server.pg_port, "weir", "from-a-file\n", "SELECT 1");
    assert!(!ok);
}

/// The SQLSTATE and message of a statement that must fail.
async fn refused_with(client: &tokio_postgres::Client, sql: &str) -> String {
    code(
        &client
            .simple_query(sql)
            .await
            .expect_err(&format!("{sql} must be refused")),
    )
}

async fn run(client: &tokio_postgres::Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", code(&e)));
}

/// Item 3: a role that is not a superuser, over SCRAM, is refused what it
/// was not granted (42501, naming the object as Postgres does), may do
/// what it was granted, loses it on REVOKE, and the grants and owners
/// outlive a restart; `information_schema.role_table_grants` and
/// `pg_class.relacl` (what psql's `\dp` reads) show them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_revokes_decide_what_a_role_may_do_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("weir.log");
    let data = dir.path().join("data");
    let server = start_scram(&data, &log);
    let weir = connect(server.port, "weir", PASSWORD).await.expect("weir");
    run(
        &weir,
        "CREATE ROLE alice LOGIN PASSWORD 'alice pw';
         CREATE TABLE t (a BIGINT PRIMARY KEY, b TEXT);
         INSERT INTO t VALUES (1, 'one'), (2, 'two');
         CREATE TABLE u (a BIGINT);
         INSERT INTO u VALUES (1);
         CREATE VIEW v AS SELECT a FROM t",
    )
    .await;
    let alice = connect(server.port, "alice", "alice pw")
        .await
        .expect("alice");

    // Nothing granted yet: every relation is refused, and so is CREATE.
    assert_eq!(
        refused_with(&alice, "SELECT * FROM t").await,
        "42501 permission denied for table t"
    );
    assert_eq!(
        refused_with(&alice, "INSERT INTO t VALUES (3, 'three')").await,
        "42501 permission denied for table t"
    );
    assert_eq!(
        refused_with(&alice, "CREATE TABLE mine (x BIGINT)").await,
        "42501 permission denied for schema public"
    );
    assert_eq!(
        refused_with(&alice, "DROP TABLE t").await,
        "42501 must be owner of table t"
    );
    assert_eq!(
        refused_with(&alice, "GRANT SELECT ON t TO alice").await,
        "42501 must be owner of table t"
    );

    run(
        &weir,
        "GRANT SELECT, INSERT ON t TO alice; GRANT CREATE ON SCHEMA public TO alice",
    )
    .await;
    assert_eq!(one(&alice, "SELECT count(*) FROM t").await, "2");
    run(&alice, "INSERT INTO t VALUES (3, 'three')").await;
    assert_eq!(
        refused_with(&alice, "DELETE FROM t WHERE a = 3").await,
        "42501 permission denied for table t"
    );
    // Every relation a query names: joins, subqueries, a view.
    assert_eq!(
        refused_with(&alice, "SELECT * FROM t JOIN u ON t.a = u.a").await,
        "42501 permission denied for table u"
    );
    assert_eq!(
        refused_with(&alice, "SELECT * FROM t WHERE a IN (SELECT a FROM u)").await,
        "42501 permission denied for table u"
    );
    assert_eq!(
        refused_with(&alice, "WITH x AS (SELECT * FROM v) SELECT * FROM x").await,
        "42501 permission denied for view v"
    );
    assert_eq!(
        refused_with(&alice, "COPY u TO STDOUT").await,
        "42501 permission denied for table u"
    );
    // UPDATE and DELETE that read the table's columns (WHERE, RETURNING,
    // a SET expression naming a column) need SELECT too, as in Postgres;
    // a blind UPDATE or DELETE does not.
    run(
        &weir,
        "CREATE TABLE k (a BIGINT PRIMARY KEY, b TEXT); INSERT INTO k VALUES (1, 'one'), (2, 'two');
         GRANT UPDATE, DELETE ON k TO alice",
    )
    .await;
    run(&alice, "UPDATE k SET b = 'blind'").await;
    for reads in [
        "UPDATE k SET b = b || 'x'",
        "UPDATE k SET b = 'y' WHERE a = 1",
        "UPDATE k SET b = 'y' RETURNING a",
        "DELETE FROM k WHERE a = 1",
        "DELETE FROM k RETURNING a",
    ] {
        assert_eq!(
            refused_with(&alice, reads).await,
            "42501 permission denied for table k",
            "{reads}"
        );
    }
    assert_eq!(
        one(&weir, "SELECT string_agg(b, ',') FROM k").await,
        "blind,blind"
    );
    run(&alice, "DELETE FROM k").await;
    assert_eq!(one(&weir, "SELECT count(*) FROM k").await, "0");
    run(
        &weir,
        "INSERT INTO k VALUES (1, 'one'); GRANT SELECT ON k TO alice",
    )
    .await;
    run(&alice, "UPDATE k SET b = b || 'x' WHERE a = 1").await;
    run(&alice, "DELETE FROM k WHERE a = 2").await;
    assert_eq!(one(&weir, "SELECT string_agg(b, ',') FROM k").await, "onex");
    run(&weir, "DROP TABLE k").await;
    // A view of one's own does not read what one may not.
    assert_eq!(
        refused_with(&alice, "CREATE VIEW peek AS SELECT * FROM u").await,
        "42501 permission denied for table u"
    );
    // What alice creates is hers, with every privilege.
    run(
        &alice,
        "CREATE TABLE mine (x BIGINT PRIMARY KEY); INSERT INTO mine VALUES (7); DELETE FROM mine WHERE x = 0",
    )
    .await;
    assert_eq!(
        refused_with(&weir, "DROP ROLE alice").await,
        "2BP01 role \"alice\" cannot be dropped because some objects depend on it"
    );
    assert_eq!(
        refused_with(&weir, "GRANT INSERT ON v TO alice").await,
        "42809 invalid privilege type INSERT for view"
    );

    let grants = common::sorted_rows(
        &weir,
        "SELECT grantor, grantee, table_name, privilege_type \
         FROM information_schema.role_table_grants WHERE grantee = 'alice'",
    )
    .await;
    assert_eq!(
        grants,
        vec![
            // An owner holds every table privilege, as in Postgres.
            "alice|alice|mine|DELETE",
            "alice|alice|mine|INSERT",
            "alice|alice|mine|REFERENCES",
            "alice|alice|mine|SELECT",
            "alice|alice|mine|TRIGGER",
            "alice|alice|mine|TRUNCATE",
            "alice|alice|mine|UPDATE",
            "weir|alice|t|INSERT",
            "weir|alice|t|SELECT",
        ]
    );
    // What psql's `\dp` reads: the aclitems, owner first.
    assert_eq!(
        one(
            &weir,
            "SELECT array_to_string(relacl, ',') FROM pg_catalog.pg_class WHERE relname = 't'"
        )
        .await,
        "weir=arwdDxt/weir,alice=ar/weir"
    );
    // psql's own `\dp` and `\z` (its query reads `pg_attribute.attacl` and
    // `pg_policy.polroles` as arrays): the grants as Postgres spells them,
    // one aclitem a line, and a relation without grants empty.
    if common::have("psql", &["--version"]) {
        for command in ["\\dp", "\\z"] {
            let (ok, out) = psql(server.port, "weir", PASSWORD, command);
            assert!(ok, "{command}: {out}");
            assert!(
                out.contains("public|t|table|weir=arwdDxt/weir\nalice=ar/weir||\n"),
                "{command} shows t's grants: {out}"
            );
            assert!(out.contains("public|u|table|||\n"), "{command}: {out}");
            assert!(out.contains("public|v|view|||\n"), "{command}: {out}");
            let (ok, out) = psql(server.port, "alice", "alice pw", &format!("{command} mine"));
            assert!(ok, "{command} mine: {out}");
            assert_eq!(out, "public|mine|table|||\n", "{command} mine");
        }
    }

    // After a restart: the same grants, the same owners.
    drop((alice, weir));
    drop(server);
    let server = start_scram(&data, &log);
    let weir = connect(server.port, "weir", PASSWORD).await.expect("weir");
    let alice = connect(server.port, "alice", "alice pw")
        .await
        .expect("alice");
    assert_eq!(one(&alice, "SELECT count(*) FROM t").await, "3");
    assert_eq!(
        refused_with(&alice, "SELECT * FROM u").await,
        "42501 permission denied for table u"
    );
    assert_eq!(one(&alice, "SELECT x FROM mine").await, "7");
    assert_eq!(
        refused_with(&alice, "DROP TABLE t").await,
        "42501 must be owner of table t"
    );

    // REVOKE takes it away, durably too.
    run(&weir, "REVOKE SELECT ON t FROM alice").await;
    assert_eq!(
        refused_with(&alice, "SELECT * FROM t").await,
        "42501 permission denied for table t"
    );
    run(&alice, "INSERT INTO t VALUES (4, 'four')").await;
    // PUBLIC: every role.
    run(&weir, "GRANT SELECT ON u TO PUBLIC").await;
    assert_eq!(one(&alice, "SELECT count(*) FROM u").await, "1");
    // Alice gives hers away by dropping it; then she can be dropped.
    run(&alice, "DROP TABLE mine").await;
    run(
        &weir,
        "REVOKE ALL ON t FROM alice; REVOKE CREATE ON SCHEMA public FROM alice; DROP ROLE alice",
    )
    .await;
    let left = std::fs::read_to_string(data.join("roles.json")).expect("roles.json");
    assert!(!left.contains("\"alice\""), "alice is gone: {left}");
}
