//! Running a stream plan: tasks, channels, watermarks and barriers.
//!
//! ```text
//!  source task p ──(before ops, exchange by key)──> worker w ──(after ops)──> sink task
//!   one per partition      bounded channels        aggregate     bounded      applies to the view
//! ```
//! Every channel is bounded, so a slow sink slows the workers, which slow
//! the sources: memory stays flat under backpressure.
//!
//! # Correctness
//! - Watermarks: a task's input watermark is the minimum over its inputs; an
//!   input that ended counts as `+inf`. An operator emits what a watermark
//!   closes before forwarding the watermark.
//! - Barriers (checkpoints and `FLUSH`): a source injects `Barrier(epoch)`
//!   between two batches, for every epoch in order (none is skipped, so
//!   all inputs of a task deliver the same epochs), after reporting its
//!   position. A task with several inputs holds back every input that
//!   delivered the barrier until all have (ended inputs count as
//!   delivered), then snapshots its state and forwards the barrier once.
//!   When the sink has it from all its inputs, everything read before the
//!   barrier is in the view, and the view's state is snapshotted too.
//! - A checkpoint is complete when the coordinator has every report of its
//!   epoch (`checkpoint::Coordinator`); restoring gives each task the state
//!   it had at that barrier: sources their position, largest event time and
//!   last watermark; workers their keyed state and their inputs'
//!   watermarks (the sources' at the barrier); the sink the view.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::physical_plan::PhysicalExpr;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::checkpoint::{
    CheckpointMetrics, Coordinator, JobStore, LateRequest, Report, Restored, SourceState,
    StateWrite, Written,
};
use crate::executor::Executor;
use crate::failure::Failer;
pub use crate::failure::JobFailure;
use crate::message::{Barrier, Message};
use crate::metrics::{JobLabels, RuntimeMetrics};
use crate::operators::aggregate::AggregateOperator;
use crate::operators::join::JoinOperator;
use crate::operators::{exchange, stateless};
use crate::plan::{StatelessOp, StreamPlan};
use crate::source::SourcePosition;
use crate::windows::timestamps_as_nanos;

/// Batches in flight per channel.
const CHANNEL_CAPACITY: usize = 8;

/// Where a job's output goes.
pub trait Sink: Send + Sync {
    /// Apply one batch (with the op column when the plan is a changelog).
    fn apply(&self, batch: RecordBatch) -> Result<()>;

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

/// How a job checkpoints, and what it restores from.
#[derive(Default)]
pub struct Checkpointing {
    /// Where its checkpoints go (`None`: no checkpoints).
    pub store: Option<JobStore>,
    /// The checkpoint to start from.
    pub restored: Option<Restored>,
    /// The job's query, recorded in its manifests.
    pub plan: String,
    /// Checkpoint metrics.
    pub metrics: CheckpointMetrics,
}

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
}

