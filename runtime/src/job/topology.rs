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
//!  composed:          partitions ─> aggregate ─(its keys)─> TopN ──> sink
//!                     partitions ─> aggregate ─┐
//!                     partitions ─> aggregate ─┴(join key)─> join ──> sink
//! ```
//! Each stage (join, aggregate, TopN) is exchanged by its own keys; every
//! source and stage sends to exactly one consumer, a stage or the sink.
//!
//! Source partitions are numbered across the plan's sources (a join's left,
//! then its right); workers across the stages, a stage's inputs before it
//! (join, then aggregate). Both numberings are a checkpoint's, so they must
//! not change for a plan: the plan's order of sources and stages is theirs.
//! A task's upstreams are numbered by its inputs in order (a join's left
//! before its right), each input's senders in their own order: every
//! sender tags its messages with its number there.

use crate::plan::{PlanInput, Side, StageOperator, StreamPlan};

/// What kind of stateful stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Join workers.
    Join,
    /// Regular join workers with a state TTL: they take their inputs'
    /// watermarks (which drop rows, see `operators::join_state`), but
    /// their output has none, as any regular join's.
    TtlJoin,
    /// Lookup join workers: a stream (left) and a table (right), whose
    /// watermark is the stream's alone (see `operators::lookup_join`).
    LookupJoin,
    /// Aggregate workers.
    Aggregate,
    /// TopN workers.
    TopN,
    /// OVER window workers.
    OverWindow,
}

impl Stage {
    /// The kind of `operator`'s stage.
    pub(crate) fn of(operator: &StageOperator) -> Self {
        match operator {
            StageOperator::Join(spec) if spec.lookup() => Stage::LookupJoin,
            StageOperator::Join(spec) if spec.interval.is_none() && spec.ttl().is_some() => {
                Stage::TtlJoin
            }
            StageOperator::Join(_) => Stage::Join,
            StageOperator::Aggregate(_) => Stage::Aggregate,
            StageOperator::TopN(_) => Stage::TopN,
            StageOperator::OverWindow(_) => Stage::OverWindow,
        }
    }

    /// Do the watermarks of its upstreams bound its own, when a watermark
    /// bounds its output's event time (`timed`) or not? A regular join's do
    /// not (it forwards no watermark but the end: see `operators::join`);
    /// an interval join's do (its output is timed: see
    /// `operators::interval_join`), as do every other stage's. A join with
    /// a state TTL takes them to drop rows, though its output is untimed.
    fn takes_watermarks(self, timed: bool) -> bool {
        self != Stage::Join || timed
    }

    /// Does its input number `at` bound its watermark, when that input has
    /// event time? A lookup join's table side never does: a table has no
    /// event time, and the join's output is as old as its stream rows.
    fn timed_input(self, at: usize, timed: bool) -> bool {
        match self {
            Stage::LookupJoin => at == 0,
            _ => self.takes_watermarks(timed),
        }
    }

    /// Are its inputs a join's sides (left, right)?
    fn joins(self) -> bool {
        matches!(self, Stage::Join | Stage::TtlJoin | Stage::LookupJoin)
    }
}

/// Where a task sends its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Hash-exchanged to the workers of the stage of this number by that
    /// stage's keys (a join's keys for the sender's side, an aggregate's or
    /// a TopN's partition keys).
    Exchange(usize),
    /// Straight to the sink task.
    Sink,
}

/// The tasks that read one of the plan's sources: one per partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceTasks {
    /// Which side of the join it feeds (`None`: it feeds no join).
    pub(crate) side: Option<Side>,
    /// The number of its first partition, across the plan's sources.
    pub(crate) first: usize,
    /// How many partitions (tasks).
    pub(crate) partitions: usize,
    /// Does it have event time (send watermarks)?
    pub(crate) timed: bool,
    /// Where its rows go.
    pub(crate) target: Target,
    /// The upstream number of its first partition at its target.
    pub(crate) first_upstream: usize,
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
    /// What sends on it: a source's partitions or a stage's workers.
    pub(crate) from: PlanInput,
}

/// The workers of one stateful stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageWorkers {
    /// Its number among the plan's stages.
    pub(crate) index: usize,
    /// What kind of stage.
    pub(crate) stage: Stage,
    /// The index of its first worker among all the job's workers.
    pub(crate) first: usize,
    /// How many workers.
    pub(crate) workers: usize,
    /// Each worker's upstreams, numbered as their senders tag themselves.
    pub(crate) upstreams: Vec<Upstream>,
    /// Where its output goes.
    pub(crate) target: Target,
    /// The upstream number of its first worker at its target.
    pub(crate) first_upstream: usize,
    /// The join side it feeds (`None`: it feeds no join).
    pub(crate) side: Option<Side>,
}

