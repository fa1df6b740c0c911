//! State signatures: what each stateful operator's state means, in named
//! parts, and a stable hash of them (design 0008, "Upgrades that keep
//! state"). Checkpoints record them per operator; an upgrade keeps an
//! operator's state only in an operator of the new plan with the same hash,
//! and when none has it, [`super::upgrade`] compares the parts to say why.
//!
//! ```text
//!   StreamAggregate ──> kind (window / updating / session, emission)
//!                       input: source (name, connector, columns, watermark)
//!                              -> filter -> project -> ... (one layer each)
//!                       keys, window, accumulators, layout version
//!   StreamHashJoin  ──> kind (inner / left), both inputs' layers, keys
//! ```
//! Expressions are the compiled (physical) ones with every column by its
//! position alone: an alias, a table qualifier or the query's formatting
//! does not change a signature; a different column, constant, function,
//! window, key or accumulator does. What sits above an operator (a filter
//! or projection on an aggregate's output) is not part of its signature.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::PhysicalExpr;
use sha2::{Digest, Sha256};
use weir_runtime::operators::join::JoinKind;
use weir_runtime::plan::{Emit, STATE_LAYOUT_VERSION, ShownParts, StateSignature, WindowKind};

use super::nodes::{
    StreamAggregate, StreamFilter, StreamHashJoin, StreamMaterialize, StreamNode, StreamOverWindow,
    StreamProject, StreamSource, StreamTopN, StreamUnnest,
};
use crate::windows::{WindowTvf, format_duration};

