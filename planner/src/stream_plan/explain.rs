//! EXPLAIN of a stream plan: one line per operator, each indented under the
//! operator it feeds, the way Postgres and DataFusion print plans. Keyed
//! operators print their exchange under them and say what state they keep;
//! a join's two inputs are printed one after the other at the same depth.

use std::fmt::Write;

use weir_runtime::operators::join::JoinKind;
use weir_runtime::operators::over_window::OverFrame;
use weir_runtime::plan::{Emit, Side, WindowKind};

use super::nodes::{
    SideTtl, StreamAggregate, StreamExchange, StreamFilter, StreamHashJoin, StreamInterval,
    StreamMaterialize, StreamNode, StreamOverWindow, StreamProject, StreamSource, StreamTopN,
    StreamUnnest,
};
use crate::windows::format_duration;

/// The EXPLAIN text of `plan`, one line per operator, the view's rows first.
pub fn explain(plan: &StreamMaterialize) -> String {
    let mut text = String::new();
    line(&mut text, 0, &materialize_line(plan));
    node(&mut text, 1, &plan.input);
    text
}

fn line(text: &mut String, depth: usize, line: &str) {
    let _ = writeln!(text, "{}{line}", "  ".repeat(depth));
}

fn node(text: &mut String, depth: usize, node: &StreamNode) {
    match node {
        StreamNode::Source(source) => line(text, depth, &source_line(source)),
        StreamNode::Filter(StreamFilter {
            input, predicate, ..
        }) => {
            line(text, depth, &format!("StreamFilter: {predicate}"));
            self::node(text, depth + 1, input);
        }
        StreamNode::Project(StreamProject { input, exprs, .. }) => {
            let shown: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
            line(text, depth, &format!("StreamProject: {}", shown.join(", ")));
            self::node(text, depth + 1, input);
        }
        StreamNode::Unnest(StreamUnnest { input, column, .. }) => {
            line(text, depth, &format!("StreamUnnest: column {column}"));
            self::node(text, depth + 1, input);
        }
        StreamNode::HashJoin(join) => {
            line(text, depth, &join_line(join));
            line(text, depth + 1, &exchange_line(&join.exchange, true));
            self::node(text, depth + 2, &join.left);
            self::node(text, depth + 2, &join.right);
        }
        StreamNode::Aggregate(aggregate) => {
            line(text, depth, &aggregate_line(aggregate));
            line(text, depth + 1, &exchange_line(&aggregate.exchange, false));
            self::node(text, depth + 2, &aggregate.input);
        }
        StreamNode::TopN(top_n) => {
            line(text, depth, &top_n_line(top_n));
            line(text, depth + 1, &exchange_line(&top_n.exchange, false));
            self::node(text, depth + 2, &top_n.input);
        }
        StreamNode::OverWindow(over) => {
            line(text, depth, &over_line(over));
            line(text, depth + 1, &exchange_line(&over.exchange, false));
            self::node(text, depth + 2, &over.input);
        }
    }
}

