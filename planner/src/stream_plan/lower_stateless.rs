//! Lowering the stateless operators: filters, projections and unnests, each
//! on the node below it. Their expressions are compiled to DataFusion
//! physical expressions, so every scalar function DataFusion has works in a
//! view as it does in a `SELECT`.

use datafusion::common::DFSchemaRef;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::Expr;

use super::lowering::{arrow_schema, physical};
use super::nodes::{StreamFilter, StreamNode, StreamProject, StreamUnnest};
use crate::error::Result;

/// `WHERE predicate` over `node`, whose rows are `schema`.
pub(super) fn lower_filter(
    node: StreamNode,
    predicate: &Expr,
    schema: &DFSchemaRef,
    props: &ExecutionProps,
) -> Result<StreamNode> {
    Ok(StreamNode::Filter(StreamFilter {
        physical: physical(predicate, schema, props)?,
        predicate: predicate.clone(),
        input: Box::new(node),
    }))
}

/// `exprs` computed over `node`, whose rows are `schema`, as `output`.
pub(super) fn lower_project(
    node: StreamNode,
    exprs: &[Expr],
    schema: &DFSchemaRef,
    output: &DFSchemaRef,
    props: &ExecutionProps,
) -> Result<StreamNode> {
    let physical = exprs
        .iter()
        .map(|e| physical(e, schema, props))
        .collect::<Result<Vec<_>>>()?;
    Ok(StreamNode::Project(StreamProject {
        input: Box::new(node),
        exprs: exprs.to_vec(),
        physical,
        schema: arrow_schema(output),
    }))
}

/// The list column `column` of `node` unnested, as `output`.
pub(super) fn lower_unnest(node: StreamNode, column: usize, output: &DFSchemaRef) -> StreamNode {
    StreamNode::Unnest(StreamUnnest {
        input: Box::new(node),
        column,
        schema: arrow_schema(output),
    })
}
