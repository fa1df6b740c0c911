//! The first step of the incremental rewrite: DataFusion's optimized
//! `LogicalPlan` walked into the operators of a continuous query, in the
//! order rows meet them, refusing (with the reason and a hint) every part of
//! a query that cannot be maintained incrementally.
//!
//! Nothing is compiled here: each step keeps DataFusion's logical
//! expressions and schemas, and `lower_*` turns it into a typed stream plan
//! node.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::{DFSchemaRef, Dependency};
use datafusion::logical_expr::logical_plan::builder::build_join_schema;
use datafusion::logical_expr::{Expr, LogicalPlan, SortExpr as Sort};
use weir_runtime::operators::join::JoinKind;

use super::lowering::unsupported;
use super::nodes::StreamInput;
use crate::error::{PlanError, Result};

/// One operator of a continuous query as DataFusion planned it. A query's
/// steps start with a [`Step::Scan`] or a [`Step::Join`] (whose two inputs
/// are step lists of their own); the rest follow in the order rows meet them.
pub(super) enum Step {
    /// A stream (or table Weir owns) read.
    Scan {
        /// The stream's name.
        name: String,
        /// The stream, resolved by the caller.
        input: StreamInput,
        /// The source columns the query reads, when not all of them.
        projection: Option<Vec<usize>>,
        /// The scan's output.
        output: DFSchemaRef,
    },
    /// `WHERE` / `HAVING` / a join's extra condition.
    Filter {
        /// The condition.
        predicate: Expr,
        /// The rows it reads.
        input: DFSchemaRef,
    },
    /// Computed columns.
    Project {
        /// One expression per output column.
        exprs: Vec<Expr>,
        /// The rows it reads.
        input: DFSchemaRef,
        /// The rows it makes.
        output: DFSchemaRef,
    },
    /// One row per element of a list column (HOP and CUMULATE windows).
    Unnest {
        /// The list column.
        column: usize,
        /// The rows it makes.
        output: DFSchemaRef,
    },
    /// `GROUP BY` with aggregates.
    Aggregate {
        /// The group keys.
        group: Vec<Expr>,
        /// The aggregate calls.
        aggregates: Vec<Expr>,
        /// The rows it reads.
        input: DFSchemaRef,
        /// Group columns then aggregate columns.
        output: DFSchemaRef,
    },
    /// `ROW_NUMBER() OVER (PARTITION BY .. ORDER BY ..)`: a TopN once a
    /// later filter bounds the number (`lower` finds the bound).
    RowNumber {
        /// The `PARTITION BY` keys.
        partition_by: Vec<Expr>,
        /// The `ORDER BY`.
        order_by: Vec<Sort>,
        /// The call itself (an OVER window when no filter bounds it).
        exprs: Vec<Expr>,
        /// The rows it reads.
        input: DFSchemaRef,
        /// The rows it makes: the input's, then the row number.
        output: DFSchemaRef,
    },
    /// Window functions over a frame (`agg(..) OVER (PARTITION BY ..
    /// ORDER BY .. ROWS ..)`): an OVER window (`lower_over`).
    Over {
        /// The window function calls.
        exprs: Vec<Expr>,
        /// The rows they read.
        input: DFSchemaRef,
        /// The rows they make: the input's, then one column per call.
        output: DFSchemaRef,
    },
    /// `ORDER BY .. LIMIT n`: the first `n` rows in an order, kept as they
    /// change (a TopN over the whole input).
    OrderLimit {
        /// The `ORDER BY`.
        order_by: Vec<Sort>,
        /// How many rows.
        limit: usize,
        /// The rows it reads (and makes).
        input: DFSchemaRef,
    },
    /// Two inputs, each a chain of its own, joined on equal keys.
    Join {
        /// An outer join's condition beyond equal keys: which rows pair,
        /// and so which are padded (an inner join's is a [`Step::Filter`]
        /// over its pairs instead). Only an interval join's time bounds
        /// are accepted there (`lower_join`).
        condition: Option<Expr>,
        /// The left input's steps.
        left: Vec<Step>,
        /// The right input's steps.
        right: Vec<Step>,
        /// Equal keys (left expression, right expression).
        on: Vec<(Expr, Expr)>,
        /// Inner, left, right or full.
        kind: JoinKind,
        /// The left and the right input's rows.
        schemas: [DFSchemaRef; 2],
        /// Left columns then right columns.
        output: DFSchemaRef,
    },
}

/// The `PARTITION BY` and `ORDER BY` of `exprs` when they are one
/// `ROW_NUMBER()` over the whole partition up to the current row (as
/// written without a frame) with an `ORDER BY`.
fn row_number(exprs: &[Expr]) -> Option<(Vec<Expr>, Vec<Sort>)> {
    let [expr] = exprs else {
        return None;
    };
    let Expr::WindowFunction(function) = expr.clone().unalias() else {
        return None;
    };
    let params = &function.params;
    let plain = params.args.is_empty() && params.filter.is_none() && !params.distinct;
    (function.fun.name() == "row_number" && plain && !params.order_by.is_empty())
        .then(|| (params.partition_by.clone(), params.order_by.clone()))
}