/// A window function call without its `OVER (..)`: `avg(bid.price)`.
fn call_text(expr: &datafusion::logical_expr::Expr) -> String {
    match expr.clone().unalias() {
        datafusion::logical_expr::Expr::WindowFunction(f) => format!(
            "{}({})",
            f.fun.name(),
            f.params
                .args
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// An OVER window: its functions and frame, and what bounds its state.
fn over_line(over: &StreamOverWindow) -> String {
    let shown = |exprs: &mut dyn Iterator<Item = String>| exprs.collect::<Vec<_>>().join(", ");
    let frame = match over.spec.frame {
        OverFrame::Rows(1) => "the last row".to_string(),
        OverFrame::Rows(n) => format!("the last {n} rows"),
        OverFrame::Range(d) => format!(
            "the rows less than {} older than the watermark",
            signed_duration(d)
        ),
        OverFrame::UnboundedRows | OverFrame::UnboundedRange => "its accumulators".to_string(),
    };
    format!(
        "StreamOverWindow: functions=[{}] key=[{}] order=[{}] frame={} output=append-only, each row once the watermark passes it state: per key {frame} and the rows the watermark has not passed, late rows dropped",
        shown(&mut over.functions.iter().map(call_text)),
        shown(&mut over.partition_by.iter().map(|e| e.to_string())),
        shown(&mut over.order_by.iter().map(|s| s.to_string())),
        over.frame,
    )
}

fn top_n_line(top_n: &StreamTopN) -> String {
    let spec = &top_n.spec;
    let shown = |exprs: &mut dyn Iterator<Item = String>| exprs.collect::<Vec<_>>().join(", ");
    let rows = match spec.limit {
        1 => "row".to_string(),
        n => format!("{n} rows"),
    };
    let (per, kept) = match spec.window {
        Some(_) => (
            "(window, key)",
            "dropped when the watermark passes the window",
        ),
        None => ("key", "kept forever"),
    };
    format!(
        "StreamTopN: window={} key=[{}] order=[{}] limit={}{} emit={} state: {}",
        window_text(top_n.window, &top_n.input),
        shown(&mut top_n.partition_by.iter().map(|e| e.to_string())),
        shown(&mut top_n.order_by.iter().map(|s| s.to_string())),
        spec.limit,
        if spec.limit == 1 {
            " (deduplicate)"
        } else {
            ""
        },
        match spec.window {
            Some(w) if w.emit_on_close => "on window close",
            _ => "updates",
        },
        if spec.input_changelog {
            format!("every row per {per} (the input retracts), {kept}")
        } else {
            format!("the first {rows} per {per}, {kept}")
        }
    )
}

fn materialize_line(plan: &StreamMaterialize) -> String {
    format!(
        "StreamMaterialize: {} columns=[{}]",
        if plan.changelog {
            "updating (inserts and deletes)"
        } else {
            "append-only"
        },
        plan.schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn source_line(source: &StreamSource) -> String {
    let input = &source.input;
    format!(
        "StreamSource: {} [{}] watermark={}",
        source.name,
        input.source.describe(),
        match (&input.time_column, input.event_time) {
            _ if source.processing_time => "PROCTIME() (the clock)".into(),
            (Some(column), Some(t)) if t.delay > 0 =>
                format!("{column} - {}", format_duration(t.delay)),
            (Some(column), Some(_)) => column.clone(),
            _ => "none".into(),
        }
    )
}

fn exchange_line(exchange: &StreamExchange, from_both_inputs: bool) -> String {
    let keys: Vec<String> = exchange.keys.iter().map(|k| k.to_string()).collect();
    if keys.is_empty() {
        // No key to spread rows by (a global aggregate or TopN): the
        // exchange sends every row to the stage's first worker, and says
        // so rather than listing workers that get none.
        return format!(
            "StreamExchange: single (every row to one of {} worker{})",
            exchange.workers,
            if exchange.workers == 1 { "" } else { "s" }
        );
    }
    format!(
        "StreamExchange: hash({}) to {} workers{}",
        keys.join(", "),
        exchange.workers,
        if from_both_inputs {
            ", from both inputs"
        } else {
            ""
        }
    )
}

fn join_line(join: &StreamHashJoin) -> String {
    let on: Vec<String> = join.on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
    if let Some(interval) = &join.interval {
        return interval_join_line(join.spec.kind, &on, interval);
    }
    if join.spec.lookup() {
        return format!(
            "StreamLookupJoin: {} on [{}] output=append-only, the stream's watermark state: table side only, its rows by key, no stream state",
            if join.spec.kind == JoinKind::Left {
                "left"
            } else {
                "inner"
            },
            on.join(", "),
        );
    }
    format!(
        "StreamHashJoin: {} on [{}] output={} state: both inputs' rows by key, {}",
        match join.spec.kind {
            JoinKind::Inner => "inner",
            JoinKind::Left => "left",
            JoinKind::Right => "right",
            JoinKind::Full => "full",
        },
        on.join(", "),
        if join.spec.changelog() {
            "updating"
        } else {
            "append-only"
        },
        ttl_state(join),
    )
}

/// How long a regular join keeps its rows: for ever, or, under the view's
/// `join_state_ttl`, when each side's go (by the watermark that drops
/// them, see `JoinTtl::clock`) or why they stay.
fn ttl_state(join: &StreamHashJoin) -> String {
    let (Some(sides), Some(ttl)) = (&join.ttl, join.spec.ttl()) else {
        return "kept forever".to_string();
    };
    let names = ["left", "right"];
    let each: Vec<String> = Side::BOTH
        .into_iter()
        .zip(sides.iter())
        .map(|(side, kept)| match kept {
            SideTtl::Dropped(time, _) => {
                format!(
                    "{} rows until the {} side's watermark reaches {time} + {}",
                    names[side.index()],
                    names[ttl.clock(side).index()],
                    format_duration(ttl.ttl)
                )
            }
            SideTtl::Kept(why) => format!("{} rows forever ({why})", names[side.index()]),
        })
        .collect();
    if sides.iter().all(|side| matches!(side, SideTtl::Kept(_))) {
        return format!(
            "kept forever (join_state_ttl {} drops neither side's rows: {})",
            format_duration(ttl.ttl),
            each.join(", ")
        );
    }
    format!(
        "kept for {} (event time, join_state_ttl): {}",
        format_duration(ttl.ttl),
        each.join(", ")
    )
}

/// An interval join: its bounds, the watermark it forwards, when each
/// side's rows are dropped (by the other side's watermark), and, for an
/// outer one, that a preserved side's rows that never paired are emitted
/// padded then.
fn interval_join_line(kind: JoinKind, on: &[String], interval: &StreamInterval) -> String {
    let [left, right] = &interval.times;
    let bounds = interval.bounds;
    // "rows older than the watermark minus 10 s" / "plus 10 s" / "".
    let offset = |ns: i64| match ns.cmp(&0) {
        std::cmp::Ordering::Equal => String::new(),
        std::cmp::Ordering::Greater => format!(" minus {}", signed_duration(ns)),
        std::cmp::Ordering::Less => format!(" plus {}", signed_duration(-ns)),
    };
    let (name, padded) = match kind {
        JoinKind::Inner => ("inner", None),
        JoinKind::Left => ("left", Some("a left row")),
        JoinKind::Right => ("right", Some("a right row")),
        JoinKind::Full => ("full", Some("a left or right row")),
    };
    let padding = padded.map_or_else(String::new, |row| {
        format!("; padded: {row} that never paired is emitted with NULLs when it is dropped")
    });
    format!(
        "StreamIntervalJoin: {name} on [{}] time: {right} - {left} in [{}, {}] output=append-only, watermark less {} state: both inputs' rows by key, left rows dropped when {left} is older than the right side's watermark{}, right rows when {right} is older than the left side's watermark{}{padding}",
        on.join(", "),
        signed_duration(bounds.lower),
        signed_duration(bounds.upper),
        signed_duration(bounds.output_delay()),
        offset(bounds.upper),
        offset(-bounds.lower),
    )
}

/// A duration that may be negative, as EXPLAIN shows one.
fn signed_duration(ns: i64) -> String {
    if ns == 0 {
        "0s".to_string()
    } else if ns < 0 {
        format!("-{}", format_duration(ns.saturating_neg()))
    } else {
        format_duration(ns)
    }
}

/// The window an operator keeps, and over which time when that is
/// processing time.
fn window_text(window: Option<crate::windows::WindowTvf>, input: &StreamNode) -> String {
    match window {
        Some(tvf) if input.over_processing_time() => {
            format!("{} over processing time", tvf.describe())
        }
        Some(tvf) => tvf.describe(),
        None => "none".to_string(),
    }
}

fn aggregate_line(aggregate: &StreamAggregate) -> String {
    let spec = &aggregate.spec;
    let keys: Vec<String> = aggregate
        .exchange
        .keys
        .iter()
        .map(|k| k.to_string())
        .collect();
    let shown: Vec<String> = aggregate.aggregates.iter().map(|e| e.to_string()).collect();
    let state = match spec.window {
        WindowKind::None => "accumulators per key, kept forever",
        WindowKind::Fixed { .. } => {
            "accumulators per (window, key), dropped when the watermark passes the window"
        }
        WindowKind::Session { .. } => {
            "open sessions per key, merged on overlap, dropped when the watermark passes their end"
        }
    };
    format!(
        "{}: window={} key=[{}] aggregates=[{}] emit={} state: {state}",
        if aggregate.windowed() {
            "StreamWindowAggregate"
        } else {
            "StreamGroupAggregate"
        },
        window_text(aggregate.window, &aggregate.input),
        keys.join(", "),
        shown.join(", "),
        match spec.emit {
            Emit::OnWindowClose => "on window close",
            Emit::Updates => "updates",
        },
    )
}
