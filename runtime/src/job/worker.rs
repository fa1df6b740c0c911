//! A stateful stage's worker task: aligns its upstreams, runs its operator
//! (through [`StreamOperator`], knowing nothing else about it), runs the
//! stateless operators after it, and sends the output on; at a barrier it
//! snapshots the operator and writes the snapshot in the background.
//! It meters itself per batch (`weir_operator_*`: rows in and out, its
//! watermark, state bytes and entries at barriers, time blocked sending).

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::Result;
use datafusion::physical_plan::PhysicalExpr;
use tokio::sync::mpsc;
use tracing::debug;

use super::aligner::{Aligned, Aligner, UpstreamClock};
use super::channel::{Tagged, exchange_out, send, send_all};
use super::counters::{StateBytes, blocked_send};
use crate::checkpoint::{JobStore, Report, Written};
use crate::message::{Barrier, Message};
use crate::metrics::{OperatorMetrics, RuntimeMetrics};
use crate::operators::interval_join::IntervalJoin;
use crate::operators::join::JoinOperator;
use crate::operators::lookup_join::LookupJoin;
use crate::operators::over_window::OverWindow;
use crate::operators::top_n::TopN;
use crate::operators::{Side, StreamBatch, StreamOperator, aggregate, stateless};
use crate::plan::{PlanInput, StageOperator, StatelessOp, StreamPlan};

/// A new, empty operator for a worker of the plan's stage `stage`: where
/// the runtime's operators are listed.
pub(crate) fn operator(
    plan: &StreamPlan,
    stage: usize,
    metrics: &RuntimeMetrics,
) -> Result<Box<dyn StreamOperator>> {
    let Some(stage_plan) = plan.stages.get(stage) else {
        return datafusion::common::internal_err!("a stage {stage} the plan does not have");
    };
    match &stage_plan.operator {
        StageOperator::Join(spec) => match spec.interval {
            Some(_) => {
                // Each side's late rows are counted as its stream's.
                let late = |side: usize| {
                    let stream = match stage_plan.inputs.get(side) {
                        Some(PlanInput::Source(s)) => plan.sources.get(*s).map(|s| s.name.as_str()),
                        _ => None,
                    };
                    metrics.late(stream.unwrap_or(&plan.stream_name))
                };
                Ok(Box::new(IntervalJoin::new(
                    spec.clone(),
                    [late(0), late(1)],
                )?))
            }
            None if spec.lookup() => Ok(Box::new(LookupJoin::new(spec.clone())?)),
            None => Ok(Box::new(JoinOperator::new(spec.clone())?)),
        },
        StageOperator::Aggregate(spec) => {
            let Some(input) = stage_plan
                .inputs
                .first()
                .and_then(|i| plan.input_schema(*i))
            else {
                return datafusion::common::internal_err!("an aggregate stage without an input");
            };
            aggregate::new(spec.clone(), &input, metrics.late(&plan.stream_name))
        }
        StageOperator::TopN(spec) => Ok(Box::new(TopN::new(
            spec.clone(),
            metrics.late(&plan.stream_name),
        )?)),
        StageOperator::OverWindow(spec) => Ok(Box::new(OverWindow::new(
            spec.clone(),
            metrics.late(&plan.stream_name),
        )?)),
    }
}

/// Where a worker's output goes.
#[derive(Clone)]
pub(crate) enum Downstream {
    /// The sink task.
    Sink(mpsc::Sender<Tagged>),
    /// The next stage's workers, by these keys.
    Exchange {
        outputs: Vec<mpsc::Sender<Tagged>>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
    },
}

impl Downstream {
    /// Send a batch on. `Break` when downstream is gone.
    async fn send(&self, upstream: usize, batch: RecordBatch) -> Result<ControlFlow<()>> {
        match self {
            Downstream::Sink(sink) => Ok(send(sink, upstream, Message::Batch(batch)).await),
            Downstream::Exchange { outputs, keys } => {
                exchange_out(upstream, batch, keys, outputs).await
            }
        }
    }

    /// The channels it sends on.
    fn channels(&self) -> &[mpsc::Sender<Tagged>] {
        match self {
            Downstream::Sink(sink) => std::slice::from_ref(sink),
            Downstream::Exchange { outputs, .. } => outputs,
        }
    }

    /// Forward a watermark or barrier to every downstream task.
    async fn forward(&self, upstream: usize, message: Message) -> ControlFlow<()> {
        match self {
            Downstream::Sink(sink) => send(sink, upstream, message).await,
            Downstream::Exchange { outputs, .. } => {
                send_all(outputs, upstream, message).await;
                ControlFlow::Continue(())
            }
        }
    }
}

