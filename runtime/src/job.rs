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
//! - Barriers (`FLUSH` today, checkpoints next): a source injects
//!   `Barrier(epoch)` between two batches. A task with several inputs holds
//!   back every input that delivered the barrier until all have (ended inputs
//!   count as delivered), then forwards it once. When the sink has it from
//!   all its inputs, everything read before the barrier is in the view.

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::executor::Executor;
use crate::message::{Barrier, Message};
use crate::metrics::{JobLabels, RuntimeMetrics};
use crate::operators::aggregate::AggregateOperator;
use crate::operators::{exchange, stateless};
use crate::plan::StreamPlan;
use crate::windows::timestamps_as_nanos;

/// Batches in flight per channel.
const CHANNEL_CAPACITY: usize = 8;

/// Where a job's output goes.
pub trait Sink: Send + Sync {
    /// Apply one batch (with the op column when the plan is a changelog).
    fn apply(&self, batch: RecordBatch) -> Result<()>;
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
    flush: watch::Sender<u64>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl JobHandle {
    /// The job's progress now.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
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
        let epoch = *self.flush.borrow() + 1;
        self.flush.send_replace(epoch);
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

/// Start `plan` on the executor's workers, writing to `sink`.
pub fn start(
    name: &str,
    plan: StreamPlan,
    sink: Arc<dyn Sink>,
    executor: &Executor,
    metrics: &RuntimeMetrics,
) -> Result<JobHandle> {
    let (progress_tx, progress) = watch::channel(Progress::default());
    let progress_tx = Arc::new(progress_tx);
    let (flush, flush_rx) = watch::channel(0u64);
    let partitions = plan.source.partitions().max(1);
    let workers = if plan.aggregate.is_some() {
        plan.parallelism.max(1)
    } else {
        0
    };
    let sink_inputs = if workers > 0 { workers } else { partitions };
    let (sink_tx, sink_rx) = mpsc::channel::<Tagged>(CHANNEL_CAPACITY * sink_inputs);
    let job = JobLabels {
        job: name.to_string(),
    };
    let mut tasks = Vec::new();

    tasks.push(executor.spawn(run_sink(
        sink_rx,
        sink_inputs,
        sink,
        progress_tx.clone(),
        metrics.rows_out.get_or_create(&job).clone(),
    )));

    let mut worker_txs = Vec::new();
    if let Some(spec) = &plan.aggregate {
        let input_schema = plan_input_schema(&plan);
        for w in 0..workers {
            let (tx, rx) = mpsc::channel::<Tagged>(CHANNEL_CAPACITY * partitions);
            worker_txs.push(tx);
            let operator = AggregateOperator::new(
                spec.clone(),
                &input_schema,
                metrics.late(&plan.stream_name),
            )?;
            tasks.push(executor.spawn(fail_on_error(
                run_worker(
                    w,
                    rx,
                    partitions,
                    operator,
                    plan.after.clone(),
                    sink_tx.clone(),
                ),
                progress_tx.clone(),
            )));
        }
    }
    for p in 0..partitions {
        let reader = plan.source.open(p, None)?;
        let outputs = if workers > 0 {
            worker_txs.clone()
        } else {
            vec![sink_tx.clone()]
        };
        tasks.push(executor.spawn(fail_on_error(
            run_source(
                p,
                reader,
                plan.clone(),
                outputs,
                flush_rx.clone(),
                metrics.rows_in.get_or_create(&job).clone(),
            ),
            progress_tx.clone(),
        )));
    }
    Ok(JobHandle {
        bounded: plan.source.bounded(),
        progress,
        flush,
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

async fn run_source(
    partition: usize,
    mut reader: Box<dyn crate::source::SourceReader>,
    plan: StreamPlan,
    outputs: Vec<mpsc::Sender<Tagged>>,
    mut flush: watch::Receiver<u64>,
    rows_in: Counter,
) -> Result<()> {
    let mut max_time = i64::MIN;
    let mut sent_watermark = i64::MIN;
    let mut sent_barrier = *flush.borrow_and_update();
    loop {
        let item = tokio::select! {
            biased;
            changed = flush.changed() => {
                if changed.is_ok() {
                    let epoch = *flush.borrow_and_update();
                    if epoch > sent_barrier {
                        sent_barrier = epoch;
                        send_all(&outputs, partition, Message::Barrier(Barrier { epoch })).await;
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
    if let Some(batch) = stateless::apply(&plan.before, batch)? {
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
                if let Some(out) = stateless::apply(&plan.after, batch)?
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
        Self {
            watermarks: vec![i64::MIN; n],
            watermark: i64::MIN,
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

async fn run_worker(
    worker: usize,
    mut rx: mpsc::Receiver<Tagged>,
    inputs: usize,
    mut operator: AggregateOperator,
    after: Vec<crate::plan::StatelessOp>,
    sink: mpsc::Sender<Tagged>,
) -> Result<()> {
    let mut align = Inputs::new(inputs);
    let mut events = Vec::new();
    let changelog = operator.is_changelog();
    while let Some(Tagged { input, message }) = rx.recv().await {
        align.offer(input, message, &mut events);
        for event in events.drain(..) {
            let (outputs, forward) = match event {
                Event::Batch(batch) => (operator.on_batch(&batch)?, None),
                Event::Watermark(t) => (operator.on_watermark(t)?, Some(Message::Watermark(t))),
                Event::Barrier(epoch) => (Vec::new(), Some(Message::Barrier(Barrier { epoch }))),
            };
            for batch in outputs {
                let out = if changelog {
                    stateless::apply_changelog(&after, batch)?
                } else {
                    stateless::apply(&after, batch)?
                };
                if let Some(out) = out
                    && sink
                        .send(Tagged {
                            input: worker,
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
                        input: worker,
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

async fn run_sink(
    mut rx: mpsc::Receiver<Tagged>,
    inputs: usize,
    sink: Arc<dyn Sink>,
    progress: Arc<watch::Sender<Progress>>,
    rows_out: Counter,
) {
    let mut align = Inputs::new(inputs);
    let mut events = Vec::new();
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
                Event::Barrier(epoch) => progress.send_modify(|p| p.flushed = p.flushed.max(epoch)),
            }
        }
        if align.watermark == i64::MAX {
            break;
        }
    }
    progress.send_modify(|p| p.finished = true);
}
