//! Typed stream plan nodes: the incremental plan of a continuous query as a
//! tree, one node per operator that EXPLAIN shows, each holding both what
//! EXPLAIN prints (DataFusion's logical expressions) and what the runtime
//! runs (physical expressions, accumulators, the join and aggregate specs).
//!
//! ```text
//!   StreamMaterialize                       the view's rows: updating or append-only
//!     StreamProject / StreamFilter / ...    stateless, on the aggregate's output
//!       StreamAggregate (+ its exchange)    keyed state: windows, groups or sessions
//!        or StreamTopN (+ its exchange)     keyed state: the first rows per key
//!         StreamProject / ...               stateless, on the join's output
//!           StreamHashJoin (+ its exchange) keyed state: both inputs' rows
//!             left:  StreamSource, then stateless operators
//!             right: StreamSource, then stateless operators
//! ```
//! Every level but the sources is optional, and keyed operators stack: a
//! TopN over an aggregate, an aggregate over an aggregate, a join whose
//! inputs are aggregates or joins. The nodes are built by the
//! `lower_*` steps, rendered by `explain`, and turned into the runtime's
//! `StreamPlan` by `runtime_plan`.
//!
//! An exchange is not a node of its own: the runtime places one in front of
//! every keyed operator, hashed by that operator's key, so it belongs to the
//! operator it feeds ([`StreamExchange`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{Expr, SortExpr, WindowFrame};
use datafusion::physical_plan::PhysicalExpr;
use weir_runtime::operators::join::JoinSpec;
use weir_runtime::operators::over_window::OverWindowSpec;
use weir_runtime::plan::{AggregateSpec, Emit, EventTime, IntervalBounds, TopNSpec, WindowKind};
use weir_runtime::source::Source;

use crate::windows::WindowTvf;

/// A stream a continuous query reads, resolved by the caller.
#[derive(Debug, Clone)]
pub struct StreamInput {
    /// Its source.
    pub source: Arc<dyn Source>,
    /// Its event time, if it has a watermark.
    pub event_time: Option<EventTime>,
    /// The event-time column's name (for EXPLAIN).
    pub time_column: Option<String>,
}

/// The root of a stream plan: the view's rows, as the sink receives them.
#[derive(Debug)]
pub struct StreamMaterialize {
    /// The operators that compute the rows.
    pub input: StreamNode,
    /// Do the rows retract earlier ones (an updating result)?
    pub changelog: bool,
    /// The rows (without the op column).
    pub schema: SchemaRef,
    /// Workers per keyed stage, as asked for (the runtime runs at least one).
    pub parallelism: usize,
}

/// One operator of a stream plan, with its inputs below it.
#[derive(Debug)]
pub enum StreamNode {
    /// Rows from a stream (or a table Weir owns).
    Source(StreamSource),
    /// Keep rows where a predicate holds.
    Filter(StreamFilter),
    /// Compute columns.
    Project(StreamProject),
    /// One row per element of a list column.
    Unnest(StreamUnnest),
    /// Two inputs joined on equal keys.
    HashJoin(StreamHashJoin),
    /// A keyed aggregate: over windows, sessions, or plain groups.
    Aggregate(StreamAggregate),
    /// The first rows per key in an order (TopN, deduplication).
    TopN(StreamTopN),
    /// Window functions over a frame of rows in event time (`OVER`).
    OverWindow(StreamOverWindow),
}

/// A stream read, one task per source partition.
#[derive(Debug)]
pub struct StreamSource {
    /// The stream's name.
    pub name: String,
    /// The stream: its source and event time.
    pub input: StreamInput,
    /// The source columns the query reads, when not all of them: the first
    /// thing each partition does is keep only these (not shown in EXPLAIN,
    /// as DataFusion shows a scan's projection in the scan).
    pub projection: Option<Vec<usize>>,
    /// The rows after that projection.
    pub schema: SchemaRef,
    /// Is its watermark processing time (the query windows it by
    /// `PROCTIME()`)? Its rows are then stamped by `weir_proctime()` in the
    /// operators on it, and its watermark is the clock; `input.event_time`
    /// is `None`.
    pub processing_time: bool,
}

