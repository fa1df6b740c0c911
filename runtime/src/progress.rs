//! What a job has done so far: [`Progress`], published on a watch channel.
//!
//! Its own module because three parts of a job write it (the source tasks,
//! the sink task, the checkpoint coordinator), failures mark it
//! ([`crate::failure`]), and the server reads it; none of them should import
//! the job's wiring for it.

use crate::failure::JobFailure;
use crate::source::ReadProgress;

/// What a job has done so far.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Every source ended and everything reached the sink.
    pub finished: bool,
    /// The last barrier epoch that reached the sink from every input.
    pub flushed: u64,
    /// Why the job stopped, if it failed.
    pub failed: Option<JobFailure>,
    /// Source partitions that reached their end.
    pub sources_ended: usize,
    /// The job stopped with the final checkpoint of this epoch
    /// (`JobHandle::stop_with_savepoint`): every task ended without an end
    /// of input, and the view holds what it had at that barrier.
    pub stopped: Option<u64>,
    /// Source partitions, across the job's sources (`sources_ended` of
    /// them ended). Filled in by `JobHandle::progress`, as are the fields
    /// below; a `watch` receiver sees them at their defaults.
    pub partitions: usize,
    /// Rows the sources read in this run (not counting what a restored
    /// checkpoint had read).
    pub rows_read: u64,
    /// The job's watermark (nanoseconds): the minimum over its sources'
    /// partitions still reading of the last watermark each sent;
    /// `i64::MAX` once all ended; `None` until each sent one, or when no
    /// source has event time.
    pub watermark: Option<i64>,
    /// Bytes and files of bounded file sources read of their total (`None`
    /// when no source knows its size).
    pub read: Option<ReadProgress>,
}
