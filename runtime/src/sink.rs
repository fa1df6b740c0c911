//! Where a job's output goes: the [`Sink`] trait.
//!
//! Its own module, not the job's: both the job's sink task and the checkpoint
//! coordinator (which snapshots and commits the sink) use it, and neither
//! should import the other for it.

use std::collections::BTreeMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::Result;

use crate::checkpoint::StateWrite;

/// Where a job's output goes.
pub trait Sink: Send + Sync {
    /// Apply one batch (with the op column when the plan is a changelog).
    fn apply(&self, batch: RecordBatch) -> Result<()>;

    /// Resolves when the sink can take the next batch: a view waits here
    /// for subscribers that asked to hold the job back rather than fall
    /// behind (`subscribe_slow_client = 'block'`). The job's sink task
    /// awaits it before each batch, so the wait backpressures the job.
    fn ready(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// The job's aligned watermark rose to `watermark`, after the batches
    /// it covers were applied: a materialized view whose rows a watermark
    /// bounds hands it on to the jobs that read it
    /// (`crate::materialized`). `i64::MAX` (the end) is never given: a
    /// reader learns of the end from the job finishing.
    fn watermark(&self, _watermark: i64) {}

    /// The job checkpoints: keep track of what changes from now on.
    fn enable_checkpoints(&self) {}

    /// Does it write output outside Weir (files, topics)? Such output must
    /// be committed by a final checkpoint when a bounded job ends; a job
    /// whose only sink is its view needs none (a restart recomputes the
    /// rest from the last checkpoint, with identical results).
    fn writes_out(&self) -> bool {
        false
    }

    /// At the barrier of `epoch`: what the checkpoint must hold of this
    /// sink, per named part (state to write, output files to commit).
    fn snapshot(&self, _epoch: u64) -> Result<Vec<(String, StateWrite)>> {
        Ok(Vec::new())
    }

    /// Before the job runs: the state a checkpoint kept, per part, and the
    /// output that checkpoint made visible (commit it again: the crash may
    /// have come before the commit; discard any other uncommitted output).
    /// Called with nothing when the job starts afresh.
    fn restore(
        &self,
        _state: &BTreeMap<String, Vec<(String, RecordBatch)>>,
        _pending: &BTreeMap<String, Vec<String>>,
    ) -> Result<()> {
        Ok(())
    }

    /// The checkpoint holding the last snapshot is complete (or there are no
    /// checkpoints): make `pending` output visible. Idempotent: recovery
    /// commits the latest checkpoint's output again.
    fn commit(&self, _pending: &BTreeMap<String, Vec<String>>) -> Result<()> {
        Ok(())
    }
}
