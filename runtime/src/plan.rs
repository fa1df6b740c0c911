//! A stream plan: what a continuous query runs, built by the planner.
//!
//! A plan is a tree of stateful stages over sources, each exchanged by its
//! own keys; every source and stage feeds exactly one consumer (a stage or
//! the sink), running its stateless operators on the way:
//!
//! ```text
//!   Source partitions ──> before ──> (hash exchange by key) ──> stage ──> after ──> ... ──> sink
//!   (one task each)       stateless      bounded channels       N workers  stateless       one task
//! ```
//! The smallest trees: a source alone; a source and an aggregate (or
//! TopN); a join of two sources, perhaps under an aggregate:
//!
//! ```text
//!   left partitions ──> before ──┐ (hash exchange      join ──> after ──> (exchange by group key) ──> aggregate ──> ...
//!   right partitions ─> before ──┘  by join key)       N workers
//! ```
//! Composed queries stack stages: a TopN over an aggregate, an aggregate
//! over an aggregate, a join whose inputs are aggregates.

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::PhysicalExpr;

use serde::{Deserialize, Serialize};

use crate::source::Source;

/// A continuous query, ready to run.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// Every source the plan reads, in the order their partitions are
    /// numbered (a join's left input's sources before its right's).
    pub sources: Vec<SourcePlan>,
    /// The stateful stages, in the order their workers are numbered: a
    /// stage's inputs come before it (the order of [`Self::state`]).
    pub stages: Vec<StagePlan>,
    /// What feeds the sink: the last stage, or the only source when there
    /// is no stage.
    pub output: PlanInput,
    /// The rows the sink receives (without the op column).
    pub output_schema: SchemaRef,
    /// Is the output a changelog (rows retracted as well as inserted)?
    pub changelog: bool,
    /// The output column that the job's aligned watermark bounds, when its
    /// output is watermarked (every output row still to come, insert or
    /// retraction, is at or after the watermark in this column): a view
    /// hands its watermark on to the jobs reading it only then
    /// (`crate::view_source`). `None`: the output has no watermark.
    pub event_time: Option<usize>,
    /// Workers per stateful stage.
    pub parallelism: usize,
    /// The stream's name, for metrics.
    pub stream_name: String,
    /// What each stateful stage's state means, in the order of the job's
    /// stages: checkpoints record them, and an upgrade keeps an operator's
    /// state only into an operator of the same signature.
    pub state: Vec<StateSignature>,
    /// A hash of the whole plan, the operators above the stateful ones and
    /// the output columns included: a checkpoint restores as it is only
    /// into a job of the same plan.
    pub signature: String,
}

impl StreamPlan {
    /// The plan's sources in partition order.
    pub fn sources(&self) -> Vec<&SourcePlan> {
        self.sources.iter().collect()
    }

    /// The stage that feeds the sink, if there is one.
    pub fn last_stage(&self) -> Option<&StagePlan> {
        match self.output {
            PlanInput::Stage(stage) => self.stages.get(stage),
            PlanInput::Source(_) => None,
        }
    }

    /// The rows `input` sends its consumer: after its stateless operators.
    pub fn input_schema(&self, input: PlanInput) -> Option<SchemaRef> {
        let (ops, start) = match input {
            PlanInput::Source(s) => {
                let source = self.sources.get(s)?;
                (&source.before, source.source.schema())
            }
            PlanInput::Stage(s) => {
                let stage = self.stages.get(s)?;
                (&stage.after, stage.operator.output_schema())
            }
        };
        Some(StatelessOp::output_schema(ops).unwrap_or(start))
    }

    /// Each source partition of the plan, numbered across its sources, as
    /// its source and its number there.
    pub fn partitions(&self) -> Vec<(Arc<dyn Source>, usize)> {
        self.sources
            .iter()
            .map(|s| s.source.clone())
            .flat_map(|s| (0..s.partitions().max(1)).map(move |p| (s.clone(), p)))
            .collect()
    }

