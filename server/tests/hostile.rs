//! Statements built to hurt the server, through the front door: very long
//! operator chains, very wide select lists, bytes that are not UTF-8, a
//! query of only a comment. Each gets a result or a clear error, and the
//! server keeps answering everyone else.

mod common;

use common::WeirProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::SimpleQueryMessage;

async fn setup() -> (tempfile::TempDir, WeirProcess, tokio_postgres::Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    (dir, server, client)
}

/// `SELECT 1` still answers (the server is alive and not stalled).
async fn still_answers(server: &WeirProcess) {
    let client = common::connect(server).await;
    let rows = common::sorted_rows(&client, "SELECT 1").await;
    assert_eq!(rows, ["1"]);
}

/// A chain of `terms` terms of each kind that sqlparser builds as a deep tree.
fn chains(terms: usize) -> Vec<(&'static str, String)> {
    let repeat = |first: &str, sep: &str, term: &str| {
        let mut sql = String::from(first);
        for _ in 1..terms {
            sql.push_str(sep);
            sql.push_str(term);
        }
        sql
    };
    vec![
        ("+", repeat("SELECT 1", " + ", "1")),
        ("OR", repeat("SELECT true", " OR ", "true")),
        ("AND", repeat("SELECT true", " AND ", "true")),
        ("||", repeat("SELECT 'a'", " || ", "'a'")),
        ("UNION ALL", repeat("SELECT 1", " UNION ALL ", "SELECT 1")),
        ("::bigint", repeat("SELECT 1", "", "::bigint")),
    ]
}

