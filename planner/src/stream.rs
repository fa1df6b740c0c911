//! The incremental rewrite: a DataFusion `LogicalPlan` of a continuous query
//! becomes a `StreamPlan` of stream operators.
//!
//! ```text
//!   Projection / Filter / Unnest   ──> StreamProject / StreamFilter / StreamUnnest   (stateless)
//!   Aggregate over window bounds   ──> StreamWindowAggregate (state per window and key)
//!   Aggregate without a window     ──> StreamGroupAggregate (state per key, updating)
//!   TableScan of a stream          ──> StreamSource
//!   Sort, Limit, Join, Window, ... ──> refused, with the reason
//! ```
//! Expressions are compiled to DataFusion physical expressions and
//! aggregates to DataFusion accumulators, so every scalar and aggregate
//! function DataFusion has works in a view as it does in a `SELECT`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::{DFSchemaRef, tree_node::TreeNode};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::{Expr, LogicalPlan};
use weir_runtime::operators::join::{JoinKind, JoinSpec};
use weir_runtime::plan::{
    AggregateSpec, Emit, EventTime, JoinPlan, PlanInput, SourcePlan, StatelessOp, StreamPlan,
    WindowKind,
};
use weir_runtime::source::Source;

use crate::error::{PlanError, Result};
use crate::windows::{WindowTvf, WindowUse, format_duration};

/// A stream a continuous query reads, resolved by the caller.
#[derive(Debug, Clone)]
pub struct StreamInput {
    /// Its source.
    pub source: Arc<dyn Source>,
    /// Its event time, if it has a watermark.
    pub event_time: Option<EventTime>,
    /// The event-time column's name (for EXPLAIN).
    pub time_column: Option<String>,
}

/// The names of the tables a plan scans.
pub fn scanned_tables(plan: &LogicalPlan) -> Vec<String> {
    let mut names = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            names.push(scan.table_name.table().to_string());
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    names
}

enum Node {
    Source {
        name: String,
        input: StreamInput,
        projection: Option<Vec<usize>>,
        output: DFSchemaRef,
    },
    Filter {
        predicate: Expr,
        input: DFSchemaRef,
    },
    Project {
        exprs: Vec<Expr>,
        input: DFSchemaRef,
        output: DFSchemaRef,
    },
    Unnest {
        column: usize,
        output: DFSchemaRef,
    },
    Aggregate {
        group: Vec<Expr>,
        aggregates: Vec<Expr>,
        input: DFSchemaRef,
        output: DFSchemaRef,
    },
    /// Two inputs, each a chain of its own, joined on equal keys.
    Join {
        left: Vec<Node>,
        right: Vec<Node>,
        on: Vec<(Expr, Expr)>,
        kind: JoinKind,
        schemas: [DFSchemaRef; 2],
        output: DFSchemaRef,
    },
}

fn physical(
    expr: &Expr,
    input: &DFSchemaRef,
    props: &ExecutionProps,
) -> Result<Arc<dyn datafusion::physical_plan::PhysicalExpr>> {
    datafusion::physical_expr::create_physical_expr(
        expr,
        input,
        props,
        &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default(),
    )
    .map_err(|e| PlanError::Invalid(e.message().to_string()))
}

fn unsupported(what: &str, why: &str) -> PlanError {
    PlanError::Unsupported {
        what: format!("{what} in a materialized view"),
        hint: Some(why.to_string()),
    }
}

