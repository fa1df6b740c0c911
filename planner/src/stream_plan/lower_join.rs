//! Lowering a join: two lowered inputs, alike (each a source with stateless
//! operators on it), joined on equal keys by join workers that keep both
//! inputs' rows by key: for ever, or, when the condition bounds how far
//! apart the two rows' event times are (`lower_join_interval`), until the
//! watermark makes them unmatchable (an outer one padding then the rows
//! that never paired); or, for a lookup join (`lower_join_lookup`), only
//! the table side's rows.

use std::sync::Arc;

use datafusion::arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::common::DFSchemaRef;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::CastExpr;
use weir_runtime::operators::join::{JoinKind, JoinSpec};
use weir_runtime::plan::{JoinState, JoinTtl, Side};

use super::lower_join_interval::{beyond_bounds, interval_bounds, time_columns};
use super::lower_join_lookup::check_lookup;
use super::lowering::{Lowering, arrow_schema, physical, unsupported};
use super::nodes::{SideTtl, StreamExchange, StreamHashJoin, StreamInterval, StreamNode};
use crate::error::{PlanError, Result};
use crate::lookups::LookupUse;

/// What a join step holds, besides its inputs.
pub(super) struct JoinOn<'a> {
    /// Equal keys (left expression, right expression).
    pub on: &'a [(Expr, Expr)],
    /// Inner, left, right or full.
    pub kind: JoinKind,
    /// The left and the right input's rows.
    pub schemas: &'a [DFSchemaRef; 2],
    /// Left columns then right columns.
    pub output: &'a DFSchemaRef,
    /// The condition beyond equal keys, if any: where an interval join's
    /// time bounds are. An inner join's is the filter right above it (on
    /// its pairs); an outer join's is its own `ON` condition, which must be
    /// those bounds alone.
    pub filter: Option<&'a Expr>,
    /// The right input was read `FOR SYSTEM_TIME AS OF`: a lookup join.
    pub lookup: Option<&'a LookupUse>,
}

/// `left` joined with `right` on `join`, by the view's join workers.
pub(super) fn lower_join(
    left: StreamNode,
    right: StreamNode,
    join: JoinOn<'_>,
    lowering: &Lowering<'_>,
) -> Result<StreamNode> {
    let (workers, props) = (lowering.parallelism, &lowering.props);
    let [left_schema, right_schema] = join.schemas;
    let inputs = [arrow_schema(left_schema), arrow_schema(right_schema)];
    let mut keys = [Vec::new(), Vec::new()];
    for (l, r) in join.on {
        let l = physical(l, left_schema, props)?;
        let mut r = physical(r, right_schema, props)?;
        let (lt, rt) = (
            l.data_type(&inputs[0])
                .map_err(|e| PlanError::Invalid(e.message().to_string()))?,
            r.data_type(&inputs[1])
                .map_err(|e| PlanError::Invalid(e.message().to_string()))?,
        );
        if lt != rt {
            // Equal keys must hash alike on both sides.
            r = Arc::new(CastExpr::new(r, lt, None));
        }
        keys[0].push(l);
        keys[1].push(r);
    }
    let (interval, state) = match join.lookup {
        Some(lookup) => {
            check_lookup(lookup, &left, &right, &join)?;
            (None, JoinState::TableSideOnly)
        }
        None => match interval_of(&left, &right, &join) {
            Some(interval) => (Some(interval), JoinState::KeptForever),
            None => (None, JoinState::KeptForever),
        },
    };
    if join.kind != JoinKind::Inner && join.filter.is_some() && interval.is_none() {
        return Err(outer_condition_refused(&left, &right));
    }
    let (left, right, state, ttl) = match (state, lowering.join_state_ttl) {
        (JoinState::KeptForever, Some(ttl)) if interval.is_none() && join.lookup.is_none() => {
            let (left, right, ttl, shown) = ttl_of(left, right, &join, ttl);
            (left, right, JoinState::Ttl(ttl), Some(Box::new(shown)))
        }
        (state, _) => (left, right, state, None),
    };
    let mut inputs = inputs;
    if let JoinState::Ttl(ttl) = &state {
        for (s, node) in [&left, &right].into_iter().enumerate() {
            // The appended event-time column after the query's columns.
            if ttl.appended[s]
                && let Some(schema) = node_schema(node)
                && let Some(time) = schema.fields().last()
            {
                let mut fields: Vec<FieldRef> = inputs[s].fields().iter().cloned().collect();
                fields.push(time.clone());
                inputs[s] = Arc::new(Schema::new(fields));
            }
        }
    }
    let spec = Arc::new(JoinSpec {
        kind: join.kind,
        keys,
        inputs,
        input_changelog: [left.changelog(), right.changelog()],
        output_schema: arrow_schema(join.output),
        interval: interval.as_ref().map(|i| i.bounds),
        state,
    });
    Ok(StreamNode::HashJoin(StreamHashJoin {
        left: Box::new(left),
        right: Box::new(right),
        on: join.on.to_vec(),
        exchange: StreamExchange {
            keys: join.on.iter().map(|(l, _)| l.clone()).collect(),
            workers,
        },
        spec,
        interval,
        ttl,
    }))
}