    /// Each source partition of the plan, in the order of
    /// [`Self::partitions`], by its source's number and its own: what a
    /// checkpoint records so that a source that gains partitions restores.
    pub fn partition_keys(&self) -> Vec<crate::checkpoint::PartitionKey> {
        self.sources
            .iter()
            .enumerate()
            .flat_map(|(source, s)| {
                (0..s.source.partitions().max(1))
                    .map(move |partition| crate::checkpoint::PartitionKey { source, partition })
            })
            .collect()
    }
}

/// What feeds a stage or the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanInput {
    /// The plan's source of this number (its partitions).
    Source(usize),
    /// The plan's stage of this number (its workers).
    Stage(usize),
}

/// One source and the stateless operators run on each of its partitions.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    /// The stream's name (metrics name what it counts of a stream by it).
    pub name: String,
    /// Where the rows come from.
    pub source: Arc<dyn Source>,
    /// Its event-time column and watermark delay, if the stream declared a
    /// watermark.
    pub event_time: Option<EventTime>,
    /// Is its watermark processing time (a window over `PROCTIME()`)? Then
    /// `event_time` is `None`, its rows are stamped by `before`
    /// (`weir_proctime()`), and each partition sends the clock
    /// ([`crate::proctime::now`]) as its watermark, after each batch and on
    /// a timer, rows or none.
    pub processing_time: bool,
    /// Stateless operators run on each of its partitions, before its rows
    /// go to its consumer.
    pub before: Vec<StatelessOp>,
}

impl SourcePlan {
    /// Are its batches a changelog (ending with the op column)?
    pub fn changelog(&self) -> bool {
        self.source.changelog()
    }

    /// Does a watermark bound its rows (event time or processing time)?
    pub fn timed(&self) -> bool {
        self.event_time.is_some() || self.processing_time
    }
}

/// One stateful stage: its operator, what feeds it, and the stateless
/// operators its workers run on the operator's output.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// The operator each worker runs.
    pub operator: StageOperator,
    /// What feeds it: one input, or a join's left then right.
    pub inputs: Vec<PlanInput>,
    /// Stateless operators run on its output before its consumer.
    pub after: Vec<StatelessOp>,
    /// Does a watermark bound the event time of its output (so that its
    /// watermarks hold back its consumer's)? A regular join's output has
    /// none; an interval join's has.
    pub timed: bool,
}

/// A stage's operator.
#[derive(Debug, Clone)]
pub enum StageOperator {
    /// A join of its two inputs.
    Join(Arc<JoinSpec>),
    /// A keyed aggregate.
    Aggregate(Arc<AggregateSpec>),
    /// The first rows per key.
    TopN(Arc<TopNSpec>),
    /// Functions over a frame of rows in event time (`OVER`).
    OverWindow(Arc<crate::operators::over_window::OverWindowSpec>),
}

impl StageOperator {
    /// The operator's output rows (without the op column).
    pub fn output_schema(&self) -> SchemaRef {
        match self {
            StageOperator::Join(spec) => spec.output_schema.clone(),
            StageOperator::Aggregate(spec) => spec.output_schema.clone(),
            StageOperator::TopN(spec) => spec.output_schema.clone(),
            StageOperator::OverWindow(spec) => spec.output_schema.clone(),
        }
    }
}

/// An interval join's condition on time: `right.time - left.time` lies in
/// `[lower, upper]` (nanoseconds), where each side's time is its event-time
/// column (the one its watermark is over) as the join reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalBounds {
    /// The time column in each input's rows (left, right).
    pub time: [usize; 2],
    /// The least `right.time - left.time` that matches.
    pub lower: i64,
    /// The greatest `right.time - left.time` that matches.
    pub upper: i64,
}

impl IntervalBounds {
    /// How far behind the inputs' watermark the output's event times can
    /// be: a pair is emitted when its second row arrives, on time, and the
    /// first one may be older by up to the interval's reach (Flink's
    /// `getMaxOutputDelay`). The join forwards the watermark less this.
    pub fn output_delay(&self) -> i64 {
        0i64.max(self.lower.saturating_neg()).max(self.upper)
    }

    /// Do a left row at `left` and a right row at `right` match?
    pub fn matches(&self, left: i64, right: i64) -> bool {
        let diff = i128::from(right) - i128::from(left);
        i128::from(self.lower) <= diff && diff <= i128::from(self.upper)
    }

