//! The worker runtime: where planning and execution of queries happen.
//!
//! Query work is CPU-heavy and can recurse deeply (a client's catalog query,
//! a long chain of joins). It therefore runs on its own tokio runtime whose
//! threads have large stacks, never on the threads that serve connections:
//! a slow query must not stall other sessions' I/O, and a deep plan must not
//! overflow a small connection-thread stack and abort the process.

use std::future::Future;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tracing::warn;

use crate::error::{Result, RuntimeError};

/// Stack size of a worker thread. Planning recursion is bounded by
/// DataFusion's `recursive_protection` (which grows the stack on demand) and by
/// sqlparser's depth limit; this is the margin on top of both.
const WORKER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// How many batches may wait between the worker that produces them and the
/// connection that sends them. Small on purpose: memory stays bounded and a
/// slow client slows the producer down (backpressure).
const BATCH_CHANNEL_CAPACITY: usize = 2;

/// A dedicated multi-threaded runtime for query work.
#[derive(Clone)]
pub struct Executor {
    runtime: Arc<WorkerRuntime>,
}

/// Owns the tokio runtime and stops it without blocking when the last
/// handle goes, which may well happen inside async code (a plain
/// `Runtime` drop there panics).
struct WorkerRuntime(Option<tokio::runtime::Runtime>);

impl WorkerRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        // Only `Drop` takes the runtime out.
        self.0
            .as_ref()
            .expect("the worker runtime is alive until dropped")
    }
}

impl Drop for WorkerRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

impl Executor {
    /// Start `threads` worker threads (at least one).
    pub fn new(threads: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("weir-worker")
            .thread_stack_size(WORKER_STACK_BYTES)
            .enable_all()
            .build()
            .map_err(RuntimeError::Start)?;
        Ok(Self {
            runtime: Arc::new(WorkerRuntime(Some(runtime))),
        })
    }

    /// Run `work` on a worker thread and wait for it. A panic in `work`
    /// becomes [`RuntimeError::Panic`]: the statement fails, the server lives.
    pub async fn run<F, T>(&self, work: F) -> Result<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        match self.runtime.get().spawn(work).await {
            Ok(value) => Ok(value),
            Err(err) if err.is_panic() => {
                let message = panic_message(err.into_panic());
                warn!(%message, "a query task panicked");
                Err(RuntimeError::Panic(message))
            }
            Err(_) => Err(RuntimeError::ShuttingDown),
        }
    }

    /// Run `work` on the calling task, failing as [`Executor::run`] does
    /// when it panics: for work cheaper than two hand-offs between threads
    /// (a single-row INSERT), which `run` would double.
    pub async fn run_here<F, T>(&self, work: F) -> Result<T>
    where
        F: Future<Output = T>,
    {
        match std::panic::AssertUnwindSafe(work).catch_unwind().await {
            Ok(value) => Ok(value),
            Err(payload) => {
                let message = panic_message(payload);
                warn!(%message, "a statement panicked");
                Err(RuntimeError::Panic(message))
            }
        }
    }

    /// Start a long-running task (a job's source, worker or sink) on the
    /// workers; the handle aborts it.
    pub fn spawn<F>(&self, task: F) -> tokio::task::AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.runtime.get().spawn(task).abort_handle()
    }

    /// Drive `stream` on a worker thread and hand its batches over through a
    /// bounded channel. Dropping the returned stream cancels the work.
    pub fn execute(&self, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        let schema: SchemaRef = stream.schema();
        let (tx, rx) =
            mpsc::channel::<Result<RecordBatch, DataFusionError>>(BATCH_CHANNEL_CAPACITY);
        let handle = self.runtime.get().spawn(drive(stream, tx.clone()));
        // The consumer owns the producer: when the returned stream is dropped
        // (the client disconnected, the statement was cancelled or timed
        // out), the producer task is aborted and its plan dropped with it,
        // which aborts the tasks DataFusion spawned for it. Waiting for the
        // producer's next send to fail is not enough: an aggregate sends
        // nothing until its input ends, which may be never.
        let producer = AbortOnDrop(handle.abort_handle());
        // Report a panic of the producer to the consumer instead of a silently
        // truncated result.
        self.runtime.get().spawn(async move {
            if let Err(err) = handle.await
                && err.is_panic()
            {
                let message = panic_message(err.into_panic());
                warn!(%message, "a query stream panicked");
                let _ = tx
                    .send(Err(DataFusionError::External(Box::new(
                        RuntimeError::Panic(message),
                    ))))
                    .await;
            }
        });
        let batches = futures::stream::unfold((rx, producer), |(mut rx, producer)| async move {
            rx.recv().await.map(|item| (item, (rx, producer)))
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }

    /// Let go of this handle; the workers stop, without waiting for running
    /// tasks, when the last handle is gone. Safe to call from async code.
    pub fn shutdown(self) {
        drop(self);
    }
}

/// Aborts a task when dropped. The abort takes effect at the task's next
/// yield point: operators that could loop without yielding get one from
/// DataFusion's cooperative scheduling (see `datafusion_context` in the server).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn drive(
    mut stream: SendableRecordBatchStream,
    tx: mpsc::Sender<Result<RecordBatch, DataFusionError>>,
) {
    while let Some(item) = stream.next().await {
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            // The consumer went away (client disconnected or cancelled), or the
            // query failed: either way there is nothing more to produce.
            return;
        }
    }
}