/// The join's time bounds when it is an interval join: of two append-only
/// inputs with event time, its condition bounding the distance of their
/// times on both sides (or a window join: equal window ends). An outer
/// join is one only when its `ON` condition is those bounds and nothing
/// else: its padded rows are the rows that pair with nothing under the
/// whole condition, which the operator enforces only the bounds of (an
/// outer join without a condition stays a regular join, as it planned
/// before). Otherwise a regular join.
fn interval_of(left: &StreamNode, right: &StreamNode, join: &JoinOn<'_>) -> Option<StreamInterval> {
    let outer = join.kind != JoinKind::Inner;
    if (outer && join.filter.is_none()) || left.changelog() || right.changelog() {
        return None;
    }
    let left_width = join.schemas[0].fields().len();
    let bounds = interval_bounds(
        join.filter,
        join.on,
        join.schemas,
        join.output,
        &[time_columns(left), time_columns(right)],
    )?;
    if outer
        && let Some(condition) = join.filter
        && !beyond_bounds(condition, join.schemas, join.output, &bounds).is_empty()
    {
        return None;
    }
    let column = |index: usize| {
        let (qualifier, field) = join.output.qualified_field(index);
        Expr::Column(datafusion::common::Column::new(
            qualifier.cloned(),
            field.name(),
        ))
    };
    Some(StreamInterval {
        bounds,
        times: [column(bounds.time[0]), column(left_width + bounds.time[1])],
    })
}

/// Why an outer join with a condition beyond equal keys is refused: it is
/// run only as an outer interval join, whose condition is the bounds on the
/// two streams' event times alone.
fn outer_condition_refused(left: &StreamNode, right: &StreamNode) -> PlanError {
    let why = if left.changelog() || right.changelog() {
        "an outer join of an updating input with a condition other than equal keys"
    } else {
        "an outer join with a condition other than equal keys and bounds on the two streams' event times"
    };
    unsupported(
        why,
        "an outer join's condition decides which rows are padded; bound only the two append-only streams' event-time columns in ON (b.ts BETWEEN a.ts - INTERVAL '..' AND a.ts + INTERVAL '..') for an outer interval join, move other conditions to WHERE or into a subquery on one input, or join on equal keys only",
    )
}