    /// Rows of `side` with an event time below this can no longer match:
    /// every row of the other side still to come is at or above
    /// `watermark` (earlier ones are late and dropped).
    pub fn expired_below(&self, side: Side, watermark: i64) -> i64 {
        match side {
            // A left row at t matches right rows up to t + upper.
            Side::Left => watermark.saturating_sub(self.upper),
            // A right row at t matches left rows from t - upper to t - lower.
            Side::Right => watermark.saturating_add(self.lower),
        }
    }
}

/// One side of a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The left input (the preserved one of a LEFT JOIN).
    Left,
    /// The right input.
    Right,
}

impl Side {
    /// Both sides, left first: the order of [`JoinSpec`]'s arrays.
    pub const BOTH: [Side; 2] = [Side::Left, Side::Right];

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }

    /// Its position in [`JoinSpec`]'s two-element arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Left => 0,
            Side::Right => 1,
        }
    }
}

/// Which rows a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Pairs of matching rows.
    Inner,
    /// Pairs, and each left row without a match padded with NULLs.
    Left,
    /// Pairs, and each right row without a match padded with NULLs.
    Right,
    /// Pairs, and each row of either side without a match padded.
    Full,
}

impl JoinKind {
    /// Does the join keep `side`'s rows without a match (padded)?
    pub fn preserves(self, side: Side) -> bool {
        matches!(
            (self, side),
            (JoinKind::Left, Side::Left) | (JoinKind::Right, Side::Right) | (JoinKind::Full, _)
        )
    }
}

/// A join of two inputs on equal keys.
#[derive(Debug)]
pub struct JoinSpec {
    /// Inner, left, right or full.
    pub kind: JoinKind,
    /// Key expressions over each input's rows (left, right), of one type
    /// per key on both sides.
    pub keys: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// Each input's rows (without the op column).
    pub inputs: [SchemaRef; 2],
    /// Are an input's batches a changelog (with the op column)?
    pub input_changelog: [bool; 2],
    /// Left columns then right columns.
    pub output_schema: SchemaRef,
    /// The bounds on the two rows' event times of an interval join (or a
    /// window join, planned as one): its state is cleaned as the watermark
    /// passes and it forwards a watermark (`operators::interval_join`).
    /// `None`: a regular join, whose state is kept forever and which
    /// forwards only the end of input (`operators::join`).
    pub interval: Option<IntervalBounds>,
    /// What a join without time bounds keeps, and for how long: both
    /// sides for ever (a regular join), both for a time to live, or the
    /// table side only (a lookup join).
    pub state: JoinState,
}

/// What a join without time bounds keeps of its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinState {
    /// Both sides' rows, for ever (`operators::join`).
    #[default]
    KeptForever,
    /// Both sides' rows, those of a side with event time each until a
    /// watermark reaches its time plus a time to live (the view's
    /// `join_state_ttl`); a later partner of a dropped row is missed, as
    /// in Flink's `table.exec.state.ttl`, and no pair already emitted is
    /// retracted (`operators::join_ttl`).
    Ttl(JoinTtl),
    /// A lookup join (`JOIN t FOR SYSTEM_TIME AS OF s.ts`): each left
    /// (stream) row is joined with the right (table) rows the worker holds
    /// when it arrives; only the table side is kept, later table changes
    /// re-emit nothing, and the left side's watermark passes through
    /// (`operators::lookup_join`).
    TableSideOnly,
}

/// A regular join's state time to live, counted in event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinTtl {
    /// How long a row is kept (nanoseconds): it is dropped once its clock
    /// ([`Self::clock`]) reaches its event time plus this.
    pub ttl: i64,
    /// Each side's event-time column (left, right) when its rows are
    /// dropped so; `None` when they are kept for ever: a side without
    /// event time (a table, a view), an updating side (a retraction must
    /// find its row), or the side whose rows an outer join's padded rows
    /// are counted against.
    pub time: [Option<usize>; 2],
    /// Was a side's event-time column appended to its input for the TTL
    /// alone (the query does not read it)? Such a column is the input's
    /// last and is not part of the join's output.
    pub appended: [bool; 2],
}