fn collect(
    plan: &LogicalPlan,
    inputs: &HashMap<String, StreamInput>,
    nodes: &mut Vec<Node>,
) -> Result<()> {
    match plan {
        LogicalPlan::Projection(p) => {
            collect(&p.input, inputs, nodes)?;
            nodes.push(Node::Project {
                exprs: p.expr.clone(),
                input: p.input.schema().clone(),
                output: p.schema.clone(),
            });
        }
        LogicalPlan::Filter(f) => {
            collect(&f.input, inputs, nodes)?;
            // The same predicate, already applied for the scan: once is enough.
            if matches!(nodes.last(), Some(Node::Filter { predicate, .. }) if predicate == &f.predicate)
            {
                return Ok(());
            }
            nodes.push(Node::Filter {
                predicate: f.predicate.clone(),
                input: f.input.schema().clone(),
            });
        }
        LogicalPlan::SubqueryAlias(a) => collect(&a.input, inputs, nodes)?,
        LogicalPlan::Unnest(u) => {
            collect(&u.input, inputs, nodes)?;
            match (
                u.list_type_columns.as_slice(),
                u.struct_type_columns.is_empty(),
            ) {
                ([(column, list)], true) if list.depth == 1 => nodes.push(Node::Unnest {
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
            collect(&a.input, inputs, nodes)?;
            if nodes.iter().any(|n| matches!(n, Node::Aggregate { .. })) {
                return Err(unsupported(
                    "an aggregate over an aggregate",
                    "build the outer aggregate as a view over the inner one",
                ));
            }
            nodes.push(Node::Aggregate {
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
                    "a materialized view reads a stream; joins with tables come later",
                ));
            };
            nodes.push(Node::Source {
                name,
                input: input.clone(),
                projection: scan.projection.clone(),
                output: scan.projected_schema.clone(),
            });
            // Filters offered to the scan are applied again here: a stream
            // source does not filter, and re-applying an inexact one does
            // no harm.
            for filter in &scan.filters {
                nodes.push(Node::Filter {
                    predicate: filter.clone(),
                    input: scan.projected_schema.clone(),
                });
            }
        }
        LogicalPlan::Sort(_) => {
            return Err(unsupported(
                "ORDER BY",
                "a stream has no end to sort up to; order when you query the view",
            ));
        }
        LogicalPlan::Limit(_) => {
            return Err(unsupported(
                "LIMIT",
                "top-N over a stream is not supported yet; limit when you query the view",
            ));
        }
        LogicalPlan::Join(join) => {
            let kind = match join.join_type {
                datafusion::logical_expr::JoinType::Inner => JoinKind::Inner,
                datafusion::logical_expr::JoinType::Left => JoinKind::Left,
                other => {
                    return Err(unsupported(
                        &format!("a {other} join"),
                        "inner and LEFT joins are supported; write a RIGHT JOIN as a LEFT JOIN with the inputs swapped",
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
            if join.filter.is_some() && kind != JoinKind::Inner {
                return Err(unsupported(
                    "a LEFT JOIN with a condition other than equal keys",
                    "move the condition to WHERE, or join on equal keys only",
                ));
            }
            let (mut left, mut right) = (Vec::new(), Vec::new());
            collect(&join.left, inputs, &mut left)?;
            collect(&join.right, inputs, &mut right)?;
            nodes.push(Node::Join {
                left,
                right,
                on: join.on.clone(),
                kind,
                schemas: [join.left.schema().clone(), join.right.schema().clone()],
                output: join.schema.clone(),
            });
            // The rest of an inner join's condition filters the pairs.
            if let Some(filter) = &join.filter {
                nodes.push(Node::Filter {
                    predicate: filter.clone(),
                    input: join.schema.clone(),
                });
            }
        }
        LogicalPlan::Window(_) => {
            return Err(unsupported(
                "a window function (OVER)",
                "use TUMBLE, HOP, CUMULATE or SESSION with GROUP BY",
            ));
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

/// Build the stream plan of `plan` (optimized), reading `inputs`.
pub fn plan_stream(
    plan: &LogicalPlan,
    window: Option<&WindowUse>,
    emit_on_window_close: bool,
    parallelism: usize,
    inputs: &HashMap<String, StreamInput>,
) -> Result<(StreamPlan, String)> {
    let props = ExecutionProps::new();
    let mut nodes = Vec::new();
    collect(plan, inputs, &mut nodes)?;
    let mut lines: Vec<String> = Vec::new();
    let mut after = Vec::new();
    let mut aggregate = None;
    // Without a join: the source's chain, which the loop below extends up to
    // the aggregate. With one: both inputs' chains, and the loop's
    // operators run on the join's output.
    let (stream_name, source_input, mut before, joined) = match nodes.first() {
        Some(Node::Join {
            left,
            right,
            on,
            kind,
            schemas,
            output,
        }) => {
            let left = input_chain(left, &props)?;
            let right = input_chain(right, &props)?;
            let mut keys = [Vec::new(), Vec::new()];
            let left_arrow = arrow_schema(&schemas[0]);
            let right_arrow = arrow_schema(&schemas[1]);
            for (l, r) in on {
                let l = physical(l, &schemas[0], &props)?;
                let mut r = physical(r, &schemas[1], &props)?;
                let (lt, rt) = (
                    l.data_type(&left_arrow)
                        .map_err(|e| PlanError::Invalid(e.message().to_string()))?,
                    r.data_type(&right_arrow)
                        .map_err(|e| PlanError::Invalid(e.message().to_string()))?,
                );
                if lt != rt {
                    // Equal keys must hash alike on both sides.
                    r = Arc::new(datafusion::physical_expr::expressions::CastExpr::new(
                        r, lt, None,
                    ));
                }
                keys[0].push(l);
                keys[1].push(r);
            }
            let spec = Arc::new(JoinSpec {
                kind: *kind,
                keys,
                inputs: [left_arrow, right_arrow],
                input_changelog: [
                    left.input.source.changelog(),
                    right.input.source.changelog(),
                ],
                output_schema: arrow_schema(output),
            });
            let shown: Vec<String> = on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
            lines.push(format!(
                "StreamExchange: hash({}) to {parallelism} workers, from both inputs",
                on.iter()
                    .map(|(l, _)| l.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            lines.push(format!(
                "StreamHashJoin: {} on [{}] output={} state: both inputs' rows by key, kept forever",
                match kind {
                    JoinKind::Inner => "inner",
                    JoinKind::Left => "left",
                },
                shown.join(", "),
                if spec.changelog() {
                    "updating"
                } else {
                    "append-only"
                },
            ));
            let name = left.name.clone();
            let input = left.input.clone();
            (name, input, Vec::new(), Some((left, right, spec)))
        }
        Some(Node::Source { .. }) => {
            let chain = input_chain(&nodes[..1], &props)?;
            lines.extend(chain.lines);
            (chain.name, chain.input, chain.before, None)
        }
        _ => {
            return Err(PlanError::Invalid(
                "a continuous query must start from a stream".into(),
            ));
        }
    };
    let stream_name = stream_name.clone();
    let input_changelog = match &joined {
        Some((_, _, spec)) => spec.changelog(),
        None => source_input.source.changelog(),
    };
    // A join's output has no watermark: a row arriving on one side joins
    // the other side's rows of any age (a changed table row, its earlier
    // stream rows), so no time bounds what it may still emit.
    if joined.is_some() && emit_on_window_close {
        return Err(unsupported(
            "EMIT ON WINDOW CLOSE over a join",
            "a join's rows can still arrive for a window after it closed (a table row joins earlier stream rows); leave out EMIT ON WINDOW CLOSE for updating results",
        ));
    }
    let has_event_time = joined.is_none() && source_input.event_time.is_some();
    let mut emit = Emit::Updates;
    for node in &nodes[1..] {
        let stage = if aggregate.is_some() {
            &mut after
        } else {
            &mut before
        };
        match node {
            Node::Source { .. } | Node::Join { .. } => {
                return Err(unsupported(
                    "a join of more than two inputs, or over an aggregate",
                    "build the inner join or aggregate as a view of its own",
                ));
            }
            Node::Filter { .. } | Node::Project { .. } | Node::Unnest { .. } => {
                stateless(node, &props, stage, &mut lines)?;
            }
            Node::Aggregate {
                group,
                aggregates,
                input,
                output,
            } => {
                let physical_input = arrow_schema(input);
                let group_physical = group
                    .iter()
                    .map(|e| physical(e, input, &props))
                    .collect::<Result<Vec<_>>>()?;
                let mut functions = Vec::new();
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
                            &props,
                        )
                        .map_err(|e| PlanError::Invalid(e.message().to_string()))?;
                    if filter.is_some() || !order.is_empty() {
                        return Err(unsupported(
                            "FILTER or ORDER BY inside an aggregate",
                            "filter with WHERE before aggregating",
                        ));
                    }
                    functions.push(function);
                }
                let retracting = if input_changelog {
                    for f in &functions {
                        if let Some(what) =
                            weir_runtime::operators::aggregate::retract::unsupported(f)
                        {
                            return Err(unsupported(
                                &format!("{what} over an updating input"),
                                &format!(
                                    "\"{stream_name}\" has a primary key, so its rows can be updated and deleted; views over it take count, sum, avg, min, max and count(DISTINCT)"
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
                let kind = match (window, start, end) {
                    (Some(w), s, e) if s.is_some() || e.is_some() => match w.tvf {
                        WindowTvf::Tumble { size } | WindowTvf::Hop { size, .. } => match (s, e) {
                            (_, Some(e)) => WindowKind::Fixed { key: e, plus: 0 },
                            (Some(s), None) => WindowKind::Fixed { key: s, plus: size },
                            _ => unreachable!("one bound is a key"),
                        },
                        WindowTvf::Cumulate { .. } => match e {
                            Some(e) => WindowKind::Fixed { key: e, plus: 0 },
                            None => {
                                return Err(PlanError::Invalid(
                                    "a CUMULATE aggregate must GROUP BY window_end".into(),
                                ));
                            }
                        },
                        WindowTvf::Session { gap } => {
                            match (s, e) {
                                (Some(s), Some(e)) => WindowKind::Session {
                                    start_key: s,
                                    end_key: e,
                                    gap,
                                },
                                _ => return Err(PlanError::Invalid(
                                    "a SESSION aggregate must GROUP BY window_start and window_end"
                                        .into(),
                                )),
                            }
                        }
                    },
                    _ => WindowKind::None,
                };
                if input_changelog && matches!(kind, WindowKind::Session { .. }) {
                    return Err(unsupported(
                        "SESSION windows over an updating input",
                        &format!(
                            "\"{stream_name}\" has a primary key; session windows need an append-only input"
                        ),
                    ));
                }
                if emit_on_window_close && input_changelog {
                    return Err(unsupported(
                        "EMIT ON WINDOW CLOSE over an updating input",
                        &format!(
                            "\"{stream_name}\" has a primary key, so a closed window could still change; leave out EMIT ON WINDOW CLOSE for updating results"
                        ),
                    ));
                }
                if emit_on_window_close {
                    if kind == WindowKind::None {
                        return Err(PlanError::Invalid(
                            "EMIT ON WINDOW CLOSE needs a windowed aggregate: GROUP BY window_start or window_end of TUMBLE, HOP, CUMULATE or SESSION".into(),
                        ));
                    }
                    if !has_event_time {
                        return Err(PlanError::Invalid(format!(
                            "EMIT ON WINDOW CLOSE needs a watermark: declare WATERMARK FOR <column> AS ... on stream \"{stream_name}\""
                        )));
                    }
                    emit = Emit::OnWindowClose;
                }
                let window_keys: Vec<usize> = match kind {
                    WindowKind::Fixed { key, .. } => {
                        [start, end, Some(key)].into_iter().flatten().collect()
                    }
                    WindowKind::Session {
                        start_key, end_key, ..
                    } => vec![start_key, end_key],
                    WindowKind::None => Vec::new(),
                };
                let partition_keys: Vec<usize> = (0..group.len())
                    .filter(|i| !window_keys.contains(i))
                    .collect();
                let keys: Vec<String> = partition_keys
                    .iter()
                    .map(|&i| group[i].to_string())
                    .collect();
                let shown: Vec<String> = aggregates.iter().map(|e| e.to_string()).collect();
                let window_text = match (kind, window) {
                    (WindowKind::None, _) | (_, None) => "none".to_string(),
                    (_, Some(w)) => w.tvf.describe(),
                };
                let operator = if kind == WindowKind::None {
                    "StreamGroupAggregate"
                } else {
                    "StreamWindowAggregate"
                };
                let state = match kind {
                    WindowKind::None => "accumulators per key, kept forever",
                    WindowKind::Fixed { .. } => {
                        "accumulators per (window, key), dropped when the watermark passes the window"
                    }
                    WindowKind::Session { .. } => {
                        "open sessions per key, merged on overlap, dropped when the watermark passes their end"
                    }
                };
                lines.push(format!(
                    "StreamExchange: hash({}) to {parallelism} workers",
                    if keys.is_empty() {
                        "-".to_string()
                    } else {
                        keys.join(", ")
                    }
                ));
                lines.push(format!(
                    "{operator}: window={window_text} key=[{}] aggregates=[{}] emit={} state: {state}",
                    keys.join(", "),
                    shown.join(", "),
                    match emit {
                        Emit::OnWindowClose => "on window close",
                        Emit::Updates => "updates",
                    },
                ));
                aggregate = Some(Arc::new(AggregateSpec {
                    group: group_physical,
                    partition_keys,
                    aggregates: functions,
                    window: kind,
                    emit,
                    output_schema: arrow_schema(output),
                    retracting,
                }));
            }
        }
    }
    if emit_on_window_close && aggregate.is_none() {
        return Err(PlanError::Invalid(
            "EMIT ON WINDOW CLOSE needs a windowed aggregate".into(),
        ));
    }
    let changelog = match &aggregate {
        Some(a) => a.emit == Emit::Updates,
        None => input_changelog,
    };
    let output_schema = arrow_schema(plan.schema());
    lines.push(format!(
        "StreamMaterialize: {} columns=[{}]",
        if changelog {
            "updating (inserts and deletes)"
        } else {
            "append-only"
        },
        output_schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut explain = String::new();
    for (depth, line) in lines.iter().rev().enumerate() {
        let _ = writeln!(explain, "{}{line}", "  ".repeat(depth));
    }
    let input = match joined {
        Some((left, right, spec)) => {
            // Each input's chain under the join, left then right.
            for chain in [&left, &right] {
                for (depth, line) in chain.lines.iter().rev().enumerate() {
                    let _ = writeln!(explain, "{}{line}", "  ".repeat(lines.len() + depth));
                }
            }
            PlanInput::Join(JoinPlan {
                left: SourcePlan {
                    source: left.input.source.clone(),
                    event_time: left.input.event_time,
                    before: left.before,
                },
                right: SourcePlan {
                    source: right.input.source.clone(),
                    event_time: right.input.event_time,
                    before: right.before,
                },
                spec,
                then: before,
            })
        }
        None => PlanInput::Source(SourcePlan {
            source: source_input.source.clone(),
            event_time: source_input.event_time,
            before,
        }),
    };
    Ok((
        StreamPlan {
            input,
            aggregate,
            after,
            output_schema,
            changelog,
            parallelism: parallelism.max(1),
            stream_name,
        },
        explain,
    ))
}

/// A filter, projection or unnest as a stream operator, with its EXPLAIN
/// line; false for any other node.
fn stateless(
    node: &Node,
    props: &ExecutionProps,
    ops: &mut Vec<StatelessOp>,
    lines: &mut Vec<String>,
) -> Result<bool> {
    match node {
        Node::Filter { predicate, input } => {
            ops.push(StatelessOp::Filter(physical(predicate, input, props)?));
            lines.push(format!("StreamFilter: {predicate}"));
        }
        Node::Project {
            exprs,
            input,
            output,
        } => {
            let physical = exprs
                .iter()
                .map(|e| physical(e, input, props))
                .collect::<Result<Vec<_>>>()?;
            ops.push(StatelessOp::Project {
                exprs: physical,
                schema: arrow_schema(output),
            });
            let shown: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
            lines.push(format!("StreamProject: {}", shown.join(", ")));
        }
        Node::Unnest { column, output } => {
            ops.push(StatelessOp::Unnest {
                column: *column,
                schema: arrow_schema(output),
            });
            lines.push(format!("StreamUnnest: column {column}"));
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// One input of a continuous query: its source and the stateless
/// operators on it, with their EXPLAIN lines (source first).
struct Chain {
    name: String,
    input: StreamInput,
    before: Vec<StatelessOp>,
    lines: Vec<String>,
}

/// The chain of `nodes`: a source, then filters, projections and unnests.
fn input_chain(nodes: &[Node], props: &ExecutionProps) -> Result<Chain> {
    let Some(Node::Source {
        name,
        input,
        projection,
        output: scan_schema,
    }) = nodes.first()
    else {
        return Err(unsupported(
            "a join input that is not a stream or table read with filters and projections",
            "build the aggregate or inner join as a view of its own",
        ));
    };
    let mut lines = vec![format!(
        "StreamSource: {name} [{}] watermark={}",
        input.source.describe(),
        match (&input.time_column, input.event_time) {
            (Some(column), Some(t)) if t.delay > 0 =>
                format!("{column} - {}", format_duration(t.delay)),
            (Some(column), Some(_)) => column.clone(),
            _ => "none".into(),
        }
    )];
    let mut before = Vec::new();
    let source_schema = input.source.schema();
    if let Some(projection) = projection {
        let exprs = projection
            .iter()
            .map(|&i| {
                Arc::new(datafusion::physical_expr::expressions::Column::new(
                    source_schema.field(i).name(),
                    i,
                )) as Arc<dyn datafusion::physical_plan::PhysicalExpr>
            })
            .collect();
        before.push(StatelessOp::Project {
            exprs,
            schema: arrow_schema(scan_schema),
        });
    }
    for node in &nodes[1..] {
        if !stateless(node, props, &mut before, &mut lines)? {
            return Err(unsupported(
                "a join over an aggregate or of more than two inputs",
                "build the aggregate or inner join as a view of its own",
            ));
        }
    }
    Ok(Chain {
        name: name.clone(),
        input: input.clone(),
        before,
        lines,
    })
}

fn arrow_schema(schema: &DFSchemaRef) -> SchemaRef {
    Arc::new(Schema::new(schema.as_arrow().fields().clone()))
}
