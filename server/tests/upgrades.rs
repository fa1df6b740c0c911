//! Upgrades that keep state, through the real `weir` binary (design 0008):
//! `CREATE OR REPLACE MATERIALIZED VIEW` mid-stream, each result compared
//! with a view of the new (or old) query that ran uninterrupted over the
//! same rows: nothing lost, nothing counted twice.
//!
//! The input is a table Weir owns, written in rounds with `INSERT` and made
//! visible with `FLUSH`, so every comparison is exact, not eventual.

mod common;

use common::{WeirProcess, connect, sorted_rows};
use tokio_postgres::Client;

const OLD: &str = "SELECT shop, count(*) AS n, sum(amount) AS total, count(DISTINCT buyer) AS buyers \
                   FROM sales WHERE amount > 1 GROUP BY shop";
/// A filter after the aggregate and a new column computed from kept ones.
const NEW: &str = "SELECT shop, total, n, total * 10 + n AS score FROM \
                   (SELECT shop, count(*) AS n, sum(amount) AS total, count(DISTINCT buyer) AS buyers \
                    FROM sales WHERE amount > 1 GROUP BY shop) WHERE buyers > 1";

/// Round `r` of rows: shops 0..7, some amounts at or below the filter.
fn round(r: u64) -> String {
    let rows: Vec<String> = (0..40)
        .map(|i| {
            let n = r * 40 + i;
            format!("('s{}', {}, {})", n % 7, n % 13, n % 5)
        })
        .collect();
    format!("INSERT INTO sales VALUES {}", rows.join(", "))
}