/// Does the right input of `join` hold at most one row per join key? When
/// its columns functionally depend on a set of its columns (its group keys,
/// for an aggregate) that the join's right keys cover.
fn right_unique_per_key(join: &datafusion::logical_expr::logical_plan::Join) -> bool {
    let right = join.right.schema();
    let keys: Vec<usize> = join
        .on
        .iter()
        .filter_map(|(_, r)| match r {
            Expr::Column(c) => right.index_of_column(c).ok(),
            _ => None,
        })
        .collect();
    right.functional_dependencies().iter().any(|d| {
        matches!(d.mode, Dependency::Single)
            && !d.source_indices.is_empty()
            && d.source_indices.iter().all(|i| keys.contains(i))
    })
}

/// `input` sorted by `order_by`, its first `limit` rows kept.
fn order_limit(
    input: &LogicalPlan,
    order_by: &[Sort],
    limit: usize,
    inputs: &HashMap<String, StreamInput>,
    steps: &mut Vec<Step>,
) -> Result<()> {
    if limit == 0 {
        return Err(unsupported(
            "LIMIT 0",
            "a view of no rows reads nothing; drop the view instead",
        ));
    }
    collect(input, inputs, steps)?;
    steps.push(Step::OrderLimit {
        order_by: order_by.to_vec(),
        limit,
        input: input.schema().clone(),
    });
    Ok(())
}

