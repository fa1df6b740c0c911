//! Lowering an OVER window: window functions over a frame that ends at the
//! current row, ordered by event time, over an append-only input with a
//! watermark (`weir_runtime::operators::over_window`), exchanged by the
//! `PARTITION BY` keys:
//!
//! ```text
//!   agg(..) OVER (PARTITION BY k ORDER BY ts [, tie breakers]
//!                 ROWS BETWEEN n PRECEDING AND CURRENT ROW)
//!   agg(..) OVER (PARTITION BY k ORDER BY ts
//!                 RANGE BETWEEN INTERVAL '..' PRECEDING AND CURRENT ROW)
//!   agg(..) OVER (PARTITION BY k ORDER BY ts [ROWS|RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW])
//!   ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts ..)   (without a bound on it)
//! ```
//! As in Flink, a row is computed once the watermark passes its time, so
//! its frame holds only rows that can no longer change. What does not fit
//! is refused with the reason: an input without a watermark or one that
//! retracts, an order that does not start with the event time, a frame
//! that reaches past the current row, a function that needs later rows.

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DFSchemaRef, ScalarValue};
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionParams};
use datafusion::logical_expr::{
    Expr, SortExpr, WindowFrame, WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition,
};
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use weir_runtime::operators::over_window::{OverFrame, OverFunction, OverWindowSpec};
use weir_runtime::plan::{Emit, WindowKind};

use super::lowering::{Lowering, arrow_schema, physical, unsupported};
use super::nodes::{
    StreamExchange, StreamFilter, StreamNode, StreamOverWindow, StreamProject, StreamUnnest,
};
use crate::error::{PlanError, Result};

/// What an OVER step holds, besides its input.
pub(super) struct Over<'a> {
    /// The window function calls (perhaps aliased).
    pub exprs: &'a [Expr],
    /// The rows they read.
    pub input: &'a DFSchemaRef,
    /// The input's rows, then one column per call.
    pub output: &'a DFSchemaRef,
}

/// The hint of every refusal about the input.
const INPUT_HINT: &str = "an OVER window reads an append-only stream with a watermark (WATERMARK FOR ts AS ..) and orders by its event-time column: each row is computed once the watermark passes its time; over other inputs, aggregate with GROUP BY, or keep the first rows per key with ROW_NUMBER() .. <= N";

/// `node`'s rows with the window functions of `over` computed on each.
pub(super) fn lower_over(
    node: StreamNode,
    over: Over<'_>,
    lowering: &Lowering<'_>,
) -> Result<StreamNode> {
    let Over {
        exprs,
        input,
        output,
    } = over;
    let calls: Vec<&WindowFunction> = exprs
        .iter()
        .map(|e| match e {
            Expr::WindowFunction(f) => Ok(f.as_ref()),
            Expr::Alias(a) => match a.expr.as_ref() {
                Expr::WindowFunction(f) => Ok(f.as_ref()),
                _ => Err(PlanError::Internal(format!("a window step with {e}"))),
            },
            _ => Err(PlanError::Internal(format!("a window step with {e}"))),
        })
        .collect::<Result<_>>()?;
    let Some(first) = calls.first() else {
        return Err(PlanError::Internal(
            "a window step without functions".into(),
        ));
    };
    let WindowFunctionParams {
        partition_by,
        order_by,
        window_frame,
        ..
    } = &first.params;
    if calls.iter().any(|c| {
        &c.params.partition_by != partition_by
            || &c.params.order_by != order_by
            || &c.params.window_frame != window_frame
    }) {
        return Err(unsupported(
            "window functions (OVER) with different frames over the same rows",
            "give the functions one frame, or compute each in a view of its own",
        ));
    }
    if node.changelog() {
        return Err(unsupported(
            "a window function (OVER) over an updating input",
            &format!(
                "its rows can be retracted, so a row already computed could change; {INPUT_HINT}"
            ),
        ));
    }
    if !node.watermarked() {
        return Err(unsupported(
            "a window function (OVER) over an input without a watermark",
            &format!(
                "without one, no row is ever known to be the last before another; {INPUT_HINT}"
            ),
        ));
    }
    let time = event_time(&node, order_by, input)?;
    let frame = frame(window_frame, order_by.len())?;
    let physical_input = arrow_schema(input);
    let props = &lowering.props;
    let functions = calls
        .iter()
        .zip(exprs)
        .map(|(call, expr)| function(call, expr, frame, input, &physical_input, lowering))
        .collect::<Result<Vec<_>>>()?;
    let spec = OverWindowSpec {
        partition: partition_by
            .iter()
            .map(|e| physical(e, input, props))
            .collect::<Result<_>>()?,
        order: order_by
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
            .collect::<Result<_>>()?,
        time,
        frame,
        functions,
        input_schema: physical_input,
        output_schema: arrow_schema(output),
    };
    Ok(StreamNode::OverWindow(StreamOverWindow {
        input: Box::new(node),
        exchange: StreamExchange {
            keys: partition_by.clone(),
            workers: lowering.parallelism,
        },
        partition_by: partition_by.clone(),
        order_by: order_by.clone(),
        frame: window_frame.clone(),
        functions: exprs.to_vec(),
        spec: Arc::new(spec),
    }))
}