/// Each stateful operator's signature in the order of the runtime's
/// workers (the join's, then the aggregate's), and the whole plan's hash.
pub fn signatures(plan: &StreamMaterialize) -> (Vec<StateSignature>, String) {
    let mut state = Vec::new();
    collect(&plan.input, &mut state);
    let mut whole = layers(&plan.input);
    whole.push(format!(
        "materialize changelog={} columns=[{}]",
        plan.changelog,
        plan.schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    (state, hash(&whole))
}

/// The signatures of the stateful operators at and under `node`, lowest
/// first.
fn collect(node: &StreamNode, out: &mut Vec<StateSignature>) {
    match node {
        StreamNode::Source(_) => {}
        StreamNode::Filter(StreamFilter { input, .. })
        | StreamNode::Project(StreamProject { input, .. })
        | StreamNode::Unnest(StreamUnnest { input, .. }) => collect(input, out),
        StreamNode::HashJoin(join) => {
            collect(&join.left, out);
            collect(&join.right, out);
            out.push(join_signature(join));
        }
        StreamNode::Aggregate(aggregate) => {
            collect(&aggregate.input, out);
            out.push(aggregate_signature(aggregate));
        }
        StreamNode::TopN(top_n) => {
            collect(&top_n.input, out);
            out.push(top_n_signature(top_n));
        }
        StreamNode::OverWindow(over) => {
            collect(&over.input, out);
            out.push(over_signature(over));
        }
    }
}

/// An OVER window's state: rows waiting and frames per key, and the
/// functions' accumulators.
fn over_signature(over: &StreamOverWindow) -> StateSignature {
    let spec = &over.spec;
    sign(StateSignature {
        operator: "StreamOverWindow".into(),
        kind: format!("over window {:?}", spec.frame),
        input: layers(&over.input),
        keys: spec.partition.iter().map(normalized).collect(),
        window: over.frame.to_string(),
        accumulators: spec
            .order
            .iter()
            .map(|(e, o)| format!("order {} {o}", normalized(e)))
            .chain(spec.functions.iter().map(|f| match f {
                weir_runtime::operators::over_window::OverFunction::RowNumber => {
                    "row_number".to_string()
                }
                weir_runtime::operators::over_window::OverFunction::Aggregate(a) => format!(
                    "{}({})",
                    a.fun().name(),
                    a.expressions().iter().map(normalized).collect::<Vec<_>>().join(", ")
                ),
            }))
            .collect(),
        layout: STATE_LAYOUT_VERSION,
        hash: String::new(),
        shown: ShownParts {
            keys: over.partition_by.iter().map(|e| e.to_string()).collect(),
            accumulators: over.functions.iter().map(|e| e.to_string()).collect(),
        },
    })
}

/// A TopN's state: the rows it keeps per key, in its order.
fn top_n_signature(top_n: &StreamTopN) -> StateSignature {
    let spec = &top_n.spec;
    sign(StateSignature {
        operator: "StreamTopN".into(),
        kind: format!(
            "first {} rows per key{}",
            spec.limit,
            if spec.input_changelog {
                ", over an updating input"
            } else {
                ""
            }
        ),
        input: layers(&top_n.input),
        keys: spec.partition.iter().map(normalized).collect(),
        window: match (&top_n.window, spec.window) {
            (Some(tvf), Some(w)) => format!(
                "{} @{}{}",
                window_text(tvf),
                w.key,
                if w.emit_on_close {
                    " emitted on window close"
                } else {
                    ""
                }
            ),
            _ => "none".into(),
        },
        accumulators: spec
            .order
            .iter()
            .map(|(e, o)| format!("order {} {o}", normalized(e)))
            .collect(),
        layout: STATE_LAYOUT_VERSION,
        hash: String::new(),
        shown: ShownParts {
            keys: top_n.partition_by.iter().map(|e| e.to_string()).collect(),
            accumulators: top_n.order_by.iter().map(|s| s.to_string()).collect(),
        },
    })
}

fn aggregate_signature(aggregate: &StreamAggregate) -> StateSignature {
    let spec = &aggregate.spec;
    let kind = format!(
        "{} aggregate, {}{}",
        match spec.window {
            WindowKind::None => "updating",
            WindowKind::Fixed { .. } => "window",
            WindowKind::Session { .. } => "session",
        },
        match spec.emit {
            Emit::OnWindowClose => "emitted on window close",
            Emit::Updates => "emitting updates",
        },
        if spec.retracting.is_some() {
            ", over an updating input"
        } else {
            ""
        }
    );
    let accumulators = spec
        .aggregates
        .iter()
        .zip(&spec.filters)
        .map(|(f, filter)| {
            let args: Vec<String> = f.expressions().iter().map(normalized).collect();
            format!(
                "{}({}{}){}",
                f.fun().name(),
                if f.is_distinct() { "DISTINCT " } else { "" },
                args.join(", "),
                match filter {
                    Some(filter) => format!(" FILTER (WHERE {})", normalized(filter)),
                    None => String::new(),
                }
            )
        })
        .collect();
    sign(StateSignature {
        operator: if aggregate.windowed() {
            "StreamWindowAggregate"
        } else {
            "StreamGroupAggregate"
        }
        .into(),
        kind,
        input: layers(&aggregate.input),
        keys: spec.group.iter().map(normalized).collect(),
        window: match (&aggregate.window, spec.window) {
            (Some(tvf), kind) if kind != WindowKind::None => window_text(tvf),
            _ => "none".into(),
        },
        accumulators,
        layout: STATE_LAYOUT_VERSION,
        hash: String::new(),
        shown: ShownParts {
            keys: aggregate.group.iter().map(shown).collect(),
            accumulators: aggregate.aggregates.iter().map(shown).collect(),
        },
    })
}

fn join_signature(join: &StreamHashJoin) -> StateSignature {
    let [left, right] = &join.spec.keys;
    sign(StateSignature {
        operator: match join.interval {
            Some(_) => "StreamIntervalJoin",
            None if join.spec.lookup() => "StreamLookupJoin",
            None => "StreamHashJoin",
        }
        .into(),
        kind: match join.spec.kind {
            // Its state is the table side's rows only.
            JoinKind::Inner | JoinKind::Left if join.spec.lookup() => {
                "lookup join, the table side's rows by key"
            }
            JoinKind::Inner => "inner join, both inputs' rows by key",
            JoinKind::Left => "left join, both inputs' rows by key",
            JoinKind::Right => "right join, both inputs' rows by key",
            JoinKind::Full => "full join, both inputs' rows by key",
        }
        .into(),
        input: vec![
            format!("left: {}", layers(&join.left).join(" -> ")),
            format!("right: {}", layers(&join.right).join(" -> ")),
        ],
        keys: left
            .iter()
            .zip(right)
            .map(|(l, r)| format!("{} = {}", normalized(l), normalized(r)))
            .collect(),
        // An interval join keeps other state (rows with their times, cut
        // by the watermark): its bounds are part of what its state means.
        window: match &join.interval {
            Some(i) => format!(
                "interval [{}, {}] over columns {} and {}",
                i.bounds.lower, i.bounds.upper, i.bounds.time[0], i.bounds.time[1]
            ),
            // A state TTL drops rows by their event time: the time to
            // live and which sides' columns are part of what the state
            // means, so an upgrade that changes them starts it afresh.
            None => match join.spec.ttl() {
                Some(ttl) => {
                    let column = |c: Option<usize>| c.map_or("none".to_string(), |c| c.to_string());
                    format!(
                        "join_state_ttl {} (event-time columns {} and {})",
                        crate::windows::format_duration(ttl.ttl),
                        column(ttl.time[0]),
                        column(ttl.time[1])
                    )
                }
                None => "none".into(),
            },
        },
        accumulators: Vec::new(),
        layout: STATE_LAYOUT_VERSION,
        hash: String::new(),
        shown: ShownParts {
            keys: join
                .on
                .iter()
                .map(|(l, r)| format!("{} = {}", shown(l), shown(r)))
                .collect(),
            accumulators: Vec::new(),
        },
    })
}

/// `signature` with its hash filled in: over every part but the operator's
/// display name and the parts as written.
fn sign(mut signature: StateSignature) -> StateSignature {
    let parts = [
        vec![signature.kind.clone()],
        signature.input.clone(),
        signature.keys.clone(),
        vec![signature.window.clone()],
        signature.accumulators.clone(),
        vec![signature.layout.to_string()],
    ];
    let flat: Vec<String> = parts
        .iter()
        .map(|part| serde_json::to_string(part).unwrap_or_default())
        .collect();
    signature.hash = hash(&flat);
    signature
}

/// The rows of `node`, described from its sources up, one layer per
/// operator; a stateful operator below stands for itself by its hash.
fn layers(node: &StreamNode) -> Vec<String> {
    match node {
        StreamNode::Source(source) => vec![source_layer(source)],
        StreamNode::Filter(StreamFilter {
            input, physical, ..
        }) => {
            let mut below = layers(input);
            below.push(format!("filter {}", normalized(physical)));
            below
        }
        StreamNode::Project(StreamProject {
            input,
            physical,
            schema,
            ..
        }) => {
            let mut below = layers(input);
            let exprs: Vec<String> = physical
                .iter()
                .zip(schema.fields())
                .map(|(e, f)| format!("{} {}", normalized(e), f.data_type()))
                .collect();
            below.push(format!("project {}", exprs.join(", ")));
            below
        }
        StreamNode::Unnest(StreamUnnest { input, column, .. }) => {
            let mut below = layers(input);
            below.push(format!("unnest @{column}"));
            below
        }
        StreamNode::HashJoin(join) => vec![format!("join {}", join_signature(join).hash)],
        StreamNode::Aggregate(aggregate) => {
            vec![format!("aggregate {}", aggregate_signature(aggregate).hash)]
        }
        StreamNode::TopN(top_n) => vec![format!("top n {}", top_n_signature(top_n).hash)],
        StreamNode::OverWindow(over) => vec![format!("over window {}", over_signature(over).hash)],
    }
}

/// A source by name and connector identity, the columns read and its
/// watermark (which decides which rows are late).
fn source_layer(source: &StreamSource) -> String {
    let input = &source.input;
    format!(
        "source {} [{}] columns={} watermark={} changelog={}",
        source.name,
        input.source.identity(),
        match &source.projection {
            Some(columns) => format!("{columns:?}"),
            None => "all".into(),
        },
        match input.event_time {
            Some(t) => format!("@{} - {}ns", t.column, t.delay),
            None if source.processing_time => "proctime".into(),
            None => "none".into(),
        },
        input.source.changelog(),
    )
}

/// A compiled expression with every column by position alone.
fn normalized(expr: &Arc<dyn PhysicalExpr>) -> String {
    let positional = expr.clone().transform(|e| {
        Ok(match e.downcast_ref::<Column>() {
            Some(column) => Transformed::yes(Arc::new(Column::new("", column.index())) as _),
            None => Transformed::no(e),
        })
    });
    match positional {
        Ok(positional) => positional.data.to_string(),
        Err(_) => expr.to_string(),
    }
}

/// An expression as written, without table qualifiers (for messages).
fn shown(expr: &Expr) -> String {
    let plain = expr.clone().transform(|e| {
        Ok(match e {
            Expr::Column(c) => Transformed::yes(Expr::Column(c.name.as_str().into())),
            other => Transformed::no(other),
        })
    });
    match plain {
        Ok(plain) => plain.data.to_string(),
        Err(_) => expr.to_string(),
    }
}

/// A window as the query names it: `TUMBLE(1min)`.
fn window_text(tvf: &WindowTvf) -> String {
    let d = |ns: i64| format_duration(ns);
    match tvf {
        WindowTvf::Tumble { size } => format!("TUMBLE({})", d(*size)),
        WindowTvf::Hop { slide, size } => format!("HOP({}, {})", d(*slide), d(*size)),
        WindowTvf::Cumulate { step, size } => format!("CUMULATE({}, {})", d(*step), d(*size)),
        WindowTvf::Session { gap } => format!("SESSION({})", d(*gap)),
    }
}

/// A stable hash (SHA-256, first 16 bytes in hex) of `parts`: stable
/// across builds and Rust versions, unlike `std`'s hasher, since manifests
/// outlive the binary that wrote them.
fn hash(parts: &[String]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
