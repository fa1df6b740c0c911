//! Checkpoints in an S3-compatible object store: moto's server (from PyPI,
//! installed by `.ci/setup`) stands in for S3. A job checkpoints into a
//! bucket, the server is killed with SIGKILL, and the restarted job resumes
//! from the bucket's latest checkpoint with every row counted exactly once.

mod common;
#[path = "common/moto.rs"]
mod moto;

use std::time::Duration;

use common::{WeirProcess, connect};
use moto::{ARGS, Moto, exact_count, wait_checkpoints};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_in_s3_survive_a_crash() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let env = moto.env();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &ARGS, &env);
    let client = connect(&server).await;
    client
        .batch_execute(&format!("{}; {}", moto::STREAM, moto::VIEW))
        .await
        .expect("create the job");
    wait_checkpoints(&server, 3).await;
    let before = exact_count(&client).await;
    assert!(before > 0, "{before} rows");
    server.kill();

    // The bucket holds the manifests and chunks.
    let listing = moto.listed("cluster-a/per_key/");
    assert!(listing.contains("manifest-"), "{listing}");
    assert!(listing.contains(".arrow"), "{listing}");

    let server = WeirProcess::start_with(dir.path(), &ARGS, &env);
    // Resumed, not restarted: the restored counts are there at once, and
    // rows keep coming, each exactly once.
    let client = connect(&server).await;
    let restored = exact_count(&client).await;
    assert!(restored > 0, "the view was not restored from the bucket");
    // The generator paces itself (5000 rows/s in batches of 4096): wait for
    // the next batch after the restored position.
    let deadline = std::time::Instant::now() + moto::DEADLINE;
    loop {
        client.batch_execute("FLUSH").await.expect("flush");
        if exact_count(&client).await > restored {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restored job read nothing after its checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
