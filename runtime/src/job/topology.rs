//! A job's topology: which tasks it runs, which channels connect them and
//! which exchange routes rows between them, as a pure function of the
//! stream plan ([`Topology::of`]). `job::start` wires tasks from it and
//! nothing else decides the dataflow's shape.
//!
//! ```text
//!  source alone:      partitions ─────────────────────────────────────> sink
//!  source, aggregate: partitions ─(exchange: group key)─> aggregate ──> sink
//!  join:              left  partitions ─┐(exchange:  join ──> sink
//!                     right partitions ─┘ join key)
//!  join, aggregate:   left, right ─(join key)─> join ─(group key)─> aggregate ──> sink
//! ```
//! A TopN takes the aggregate's place (exchanged by its partition key); a
//! plan has one or the other.
//! Source partitions are numbered across the plan's sources (a join's left,
//! then its right); workers across the stages (join, then aggregate). Both
//! numberings are a checkpoint's, so they must not change for a plan.

use crate::plan::{Side, StreamPlan};

/// A stateful stage of workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Join workers.
    Join,
    /// Aggregate workers.
    Aggregate,
    /// TopN workers.
    TopN,
}

/// Where a task sends its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Hash-exchanged to a stage's workers by that stage's keys (a join's
    /// keys for the sender's side, an aggregate's or a TopN's partition
    /// keys).
    Exchange(Stage),
    /// Straight to the sink task, after the plan's `after` operators.
    Sink,
}

/// The tasks that read one of the plan's sources: one per partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceTasks {
    /// Which side of the join it is (`None`: there is no join).
    pub(crate) side: Option<Side>,
    /// The number of its first partition, across the plan's sources.
    pub(crate) first: usize,
    /// How many partitions (tasks).
    pub(crate) partitions: usize,
    /// Does it have event time (send watermarks)?
    pub(crate) timed: bool,
    /// Where its rows go.
    pub(crate) target: Target,
}

/// One channel into a worker, as the worker's aligner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Upstream {
    /// The join side its rows belong to (join workers only).
    pub(crate) side: Option<Side>,
    /// Do its watermarks bound the worker's watermark? A regular join's do
    /// not (it forwards no watermark but the end: see `operators::join`),
    /// nor do those of an input without event time; an interval join's do.
    pub(crate) timed: bool,
}

/// The workers of one stateful stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageWorkers {
    /// Which stage.
    pub(crate) stage: Stage,
    /// The index of its first worker among all the job's workers.
    pub(crate) first: usize,
    /// How many workers.
    pub(crate) workers: usize,
    /// Each worker's upstreams, numbered as their senders number themselves
    /// (source partitions, or the previous stage's workers).
    pub(crate) upstreams: Vec<Upstream>,
    /// Where its output goes.
    pub(crate) target: Target,
}

/// A job's tasks and how they connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topology {
    /// The source tasks, per source of the plan (left, then right).
    pub(crate) sources: Vec<SourceTasks>,
    /// The join stage, if the plan joins.
    pub(crate) join: Option<StageWorkers>,
    /// The keyed stage after the join (or after the sources): the
    /// aggregate or the TopN, if the plan has one.
    pub(crate) keyed: Option<StageWorkers>,
    /// How many tasks send to the sink.
    pub(crate) sink_upstreams: usize,
}

/// What the topology depends on in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Per source (left, then right): partitions and whether it has event time.
    pub(crate) sources: Vec<(usize, bool)>,
    /// Does it join its (two) sources?
    pub(crate) join: bool,
    /// Does its join forward its inputs' watermark (an interval join, whose
    /// state the watermark cleans)? A regular join forwards only the end.
    pub(crate) join_timed: bool,
    /// Does it aggregate?
    pub(crate) aggregate: bool,
    /// Does it keep a TopN (in the aggregate's place)?
    pub(crate) top_n: bool,
    /// Workers per stage.
    pub(crate) parallelism: usize,
}

impl Shape {
    /// The shape of `plan`.
    pub(crate) fn of(plan: &StreamPlan) -> Self {
        Self {
            sources: plan
                .sources()
                .iter()
                .map(|s| (s.source.partitions().max(1), s.event_time.is_some()))
                .collect(),
            join: plan.join().is_some(),
            join_timed: plan.join().is_some_and(|j| j.interval.is_some()),
            aggregate: plan.aggregate.is_some(),
            top_n: plan.top_n.is_some(),
            parallelism: plan.parallelism.max(1),
        }
    }
}

impl Topology {
    /// The topology of `plan`.
    pub(crate) fn of(plan: &StreamPlan) -> Self {
        Self::from_shape(&Shape::of(plan))
    }

