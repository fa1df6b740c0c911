//! Stop-with-savepoint, savepoints and restores, through `job::start` with
//! real plans, real sources and a real object store: a job stopped midway
//! and resumed from its savepoint (under another name too) ends with the
//! same view as a job that never stopped, for every plan shape; a stop
//! closes no window; savepoints outlive retention and the job's folder; a
//! crash while one is written leaves none listed.

mod common;

use std::time::Duration;

use common::{Env, StreamDecl, csv_files, datagen, finish, rows};
use weir_runtime::checkpoint::SavepointOrigin;

/// Run `sql` once to its end, and once stopped with a savepoint after
/// `stop_after` rows were read and resumed from it as a job of another
/// name: the two views must be equal. Returns whether the stop came before
/// every source ended (mid-read).
async fn stop_and_resume_equals_uninterrupted(
    streams: impl Fn() -> Vec<StreamDecl>,
    sql: &str,
    eowc: bool,
    stop_after: u64,
) -> bool {
    let env = Env::new(streams(), 1).await;

    let (whole, whole_view) = env.start("whole", env.plan(sql, eowc, 2).await, true, None);
    finish(&whole).await;
    let expected = rows(&whole_view);
    assert!(!expected.is_empty(), "the query has rows: {sql}");

    let (first, first_view) = env.start("first", env.plan(sql, eowc, 2).await, true, None);
    env.wait_rows_in("first", stop_after).await;
    let manifest = first
        .stop_with_savepoint()
        .await
        .expect("stop with savepoint");
    let progress = first.progress();
    assert_eq!(progress.stopped, Some(manifest.epoch), "{progress:?}");
    assert!(progress.rows_read >= stop_after, "{progress:?}");
    assert_eq!(progress.partitions, manifest.sources.len());
    let mid_read = manifest.sources.iter().any(|s| !s.ended);
    if mid_read {
        assert!(!progress.finished, "a stopped job did not finish");
    }
    // What the view holds stays: the job ended.
    let at_stop = rows(&first_view);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        rows(&first_view),
        at_stop,
        "the view changed after the stop"
    );

    let info = env
        .store
        .create_savepoint("sp", "first", &manifest, SavepointOrigin::Suspend)
        .await
        .expect("create the savepoint");
    assert_eq!((info.epoch, info.job.as_str()), (manifest.epoch, "first"));
    // Another job's name: the savepoint is self-contained.
    let restored = env.store.load_savepoint("sp").await.expect("load");
    let plan = env.plan(sql, eowc, 2).await;
    let (second, second_view) = env.start("second", plan, true, Some(restored));
    // (Its view starts with what the stopped one held, but its sources go
    // on at once: only the end is compared.)
    finish(&second).await;
    assert_eq!(
        rows(&second_view),
        expected,
        "resumed != uninterrupted: {sql}"
    );
    mid_read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_stopped_and_resumed_equals_an_uninterrupted_run() {
    let mid = stop_and_resume_equals_uninterrupted(
        || vec![datagen("bids", Some(20_000), Some(10_000), 50, 1)],
        "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s \
         FROM TUMBLE(bids, ts, INTERVAL '1' SECOND) GROUP BY k, window_start, window_end",
        true,
        5_000,
    )
    .await;
    assert!(mid, "paced at 10,000 rows/s, 20,000 rows: stopped mid-read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updating_aggregate_stopped_and_resumed_equals_an_uninterrupted_run() {
    let mid = stop_and_resume_equals_uninterrupted(
        || vec![datagen("bids", Some(20_000), Some(10_000), 100, 2)],
        "SELECT k, count(*) AS n, sum(v) AS s, max(v) AS top FROM bids GROUP BY k",
        false,
        5_000,
    )
    .await;
    assert!(mid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_only_job_stopped_and_resumed_equals_an_uninterrupted_run() {
    let mid = stop_and_resume_equals_uninterrupted(
        || vec![datagen("bids", Some(20_000), Some(10_000), 100, 3)],
        "SELECT id, k, v FROM bids WHERE v % 3 = 0",
        false,
        5_000,
    )
    .await;
    assert!(mid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_stopped_and_resumed_equals_an_uninterrupted_run() {
    let mid = stop_and_resume_equals_uninterrupted(
        || {
            vec![
                datagen("bids", Some(3_000), Some(2_000), 100, 4),
                datagen("asks", Some(3_000), Some(2_000), 100, 5),
            ]
        },
        "SELECT b.id, a.id AS aid, b.v + a.v AS total FROM bids b JOIN asks a ON b.k = a.k",
        false,
        1_000,
    )
    .await;
    assert!(mid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_then_aggregate_stopped_and_resumed_equals_an_uninterrupted_run() {
    let mid = stop_and_resume_equals_uninterrupted(
        || {
            vec![
                datagen("bids", Some(6_000), Some(3_000), 100, 6),
                datagen("asks", Some(6_000), Some(3_000), 100, 7),
            ]
        },
        "SELECT b.k, count(*) AS n, sum(a.v) AS s FROM bids b JOIN asks a ON b.k = a.k GROUP BY b.k",
        false,
        2_000,
    )
    .await;
    assert!(mid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_files_stopped_mid_read_and_resumed_equal_an_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("a folder for the files");
    for f in 0..2 {
        let mut text = String::from("k,v\n");
        for i in 0..300_000u64 {
            text.push_str(&format!("{},{}\n", (i * 7 + f) % 1000, i % 97));
        }
        std::fs::write(dir.path().join(format!("part-{f}.csv")), text).expect("write a file");
    }
    let glob = format!("{}/*.csv", dir.path().display());
    let mid = stop_and_resume_equals_uninterrupted(
        || vec![csv_files("points", &glob)],
        "SELECT k, count(*) AS n, sum(v) AS s FROM points GROUP BY k",
        false,
        1,
    )
    .await;
    // Reading is not paced: say whether this run stopped midway.
    println!("files stopped mid-read: {mid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_closes_no_window_and_a_resumed_job_closes_them_as_an_unstopped_one() {
    // Unbounded: windows close only as event time passes them.
    let env = Env::new(vec![datagen("bids", None, Some(5_000), 20, 8)], 2).await;
    let sql = "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s \
               FROM TUMBLE(bids, ts, INTERVAL '1' SECOND) GROUP BY k, window_start, window_end";
    let plan = env.plan(sql, true, 2).await;
    let (job, view) = env.start("live", plan.clone(), true, None);
    // Event time runs at 50 s per wall-clock second: windows close fast.
    env.wait_rows_in("live", 3_000).await;
    let manifest = job.stop_with_savepoint().await.expect("stop");
    let progress = job.progress();
    assert!(!progress.finished);
    // The job's watermark is where its one partition stopped.
    assert_eq!(progress.watermark, Some(manifest.sources[0].watermark));
    let watermark = manifest
        .operators
        .iter()
        .map(|o| o.watermark)
        .max()
        .expect("aggregate workers");
    assert!(watermark > i64::MIN, "the watermark moved before the stop");
    let closed = rows(&view);
    assert!(!closed.is_empty(), "some windows closed before the stop");
    // Every window in the view closed by the watermark, none by the stop:
    // an end of input would have closed the open ones too.
    let end_limit = timestamp_text(watermark);
    for row in &closed {
        let window_end = row.split('|').nth(2).expect("window_end");
        assert!(
            window_end <= end_limit.as_str(),
            "window ending {window_end} closed, past the watermark {end_limit}"
        );
    }
    // Resumed, it goes on closing windows from where it stopped: the
    // windows it closes up to a point equal an unstopped job's.
    env.store
        .create_savepoint("live-sp", "live", &manifest, SavepointOrigin::Suspend)
        .await
        .expect("savepoint");
    let restored = env.store.load_savepoint("live-sp").await.expect("load");
    let (resumed, resumed_view) = env.start("live", plan.clone(), true, Some(restored));
    let (fresh, fresh_view) = env.start("fresh", plan, false, None);
    env.wait_rows_in("fresh", 12_000).await;
    let until = env.rows_in("live") + 12_000;
    env.wait_rows_in("live", until).await;
    resumed.stop();
    fresh.stop();
    let resumed_rows = rows(&resumed_view);
    let fresh_rows = rows(&fresh_view);
    assert!(
        resumed_rows.len() > closed.len(),
        "the resumed job closed more windows"
    );
    // The windows both closed are the same rows.
    let common = resumed_rows.len().min(fresh_rows.len());
    let last_end = |rows: &[String]| -> String {
        rows.iter()
            .map(|r| r.split('|').nth(2).unwrap_or_default().to_string())
            .max()
            .unwrap_or_default()
    };
    // Each worker closes its keys' windows at its own watermark, so at
    // the moment a job is stopped its workers may be a few windows apart:
    // compare only windows a few ends before the earlier job's last one.
    let earlier = std::cmp::min(last_end(&resumed_rows), last_end(&fresh_rows));
    let mut ends: Vec<String> = resumed_rows
        .iter()
        .chain(&fresh_rows)
        .map(|r| r.split('|').nth(2).unwrap_or_default().to_string())
        .filter(|end| end.as_str() <= earlier.as_str())
        .collect();
    ends.sort();
    ends.dedup();
    let cut = ends[ends.len().saturating_sub(4)].clone();
    let upto = |rows: &[String]| -> Vec<String> {
        rows.iter()
            .filter(|r| r.split('|').nth(2).unwrap_or_default() < cut.as_str())
            .cloned()
            .collect()
    };
    assert!(common > 0);
    assert_eq!(upto(&resumed_rows), upto(&fresh_rows));
}

/// A nanosecond timestamp as the views print it.
fn timestamp_text(ns: i64) -> String {
    use datafusion::arrow::array::TimestampNanosecondArray;
    let array = TimestampNanosecondArray::from(vec![ns]);
    common::lines(
        &[datafusion::arrow::array::RecordBatch::try_from_iter(vec![(
            "t",
            std::sync::Arc::new(array) as _,
        )])
        .expect("a batch")],
    )
    .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_survives_retention_and_the_jobs_folder_and_starts_another_job() {
    let streams = || vec![datagen("bids", Some(20_000), Some(10_000), 50, 9)];
    let sql = "SELECT k, count(*) AS n, sum(v) AS s FROM bids GROUP BY k";
    let env = Env::new(streams(), 1).await;
    let plan = env.plan(sql, false, 2).await;
    let (whole, whole_view) = env.start("whole", plan.clone(), true, None);
    finish(&whole).await;
    let expected = rows(&whole_view);

    let (job, _view) = env.start("a", plan.clone(), true, None);
    env.wait_rows_in("a", 4_000).await;
    // A savepoint of a running job: checkpoint_now pins its checkpoint.
    let manifest = job.checkpoint_now().await.expect("a checkpoint now");
    // Newer checkpoints with retain = 1 would remove its chunks, but for
    // the pin.
    for _ in 0..3 {
        job.checkpoint_now().await.expect("a newer checkpoint");
    }
    let info = env
        .store
        .create_savepoint("keep", "a", &manifest, SavepointOrigin::User)
        .await
        .expect("savepoint of a running job");
    assert!(info.size_bytes > 0);
    job.stop();
    // Retention and dropping the job touch neither the savepoint nor
    // its files.
    let a = env.store.job("a");
    a.cleanup(1, u64::MAX).await.expect("cleanup");
    a.delete_all().await.expect("delete the job's checkpoints");
    assert!(a.latest().await.expect("list").is_none());
    let listed = env.store.savepoints().await.expect("list savepoints");
    assert_eq!(listed, vec![info.clone()]);
    assert_eq!(
        env.store.savepoint("keep").await.expect("get"),
        Some(info.clone())
    );

    // It starts a job of another name, which ends as an uninterrupted run.
    let restored = env.store.load_savepoint("keep").await.expect("load");
    assert_eq!(restored.manifest.epoch, manifest.epoch);
    let (b, b_view) = env.start("b", plan.clone(), true, Some(restored));
    // Its checkpoints continue from the savepoint's epoch, in its own folder.
    let next = b.checkpoint_now().await.expect("b checkpoints");
    assert!(next.epoch > manifest.epoch);
    assert_eq!(next.job, "b");
    finish(&b).await;
    assert_eq!(rows(&b_view), expected);

    // b's folder holds every file its latest checkpoint names, none in
    // the savepoint's folder: a restart of b restores without it.
    env.store.drop_savepoint("keep").await.expect("drop");
    assert!(!env.store.drop_savepoint("keep").await.expect("drop again"));
    assert!(env.store.savepoints().await.expect("list").is_empty());
    let b_store = env.store.job("b");
    let latest = b_store
        .latest()
        .await
        .expect("list b")
        .expect("b's checkpoint");
    b_store
        .load(latest)
        .await
        .expect("b's chunks are all in its folder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_an_older_savepoint_continues_its_epochs_from_there() {
    let env = Env::new(vec![datagen("bids", Some(20_000), Some(10_000), 50, 10)], 3).await;
    let sql = "SELECT k, count(*) AS n, sum(v) AS s FROM bids GROUP BY k";
    let plan = env.plan(sql, false, 1).await;
    let (whole, whole_view) = env.start("whole", plan.clone(), true, None);
    finish(&whole).await;
    let expected = rows(&whole_view);

    let (job, _) = env.start("j", plan.clone(), true, None);
    env.wait_rows_in("j", 3_000).await;
    let old = job.checkpoint_now().await.expect("checkpoint");
    env.store
        .create_savepoint("old", "j", &old, SavepointOrigin::User)
        .await
        .expect("savepoint");
    env.wait_rows_in("j", 8_000).await;
    let newer = job.stop_with_savepoint().await.expect("stop");
    assert!(newer.epoch > old.epoch);

    // Resume the same job from the older savepoint: the newer checkpoint
    // must not win a later recovery.
    let restored = env.store.load_savepoint("old").await.expect("load");
    let (again, again_view) = env.start("j", plan, true, Some(restored));
    let next = again.checkpoint_now().await.expect("checkpoint");
    assert_eq!(
        next.epoch,
        old.epoch + 1,
        "epochs continue from the savepoint"
    );
    let latest = env
        .store
        .job("j")
        .latest()
        .await
        .expect("list")
        .expect("one");
    assert_eq!(latest.epoch, next.epoch);
    finish(&again).await;
    assert_eq!(rows(&again_view), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_checkpoints_a_stop_or_checkpoint_is_refused_and_the_job_runs_on() {
    let env = Env::new(vec![datagen("bids", Some(4_000), Some(4_000), 10, 11)], 1).await;
    let plan = env
        .plan("SELECT k, count(*) AS n FROM bids GROUP BY k", false, 1)
        .await;
    let (job, _) = env.start("plain", plan, false, None);
    let err = job.stop_with_savepoint().await.expect_err("no checkpoints");
    assert!(err.to_string().contains("checkpoints are off"), "{err}");
    let err = job.checkpoint_now().await.expect_err("no checkpoints");
    assert!(err.to_string().contains("checkpoints are off"), "{err}");
    finish(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_stops_with_a_checkpoint_of_its_end() {
    let env = Env::new(vec![datagen("bids", Some(2_000), None, 10, 12)], 1).await;
    let plan = env
        .plan("SELECT k, count(*) AS n FROM bids GROUP BY k", false, 1)
        .await;
    let (job, view) = env.start("done", plan.clone(), true, None);
    finish(&job).await;
    let manifest = job
        .stop_with_savepoint()
        .await
        .expect("stop a finished job");
    assert!(manifest.finished);
    env.store
        .create_savepoint("end", "done", &manifest, SavepointOrigin::Suspend)
        .await
        .expect("savepoint");
    let restored = env.store.load_savepoint("end").await.expect("load");
    let (other, other_view) = env.start("other", plan, true, Some(restored));
    finish(&other).await;
    assert_eq!(rows(&other_view), rows(&view));
}
