//! How a job fails: one reason, kept with its class, and every task stopped.
//!
//! A job is several tasks (source partitions, workers, the sink, the
//! checkpoint coordinator). The first error or panic in any of them fails
//! the job: it is recorded in the job's progress (so `FLUSH`, `SELECT`,
//! `SUBSCRIBE` and `SHOW` can say so), counted, logged with the job's name,
//! and every other task of the job stops. Other jobs go on untouched.
//!
//! A panic is caught here rather than left to tokio: a task that panics
//! just ends, its channels close, and the job would sit neither failed nor
//! progressing, with `FLUSH` waiting on it for ever.

use std::future::Future;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use futures::FutureExt;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::error::RuntimeError;
use crate::progress::Progress;

/// Why a job stopped.
#[derive(Debug, Clone)]
pub struct JobFailure {
    /// What the job was doing, when that adds to the error ("checkpoint 3").
    pub context: Option<String>,
    /// The error. Its kind says whose fault it was: the user's data (a value
    /// that does not parse), an outside system's (storage), or ours (a
    /// panic: [`RuntimeError::Panic`]).
    pub error: Arc<DataFusionError>,
}

impl JobFailure {
    /// A failure of the job's own code: a panic in task `task`.
    pub fn panic(task: &str, message: &str) -> Self {
        Self {
            context: None,
            error: Arc::new(DataFusionError::External(Box::new(RuntimeError::Panic(
                format!("{task} panicked: {message}"),
            )))),
        }
    }

    /// Did the run stop because a source's partitions changed
    /// ([`RuntimeError::Repartitioned`]): a restart, not a failure?
    pub fn is_repartition(&self) -> bool {
        matches!(
            self.error.as_ref(),
            DataFusionError::External(e) if matches!(e.downcast_ref::<RuntimeError>(), Some(RuntimeError::Repartitioned(_)))
        )
    }

    /// Was it a panic (our bug), rather than bad data or an outside system?
    pub fn is_panic(&self) -> bool {
        matches!(
            self.error.as_ref(),
            DataFusionError::External(e) if matches!(e.downcast_ref::<RuntimeError>(), Some(RuntimeError::Panic(_)))
        )
    }
}

impl From<DataFusionError> for JobFailure {
    /// A task's error; an outer `Context` ("checkpoint 3 failed") is kept
    /// apart from the error it wraps, whose kind is the class.
    fn from(err: DataFusionError) -> Self {
        match err {
            DataFusionError::Context(context, inner) => Self {
                context: Some(context),
                error: Arc::new(*inner),
            },
            err => Self {
                context: None,
                error: Arc::new(err),
            },
        }
    }
}

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(context) = &self.context {
            write!(f, "{context}: ")?;
        }
        write!(f, "{}", self.error.strip_backtrace())
    }
}

/// Marks one job failed.
#[derive(Clone)]
pub(crate) struct Failer {
    pub(crate) job: Arc<str>,
    pub(crate) progress: Arc<watch::Sender<Progress>>,
    /// `weir_job_failures_total` of this job.
    pub(crate) failures: Counter,
}

impl Failer {
    /// Fail the job with `failure`, unless it failed already: the first
    /// failure is the reason; what follows from it is not news.
    pub(crate) fn fail(&self, task: &str, failure: JobFailure) {
        let mut first = false;
        self.progress.send_if_modified(|p| {
            first = p.failed.is_none();
            if first {
                p.failed = Some(failure.clone());
            }
            first
        });
        if !first {
            return;
        }
        if failure.is_repartition() {
            info!(job = %self.job, task, %failure, "a source's partitions changed; the run stops");
            return;
        }
        self.failures.inc();
        if failure.is_panic() {
            error!(job = %self.job, task, %failure, "a job task panicked; the job stops");
        } else {
            warn!(job = %self.job, task, %failure, "the job failed and stops");
        }
    }

    /// Run `task`, one task of the job called `name`: an error or a panic in
    /// it fails the job, and a failure anywhere in the job stops it.
    pub(crate) fn guard<F>(
        &self,
        name: String,
        task: F,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = datafusion::common::Result<()>> + Send + 'static,
    {
        let failer = self.clone();
        let mut failed = self.progress.subscribe();
        async move {
            // The task's own state is dropped with it on a panic, and the job
            // stops as a whole, so nothing half-updated is used again.
            let task = std::panic::AssertUnwindSafe(task).catch_unwind();
            tokio::select! {
                outcome = task => match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => failer.fail(&name, JobFailure::from(err)),
                    Err(panic) => failer.fail(&name, JobFailure::panic(&name, &crate::executor::panic_message(panic))),
                },
                _ = failed.wait_for(|p| p.failed.is_some()) => {}
            }
        }
    }
}