impl StreamSource {
    /// Where the stream's event-time column is among the rows this source
    /// hands on (after its projection): none when the stream has no event
    /// time or the query does not read it. The start of every "which
    /// columns does the watermark bound" rule (interval joins, OVER
    /// windows, a view's own watermark).
    pub fn event_time_columns(&self) -> Vec<usize> {
        let Some(column) = self.input.event_time.map(|t| t.column) else {
            return Vec::new();
        };
        match &self.projection {
            Some(projection) => projection
                .iter()
                .position(|&c| c == column)
                .into_iter()
                .collect(),
            None => vec![column],
        }
    }
}

/// `WHERE`, `HAVING`, or the rest of an inner join's condition.
#[derive(Debug)]
pub struct StreamFilter {
    /// The rows filtered.
    pub input: Box<StreamNode>,
    /// The condition, as written (for EXPLAIN).
    pub predicate: Expr,
    /// The condition, compiled.
    pub physical: Arc<dyn PhysicalExpr>,
}

/// Computed columns.
#[derive(Debug)]
pub struct StreamProject {
    /// The rows projected.
    pub input: Box<StreamNode>,
    /// One expression per output column, as written (for EXPLAIN).
    pub exprs: Vec<Expr>,
    /// The same, compiled.
    pub physical: Vec<Arc<dyn PhysicalExpr>>,
    /// The output columns.
    pub schema: SchemaRef,
}

/// One output row per element of a list column (HOP and CUMULATE windows).
#[derive(Debug)]
pub struct StreamUnnest {
    /// The rows unnested.
    pub input: Box<StreamNode>,
    /// The list column.
    pub column: usize,
    /// The output columns (the list column replaced by its element).
    pub schema: SchemaRef,
}

/// The hash exchange in front of a keyed operator: rows of one key go to one
/// worker.
#[derive(Debug)]
pub struct StreamExchange {
    /// The keys hashed (none for an aggregate or TopN without keys: every
    /// row goes to one worker, and EXPLAIN shows `single`).
    pub keys: Vec<Expr>,
    /// How many workers.
    pub workers: usize,
}

/// A join on equal keys. Its two inputs are alike: each is a source with
/// stateless operators on it, and both exchange by the join key into the
/// same join workers.
#[derive(Debug)]
pub struct StreamHashJoin {
    /// The left input.
    pub left: Box<StreamNode>,
    /// The right input.
    pub right: Box<StreamNode>,
    /// Equal keys (left, right), as written (for EXPLAIN).
    pub on: Vec<(Expr, Expr)>,
    /// Both inputs' exchange, by the left keys and the right keys alike.
    pub exchange: StreamExchange,
    /// The join, compiled.
    pub spec: Arc<JoinSpec>,
    /// An interval join's time bounds (its state is cleaned as the
    /// watermark passes); `None` for a regular join.
    pub interval: Option<StreamInterval>,
    /// A regular join under the view's `join_state_ttl`: how each side's
    /// rows are kept (left, right), for EXPLAIN (boxed: a join node is
    /// large enough).
    pub ttl: Option<Box<[SideTtl; 2]>>,
}

