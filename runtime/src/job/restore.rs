//! What each task of a job starts from when a checkpoint is restored: the
//! checkpoint's parts sorted by the task that takes them.
//!
//! Sources take their partition's position, largest event time, last
//! watermark and the splits it still had to read (the plan's sources were
//! re-made to read those first: `Manifest::splits_restored`); each stage's workers take every old worker's chunks of that
//! stage (each keeps the keys that hash to it, so the parallelism may
//! change) and the highest watermark among them; a worker's upstreams start
//! from the watermarks their senders had at the barrier.

use datafusion::arrow::array::RecordBatch;

use super::aligner::UpstreamClock;
use super::topology::{Stage, StageWorkers, Topology};
use crate::checkpoint::{PartitionKey, Restored, SourceState};
use crate::plan::PlanInput;

/// What one stage's workers restore: the old workers' chunks and their
/// largest watermark.
#[derive(Debug)]
pub(crate) struct StageRestore {
    /// Did the checkpoint have workers of this stage?
    pub(crate) restored: bool,
    /// Their largest watermark.
    pub(crate) watermark: i64,
    /// Their chunks, each old worker's in order.
    pub(crate) chunks: Vec<(String, RecordBatch)>,
}

impl Default for StageRestore {
    fn default() -> Self {
        Self {
            restored: false,
            // No watermark seen yet.
            watermark: i64::MIN,
            chunks: Vec::new(),
        }
    }
}

/// A checkpoint, sorted by the tasks that restore it.
#[derive(Debug, Default)]
pub(crate) struct Restore {
    /// Per source partition (across the plan's sources), its state.
    pub(crate) sources: Vec<Option<SourceState>>,
    /// Is it a checkpoint's (rather than a fresh start)? Then a partition
    /// without state is one its source gained since.
    pub(crate) from_checkpoint: bool,
    /// Each stage's part, in the plan's order of stages.
    pub(crate) stages: Vec<StageRestore>,
}

impl Restore {
    /// Sort `restored` (nothing when the job starts afresh) by the tasks of
    /// `topology`, whose source partitions are `keys` (the plan's
    /// `partition_keys`).
    pub(crate) fn of(
        restored: Option<&Restored>,
        topology: &Topology,
        keys: &[PartitionKey],
    ) -> Self {
        let partitions = topology.partitions();
        let mut restore = Restore {
            sources: vec![None; partitions],
            stages: topology.stages().map(|_| StageRestore::default()).collect(),
            ..Default::default()
        };
        let Some(restored) = restored else {
            return restore;
        };
        restore.from_checkpoint = true;
        let manifest = &restored.manifest;
        if manifest.partitions.len() == manifest.sources.len() {
            // By source and partition: a partition the source gained since
            // has no state and starts afresh.
            for (key, state) in manifest.partitions.iter().zip(&manifest.sources) {
                if let Some(p) = keys.iter().position(|k| k == key) {
                    restore.sources[p] = Some(state.clone());
                }
            }
        } else {
            // A manifest from before partitions were keyed: by order.
            for (p, state) in manifest.sources.iter().enumerate() {
                if p < partitions {
                    restore.sources[p] = Some(state.clone());
                }
            }
        }
        let old_workers = restored.manifest.workers;
        for (w, (o, chunks)) in restored
            .manifest
            .operators
            .iter()
            .zip(&restored.operators)
            .enumerate()
        {
            let Some(stage) = restore.stages.get_mut(topology.old_stage(w, old_workers)) else {
                continue;
            };
            stage.restored = true;
            stage.watermark = stage.watermark.max(o.watermark);
            stage.chunks.extend(chunks.iter().cloned());
        }
        restore
    }

    /// What `stage`'s part of the checkpoint is.
    pub(crate) fn stage(&self, stage: &StageWorkers) -> &StageRestore {
        const NONE: &StageRestore = &StageRestore {
            restored: false,
            watermark: i64::MIN,
            chunks: Vec::new(),
        };
        self.stages.get(stage.index).unwrap_or(NONE)
    }

    /// Should `stage`'s operators restore at all? A join's only from its
    /// own chunks; an aggregate's or TopN's also when only sources were
    /// restored (it then takes the sources' watermark).
    pub(crate) fn restores(&self, stage: &StageWorkers) -> bool {
        match stage.stage {
            Stage::Join | Stage::TtlJoin | Stage::LookupJoin => self.stage(stage).restored,
            Stage::Aggregate | Stage::TopN | Stage::OverWindow => {
                self.stage(stage).restored || self.sources.iter().any(Option::is_some)
            }
        }
    }

    /// The clocks a worker of `stage` starts its upstreams with: what each
    /// source partition had sent at the barrier (an ended one's is +inf),
    /// or, behind a stage, that stage's watermark (every worker of a stage
    /// aligns over the same upstreams, so all had the same one at the
    /// barrier).
    pub(crate) fn clocks(&self, stage: &StageWorkers, topology: &Topology) -> Vec<UpstreamClock> {
        // Where each input's senders start among the stage's upstreams.
        let mut seen: Vec<(PlanInput, usize)> = Vec::new();
        stage
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, upstream)| {
                let start = match seen.iter().find(|(from, _)| *from == upstream.from) {
                    Some((_, start)) => *start,
                    None => {
                        seen.push((upstream.from, i));
                        i
                    }
                };
                let watermark = match upstream.from {
                    PlanInput::Source(s) => {
                        let partition = topology.sources.get(s).map_or(0, |s| s.first) + i - start;
                        match self.sources.get(partition).and_then(Option::as_ref) {
                            Some(s) if s.ended => i64::MAX,
                            Some(s) => s.watermark,
                            None => i64::MIN,
                        }
                    }
                    PlanInput::Stage(s) => self.stages.get(s).map_or(i64::MIN, |s| s.watermark),
                };
                UpstreamClock {
                    timed: upstream.timed,
                    watermark,
                }
            })
            .collect()
    }
}
