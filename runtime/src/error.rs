//! Errors raised while running work on the runtime.

use datafusion::error::DataFusionError;

/// Result alias for this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What went wrong while running a query or an operator.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The query itself failed; DataFusion's error says whose fault it was.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// Our bug: a task panicked. The server survives; the statement fails.
    #[error("internal error: {0}")]
    Panic(String),
    /// A materialized view's job failed: its contents are not to be trusted,
    /// so reading it says why instead. The failure keeps its class.
    #[error("materialized view \"{view}\" failed: {failure}")]
    JobFailed {
        /// The view.
        view: String,
        /// Why its job stopped.
        failure: crate::failure::JobFailure,
    },
    /// Not a failure: a source's partitions changed under a running job (a
    /// Kafka topic gained partitions). The job's run stops and its
    /// supervisor starts a new one from the latest checkpoint, which reads
    /// every partition; it does not count against the restart policy.
    #[error("{0}; the job restarts from its latest checkpoint to read them")]
    Repartitioned(String),
    /// The runtime is shutting down and took no more work.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The worker threads could not be started (an outside limit, e.g. threads).
    #[error("could not start worker threads: {0}")]
    Start(#[source] std::io::Error),
}
