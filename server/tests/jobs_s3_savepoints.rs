//! Savepoints in an S3-compatible object store (moto's server stands in for
//! S3, as in `s3.rs`): a savepoint is self-contained in the bucket, outlives
//! checkpoint retention and the `DROP` of its job, and starts a new job of
//! the same query, whose rows are then each counted exactly once.

mod common;
#[path = "common/moto.rs"]
mod moto;

use std::time::{Duration, Instant};

use common::{WeirProcess, connect};
use moto::{ARGS, DEADLINE, Moto, VIEW, checkpoints, exact_count, wait_checkpoints};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_in_s3_outlives_retention_and_its_job_and_starts_a_new_one() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let env = moto.env();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &ARGS, &env);
    let client = connect(&server).await;
    client
        .batch_execute(&format!("{}; {VIEW}", moto::STREAM))
        .await
        .expect("create the job");
    wait_checkpoints(&server, 2).await;
    client
        .batch_execute("CREATE SAVEPOINT sp FOR JOB per_key")
        .await
        .expect("a savepoint");
    let saved = moto.listed("cluster-a/savepoints/sp/");
    assert!(saved.contains("savepoint.json"), "{saved}");
    assert!(
        saved.contains(".arrow"),
        "the savepoint holds its chunks: {saved}"
    );

    // Retention moves on past the savepoint's checkpoint, then the job is
    // dropped: the savepoint is untouched.
    let now = checkpoints(&server).await;
    wait_checkpoints(&server, now + 10).await;
    client
        .batch_execute("DROP MATERIALIZED VIEW per_key")
        .await
        .expect("drop the job");
    assert_eq!(
        moto.listed("cluster-a/savepoints/sp/"),
        saved,
        "retention and DROP left the savepoint as it was"
    );

    // A new job of the same query starts from it: its counts are the
    // savepoint's, then it reads on from the savepoint's positions, each
    // row exactly once.
    client.batch_execute(VIEW).await.expect("a new job");
    client
        .batch_execute("ALTER JOB per_key SUSPEND")
        .await
        .expect("suspend the new job");
    client
        .batch_execute("ALTER JOB per_key RESUME FROM SAVEPOINT sp")
        .await
        .expect("resume the new job from the savepoint");
    let restored = exact_count(&client).await;
    assert!(restored > 0, "the new job has the savepoint's state");
    let deadline = Instant::now() + DEADLINE;
    loop {
        client.batch_execute("FLUSH").await.expect("flush");
        let after = exact_count(&client).await;
        if after > restored {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed job read nothing after the savepoint"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events: Vec<String> = client
        .simple_query("SHOW JOB EVENTS per_key")
        .await
        .expect("events")
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get("reason").map(str::to_string),
            _ => None,
        })
        .collect();
    // The job's folder was made to start at the savepoint: it resumed
    // from the savepoint's epoch.
    let epoch = client
        .simple_query("SHOW SAVEPOINTS FOR JOB per_key")
        .await
        .expect("savepoints")
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get("name") == Some("sp") => {
                r.get("epoch").map(str::to_string)
            }
            _ => None,
        })
        .expect("savepoint sp listed");
    assert!(
        events
            .iter()
            .any(|e| e == &format!("resumed from checkpoint {epoch}")),
        "the job resumed from the savepoint's epoch {epoch}: {events:?}"
    );
}