impl JoinTtl {
    /// The side whose watermark drops `side`'s rows: the other side's when
    /// its rows have event time too (a row waits that long in the time of
    /// the rows that could still pair with it, as an interval join's do),
    /// else its own (a stream joined with a table).
    pub fn clock(&self, side: Side) -> Side {
        if self.time[side.other().index()].is_some() {
            side.other()
        } else {
            side
        }
    }

    /// Are both sides' rows dropped (so that a pair is made only while
    /// each row is within its time to live in the other side's clock)?
    pub fn both(&self) -> bool {
        self.time.iter().all(Option::is_some)
    }
}

impl JoinSpec {
    /// How many of input `side`'s columns are in the output: all but an
    /// event-time column appended for a state TTL.
    pub fn output_columns(&self, side: Side) -> usize {
        let appended = self.ttl().is_some_and(|t| t.appended[side.index()]);
        self.inputs[side.index()].fields().len() - usize::from(appended)
    }

    /// Its state time to live, when it has one.
    pub fn ttl(&self) -> Option<&JoinTtl> {
        match &self.state {
            JoinState::Ttl(ttl) => Some(ttl),
            _ => None,
        }
    }

    /// Is it a lookup join (the table side kept, no stream state)?
    pub fn lookup(&self) -> bool {
        self.state == JoinState::TableSideOnly
    }

    /// Is the output a changelog (with the op column)? Only an inner join
    /// of two append-only inputs never retracts, and a lookup join of an
    /// append-only stream (inner or left) never does: a table change
    /// re-emits nothing; nor does an interval join of any kind (of two
    /// append-only inputs), whose padded rows are emitted once, when
    /// certain.
    pub fn changelog(&self) -> bool {
        if self.lookup() {
            return self.input_changelog[0];
        }
        if self.interval.is_some() {
            return self.input_changelog.iter().any(|c| *c);
        }
        self.kind != JoinKind::Inner || self.input_changelog.iter().any(|c| *c)
    }
}

/// Where event time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime {
    /// Column index in the source schema.
    pub column: usize,
    /// Watermark = max event time seen - delay (nanoseconds).
    pub delay: i64,
}

/// An operator without state.
#[derive(Debug, Clone)]
pub enum StatelessOp {
    /// Keep rows where the predicate is true.
    Filter(Arc<dyn PhysicalExpr>),
    /// Compute new columns.
    Project {
        /// One expression per output column.
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        /// The output columns.
        schema: SchemaRef,
    },
    /// One output row per element of a list column (HOP and CUMULATE windows).
    Unnest {
        /// The list column.
        column: usize,
        /// The output columns (the list column replaced by its element).
        schema: SchemaRef,
    },
}

impl StatelessOp {
    /// The rows `ops` make, when one of them sets the columns (a filter
    /// keeps its input's): `None` when none does.
    pub fn output_schema(ops: &[StatelessOp]) -> Option<SchemaRef> {
        ops.iter().rev().find_map(|op| match op {
            StatelessOp::Project { schema, .. } | StatelessOp::Unnest { schema, .. } => {
                Some(schema.clone())
            }
            StatelessOp::Filter(_) => None,
        })
    }
}

/// How results are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// One final row per window once the watermark passes its end.
    OnWindowClose,
    /// A changelog: every change retracts the old row and inserts the new.
    Updates,
}

/// Which windows an aggregate keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// No window: plain GROUP BY, state kept forever.
    None,
    /// Tumbling, hopping or cumulating windows: a group closes at its
    /// `close` time, found from one of its key columns.
    Fixed {
        /// Which group key gives the close time.
        key: usize,
        /// Added to that key's value (the size when the key is the start).
        plus: i64,
    },
    /// Session windows: the group keys at `start_key` and `end_key` are
    /// computed from the sessions; the others partition them.
    Session {
        /// The group key holding the row's event time on input, the session
        /// start on output.
        start_key: usize,
        /// The group key that is the session end on output.
        end_key: usize,
        /// The inactivity gap (nanoseconds).
        gap: i64,
    },
}

