//! The supervisor: one task per job that watches the job's current run and
//! drives it per its restart policy.
//!
//! A run fails (the runtime's failure path: an error or a panic in any of
//! its tasks, `weir_runtime::failure`) -> the job goes to `restarting`,
//! waits as its policy says, and a new run is started from the latest
//! checkpoint by the restart closure the statement layer handed in (which
//! knows how to plan and register a view; this module does not). When the
//! policy allows no more attempts, the job is `failed` with the reason.
//! Attempts count again from zero once a run has lasted [`RESET_AFTER`]
//! without failing, as Flink's failure-rate window does.
//!
//! Restarts asked for (`ALTER JOB RESTART`, a new `parallelism`) come as
//! [`Command`]s and go the same way, without counting as attempts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};
use weir_runtime::job::Progress;

use super::Job;
use super::status::JobStatus;
use crate::error::{Result, ServerError};

/// How long a run must last without failing for the attempts to count
/// from zero again.
pub const RESET_AFTER: Duration = Duration::from_secs(60);

/// A new run of a job, started by the statement layer from what
/// [`RestoreFrom`] says: its progress, and what it restored (`"checkpoint
/// 7"`), if anything.
pub type Restart = Arc<
    dyn Fn(RestoreFrom) -> BoxFuture<'static, Result<(watch::Receiver<Progress>, Option<String>)>>
        + Send
        + Sync,
>;

/// The job's event-time watermark now (nanoseconds; the runtime's
/// `JobHandle::progress().watermark`), for the lag gauge.
pub type WatermarkOf = Arc<dyn Fn() -> Option<i64> + Send + Sync>;

/// Where a new run of a job starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreFrom {
    /// Its latest checkpoint: after a failure, a new parallelism, or a
    /// savepoint chosen by name (already made the job's latest).
    LatestState,
    /// What its `restore_strategy` says: `ALTER JOB RESUME`, `ALTER JOB
    /// RESTART` (and the server's start, which does not come through here).
    Strategy,
}

