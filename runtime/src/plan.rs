//! A stream plan: what a continuous query runs, built by the planner.
//!
//! ```text
//!   Source partitions ──> before ──> (hash exchange by key) ──> aggregate ──> after ──> sink
//!   (one task each)       stateless      bounded channels        N workers     stateless   one task
//! ```
//! Without an aggregate the source tasks run `before` and `after` and feed
//! the sink directly. A join adds a stage of join workers in front:
//!
//! ```text
//!   left partitions ──> before ──┐ (hash exchange      join ──> then ──> (exchange by group key) ──> aggregate ──> ...
//!   right partitions ─> before ──┘  by join key)       N workers
//! ```

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef, SchemaRef};
use datafusion::common::Result;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::PhysicalExpr;

use crate::operators::aggregate::retract;
use crate::operators::join::JoinSpec;
use crate::source::Source;

/// A continuous query, ready to run.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// Where rows come from.
    pub source: Arc<dyn Source>,
    /// The event-time column of the source and its watermark delay, if the
    /// stream declared a watermark.
    pub event_time: Option<EventTime>,
    /// Do the source's batches carry the op column (an updating input)?
    pub input_changelog: bool,
    /// Stateless operators run on each source partition.
    pub before: Vec<StatelessOp>,
    /// A second input joined with the first, if any.
    pub join: Option<JoinPlan>,
    /// The keyed, stateful aggregate, if any.
    pub aggregate: Option<Arc<AggregateSpec>>,
    /// Stateless operators run on the aggregate's output.
    pub after: Vec<StatelessOp>,
    /// The rows the sink receives (without the op column).
    pub output_schema: SchemaRef,
    /// Does the output retract rows (an updating result)?
    pub changelog: bool,
    /// Aggregate workers.
    pub parallelism: usize,
    /// The stream's name, for metrics.
    pub stream_name: String,
}

impl StreamPlan {
    /// Each source partition of the plan, numbered across its inputs (left,
    /// then a join's right), as its source and its number there.
    pub fn partitions(&self) -> Vec<(Arc<dyn Source>, usize)> {
        let mut sources = vec![self.source.clone()];
        if let Some(join) = &self.join {
            sources.push(join.source.clone());
        }
        sources
            .into_iter()
            .flat_map(|s| (0..s.partitions().max(1)).map(move |p| (s.clone(), p)))
            .collect()
    }
}

/// The right input of a join and the join itself. The plan's `source`,
/// `event_time` and `before` are the left input's.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    /// Where the right input's rows come from.
    pub source: Arc<dyn Source>,
    /// Its event time, if it has a watermark.
    pub event_time: Option<EventTime>,
    /// Stateless operators run on each of its partitions.
    pub before: Vec<StatelessOp>,
    /// The join.
    pub spec: Arc<JoinSpec>,
    /// Stateless operators run on the join's output (before the aggregate).
    pub then: Vec<StatelessOp>,
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
    /// A fresh accumulator for aggregate `i`.
    pub fn accumulator(&self, i: usize) -> Result<Box<dyn Accumulator>> {
        match &self.retracting {
            Some(types) => retract::accumulator(&self.aggregates[i], &types[i]),
            None => self.aggregates[i].create_accumulator(),
        }
    }

    /// Fresh accumulators, one per aggregate.
    pub fn accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        (0..self.aggregates.len())
            .map(|i| self.accumulator(i))
            .collect()
    }

    /// The fields of aggregate `i`'s state, as its accumulator gives it.
    pub fn state_fields(&self, i: usize) -> Result<Vec<FieldRef>> {
        match &self.retracting {
            Some(types) => retract::state_fields(&self.aggregates[i], &types[i]),
            None => self.aggregates[i].state_fields(),
        }
    }
}