/// What a regular join keeps under the view's `join_state_ttl`, and how
/// EXPLAIN says it. A side's rows go by their event time when the side has
/// one and is append-only (an updating side's retraction must find its
/// row), unless it is the side an outer join counts its padded rows
/// against (a padded row is retracted when its key's first partner
/// arrives, so that count must stay exact), or the join is an outer join
/// of two streams (which rows met would then depend on how the two
/// interleave). A side whose event-time column the query does not read
/// gets it appended to its rows (`with_time`), outside the join's output.
fn ttl_of(
    left: StreamNode,
    right: StreamNode,
    join: &JoinOn<'_>,
    ttl: i64,
) -> (StreamNode, StreamNode, JoinTtl, [SideTtl; 2]) {
    let kind = join.kind;
    let mut nodes = [left, right];
    let existing = [
        time_columns(&nodes[0]).first().copied(),
        time_columns(&nodes[1]).first().copied(),
    ];
    let timed =
        [0, 1].map(|s| !nodes[s].changelog() && (existing[s].is_some() || carries_time(&nodes[s])));
    let mut time = [None, None];
    let mut appended = [false, false];
    let mut shown = [SideTtl::Kept(""), SideTtl::Kept("")];
    for side in Side::BOTH {
        let (s, other) = (side.index(), side.other().index());
        shown[s] = if nodes[s].changelog() {
            SideTtl::Kept("an updating input")
        } else if !timed[s] {
            SideTtl::Kept("no event-time column")
        } else if kind.preserves(side.other()) {
            SideTtl::Kept("the outer join's padded rows are counted against them")
        } else if kind != JoinKind::Inner && timed[other] {
            SideTtl::Kept("an outer join of two streams")
        } else {
            let column = existing[s].or_else(|| {
                let column = with_time(&mut nodes[s]);
                appended[s] = column.is_some();
                column
            });
            match column {
                Some(column) => {
                    time[s] = Some(column);
                    SideTtl::Dropped(time_expr(&nodes[s], join, s, column, appended[s]), column)
                }
                None => SideTtl::Kept("no event-time column"),
            }
        };
    }
    let [left, right] = nodes;
    (
        left,
        right,
        JoinTtl {
            ttl,
            time,
            appended,
        },
        shown,
    )
}

/// Does `node` (a source, perhaps filtered) read a stream with event time,
/// whose column [`with_time`] can append?
fn carries_time(node: &StreamNode) -> bool {
    match node {
        StreamNode::Source(source) => {
            source.input.event_time.is_some() && source.projection.is_some()
        }
        StreamNode::Filter(filter) => carries_time(&filter.input),
        _ => false,
    }
}

/// Append the event-time column of `node`'s stream to its rows, which the
/// query does not read (a filter passes every column on, so it reaches
/// the join as the input's last column): its index there. `None` when
/// another operator stands between the source and the join.
fn with_time(node: &mut StreamNode) -> Option<usize> {
    match node {
        StreamNode::Source(source) => {
            let event = source.input.event_time?;
            let projection = source.projection.as_mut()?;
            projection.push(event.column);
            let mut fields: Vec<FieldRef> = source.schema.fields().iter().cloned().collect();
            fields.push(Arc::new(
                source.input.source.schema().field(event.column).clone(),
            ));
            source.schema = Arc::new(Schema::new(fields));
            Some(source.schema.fields().len() - 1)
        }
        StreamNode::Filter(filter) => with_time(&mut filter.input),
        _ => None,
    }
}

/// The rows of a source, perhaps filtered.
fn node_schema(node: &StreamNode) -> Option<SchemaRef> {
    match node {
        StreamNode::Source(source) => Some(source.schema.clone()),
        StreamNode::Filter(filter) => node_schema(&filter.input),
        _ => None,
    }
}

/// Side `s`'s time column `column` as EXPLAIN names it: as the join's
/// output does, or, appended, with the side's qualifier.
fn time_expr(
    node: &StreamNode,
    join: &JoinOn<'_>,
    s: usize,
    column: usize,
    appended: bool,
) -> Expr {
    let (qualifier, name) = if appended {
        let qualifier = join.schemas[s].qualified_field(0).0.cloned();
        let name = node_schema(node)
            .map_or_else(String::new, |schema| schema.field(column).name().clone());
        (qualifier, name)
    } else {
        let left_width = join.schemas[0].fields().len();
        let (qualifier, field) = join.output.qualified_field(column + s * left_width);
        (qualifier.cloned(), field.name().clone())
    };
    Expr::Column(datafusion::common::Column::new(qualifier, name))
}
