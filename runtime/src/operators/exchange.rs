//! Hash exchange: which worker of a stage (join or aggregate) a row goes to.
//!
//! Rows with the same partition key always reach the same worker, so each
//! worker owns its keys' state outright (and a later version can move key
//! groups between processes the same way).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use datafusion::common::hash_utils::create_hashes;
use datafusion::physical_plan::PhysicalExpr;

/// A fixed seed: the same key lands on the same worker in every run, which
/// keeps runs reproducible and state files comparable.
const SEED: u64 = 0x5765_6972_5354_5245;

/// Split `batch` into one batch per worker (`None` where no row goes).
pub fn partition(
    batch: &RecordBatch,
    keys: &[ArrayRef],
    workers: usize,
) -> Result<Vec<Option<RecordBatch>>> {
    if workers == 1 || keys.is_empty() {
        let mut out = vec![None; workers];
        out[0] = Some(batch.clone());
        return Ok(out);
    }
    let state = datafusion::common::hash_utils::RandomState::with_seed(SEED);
    let mut hashes = vec![0u64; batch.num_rows()];
    create_hashes(keys, &state, &mut hashes)?;
    let mut indices: Vec<Vec<u32>> = vec![Vec::new(); workers];
    for (row, hash) in hashes.iter().enumerate() {
        indices[(*hash % workers as u64) as usize].push(row as u32);
    }
    indices
        .into_iter()
        .map(|rows| {
            if rows.is_empty() {
                Ok(None)
            } else if rows.len() == batch.num_rows() {
                Ok(Some(batch.clone()))
            } else {
                Ok(Some(take_record_batch(batch, &UInt32Array::from(rows))?))
            }
        })
        .collect()
}

/// The rows of `batch` that the exchange sends worker `worker` of
/// `workers`: those whose `keys` hash to it (`None`: no row). What a
/// stateful operator keeps of a checkpoint's chunks when it restores, so
/// that the parallelism may change between runs.
pub fn rows_of_worker(
    batch: &RecordBatch,
    keys: &[Arc<dyn PhysicalExpr>],
    worker: usize,
    workers: usize,
) -> Result<Option<RecordBatch>> {
    let n = batch.num_rows();
    let keys = keys
        .iter()
        .map(|k| k.evaluate(batch)?.into_array(n))
        .collect::<Result<Vec<_>>>()?;
    Ok(partition(batch, &keys, workers)?
        .into_iter()
        .nth(worker)
        .flatten())
}
