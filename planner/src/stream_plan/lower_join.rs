//! Lowering a join: two lowered inputs, alike (each a source with stateless
//! operators on it), joined on equal keys by join workers that keep both
//! inputs' rows by key.

use std::sync::Arc;

use datafusion::common::DFSchemaRef;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::CastExpr;
use weir_runtime::operators::join::{JoinKind, JoinSpec};

use super::lowering::{arrow_schema, physical};
use super::nodes::{StreamExchange, StreamHashJoin, StreamNode};
use crate::error::{PlanError, Result};

/// What a join step holds, besides its inputs.
pub(super) struct JoinOn<'a> {
    /// Equal keys (left expression, right expression).
    pub on: &'a [(Expr, Expr)],
    /// Inner or left.
    pub kind: JoinKind,
    /// The left and the right input's rows.
    pub schemas: &'a [DFSchemaRef; 2],
    /// Left columns then right columns.
    pub output: &'a DFSchemaRef,
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
    let spec = Arc::new(JoinSpec {
        kind: join.kind,
        keys,
        inputs,
        input_changelog: [left.changelog(), right.changelog()],
        output_schema: arrow_schema(join.output),
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
    }))
}
