//! A crash while a savepoint is written (its chunks copied, its
//! `savepoint.json` not yet) leaves no savepoint: listing ignores the
//! folder, loading it fails, start-up removes it, and the name can be used
//! again. The crash is real: this test runs itself again as a child process
//! with the `savepoint-before-info` failpoint armed, which aborts the
//! process there as `kill -9` would.

mod common;

use std::process::Command;

use common::{Env, datagen, finish};
use weir_runtime::checkpoint::SavepointOrigin;

const CHILD_DIR: &str = "WEIR_TEST_SAVEPOINT_DIR";

/// Checkpoint a small job into the folder the parent names, then write a
/// savepoint; the armed failpoint aborts the process midway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by crash_while_writing_a_savepoint_leaves_none, in a child process"]
async fn child_writes_a_savepoint() {
    let dir = std::env::var(CHILD_DIR).expect("run by the parent test");
    let store: std::sync::Arc<dyn datafusion::object_store::ObjectStore> = std::sync::Arc::new(
        datafusion::object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .expect("the parent's folder"),
    );
    let env = Env::with_store(
        vec![datagen("bids", Some(3_000), None, 20, 1)],
        store,
        datafusion::object_store::path::Path::from(""),
        1,
        tempfile::tempdir().expect("a folder"),
    )
    .await;
    let plan = env
        .plan("SELECT k, count(*) AS n FROM bids GROUP BY k", false, 1)
        .await;
    let (job, _) = env.start("crashing", plan, true, None);
    finish(&job).await;
    let manifest = job.stop_with_savepoint().await.expect("stop");
    let _ = env
        .store
        .create_savepoint("sp", "crashing", &manifest, SavepointOrigin::User)
        .await;
    panic!("the failpoint should have aborted the process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_writing_a_savepoint_leaves_none() {
    let env = Env::new(vec![datagen("bids", Some(3_000), None, 20, 1)], 1).await;
    let folder = env.dir.path().join("checkpoints");
    let status = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--ignored",
            "--exact",
            "child_writes_a_savepoint",
            "--nocapture",
        ])
        .env(CHILD_DIR, &folder)
        .env("WEIR_FAILPOINT", "savepoint-before-info")
        .status()
        .expect("run the child");
    assert!(!status.success(), "the child must die at the failpoint");
    // The chunks were copied: a folder is there, without savepoint.json.
    let copied = folder.join("savepoints").join("sp");
    assert!(
        std::fs::read_dir(&copied)
            .expect("the copied folder")
            .any(|e| e.expect("an entry").file_name() == "manifest.json"),
        "the crash came after the copy"
    );

    assert!(env.store.savepoints().await.expect("list").is_empty());
    assert_eq!(env.store.savepoint("sp").await.expect("get"), None);
    assert!(env.store.load_savepoint("sp").await.is_err());
    assert!(!env.store.drop_savepoint("sp").await.expect("drop"));
    assert_eq!(
        env.store
            .remove_incomplete_savepoints()
            .await
            .expect("start-up cleanup"),
        1
    );
    assert!(!copied.exists() || std::fs::read_dir(&copied).expect("folder").next().is_none());

    // The job's own checkpoints are intact: the name can be used again.
    let job = env.store.job("crashing");
    let manifest = job
        .latest()
        .await
        .expect("list")
        .expect("the job's checkpoint");
    let info = env
        .store
        .create_savepoint("sp", "crashing", &manifest, SavepointOrigin::User)
        .await
        .expect("a savepoint of that name again");
    assert_eq!(env.store.savepoints().await.expect("list"), vec![info]);
}