    /// The topology of a plan of this shape.
    pub(crate) fn from_shape(shape: &Shape) -> Self {
        let parallelism = shape.parallelism.max(1);
        let keyed_stage = match (shape.aggregate, shape.top_n) {
            (true, _) => Some(Stage::Aggregate),
            (false, true) => Some(Stage::TopN),
            (false, false) => None,
        };
        let keyed_target = keyed_stage.map_or(Target::Sink, Target::Exchange);
        let mut first = 0;
        let sources: Vec<SourceTasks> = shape
            .sources
            .iter()
            .zip(Side::BOTH)
            .map(|(&(partitions, timed), side)| {
                let tasks = SourceTasks {
                    side: shape.join.then_some(side),
                    first,
                    partitions,
                    timed,
                    target: match shape.join {
                        true => Target::Exchange(Stage::Join),
                        false => keyed_target,
                    },
                };
                first += partitions;
                tasks
            })
            .collect();
        let partition_upstreams = |timed_if_source: bool| -> Vec<Upstream> {
            sources
                .iter()
                .flat_map(|s| {
                    let upstream = Upstream {
                        side: s.side,
                        timed: timed_if_source && s.timed,
                    };
                    std::iter::repeat_n(upstream, s.partitions)
                })
                .collect()
        };
        let join = shape.join.then(|| StageWorkers {
            stage: Stage::Join,
            first: 0,
            workers: parallelism,
            // A regular join forwards no watermark but the end: its inputs'
            // times do not bound what it emits. An interval join's do.
            upstreams: partition_upstreams(shape.join_timed),
            target: keyed_target,
        });
        let keyed = keyed_stage.map(|stage| StageWorkers {
            stage,
            first: join.as_ref().map_or(0, |j| j.workers),
            workers: parallelism,
            upstreams: match &join {
                Some(join) => vec![
                    Upstream {
                        side: None,
                        timed: shape.join_timed,
                    };
                    join.workers
                ],
                None => partition_upstreams(true),
            },
            target: Target::Sink,
        });
        let sink_upstreams = match (&join, &keyed) {
            (_, Some(keyed)) => keyed.workers,
            (Some(join), None) => join.workers,
            (None, None) => first,
        };
        Self {
            sources,
            join,
            keyed,
            sink_upstreams,
        }
    }

    /// Source partitions, across the plan's sources.
    pub(crate) fn partitions(&self) -> usize {
        self.sources.iter().map(|s| s.partitions).sum()
    }

    /// Workers, across the stages.
    pub(crate) fn workers(&self) -> usize {
        self.stages().map(|s| s.workers).sum()
    }

    /// The stages, in the order their workers are numbered.
    pub(crate) fn stages(&self) -> impl Iterator<Item = &StageWorkers> {
        self.join.iter().chain(&self.keyed)
    }