/// A running job.
pub struct JobHandle {
    bounded: bool,
    /// Partitions of bounded sources (files) in a job that does not end
    /// (one joined with a table, say).
    bounded_partitions: usize,
    progress: watch::Receiver<Progress>,
    flush: Arc<watch::Sender<u64>>,
    late: mpsc::UnboundedSender<LateRequest>,
    tasks: Vec<tokio::task::AbortHandle>,
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

struct Tagged {
    input: usize,
    message: Message,
}

/// Start `plan` on the executor's workers, writing to `sink`, from the
/// restored checkpoint if there is one.
pub fn start(
    name: &str,
    plan: StreamPlan,
    sink: Arc<dyn Sink>,
    executor: &Executor,
    metrics: &RuntimeMetrics,
    checkpointing: Checkpointing,
) -> Result<JobHandle> {
    let (progress_tx, progress) = watch::channel(Progress::default());
    let progress_tx = Arc::new(progress_tx);
    let inputs = Input::of(&plan);
    // Source partitions are numbered across the inputs, left then right.
    let first_partition: Vec<usize> = inputs
        .iter()
        .scan(0, |next, input| {
            let first = *next;
            *next += input.source.partitions().max(1);
            Some(first)
        })
        .collect();
    let partitions: usize = inputs.iter().map(|i| i.source.partitions().max(1)).sum();
    let parallelism = plan.parallelism.max(1);
    let join_workers = if plan.join.is_some() { parallelism } else { 0 };
    let aggregate_workers = if plan.aggregate.is_some() {
        parallelism
    } else {
        0
    };
    let workers = join_workers + aggregate_workers;
    let Checkpointing {
        store,
        restored,
        plan: plan_text,
        metrics: checkpoint_metrics,
    } = checkpointing;
    if store.is_some() {
        sink.enable_checkpoints();
    }
    let restored_epoch = restored.as_ref().map_or(0, |r| r.manifest.epoch);
    let flush = Arc::new(watch::channel(restored_epoch).0);
    let (report_tx, report_rx) = mpsc::unbounded_channel::<Report>();
    let job = JobLabels {
        job: name.to_string(),
    };
    let failer = Failer {
        job: name.into(),
        progress: progress_tx.clone(),
        failures: metrics.job_failures.get_or_create(&job).clone(),
    };
    let mut sources: Vec<Option<SourceState>> = vec![None; partitions];
    // Per stage (join, aggregate): the old workers' chunks and watermark.
    let mut join_state = Restoring::default();
    let mut aggregate_state = Restoring::default();
    match restored.as_ref() {
        Some(restored) => {
            crate::failpoint::hit("restore");
            sink.restore(
                &restored.sinks,
                &restored
                    .manifest
                    .sinks
                    .iter()
                    .map(|(k, v)| (k.clone(), v.pending.clone()))
                    .collect(),
            )?;
        }
        None => sink.restore(&BTreeMap::new(), &BTreeMap::new())?,
    }
    if let Some(restored) = restored.as_ref() {
        for (p, state) in restored.manifest.sources.iter().enumerate() {
            if p < partitions {
                sources[p] = Some(*state);
            }
        }
        // Both stages have `parallelism` workers, so the old join stage is
        // the first half of the old workers.
        let old_join = match (plan.join.is_some(), plan.aggregate.is_some()) {
            (true, true) => restored.manifest.workers / 2,
            (true, false) => restored.manifest.workers,
            _ => 0,
        };
        for (w, (o, chunks)) in restored
            .manifest
            .operators
            .iter()
            .zip(&restored.operators)
            .enumerate()
        {
            let stage = if w < old_join {
                &mut join_state
            } else {
                &mut aggregate_state
            };
            stage.restored = true;
            stage.watermark = stage.watermark.max(o.watermark);
            stage.chunks.extend(chunks.iter().cloned());
        }
    }
    let (late_tx, late_rx) = mpsc::unbounded_channel();
    if let Some(restored) = restored.as_ref().filter(|r| r.manifest.finished) {
        progress_tx.send_modify(|p| p.finished = true);
        let coordinator = Coordinator {
            store,
            plan: plan_text,
            partitions,
            workers,
            last: Some(restored.manifest.clone()),
            epochs: flush.clone(),
            sink,
            progress: progress_tx,
            metrics: checkpoint_metrics,
            labels: job,
            finished: true,
            late: late_rx,
        };
        let (_, reports) = mpsc::unbounded_channel();
        return Ok(JobHandle {
            bounded: true,
            bounded_partitions: 0,
            progress,
            flush,
            late: late_tx,
            tasks: vec![executor.spawn(failer.guard(
                "the checkpoint coordinator".into(),
                coordinator.run(reports),
            ))],
        });
    }
    let sink_inputs = match (aggregate_workers, join_workers) {
        (0, 0) => partitions,
        (0, j) => j,
        (a, _) => a,
    };
    let (sink_tx, sink_rx) = mpsc::channel::<Tagged>(CHANNEL_CAPACITY * sink_inputs);
    let mut tasks = Vec::new();

    tasks.push(
        executor.spawn(
            failer.guard(
                "the checkpoint coordinator".into(),
                Coordinator {
                    store: store.clone(),
                    plan: plan_text,
                    partitions,
                    workers,
                    last: restored.map(|r| r.manifest),
                    epochs: flush.clone(),
                    sink: sink.clone(),
                    progress: progress_tx.clone(),
                    metrics: checkpoint_metrics,
                    labels: job.clone(),
                    finished: false,
                    late: late_rx,
                }
                .run(report_rx),
            ),
        ),
    );
    tasks.push(executor.spawn(failer.guard(
        "the sink".into(),
        run_sink(
            sink_rx,
            sink_inputs,
            sink,
            store.clone(),
            report_tx.clone(),
            progress_tx.clone(),
            metrics.rows_out.get_or_create(&job).clone(),
        ),
    )));

    // What each source partition had sent at the barrier: its last
    // watermark (an ended one's is +inf); partitions of an input without
    // event time send none and do not hold the watermark back.
    let source_inputs: Vec<InputClock> = inputs
        .iter()
        .flat_map(|input| {
            (0..input.source.partitions().max(1)).map(move |_| input.event_time.is_some())
        })
        .zip(&sources)
        .map(|(timed, s)| InputClock {
            timed,
            watermark: match s {
                Some(s) if s.ended => i64::MAX,
                Some(s) => s.watermark,
                None => i64::MIN,
            },
        })
        .collect();

    // The aggregate stage, fed by the join stage or by the sources.
    let mut aggregate_txs = Vec::new();
    if let Some(spec) = &plan.aggregate {
        let input_schema = aggregate_input_schema(&plan);
        let clocks = if join_workers > 0 {
            vec![
                InputClock {
                    timed: false,
                    watermark: join_state.watermark,
                };
                join_workers
            ]
        } else {
            source_inputs.clone()
        };
        for w in 0..aggregate_workers {
            let (tx, rx) = mpsc::channel::<Tagged>(CHANNEL_CAPACITY * clocks.len());
            aggregate_txs.push(tx);
            let mut operator = AggregateOperator::new(
                spec.clone(),
                &input_schema,
                metrics.late(&plan.stream_name),
            )?;
            if store.is_some() {
                operator.enable_checkpoints();
            }
            if aggregate_state.restored || sources.iter().any(Option::is_some) {
                operator.restore(
                    aggregate_state.watermark,
                    &aggregate_state.chunks,
                    w,
                    aggregate_workers,
                )?;
            }
            tasks.push(executor.spawn(failer.guard(
                format!("aggregate worker {w}"),
                run_worker(
                    Worker {
                        job: failer.job.clone(),
                        index: join_workers + w,
                        local: w,
                        operator: Operator::Aggregate(operator),
                        after: plan.after.clone(),
                        store: store.clone(),
                        reports: report_tx.clone(),
                        downstream: Downstream::Sink(sink_tx.clone()),
                    },
                    rx,
                    clocks.clone(),
                ),
            )));
        }
    }

    // The join stage, fed by both inputs' sources.
    let mut join_txs = Vec::new();
    if let Some(join) = &plan.join {
        let downstream = match &plan.aggregate {
            Some(spec) => Downstream::Exchange {
                outputs: aggregate_txs.clone(),
                keys: spec
                    .partition_keys
                    .iter()
                    .map(|&k| spec.group[k].clone())
                    .collect(),
            },
            None => Downstream::Sink(sink_tx.clone()),
        };
        let after = if plan.aggregate.is_some() {
            join.then.clone()
        } else {
            join.then.iter().chain(&plan.after).cloned().collect()
        };
        for w in 0..join_workers {
            let (tx, rx) = mpsc::channel::<Tagged>(CHANNEL_CAPACITY * partitions);
            join_txs.push(tx);
            let mut operator = JoinOperator::new(join.spec.clone())?;
            if join_state.restored {
                operator.restore(&join_state.chunks, w, join_workers)?;
            }
            tasks.push(
                executor.spawn(
                    failer.guard(
                        format!("join worker {w}"),
                        run_worker(
                            Worker {
                                job: failer.job.clone(),
                                index: w,
                                local: w,
                                operator: Operator::Join {
                                    join: operator,
                                    left_partitions: first_partition[1],
                                    watermark: join_state.watermark,
                                },
                                after: after.clone(),
                                store: store.clone(),
                                reports: report_tx.clone(),
                                downstream: downstream.clone(),
                            },
                            rx,
                            // A join forwards no watermark but the end (see
                            // `operators::join`): its inputs' times do not bound
                            // what it emits.
                            source_inputs
                                .iter()
                                .map(|c| InputClock { timed: false, ..*c })
                                .collect(),
                        ),
                    ),
                ),
            );
        }
    }

    for (k, input) in inputs.iter().enumerate() {
        let route = Arc::new(match (&plan.join, &plan.aggregate) {
            (Some(join), _) => Route {
                event_time: input.event_time,
                changelog: input.changelog,
                before: input.before.clone(),
                exchange: Some(join.spec.keys[k].clone()),
                after: Vec::new(),
            },
            (None, Some(spec)) => Route {
                event_time: input.event_time,
                changelog: input.changelog,
                before: input.before.clone(),
                exchange: Some(
                    spec.partition_keys
                        .iter()
                        .map(|&k| spec.group[k].clone())
                        .collect(),
                ),
                after: Vec::new(),
            },
            (None, None) => Route {
                event_time: input.event_time,
                changelog: input.changelog,
                before: input.before.clone(),
                exchange: None,
                after: plan.after.clone(),
            },
        });
        let outputs = match (join_workers, aggregate_workers) {
            (0, 0) => vec![sink_tx.clone()],
            (0, _) => aggregate_txs.clone(),
            _ => join_txs.clone(),
        };
        // The highest watermark any partition of this input sent: what an
        // idle partition moves to.
        let idle = input.source.idle_timeout().map(|timeout| {
            (
                timeout,
                Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
            )
        });
        for local in 0..input.source.partitions().max(1) {
            let partition = first_partition[k] + local;
            let restored = sources[partition];
            let reader = input
                .source
                .open(local, restored.map(|s| SourcePosition(s.position)))?;
            tasks.push(executor.spawn(failer.guard(
                format!("source partition {partition}"),
                run_source(
                    SourceTask {
                        partition,
                        progress: progress_tx.clone(),
                        reader,
                        route: route.clone(),
                        outputs: outputs.clone(),
                        epochs: flush.subscribe(),
                        first_epoch: restored_epoch,
                        reports: report_tx.clone(),
                        restored,
                        idle: idle.clone(),
                    },
                    metrics.rows_in.get_or_create(&job).clone(),
                ),
            )));
        }
    }
    Ok(JobHandle {
        bounded: inputs.iter().all(|i| i.source.bounded()),
        bounded_partitions: inputs
            .iter()
            .filter(|i| i.source.bounded())
            .map(|i| i.source.partitions().max(1))
            .sum(),
        progress,
        flush,
        late: late_tx,
        tasks,
    })
}

/// What a stage restores: its old workers' chunks and largest watermark.
struct Restoring {
    restored: bool,
    watermark: i64,
    chunks: Vec<(String, RecordBatch)>,
}

impl Default for Restoring {
    fn default() -> Self {
        Self {
            restored: false,
            // No watermark seen yet.
            watermark: i64::MIN,
            chunks: Vec::new(),
        }
    }
}

/// One input of a plan: the left (or only) one, or a join's right one.
struct Input {
    source: Arc<dyn crate::source::Source>,
    event_time: Option<crate::plan::EventTime>,
    changelog: bool,
    before: Vec<StatelessOp>,
}

impl Input {
    fn of(plan: &StreamPlan) -> Vec<Input> {
        let mut inputs = vec![Input {
            source: plan.source.clone(),
            event_time: plan.event_time,
            changelog: plan.input_changelog,
            before: plan.before.clone(),
        }];
        if let Some(join) = &plan.join {
            inputs.push(Input {
                source: join.source.clone(),
                event_time: join.event_time,
                changelog: join.source.changelog(),
                before: join.before.clone(),
            });
        }
        inputs
    }
}

/// The schema the aggregate reads: the join's output after `then`, or the
/// source's after `before`.
fn aggregate_input_schema(plan: &StreamPlan) -> SchemaRef {
    let (ops, start) = match &plan.join {
        Some(join) => (&join.then, join.spec.output_schema.clone()),
        None => (&plan.before, plan.source.schema()),
    };
    ops.iter()
        .rev()
        .find_map(|op| match op {
            StatelessOp::Project { schema, .. } | StatelessOp::Unnest { schema, .. } => {
                Some(schema.clone())
            }
            StatelessOp::Filter(_) => None,
        })
        .unwrap_or(start)
}

async fn send_all(outputs: &[mpsc::Sender<Tagged>], input: usize, message: Message) {
    for out in outputs {
        let _ = out
            .send(Tagged {
                input,
                message: message.clone(),
            })
            .await;
    }
}

/// What a source partition does with its rows: its input's stateless
/// operators, then either a hash exchange to the next stage's workers or
/// the `after` operators and the sink.
struct Route {
    event_time: Option<crate::plan::EventTime>,
    /// The input's batches carry the op column.
    changelog: bool,
    before: Vec<StatelessOp>,
    /// Exchange by these keys (`None`: straight to the sink).
    exchange: Option<Vec<Arc<dyn PhysicalExpr>>>,
    after: Vec<StatelessOp>,
}

struct SourceTask {
    partition: usize,
    progress: Arc<watch::Sender<Progress>>,
    reader: Box<dyn crate::source::SourceReader>,
    route: Arc<Route>,
    outputs: Vec<mpsc::Sender<Tagged>>,
    epochs: watch::Receiver<u64>,
    /// The epoch when `epochs` was subscribed: barriers after it are due.
    first_epoch: u64,
    reports: mpsc::UnboundedSender<Report>,
    restored: Option<SourceState>,
    /// The idle timeout, and the input's highest watermark sent.
    idle: Option<(std::time::Duration, Arc<std::sync::atomic::AtomicI64>)>,
}

async fn run_source(task: SourceTask, rows_in: Counter) -> Result<()> {
    let SourceTask {
        partition,
        progress,
        mut reader,
        route,
        outputs,
        epochs: mut flush,
        first_epoch,
        reports,
        restored,
        idle,
    } = task;
    let mut last_rows = tokio::time::Instant::now();
    let mut max_time = restored.map_or(i64::MIN, |s| s.max_time);
    let mut sent_watermark = restored.map_or(i64::MIN, |s| s.watermark);
    // Not the epoch now: a FLUSH between the job's start and this task's
    // first poll raised it, and its barrier must still be sent (the change
    // is still unseen by `flush`, so the loop sends it at once).
    let mut sent_barrier = first_epoch;
    let state =
        |reader: &dyn crate::source::SourceReader, max_time, watermark, ended| SourceState {
            position: reader.position().0,
            max_time,
            watermark,
            ended,
        };
    loop {
        let item = tokio::select! {
            biased;
            changed = flush.changed() => {
                if changed.is_ok() {
                    let epoch = *flush.borrow_and_update();
                    // Every epoch, in order: each task sees the same barriers
                    // from all its inputs.
                    while sent_barrier < epoch {
                        sent_barrier += 1;
                        let _ = reports.send(Report::Source {
                            partition,
                            epoch: sent_barrier,
                            state: state(reader.as_ref(), max_time, sent_watermark, false),
                        });
                        send_all(&outputs, partition, Message::Barrier(Barrier { epoch: sent_barrier })).await;
                    }
                }
                continue;
            }
            item = reader.next_batch() => item,
            () = idle_check(&idle, last_rows), if idle.is_some() => {
                // Idle: the input's highest watermark, so that this partition
                // does not hold back windows that the others closed.
                if let Some((_, highest)) = &idle {
                    let highest = highest.load(std::sync::atomic::Ordering::Acquire);
                    if route.event_time.is_some() && highest > sent_watermark {
                        sent_watermark = highest;
                        send_all(&outputs, partition, Message::Watermark(highest)).await;
                    }
                }
                continue;
            }
        };
        last_rows = tokio::time::Instant::now();
        let Some(batch) = item else { break };
        let batch = batch?;
        rows_in.inc_by(batch.num_rows() as u64);
        // The watermark advances row by row, as if punctuated: before a row
        // that is behind the watermark its predecessors set, the rows before
        // it are sent and that watermark is emitted, so the row is judged
        // late (or not) exactly as it would be with one watermark per row.
        // Rows in order cost nothing extra. Large batches are also cut every
        // CHUNK_ROWS rows so watermarks keep flowing.
        // Event times once per batch, in nanoseconds, for both the cuts and
        // each chunk's maximum.
        let times = match route.event_time {
            Some(event_time) => Some(timestamps_as_nanos(batch.column(event_time.column))?),
            None => None,
        };
        let cuts = match (&times, route.event_time) {
            (Some(times), Some(event_time)) => late_cuts(times, event_time.delay, max_time),
            _ => Vec::new(),
        };
        let mut offset = 0;
        for end in cuts.into_iter().chain(std::iter::once(batch.num_rows())) {
            while offset < end {
                let len = CHUNK_ROWS.min(end - offset);
                let chunk = batch.slice(offset, len);
                if let Some(max) = times
                    .as_ref()
                    .and_then(|t| datafusion::arrow::compute::max(&t.slice(offset, len)))
                {
                    max_time = max_time.max(max);
                }
                offset += len;
                if send_chunk(
                    partition,
                    chunk,
                    &route,
                    &outputs,
                    max_time,
                    &mut sent_watermark,
                )
                .await?
                .is_break()
                {
                    return Ok(());
                }
                if let Some((_, highest)) = &idle {
                    highest.fetch_max(sent_watermark, std::sync::atomic::Ordering::AcqRel);
                }
            }
        }
    }
    debug!(partition, "source partition ended");
    let _ = reports.send(Report::SourceEnded {
        partition,
        state: state(reader.as_ref(), max_time, sent_watermark, true),
    });
    send_all(&outputs, partition, Message::END_OF_INPUT).await;
    progress.send_modify(|p| p.sources_ended += 1);
    Ok(())
}

/// Wait until a partition that read its last rows at `last_rows` counts as
/// idle, then (while it stays idle) a tenth of the timeout between checks.
async fn idle_check(
    idle: &Option<(std::time::Duration, Arc<std::sync::atomic::AtomicI64>)>,
    last_rows: tokio::time::Instant,
) {
    let Some((timeout, _)) = idle else {
        return std::future::pending().await;
    };
    let now = tokio::time::Instant::now();
    let idle_at = last_rows + *timeout;
    let at = if now < idle_at {
        idle_at
    } else {
        now + (*timeout / 10).max(std::time::Duration::from_millis(10))
    };
    tokio::time::sleep_until(at).await;
}

/// Rows between two watermarks of a source partition.
const CHUNK_ROWS: usize = 8192;

/// Row indices of `batch` before which the watermark must be brought up to
/// date: rows behind the watermark their predecessors set.
fn late_cuts(
    times: &datafusion::arrow::array::TimestampNanosecondArray,
    delay: i64,
    mut max_time: i64,
) -> Vec<usize> {
    let mut cuts = Vec::new();
    for (i, t) in times.iter().enumerate() {
        let Some(t) = t else { continue };
        if max_time > i64::MIN && t < max_time.saturating_sub(delay) && i > 0 {
            cuts.push(i);
        }
        max_time = max_time.max(t);
    }
    cuts
}

/// Run stateless `ops` over `batch`, carrying the op column when `changelog`.
fn run_ops(
    ops: &[StatelessOp],
    batch: RecordBatch,
    changelog: bool,
) -> Result<Option<RecordBatch>> {
    if changelog {
        stateless::apply_changelog(ops, batch)
    } else {
        stateless::apply(ops, batch)
    }
}

/// Send `batch` to the workers that own its keys. `Break` when they are gone.
async fn exchange_out(
    input: usize,
    batch: RecordBatch,
    keys: &[Arc<dyn PhysicalExpr>],
    outputs: &[mpsc::Sender<Tagged>],
) -> Result<std::ops::ControlFlow<()>> {
    use std::ops::ControlFlow;
    let keys = keys
        .iter()
        .map(|k| k.evaluate(&batch)?.into_array(batch.num_rows()))
        .collect::<Result<Vec<_>>>()?;
    for (w, part) in exchange::partition(&batch, &keys, outputs.len())?
        .into_iter()
        .enumerate()
    {
        if let Some(part) = part
            && outputs[w]
                .send(Tagged {
                    input,
                    message: Message::Batch(part),
                })
                .await
                .is_err()
        {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

async fn send_chunk(
    partition: usize,
    batch: RecordBatch,
    route: &Route,
    outputs: &[mpsc::Sender<Tagged>],
    max_time: i64,
    sent_watermark: &mut i64,
) -> Result<std::ops::ControlFlow<()>> {
    use std::ops::ControlFlow;
    if let Some(batch) = run_ops(&route.before, batch, route.changelog)? {
        match &route.exchange {
            Some(keys) => {
                if exchange_out(partition, batch, keys, outputs)
                    .await?
                    .is_break()
                {
                    return Ok(ControlFlow::Break(()));
                }
            }
            None => {
                if let Some(out) = run_ops(&route.after, batch, route.changelog)?
                    && outputs[0]
                        .send(Tagged {
                            input: partition,
                            message: Message::Batch(out),
                        })
                        .await
                        .is_err()
                {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
    }
    if let Some(event_time) = route.event_time {
        let watermark = max_time.saturating_sub(event_time.delay);
        if max_time > i64::MIN && watermark > *sent_watermark {
            *sent_watermark = watermark;
            send_all(outputs, partition, Message::Watermark(watermark)).await;
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// An input's watermark, and whether it has event time at all.
#[derive(Debug, Clone, Copy)]
struct InputClock {
    /// Does it send watermarks? An input without event time (a table)
    /// never does, and does not hold back the others'.
    timed: bool,
    watermark: i64,
}

/// Watermark and barrier alignment over several inputs.
struct Inputs {
    clocks: Vec<InputClock>,
    ended: Vec<bool>,
    watermark: i64,
    barrier: Option<u64>,
    arrived: Vec<bool>,
    held: Vec<VecDeque<Message>>,
}

enum Event {
    Batch(usize, RecordBatch),
    Watermark(i64),
    Barrier(u64),
}

impl Inputs {
    fn new(n: usize) -> Self {
        Self::restored(vec![
            InputClock {
                timed: true,
                watermark: i64::MIN,
            };
            n
        ])
    }

    /// Inputs whose watermarks were these at a checkpoint.
    fn restored(clocks: Vec<InputClock>) -> Self {
        let n = clocks.len();
        let mut inputs = Self {
            ended: clocks.iter().map(|c| c.watermark == i64::MAX).collect(),
            clocks,
            watermark: i64::MIN,
            barrier: None,
            arrived: vec![false; n],
            held: vec![VecDeque::new(); n],
        };
        inputs.watermark = inputs.current();
        inputs
    }

    /// Every input ended.
    fn finished(&self) -> bool {
        self.ended.iter().all(|e| *e)
    }

    /// The minimum over the inputs with event time; `+inf` only once every
    /// input ended (it means the end, downstream).
    fn current(&self) -> i64 {
        if self.finished() {
            return i64::MAX;
        }
        self.clocks
            .iter()
            .filter(|c| c.timed)
            .map(|c| c.watermark)
            .min()
            .map_or(i64::MIN, |m| m.min(i64::MAX - 1))
    }

    fn offer(&mut self, input: usize, message: Message, out: &mut Vec<Event>) {
        if self.barrier.is_some() && self.arrived[input] {
            self.held[input].push_back(message);
            return;
        }
        match message {
            Message::Batch(batch) => out.push(Event::Batch(input, batch)),
            Message::Watermark(t) => {
                self.clocks[input].watermark = self.clocks[input].watermark.max(t);
                if t == i64::MAX {
                    self.ended[input] = true;
                }
                let now = self.current();
                if now > self.watermark {
                    self.watermark = now;
                    out.push(Event::Watermark(now));
                }
                self.try_release(out);
            }
            Message::Barrier(Barrier { epoch }) => {
                if self.barrier.is_none() {
                    self.barrier = Some(epoch);
                }
                self.arrived[input] = true;
                self.try_release(out);
            }
        }
    }

    fn try_release(&mut self, out: &mut Vec<Event>) {
        let Some(epoch) = self.barrier else { return };
        if !(0..self.arrived.len()).all(|i| self.arrived[i] || self.ended[i]) {
            return;
        }
        out.push(Event::Barrier(epoch));
        self.barrier = None;
        self.arrived.iter_mut().for_each(|a| *a = false);
        for input in 0..self.held.len() {
            while self.barrier.is_none() || !self.arrived[input] {
                let Some(message) = self.held[input].pop_front() else {
                    break;
                };
                self.offer(input, message, out);
            }
        }
    }
}

/// A worker's stateful operator.
enum Operator {
    Aggregate(AggregateOperator),
    Join {
        join: JoinOperator,
        /// Inputs below this are the left input's partitions.
        left_partitions: usize,
        /// The last watermark forwarded, for the checkpoint.
        watermark: i64,
    },
}

impl Operator {
    fn is_changelog(&self) -> bool {
        match self {
            Operator::Aggregate(a) => a.is_changelog(),
            Operator::Join { join, .. } => join.is_changelog(),
        }
    }

    fn on_batch(&mut self, input: usize, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        match self {
            Operator::Aggregate(a) => a.on_batch(batch),
            Operator::Join {
                join,
                left_partitions,
                ..
            } => join.on_batch(usize::from(input >= *left_partitions), batch),
        }
    }

    fn on_watermark(&mut self, t: i64) -> Result<Vec<RecordBatch>> {
        match self {
            Operator::Aggregate(a) => a.on_watermark(t),
            Operator::Join { watermark, .. } => {
                *watermark = (*watermark).max(t);
                Ok(Vec::new())
            }
        }
    }

    fn watermark(&self) -> i64 {
        match self {
            Operator::Aggregate(a) => a.watermark(),
            Operator::Join { watermark, .. } => *watermark,
        }
    }

    fn snapshot(&mut self, epoch: u64) -> Result<StateWrite> {
        match self {
            Operator::Aggregate(a) => a.snapshot(epoch),
            Operator::Join { join, .. } => join.snapshot(),
        }
    }
}

/// Where a worker's output goes.
#[derive(Clone)]
enum Downstream {
    Sink(mpsc::Sender<Tagged>),
    /// The next stage's workers, by these keys.
    Exchange {
        outputs: Vec<mpsc::Sender<Tagged>>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
    },
}

impl Downstream {
    /// Send a batch on. `Break` when downstream is gone.
    async fn send(&self, local: usize, batch: RecordBatch) -> Result<std::ops::ControlFlow<()>> {
        use std::ops::ControlFlow;
        match self {
            Downstream::Sink(sink) => Ok(
                if sink
                    .send(Tagged {
                        input: local,
                        message: Message::Batch(batch),
                    })
                    .await
                    .is_err()
                {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                },
            ),
            Downstream::Exchange { outputs, keys } => {
                exchange_out(local, batch, keys, outputs).await
            }
        }
    }

    /// Forward a watermark or barrier to every downstream input.
    async fn forward(&self, local: usize, message: Message) -> std::ops::ControlFlow<()> {
        use std::ops::ControlFlow;
        match self {
            Downstream::Sink(sink) => {
                if sink
                    .send(Tagged {
                        input: local,
                        message,
                    })
                    .await
                    .is_err()
                {
                    return ControlFlow::Break(());
                }
            }
            Downstream::Exchange { outputs, .. } => {
                send_all(outputs, local, message).await;
            }
        }
        ControlFlow::Continue(())
    }
}

struct Worker {
    /// The job's name (failpoints name the job they are in).
    job: Arc<str>,
    /// Its number among all the job's workers (checkpoint reports).
    index: usize,
    /// Its number in its stage (the input number downstream).
    local: usize,
    operator: Operator,
    after: Vec<StatelessOp>,
    store: Option<JobStore>,
    reports: mpsc::UnboundedSender<Report>,
    downstream: Downstream,
}

impl Worker {
    /// At a barrier: snapshot the state now (the operator goes on at once),
    /// write it in the background, and report when it is stored.
    fn checkpoint(&mut self, epoch: u64) -> Result<()> {
        let worker = self.index;
        let watermark = self.operator.watermark();
        let Some(store) = self.store.clone() else {
            let _ = self.reports.send(Report::Operator {
                worker,
                epoch,
                watermark,
                written: Ok(Written::default()),
            });
            return Ok(());
        };
        let write = self.operator.snapshot(epoch)?;
        let reports = self.reports.clone();
        tokio::spawn(async move {
            let written = store.write(epoch, &format!("w{worker}"), write).await;
            let _ = reports.send(Report::Operator {
                worker,
                epoch,
                watermark,
                written,
            });
        });
        Ok(())
    }
}

async fn run_worker(
    mut worker: Worker,
    mut rx: mpsc::Receiver<Tagged>,
    clocks: Vec<InputClock>,
) -> Result<()> {
    let mut align = Inputs::restored(clocks);
    let mut events = Vec::new();
    let changelog = worker.operator.is_changelog();
    if let Operator::Aggregate(aggregate) = &mut worker.operator
        && worker.local == 0
    {
        for batch in aggregate.on_start()? {
            if let Some(out) = run_ops(&worker.after, batch, changelog)?
                && worker.downstream.send(worker.local, out).await?.is_break()
            {
                return Ok(());
            }
        }
    }
    while let Some(Tagged { input, message }) = rx.recv().await {
        align.offer(input, message, &mut events);
        for event in events.drain(..) {
            let (outputs, forward) = match event {
                Event::Batch(input, batch) => {
                    crate::failpoint::hit_in("worker-batch", &worker.job);
                    (worker.operator.on_batch(input, &batch)?, None)
                }
                Event::Watermark(t) => (
                    worker.operator.on_watermark(t)?,
                    Some(Message::Watermark(t)),
                ),
                Event::Barrier(epoch) => {
                    worker.checkpoint(epoch)?;
                    (Vec::new(), Some(Message::Barrier(Barrier { epoch })))
                }
            };
            for batch in outputs {
                if let Some(out) = run_ops(&worker.after, batch, changelog)?
                    && worker.downstream.send(worker.local, out).await?.is_break()
                {
                    return Ok(());
                }
            }
            if let Some(message) = forward
                && worker
                    .downstream
                    .forward(worker.local, message)
                    .await
                    .is_break()
            {
                return Ok(());
            }
        }
        if align.finished() {
            break;
        }
    }
    Ok(())
}

/// A snapshot of the sink, on its way to the store.
type SinkSnapshot = (Option<u64>, u64, Result<Vec<(String, StateWrite)>>);

/// Writes the sink's snapshots one after the other, so the coordinator gets
/// the sink's reports in barrier order (the final one last).
async fn write_sink_snapshots(
    mut snapshots: mpsc::UnboundedReceiver<SinkSnapshot>,
    store: Option<JobStore>,
    reports: mpsc::UnboundedSender<Report>,
) {
    while let Some((epoch, label, parts)) = snapshots.recv().await {
        let written = async {
            let mut written = Vec::new();
            for (name, write) in parts? {
                written.push((
                    name.clone(),
                    match &store {
                        Some(store) => store.write(label, &format!("s-{name}"), write).await?,
                        None => Written {
                            pending: write.pending,
                            ..Default::default()
                        },
                    },
                ));
            }
            Ok(written)
        }
        .await;
        let _ = reports.send(Report::Sink { epoch, written });
    }
}

async fn run_sink(
    mut rx: mpsc::Receiver<Tagged>,
    inputs: usize,
    sink: Arc<dyn Sink>,
    store: Option<JobStore>,
    reports: mpsc::UnboundedSender<Report>,
    progress: Arc<watch::Sender<Progress>>,
    rows_out: Counter,
) -> Result<()> {
    let mut align = Inputs::new(inputs);
    let mut events = Vec::new();
    let mut last_epoch = 0;
    let (snapshots, snapshots_rx) = mpsc::unbounded_channel();
    tokio::spawn(write_sink_snapshots(snapshots_rx, store.clone(), reports));
    while let Some(Tagged { input, message }) = rx.recv().await {
        align.offer(input, message, &mut events);
        for event in events.drain(..) {
            match event {
                Event::Batch(_, batch) => {
                    rows_out.inc_by(batch.num_rows() as u64);
                    sink.apply(batch)?;
                }
                Event::Watermark(_) => {}
                Event::Barrier(epoch) => {
                    last_epoch = epoch;
                    // The snapshot is taken here, in order with the data;
                    // only the writing happens elsewhere.
                    let _ = snapshots.send((Some(epoch), epoch, sink.snapshot(epoch)));
                    progress.send_modify(|p| p.flushed = p.flushed.max(epoch));
                }
            }
        }
        if align.finished() {
            break;
        }
    }
    // Every input ended: the final state; the coordinator marks the job
    // finished once it is stored and the sink's output is committed.
    let label = last_epoch + 1;
    let parts = if store.is_none() || sink.writes_out() {
        sink.snapshot(label)
    } else {
        Ok(Vec::new())
    };
    let _ = snapshots.send((None, label, parts));
    Ok(())
}
