//! Lowering an aggregate: `GROUP BY` over the node below becomes a keyed
//! aggregate over windows that close (TUMBLE, HOP, CUMULATE), sessions, or
//! groups kept forever, with the emission the view asked for. Aggregates
//! are compiled to DataFusion accumulators, so every aggregate function
//! DataFusion has works in a view as it does in a `SELECT` (over an
//! updating input: those that can retract).

use std::sync::Arc;

use datafusion::common::DFSchemaRef;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::Column;
use weir_runtime::plan::{AggregateSpec, Emit, WindowKind};

use super::lower_join_interval::refuse_padded_window;
use super::lowering::{Lowering, arrow_schema, physical, unsupported};
use super::nodes::{StreamAggregate, StreamExchange, StreamNode};
use crate::error::{PlanError, Result};
use crate::windows::WindowTvf;

/// What an aggregate step holds, besides its input.
pub(super) struct GroupBy<'a> {
    /// The group keys.
    pub group: &'a [Expr],
    /// The aggregate calls.
    pub aggregates: &'a [Expr],
    /// The rows aggregated.
    pub input: &'a DFSchemaRef,
    /// Group columns then aggregate columns.
    pub output: &'a DFSchemaRef,
}

/// `node` aggregated by `by`.
pub(super) fn lower_aggregate(
    node: StreamNode,
    by: GroupBy<'_>,
    lowering: &Lowering<'_>,
) -> Result<StreamNode> {
    let GroupBy {
        group,
        aggregates,
        input,
        output,
    } = by;
    let props = &lowering.props;
    let input_changelog = node.changelog();
    let has_event_time = node.watermarked();
    let stream_name = node.first_source().name.clone();
    let physical_input = arrow_schema(input);
    let group_physical = group
        .iter()
        .map(|e| physical(e, input, props))
        .collect::<Result<Vec<_>>>()?;
    let mut functions = Vec::new();
    let mut filters = Vec::new();
    for e in aggregates {
        // The deprecated helper is the one-call form of DataFusion's
        // aggregate lowering; the builder that replaces it needs the
        // physical planner's context, which a view does not have.
        #[allow(deprecated)]
        let (function, filter, order) =
            datafusion::physical_planner::create_aggregate_expr_and_maybe_filter(
                e,
                input,
                &physical_input,
                props,
            )
            .map_err(|e| PlanError::Invalid(e.message().to_string()))?;
        if !order.is_empty() {
            return Err(unsupported(
                "ORDER BY inside an aggregate",
                "a stream's rows have no order to aggregate them in; order when you query the view",
            ));
        }
        functions.push(function);
        // Rows the condition does not keep never reach the accumulator
        // (`weir_runtime::operators::aggregate`'s `filtered.rs`).
        filters.push(filter);
    }
    let retracting = if input_changelog {
        for f in &functions {
            if let Some(what) = weir_runtime::operators::aggregate::retract::unsupported(f) {
                return Err(unsupported(
                    &format!("{what} over an updating input"),
                    &format!(
                        "the rows of \"{stream_name}\" can be updated and deleted (a table with a primary key, or a materialized view whose rows change); views over it take count, sum, avg, min, max and count(DISTINCT)"
                    ),
                ));
            }
        }
        Some(
            functions
                .iter()
                .map(|f| {
                    f.expressions()[0]
                        .data_type(&physical_input)
                        .map_err(|e| PlanError::Invalid(e.message().to_string()))
                })
                .collect::<Result<Vec<_>>>()?,
        )
    } else {
        None
    };
    let window_key = |name: &str| {
        group
            .iter()
            .position(|g| matches!(g, Expr::Column(c) if c.name == name))
    };
    let (start, end) = (window_key("window_start"), window_key("window_end"));
    let tvf = lowering.window_of(&node)?;
    let kind = window_kind(tvf, start, end)?;
    if input_changelog && matches!(kind, WindowKind::Session { .. }) {
        return Err(unsupported(
            "SESSION windows over an updating input",
            &format!(
                "the rows of \"{stream_name}\" can be updated and deleted (a table with a primary key, or a materialized view whose rows change); session windows need an append-only input"
            ),
        ));
    }
    let emit_on_window_close = lowering.emit_on_window_close;
    if emit_on_window_close && input_changelog {
        return Err(unsupported(
            "EMIT ON WINDOW CLOSE over an updating input",
            &format!(
                "the rows of \"{stream_name}\" can be updated and deleted (a table with a primary key, or a materialized view whose rows change), so a closed window could still change; leave out EMIT ON WINDOW CLOSE for updating results"
            ),
        ));
    }
    let mut emit = Emit::Updates;
    if emit_on_window_close {
        if kind == WindowKind::None {
            return Err(PlanError::Invalid(
                "EMIT ON WINDOW CLOSE needs a windowed aggregate: GROUP BY window_start or window_end of TUMBLE, HOP, CUMULATE or SESSION".into(),
            ));
        }
        if !has_event_time {
            // A view (or table) cannot be given a watermark: what its rows
            // are decides (`event_time.rs`), so this is a limit, not a
            // mistake in the statement.
            if let Some(view) = node
                .sources()
                .into_iter()
                .find(|s| s.input.event_time.is_none() && s.input.source.is_table())
            {
                return Err(unsupported(
                    "EMIT ON WINDOW CLOSE over a materialized view or table without a watermark",
                    &format!(
                        "\"{}\" has no watermark: a materialized view's rows have one only when its query keeps one (a filter or projection of a stream with a watermark that keeps its event-time column, or a windowed aggregate's window_end), not after a regular join or a GROUP BY without a window; window the stream underneath instead",
                        view.name
                    ),
                ));
            }
            return Err(PlanError::Invalid(format!(
                "EMIT ON WINDOW CLOSE needs a watermark: declare WATERMARK FOR <column> AS ... on stream \"{stream_name}\""
            )));
        }
        emit = Emit::OnWindowClose;
    }
    let window_keys: Vec<usize> = match kind {
        WindowKind::Fixed { key, .. } => [start, end, Some(key)].into_iter().flatten().collect(),
        WindowKind::Session {
            start_key, end_key, ..
        } => vec![start_key, end_key],
        WindowKind::None => Vec::new(),
    };
    let column_of = |i: usize| {
        group_physical[i]
            .downcast_ref::<Column>()
            .map(|c| c.index())
    };
    let window_columns: Vec<Option<usize>> = window_keys.iter().map(|&i| column_of(i)).collect();
    refuse_padded_window(&node, &window_columns)?;
    let partition_keys: Vec<usize> = (0..group.len())
        .filter(|i| !window_keys.contains(i))
        .collect();
    Ok(StreamNode::Aggregate(StreamAggregate {
        input: Box::new(node),
        exchange: StreamExchange {
            keys: partition_keys.iter().map(|&i| group[i].clone()).collect(),
            workers: lowering.parallelism,
        },
        group: group.to_vec(),
        aggregates: aggregates.to_vec(),
        window: match kind {
            WindowKind::None => None,
            _ => tvf,
        },
        spec: Arc::new(AggregateSpec {
            group: group_physical,
            partition_keys,
            aggregates: functions,
            filters,
            window: kind,
            emit,
            output_schema: arrow_schema(output),
            retracting,
        }),
    }))
}

