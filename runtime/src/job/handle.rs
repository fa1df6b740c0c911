//! A running job's handle: its progress, `FLUSH`, and stopping it.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::checkpoint::LateRequest;
use crate::failure::JobFailure;
use crate::progress::Progress;

/// A running job.
pub struct JobHandle {
    pub(super) bounded: bool,
    /// Partitions of bounded sources (files) in a job that does not end
    /// (one joined with a table, say).
    pub(super) bounded_partitions: usize,
    pub(super) progress: watch::Receiver<Progress>,
    /// The epoch sources are to reach: raised by `FLUSH` and checkpoints.
    pub(super) flush: Arc<watch::Sender<u64>>,
    pub(super) late: mpsc::UnboundedSender<LateRequest>,
    pub(super) tasks: Vec<tokio::task::AbortHandle>,
}

impl JobHandle {
    /// The job's progress now.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Does every source of the job end?
    pub fn is_bounded(&self) -> bool {
        self.bounded
    }

    /// Watch the job's progress.
    pub fn watch(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Wait until everything is in the sink: for a bounded job, until it
    /// ended; for an unbounded one, everything its sources had read when this
    /// was called. Returns the job's failure, if any, at once when it had
    /// failed before.
    pub async fn flush(&self) -> std::result::Result<(), JobFailure> {
        if self.bounded {
            return self.finished().await;
        }
        // Everything a file holds is there now: its part of the job is read
        // to the end before the barrier, as a bounded job would be.
        if self.bounded_partitions > 0 {
            let mut progress = self.progress.clone();
            loop {
                {
                    let p = progress.borrow_and_update();
                    if let Some(err) = &p.failed {
                        return Err(err.clone());
                    }
                    if p.sources_ended >= self.bounded_partitions {
                        break;
                    }
                }
                if progress.changed().await.is_err() {
                    return Ok(());
                }
            }
        }
        let mut epoch = 0;
        self.flush.send_modify(|e| {
            *e += 1;
            epoch = *e;
        });
        let mut progress = self.progress.clone();
        loop {
            {
                let p = progress.borrow_and_update();
                if let Some(err) = &p.failed {
                    return Err(err.clone());
                }
                if p.finished || p.flushed >= epoch {
                    return Ok(());
                }
            }
            if progress.changed().await.is_err() {
                return Ok(());
            }
        }
    }

    /// Wait until the job ends (bounded sources) or fails.
    pub async fn finished(&self) -> std::result::Result<(), JobFailure> {
        let mut progress = self.progress.clone();
        loop {
            {
                let p = progress.borrow_and_update();
                if let Some(err) = &p.failed {
                    return Err(err.clone());
                }
                if p.finished {
                    return Ok(());
                }
            }
            if progress.changed().await.is_err() {
                return Ok(());
            }
        }
    }

    /// After the job ended: checkpoint (and commit) what its sinks got
    /// since it ended, e.g. a sink created on a finished view.
    pub async fn checkpoint_finished(&self) -> std::result::Result<(), String> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.late
            .send(reply)
            .map_err(|_| "the job's coordinator is gone".to_string())?;
        outcome
            .await
            .map_err(|_| "the job's coordinator is gone".to_string())?
    }

    /// Stop every task of the job.
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
