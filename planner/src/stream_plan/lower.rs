//! Lowering a query's steps into a tree of stream plan nodes, one
//! `lower_*` function per node kind, and the rules about how nodes may be
//! stacked: a query starts from a stream or a join of two; a join's inputs
//! are streams with stateless operators on them; at most one aggregate or
//! TopN;
//! `EMIT ON WINDOW CLOSE` needs a windowed aggregate over a watermark.

use super::logical::Step;
use super::lower_aggregate::{GroupBy, lower_aggregate};
use super::lower_join::{JoinOn, lower_join};
use super::lower_source::lower_source;
use super::lower_stateless::{lower_filter, lower_project, lower_unnest};
use super::lower_top_n::{RowNumber, lower_top_n, row_number_bound};
use super::lowering::{Lowering, unsupported};
use super::nodes::{StreamMaterialize, StreamNode};
use crate::error::{PlanError, Result};

/// The stream plan of `steps` (a query's, from `logical::collect`), whose
/// rows are `schema`.
pub(super) fn lower(
    steps: &[Step],
    schema: datafusion::arrow::datatypes::SchemaRef,
    lowering: &Lowering<'_>,
) -> Result<StreamMaterialize> {
    let mut node = match steps.first() {
        Some(Step::Join {
            left,
            right,
            on,
            kind,
            schemas,
            output,
        }) => {
            let left = lower_join_input(left, lowering)?;
            let right = lower_join_input(right, lowering)?;
            let on = JoinOn {
                on,
                kind: *kind,
                schemas,
                output,
                filter: match steps.get(1) {
                    Some(Step::Filter { predicate, .. }) => Some(predicate),
                    _ => None,
                },
            };
            lower_join(left, right, on, lowering.parallelism, &lowering.props)?
        }
        Some(Step::Scan {
            name,
            input,
            projection,
            output,
        }) => lower_source(name, input, projection, output),
        _ => {
            return Err(PlanError::Invalid(
                "a continuous query must start from a stream".into(),
            ));
        }
    };
    // A regular join's output has no watermark (see
    // `StreamNode::watermarked`); an interval join's has.
    if matches!(&node, StreamNode::HashJoin(join) if join.interval.is_none())
        && lowering.emit_on_window_close
    {
        return Err(unsupported(
            "EMIT ON WINDOW CLOSE over a join",
            "a join's rows can still arrive for a window after it closed (a table row joins earlier stream rows); bound the two streams' times (b.ts BETWEEN a.ts - INTERVAL '..' AND a.ts + INTERVAL '..') for an interval join, or leave out EMIT ON WINDOW CLOSE for updating results",
        ));
    }
    // A windowed aggregate or TopN, which EMIT ON WINDOW CLOSE needs.
    let mut aggregated = false;
    // The keyed operator already placed (the runtime runs one: an
    // aggregate or a TopN).
    let mut keyed: Option<&str> = None;
    for (at, step) in steps.iter().enumerate().skip(1) {
        node = match step {
            Step::Scan { .. } | Step::Join { .. } => {
                return Err(unsupported(
                    "a join of more than two inputs, or over an aggregate",
                    "build the inner join or aggregate as a view of its own",
                ));
            }
            Step::Aggregate {
                group,
                aggregates,
                input,
                output,
            } => {
                if keyed == Some("a TopN") {
                    return Err(unsupported(
                        "an aggregate over ROW_NUMBER() (a TopN)",
                        "build the TopN as a view of its own and aggregate over that view",
                    ));
                }
                keyed = Some("an aggregate");
                aggregated = true;
                let by = GroupBy {
                    group,
                    aggregates,
                    input,
                    output,
                };
                lower_aggregate(node, by, lowering)?
            }
            Step::Filter { predicate, input } => {
                lower_filter(node, predicate, input, &lowering.props)?
            }
            Step::Project {
                exprs,
                input,
                output,
            } => lower_project(node, exprs, input, output, &lowering.props)?,
            Step::Unnest { column, output } => lower_unnest(node, *column, output),
            Step::RowNumber {
                partition_by,
                order_by,
                input,
                output,
            } => {
                if let Some(below) = keyed {
                    return Err(unsupported(
                        &format!("ROW_NUMBER() over {below}"),
                        "build the inner query as a view of its own and number the rows of that view",
                    ));
                }
                let Some(limit) = row_number_bound(output, &steps[at + 1..]) else {
                    return Err(unsupported(
                        "ROW_NUMBER() without a bound on it",
                        "keep the first rows per key with a filter on the number: WHERE rn <= N (a TopN), or rn = 1",
                    ));
                };
                keyed = Some("a TopN");
                let over = RowNumber {
                    partition_by,
                    order_by,
                    input,
                    output,
                };
                let top_n = lower_top_n(node, over, limit, lowering)?;
                aggregated |= matches!(&top_n, StreamNode::TopN(t) if t.spec.window.is_some());
                top_n
            }
        };
    }
    if lowering.emit_on_window_close && !aggregated {
        return Err(PlanError::Invalid(
            "EMIT ON WINDOW CLOSE needs a windowed aggregate (or a ROW_NUMBER() per window)".into(),
        ));
    }
    Ok(StreamMaterialize {
        changelog: node.changelog(),
        input: node,
        schema,
        parallelism: lowering.parallelism,
    })
}

/// One input of a join: a stream read, then filters, projections and
/// unnests.
fn lower_join_input(steps: &[Step], lowering: &Lowering<'_>) -> Result<StreamNode> {
    let Some(Step::Scan {
        name,
        input,
        projection,
        output,
    }) = steps.first()
    else {
        return Err(unsupported(
            "a join input that is not a stream or table read with filters and projections",
            "build the aggregate or inner join as a view of its own",
        ));
    };
    let mut node = lower_source(name, input, projection, output);
    for step in &steps[1..] {
        node = match step {
            Step::Filter { predicate, input } => {
                lower_filter(node, predicate, input, &lowering.props)?
            }
            Step::Project {
                exprs,
                input,
                output,
            } => lower_project(node, exprs, input, output, &lowering.props)?,
            Step::Unnest { column, output } => lower_unnest(node, *column, output),
            Step::Scan { .. }
            | Step::Join { .. }
            | Step::Aggregate { .. }
            | Step::RowNumber { .. } => {
                return Err(unsupported(
                    "a join over an aggregate, a TopN or of more than two inputs",
                    "build the aggregate or inner join as a view of its own",
                ));
            }
        };
    }
    Ok(node)
}
