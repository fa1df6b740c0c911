//! Running a stream plan: tasks, channels, watermarks and barriers.
//!
//! ```text
//!  source task p ──(before ops, exchange by key)──> worker w ──(after ops)──> sink task
//!   one per partition      bounded channels        join or       bounded      applies to the view
//!                                                  aggregate
//! ```
//! Every channel is bounded, so a slow sink slows the workers, which slow
//! the sources: memory stays flat under backpressure.
//!
//! # Layout
//! - `mod.rs`: [`start`], which wires a job's tasks from its topology.
//! - `topology.rs`: which tasks, channels and exchanges a plan needs, as a
//!   pure function of the plan.
//! - `restore.rs`: a checkpoint sorted by the tasks that restore it.
//! - `source_task.rs`, `worker.rs`, `sink_task.rs`: the three kinds of task.
//! - `aligner.rs`: watermark and barrier alignment over a task's upstreams.
//! - `channel.rs`: what moves between tasks and how it is sent.
//! - `handle.rs`: [`JobHandle`], a running job's progress, `FLUSH`, stop.
//!
//! # Correctness
//! - Watermarks: a task's watermark is the minimum over its upstreams; an
//!   upstream that ended counts as `+inf`. An operator emits what a
//!   watermark closes before forwarding the watermark.
//! - Barriers (checkpoints and `FLUSH`): a source injects `Barrier(epoch)`
//!   between two batches, for every epoch in order (none is skipped, so
//!   all upstreams of a task deliver the same epochs), after reporting its
//!   position. A task with several upstreams holds back every upstream that
//!   delivered the barrier until all have (ended upstreams count as
//!   delivered), then snapshots its state and forwards the barrier once.
//!   When the sink has it from all its upstreams, everything read before
//!   the barrier is in the view, and the view's state is snapshotted too.
//! - A checkpoint is complete when the coordinator has every report of its
//!   epoch (`checkpoint::Coordinator`); restoring gives each task the state
//!   it had at that barrier: sources their position, largest event time and
//!   last watermark; workers their keyed state and their upstreams'
//!   watermarks (the sources' at the barrier); the sink the view.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use datafusion::common::{Result, internal_err};
use datafusion::physical_plan::PhysicalExpr;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, info_span};

mod aligner;
mod channel;
mod counters;
mod handle;
mod restore;
mod sink_task;
mod source_task;
mod topology;
mod worker;

pub use crate::failure::JobFailure;
pub use crate::progress::Progress;
pub use crate::sink::Sink;
pub use handle::JobHandle;

use crate::checkpoint::{CheckpointMetrics, Coordinator, JobStore, Report, Restored};
use crate::executor::Executor;
use crate::failure::Failer;
use crate::metrics::{JobLabels, RuntimeMetrics};
use crate::plan::{Side, StageOperator, StreamPlan};
use crate::source::SourcePosition;
use channel::Tagged;
use restore::Restore;
use source_task::{Route, SourceTask};
use topology::{Target, Topology};
use worker::{Downstream, Output, Worker};

/// How a job checkpoints, and what it restores from.
#[derive(Default)]
pub struct Checkpointing {
    /// Where its checkpoints go (`None`: no checkpoints).
    pub store: Option<JobStore>,
    /// The checkpoint to start from.
    pub restored: Option<Restored>,
    /// The job's query and plan signatures, recorded in its manifests.
    pub plan: crate::checkpoint::ManifestPlan,
    /// Checkpoint metrics.
    pub metrics: CheckpointMetrics,
    /// The job's `state_size_limit` in bytes: past it (operator state as
    /// of a checkpoint, as `weir_job_state_bytes`) the job fails with
    /// [`crate::checkpoint::StateSizeLimitExceeded`].
    pub state_limit: Option<u64>,
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
    // A source that recorded its splits reads those, not a new listing.
    let plan = match checkpointing.restored.as_ref() {
        Some(restored) => restored.manifest.splits_restored(plan)?,
        None => plan,
    };
    let topology = Topology::of(&plan);
    let partitions = topology.partitions();
    let workers = topology.workers();
    let (progress_tx, progress) = watch::channel(Progress::default());
    let progress_tx = Arc::new(progress_tx);
    let Checkpointing {
        store,
        restored,
        plan: plan_text,
        metrics: checkpoint_metrics,
        state_limit,
    } = checkpointing;
    if store.is_some() {
        sink.enable_checkpoints();
    }
    let restored_epoch = restored.as_ref().map_or(0, |r| r.manifest.epoch);
    let adopt = restored.as_ref().and_then(|r| r.savepoint.clone());
    let flush = Arc::new(watch::channel(restored_epoch).0);
    let stop = Arc::new(watch::channel(None).0);
    let alive = Arc::new(watch::channel(0usize).0);
    let checkpoints = store.is_some();
    let counters = Arc::new(
        counters::SourceCounters::new(
            topology
                .sources
                .iter()
                .flat_map(|s| std::iter::repeat_n(s.timed, s.partitions))
                .collect(),
            plan.sources().iter().map(|s| s.source.clone()).collect(),
        )
        .metered(name, metrics, &topology.sources),
    );
    let (report_tx, report_rx) = mpsc::unbounded_channel::<Report>();
    let job = JobLabels {
        job: name.to_string(),
    };
    let failer = Failer {
        job: name.into(),
        progress: progress_tx.clone(),
        failures: metrics.job_failures.get_or_create(&job).clone(),
    };
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
    let restore = Restore::of(restored.as_ref(), &topology, &plan.partition_keys());
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    if let Some(restored) = restored.as_ref().filter(|r| r.manifest.finished) {
        progress_tx.send_modify(|p| p.finished = true);
        let coordinator = Coordinator {
            store,
            plan: plan_text,
            partitions,
            sources: plan.partitions(),
            keys: plan.partition_keys(),
            workers,
            last: Some(restored.manifest.clone()),
            adopt,
            epochs: flush.clone(),
            stop,
            alive: alive.subscribe(),
            sink,
            progress: progress_tx,
            metrics: checkpoint_metrics,
            labels: job,
            finished: true,
            commands: commands_rx,
            state_limit,
        };
        let (_, reports) = mpsc::unbounded_channel();
        return Ok(JobHandle {
            bounded: true,
            bounded_partitions: 0,
            progress,
            flush,
            checkpoints,
            commands: commands_tx,
            counters,
            tasks: vec![spawn_task(
                executor,
                &failer,
                &alive,
                name,
                "the checkpoint coordinator".into(),
                coordinator.run(reports),
            )],
        });
    }
    let (sink_tx, sink_rx) = channel::channel(topology.sink_upstreams);
    let mut tasks = Vec::new();

