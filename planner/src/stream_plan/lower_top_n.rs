//! Lowering a TopN: `ROW_NUMBER() OVER (PARTITION BY .. ORDER BY ..)`
//! followed by a filter that bounds the number (`rn <= N`, `rn < N`,
//! `rn = 1`) becomes a keyed TopN (`weir_runtime::operators::top_n`),
//! exchanged by the partition keys. With N = 1 it is deduplication.
//!
//! The filter itself stays in the plan: it keeps what the TopN emits (every
//! row it emits is within the bound), and a stricter conjunct beside the
//! bound still applies.
//!
//! `ORDER BY .. LIMIT n` is the same TopN over one partition, its number
//! dropped (`lower_order_limit`).
//!
//! Partitioned by a bound of a TUMBLE, HOP or CUMULATE window over a
//! watermark, it is a TopN per window: each window's state goes when it
//! closes, and with `EMIT ON WINDOW CLOSE` its first rows are emitted then,
//! once (append-only).

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DFSchema, DFSchemaRef, ScalarValue, TableReference};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, SortExpr};
use weir_runtime::plan::{TopNSpec, TopNWindow};

use super::logical::Step;
use super::lower_join_interval::refuse_padded_window;
use super::lower_stateless::lower_project;
use super::lowering::{Lowering, arrow_schema, physical, unsupported};
use super::nodes::{StreamExchange, StreamNode, StreamTopN};
use crate::error::{PlanError, Result};
use crate::windows::WindowTvf;

/// What a row-number step holds, besides its input.
pub(super) struct RowNumber<'a> {
    /// The `PARTITION BY` keys.
    pub partition_by: &'a [Expr],
    /// The `ORDER BY`.
    pub order_by: &'a [SortExpr],
    /// The rows numbered.
    pub input: &'a DFSchemaRef,
    /// The input's rows, then the number.
    pub output: &'a DFSchemaRef,
}

/// The largest row number that the steps after a row-number step keep:
/// from the first filter that bounds it, following the number's column
/// through projections. `None` when nothing bounds it.
pub(super) fn row_number_bound(output: &DFSchemaRef, after: &[Step]) -> Option<usize> {
    let mut names = vec![output.field(output.fields().len() - 1).name().clone()];
    for step in after {
        match step {
            Step::Filter { predicate, .. } => {
                if let Some(bound) = split_conjunction(predicate)
                    .into_iter()
                    .find_map(|e| bound(e, &names))
                {
                    return Some(bound);
                }
            }
            Step::Project { exprs, output, .. } => {
                names = exprs
                    .iter()
                    .zip(output.fields())
                    .filter(|(e, _)| is_number(e, &names))
                    .map(|(_, f)| f.name().clone())
                    .collect();
            }
            Step::Unnest { .. } => {}
            Step::Scan { .. }
            | Step::Join { .. }
            | Step::Aggregate { .. }
            | Step::RowNumber { .. }
            | Step::Over { .. }
            | Step::OrderLimit { .. } => return None,
        }
    }
    None
}

/// Is `expr` the row number (a column named in `names`, perhaps cast or
/// renamed)?
fn is_number(expr: &Expr, names: &[String]) -> bool {
    match expr {
        Expr::Column(c) => names.contains(&c.name),
        Expr::Alias(a) => is_number(&a.expr, names),
        Expr::Cast(c) => is_number(&c.expr, names),
        Expr::TryCast(c) => is_number(&c.expr, names),
        _ => false,
    }
}

/// The bound `expr` puts on the row number, if it is `number <= n`,
/// `number < n`, `number = 1` (or the same the other way round).
fn bound(expr: &Expr, names: &[String]) -> Option<usize> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        return None;
    };
    let (op, value) = match (left.as_ref(), right.as_ref()) {
        (number, Expr::Literal(value, _)) if is_number(number, names) => (*op, value),
        (Expr::Literal(value, _), number) if is_number(number, names) => (op.swap()?, value),
        _ => return None,
    };
    let n = match value.cast_to(&datafusion::arrow::datatypes::DataType::Int64) {
        Ok(ScalarValue::Int64(Some(n))) => n,
        _ => return None,
    };
    let bound = match op {
        Operator::LtEq => n,
        Operator::Lt => n - 1,
        Operator::Eq if n == 1 => 1,
        _ => return None,
    };
    usize::try_from(bound).ok().filter(|b| *b >= 1)
}

