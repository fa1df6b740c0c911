//! The Postgres wire protocol through a real driver (tokio-postgres, which
//! uses the extended protocol and binary results): error fields, parameters,
//! portals with row limits, types, concurrent sessions; and the HTTP
//! endpoint and clean shutdown of the real binary.

mod common;

use chrono::{NaiveDate, NaiveDateTime};
use common::WeirProcess;
use tokio_postgres::error::ErrorPosition;

async fn setup() -> (tempfile::TempDir, WeirProcess, tokio_postgres::Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE trips WITH (connector = 'file', path = 'data/trips.csv', format = 'csv');
             CREATE TABLE trips_pq WITH (connector = 'file', path = 'data/trips.parquet', format = 'parquet');",
        )
        .await
        .expect("create tables");
    (dir, server, client)
}

fn db_error(err: tokio_postgres::Error) -> tokio_postgres::error::DbError {
    err.as_db_error()
        .cloned()
        .unwrap_or_else(|| panic!("not a server error: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate_and_position() {
    let (_dir, _server, client) = setup().await;

    let err = db_error(
        client
            .simple_query("SELECT id FROM trips WHERE nope > 1")
            .await
            .expect_err("bad column"),
    );
    assert_eq!(err.code().code(), "42703");
    assert_eq!(err.message(), "column \"nope\" does not exist");
    assert_eq!(err.position(), Some(&ErrorPosition::Original(28)));

    let err = db_error(
        client
            .simple_query("SELECT *\nFROM missing_table")
            .await
            .expect_err("bad table"),
    );
    assert_eq!(err.code().code(), "42P01");
    assert_eq!(err.message(), "relation \"missing_table\" does not exist");
    assert_eq!(err.position(), Some(&ErrorPosition::Original(15)));

    let err = db_error(
        client
            .prepare("SELECT id FROM trips WHERE id = = 1")
            .await
            .expect_err("syntax"),
    );
    assert_eq!(err.code().code(), "42601");
    assert_eq!(err.message(), "syntax error at or near \"=\"");
    assert_eq!(err.position(), Some(&ErrorPosition::Original(33)));

    // The session goes on after errors, in both protocols.
    let rows = client
        .query("SELECT count(*) FROM trips", &[])
        .await
        .expect("query");
    assert_eq!(rows[0].get::<_, i64>(0), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_and_binary_results() {
    let (_dir, _server, client) = setup().await;

    let row = client
        .query_one(
            "SELECT $1::BIGINT + 1, $2::TEXT || '!', $3::DOUBLE PRECISION * 2",
            &[&41i64, &"hi", &1.25f64],
        )
        .await
        .expect("typed parameters");
    assert_eq!(row.get::<_, i64>(0), 42);
    assert_eq!(row.get::<_, String>(1), "hi!");
    assert_eq!(row.get::<_, f64>(2), 2.5);

    let rows = client
        .query(
            "SELECT id FROM trips WHERE city = $1 AND fare > $2 ORDER BY id",
            &[&"berlin", &10.0f64],
        )
        .await
        .expect("parameters against columns");
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 6]);

    let row = client
        .query_one(
            "SELECT id, city, fare, paid, started_at, day, tags FROM trips_pq WHERE id = 2",
            &[],
        )
        .await
        .expect("binary types");
    assert_eq!(row.get::<_, i64>("id"), 2);
    assert_eq!(row.get::<_, &str>("city"), "paris");
    assert_eq!(row.get::<_, f64>("fare"), 30.0);
    assert!(row.get::<_, bool>("paid"));
    let ts: NaiveDateTime = row.get("started_at");
    assert_eq!(ts.to_string(), "2024-01-01 08:05:00");
    assert_eq!(
        row.get::<_, NaiveDate>("day"),
        NaiveDate::from_ymd_opt(2024, 1, 1).expect("date")
    );
    assert_eq!(
        row.get::<_, Vec<Option<String>>>("tags"),
        vec![Some("b".to_string()), Some("c".to_string())]
    );

    let row = client
        .query_one("SELECT fare FROM trips WHERE id = 5", &[])
        .await
        .expect("null");
    assert_eq!(row.get::<_, Option<f64>>(0), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_return_rows_in_pieces() {
    let (_dir, _server, mut client) = setup().await;
    let tx = client.transaction().await.expect("begin");
    let stmt = tx
        .prepare("SELECT id FROM trips ORDER BY id")
        .await
        .expect("prepare");
    let portal = tx.bind(&stmt, &[]).await.expect("bind");
    let mut seen = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, 4).await.expect("fetch");
        if rows.is_empty() {
            break;
        }
        assert!(
            rows.len() <= 4,
            "a portal fetch returned {} rows for a limit of 4",
            rows.len()
        );
        seen.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5, 6]);
    tx.commit().await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_protocol_runs_several_statements() {
    let (_dir, _server, client) = setup().await;
    let messages = client
        .simple_query("SELECT 1 AS a; SELECT count(*) AS n FROM trips; SET application_name = 'x'")
        .await
        .expect("multi-statement");
    let values: Vec<String> = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(values, vec!["1", "6"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_sessions() {
    let (_dir, server, _client) = setup().await;
    let mut tasks = Vec::new();
    for i in 0..24i64 {
        let config = server.pg_config();
        tasks.push(tokio::spawn(async move {
            let (client, conn) = config
                .connect(tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            for _ in 0..5 {
                let row = client
                    .query_one("SELECT count(*) + $1::BIGINT FROM trips", &[&i])
                    .await
                    .expect("query");
                assert_eq!(row.get::<_, i64>(0), 6 + i);
            }
        }));
    }
    for task in tasks {
        task.await.expect("session task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_clean_shutdown() {
    let (_dir, server, client) = setup().await;
    let _ = client.simple_query("SELECT nope").await;

    let health = common::http_get(server.http_port, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok\n"), "{health}");

    let metrics = common::http_get(server.http_port, "/metrics").await;
    assert!(metrics.contains("weir_connections_total"), "{metrics}");
    assert!(
        metrics.contains("weir_statement_errors_total{sqlstate=\"42703\"} 1"),
        "{metrics}"
    );

    drop(client);
    let status = server.terminate();
    assert!(status.success(), "weir exited with {status} after SIGTERM");
}