/// Each chain gets rows or 54001, over `extended` or the simple protocol.
async fn run_chains(server: &WeirProcess, client: &tokio_postgres::Client, terms: usize) {
    for (kind, sql) in chains(terms) {
        for extended in [false, true] {
            let result = if extended {
                client.query(sql.as_str(), &[]).await.map(|_| ())
            } else {
                client.simple_query(&sql).await.map(|_| ())
            };
            if let Err(err) = result {
                let db = err
                    .as_db_error()
                    .unwrap_or_else(|| panic!("{terms} x {kind}: not a server error: {err}"));
                assert_eq!(
                    db.code().code(),
                    "54001",
                    "{terms} x {kind} (extended: {extended}): {}",
                    db.message()
                );
                assert_eq!(db.message(), "stack depth limit exceeded");
            }
        }
        still_answers(server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_operator_chains_get_a_result_or_54001() {
    let (_dir, server, client) = setup().await;
    // A chain of a reasonable length works.
    for (kind, sql) in chains(100) {
        client
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("100 x {kind}: {e}"));
    }
    // What used to abort the process (1,800 terms and more) is refused.
    run_chains(&server, &client, 1_800).await;
    run_chains(&server, &client, 10_000).await;
    run_chains(&server, &client, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_54001() {
    let (_dir, server, client) = setup().await;
    let sql = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    let err = client.simple_query(&sql).await.expect_err("too deep");
    assert_eq!(err.code().map(|c| c.code()), Some("54001"), "{err}");
    still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_very_wide_select_list_does_not_stall_other_sessions() {
    let (_dir, server, client) = setup().await;
    let sql = format!("SELECT {}", vec!["1"; 100_000].join(", "));
    let wide = tokio::spawn(async move {
        let simple = client.simple_query(&sql).await.map(|_| ());
        let extended = client.query(sql.as_str(), &[]).await.map(|_| ());
        (simple, extended)
    });
    // Meanwhile, other sessions and /healthz are served.
    for _ in 0..3 {
        still_answers(&server).await;
        let health = common::http_get(server.http_port, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    }
    let (simple, extended) = wide.await.expect("wide query task");
    for result in [simple, extended] {
        let err = result.expect_err("more columns than Postgres allows");
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "54011", "{}", db.message());
        assert_eq!(db.message(), "target lists can have at most 1664 entries");
    }
    // The widest list Postgres allows works, named as Postgres names it.
    let client = common::connect(&server).await;
    let sql = format!("SELECT {}", vec!["1"; 1664].join(", "));
    let rows = client.query(sql.as_str(), &[]).await.expect("1664 columns");
    assert_eq!(rows[0].columns().len(), 1664);
    assert!(rows[0].columns().iter().all(|c| c.name() == "?column?"));
}

/// A minimal Postgres client on a raw socket: it sends bytes as they are
/// and reports the type of every message the server answers with.
struct RawClient {
    stream: tokio::net::TcpStream,
}

impl RawClient {
    async fn connect(server: &WeirProcess) -> Self {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.pg_port))
            .await
            .expect("connect");
        let mut client = Self { stream };
        let mut body = Vec::new();
        body.extend_from_slice(&196_608i32.to_be_bytes());
        for (key, value) in [("user", "weir"), ("database", "weir")] {
            body.extend_from_slice(key.as_bytes());
            body.push(0);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut message = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        message.extend_from_slice(&body);
        client.stream.write_all(&message).await.expect("startup");
        client.until_ready().await;
        client
    }

    /// Read messages up to ReadyForQuery: their types, and the SQLSTATE of
    /// an ErrorResponse.
    async fn until_ready(&mut self) -> (Vec<char>, Option<String>) {
        let mut kinds = Vec::new();
        let mut sqlstate = None;
        loop {
            let kind = self.stream.read_u8().await.expect("message type") as char;
            let len = self.stream.read_i32().await.expect("message length") as usize;
            let mut body = vec![0; len - 4];
            self.stream.read_exact(&mut body).await.expect("message");
            if kind == 'E' {
                // Fields: a type byte and a C string each; 'C' is the code.
                let mut fields = body.split(|b| *b == 0);
                sqlstate = fields
                    .find(|f| f.first() == Some(&b'C'))
                    .map(|f| String::from_utf8_lossy(&f[1..]).into_owned());
            }
            kinds.push(kind);
            if kind == 'Z' {
                return (kinds, sqlstate);
            }
        }
    }

    /// A simple-protocol Query of exactly `sql`'s bytes.
    async fn query(&mut self, sql: &[u8]) -> (Vec<char>, Option<String>) {
        let mut message = vec![b'Q'];
        message.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
        message.extend_from_slice(sql);
        message.push(0);
        self.stream.write_all(&message).await.expect("query");
        self.until_ready().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_22021() {
    let (_dir, server, _client) = setup().await;
    let mut raw = RawClient::connect(&server).await;
    let (kinds, sqlstate) = raw.query(b"SELECT '\xC3\x28'").await;
    assert_eq!(kinds, ['E', 'Z']);
    assert_eq!(sqlstate.as_deref(), Some("22021"));
    let (kinds, _) = raw.query(b"SELECT 1").await;
    assert_eq!(kinds, ['T', 'D', 'C', 'Z']);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_alone_is_an_empty_query() {
    let (_dir, server, _client) = setup().await;
    let mut raw = RawClient::connect(&server).await;
    for sql in ["-- hi", "/* x */", " -- hi\n/* x */ ;"] {
        let (kinds, _) = raw.query(sql.as_bytes()).await;
        assert_eq!(kinds, ['I', 'Z'], "{sql:?}");
    }
    if common::have("psql", &["--version"]) {
        let out = std::process::Command::new("psql")
            .args([server.url().as_str(), "-X", "-c", "-- hi"])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "{out:?}");
    }
}

fn error_count(metrics: &str, sqlstate: &str) -> u64 {
    let key = format!("weir_statement_errors_total{{sqlstate=\"{sqlstate}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&key))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_while_rows_stream_are_counted() {
    let (_dir, server, client) = setup().await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT); INSERT INTO t VALUES (1), (2), (0);
             CREATE TABLE bad (id BIGINT, ts TIMESTAMP)
               WITH (connector = 'file', path = 'data/defects/bad_timestamp.csv', format = 'csv');",
        )
        .await
        .expect("setup");
    let before = common::http_get(server.http_port, "/metrics").await;
    let err = client
        .simple_query("SELECT 10 / id FROM t")
        .await
        .expect_err("division by zero");
    assert_eq!(err.code().map(|c| c.code()), Some("22012"), "{err}");
    let err = client
        .query("SELECT 10 / id FROM t", &[])
        .await
        .expect_err("division by zero");
    assert_eq!(err.code().map(|c| c.code()), Some("22012"), "{err}");
    let err = client
        .simple_query("SELECT * FROM bad")
        .await
        .expect_err("bad timestamp");
    assert_eq!(err.code().map(|c| c.code()), Some("22007"), "{err}");
    // Counted before the error is sent, so the client's answer means it is
    // in /metrics.
    let after = common::http_get(server.http_port, "/metrics").await;
    assert_eq!(
        error_count(&after, "22012") - error_count(&before, "22012"),
        2,
        "{after}"
    );
    assert_eq!(
        error_count(&after, "22007") - error_count(&before, "22007"),
        1,
        "{after}"
    );
}

/// The column names a client sees for `sql`, over the simple and the
/// extended protocol (which must agree).
async fn column_names(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let simple: Vec<String> = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::RowDescription(columns) => {
                Some(columns.iter().map(|c| c.name().to_string()).collect())
            }
            _ => None,
        })
        .expect("a row description");
    let statement = client
        .prepare(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let extended: Vec<String> = statement
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(simple, extended, "{sql}");
    simple
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_are_named_as_postgres_names_them() {
    let (_dir, _server, client) = setup().await;
    client
        .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .expect("setup");
    for (sql, names) in [
        ("SELECT count(*), count(*) FROM t", vec!["count", "count"]),
        ("SELECT id, id FROM t", vec!["id", "id"]),
        ("SELECT 1 AS a, 2 AS a", vec!["a", "a"]),
        ("SELECT 1, 2", vec!["?column?", "?column?"]),
        (
            "SELECT current_user, session_user",
            vec!["current_user", "session_user"],
        ),
    ] {
        assert_eq!(column_names(&client, sql).await, names, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_read_as_in_postgres() {
    let (_dir, _server, client) = setup().await;
    client
        .batch_execute(
            "CREATE TABLE base (id BIGINT PRIMARY KEY, n INT);
             CREATE VIEW over_base AS SELECT id FROM base;
             CREATE TABLE bad (id BIGINT, ts TIMESTAMP)
               WITH (connector = 'file', path = 'data/defects/bad_timestamp.csv', format = 'csv');",
        )
        .await
        .expect("setup");
    for (sql, code, message, detail) in [
        (
            "DROP TABLE base",
            "2BP01",
            "cannot drop table base because other objects depend on it",
            Some("view over_base depends on table base"),
        ),
        (
            "INSERT INTO base VALUES (true, 1)",
            "42804",
            "column \"id\" is of type bigint but expression is of type boolean",
            None,
        ),
        (
            "SELECT 9223372036854775807 + 1",
            "22003",
            "bigint out of range",
            None,
        ),
        ("SELECT 1.0 / 0", "22012", "division by zero", None),
        (
            "SELECT * FROM bad",
            "22007",
            "invalid input syntax for type timestamp: \"not a time\" \
             (file \"data/defects/bad_timestamp.csv\", line 3, column \"ts\")",
            None,
        ),
        (
            "CREATE TABLE empty WITH (connector = 'file', path = 'data/defects/empty.csv', format = 'csv')",
            "22000",
            "could not infer any column from \"data/defects/empty.csv\": the file is empty",
            None,
        ),
    ] {
        let err = client.simple_query(sql).await.expect_err(sql);
        let db = err.as_db_error().expect("a server error");
        assert_eq!(
            (db.code().code(), db.message(), db.detail()),
            (code, message, detail),
            "{sql}"
        );
    }
}
