//! Lowering a query's steps into a tree of stream plan nodes, one
//! `lower_*` function per node kind, and the rules about how nodes may be
//! stacked: a query's chain of steps starts from a stream or a join of two
//! chains; any number of keyed operators (joins, aggregates, TopNs) may
//! stack, each a stage of its own; `EMIT ON WINDOW CLOSE` needs a windowed
//! aggregate (or a TopN per window) over a watermark, and no join but an
//! interval join or a lookup join (the ones that forward a watermark).

use weir_runtime::operators::join::JoinKind;

use super::logical::Step;
use super::lower_aggregate::{GroupBy, lower_aggregate};
use super::lower_join::{JoinOn, lower_join};
use super::lower_join_lookup::{check_all_used, lookup_of};
use super::lower_over::{Over, lower_over};
use super::lower_source::lower_source;
use super::lower_stateless::{lower_filter, lower_project, lower_unnest};
use super::lower_top_n::{RowNumber, lower_order_limit, lower_top_n, row_number_bound};
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
    check_all_used(steps, lowering.lookups)?;
    let node = lower_chain(steps, lowering)?;
    if lowering.emit_on_window_close && !closes_windows(&node) {
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

/// Does `node` hold a windowed aggregate or a TopN per window (what
/// `EMIT ON WINDOW CLOSE` closes)?
fn closes_windows(node: &StreamNode) -> bool {
    match node {
        StreamNode::Source(_) => false,
        StreamNode::Filter(f) => closes_windows(&f.input),
        StreamNode::Project(p) => closes_windows(&p.input),
        StreamNode::Unnest(u) => closes_windows(&u.input),
        StreamNode::HashJoin(j) => closes_windows(&j.left) || closes_windows(&j.right),
        StreamNode::Aggregate(a) => a.windowed() || closes_windows(&a.input),
        StreamNode::TopN(t) => t.spec.window.is_some() || closes_windows(&t.input),
        StreamNode::OverWindow(o) => closes_windows(&o.input),
    }
}

/// One chain of steps: a stream read or a join of two chains, then the
/// operators on it in the order rows meet them.
fn lower_chain(steps: &[Step], lowering: &Lowering<'_>) -> Result<StreamNode> {
    let mut node = match steps.first() {
        Some(Step::Join {
            condition,
            left,
            right,
            on,
            kind,
            schemas,
            output,
        }) => {
            let lookup = lookup_of(left, right, lowering)?;
            let left = lower_chain(left, lowering)?;
            let right = lower_chain(right, lowering)?;
            let on = JoinOn {
                lookup,
                on,
                kind: *kind,
                schemas,
                output,
                // An inner join's condition is the filter over its pairs;
                // an outer join's is its own (a filter over it is a WHERE,
                // which bounds no pair).
                filter: match (kind, steps.get(1)) {
                    (JoinKind::Inner, Some(Step::Filter { predicate, .. })) => Some(predicate),
                    (JoinKind::Inner, _) => None,
                    (_, _) => condition.as_ref(),
                },
            };
            let join = lower_join(left, right, on, lowering)?;
            // A regular join's output has no watermark (see
            // `StreamNode::watermarked`); an interval join's has.
            if lowering.emit_on_window_close && !join.watermarked() {
                return Err(unsupported(
                    "EMIT ON WINDOW CLOSE over a join",
                    "a join's rows can still arrive for a window after it closed (a table row joins earlier stream rows); bound the two streams' times (b.ts BETWEEN a.ts - INTERVAL '..' AND a.ts + INTERVAL '..') for an interval join, or leave out EMIT ON WINDOW CLOSE for updating results",
                ));
            }
            join
        }
        Some(Step::Scan {
            name,
            input,
            projection,
            output,
        }) => lower_source(name, input, projection, output, lowering)?,
        _ => {
            return Err(PlanError::Invalid(
                "a continuous query must start from a stream".into(),
            ));
        }
    };
    for (at, step) in steps.iter().enumerate().skip(1) {
        node = match step {
            Step::Scan { .. } | Step::Join { .. } => {
                return Err(PlanError::Internal(
                    "a stream read or join in the middle of a chain of steps".into(),
                ));
            }
            Step::Aggregate {
                group,
                aggregates,
                input,
                output,
            } => {
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
                exprs,
                input,
                output,
            } => {
                match row_number_bound(output, &steps[at + 1..]) {
                    Some(limit) => {
                        let over = RowNumber {
                            partition_by,
                            order_by,
                            input,
                            output,
                        };
                        lower_top_n(node, over, limit, lowering)?
                    }
                    // Unbounded, it numbers every row: an OVER window, where
                    // ordered by event time over a watermark.
                    None => {
                        let over = Over {
                            exprs,
                            input,
                            output,
                        };
                        lower_over(node, over, lowering).map_err(|_| {
                            unsupported(
                                "ROW_NUMBER() without a bound on it",
                                "keep the first rows per key with a filter on the number: WHERE rn <= N (a TopN), or rn = 1; or number the rows of an append-only stream with a watermark in the order of its event-time column",
                            )
                        })?
                    }
                }
            }
            Step::Over {
                exprs,
                input,
                output,
            } => lower_over(
                node,
                Over {
                    exprs,
                    input,
                    output,
                },
                lowering,
            )?,
            Step::OrderLimit {
                order_by,
                limit,
                input,
            } => lower_order_limit(node, order_by, *limit, input, lowering)?,
        };
    }
    Ok(node)
}
