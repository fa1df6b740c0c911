//! The checkpoint coordinator: one task per job that starts epochs, gathers
//! every participant's report, and completes checkpoints in epoch order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use datafusion::common::Result;
use datafusion::error::DataFusionError;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::{
    JobStore, KEY_GROUPS, MANIFEST_VERSION, Manifest, OperatorState, SavepointInfo, SinkState,
    SourceState, Written, now_ms,
};
use crate::failure::JobFailure;
use crate::metrics::JobLabels;
use crate::progress::Progress;
use crate::sink::Sink;

/// What a participant tells the coordinator.
#[derive(Debug)]
pub enum Report {
    /// A source partition injected the barrier of `epoch` at `state`.
    Source {
        /// Which partition.
        partition: usize,
        /// The barrier's epoch.
        epoch: u64,
        /// Where it was.
        state: SourceState,
    },
    /// A source partition ended at `state`; it takes part in no more barriers.
    SourceEnded {
        /// Which partition.
        partition: usize,
        /// Where it ended.
        state: SourceState,
    },
    /// A worker wrote its state for `epoch`.
    Operator {
        /// Which worker.
        worker: usize,
        /// The barrier's epoch.
        epoch: u64,
        /// Its watermark at the barrier.
        watermark: i64,
        /// What it wrote, or why it could not.
        written: Result<Written>,
    },
    /// The sink wrote its state for `epoch` (`None`: the job finished, this
    /// is the last state).
    Sink {
        /// The barrier's epoch; `None` when every input ended.
        epoch: Option<u64>,
        /// What each part of the sink wrote.
        written: Result<Vec<(String, Written)>>,
    },
}

/// Checkpoint metrics, per job.
#[derive(Debug, Default, Clone)]
pub struct CheckpointMetrics {
    /// Completed checkpoints.
    pub completed: Family<JobLabels, Counter>,
    /// Checkpoints that failed (the job fails with them).
    pub failed: Family<JobLabels, Counter>,
    /// Seconds from injecting the barrier to writing the manifest, last one.
    pub duration: Family<JobLabels, Gauge<f64, AtomicU64>>,
    /// Bytes of state the last checkpoint names.
    pub size: Family<JobLabels, Gauge>,
    /// Bytes of the stateful operators' state (all workers) the last
    /// checkpoint names: the job's state size, without its view and sinks.
    pub state: Family<JobLabels, Gauge>,
    /// Bytes the last checkpoint wrote (its delta).
    pub written: Family<JobLabels, Gauge>,
    /// Seconds since the last completed checkpoint.
    pub age: Family<JobLabels, Gauge<f64, AtomicU64>>,
    /// The last completed epoch.
    pub epoch: Family<JobLabels, Gauge>,
}

impl CheckpointMetrics {
    /// Register the families.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "checkpoints_completed",
            "Checkpoints completed",
            self.completed.clone(),
        );
        registry.register(
            "checkpoints_failed",
            "Checkpoints that failed",
            self.failed.clone(),
        );
        registry.register(
            "checkpoint_duration_seconds",
            "Barrier injection to manifest written, last checkpoint",
            self.duration.clone(),
        );
        registry.register(
            "checkpoint_size_bytes",
            "State bytes the last checkpoint names",
            self.size.clone(),
        );
        registry.register(
            "job_state_bytes",
            "Bytes of a job's operator state (all workers), as of its last checkpoint",
            self.state.clone(),
        );
        registry.register(
            "checkpoint_written_bytes",
            "Bytes the last checkpoint wrote",
            self.written.clone(),
        );
        registry.register(
            "checkpoint_age_seconds",
            "Seconds since the last completed checkpoint",
            self.age.clone(),
        );
        registry.register(
            "checkpoint_epoch",
            "Epoch of the last completed checkpoint",
            self.epoch.clone(),
        );
    }
}

struct Pending {
    started: Instant,
    sources: Vec<Option<SourceState>>,
    operators: Vec<Option<(i64, Written)>>,
    sink: Option<Vec<(String, Written)>>,
}

/// A checkpoint asked for through the job's handle, and where its manifest
/// goes.
type Reply = oneshot::Sender<std::result::Result<Manifest, JobFailure>>;

