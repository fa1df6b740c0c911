//! Figures, not assertions: how long a stop-with-savepoint and a restore
//! take for a job holding 1M keys of state, and what a savepoint costs
//! against a checkpoint. Ignored by default (it reads a million rows);
//! run it with
//! `cargo test --workspace --test savepoint_figures -- --ignored --nocapture`
//! (a release build gives the figures worth quoting).

mod common;

use std::time::Instant;

use common::{Env, datagen};
use weir_runtime::checkpoint::SavepointOrigin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures: run by hand"]
async fn figures_for_1m_keys() {
    const KEYS: u64 = 1_000_000;
    // `id` counts up: one group per row, 1M keys of state (a little more
    // by the time it stops). Unbounded, so the job is still running.
    let env = Env::new(vec![datagen("bids", None, Some(400_000), 10, 1)], 2).await;
    let sql = "SELECT id, count(*) AS n, sum(v) AS s FROM bids GROUP BY id";
    let plan = env.plan(sql, false, 2).await;
    let (job, _view) = env.start("big", plan, true, None);
    env.wait_rows_in("big", KEYS).await;

    let t = Instant::now();
    let full = job.checkpoint_now().await.expect("checkpoint");
    let checkpoint_ms = t.elapsed().as_millis();
    let t = Instant::now();
    let delta = job.checkpoint_now().await.expect("checkpoint");
    let delta_ms = t.elapsed().as_millis();
    env.store.job("big").unpin(full.epoch);
    env.store.job("big").unpin(delta.epoch);

    let t = Instant::now();
    let stopped = job.stop_with_savepoint().await.expect("stop");
    let stop_ms = t.elapsed().as_millis();
    let t = Instant::now();
    let info = env
        .store
        .create_savepoint("big-sp", "big", &stopped, SavepointOrigin::Suspend)
        .await
        .expect("savepoint");
    let copy_ms = t.elapsed().as_millis();

    let t = Instant::now();
    let restored = env.store.load_savepoint("big-sp").await.expect("load");
    let load_ms = t.elapsed().as_millis();
    let plan = env.plan(sql, false, 2).await;
    let t = Instant::now();
    let (resumed, view) = env.start("big2", plan, true, Some(restored));
    let start_ms = t.elapsed().as_millis();
    // The first checkpoint after the restore waits for the job folder to
    // adopt the savepoint: the resumed job is then fully in place.
    let t = Instant::now();
    resumed.checkpoint_now().await.expect("first checkpoint");
    let adopt_ms = t.elapsed().as_millis();
    let rows = view
        .snapshot()
        .expect("view")
        .iter()
        .map(|b| b.num_rows())
        .sum::<usize>();
    resumed.stop();
    assert!(rows as u64 >= KEYS);

    println!(
        "figures for {rows} keys (state {} bytes in {} chunks):",
        stopped.state_bytes(),
        stopped.files().count()
    );
    println!(
        "  checkpoint_now, full state: {checkpoint_ms} ms; with nothing changed: {delta_ms} ms"
    );
    println!("  stop_with_savepoint (final checkpoint, all tasks ended): {stop_ms} ms");
    println!(
        "  create_savepoint (copy {} bytes): {copy_ms} ms",
        info.size_bytes
    );
    println!(
        "  restore: load_savepoint {load_ms} ms + job::start {start_ms} ms + adopt and first checkpoint {adopt_ms} ms"
    );
}