/// `node`'s rows numbered by `over`, the first `limit` of each partition
/// kept.
pub(super) fn lower_top_n(
    node: StreamNode,
    over: RowNumber<'_>,
    limit: usize,
    lowering: &Lowering<'_>,
) -> Result<StreamNode> {
    let props = &lowering.props;
    let RowNumber {
        partition_by,
        order_by,
        input,
        output,
    } = over;
    let partition = partition_by
        .iter()
        .map(|e| physical(e, input, props))
        .collect::<Result<Vec<_>>>()?;
    let order = order_by
        .iter()
        .map(|s| {
            Ok((
                physical(&s.expr, input, props)?,
                SortOptions {
                    descending: !s.asc,
                    nulls_first: s.nulls_first,
                },
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let tvf = lowering.window_of(&node)?;
    let window = match tvf {
        Some(tvf) if node.watermarked() => {
            window(tvf, partition_by)?.map(|(key, plus)| TopNWindow {
                key,
                plus,
                emit_on_close: lowering.emit_on_window_close,
            })
        }
        _ => None,
    };
    if let Some(w) = window {
        let key = partition[w.key]
            .downcast_ref::<datafusion::physical_expr::expressions::Column>()
            .map(|c| c.index());
        refuse_padded_window(&node, &[key])?;
    }
    if window.is_some_and(|w| w.emit_on_close) && node.changelog() {
        return Err(unsupported(
            "EMIT ON WINDOW CLOSE over an updating input",
            "its rows can be retracted, so a closed window could still change; leave out EMIT ON WINDOW CLOSE for updating results",
        ));
    }
    let spec = TopNSpec {
        partition,
        order,
        limit,
        input_schema: arrow_schema(input),
        input_changelog: node.changelog(),
        output_schema: arrow_schema(output),
        window,
    };
    Ok(StreamNode::TopN(StreamTopN {
        input: Box::new(node),
        exchange: StreamExchange {
            // As the aggregate's: by the keys that are not window bounds,
            // so one worker keeps all the windows of a key.
            keys: partition_by
                .iter()
                .enumerate()
                .filter(|(i, _)| window.is_none_or(|w| w.key != *i))
                .map(|(_, e)| e.clone())
                .collect(),
            workers: lowering.parallelism,
        },
        partition_by: partition_by.to_vec(),
        order_by: order_by.to_vec(),
        window: window.and(tvf),
        spec: Arc::new(spec),
    }))
}

/// `ORDER BY order_by LIMIT limit` over `node`, whose rows are `input`: a
/// TopN over one partition (every row goes to one worker), its row number
/// dropped again, since the query did not ask for it.
pub(super) fn lower_order_limit(
    node: StreamNode,
    order_by: &[SortExpr],
    limit: usize,
    input: &DFSchemaRef,
    lowering: &Lowering<'_>,
) -> Result<StreamNode> {
    let mut fields: Vec<(Option<TableReference>, Arc<Field>)> = input
        .iter()
        .map(|(qualifier, field)| (qualifier.cloned(), field.clone()))
        .collect();
    fields.push((
        None,
        Arc::new(Field::new("__weir_row_number", DataType::UInt64, false)),
    ));
    let numbered = Arc::new(
        DFSchema::new_with_metadata(fields, input.metadata().clone())
            .map_err(|e| PlanError::Invalid(e.message().to_string()))?,
    );
    let over = RowNumber {
        partition_by: &[],
        order_by,
        input,
        output: &numbered,
    };
    let top_n = lower_top_n(node, over, limit, lowering)?;
    let columns: Vec<Expr> = input.columns().into_iter().map(Expr::Column).collect();
    lower_project(top_n, &columns, &numbered, input, &lowering.props)
}

/// Which `PARTITION BY` key closes the window, and what to add to its value
/// for the close time, when the rows are partitioned by a bound of a
/// TUMBLE, HOP or CUMULATE window.
fn window(tvf: WindowTvf, partition_by: &[Expr]) -> Result<Option<(usize, i64)>> {
    let bound = |name: &str| {
        partition_by
            .iter()
            .position(|e| matches!(e, Expr::Column(c) if c.name == name))
    };
    let (start, end) = (bound("window_start"), bound("window_end"));
    Ok(match (tvf, start, end) {
        (_, None, None) => None,
        (WindowTvf::Session { .. }, _, _) => {
            return Err(unsupported(
                "ROW_NUMBER() per SESSION window",
                "number the rows of a view over the session aggregate instead",
            ));
        }
        (_, _, Some(end)) => Some((end, 0)),
        (WindowTvf::Tumble { size } | WindowTvf::Hop { size, .. }, Some(start), None) => {
            Some((start, size))
        }
        (WindowTvf::Cumulate { .. }, Some(_), None) => {
            return Err(unsupported(
                "ROW_NUMBER() per CUMULATE window by window_start alone",
                "partition by window_end",
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    #[test]
    fn bounds_on_the_row_number_are_read_either_way_round() {
        let names = vec!["rn".to_string()];
        assert_eq!(bound(&col("rn").lt_eq(lit(10i64)), &names), Some(10));
        assert_eq!(bound(&col("rn").lt(lit(3u64)), &names), Some(2));
        assert_eq!(bound(&col("rn").eq(lit(1i32)), &names), Some(1));
        assert_eq!(bound(&lit(5i64).gt_eq(col("rn")), &names), Some(5));
        assert_eq!(bound(&col("rn").eq(lit(2i64)), &names), None);
        assert_eq!(bound(&col("rn").gt(lit(2i64)), &names), None);
        assert_eq!(bound(&col("other").lt_eq(lit(2i64)), &names), None);
        assert_eq!(bound(&col("rn").lt(lit(1i64)), &names), None);
    }
}