/// A job's tasks and how they connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topology {
    /// The source tasks, per source of the plan.
    pub(crate) sources: Vec<SourceTasks>,
    /// The stages, in the order their workers are numbered.
    pub(crate) stages: Vec<StageWorkers>,
    /// How many tasks send to the sink.
    pub(crate) sink_upstreams: usize,
}

/// What the topology depends on in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Per source: partitions and whether it has event time.
    pub(crate) sources: Vec<(usize, bool)>,
    /// Per stage, in the plan's order: its kind, its inputs and whether a
    /// watermark bounds its output.
    pub(crate) stages: Vec<(Stage, Vec<PlanInput>, bool)>,
    /// What feeds the sink.
    pub(crate) output: PlanInput,
    /// Workers per stage.
    pub(crate) parallelism: usize,
}

impl Shape {
    /// The shape of `plan`.
    pub(crate) fn of(plan: &StreamPlan) -> Self {
        Self {
            sources: plan
                .sources
                .iter()
                .map(|s| (s.source.partitions().max(1), s.timed()))
                .collect(),
            stages: plan
                .stages
                .iter()
                .map(|s| (Stage::of(&s.operator), s.inputs.clone(), s.timed))
                .collect(),
            output: plan.output,
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
        let mut first = 0;
        let mut sources: Vec<SourceTasks> = shape
            .sources
            .iter()
            .map(|&(partitions, timed)| {
                let tasks = SourceTasks {
                    side: None,
                    first,
                    partitions,
                    timed,
                    target: Target::Sink,
                    first_upstream: 0,
                };
                first += partitions;
                tasks
            })
            .collect();
        let mut stages: Vec<StageWorkers> = shape
            .stages
            .iter()
            .enumerate()
            .map(|(index, (stage, _, _))| StageWorkers {
                index,
                stage: *stage,
                first: index * parallelism,
                workers: parallelism,
                upstreams: Vec::new(),
                target: Target::Sink,
                first_upstream: 0,
                side: None,
            })
            .collect();
        // Each stage's upstreams, its inputs' senders in order; each input
        // learns where it sends and its number there.
        for (index, (stage, inputs, stage_timed)) in shape.stages.iter().enumerate() {
            let mut upstreams = Vec::new();
            for (at, &input) in inputs.iter().enumerate() {
                let side = stage.joins().then(|| Side::BOTH[at.min(1)]);
                let (senders, timed) = match input {
                    PlanInput::Source(s) => {
                        let source = &mut sources[s];
                        source.side = side;
                        source.target = Target::Exchange(index);
                        source.first_upstream = upstreams.len();
                        (source.partitions, source.timed)
                    }
                    PlanInput::Stage(s) => {
                        let before = &mut stages[s];
                        before.side = side;
                        before.target = Target::Exchange(index);
                        before.first_upstream = upstreams.len();
                        (before.workers, shape.stages[s].2)
                    }
                };
                let upstream = Upstream {
                    side,
                    timed: timed && stage.timed_input(at, *stage_timed),
                    from: input,
                };
                upstreams.extend(std::iter::repeat_n(upstream, senders));
            }
            stages[index].upstreams = upstreams;
        }
        let sink_upstreams = match shape.output {
            PlanInput::Source(s) => sources.get(s).map_or(0, |s| s.partitions),
            PlanInput::Stage(s) => stages.get(s).map_or(0, |s| s.workers),
        };
        Self {
            sources,
            stages,
            sink_upstreams,
        }
    }

    /// Source partitions, across the plan's sources.
    pub(crate) fn partitions(&self) -> usize {
        self.sources.iter().map(|s| s.partitions).sum()
    }

    /// Workers, across the stages.
    pub(crate) fn workers(&self) -> usize {
        self.stages.iter().map(|s| s.workers).sum()
    }

    /// The stages, in the order their workers are numbered.
    pub(crate) fn stages(&self) -> impl Iterator<Item = &StageWorkers> {
        self.stages.iter()
    }

    /// Is `source` a lookup join's table side? It then sends the end of
    /// its snapshot, and no barrier before it (`Route::snapshot_end`).
    pub(crate) fn is_lookup_table_side(&self, source: &SourceTasks) -> bool {
        match source.target {
            Target::Exchange(stage) => {
                source.side == Some(Side::Right)
                    && self
                        .stages
                        .get(stage)
                        .is_some_and(|s| s.stage == Stage::LookupJoin)
            }
            Target::Sink => false,
        }
    }

    /// The stage (its number) worker `worker` of a checkpoint with
    /// `old_workers` workers was in. A plan keeps its stages, and every
    /// stage has the same number of workers, so the old workers split
    /// evenly among them, in order.
    pub(crate) fn old_stage(&self, worker: usize, old_workers: usize) -> usize {
        let stages = self.stages.len().max(1);
        let per_stage = (old_workers / stages).max(1);
        (worker / per_stage).min(stages - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(side: Option<Side>, timed: bool, from: PlanInput) -> Upstream {
        Upstream { side, timed, from }
    }

    fn shape(
        sources: Vec<(usize, bool)>,
        stages: Vec<(Stage, Vec<PlanInput>, bool)>,
        output: PlanInput,
        parallelism: usize,
    ) -> Shape {
        Shape {
            sources,
            stages,
            output,
            parallelism,
        }
    }

    use PlanInput::{Source as S, Stage as W};

    #[test]
    fn a_source_alone_feeds_the_sink_from_every_partition() {
        let topology = Topology::from_shape(&shape(vec![(3, true)], vec![], S(0), 4));
        assert_eq!(
            topology,
            Topology {
                sources: vec![SourceTasks {
                    side: None,
                    first: 0,
                    partitions: 3,
                    timed: true,
                    target: Target::Sink,
                    first_upstream: 0,
                }],
                stages: vec![],
                sink_upstreams: 3,
            }
        );
        assert_eq!(topology.workers(), 0);
    }

    #[test]
    fn a_source_exchanges_to_the_aggregate_which_feeds_the_sink() {
        let topology = Topology::from_shape(&shape(
            vec![(3, true)],
            vec![(Stage::Aggregate, vec![S(0)], true)],
            W(0),
            2,
        ));
        assert_eq!(topology.sources[0].target, Target::Exchange(0));
        assert_eq!(
            topology.stages,
            vec![StageWorkers {
                index: 0,
                stage: Stage::Aggregate,
                first: 0,
                workers: 2,
                upstreams: vec![upstream(None, true, S(0)); 3],
                target: Target::Sink,
                first_upstream: 0,
                side: None,
            }]
        );
        assert_eq!(topology.sink_upstreams, 2);
        assert_eq!((topology.partitions(), topology.workers()), (3, 2));
    }

    #[test]
    fn an_aggregate_over_a_source_without_event_time_has_untimed_upstreams() {
        let topology = Topology::from_shape(&shape(
            vec![(2, false)],
            vec![(Stage::Aggregate, vec![S(0)], false)],
            W(0),
            1,
        ));
        assert_eq!(
            topology.stages[0].upstreams,
            vec![upstream(None, false, S(0)); 2]
        );
    }

    #[test]
    fn a_join_alone_takes_both_sides_and_feeds_the_sink() {
        let topology = Topology::from_shape(&shape(
            vec![(2, true), (1, false)],
            vec![(Stage::Join, vec![S(0), S(1)], false)],
            W(0),
            3,
        ));
        assert_eq!(
            topology.sources,
            vec![
                SourceTasks {
                    side: Some(Side::Left),
                    first: 0,
                    partitions: 2,
                    timed: true,
                    target: Target::Exchange(0),
                    first_upstream: 0,
                },
                SourceTasks {
                    side: Some(Side::Right),
                    first: 2,
                    partitions: 1,
                    timed: false,
                    target: Target::Exchange(0),
                    first_upstream: 2,
                },
            ]
        );
        // Each partition's side, none of them bounding the watermark.
        assert_eq!(
            topology.stages[0].upstreams,
            vec![
                upstream(Some(Side::Left), false, S(0)),
                upstream(Some(Side::Left), false, S(0)),
                upstream(Some(Side::Right), false, S(1)),
            ]
        );
        assert_eq!(topology.sink_upstreams, 3);
    }

    #[test]
    fn a_join_exchanges_to_the_aggregate_whose_workers_come_after_its_own() {
        let topology = Topology::from_shape(&shape(
            vec![(1, true), (2, true)],
            vec![
                (Stage::Join, vec![S(0), S(1)], false),
                (Stage::Aggregate, vec![W(0)], false),
            ],
            W(1),
            2,
        ));
        let join = &topology.stages[0];
        assert_eq!(join.target, Target::Exchange(1));
        assert_eq!(join.upstreams.len(), 3);
        assert_eq!(
            topology.stages[1],
            StageWorkers {
                index: 1,
                stage: Stage::Aggregate,
                first: 2,
                workers: 2,
                upstreams: vec![upstream(None, false, W(0)); 2],
                target: Target::Sink,
                first_upstream: 0,
                side: None,
            }
        );
        assert_eq!(topology.sink_upstreams, 2);
        assert_eq!(topology.workers(), 4);
    }

    #[test]
    fn a_checkpoints_workers_map_to_the_stages_they_were_in() {
        let both = Topology::from_shape(&shape(
            vec![(1, true), (1, true)],
            vec![
                (Stage::Join, vec![S(0), S(1)], false),
                (Stage::Aggregate, vec![W(0)], false),
            ],
            W(1),
            2,
        ));
        let stages: Vec<usize> = (0..4).map(|w| both.old_stage(w, 4)).collect();
        assert_eq!(stages, [0, 0, 1, 1]);
        // A checkpoint of another parallelism splits alike.
        let stages: Vec<usize> = (0..6).map(|w| both.old_stage(w, 6)).collect();
        assert_eq!(stages, [0, 0, 0, 1, 1, 1]);
        let aggregate = Topology::from_shape(&shape(
            vec![(1, true)],
            vec![(Stage::Aggregate, vec![S(0)], true)],
            W(0),
            2,
        ));
        assert_eq!(aggregate.old_stage(1, 2), 0);
    }

    #[test]
    fn a_top_n_over_an_aggregate_takes_its_watermarks() {
        let topology = Topology::from_shape(&shape(
            vec![(2, true)],
            vec![
                (Stage::Aggregate, vec![S(0)], true),
                (Stage::TopN, vec![W(0)], true),
            ],
            W(1),
            3,
        ));
        assert_eq!(topology.sources[0].target, Target::Exchange(0));
        assert_eq!(topology.stages[0].target, Target::Exchange(1));
        assert_eq!(
            topology.stages[1].upstreams,
            vec![upstream(None, true, W(0)); 3]
        );
        assert_eq!((topology.stages[1].first, topology.sink_upstreams), (3, 3));
    }

    #[test]
    fn an_interval_join_takes_its_inputs_watermarks_and_passes_them_on() {
        let topology = Topology::from_shape(&shape(
            vec![(1, true), (2, true)],
            vec![
                (Stage::Join, vec![S(0), S(1)], true),
                (Stage::Aggregate, vec![W(0)], true),
            ],
            W(1),
            2,
        ));
        assert_eq!(
            topology.stages[0].upstreams,
            vec![
                upstream(Some(Side::Left), true, S(0)),
                upstream(Some(Side::Right), true, S(1)),
                upstream(Some(Side::Right), true, S(1)),
            ]
        );
        assert_eq!(
            topology.stages[1].upstreams,
            vec![upstream(None, true, W(0)); 2]
        );
    }

    #[test]
    fn a_lookup_join_takes_the_streams_watermarks_and_not_the_tables() {
        let topology = Topology::from_shape(&shape(
            vec![(2, true), (1, true)],
            vec![
                (Stage::LookupJoin, vec![S(0), S(1)], true),
                (Stage::Aggregate, vec![W(0)], true),
            ],
            W(1),
            1,
        ));
        assert_eq!(
            topology.stages[0].upstreams,
            vec![
                upstream(Some(Side::Left), true, S(0)),
                upstream(Some(Side::Left), true, S(0)),
                upstream(Some(Side::Right), false, S(1)),
            ]
        );
        assert_eq!(
            topology.stages[1].upstreams,
            vec![upstream(None, true, W(0))]
        );
        // Only the table side sends the end of its snapshot.
        let table_sides: Vec<bool> = topology
            .sources
            .iter()
            .map(|s| topology.is_lookup_table_side(s))
            .collect();
        assert_eq!(table_sides, [false, true]);
    }

    #[test]
    fn a_join_of_a_source_and_an_aggregate_numbers_each_sides_senders() {
        // Nexmark q7: bids joined with the largest bid per window.
        let topology = Topology::from_shape(&shape(
            vec![(2, true), (1, true)],
            vec![
                (Stage::Aggregate, vec![S(1)], true),
                (Stage::Join, vec![S(0), W(0)], false),
            ],
            W(1),
            2,
        ));
        let [left, right] = &topology.sources[..] else {
            panic!("two sources")
        };
        assert_eq!(
            (left.target, left.side, left.first_upstream),
            (Target::Exchange(1), Some(Side::Left), 0)
        );
        assert_eq!(
            (right.target, right.side, right.first_upstream),
            (Target::Exchange(0), None, 0)
        );
        let aggregate = &topology.stages[0];
        assert_eq!(
            (aggregate.target, aggregate.side, aggregate.first_upstream),
            (Target::Exchange(1), Some(Side::Right), 2)
        );
        assert_eq!(
            topology.stages[1].upstreams,
            vec![
                upstream(Some(Side::Left), false, S(0)),
                upstream(Some(Side::Left), false, S(0)),
                upstream(Some(Side::Right), false, W(0)),
                upstream(Some(Side::Right), false, W(0)),
            ]
        );
    }
}