/// What a job's handle asks its coordinator.
#[derive(Debug)]
pub enum Command {
    /// A checkpoint now: answered with its manifest once it is written and
    /// the sinks committed. The checkpoint stays through retention until a
    /// savepoint copies it (see [`super::JobStore::pin`]).
    Checkpoint(Reply),
    /// Stop with a final checkpoint: sources stop at its barrier without an
    /// end of input; answered once it is written, the sinks committed and
    /// every other task of the job ended.
    Stop(Reply),
    /// After the job ended: checkpoint (and commit) what its sinks got
    /// since, e.g. a sink created on a finished view.
    Late(oneshot::Sender<std::result::Result<(), String>>),
}

/// Runs a job's checkpoints.
pub struct Coordinator {
    /// Where checkpoints go (`None`: checkpoints are off; sinks still commit
    /// at every barrier).
    pub store: Option<JobStore>,
    /// The job's query and signatures, recorded in manifests.
    pub plan: super::ManifestPlan,
    /// Source partitions.
    pub partitions: usize,
    /// Each source partition's source and its number there (as
    /// `StreamPlan::partitions`), told of every completed checkpoint.
    pub sources: Vec<(Arc<dyn crate::source::Source>, usize)>,
    /// The same partitions by source and partition number, for manifests.
    pub keys: Vec<super::PartitionKey>,
    /// Aggregate workers.
    pub workers: usize,
    /// The checkpoint restored from, if any.
    pub last: Option<Manifest>,
    /// The savepoint `last` was read from: the job's folder is made to
    /// start there before anything else ([`JobStore::adopt`]).
    pub adopt: Option<SavepointInfo>,
    /// Barrier epochs: bumping it makes the sources inject a barrier.
    pub epochs: Arc<watch::Sender<u64>>,
    /// The epoch at whose barrier the sources stop (stop-with-savepoint);
    /// always set before `epochs` reaches it.
    pub stop: Arc<watch::Sender<Option<u64>>>,
    /// The job's tasks still running, this one included.
    pub alive: watch::Receiver<usize>,
    /// The sink, to commit.
    pub sink: Arc<dyn Sink>,
    /// Progress, to mark the job finished or failed.
    pub progress: Arc<watch::Sender<Progress>>,
    /// Metrics.
    pub metrics: CheckpointMetrics,
    /// Labels.
    pub labels: JobLabels,
    /// The job had finished before it started (restored as finished).
    pub finished: bool,
    /// What the job's handle asks.
    pub commands: mpsc::UnboundedReceiver<Command>,
    /// The most bytes of operator state the job may keep (its
    /// `state_size_limit`), measured at each checkpoint as
    /// `weir_job_state_bytes` is; past it the job fails.
    pub state_limit: Option<u64>,
}

/// A job's operator state grew past its `state_size_limit`: the job fails
/// with this, its checkpoint (the one that measured it) complete, so that
/// it can be restarted with a higher limit from there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "its state is {size} bytes as of checkpoint {epoch}, past its state_size_limit of {limit} bytes"
)]
pub struct StateSizeLimitExceeded {
    /// The checkpoint that measured it.
    pub epoch: u64,
    /// Bytes of operator state (all workers), as `weir_job_state_bytes`.
    pub size: u64,
    /// The limit, in bytes.
    pub limit: u64,
}

/// Checkpoints asked for and not yet answered.
#[derive(Default)]
struct Waiting {
    /// `checkpoint_now`: answered by the first checkpoint of at least the epoch.
    checkpoints: Vec<(u64, Reply)>,
    /// `stop_with_savepoint`: the stop's epoch, once started, and who asked.
    stop: Option<u64>,
    stoppers: Vec<Reply>,
    /// Late checkpoints asked for before the job ended.
    late: Vec<oneshot::Sender<std::result::Result<(), String>>>,
}

/// The source state of a partition that ended before any report.
const ENDED: SourceState = SourceState {
    position: 0,
    max_time: i64::MIN,
    watermark: i64::MAX,
    ended: true,
    splits: None,
};