/// A keyed aggregate.
#[derive(Debug)]
pub struct AggregateSpec {
    /// Group key expressions over the input.
    pub group: Vec<Arc<dyn PhysicalExpr>>,
    /// Which group keys pick the worker (the keys that are not window bounds).
    pub partition_keys: Vec<usize>,
    /// The aggregate functions.
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Each aggregate's `FILTER (WHERE ..)` condition over the input, if it
    /// has one (one entry per aggregate).
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The window.
    pub window: WindowKind,
    /// Emission.
    pub emit: Emit,
    /// Group columns then aggregate columns.
    pub output_schema: SchemaRef,
    /// When the input is updating (its batches end with the op column):
    /// each aggregate's argument type, for accumulators that retract.
    pub retracting: Option<Vec<DataType>>,
}

impl AggregateSpec {
    /// Is its output a changelog? An updating aggregate's is; one that
    /// emits on window close emits each row once.
    pub fn changelog(&self) -> bool {
        self.emit == Emit::Updates
    }
}

/// `ROW_NUMBER() OVER (PARTITION BY .. ORDER BY ..) <= limit`: the first
/// rows of each partition in an order, kept as they change (TopN; with a
/// limit of one, deduplication).
#[derive(Debug)]
pub struct TopNSpec {
    /// The `PARTITION BY` keys over the input (none: one partition).
    pub partition: Vec<Arc<dyn PhysicalExpr>>,
    /// The `ORDER BY` over the input: each expression and its direction.
    pub order: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    /// Rows kept per partition.
    pub limit: usize,
    /// The input's rows (without the op column).
    pub input_schema: SchemaRef,
    /// Is the input a changelog (its rows can be retracted)? Then every
    /// row is kept, not only the first `limit`: a retracted one is replaced
    /// by the next.
    pub input_changelog: bool,
    /// The input's columns, then the row number (`UInt64`).
    pub output_schema: SchemaRef,
    /// Partitioned by a window of TUMBLE, HOP or CUMULATE over a watermark:
    /// when each partition's window closes.
    pub window: Option<TopNWindow>,
}

/// A TopN per window: its partitions close with their window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopNWindow {
    /// Which partition key gives the window's close time.
    pub key: usize,
    /// Added to that key's value (the size when the key is the start).
    pub plus: i64,
    /// `EMIT ON WINDOW CLOSE`: each window's first rows are emitted once,
    /// when the watermark passes it (append-only); otherwise they are
    /// updated as rows arrive, and the window's state is dropped when it
    /// closes.
    pub emit_on_close: bool,
}

/// The layout version of stateful operators' checkpoint chunks, part of
/// every [`StateSignature`]: bumped when a chunk written by an older
/// version can no longer be read by this one.
pub const STATE_LAYOUT_VERSION: u32 = 1;

/// What a stateful operator's state means, in named parts, as the planner
/// built it (`weir_planner::stream_plan::signature`). Two operators whose
/// signatures hash alike keep the same state for the same input, so one's
/// checkpoint restores into the other. The parts are kept beside the hash
/// so that a refused upgrade can say which part differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSignature {
    /// The operator as EXPLAIN names it (`StreamWindowAggregate`, ...).
    pub operator: String,
    /// What kind of state: a window, updating or session aggregate (and its
    /// emission), or a join's two sides.
    pub kind: String,
    /// The operator's input, from its sources up, one layer per operator,
    /// with columns by position (so aliases and formatting do not count).
    pub input: Vec<String>,
    /// Its keys, as expressions over its input.
    pub keys: Vec<String>,
    /// Its window, as the query wrote it (`TUMBLE(1 minute)`), or `none`.
    pub window: String,
    /// Its accumulators: function, distinctness and arguments.
    pub accumulators: Vec<String>,
    /// [`STATE_LAYOUT_VERSION`] when planned.
    pub layout: u32,
    /// The stable hash of the parts above (hex).
    pub hash: String,
    /// The keys and accumulators as written, for messages (not hashed).
    pub shown: ShownParts,
}

/// A signature's keys and accumulators as the query wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownParts {
    /// The keys.
    pub keys: Vec<String>,
    /// The accumulators.
    pub accumulators: Vec<String>,
}