async fn run(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

async fn setup(client: &Client) {
    run(
        client,
        "CREATE TABLE sales (shop TEXT, amount BIGINT, buyer BIGINT)",
    )
    .await;
    run(client, &round(0)).await;
    run(client, &format!("CREATE MATERIALIZED VIEW v AS {OLD}")).await;
    run(client, &round(1)).await;
    run(client, "FLUSH").await;
}

/// The SQLSTATE and message of a statement that must fail.
async fn error_of(client: &Client, sql: &str) -> (String, String) {
    let err = client
        .batch_execute(sql)
        .await
        .expect_err("the statement must fail");
    let db = err.as_db_error().expect("a server error");
    (db.code().code().to_string(), db.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compatible_upgrade_mid_stream_equals_an_uninterrupted_run_of_the_new_query() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(data.path());
    let client = connect(&server).await;
    setup(&client).await;
    // The reference: the new query, uninterrupted from the first row.
    run(
        &client,
        &format!("CREATE MATERIALIZED VIEW reference AS {NEW}"),
    )
    .await;
    run(
        &client,
        &format!("CREATE OR REPLACE MATERIALIZED VIEW v AS {NEW}"),
    )
    .await;
    for r in 2..5 {
        run(&client, &round(r)).await;
    }
    run(&client, "FLUSH").await;
    let upgraded = sorted_rows(&client, "SELECT shop, total, n, score FROM v").await;
    assert!(!upgraded.is_empty());
    assert_eq!(
        upgraded,
        sorted_rows(&client, "SELECT shop, total, n, score FROM reference").await,
        "the upgraded view differs from an uninterrupted run of the new query"
    );
    // The switch went through a savepoint of origin `upgrade`.
    let savepoints = sorted_rows(&client, "SHOW SAVEPOINTS FOR JOB v").await;
    let upgrade = savepoints
        .iter()
        .find(|r| r.split('|').nth(5) == Some("upgrade"))
        .unwrap_or_else(|| panic!("no savepoint of origin upgrade: {savepoints:?}"));
    let savepoint = upgrade.split('|').next().expect("its name").to_string();
    let events = sorted_rows(&client, "SHOW JOB EVENTS v").await;
    assert!(
        events
            .iter()
            .any(|e| e.contains("upgraded (stateful) from checkpoint")
                && e.contains(&format!("(savepoint \"{savepoint}\")"))),
        "{events:?}"
    );
    // A restart keeps the upgraded view and its state.
    drop(client);
    server.kill();
    let server = WeirProcess::start(data.path());
    let client = connect(&server).await;
    run(&client, &round(5)).await;
    run(&client, "FLUSH").await;
    assert_eq!(
        sorted_rows(&client, "SELECT shop, total, n, score FROM v").await,
        sorted_rows(&client, "SELECT shop, total, n, score FROM reference").await,
        "after a restart"
    );
    // Going back: the old query again, then its state at the switch point
    // from the upgrade's savepoint; the rows after it are read again.
    run(
        &client,
        &format!(
            "CREATE OR REPLACE MATERIALIZED VIEW v WITH (upgrade_strategy = 'stateless') AS {OLD}"
        ),
    )
    .await;
    run(
        &client,
        &format!("CREATE MATERIALIZED VIEW old_reference AS {OLD}"),
    )
    .await;
    run(&client, "ALTER JOB v SUSPEND").await;
    run(
        &client,
        &format!("ALTER JOB v RESUME FROM SAVEPOINT {savepoint}"),
    )
    .await;
    run(&client, &round(6)).await;
    run(&client, "FLUSH").await;
    assert_eq!(
        sorted_rows(&client, "SELECT * FROM v").await,
        sorted_rows(&client, "SELECT * FROM old_reference").await,
        "back on the old query from the upgrade's savepoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_upgrade_is_refused_and_the_old_view_goes_on_and_stateless_starts_over() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(data.path());
    let client = connect(&server).await;
    setup(&client).await;
    run(
        &client,
        &format!("CREATE MATERIALIZED VIEW old_reference AS {OLD}"),
    )
    .await;
    let changed = OLD.replace("count(DISTINCT buyer) AS buyers", "max(amount) AS top");
    let (code, message) = error_of(
        &client,
        &format!("CREATE OR REPLACE MATERIALIZED VIEW v AS {changed}"),
    )
    .await;
    assert_eq!(code, "55000", "{message}");
    assert!(
        message.contains("StreamGroupAggregate: a new accumulator max(amount) has no state"),
        "{message}"
    );
    let (code, message) = error_of(
        &client,
        &format!(
            "CREATE OR REPLACE MATERIALIZED VIEW v AS {}",
            OLD.replace("amount > 1", "amount > 2")
        ),
    )
    .await;
    assert_eq!(code, "55000", "{message}");
    assert!(message.contains("a filter below it differs"), "{message}");
    // The old version goes on, untouched.
    run(&client, &round(2)).await;
    run(&client, "FLUSH").await;
    assert_eq!(
        sorted_rows(&client, "SELECT * FROM v").await,
        sorted_rows(&client, "SELECT * FROM old_reference").await
    );
    // Stateless: everything computed again from the first row.
    run(
        &client,
        &format!("CREATE OR REPLACE MATERIALIZED VIEW v WITH (upgrade_strategy = 'stateless') AS {changed}"),
    )
    .await;
    run(
        &client,
        &format!("CREATE MATERIALIZED VIEW new_reference AS {changed}"),
    )
    .await;
    run(&client, &round(3)).await;
    run(&client, "FLUSH").await;
    assert_eq!(
        sorted_rows(&client, "SELECT * FROM v").await,
        sorted_rows(&client, "SELECT * FROM new_reference").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_that_fails_to_start_leaves_the_old_one_running() {
    let data = tempfile::tempdir().expect("tempdir");
    // The first restore of this process panics: the new version's start.
    let server =
        WeirProcess::start_with(data.path(), &[], &[("WEIR_FAILPOINT", "restore@1:panic")]);
    let client = connect(&server).await;
    setup(&client).await;
    run(
        &client,
        &format!("CREATE MATERIALIZED VIEW old_reference AS {OLD}"),
    )
    .await;
    let (code, message) = error_of(
        &client,
        &format!("CREATE OR REPLACE MATERIALIZED VIEW v AS {NEW}"),
    )
    .await;
    assert_eq!(code, "XX000", "{message}");
    // The switch point stays as a savepoint of origin `upgrade`.
    let savepoints = sorted_rows(&client, "SHOW SAVEPOINTS FOR JOB v").await;
    assert!(
        savepoints
            .iter()
            .any(|r| r.split('|').nth(5) == Some("upgrade")),
        "{savepoints:?}"
    );
    run(&client, &round(2)).await;
    run(&client, "FLUSH").await;
    assert_eq!(
        sorted_rows(&client, "SELECT * FROM v").await,
        sorted_rows(&client, "SELECT * FROM old_reference").await,
        "the old version goes on, from the switch point, nothing lost or doubled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_an_upgrade_then_a_restart_leaves_a_consistent_view() {
    let data = tempfile::tempdir().expect("tempdir");
    {
        // Abort (as kill -9) when the new version restores: the old job has
        // stopped at its switch point, the catalog still names it.
        let server = WeirProcess::start_with(data.path(), &[], &[("WEIR_FAILPOINT", "restore@1")]);
        let client = connect(&server).await;
        setup(&client).await;
        run(
            &client,
            &format!("CREATE MATERIALIZED VIEW old_reference AS {OLD}"),
        )
        .await;
        let crashed = client
            .batch_execute(&format!("CREATE OR REPLACE MATERIALIZED VIEW v AS {NEW}"))
            .await;
        assert!(crashed.is_err(), "the server aborted mid-upgrade");
        server.kill();
    }
    let server = WeirProcess::start(data.path());
    let client = connect(&server).await;
    run(&client, &round(2)).await;
    run(&client, "FLUSH").await;
    assert_eq!(
        sorted_rows(&client, "SELECT * FROM v").await,
        sorted_rows(&client, "SELECT * FROM old_reference").await,
        "after the crash the old version is whole"
    );
    // And the upgrade, tried again, goes through.
    run(
        &client,
        &format!("CREATE MATERIALIZED VIEW reference AS {NEW}"),
    )
    .await;
    run(
        &client,
        &format!("CREATE OR REPLACE MATERIALIZED VIEW v AS {NEW}"),
    )
    .await;
    run(&client, &round(3)).await;
    run(&client, "FLUSH").await;
    assert_eq!(
        sorted_rows(&client, "SELECT shop, total, n, score FROM v").await,
        sorted_rows(&client, "SELECT shop, total, n, score FROM reference").await
    );
}