    tasks.push(spawn_task(
        executor,
        &failer,
        &alive,
        name,
        "the checkpoint coordinator".into(),
        Coordinator {
            store: store.clone(),
            plan: plan_text,
            partitions,
            sources: plan.partitions(),
            keys: plan.partition_keys(),
            workers,
            last: restored.map(|r| r.manifest),
            adopt,
            epochs: flush.clone(),
            stop: stop.clone(),
            alive: alive.subscribe(),
            sink: sink.clone(),
            progress: progress_tx.clone(),
            metrics: checkpoint_metrics,
            labels: job.clone(),
            finished: false,
            commands: commands_rx,
            state_limit,
        }
        .run(report_rx),
    ));
    tasks.push(spawn_task(
        executor,
        &failer,
        &alive,
        name,
        "the sink".into(),
        sink_task::run_sink(
            sink_rx,
            sink_task::SinkTask {
                upstreams: topology.sink_upstreams,
                sink,
                store: store.clone(),
                reports: report_tx.clone(),
                progress: progress_tx.clone(),
                rows_out: metrics.rows_out.get_or_create(&job).clone(),
                restored_epoch,
            },
        ),
    ));

    // The stages, last first: each sends to the channels of its consumer,
    // wired before it (a stage's consumer comes after it in the plan).
    let mut stage_inputs: Vec<Option<Vec<mpsc::Sender<Tagged>>>> =
        vec![None; topology.stages.len()];
    let outputs_to = |target: Target,
                      stage_inputs: &[Option<Vec<mpsc::Sender<Tagged>>>]|
     -> Result<Vec<mpsc::Sender<Tagged>>> {
        match target {
            Target::Sink => Ok(vec![sink_tx.clone()]),
            Target::Exchange(next) => match stage_inputs.get(next) {
                Some(Some(txs)) => Ok(txs.clone()),
                _ => internal_err!("a task sends to stage {next}, which is not wired"),
            },
        }
    };
    for stage in topology.stages().collect::<Vec<_>>().into_iter().rev() {
        let Some(stage_plan) = plan.stages.get(stage.index) else {
            return internal_err!("a stage {} the plan does not have", stage.index);
        };
        let downstream = match stage.target {
            Target::Sink => Downstream::Sink(sink_tx.clone()),
            Target::Exchange(next) => Downstream::Exchange {
                outputs: outputs_to(stage.target, &stage_inputs)?,
                keys: exchange_keys(&plan, next, stage.side)?,
            },
        };
        let after = stage_plan.after.clone();
        let clocks = restore.clocks(stage, &topology);
        let restoring = restore.stage(stage);
        let mut txs = Vec::with_capacity(stage.workers);
        for w in 0..stage.workers {
            let (tx, rx) = channel::channel(stage.upstreams.len());
            txs.push(tx);
            let mut operator = worker::operator(&plan, stage.index, metrics)?;
            if store.is_some() {
                operator.enable_checkpoints();
            }
            if restore.restores(stage) {
                operator.restore(restoring.watermark, &restoring.chunks, w, stage.workers)?;
            }
            let span = info_span!(
                "worker",
                job = name,
                operator = operator.state().operator,
                worker = w
            );
            let task = format!("{} worker {w}", operator.state().operator);
            let figures = metrics.operator(&counters::stage_labels(
                name,
                operator.state().operator,
                stage.index,
                w,
            ));
            let run = worker::run_worker(
                Worker {
                    job: failer.job.clone(),
                    index: stage.first + w,
                    state_bytes: counters::StateBytes::restored(&restoring.chunks, stage.workers),
                    operator,
                    sides: stage.upstreams.iter().map(|u| u.side).collect(),
                    store: store.clone(),
                    reports: report_tx.clone(),
                    output: Output {
                        local: w,
                        upstream: stage.first_upstream + w,
                        after: after.clone(),
                        downstream: downstream.clone(),
                        figures,
                    },
                },
                rx,
                clocks.clone(),
            );
            tasks.push(spawn_task(
                executor,
                &failer,
                &alive,
                name,
                task,
                run.instrument(span),
            ));
        }
        stage_inputs[stage.index] = Some(txs);
    }