/// A physical optimizer rule that gives every join a yield point on its
/// output, so that a query can be stopped.
///
/// A task is only stopped (aborted, or its stream dropped) when it next
/// yields. DataFusion's own `EnsureCooperative` puts yield points at the
/// plan's leaves, which suffices when a leaf's batch makes a bounded amount
/// of work above it. A join does not: one batch of its probe side against an
/// in-memory build side makes as many output batches as the build side is
/// long (a 1e6 x 1e6 cross join makes ~1.2e8 batches from 123 input ones),
/// and the aggregate above loops over them without ever returning Pending.
/// Wrapping the join's output in [`CooperativeExec`] spends a unit of the
/// task's tokio budget per batch, so the task yields every 128 batches and a
/// cancel, a timeout or a gone client stops it there. The cost is one budget
/// check per batch.
///
/// [`CooperativeExec`]: datafusion::physical_plan::coop::CooperativeExec
#[derive(Debug, Default)]
pub struct YieldAfterJoins;

impl YieldAfterJoins {
    fn is_join(plan: &dyn ExecutionPlan) -> bool {
        use datafusion::physical_plan::joins::{
            CrossJoinExec, HashJoinExec, NestedLoopJoinExec, PiecewiseMergeJoinExec,
            SortMergeJoinExec, SymmetricHashJoinExec,
        };
        plan.is::<CrossJoinExec>()
            || plan.is::<NestedLoopJoinExec>()
            || plan.is::<HashJoinExec>()
            || plan.is::<SortMergeJoinExec>()
            || plan.is::<SymmetricHashJoinExec>()
            || plan.is::<PiecewiseMergeJoinExec>()
    }
}

impl PhysicalOptimizerRule for YieldAfterJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|plan| {
            if Self::is_join(plan.as_ref()) {
                Ok(Transformed::yes(
                    Arc::new(CooperativeExec::new(plan)) as Arc<dyn ExecutionPlan>
                ))
            } else {
                Ok(Transformed::no(plan))
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "YieldAfterJoins"
    }

    fn schema_check(&self) -> bool {
        // A CooperativeExec passes its input's schema through.
        true
    }
}

pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a task panicked".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn a_panic_is_an_error_not_a_crash() {
        let executor = Executor::new(1).expect("start workers");
        let result: Result<()> = executor.run(async { panic!("boom") }).await;
        match result {
            Err(RuntimeError::Panic(msg)) => assert_eq!(msg, "boom"),
            other => panic!("expected a panic error, got {other:?}"),
        }
        // The executor still serves work after a panic.
        assert_eq!(executor.run(async { 7 }).await.expect("run"), 7);
        executor.shutdown();
    }

    #[tokio::test]
    async fn execute_streams_batches_from_workers() {
        let executor = Executor::new(2).expect("start workers");
        let ctx = SessionContext::new();
        let df = ctx
            .sql("SELECT * FROM generate_series(1, 100000) AS t(x)")
            .await
            .expect("plan");
        let stream = df.execute_stream().await.expect("execute");
        let mut out = executor.execute(stream);
        let mut rows = 0;
        while let Some(batch) = out.next().await {
            rows += batch.expect("batch").num_rows();
        }
        assert_eq!(rows, 100_000);
        executor.shutdown();
    }
}
