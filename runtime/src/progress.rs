//! What a job has done so far: [`Progress`], published on a watch channel.
//!
//! Its own module because three parts of a job write it (the source tasks,
//! the sink task, the checkpoint coordinator), failures mark it
//! ([`crate::failure`]), and the server reads it; none of them should import
//! the job's wiring for it.

use crate::failure::JobFailure;

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
}