    let sources = plan.sources();
    for (tasks_of, input) in topology.sources.iter().zip(&sources) {
        let route = Arc::new(Route {
            event_time: input.event_time,
            processing_time: input.processing_time,
            declared: input.source.declares_watermarks(),
            changelog: input.changelog(),
            before: input.before.clone(),
            exchange: match tasks_of.target {
                Target::Exchange(stage) => Some(exchange_keys(&plan, stage, tasks_of.side)?),
                Target::Sink => None,
            },
            // A source's operators are all in `before`.
            after: Vec::new(),
            snapshot_end: topology.is_lookup_table_side(tasks_of),
        });
        let outputs = outputs_to(tasks_of.target, &stage_inputs)?;
        // The highest watermark any partition of this source sent: what an
        // idle partition moves to.
        let idle = input.source.idle_timeout().map(|timeout| {
            (
                timeout,
                Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
            )
        });
        for local in 0..tasks_of.partitions {
            let partition = tasks_of.first + local;
            let restored = restore.sources[partition].clone();
            let from = match &restored {
                Some(state) => Some(SourcePosition(state.position)),
                None if restore.from_checkpoint => input.source.added_partition_start(local)?,
                None => None,
            };
            let reader = input.source.open(local, from)?;
            tasks.push(spawn_task(
                executor,
                &failer,
                &alive,
                name,
                format!("source partition {partition}"),
                source_task::run_source(SourceTask {
                    job: Arc::from(name),
                    partition,
                    upstream: tasks_of.first_upstream + local,
                    progress: progress_tx.clone(),
                    reader,
                    route: route.clone(),
                    outputs: outputs.clone(),
                    epochs: flush.subscribe(),
                    first_epoch: restored_epoch,
                    stop: stop.subscribe(),
                    reports: report_tx.clone(),
                    restored,
                    idle: idle.clone(),
                    rows_in: metrics.rows_in.get_or_create(&job).clone(),
                    counters: counters.clone(),
                }),
            ));
        }
    }
    Ok(JobHandle {
        bounded: sources.iter().all(|s| s.source.bounded()),
        bounded_partitions: topology
            .sources
            .iter()
            .zip(&sources)
            .filter(|(_, s)| s.source.bounded())
            .map(|(t, _)| t.partitions)
            .sum(),
        progress,
        flush,
        checkpoints,
        commands: commands_tx,
        counters,
        tasks,
    })
}

/// Spawn one task of job `job`, named `task`: in a span naming both,
/// guarded, so that an error or panic in it fails the job, and counted in
/// `alive` while it runs (a stop waits for every task to end).
fn spawn_task<F>(
    executor: &Executor,
    failer: &Failer,
    alive: &Arc<watch::Sender<usize>>,
    job: &str,
    task: String,
    future: F,
) -> tokio::task::AbortHandle
where
    F: Future<Output = Result<()>> + Send + 'static,
{
    let span = info_span!("job task", job, task = %task);
    alive.send_modify(|n| *n += 1);
    let counted = Alive(alive.clone());
    let guarded = failer.guard(task, future);
    executor.spawn(
        async move {
            // Dropped when the task ends, however it ends (aborted too).
            let _counted = counted;
            guarded.await
        }
        .instrument(span),
    )
}

/// One running task of a job, counted in the job's `alive`.
struct Alive(Arc<watch::Sender<usize>>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The keys rows are exchanged by to the workers of stage `stage`: the
/// join's keys of the sender's side, or the aggregate's or TopN's
/// partition keys.
fn exchange_keys(
    plan: &StreamPlan,
    stage: usize,
    side: Option<Side>,
) -> Result<Vec<Arc<dyn PhysicalExpr>>> {
    match (plan.stages.get(stage).map(|s| &s.operator), side) {
        (Some(StageOperator::Join(join)), Some(side)) => Ok(join.keys[side.index()].clone()),
        (Some(StageOperator::Aggregate(spec)), _) => Ok(spec
            .partition_keys
            .iter()
            .map(|&k| spec.group[k].clone())
            .collect()),
        (Some(StageOperator::TopN(spec)), _) => Ok(spec.partition.clone()),
        (Some(StageOperator::OverWindow(spec)), _) => Ok(spec.partition.clone()),
        (Some(StageOperator::Join(_)), None) => {
            internal_err!("rows sent to join stage {stage} without a side")
        }
        (None, _) => internal_err!("an exchange to a stage {stage} the plan does not have"),
    }
}
