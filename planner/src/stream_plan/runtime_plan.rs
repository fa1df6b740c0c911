//! The last step: a tree of stream plan nodes becomes the runtime's
//! [`StreamPlan`]. The runtime runs one shape: sources with stateless
//! operators, an optional join of two such inputs, stateless operators, an
//! optional aggregate or TopN, stateless operators. Lowering only builds trees of
//! that shape; a tree of any other shape here is a bug in the planner, an
//! internal error, never a plan that silently drops part of the query.
//!
//! Only [`runtime_plan`] knows the runtime's plan layout: a `PlanInput`
//! that is one source or a join of two, each a source with the operators
//! its partitions run.

use std::sync::Arc;

use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::PhysicalExpr;
use weir_runtime::plan::{JoinPlan, PlanInput, SourcePlan, StatelessOp, StreamPlan};

use super::nodes::{
    StreamFilter, StreamMaterialize, StreamNode, StreamProject, StreamSource, StreamUnnest,
};
use crate::error::{PlanError, Result};

/// The runtime's plan of `plan`.
pub fn runtime_plan(plan: &StreamMaterialize) -> Result<StreamPlan> {
    let (top, below) = stateless_chain(&plan.input);
    let (aggregate, top_n, after, (middle, below)) = match below {
        StreamNode::Aggregate(aggregate) => (
            Some(aggregate.spec.clone()),
            None,
            top,
            stateless_chain(&aggregate.input),
        ),
        StreamNode::TopN(top_n) => (
            None,
            Some(top_n.spec.clone()),
            top,
            stateless_chain(&top_n.input),
        ),
        other => (None, None, Vec::new(), (top, other)),
    };
    let (input, stream) = match below {
        StreamNode::HashJoin(join) => {
            let (left, left_before) = input_chain(&join.left)?;
            let (right, right_before) = input_chain(&join.right)?;
            let plan = JoinPlan {
                left: source_plan(left, left_before),
                right: source_plan(right, right_before),
                spec: join.spec.clone(),
                then: middle,
                interval: join.interval.as_ref().map(|i| i.bounds),
            };
            (PlanInput::Join(plan), left)
        }
        StreamNode::Source(source) => {
            let mut before = source_ops(source);
            before.extend(middle);
            (PlanInput::Source(source_plan(source, before)), source)
        }
        other => {
            return Err(mismatch(
                "a join or a source under the aggregate or TopN",
                other,
            ));
        }
    };
    let (state, signature) = super::signature::signatures(plan);
    Ok(StreamPlan {
        input,
        aggregate,
        top_n,
        after,
        output_schema: plan.schema.clone(),
        changelog: plan.changelog,
        parallelism: plan.parallelism.max(1),
        stream_name: stream.name.clone(),
        state,
        signature,
    })
}

/// A source as the runtime runs it, with the operators each of its
/// partitions runs.
fn source_plan(source: &StreamSource, before: Vec<StatelessOp>) -> SourcePlan {
    SourcePlan {
        source: source.input.source.clone(),
        event_time: source.input.event_time,
        before,
    }
}

/// The stateless operators on top of `node`, in the order rows meet them,
/// and the first node under them that is not stateless.
fn stateless_chain(node: &StreamNode) -> (Vec<StatelessOp>, &StreamNode) {
    let mut ops = Vec::new();
    let mut node = node;
    loop {
        let (op, input) = match node {
            StreamNode::Filter(StreamFilter {
                input, physical, ..
            }) => (StatelessOp::Filter(physical.clone()), input),
            StreamNode::Project(StreamProject {
                input,
                physical,
                schema,
                ..
            }) => (
                StatelessOp::Project {
                    exprs: physical.clone(),
                    schema: schema.clone(),
                },
                input,
            ),
            StreamNode::Unnest(StreamUnnest {
                input,
                column,
                schema,
            }) => (
                StatelessOp::Unnest {
                    column: *column,
                    schema: schema.clone(),
                },
                input,
            ),
            _ => break,
        };
        ops.push(op);
        node = &**input;
    }
    ops.reverse();
    (ops, node)
}

/// A join input: its source, and the operators each of its partitions runs.
fn input_chain(node: &StreamNode) -> Result<(&StreamSource, Vec<StatelessOp>)> {
    match stateless_chain(node) {
        (ops, StreamNode::Source(source)) => {
            let mut before = source_ops(source);
            before.extend(ops);
            Ok((source, before))
        }
        (_, other) => Err(mismatch("a source under a join input", other)),
    }
}

/// What a source partition runs first: the projection to the columns the
/// query reads, if any.
fn source_ops(source: &StreamSource) -> Vec<StatelessOp> {
    let Some(projection) = &source.projection else {
        return Vec::new();
    };
    let source_schema = source.input.source.schema();
    let exprs = projection
        .iter()
        .map(|&i| Arc::new(Column::new(source_schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
        .collect();
    vec![StatelessOp::Project {
        exprs,
        schema: source.schema.clone(),
    }]
}

fn mismatch(expected: &str, found: &StreamNode) -> PlanError {
    let found = match found {
        StreamNode::Source(_) => "a source",
        StreamNode::Filter(_) | StreamNode::Project(_) | StreamNode::Unnest(_) => {
            "a stateless operator"
        }
        StreamNode::HashJoin(_) => "a join",
        StreamNode::Aggregate(_) => "an aggregate",
        StreamNode::TopN(_) => "a TopN",
    };
    PlanError::Internal(format!(
        "stream plan of a shape the runtime cannot run: expected {expected}, found {found}"
    ))
}