impl Coordinator {
    /// Run until the job finishes or stops, or a checkpoint fails (the
    /// error fails the job).
    pub async fn run(mut self, mut reports: mpsc::UnboundedReceiver<Report>) -> Result<()> {
        let mut waiting = Waiting::default();
        if let (Some(info), Some(store), Some(last)) = (&self.adopt, &self.store, &self.last) {
            match store.adopt(info, last).await {
                Ok(manifest) => self.last = Some(manifest),
                Err(err) => {
                    return Err(self.fail(
                        format!("starting from savepoint \"{}\" failed", info.name),
                        err,
                    ));
                }
            }
        }
        if self.finished {
            let sources = self
                .last
                .as_ref()
                .map(|m| m.sources.clone())
                .unwrap_or_default();
            self.serve_ended(sources, waiting).await;
            return Ok(());
        }
        let interval = self.store.as_ref().and_then(|s| s.config().interval);
        let mut tick = tokio::time::interval(interval.unwrap_or(Duration::from_secs(3600)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut age = tokio::time::interval(Duration::from_secs(1));
        let mut last_completed = Instant::now();
        let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
        let mut ended_sources: Vec<Option<SourceState>> = vec![None; self.partitions];
        let mut sources_alive = self.partitions;
        let mut final_state: Option<Result<Vec<(String, Written)>>> = None;
        if let Some(last) = &self.last {
            for (p, state) in last.sources.iter().enumerate() {
                if state.ended && p < ended_sources.len() {
                    ended_sources[p] = Some(state.clone());
                }
            }
        }
        loop {
            tokio::select! {
                _ = tick.tick(), if interval.is_some() && waiting.stop.is_none() => {
                    // One checkpoint in flight at a time; a slow one delays the next.
                    let completed = self.last.as_ref().map_or(0, |m| m.epoch);
                    if completed >= *self.epochs.borrow() && sources_alive > 0 {
                        self.epochs.send_modify(|e| *e += 1);
                    }
                }
                _ = age.tick() => {
                    if self.store.is_some() && self.last.is_some() {
                        self.metrics.age.get_or_create(&self.labels).set(last_completed.elapsed().as_secs_f64());
                    }
                }
                Some(command) = self.commands.recv() => self.command(command, &mut waiting),
                report = reports.recv() => {
                    let Some(report) = report else { return Ok(()) };
                    let finished = match report {
                        Report::Source { partition, epoch, state } => {
                            self.entry(&mut pending, epoch).sources[partition] = Some(state);
                            None
                        }
                        Report::SourceEnded { partition, state } => {
                            if ended_sources[partition].is_none() {
                                sources_alive = sources_alive.saturating_sub(1);
                            }
                            ended_sources[partition] = Some(state);
                            None
                        }
                        Report::Operator { worker, epoch, watermark, written } => match written {
                            Ok(written) => {
                                self.entry(&mut pending, epoch).operators[worker] = Some((watermark, written));
                                None
                            }
                            Err(err) => {
                                return Err(self.fail(format!("checkpoint {epoch} failed"), err));
                            }
                        },
                        Report::Sink { epoch: Some(epoch), written } => match written {
                            Ok(written) => {
                                self.entry(&mut pending, epoch).sink = Some(written);
                                None
                            }
                            Err(err) => {
                                return Err(self.fail(format!("checkpoint {epoch} failed"), err));
                            }
                        },
                        Report::Sink { epoch: None, written } => Some(written),
                    };
                    if let Some(written) = finished {
                        final_state = Some(written);
                    }
                    while let Some((&epoch, first)) = pending.iter().next() {
                        let ready = first.sink.is_some()
                            && first.sources.iter().zip(&ended_sources).all(|(s, e)| s.is_some() || e.is_some())
                            && first.operators.iter().all(Option::is_some);
                        if !ready {
                            break;
                        }
                        let Some(done) = pending.remove(&epoch) else { break };
                        let sources = done.sources.into_iter().zip(&ended_sources)
                            .map(|(s, e)| s.or_else(|| e.clone()).unwrap_or(SourceState { position: 0, max_time: i64::MIN, watermark: i64::MIN, ended: false, splits: None }))
                            .collect();
                        let operators = done.operators.into_iter().map(|o| o.unwrap_or((i64::MIN, Written::default()))).collect();
                        match self.complete(epoch, sources, operators, done.sink.unwrap_or_default(), false, done.started).await {
                            Ok(()) => last_completed = Instant::now(),
                            Err(err) => {
                                return Err(self.fail(format!("checkpoint {epoch} failed"), err));
                            }
                        }
                        if let Some(over) = self.over_limit(epoch) {
                            warn!(job = %self.labels.job, epoch, size = over.size, limit = over.limit, "the job's state is past its state_size_limit; the job fails");
                            return Err(DataFusionError::External(Box::new(over)));
                        }
                        self.answer(&mut waiting.checkpoints);
                        self.retain(epoch).await;
                        if waiting.stop == Some(epoch) {
                            self.stopped(waiting).await;
                            return Ok(());
                        }
                    }
                    // The job ended. Epochs the sink saw complete first (their
                    // workers' writes may still be arriving); epochs it never
                    // saw never will be (ended tasks see no more barriers).
                    if final_state.is_some() && pending.values().all(|p| p.sink.is_none()) {
                        let written = match final_state.take().unwrap_or_else(|| Ok(Vec::new())) {
                            Ok(w) => w,
                            Err(err) => {
                                return Err(self.fail("the final checkpoint failed".to_string(), err));
                            }
                        };
                        if written.is_empty() && self.store.is_some() {
                            // Nothing to commit: no final checkpoint (see
                            // `Sink::writes_out`); a restart recomputes the
                            // end from the last one.
                            self.progress.send_modify(|p| p.finished = true);
                            break;
                        }
                        let epoch = (*self.epochs.borrow()).max(self.last.as_ref().map_or(0, |m| m.epoch)) + 1;
                        let sources = ended_sources.iter().map(|s| s.clone().unwrap_or(ENDED)).collect();
                        if let Err(err) = self.complete(epoch, sources, Vec::new(), written, true, Instant::now()).await {
                            return Err(self.fail("the final checkpoint failed".to_string(), err));
                        }
                        self.answer(&mut waiting.checkpoints);
                        self.retain(epoch).await;
                        self.progress.send_modify(|p| p.finished = true);
                        break;
                    }
                }
            }
        }
        let sources: Vec<SourceState> = ended_sources
            .iter()
            .map(|s| s.clone().unwrap_or(ENDED))
            .collect();
        self.serve_ended(sources, waiting).await;
        Ok(())
    }

    /// Take a command from the job's handle while the job runs.
    fn command(&mut self, command: Command, waiting: &mut Waiting) {
        let off = || {
            JobFailure::from(DataFusionError::Configuration(
                "checkpoints are off for this job (set checkpoint_interval)".to_string(),
            ))
        };
        match command {
            Command::Checkpoint(reply) => {
                if self.store.is_none() {
                    let _ = reply.send(Err(off()));
                    return;
                }
                let mut epoch = 0;
                self.epochs.send_modify(|e| {
                    *e += 1;
                    epoch = *e;
                });
                waiting.checkpoints.push((epoch, reply));
            }
            Command::Stop(reply) => {
                if self.store.is_none() {
                    let _ = reply.send(Err(off()));
                    return;
                }
                waiting.stoppers.push(reply);
                if waiting.stop.is_none() {
                    let mut epoch = 0;
                    // The stop epoch is set under the epochs' lock, before
                    // the new epoch is seen: a source that sees the epoch
                    // sees the stop, and any later bump is past it.
                    self.epochs.send_modify(|e| {
                        *e += 1;
                        epoch = *e;
                        self.stop.send_replace(Some(epoch));
                    });
                    info!(job = %self.labels.job, epoch, "stopping with a final checkpoint");
                    waiting.stop = Some(epoch);
                }
            }
            // Served once the job ended.
            Command::Late(reply) => waiting.late.push(reply),
        }
    }

    /// Answer every `checkpoint_now` that the last checkpoint covers,
    /// pinning it for each so that retention keeps it until a savepoint
    /// copied it.
    fn answer(&self, checkpoints: &mut Vec<(u64, Reply)>) {
        let Some(last) = &self.last else { return };
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(checkpoints)
            .into_iter()
            .partition(|(epoch, _)| *epoch <= last.epoch);
        *checkpoints = later;
        for (_, reply) in due {
            if let Some(store) = &self.store {
                store.pin(last.epoch);
            }
            if let Err(Ok(_)) = reply.send(Ok(last.clone())) {
                // Nobody waits any more: nothing will copy it.
                if let Some(store) = &self.store {
                    store.unpin(last.epoch);
                }
            }
        }
    }

    /// The stop's checkpoint is complete: wait until every other task ended,
    /// mark the job stopped and answer everyone waiting.
    async fn stopped(&mut self, mut waiting: Waiting) {
        // Each task ends once its upstreams are gone; 1 is this one.
        let _ = self.alive.wait_for(|alive| *alive <= 1).await;
        let Some(last) = self.last.clone() else {
            return;
        };
        self.progress.send_modify(|p| p.stopped = Some(last.epoch));
        info!(job = %self.labels.job, epoch = last.epoch, "job stopped with a final checkpoint");
        // Checkpoints asked for after the stop began: the stop's covers all
        // they could have covered.
        for (epoch, _) in &mut waiting.checkpoints {
            *epoch = last.epoch;
        }
        self.answer(&mut waiting.checkpoints);
        for reply in waiting.stoppers {
            let _ = reply.send(Ok(last.clone()));
        }
    }

    /// After the job ended: checkpoint on request what its sinks got since
    /// (a sink created after the end), so a restart neither loses nor
    /// repeats that output; a stop ends the coordinator.
    async fn serve_ended(&mut self, sources: Vec<SourceState>, mut waiting: Waiting) {
        // Checkpoints and stops asked for while the job ended: one
        // checkpoint of the end answers them.
        if !waiting.checkpoints.is_empty() || !waiting.stoppers.is_empty() {
            let outcome = self.late_final(sources.clone()).await;
            if let Err(err) = &outcome {
                let failure = JobFailure::from(DataFusionError::Execution(err.to_string()));
                for reply in waiting.stoppers.drain(..) {
                    let _ = reply.send(Err(failure.clone()));
                }
            }
            self.answer_ended(&mut waiting.checkpoints, outcome);
        }
        if !waiting.stoppers.is_empty() {
            self.stopped(waiting).await;
            return;
        }
        let early = std::mem::take(&mut waiting.late)
            .into_iter()
            .map(Command::Late);
        let mut early: std::collections::VecDeque<Command> = early.collect();
        loop {
            let command = match early.pop_front() {
                Some(command) => command,
                None => match self.commands.recv().await {
                    Some(command) => command,
                    None => break,
                },
            };
            match command {
                Command::Late(reply) => {
                    let result = self.late_final(sources.clone()).await;
                    let _ = reply.send(result.map_err(|e| e.to_string()));
                }
                Command::Checkpoint(reply) => {
                    let outcome = self.late_final(sources.clone()).await;
                    self.answer_ended(&mut vec![(0, reply)], outcome);
                }
                Command::Stop(reply) => {
                    let outcome = match self.store.is_some() {
                        true => self.late_final(sources.clone()).await,
                        false => Err(DataFusionError::Configuration(
                            "checkpoints are off for this job (set checkpoint_interval)"
                                .to_string(),
                        )),
                    };
                    match outcome {
                        Ok(()) => {
                            self.stopped(Waiting {
                                stoppers: vec![reply],
                                ..Default::default()
                            })
                            .await;
                            return;
                        }
                        Err(err) => {
                            let _ = reply.send(Err(err.into()));
                        }
                    }
                }
            }
        }
    }

    fn answer_ended(&mut self, checkpoints: &mut Vec<(u64, Reply)>, outcome: Result<()>) {
        match outcome {
            Ok(()) => {
                for (epoch, _) in checkpoints.iter_mut() {
                    *epoch = 0;
                }
                self.answer(checkpoints);
            }
            Err(err) => {
                let failure = JobFailure::from(err);
                for (_, reply) in checkpoints.drain(..) {
                    let _ = reply.send(Err(failure.clone()));
                }
            }
        }
    }

    async fn late_final(&mut self, sources: Vec<SourceState>) -> Result<()> {
        let epoch = (*self.epochs.borrow()).max(self.last.as_ref().map_or(0, |m| m.epoch)) + 1;
        self.epochs.send_modify(|e| *e = epoch);
        let mut written = Vec::new();
        for (name, write) in self.sink.snapshot(epoch)? {
            written.push((
                name.clone(),
                match &self.store {
                    Some(store) => store.write(epoch, &format!("s-{name}"), write).await?,
                    None => Written {
                        pending: write.pending,
                        ..Default::default()
                    },
                },
            ));
        }
        self.complete(epoch, sources, Vec::new(), written, true, Instant::now())
            .await?;
        self.retain(epoch).await;
        Ok(())
    }

    fn entry<'a>(&self, pending: &'a mut BTreeMap<u64, Pending>, epoch: u64) -> &'a mut Pending {
        pending.entry(epoch).or_insert_with(|| Pending {
            started: Instant::now(),
            sources: vec![None; self.partitions],
            operators: (0..self.workers).map(|_| None).collect(),
            sink: None,
        })
    }

