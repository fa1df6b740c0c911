//! A running job's handle: its progress, `FLUSH`, checkpoints on demand,
//! and stopping it (at once, or with a final checkpoint).

use std::sync::Arc;

use datafusion::error::DataFusionError;
use tokio::sync::{mpsc, oneshot, watch};

use super::counters::SourceCounters;
use crate::checkpoint::{Command, Manifest};
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
    /// Does the job checkpoint?
    pub(super) checkpoints: bool,
    /// To its checkpoint coordinator.
    pub(super) commands: mpsc::UnboundedSender<Command>,
    /// What its source partitions read.
    pub(super) counters: Arc<SourceCounters>,
    pub(super) tasks: Vec<tokio::task::AbortHandle>,
}

impl JobHandle {
    /// The job's progress now, with what its sources read so far.
    pub fn progress(&self) -> Progress {
        let mut progress = self.progress.borrow().clone();
        self.counters.fill(&mut progress);
        progress
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
    /// was called; for a stopped one, at once. Returns the job's failure, if
    /// any, at once when it had failed before.
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
                    if p.stopped.is_some() {
                        return Ok(());
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
                if p.finished || p.stopped.is_some() || p.flushed >= epoch {
                    return Ok(());
                }
            }
            if progress.changed().await.is_err() {
                return Ok(());
            }
        }
    }

    /// Wait until the job ends (bounded sources), stops or fails.
    pub async fn finished(&self) -> std::result::Result<(), JobFailure> {
        let mut progress = self.progress.clone();
        loop {
            {
                let p = progress.borrow_and_update();
                if let Some(err) = &p.failed {
                    return Err(err.clone());
                }
                if p.finished || p.stopped.is_some() {
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
        let (reply, outcome) = oneshot::channel();
        self.commands
            .send(Command::Late(reply))
            .map_err(|_| "the job's coordinator is gone".to_string())?;
        outcome
            .await
            .map_err(|_| "the job's coordinator is gone".to_string())?
    }

    /// Does the job checkpoint (a checkpoint store was configured)?
    pub fn checkpoints(&self) -> bool {
        self.checkpoints
    }

    /// A checkpoint now (a barrier, as for `FLUSH`): its manifest, once it
    /// is written and the sinks committed. Retention keeps that checkpoint
    /// until `CheckpointStore::create_savepoint` copied it (or
    /// `JobStore::unpin`). Of a finished job, a checkpoint of its end; of a
    /// stopped one, the stop's. Fails when the job does not checkpoint or
    /// fails first.
    pub async fn checkpoint_now(&self) -> std::result::Result<Manifest, JobFailure> {
        self.ask(Command::Checkpoint).await
    }

    /// Flink's stop-with-savepoint: a final checkpoint after whose barrier
    /// every source partition stops reading, without an end of input (no
    /// window closes); resolves with its manifest once it is written, the
    /// sinks committed and every task of the job ended
    /// ([`Progress::stopped`]). The view keeps what it had at the barrier.
    /// Asked again, or of a job that stops already, it answers with the
    /// same checkpoint. Fails when the job does not checkpoint (it goes on
    /// running) or fails first.
    pub async fn stop_with_savepoint(&self) -> std::result::Result<Manifest, JobFailure> {
        self.ask(Command::Stop).await
    }

    async fn ask(
        &self,
        command: fn(oneshot::Sender<std::result::Result<Manifest, JobFailure>>) -> Command,
    ) -> std::result::Result<Manifest, JobFailure> {
        if !self.checkpoints {
            return Err(JobFailure::from(DataFusionError::Configuration(
                "checkpoints are off for this job (set checkpoint_interval)".to_string(),
            )));
        }
        let (reply, outcome) = oneshot::channel();
        if self.commands.send(command(reply)).is_ok()
            && let Ok(outcome) = outcome.await
        {
            return outcome;
        }
        // The coordinator is gone: the job failed, or it had stopped.
        let p = self.progress.borrow();
        Err(match (&p.failed, p.stopped) {
            (Some(failure), _) => failure.clone(),
            (None, Some(epoch)) => JobFailure::from(DataFusionError::Execution(format!(
                "the job stopped at checkpoint {epoch}"
            ))),
            (None, None) => JobFailure::from(DataFusionError::Execution(
                "the job's checkpoint coordinator is gone".to_string(),
            )),
        })
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