/// Walk `plan` into `steps`, reading the streams in `inputs`.
pub(super) fn collect(
    plan: &LogicalPlan,
    inputs: &HashMap<String, StreamInput>,
    steps: &mut Vec<Step>,
) -> Result<()> {
    match plan {
        LogicalPlan::Projection(p) => {
            collect(&p.input, inputs, steps)?;
            steps.push(Step::Project {
                exprs: p.expr.clone(),
                input: p.input.schema().clone(),
                output: p.schema.clone(),
            });
        }
        LogicalPlan::Filter(f) => {
            collect(&f.input, inputs, steps)?;
            // The same predicate, already applied for the scan: once is enough.
            if matches!(steps.last(), Some(Step::Filter { predicate, .. }) if predicate == &f.predicate)
            {
                return Ok(());
            }
            steps.push(Step::Filter {
                predicate: f.predicate.clone(),
                input: f.input.schema().clone(),
            });
        }
        LogicalPlan::SubqueryAlias(a) => collect(&a.input, inputs, steps)?,
        LogicalPlan::Unnest(u) => {
            collect(&u.input, inputs, steps)?;
            match (
                u.list_type_columns.as_slice(),
                u.struct_type_columns.is_empty(),
            ) {
                ([(column, list)], true) if list.depth == 1 => steps.push(Step::Unnest {
                    column: *column,
                    output: u.schema.clone(),
                }),
                _ => {
                    return Err(unsupported(
                        "UNNEST of several or nested lists",
                        "unnest one list column at a time",
                    ));
                }
            }
        }
        LogicalPlan::Aggregate(a) => {
            collect(&a.input, inputs, steps)?;
            steps.push(Step::Aggregate {
                group: a.group_expr.clone(),
                aggregates: a.aggr_expr.clone(),
                input: a.input.schema().clone(),
                output: a.schema.clone(),
            });
        }
        LogicalPlan::TableScan(scan) => {
            let name = scan.table_name.table().to_string();
            let Some(input) = inputs.get(&name) else {
                return Err(unsupported(
                    &format!("reading \"{name}\", which is not a stream,"),
                    "a materialized view reads streams and tables Weir owns (created with columns); query tables over files with SELECT",
                ));
            };
            steps.push(Step::Scan {
                name,
                input: input.clone(),
                projection: scan.projection.clone(),
                output: scan.projected_schema.clone(),
            });
            // Filters offered to the scan are applied again here: a stream
            // source does not filter, and re-applying an inexact one does
            // no harm.
            for filter in &scan.filters {
                steps.push(Step::Filter {
                    predicate: filter.clone(),
                    input: scan.projected_schema.clone(),
                });
            }
        }
        LogicalPlan::Sort(sort) => match sort.fetch {
            Some(limit) => order_limit(&sort.input, &sort.expr, limit, inputs, steps)?,
            None => {
                return Err(unsupported(
                    "ORDER BY",
                    "a stream has no end to sort up to; order when you query the view, or keep the first rows with ORDER BY .. LIMIT n",
                ));
            }
        },
        LogicalPlan::Limit(limit) => {
            let fetch = match limit.get_fetch_type() {
                Ok(datafusion::logical_expr::FetchType::Literal(fetch)) => fetch,
                _ => None,
            };
            let skip = match limit.get_skip_type() {
                Ok(datafusion::logical_expr::SkipType::Literal(skip)) => skip,
                _ => 1,
            };
            match (limit.input.as_ref(), fetch, skip) {
                (LogicalPlan::Sort(sort), Some(fetch), 0) => {
                    let fetch = sort.fetch.map_or(fetch, |f| f.min(fetch));
                    order_limit(&sort.input, &sort.expr, fetch, inputs, steps)?
                }
                // ORDER BY .. LIMIT is maintained; skipping the first rows
                // is what is not (nor OFFSET alone).
                (_, _, skip) if skip != 0 => {
                    return Err(unsupported(
                        "OFFSET",
                        "a view keeps the first rows in an order (ORDER BY .. LIMIT n) but does not skip rows; leave out OFFSET, or skip rows when you query the view",
                    ));
                }
                _ => {
                    return Err(unsupported(
                        "LIMIT",
                        "which rows of a stream come first is not defined; keep the first rows in an order with ORDER BY .. LIMIT n, or limit when you query the view",
                    ));
                }
            }
        }
        LogicalPlan::Join(join) => {
            // A semi join whose right rows are unique per join key (the
            // right input is an aggregate grouped by those keys, as
            // DataFusion plans an inner join of which only the left columns
            // are used) is that inner join, projected to the left columns.
            let semi = join.join_type == datafusion::logical_expr::JoinType::LeftSemi
                && right_unique_per_key(join);
            let kind = match join.join_type {
                datafusion::logical_expr::JoinType::Inner => JoinKind::Inner,
                datafusion::logical_expr::JoinType::Left => JoinKind::Left,
                datafusion::logical_expr::JoinType::Right => JoinKind::Right,
                datafusion::logical_expr::JoinType::Full => JoinKind::Full,
                _ if semi => JoinKind::Inner,
                other => {
                    return Err(unsupported(
                        &format!("a {other} join"),
                        "inner, LEFT, RIGHT and FULL joins are supported, and semi joins over an input unique per join key; write other semi or anti joins as a join with a filter",
                    ));
                }
            };
            if join.on.is_empty() {
                return Err(unsupported(
                    "a join without an equality between the two inputs",
                    "join on equal keys (a.k = b.k); a cross join would keep every pair forever",
                ));
            }
            if join.null_equality != datafusion::common::NullEquality::NullEqualsNothing {
                return Err(unsupported(
                    "a join where NULL equals NULL",
                    "join on keys that are not NULL",
                ));
            }
            let (mut left, mut right) = (Vec::new(), Vec::new());
            collect(&join.left, inputs, &mut left)?;
            collect(&join.right, inputs, &mut right)?;
            let pairs = match semi {
                true => Arc::new(
                    build_join_schema(
                        join.left.schema(),
                        join.right.schema(),
                        &datafusion::logical_expr::JoinType::Inner,
                    )
                    .map_err(|e| PlanError::Invalid(e.message().to_string()))?,
                ),
                false => join.schema.clone(),
            };
            // An outer join's condition decides which rows are padded: it
            // stays with the join rather than filtering its output.
            let condition = match kind {
                JoinKind::Inner => None,
                _ => join.filter.clone(),
            };
            steps.push(Step::Join {
                condition,
                left,
                right,
                on: join.on.clone(),
                kind,
                schemas: [join.left.schema().clone(), join.right.schema().clone()],
                output: pairs.clone(),
            });
            // The rest of an inner join's condition filters the pairs.
            if let (JoinKind::Inner, Some(filter)) = (kind, &join.filter) {
                steps.push(Step::Filter {
                    predicate: filter.clone(),
                    input: pairs.clone(),
                });
            }
            if semi {
                steps.push(Step::Project {
                    exprs: join
                        .left
                        .schema()
                        .columns()
                        .into_iter()
                        .map(Expr::Column)
                        .collect(),
                    input: pairs,
                    output: join.schema.clone(),
                });
            }
        }
        LogicalPlan::Window(window) => {
            collect(&window.input, inputs, steps)?;
            let Some((partition_by, order_by)) = row_number(&window.window_expr) else {
                // Any other window function: over a frame in event time.
                steps.push(Step::Over {
                    exprs: window.window_expr.clone(),
                    input: window.input.schema().clone(),
                    output: window.schema.clone(),
                });
                return Ok(());
            };
            steps.push(Step::RowNumber {
                partition_by,
                order_by,
                exprs: window.window_expr.clone(),
                input: window.input.schema().clone(),
                output: window.schema.clone(),
            });
        }
        LogicalPlan::Distinct(_) => return Err(unsupported("DISTINCT", "use GROUP BY")),
        LogicalPlan::Union(_) => return Err(unsupported("UNION", "create one view per input")),
        LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
            return Err(unsupported(
                "a query without a stream",
                "a materialized view must read a stream",
            ));
        }
        other => {
            return Err(unsupported(
                &format!("\"{}\"", other.display()),
                "this part of the query cannot be maintained incrementally",
            ));
        }
    }
    Ok(())
}