/// One worker, ready to run.
pub(crate) struct Worker {
    /// The job's name (failpoints name the job they are in).
    pub(crate) job: Arc<str>,
    /// Its number among all the job's workers (checkpoint reports).
    pub(crate) index: usize,
    pub(crate) operator: Box<dyn StreamOperator>,
    /// The bytes its checkpoint names, for `weir_operator_state_bytes`.
    pub(crate) state_bytes: StateBytes,
    /// The join side of each upstream (empty for a one-input operator).
    pub(crate) sides: Vec<Option<Side>>,
    pub(crate) store: Option<JobStore>,
    pub(crate) reports: mpsc::UnboundedSender<Report>,
    /// Where its output goes. Apart from the operator, which is not `Sync`
    /// and so must not be borrowed across the sends' awaits.
    pub(crate) output: Output,
}

/// What a worker does with its operator's output.
pub(crate) struct Output {
    /// Its number in its stage.
    pub(crate) local: usize,
    /// Its number among the upstreams of the task it sends to.
    pub(crate) upstream: usize,
    /// Stateless operators run on the operator's output.
    pub(crate) after: Vec<StatelessOp>,
    pub(crate) downstream: Downstream,
    /// This worker's `weir_operator_*` figures.
    pub(crate) figures: OperatorMetrics,
}

impl Worker {
    /// At a barrier: snapshot the state now (the operator goes on at once),
    /// write it in the background, and report when it is stored.
    fn checkpoint(&mut self, epoch: u64) -> Result<()> {
        let worker = self.index;
        let watermark = self.operator.watermark();
        let state = self.operator.state();
        let figures = &self.output.figures;
        figures
            .state_entries
            .set(i64::try_from(state.entries).unwrap_or(i64::MAX));
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
        let bytes = self.state_bytes.apply(&write);
        figures
            .state_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        debug!(epoch, entries = state.entries, "operator state snapshotted");
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

impl Output {
    /// Run the stateless operators after the operator on `batches` and send them on.
    async fn emit(&self, batches: Vec<StreamBatch>) -> Result<ControlFlow<()>> {
        for batch in batches {
            if let Some(out) = stateless::run(&self.after, batch)? {
                let out = out.into_batch();
                self.figures.rows_out.inc_by(out.num_rows() as u64);
                let sent = blocked_send(
                    &self.figures,
                    self.downstream.channels(),
                    self.downstream.send(self.upstream, out),
                );
                if sent.await?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Forward a watermark or barrier downstream.
    async fn forward(&self, message: Message) -> ControlFlow<()> {
        let sent = self.downstream.forward(self.upstream, message);
        blocked_send(&self.figures, self.downstream.channels(), sent).await
    }
}

/// Run `worker` over its channel until every upstream ended or the job stops;
/// `clocks` are its upstreams' at the restored checkpoint.
pub(crate) async fn run_worker(
    mut worker: Worker,
    mut rx: mpsc::Receiver<Tagged>,
    clocks: Vec<UpstreamClock>,
) -> Result<()> {
    let mut align = Aligner::restored(clocks).with_sides(worker.sides.clone());
    let mut events = Vec::new();
    // Where each join side's watermark was at the restored checkpoint: the
    // operator judges rows late against them from the first batch on.
    for (side, t) in Side::BOTH.into_iter().zip(align.side_watermarks()) {
        if t > i64::MIN {
            let out = worker.operator.on_side_watermark(side, t)?;
            if worker.output.emit(out).await?.is_break() {
                return Ok(());
            }
        }
    }
    if worker.output.local == 0 {
        let start = worker.operator.on_start()?;
        if worker.output.emit(start).await?.is_break() {
            return Ok(());
        }
    }
    while let Some(Tagged { upstream, message }) = rx.recv().await {
        align.offer(upstream, message, &mut events);
        for event in events.drain(..) {
            let (outputs, forward) = match event {
                Aligned::Batch(upstream, batch) => {
                    crate::failpoint::hit_in("worker-batch", &worker.job);
                    let figures = &worker.output.figures;
                    figures.rows_in.inc_by(batch.num_rows() as u64);
                    let side = worker.sides.get(upstream).copied().flatten();
                    (worker.operator.on_batch(side, &batch)?, None)
                }
                Aligned::Watermark(t) => {
                    worker.output.figures.watermark_ns(t);
                    let outputs = worker.operator.on_watermark(t)?;
                    let forward = worker.operator.output_watermark(t);
                    (outputs, Some(Message::Watermark(forward)))
                }
                Aligned::SideWatermark(side, t) => {
                    (worker.operator.on_side_watermark(side, t)?, None)
                }
                Aligned::SnapshotEnd(side) => {
                    let outputs = worker.operator.on_snapshot_end(side)?;
                    // A watermark the operator held back until then goes
                    // now, after the rows it held with it.
                    let t = worker.operator.watermark();
                    (outputs, (t > i64::MIN).then_some(Message::Watermark(t)))
                }
                Aligned::Barrier(epoch) => {
                    worker.checkpoint(epoch)?;
                    (Vec::new(), Some(Message::Barrier(Barrier { epoch })))
                }
            };
            if worker.output.emit(outputs).await?.is_break() {
                return Ok(());
            }
            if let Some(message) = forward
                && worker.output.forward(message).await.is_break()
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