/// The input column of the event time that `order_by` starts with, or the
/// refusal that says why it must.
fn event_time(node: &StreamNode, order_by: &[SortExpr], input: &DFSchemaRef) -> Result<usize> {
    let refuse = || {
        unsupported(
            "a window function (OVER) not ordered by event time",
            &format!(
                "ORDER BY the event-time column first, ascending (more columns after it break ties); {INPUT_HINT}"
            ),
        )
    };
    let Some(SortExpr {
        expr: Expr::Column(column),
        asc: true,
        ..
    }) = order_by.first()
    else {
        return Err(refuse());
    };
    let index = input.index_of_column(column).map_err(|_| refuse())?;
    if time_columns(node).contains(&index) {
        Ok(index)
    } else {
        Err(refuse())
    }
}

/// The columns of `node`'s rows whose values the watermark bounds: a row
/// of an older time than the watermark can no longer arrive. A source's
/// event-time column, through filters, projections and unnests; a window's
/// end out of an aggregate that emits on window close (its rows come when
/// the watermark passes it); an OVER window's input's.
fn time_columns(node: &StreamNode) -> Vec<usize> {
    match node {
        StreamNode::Source(source) => source.event_time_columns(),
        StreamNode::Filter(StreamFilter { input, .. }) => time_columns(input),
        StreamNode::Unnest(StreamUnnest { input, column, .. }) => time_columns(input)
            .into_iter()
            .filter(|time| time != column)
            .collect(),
        StreamNode::Project(StreamProject { input, exprs, .. }) => {
            let schema = rows_of(input);
            let times: Vec<&String> = time_columns(input)
                .into_iter()
                .map(|t| schema.field(t).name())
                .collect();
            exprs
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(Expr::clone(e).unalias(), Expr::Column(c) if times.contains(&&c.name)))
                .map(|(i, _)| i)
                .collect()
        }
        StreamNode::Aggregate(aggregate) => match aggregate.spec.window {
            WindowKind::Fixed { key, plus: 0 } if aggregate.spec.emit == Emit::OnWindowClose => {
                vec![key]
            }
            _ => Vec::new(),
        },
        StreamNode::OverWindow(over) => time_columns(&over.input),
        StreamNode::HashJoin(_) | StreamNode::TopN(_) => Vec::new(),
    }
}

/// The rows `node` makes.
fn rows_of(node: &StreamNode) -> SchemaRef {
    match node {
        StreamNode::Source(source) => source.schema.clone(),
        StreamNode::Filter(StreamFilter { input, .. }) => rows_of(input),
        StreamNode::Project(project) => project.schema.clone(),
        StreamNode::Unnest(unnest) => unnest.schema.clone(),
        StreamNode::HashJoin(join) => join.spec.output_schema.clone(),
        StreamNode::Aggregate(aggregate) => aggregate.spec.output_schema.clone(),
        StreamNode::TopN(top_n) => top_n.spec.output_schema.clone(),
        StreamNode::OverWindow(over) => over.spec.output_schema.clone(),
    }
}

