//! Lowering a join: two lowered inputs, alike (each a source with stateless
//! operators on it), joined on equal keys by join workers that keep both
//! inputs' rows by key: for ever, or, when the condition bounds how far
//! apart the two rows' event times are (`lower_join_interval`), until the
//! watermark makes them unmatchable; or, for a lookup join
//! (`lower_join_lookup`), only the table side's rows.

use std::sync::Arc;

use datafusion::common::DFSchemaRef;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::CastExpr;
use weir_runtime::operators::join::{JoinKind, JoinSpec};
use weir_runtime::plan::JoinState;

use super::lower_join_interval::{interval_bounds, time_columns};
use super::lower_join_lookup::check_lookup;
use super::lowering::{arrow_schema, physical};
use super::nodes::{StreamExchange, StreamHashJoin, StreamInterval, StreamNode};
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
    /// The condition on the pairs beyond equal keys (the filter right above
    /// the join), if any: where an interval join's time bounds are.
    pub filter: Option<&'a Expr>,
    /// The right input was read `FOR SYSTEM_TIME AS OF`: a lookup join.
    pub lookup: Option<&'a LookupUse>,
}

/// `left` joined with `right` on `join`, by `workers` join workers.
pub(super) fn lower_join(
    left: StreamNode,
    right: StreamNode,
    join: JoinOn<'_>,
    workers: usize,
    props: &ExecutionProps,
) -> Result<StreamNode> {
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
        None => (interval_of(&left, &right, &join), JoinState::KeptForever),
    };
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
    }))
}

/// The join's time bounds when it is an interval join: inner, of two
/// append-only inputs with event time, its condition bounding the distance
/// of their times on both sides (or a window join: equal window ends).
/// Otherwise a regular join.
fn interval_of(left: &StreamNode, right: &StreamNode, join: &JoinOn<'_>) -> Option<StreamInterval> {
    if join.kind != JoinKind::Inner || left.changelog() || right.changelog() {
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