/// How a regular join with a state TTL keeps one side's rows.
#[derive(Debug, Clone)]
pub enum SideTtl {
    /// Dropped by event time: the time column, as the join's output names
    /// it (for EXPLAIN), and its index in the side's rows.
    Dropped(Expr, usize),
    /// Kept for ever, for this reason.
    Kept(&'static str),
}

/// The time bounds of an interval join: `times[1] - times[0]` within
/// `[bounds.lower, bounds.upper]`.
#[derive(Debug)]
pub struct StreamInterval {
    /// The bounds, compiled.
    pub bounds: IntervalBounds,
    /// The left and the right time column, as the join's output names them
    /// (for EXPLAIN).
    pub times: [Expr; 2],
}

/// A keyed aggregate: windows that close (TUMBLE, HOP, CUMULATE), sessions,
/// or groups kept forever.
#[derive(Debug)]
pub struct StreamAggregate {
    /// The rows aggregated.
    pub input: Box<StreamNode>,
    /// The exchange by the group keys that are not window bounds.
    pub exchange: StreamExchange,
    /// The group keys, as written.
    pub group: Vec<Expr>,
    /// The aggregate calls, as written.
    pub aggregates: Vec<Expr>,
    /// The window function the query used, if the aggregate is over its
    /// windows (for EXPLAIN).
    pub window: Option<WindowTvf>,
    /// The aggregate, compiled.
    pub spec: Arc<AggregateSpec>,
}

/// `ROW_NUMBER() OVER (PARTITION BY .. ORDER BY ..) <= N`: the first N rows
/// of each partition, an updating result.
#[derive(Debug)]
pub struct StreamTopN {
    /// The rows numbered.
    pub input: Box<StreamNode>,
    /// The exchange by the partition keys.
    pub exchange: StreamExchange,
    /// The `PARTITION BY`, as written.
    pub partition_by: Vec<Expr>,
    /// The `ORDER BY`, as written.
    pub order_by: Vec<SortExpr>,
    /// The window function the query used, when the TopN is per window
    /// (for EXPLAIN).
    pub window: Option<WindowTvf>,
    /// The TopN, compiled (its limit included).
    pub spec: Arc<TopNSpec>,
}

/// Window functions over each row's frame (`agg(..) OVER (PARTITION BY ..
/// ORDER BY ts ROWS BETWEEN n PRECEDING AND CURRENT ROW)`), computed once
/// the watermark passes the row: an append-only result.
#[derive(Debug)]
pub struct StreamOverWindow {
    /// The rows the functions are computed on.
    pub input: Box<StreamNode>,
    /// The exchange by the partition keys.
    pub exchange: StreamExchange,
    /// The `PARTITION BY`, as written.
    pub partition_by: Vec<Expr>,
    /// The `ORDER BY`, as written (event time first).
    pub order_by: Vec<SortExpr>,
    /// The frame, as written.
    pub frame: WindowFrame,
    /// The window function calls, as written.
    pub functions: Vec<Expr>,
    /// The OVER window, compiled.
    pub spec: Arc<OverWindowSpec>,
}

impl StreamAggregate {
    /// Over windows or sessions (else plain groups)?
    pub fn windowed(&self) -> bool {
        self.spec.window != WindowKind::None
    }
}

impl StreamNode {
    /// Do this node's batches carry the op column (rows that retract)?
    pub fn changelog(&self) -> bool {
        match self {
            StreamNode::Source(source) => source.input.source.changelog(),
            StreamNode::Filter(StreamFilter { input, .. })
            | StreamNode::Project(StreamProject { input, .. })
            | StreamNode::Unnest(StreamUnnest { input, .. }) => input.changelog(),
            StreamNode::HashJoin(join) => join.spec.changelog(),
            StreamNode::Aggregate(aggregate) => aggregate.spec.emit == Emit::Updates,
            // A row that enters the first N pushes the last one out, unless
            // each window's rows are emitted once, when it closes.
            StreamNode::TopN(top_n) => !top_n.spec.window.is_some_and(|w| w.emit_on_close),
            // Each row once, when the watermark passes it.
            StreamNode::OverWindow(_) => false,
        }
    }