/// The frame of `window_frame`, over `order_keys` `ORDER BY` keys.
fn frame(window_frame: &WindowFrame, order_keys: usize) -> Result<OverFrame> {
    if window_frame.end_bound != WindowFrameBound::CurrentRow {
        return Err(unsupported(
            "a window frame that ends after the current row",
            "an OVER window computes each row once the watermark passes it, from the rows up to it; end the frame at CURRENT ROW",
        ));
    }
    let preceding = match &window_frame.start_bound {
        WindowFrameBound::Preceding(v) if v.is_null() => None,
        WindowFrameBound::Preceding(v) => Some(v.clone()),
        WindowFrameBound::CurrentRow => Some(ScalarValue::UInt64(Some(0))),
        WindowFrameBound::Following(_) => {
            return Err(unsupported(
                "a window frame that starts after the current row",
                "start the frame at n PRECEDING, CURRENT ROW or UNBOUNDED PRECEDING",
            ));
        }
    };
    match (window_frame.units, preceding) {
        (WindowFrameUnits::Rows, None) => Ok(OverFrame::UnboundedRows),
        (WindowFrameUnits::Range, None) => Ok(OverFrame::UnboundedRange),
        (WindowFrameUnits::Rows, Some(n)) => {
            match n.cast_to(&datafusion::arrow::datatypes::DataType::UInt64) {
                Ok(ScalarValue::UInt64(Some(n))) => {
                    Ok(OverFrame::Rows(usize::try_from(n).map_err(|_| {
                        PlanError::Invalid(format!("a frame of {n} rows"))
                    })?))
                }
                _ => Err(PlanError::Invalid(format!("a frame of {n} rows preceding"))),
            }
        }
        (WindowFrameUnits::Range, Some(d)) if order_keys == 1 => match nanos(&d) {
            Some(d) if d >= 0 => Ok(OverFrame::Range(d)),
            _ => Err(unsupported(
                &format!("a RANGE frame of {d} preceding"),
                "give the range as an INTERVAL of days, hours, minutes or seconds (months have no fixed length)",
            )),
        },
        (WindowFrameUnits::Range, Some(_)) => Err(unsupported(
            "a RANGE frame over several ORDER BY columns",
            "order a RANGE frame by the event-time column alone",
        )),
        (WindowFrameUnits::Groups, _) => Err(unsupported("a GROUPS frame", "use ROWS or RANGE")),
    }
}

/// A constant interval or duration in nanoseconds (none for months, which
/// have no fixed length).
fn nanos(value: &ScalarValue) -> Option<i64> {
    const DAY: i64 = 86_400_000_000_000;
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => i64::from(v.days)
            .checked_mul(DAY)?
            .checked_add(v.nanoseconds),
        ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days)
            .checked_mul(DAY)?
            .checked_add(i64::from(v.milliseconds).checked_mul(1_000_000)?),
        ScalarValue::DurationNanosecond(Some(v)) => Some(*v),
        ScalarValue::DurationMicrosecond(Some(v)) => v.checked_mul(1_000),
        ScalarValue::DurationMillisecond(Some(v)) => v.checked_mul(1_000_000),
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

/// One window function call, compiled: an aggregate (DataFusion's, so it
/// computes what the batch answer does) or `ROW_NUMBER()`.
fn function(
    call: &WindowFunction,
    expr: &Expr,
    frame: OverFrame,
    input: &DFSchemaRef,
    physical_input: &SchemaRef,
    lowering: &Lowering<'_>,
) -> Result<OverFunction> {
    let params = &call.params;
    if params.filter.is_some() || params.distinct {
        return Err(unsupported(
            "FILTER or DISTINCT in a window function (OVER)",
            "filter the rows before the window, or aggregate DISTINCT values with GROUP BY",
        ));
    }
    match &call.fun {
        WindowFunctionDefinition::AggregateUDF(udaf) => {
            let args = params
                .args
                .iter()
                .map(|e| physical(e, input, &lowering.props))
                .collect::<Result<Vec<_>>>()?;
            let aggregate = AggregateExprBuilder::new(udaf.clone(), args)
                .schema(physical_input.clone())
                .alias(expr.schema_name().to_string())
                .build()
                .map_err(|e| PlanError::Invalid(e.message().to_string()))?;
            // A frame that slides needs an accumulator that can take rows
            // out again.
            let unbounded = matches!(frame, OverFrame::UnboundedRows | OverFrame::UnboundedRange);
            if !unbounded && aggregate.create_sliding_accumulator().is_err() {
                return Err(unsupported(
                    &format!("{}() over a frame that slides", udaf.name()),
                    "over ROWS or RANGE .. PRECEDING use count, sum, avg, min or max; other aggregates work from UNBOUNDED PRECEDING",
                ));
            }
            Ok(OverFunction::Aggregate(Arc::new(aggregate)))
        }
        WindowFunctionDefinition::WindowUDF(udwf) if udwf.name() == "row_number" => {
            Ok(OverFunction::RowNumber)
        }
        WindowFunctionDefinition::WindowUDF(udwf) => Err(unsupported(
            &format!("{}() in a window function (OVER)", udwf.name()),
            "an OVER window computes aggregates (count, sum, avg, min, max) and ROW_NUMBER() over rows up to the current one",
        )),
    }
}
