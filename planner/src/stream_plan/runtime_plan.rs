//! The last step: a tree of stream plan nodes becomes the runtime's
//! [`StreamPlan`]: its sources and its stateful stages (join, aggregate,
//! TopN) in the order the runtime numbers them, a stage's inputs before
//! it, each with the stateless operators run on its output before its
//! consumer. A tree the runtime cannot run here (a stateless node where a
//! source or stage belongs) is a bug in the planner, an internal error,
//! never a plan that silently drops part of the query.
//!
//! Only [`runtime_plan`] knows the runtime's plan layout.

use std::sync::Arc;

use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::PhysicalExpr;
use weir_runtime::plan::{
    PlanInput, SourcePlan, StageOperator, StagePlan, StatelessOp, StreamPlan,
};

use super::nodes::{
    StreamFilter, StreamMaterialize, StreamNode, StreamProject, StreamSource, StreamUnnest,
};
use crate::error::{PlanError, Result};

/// The runtime's plan of `plan`.
pub fn runtime_plan(plan: &StreamMaterialize) -> Result<StreamPlan> {
    let mut parts = Parts::default();
    let output = parts.chain(&plan.input)?;
    let (state, signature) = super::signature::signatures(plan);
    Ok(StreamPlan {
        sources: parts.sources,
        stages: parts.stages,
        output,
        output_schema: plan.schema.clone(),
        changelog: plan.changelog,
        event_time: super::event_time::output_event_time(plan),
        parallelism: plan.parallelism.max(1),
        stream_name: plan.input.first_source().name.clone(),
        state,
        signature,
    })
}

/// The sources and stages found so far, in the runtime's order.
#[derive(Default)]
struct Parts {
    sources: Vec<SourcePlan>,
    stages: Vec<StagePlan>,
}

impl Parts {
    /// `node` and the stateless operators on it: what feeds the node's
    /// consumer.
    fn chain(&mut self, node: &StreamNode) -> Result<PlanInput> {
        let (ops, below) = stateless_chain(node);
        self.feed(below, ops)
    }

    /// A source or stage, its inputs first, running `ops` on its output.
    fn feed(&mut self, node: &StreamNode, ops: Vec<StatelessOp>) -> Result<PlanInput> {
        let (operator, inputs) = match node {
            StreamNode::Source(source) => {
                let mut before = source_ops(source);
                before.extend(ops);
                self.sources.push(source_plan(source, before));
                return Ok(PlanInput::Source(self.sources.len() - 1));
            }
            StreamNode::HashJoin(join) => {
                let left = self.chain(&join.left)?;
                let right = self.chain(&join.right)?;
                (StageOperator::Join(join.spec.clone()), vec![left, right])
            }
            StreamNode::Aggregate(aggregate) => (
                StageOperator::Aggregate(aggregate.spec.clone()),
                vec![self.chain(&aggregate.input)?],
            ),
            StreamNode::TopN(top_n) => (
                StageOperator::TopN(top_n.spec.clone()),
                vec![self.chain(&top_n.input)?],
            ),
            StreamNode::OverWindow(over) => (
                StageOperator::OverWindow(over.spec.clone()),
                vec![self.chain(&over.input)?],
            ),
            other => return Err(mismatch("a source or a stateful operator", other)),
        };
        self.stages.push(StagePlan {
            operator,
            inputs,
            after: ops,
            timed: node.watermarked(),
        });
        Ok(PlanInput::Stage(self.stages.len() - 1))
    }
}

/// A source as the runtime runs it, with the operators each of its
/// partitions runs.
fn source_plan(source: &StreamSource, before: Vec<StatelessOp>) -> SourcePlan {
    SourcePlan {
        name: source.name.clone(),
        source: source.input.source.clone(),
        event_time: source.input.event_time,
        processing_time: source.processing_time,
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
        StreamNode::OverWindow(_) => "an OVER window",
    };
    PlanError::Internal(format!(
        "stream plan of a shape the runtime cannot run: expected {expected}, found {found}"
    ))
}