    /// Does a watermark bound the event time of this node's rows? From a
    /// source that declares one, through stateless operators and windowed
    /// aggregates (a window's rows change only until the watermark passes
    /// its end, which is what the watermark means downstream), and through
    /// an interval join (less its reach); never through a regular join: a
    /// row arriving on one side joins the other side's rows of any age (a
    /// changed table row, its earlier stream rows), so no time bounds what
    /// it may still emit. Nor through an aggregate of plain groups: any
    /// group may change at any time.
    pub fn watermarked(&self) -> bool {
        match self {
            StreamNode::Source(source) => {
                source.input.event_time.is_some() || source.processing_time
            }
            StreamNode::Filter(StreamFilter { input, .. })
            | StreamNode::Project(StreamProject { input, .. })
            | StreamNode::Unnest(StreamUnnest { input, .. }) => input.watermarked(),
            StreamNode::Aggregate(aggregate) => {
                aggregate.windowed() && aggregate.input.watermarked()
            }
            // Per window, its rows change only until their window closes;
            // otherwise whenever a better one arrives, of any age.
            StreamNode::TopN(top_n) => top_n.spec.window.is_some() && top_n.input.watermarked(),
            // A lookup join emits a stream row's pairs as the row arrives:
            // the stream's watermark bounds them as it bounds the row.
            StreamNode::HashJoin(join) => {
                join.interval.is_some() || (join.spec.lookup() && join.left.watermarked())
            }
            // Its rows come out in event time as the watermark passes them.
            StreamNode::OverWindow(over) => over.input.watermarked(),
        }
    }

    /// Does this node run in the partitions of a source watermarked by
    /// processing time (a chain of stateless operators on it)? There a
    /// `weir_proctime()` stamp is taken before the clock is sent as the
    /// watermark, so the watermark bounds it.
    pub fn stamps_processing_time(&self) -> bool {
        match self {
            StreamNode::Source(source) => source.processing_time,
            StreamNode::Filter(StreamFilter { input, .. })
            | StreamNode::Project(StreamProject { input, .. })
            | StreamNode::Unnest(StreamUnnest { input, .. }) => input.stamps_processing_time(),
            _ => false,
        }
    }

    /// Is any source under this node watermarked by processing time?
    pub fn over_processing_time(&self) -> bool {
        self.sources().iter().any(|s| s.processing_time)
    }

    /// The nodes right under this one, left to right (none under a source).
    pub fn inputs(&self) -> Vec<&StreamNode> {
        match self {
            StreamNode::Source(_) => Vec::new(),
            StreamNode::Filter(StreamFilter { input, .. })
            | StreamNode::Project(StreamProject { input, .. })
            | StreamNode::Unnest(StreamUnnest { input, .. })
            | StreamNode::Aggregate(StreamAggregate { input, .. })
            | StreamNode::TopN(StreamTopN { input, .. })
            | StreamNode::OverWindow(StreamOverWindow { input, .. }) => vec![input],
            StreamNode::HashJoin(join) => vec![&join.left, &join.right],
        }
    }

    /// Does this node, or one under it, pass `test`?
    pub fn any(&self, test: &dyn Fn(&StreamNode) -> bool) -> bool {
        test(self) || self.inputs().iter().any(|input| input.any(test))
    }

    /// Every source under this node, left to right.
    pub fn sources(&self) -> Vec<&StreamSource> {
        match self {
            StreamNode::Source(source) => vec![source],
            _ => self
                .inputs()
                .iter()
                .flat_map(|input| input.sources())
                .collect(),
        }
    }

    /// The first source under this node (a join's left one): the stream a
    /// view is named after in metrics and messages.
    pub fn first_source(&self) -> &StreamSource {
        match self {
            StreamNode::Source(source) => source,
            StreamNode::Filter(StreamFilter { input, .. })
            | StreamNode::Project(StreamProject { input, .. })
            | StreamNode::Unnest(StreamUnnest { input, .. })
            | StreamNode::Aggregate(StreamAggregate { input, .. })
            | StreamNode::TopN(StreamTopN { input, .. })
            | StreamNode::OverWindow(StreamOverWindow { input, .. }) => input.first_source(),
            StreamNode::HashJoin(join) => join.left.first_source(),
        }
    }
}