/// Which windows the aggregate keeps, from the window function the query
/// used and where `window_start` and `window_end` are among the group keys.
fn window_kind(
    tvf: Option<WindowTvf>,
    start: Option<usize>,
    end: Option<usize>,
) -> Result<WindowKind> {
    let Some(tvf) = tvf.filter(|_| start.is_some() || end.is_some()) else {
        return Ok(WindowKind::None);
    };
    Ok(match tvf {
        WindowTvf::Tumble { size } | WindowTvf::Hop { size, .. } => match (start, end) {
            (_, Some(e)) => WindowKind::Fixed { key: e, plus: 0 },
            (Some(s), None) => WindowKind::Fixed { key: s, plus: size },
            (None, None) => unreachable!("one bound is a key"),
        },
        WindowTvf::Cumulate { .. } => match end {
            Some(e) => WindowKind::Fixed { key: e, plus: 0 },
            None => {
                return Err(PlanError::Invalid(
                    "a CUMULATE aggregate must GROUP BY window_end".into(),
                ));
            }
        },
        WindowTvf::Session { gap } => match (start, end) {
            (Some(s), Some(e)) => WindowKind::Session {
                start_key: s,
                end_key: e,
                gap,
            },
            _ => {
                return Err(PlanError::Invalid(
                    "a SESSION aggregate must GROUP BY window_start and window_end".into(),
                ));
            }
        },
    })
}
