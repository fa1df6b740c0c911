//! Views over tables Weir owns resume from their checkpoint: after a
//! suspend and resume, a graceful restart and a kill -9, the view's file
//! sink holds each row exactly once, and what its committed files add up
//! to equals the batch answer over the table. A view that read the table
//! again from its beginning would write its rows a second time.

mod common;

use std::path::Path;

use common::WeirProcess;
use tokio_postgres::Client;

const ARGS: [&str; 2] = ["--checkpoint-interval", "200ms"];

/// The sinks and what their committed files must add up to.
const SINKS: [(&str, &str, &[&str]); 2] = [
    (
        "per_k",
        "SELECT k, count(*) AS n, sum(id) AS total FROM t GROUP BY k",
        &["k", "n", "total"],
    ),
    (
        "evens",
        "SELECT id, k FROM a WHERE id % 2 = 0",
        &["id", "k"],
    ),
];

/// Wait until every view equals its batch answer and every sink's committed
/// files add up to it (a checkpoint commits them).
async fn settled(client: &Client, out: &Path) {
    client.simple_query("FLUSH").await.expect("FLUSH");
    for (view, batch, columns) in SINKS {
        let columns_of_view = columns.join(", ");
        assert_eq!(
            common::sorted_rows(client, &format!("SELECT {columns_of_view} FROM {view}")).await,
            common::sorted_rows(client, batch).await,
            "view {view}"
        );
        common::wait_for_sinks(client, batch, &[out.join(view)], columns).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_over_an_owned_table_resumes_from_its_checkpoint_and_its_sink_holds_each_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT);
             CREATE TABLE a (id BIGINT, k BIGINT);
             CREATE MATERIALIZED VIEW per_k AS
               SELECT k, count(*) AS n, sum(id) AS total FROM t GROUP BY k;
             CREATE MATERIALIZED VIEW evens AS SELECT id, k FROM a WHERE id % 2 = 0;
             CREATE SINK per_k_out FROM per_k WITH (connector = 'file', path = '{0}/per_k', format = 'json');
             CREATE SINK evens_out FROM evens WITH (connector = 'file', path = '{0}/evens', format = 'json')",
            out.display()
        ))
        .await
        .expect("two views over owned tables, written out");
    common::write_t_and_a(&client, 1, 1000).await;
    settled(&client, &out).await;

    // Suspend, write while suspended, resume.
    for view in ["per_k", "evens"] {
        client
            .simple_query(&format!("ALTER JOB {view} SUSPEND"))
            .await
            .expect("suspend");
    }
    common::write_t_and_a(&client, 1001, 500).await;
    for view in ["per_k", "evens"] {
        client
            .simple_query(&format!("ALTER JOB {view} RESUME"))
            .await
            .expect("resume");
    }
    common::write_t_and_a(&client, 1501, 500).await;
    settled(&client, &out).await;
    for view in ["per_k", "evens"] {
        let events = common::sorted_rows(&client, &format!("SHOW JOB EVENTS {view}")).await;
        assert!(
            events
                .iter()
                .any(|r| r.contains("|running|resumed from checkpoint")),
            "{view} resumed from its checkpoint, not from the table's beginning: {events:?}"
        );
    }

    // A graceful restart, with writes before and after it.
    common::write_t_and_a(&client, 2001, 500).await;
    drop(client);
    server.terminate();
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    common::write_t_and_a(&client, 2501, 500).await;
    settled(&client, &out).await;

    // kill -9 mid-stream, with writes before and after it.
    common::write_t_and_a(&client, 3001, 500).await;
    drop(client);
    server.kill();
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    common::write_t_and_a(&client, 3501, 500).await;
    settled(&client, &out).await;

    // Suspended across a restart, then resumed.
    client
        .simple_query("ALTER JOB per_k SUSPEND")
        .await
        .expect("suspend");
    common::write_t_and_a(&client, 4001, 300).await;
    drop(client);
    server.kill();
    let server = WeirProcess::start_with(dir.path(), &ARGS, &[]);
    let client = common::connect(&server).await;
    common::write_t_and_a(&client, 4301, 300).await;
    client
        .simple_query("ALTER JOB per_k RESUME")
        .await
        .expect("resume after the restart");
    settled(&client, &out).await;
}