/// What a supervisor is asked to do.
pub enum Command {
    /// Stop the current run and start a new one from the latest state;
    /// the reply says how it went.
    Restart {
        /// Why (for the event log).
        reason: String,
        /// A suspended job resumed: straight to `running`, not a restart.
        resume: bool,
        /// Where the new run starts.
        from: RestoreFrom,
        /// Told once the new run started, or why it did not.
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    /// Stop supervising (the job was dropped, or the server stops).
    Stop,
}

/// How a run ended.
enum Ended {
    Failed(String),
    Finished,
    /// A source's partitions changed: a new run reads them all.
    Repartitioned(String),
    /// Its progress channel closed: the run was stopped from outside.
    Gone,
}

/// Wait until the run behind `progress` fails or finishes.
async fn ended(job: &Job, progress: &mut watch::Receiver<Progress>) -> Ended {
    loop {
        {
            let p = progress.borrow_and_update();
            if let Some(failure) = p.failed.as_ref().filter(|f| f.is_repartition()) {
                return Ended::Repartitioned(failure.to_string());
            }
            if let Some(failure) = &p.failed {
                // The cause alone: the job's name is beside it wherever it
                // is shown.
                let reason = match ServerError::job_failed(job.name(), failure) {
                    ServerError::JobFailed { cause, .. } => cause.to_string(),
                    other => other.to_string(),
                };
                return Ended::Failed(reason);
            }
            if p.finished {
                return Ended::Finished;
            }
        }
        if progress.changed().await.is_err() {
            return Ended::Gone;
        }
    }
}

/// What the loop does next.
enum Next {
    /// Watch the current run.
    Watch,
    /// Wait for a command only (the job is failed, finished or stopped).
    Idle,
    /// Start a new run, after `delay`; `attempt`: a restart after a
    /// failure (counted), or one asked for (with its reply).
    Start {
        delay: Duration,
        reason: String,
        attempt: bool,
        resume: bool,
        from: RestoreFrom,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
}

/// The supervisor of `job`, whose current run reports on `progress`.
pub async fn supervise(
    job: Arc<Job>,
    mut progress: watch::Receiver<Progress>,
    restart: Restart,
    watermark: WatermarkOf,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut attempts: u32 = 0;
    let mut run_started = Instant::now();
    let mut next = Next::Watch;
    // How often the watermark lag gauge is brought up to date.
    let mut lag = tokio::time::interval(Duration::from_secs(1));
    lag.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !matches!(next, Next::Watch) {
            // Not running: no lag to show.
            job.metrics.set_watermark(&job.name, None);
        }
        next = match next {
            Next::Watch => {
                tokio::select! {
                    _ = lag.tick() => {
                        job.metrics.set_watermark(&job.name, watermark());
                        Next::Watch
                    }
                    end = ended(&job, &mut progress) => match end {
                        Ended::Finished => {
                            job.transition(JobStatus::Finished, "every input ended and its output is complete");
                            Next::Idle
                        }
                        Ended::Gone => Next::Idle,
                        // Not a failure: no attempt counted, no delay.
                        Ended::Repartitioned(reason) => Next::Start {
                            delay: Duration::ZERO,
                            reason,
                            attempt: false,
                            resume: false,
                            from: RestoreFrom::LatestState,
                            reply: None,
                        },
                        Ended::Failed(reason) => {
                            if run_started.elapsed() >= RESET_AFTER {
                                attempts = 0;
                            }
                            failed(&job, &mut attempts, reason)
                        }
                    },
                    command = commands.recv() => match command {
                        None | Some(Command::Stop) => return,
                        Some(Command::Restart { reason, resume, from, reply }) => Next::Start { delay: Duration::ZERO, reason, attempt: false, resume, from, reply },
                    },
                }
            }
            Next::Idle => match commands.recv().await {
                None | Some(Command::Stop) => return,
                Some(Command::Restart {
                    reason,
                    resume,
                    from,
                    reply,
                }) => Next::Start {
                    delay: Duration::ZERO,
                    reason,
                    attempt: false,
                    resume,
                    from,
                    reply,
                },
            },
            Next::Start {
                delay,
                reason,
                attempt,
                resume,
                from,
                reply,
            } => {
                if !resume {
                    job.transition(JobStatus::Restarting, &reason);
                }
                if !attempt {
                    attempts = 0;
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    command = commands.recv() => match command {
                        None | Some(Command::Stop) => return,
                        // Asked to restart while waiting to: at once.
                        Some(Command::Restart { .. }) => {}
                    },
                }
                match restart(from).await {
                    Ok((new_progress, restored)) => {
                        progress = new_progress;
                        run_started = Instant::now();
                        let verb = if resume {
                            "resumed"
                        } else {
                            job.restarted();
                            "restarted"
                        };
                        let from = match restored {
                            Some(what) => format!("{verb} from {what}"),
                            None => format!("{verb} from the beginning of its inputs"),
                        };
                        job.transition(JobStatus::Running, &from);
                        if let Some(reply) = reply {
                            let _ = reply.send(Ok(()));
                        }
                        Next::Watch
                    }
                    Err(err) => {
                        let reason = format!("the restart failed: {err}");
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(err));
                        }
                        failed(&job, &mut attempts, reason)
                    }
                }
            }
        };
    }
}

/// A run failed for `reason`: the next attempt per policy, or `failed`.
fn failed(job: &Job, attempts: &mut u32, reason: String) -> Next {
    let policy = job.settings().restart;
    *attempts += 1;
    match policy.delay_for(*attempts) {
        Some(delay) => Next::Start {
            delay,
            reason: format!(
                "attempt {} of {} in {}: {reason}",
                attempts,
                policy.attempts,
                humantime::format_duration(delay)
            ),
            attempt: true,
            resume: false,
            from: RestoreFrom::LatestState,
            reply: None,
        },
        None => {
            let why = if *attempts > 1 {
                format!("{} restart attempts used: {reason}", *attempts - 1)
            } else {
                reason
            };
            job.transition(JobStatus::Failed, &why);
            Next::Idle
        }
    }
}
