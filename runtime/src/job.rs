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
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::checkpoint::{
    CheckpointMetrics, Coordinator, JobStore, LateRequest, Report, Restored, SourceState,
    StateWrite, Written,
};
use crate::executor::Executor;
use crate::message::{Barrier, Message};
use crate::metrics::{JobLabels, RuntimeMetrics};
use crate::operators::aggregate::AggregateOperator;
use crate::operators::{exchange, stateless};
use crate::plan::StreamPlan;
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every source ended and everything reached the sink.
    pub finished: bool,
    /// The last barrier epoch that reached the sink from every input.
    pub flushed: u64,
    /// Why the job stopped, if it failed.
    pub failed: Option<String>,
}

/// A running job.
pub struct JobHandle {
    bounded: bool,
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
    /// was called. Returns the job's failure, if any.
    pub async fn flush(&self) -> std::result::Result<(), String> {
        if self.bounded {
            return self.finished().await;
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
    pub async fn finished(&self) -> std::result::Result<(), String> {
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
    let partitions = plan.source.partitions().max(1);
    let workers = if plan.aggregate.is_some() {
        plan.parallelism.max(1)
    } else {
        0
    };
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
    let mut sources: Vec<Option<SourceState>> = vec![None; partitions];
    let mut operator_state: Vec<(String, RecordBatch)> = Vec::new();
    let mut operator_watermark = i64::MIN;
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
        for (o, chunks) in restored.manifest.operators.iter().zip(&restored.operators) {
            operator_watermark = operator_watermark.max(o.watermark);
            operator_state.extend(chunks.iter().cloned());
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
            progress,
            flush,
            late: late_tx,
            tasks: vec![executor.spawn(coordinator.run(reports))],
        });
    }
    let sink_inputs = if workers > 0 { workers } else { partitions };
    let (sink_tx, sink_rx) = mpsc::channel::<Tagged>(CHANNEL_CAPACITY * sink_inputs);
    let mut tasks = Vec::new();

    tasks.push(
        executor.spawn(
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
    );
    tasks.push(executor.spawn(run_sink(
        sink_rx,
        sink_inputs,
        sink,
        store.clone(),
        report_tx.clone(),
        progress_tx.clone(),
        metrics.rows_out.get_or_create(&job).clone(),
    )));

    // What each worker's inputs had sent at the barrier: the sources'
    // last watermarks (an ended source's is +inf).
    let input_watermarks: Vec<i64> = sources
        .iter()
        .map(|s| match s {
            Some(s) if s.ended => i64::MAX,
            Some(s) => s.watermark,
            None => i64::MIN,
        })
        .collect();
    let mut worker_txs = Vec::new();
    if let Some(spec) = &plan.aggregate {
        let input_schema = plan_input_schema(&plan);
        for w in 0..workers {
            let (tx, rx) = mpsc::channel::<Tagged>(CHANNEL_CAPACITY * partitions);
            worker_txs.push(tx);
            let mut operator = AggregateOperator::new(
                spec.clone(),
                &input_schema,
                metrics.late(&plan.stream_name),
            )?;
            if store.is_some() {
                operator.enable_checkpoints();
            }
            if sources.iter().any(Option::is_some) {
                operator.restore(operator_watermark, &operator_state, w, workers)?;
            }
            tasks.push(executor.spawn(fail_on_error(
                run_worker(
                    Worker {
                        index: w,
                        operator,
                        after: plan.after.clone(),
                        store: store.clone(),
                        reports: report_tx.clone(),
                    },
                    rx,
                    input_watermarks.clone(),
                    sink_tx.clone(),
                ),
                progress_tx.clone(),
            )));
        }
    }
    for (p, restored) in sources.into_iter().enumerate() {
        let reader = plan
            .source
            .open(p, restored.map(|s| SourcePosition(s.position)))?;
        let outputs = if workers > 0 {
            worker_txs.clone()
        } else {
            vec![sink_tx.clone()]
        };
        tasks.push(executor.spawn(fail_on_error(
            run_source(
                SourceTask {
                    partition: p,
                    reader,
                    plan: plan.clone(),
                    outputs,
                    epochs: flush.subscribe(),
                    reports: report_tx.clone(),
                    restored,
                },
                metrics.rows_in.get_or_create(&job).clone(),
            ),
            progress_tx.clone(),
        )));
    }
    Ok(JobHandle {
        bounded: plan.source.bounded(),
        progress,
        flush,
        late: late_tx,
        tasks,
    })
}

/// The schema the aggregate reads: the source's after the `before` ops.
fn plan_input_schema(plan: &StreamPlan) -> SchemaRef {
    plan.before
        .iter()
        .rev()
        .find_map(|op| match op {
            crate::plan::StatelessOp::Project { schema, .. }
            | crate::plan::StatelessOp::Unnest { schema, .. } => Some(schema.clone()),
            crate::plan::StatelessOp::Filter(_) => None,
        })
        .unwrap_or_else(|| plan.source.schema())
}

async fn fail_on_error(
    task: impl std::future::Future<Output = Result<()>>,
    progress: Arc<watch::Sender<Progress>>,
) {
    if let Err(err) = task.await {
        warn!(%err, "a job task failed");
        progress.send_modify(|p| {
            if p.failed.is_none() {
                p.failed = Some(err.to_string());
            }
        });
    }
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

struct SourceTask {
    partition: usize,
    reader: Box<dyn crate::source::SourceReader>,
    plan: StreamPlan,
    outputs: Vec<mpsc::Sender<Tagged>>,
    epochs: watch::Receiver<u64>,
    reports: mpsc::UnboundedSender<Report>,
    restored: Option<SourceState>,
}

async fn run_source(task: SourceTask, rows_in: Counter) -> Result<()> {
    let SourceTask {
        partition,
        mut reader,
        plan,
        outputs,
        epochs: mut flush,
        reports,
        restored,
    } = task;
    let mut max_time = restored.map_or(i64::MIN, |s| s.max_time);
    let mut sent_watermark = restored.map_or(i64::MIN, |s| s.watermark);
    let mut sent_barrier = *flush.borrow_and_update();
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
        };
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
        let times = match plan.event_time {
            Some(event_time) => Some(timestamps_as_nanos(batch.column(event_time.column))?),
            None => None,
        };
        let cuts = match (&times, plan.event_time) {
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
                    &plan,
                    &outputs,
                    max_time,
                    &mut sent_watermark,
                )
                .await?
                .is_break()
                {
                    return Ok(());
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
    Ok(())
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

async fn send_chunk(
    partition: usize,
    batch: RecordBatch,
    plan: &StreamPlan,
    outputs: &[mpsc::Sender<Tagged>],
    max_time: i64,
    sent_watermark: &mut i64,
) -> Result<std::ops::ControlFlow<()>> {
    use std::ops::ControlFlow;
    let workers = outputs.len();
    let run = |ops: &[crate::plan::StatelessOp], batch| {
        if plan.input_changelog {
            stateless::apply_changelog(ops, batch)
        } else {
            stateless::apply(ops, batch)
        }
    };
    if let Some(batch) = run(&plan.before, batch)? {
        match &plan.aggregate {
            Some(spec) => {
                let keys = spec
                    .partition_keys
                    .iter()
                    .map(|&k| spec.group[k].evaluate(&batch)?.into_array(batch.num_rows()))
                    .collect::<Result<Vec<_>>>()?;
                for (w, part) in exchange::partition(&batch, &keys, workers)?
                    .into_iter()
                    .enumerate()
                {
                    if let Some(part) = part
                        && outputs[w]
                            .send(Tagged {
                                input: partition,
                                message: Message::Batch(part),
                            })
                            .await
                            .is_err()
                    {
                        return Ok(ControlFlow::Break(()));
                    }
                }
            }
            None => {
                if let Some(out) = run(&plan.after, batch)?
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
    if let Some(event_time) = plan.event_time {
        let watermark = max_time.saturating_sub(event_time.delay);
        if max_time > i64::MIN && watermark > *sent_watermark {
            *sent_watermark = watermark;
            send_all(outputs, partition, Message::Watermark(watermark)).await;
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// Watermark and barrier alignment over several inputs.
struct Inputs {
    watermarks: Vec<i64>,
    watermark: i64,
    barrier: Option<u64>,
    arrived: Vec<bool>,
    held: Vec<VecDeque<Message>>,
}

enum Event {
    Batch(RecordBatch),
    Watermark(i64),
    Barrier(u64),
}

impl Inputs {
    fn new(n: usize) -> Self {
        Self::restored(vec![i64::MIN; n])
    }

    /// Inputs whose watermarks were `watermarks` at a checkpoint.
    fn restored(watermarks: Vec<i64>) -> Self {
        let n = watermarks.len();
        Self {
            watermark: watermarks.iter().copied().min().unwrap_or(i64::MIN),
            watermarks,
            barrier: None,
            arrived: vec![false; n],
            held: vec![VecDeque::new(); n],
        }
    }

    fn ended(&self, input: usize) -> bool {
        self.watermarks[input] == i64::MAX
    }

    fn offer(&mut self, input: usize, message: Message, out: &mut Vec<Event>) {
        if self.barrier.is_some() && self.arrived[input] {
            self.held[input].push_back(message);
            return;
        }
        match message {
            Message::Batch(batch) => out.push(Event::Batch(batch)),
            Message::Watermark(t) => {
                self.watermarks[input] = self.watermarks[input].max(t);
                let min = self.watermarks.iter().copied().min().unwrap_or(i64::MIN);
                if min > self.watermark {
                    self.watermark = min;
                    out.push(Event::Watermark(min));
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
        if !(0..self.arrived.len()).all(|i| self.arrived[i] || self.ended(i)) {
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

struct Worker {
    index: usize,
    operator: AggregateOperator,
    after: Vec<crate::plan::StatelessOp>,
    store: Option<JobStore>,
    reports: mpsc::UnboundedSender<Report>,
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
    input_watermarks: Vec<i64>,
    sink: mpsc::Sender<Tagged>,
) -> Result<()> {
    let mut align = Inputs::restored(input_watermarks);
    let mut events = Vec::new();
    let changelog = worker.operator.is_changelog();
    let index = worker.index;
    while let Some(Tagged { input, message }) = rx.recv().await {
        align.offer(input, message, &mut events);
        for event in events.drain(..) {
            let (outputs, forward) = match event {
                Event::Batch(batch) => (worker.operator.on_batch(&batch)?, None),
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
                let out = if changelog {
                    stateless::apply_changelog(&worker.after, batch)?
                } else {
                    stateless::apply(&worker.after, batch)?
                };
                if let Some(out) = out
                    && sink
                        .send(Tagged {
                            input: index,
                            message: Message::Batch(out),
                        })
                        .await
                        .is_err()
                {
                    return Ok(());
                }
            }
            if let Some(message) = forward
                && sink
                    .send(Tagged {
                        input: index,
                        message,
                    })
                    .await
                    .is_err()
            {
                return Ok(());
            }
        }
        if align.watermark == i64::MAX {
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
) {
    let mut align = Inputs::new(inputs);
    let mut events = Vec::new();
    let mut last_epoch = 0;
    let (snapshots, snapshots_rx) = mpsc::unbounded_channel();
    tokio::spawn(write_sink_snapshots(snapshots_rx, store.clone(), reports));
    while let Some(Tagged { input, message }) = rx.recv().await {
        align.offer(input, message, &mut events);
        for event in events.drain(..) {
            match event {
                Event::Batch(batch) => {
                    rows_out.inc_by(batch.num_rows() as u64);
                    if let Err(err) = sink.apply(batch) {
                        progress.send_modify(|p| p.failed = Some(err.to_string()));
                        return;
                    }
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
        if align.watermark == i64::MAX {
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
}
