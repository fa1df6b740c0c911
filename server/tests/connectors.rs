//! The connector registry's errors, through the front door: every bad
//! connector or option in `CREATE STREAM`, `CREATE TABLE` and `CREATE SINK`
//! names what is wrong and what would be right, with its SQLSTATE
//! (`sql-tests/connectors/registry.slt` runs the same cases as a script).

mod common;

use common::WeirProcess;

#[tokio::test]
async fn bad_connectors_and_options_name_themselves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE STREAM bids WITH (connector = 'nexmark', table = 'bid', rows = '100', rate = '10');
             CREATE MATERIALIZED VIEW bid_count AS SELECT count(*) AS n FROM bids;",
        )
        .await
        .expect("setup");
    for (sql, code, message) in [
        (
            "CREATE TABLE t1 WITH (connector = 'file', path = 'data/trips.csv', delimter = ';')",
            "22023",
            "unknown option \"delimter\" for connector \"file\": \
             a file table accepts path, format, header, delimiter, on_error or dead_letter_path",
        ),
        (
            "CREATE STREAM s1 WITH (connector = 'nexmark', table = 'bid', ratee = '10')",
            "22023",
            "unknown option \"ratee\" for connector \"nexmark\": \
             a nexmark stream accepts table, rate, rows, seed or partitions",
        ),
        (
            "CREATE SINK out1 FROM bid_count WITH (connector = 'kafka', topic = 't', \
             brokers = '127.0.0.1:1', format = 'json', scan_startup = 'latest')",
            "22023",
            "unknown option \"scan_startup\" for connector \"kafka\": a kafka sink accepts \
             topic, brokers, format, delimiter, properties.<name>, key, delivery, \
             transactional_id_prefix or commit_topic",
        ),
        (
            "CREATE STREAM s1 (n BIGINT) WITH (connector = 'datagen', rows = '5', \
             'fields.nope.kind' = 'random')",
            "22023",
            "unknown option \"fields.nope.kind\" for connector \"datagen\": a datagen stream \
             accepts rows, rate, seed, fields.<column>.kind, fields.<column>.min, \
             fields.<column>.max or fields.<column>.step_ms",
        ),
        (
            "CREATE SINK out1 FROM bid_count WITH (connector = 'nexmark', table = 'bid')",
            "0A000",
            "connector \"nexmark\" cannot be a sink: it can be a stream",
        ),
        (
            "CREATE TABLE t1 WITH (connector = 'kafka', topic = 't', brokers = 'b', format = 'json')",
            "0A000",
            "connector \"kafka\" cannot be a table: it can be a stream or a sink",
        ),
        (
            "CREATE STREAM s2 WITH (connector = 'nexmark', rows = '10')",
            "22023",
            "option \"table\" is required for connector \"nexmark\"",
        ),
        (
            "CREATE SINK out1 FROM bid_count WITH (connector = 'file', format = 'csv')",
            "22023",
            "option \"path\" is required for connector \"file\"",
        ),
        (
            "CREATE STREAM s2 (v TEXT) WITH (connector = 'kafka', topic = 't', format = 'raw')",
            "22023",
            "option \"brokers\" is required for connector \"kafka\"",
        ),
        (
            "CREATE SINK out1 FROM bid_count WITH (path = 'x', format = 'csv')",
            "22023",
            "option \"connector\" is required for a sink: expected file or kafka",
        ),
        (
            "CREATE STREAM s2 WITH (table = 'bid')",
            "22023",
            "option \"connector\" is required for a stream: \
             expected file, nexmark, datagen or kafka",
        ),
        (
            "CREATE TABLE t1 WITH (path = 'data/trips.csv')",
            "22023",
            "option \"connector\" is required for a table: expected file",
        ),
        (
            "CREATE TABLE t1 WITH (connector = 'carrier_pigeon')",
            "22023",
            "unknown connector \"carrier_pigeon\": expected file, nexmark, datagen or kafka",
        ),
    ] {
        let err = client.simple_query(sql).await.expect_err(sql);
        let db = err.as_db_error().expect("a server error");
        assert_eq!((db.code().code(), db.message()), (code, message), "{sql}");
    }
    // The server goes on, and nothing above was created.
    let left = common::sorted_rows(
        &client,
        "SELECT table_name FROM information_schema.tables \
         WHERE table_name IN ('t1', 's1', 's2', 'out1')",
    )
    .await;
    assert!(left.is_empty(), "{left:?}");
}
