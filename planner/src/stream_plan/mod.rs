//! The incremental rewrite: a DataFusion `LogicalPlan` of a continuous query
//! becomes a tree of typed stream plan nodes, which EXPLAIN prints and which
//! becomes the runtime's `StreamPlan`.
//!
//! ```text
//!   LogicalPlan ──logical::collect──> steps (refused here: Sort, Limit, OVER, ...)
//!        │
//!        └──lower (one lower_* per node kind)──> StreamMaterialize (nodes.rs)
//!                                                   │            │
//!                                     explain::explain     runtime_plan::runtime_plan
//!                                                   v            v
//!                                             EXPLAIN text   runtime::plan::StreamPlan
//! ```
//!
//! What becomes what:
//! ```text
//!   Projection / Filter / Unnest   ──> StreamProject / StreamFilter / StreamUnnest   (stateless)
//!   Aggregate over window bounds   ──> StreamWindowAggregate (state per window and key)
//!   Aggregate without a window     ──> StreamGroupAggregate (state per key, updating)
//!   Join on equal keys             ──> StreamHashJoin (both inputs' rows by key)
//!   ROW_NUMBER() OVER (..) <= N    ──> StreamTopN (the first N rows per key)
//!   agg(..) OVER (.. ORDER BY ts ..) ──> StreamOverWindow (frames in event time)
//!   TableScan of a stream          ──> StreamSource
//!   Sort, Limit, other OVER, ...   ──> refused, with the reason
//! ```
//! Expressions are compiled to DataFusion physical expressions and
//! aggregates to DataFusion accumulators, so every scalar and aggregate
//! function DataFusion has works in a view as it does in a `SELECT`.
//!
//! # Layout
//! - `logical`: the `LogicalPlan` walked into steps; what cannot be
//!   maintained incrementally is refused here.
//! - [`nodes`]: the typed stream plan nodes.
//! - `lower`: steps to nodes, and how nodes may stack; one file per node
//!   kind: `lower_source`, `lower_stateless`, `lower_join` (with
//!   `lower_join_interval` and `lower_join_lookup`), `lower_aggregate`,
//!   `lower_top_n`, `lower_over`; what they share in `lowering`.
//! - `event_time`: which output column a view's watermark is over, when
//!   it has one (what a view reading it takes as its event time).
//! - [`explain`]: the EXPLAIN text, rendered from the nodes.
//! - [`runtime_plan`]: the nodes as the runtime's `StreamPlan`.
//! - [`signature`]: what each stateful operator's state means, hashed:
//!   recorded in checkpoints, compared by upgrades.
//! - [`upgrade`]: an old and a new plan's stateful operators matched by
//!   signature, and why one cannot keep its state.

mod event_time;
mod logical;
mod lower;
mod lower_aggregate;
mod lower_join;
mod lower_join_interval;
mod lower_join_lookup;
mod lower_over;
mod lower_source;
mod lower_stateless;
mod lower_top_n;
mod lowering;

pub mod explain;
pub mod nodes;
pub mod runtime_plan;
pub mod signature;
pub mod upgrade;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod upgrade_tests;

use std::collections::HashMap;

use datafusion::common::tree_node::TreeNode;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::LogicalPlan;
use weir_runtime::plan::StreamPlan;

use crate::error::Result;
use crate::lookups::LookupUse;
use crate::windows::{WindowTvf, WindowUse};
use lowering::{Lowering, arrow_schema, unsupported};

use nodes::StreamAggregate;
pub use nodes::{StreamInput, StreamMaterialize, StreamNode};

/// What the view says that its query's `LogicalPlan` does not: the window
/// functions it used (rewritten to plain SQL before planning), the tables
/// it reads `FOR SYSTEM_TIME AS OF` (which DataFusion ignores), and the
/// view's settings that change what its operators keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryUses<'a> {
    /// The window functions, each over one stream.
    pub windows: &'a [WindowUse],
    /// The lookup joins' tables.
    pub lookups: &'a [LookupUse],
    /// `join_state_ttl` (nanoseconds of event time): how long its regular
    /// joins keep a row (`None`: for ever).
    pub join_state_ttl: Option<i64>,
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

/// Build the stream plan of `plan` (optimized), reading `inputs`: the
/// runtime's plan and its EXPLAIN text.
pub fn plan_stream(
    plan: &LogicalPlan,
    uses: QueryUses<'_>,
    emit_on_window_close: bool,
    parallelism: usize,
    inputs: &HashMap<String, StreamInput>,
) -> Result<(StreamPlan, String)> {
    let nodes = lower_stream(plan, uses, emit_on_window_close, parallelism, inputs)?;
    let explain = explain::explain(&nodes);
    Ok((runtime_plan::runtime_plan(&nodes)?, explain))
}

/// The typed stream plan of `plan` (optimized), reading `inputs`.
pub fn lower_stream(
    plan: &LogicalPlan,
    uses: QueryUses<'_>,
    emit_on_window_close: bool,
    parallelism: usize,
    inputs: &HashMap<String, StreamInput>,
) -> Result<StreamMaterialize> {
    let mut steps = Vec::new();
    logical::collect(plan, inputs, &mut steps)?;
    let lowering = Lowering {
        props: ExecutionProps::new(),
        windows: uses.windows,
        lookups: uses.lookups,
        join_state_ttl: uses.join_state_ttl,
        emit_on_window_close,
        parallelism,
    };
    let materialize = lower::lower(&steps, arrow_schema(plan.schema()), &lowering)?;
    // A session's bounds are known only when the session operator merges
    // its rows; read without an aggregate over them, the rows would carry
    // the placeholders the rewrite puts there (both bounds its own time).
    // An aggregate by other keys alone (`GROUP BY bidder`) does not read
    // the bounds and stays allowed; a bound under another name slips by.
    let sessions = uses
        .windows
        .iter()
        .any(|w| matches!(w.tvf, WindowTvf::Session { .. }))
        && materialize
            .schema
            .fields()
            .iter()
            .any(|f| matches!(f.name().as_str(), "window_start" | "window_end"));
    let session_aggregate = |node: &StreamNode| {
        matches!(
            node,
            StreamNode::Aggregate(StreamAggregate {
                window: Some(WindowTvf::Session { .. }),
                ..
            })
        )
    };
    if sessions && !materialize.input.any(&session_aggregate) {
        return Err(unsupported(
            "SESSION rows that are not aggregated per session",
            "GROUP BY window_start, window_end (and the session's keys): a session's bounds are known only when it closes; a batch SELECT computes them over its bounded rows",
        ));
    }
    Ok(materialize)
}