    /// The stage worker `worker` of a checkpoint with `old_workers` workers
    /// was in. A plan keeps its stages, and both stages have `parallelism`
    /// workers, so with two stages the join stage is the first half.
    pub(crate) fn old_stage(&self, worker: usize, old_workers: usize) -> Stage {
        let old_join = match (&self.join, &self.keyed) {
            (Some(_), Some(_)) => old_workers / 2,
            (Some(_), None) => old_workers,
            (None, _) => 0,
        };
        match &self.keyed {
            _ if worker < old_join => Stage::Join,
            Some(keyed) => keyed.stage,
            None => Stage::Aggregate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(side: Option<Side>) -> Upstream {
        Upstream { side, timed: true }
    }

    fn untimed(side: Option<Side>) -> Upstream {
        Upstream { side, timed: false }
    }

    #[test]
    fn a_source_alone_feeds_the_sink_from_every_partition() {
        let topology = Topology::from_shape(&Shape {
            sources: vec![(3, true)],
            join: false,
            join_timed: false,
            aggregate: false,
            top_n: false,
            parallelism: 4,
        });
        assert_eq!(
            topology,
            Topology {
                sources: vec![SourceTasks {
                    side: None,
                    first: 0,
                    partitions: 3,
                    timed: true,
                    target: Target::Sink,
                }],
                join: None,
                keyed: None,
                sink_upstreams: 3,
            }
        );
        assert_eq!(topology.workers(), 0);
    }

    #[test]
    fn a_source_exchanges_to_the_aggregate_which_feeds_the_sink() {
        let topology = Topology::from_shape(&Shape {
            sources: vec![(3, true)],
            join: false,
            join_timed: false,
            aggregate: true,
            top_n: false,
            parallelism: 2,
        });
        assert_eq!(
            topology.sources[0].target,
            Target::Exchange(Stage::Aggregate)
        );
        assert_eq!(
            topology.keyed,
            Some(StageWorkers {
                stage: Stage::Aggregate,
                first: 0,
                workers: 2,
                upstreams: vec![timed(None); 3],
                target: Target::Sink,
            })
        );
        assert_eq!(topology.join, None);
        assert_eq!(topology.sink_upstreams, 2);
        assert_eq!((topology.partitions(), topology.workers()), (3, 2));
    }

    #[test]
    fn an_aggregate_over_a_source_without_event_time_has_untimed_upstreams() {
        let topology = Topology::from_shape(&Shape {
            sources: vec![(2, false)],
            join: false,
            join_timed: false,
            aggregate: true,
            top_n: false,
            parallelism: 1,
        });
        let aggregate = topology.keyed.expect("an aggregate stage");
        assert_eq!(aggregate.upstreams, vec![untimed(None); 2]);
    }

    #[test]
    fn a_join_alone_takes_both_sides_and_feeds_the_sink() {
        let topology = Topology::from_shape(&Shape {
            sources: vec![(2, true), (1, false)],
            join: true,
            join_timed: false,
            aggregate: false,
            top_n: false,
            parallelism: 3,
        });
        assert_eq!(
            topology.sources,
            vec![
                SourceTasks {
                    side: Some(Side::Left),
                    first: 0,
                    partitions: 2,
                    timed: true,
                    target: Target::Exchange(Stage::Join),
                },
                SourceTasks {
                    side: Some(Side::Right),
                    first: 2,
                    partitions: 1,
                    timed: false,
                    target: Target::Exchange(Stage::Join),
                },
            ]
        );
        assert_eq!(
            topology.join,
            Some(StageWorkers {
                stage: Stage::Join,
                first: 0,
                workers: 3,
                // Each partition's side, none of them bounding the watermark.
                upstreams: vec![
                    untimed(Some(Side::Left)),
                    untimed(Some(Side::Left)),
                    untimed(Some(Side::Right)),
                ],
                target: Target::Sink,
            })
        );
        assert_eq!(topology.keyed, None);
        assert_eq!(topology.sink_upstreams, 3);
    }

    #[test]
    fn a_join_exchanges_to_the_aggregate_whose_workers_come_after_its_own() {
        let topology = Topology::from_shape(&Shape {
            sources: vec![(1, true), (2, true)],
            join: true,
            join_timed: false,
            aggregate: true,
            top_n: false,
            parallelism: 2,
        });
        let join = topology.join.clone().expect("a join stage");
        assert_eq!(join.target, Target::Exchange(Stage::Aggregate));
        assert_eq!(join.upstreams.len(), 3);
        assert_eq!(
            topology.keyed,
            Some(StageWorkers {
                stage: Stage::Aggregate,
                first: 2,
                workers: 2,
                upstreams: vec![untimed(None); 2],
                target: Target::Sink,
            })
        );
        assert_eq!(topology.sink_upstreams, 2);
        assert_eq!(topology.workers(), 4);
        let stages: Vec<Stage> = topology.stages().map(|s| s.stage).collect();
        assert_eq!(stages, [Stage::Join, Stage::Aggregate]);
    }

    #[test]
    fn a_checkpoints_workers_map_to_the_stages_they_were_in() {
        let shape = |join, aggregate| Shape {
            sources: if join {
                vec![(1, true), (1, true)]
            } else {
                vec![(1, true)]
            },
            join,
            join_timed: false,
            aggregate,
            top_n: false,
            parallelism: 2,
        };
        let both = Topology::from_shape(&shape(true, true));
        let stages: Vec<Stage> = (0..4).map(|w| both.old_stage(w, 4)).collect();
        assert_eq!(
            stages,
            [Stage::Join, Stage::Join, Stage::Aggregate, Stage::Aggregate]
        );
        let join = Topology::from_shape(&shape(true, false));
        assert_eq!(join.old_stage(1, 2), Stage::Join);
        let aggregate = Topology::from_shape(&shape(false, true));
        assert_eq!(aggregate.old_stage(0, 2), Stage::Aggregate);
    }

    #[test]
    fn a_top_n_takes_the_aggregates_place() {
        let topology = Topology::from_shape(&Shape {
            sources: vec![(2, true)],
            join: false,
            join_timed: false,
            aggregate: false,
            top_n: true,
            parallelism: 3,
        });
        assert_eq!(topology.sources[0].target, Target::Exchange(Stage::TopN));
        assert_eq!(
            topology.keyed,
            Some(StageWorkers {
                stage: Stage::TopN,
                first: 0,
                workers: 3,
                upstreams: vec![timed(None); 2],
                target: Target::Sink,
            })
        );
        assert_eq!(topology.sink_upstreams, 3);
        assert_eq!(topology.old_stage(2, 3), Stage::TopN);
    }

    #[test]
    fn an_interval_join_passes_its_inputs_watermarks_on() {
        let topology = Topology::from_shape(&Shape {
            sources: vec![(1, true), (2, true)],
            join: true,
            join_timed: true,
            aggregate: true,
            top_n: false,
            parallelism: 2,
        });
        let join = topology.join.clone().expect("a join stage");
        assert_eq!(
            join.upstreams,
            vec![
                timed(Some(Side::Left)),
                timed(Some(Side::Right)),
                timed(Some(Side::Right))
            ]
        );
        let aggregate = topology.keyed.expect("an aggregate stage");
        assert_eq!(aggregate.upstreams, vec![timed(None); 2]);
    }
}