    /// Is the operator state the last checkpoint (of `epoch`) names past
    /// the job's `state_size_limit`?
    fn over_limit(&self, epoch: u64) -> Option<StateSizeLimitExceeded> {
        let limit = self.state_limit?;
        let size: u64 = self
            .last
            .as_ref()?
            .operators
            .iter()
            .map(|o| o.state.bytes())
            .sum();
        (size > limit).then_some(StateSizeLimitExceeded { epoch, size, limit })
    }

    /// A checkpoint failed: count it, and fail the job with it (`context`
    /// says which checkpoint; the error keeps its class).
    fn fail(&self, context: String, err: DataFusionError) -> DataFusionError {
        warn!(job = %self.labels.job, %context, %err, "checkpointing failed; the job stops");
        self.metrics.failed.get_or_create(&self.labels).inc();
        DataFusionError::Context(context, Box::new(err))
    }

    /// After checkpoint `epoch` completed (and was handed to whoever
    /// waited for it): remove what retention no longer keeps.
    async fn retain(&self, epoch: u64) {
        let Some(store) = &self.store else { return };
        if let Err(err) = store.cleanup(store.config().retain, epoch).await {
            warn!(job = %self.labels.job, %err, "removing old checkpoints failed; they stay until the next try");
        }
    }

    /// Write the manifest of `epoch`, then let the sinks commit.
    async fn complete(
        &mut self,
        epoch: u64,
        sources: Vec<SourceState>,
        operators: Vec<(i64, Written)>,
        sink: Vec<(String, Written)>,
        finished: bool,
        started: Instant,
    ) -> Result<()> {
        let pending: BTreeMap<String, Vec<String>> = sink
            .iter()
            .map(|(name, w)| (name.clone(), w.pending.clone()))
            .collect();
        let Some(store) = &self.store else {
            return self.sink.commit(&pending);
        };
        let previous = self.last.take();
        let mut manifest = Manifest {
            version: MANIFEST_VERSION,
            job: store.job().to_string(),
            epoch,
            plan: self.plan.clone(),
            finished,
            written_at_ms: now_ms(),
            key_groups: KEY_GROUPS.to_string(),
            workers: self.workers,
            sources,
            partitions: self.keys.clone(),
            operators: Vec::new(),
            sinks: BTreeMap::new(),
        };
        let mut written_bytes = 0;
        if !finished {
            for (w, (watermark, written)) in operators.into_iter().enumerate() {
                let mut state = previous
                    .as_ref()
                    .filter(|p| p.workers == self.workers)
                    .and_then(|p| p.operators.get(w))
                    .map(|o| o.state.clone())
                    .unwrap_or_default();
                state.apply(&written);
                written_bytes += written.put.iter().map(|c| c.bytes).sum::<u64>();
                manifest.operators.push(OperatorState { watermark, state });
            }
        }
        for (name, written) in &sink {
            let mut state = previous
                .as_ref()
                .and_then(|p| p.sinks.get(name))
                .map(|s| s.state.clone())
                .unwrap_or_default();
            state.apply(written);
            written_bytes += written.put.iter().map(|c| c.bytes).sum::<u64>();
            manifest.sinks.insert(
                name.clone(),
                SinkState {
                    state,
                    pending: written.pending.clone(),
                },
            );
        }
        crate::failpoint::hit("checkpoint-before-manifest");
        store.write_manifest(&manifest).await?;
        crate::failpoint::hit("checkpoint-after-manifest");
        self.sink.commit(&pending)?;
        for (state, (source, partition)) in manifest.sources.iter().zip(&self.sources) {
            source.checkpointed(*partition, crate::source::SourcePosition(state.position));
        }
        let elapsed = started.elapsed();
        let labels = &self.labels;
        self.metrics.completed.get_or_create(labels).inc();
        self.metrics
            .duration
            .get_or_create(labels)
            .set(elapsed.as_secs_f64());
        self.metrics
            .size
            .get_or_create(labels)
            .set(manifest.state_bytes() as i64);
        if !finished {
            let operators: u64 = manifest.operators.iter().map(|o| o.state.bytes()).sum();
            self.metrics
                .state
                .get_or_create(labels)
                .set(i64::try_from(operators).unwrap_or(i64::MAX));
        }
        self.metrics
            .written
            .get_or_create(labels)
            .set(written_bytes as i64);
        self.metrics.age.get_or_create(labels).set(0.0);
        self.metrics.epoch.get_or_create(labels).set(epoch as i64);
        debug!(job = %labels.job, epoch, ms = elapsed.as_millis() as u64, bytes = written_bytes, size = manifest.state_bytes(), "checkpoint complete");
        if finished {
            info!(job = %labels.job, epoch, "final checkpoint written");
        }
        self.last = Some(manifest);
        Ok(())
    }
}
