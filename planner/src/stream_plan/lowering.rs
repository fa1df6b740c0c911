//! What every lowering step shares: the view-wide settings, compiling a
//! DataFusion expression for the runtime, Arrow schemas of DataFusion's,
//! and the shape of a refusal.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::DFSchemaRef;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::PhysicalExpr;

use super::nodes::StreamNode;
use crate::error::{PlanError, Result};
use crate::windows::{WindowTvf, WindowUse};

/// What every lowering step may need to know about the view as a whole.
pub(super) struct Lowering<'a> {
    /// For compiling expressions.
    pub(super) props: ExecutionProps,
    /// The window functions the query uses (each over one stream).
    pub(super) windows: &'a [WindowUse],
    /// The tables the query reads `FOR SYSTEM_TIME AS OF` (lookup joins).
    pub(super) lookups: &'a [crate::lookups::LookupUse],
    /// The view's `join_state_ttl` (nanoseconds), if set.
    pub(super) join_state_ttl: Option<i64>,
    /// `EMIT ON WINDOW CLOSE` was given.
    pub(super) emit_on_window_close: bool,
    /// Workers per keyed stage.
    pub(super) parallelism: usize,
}

impl Lowering<'_> {
    /// The window function that made the window bounds of `node`'s rows:
    /// the one over a stream `node` reads, or else the query's one kind of
    /// window (as when a view had at most one). Two different windows over
    /// the streams `node` reads are refused: which bounds a key holds would
    /// be a guess.
    pub(super) fn window_of(&self, node: &StreamNode) -> Result<Option<WindowTvf>> {
        let read: Vec<&str> = node.sources().iter().map(|s| s.name.as_str()).collect();
        let over = |uses: &mut dyn Iterator<Item = &WindowUse>| {
            let mut tvfs: Vec<WindowTvf> = Vec::new();
            for w in uses {
                if !tvfs.contains(&w.tvf) {
                    tvfs.push(w.tvf);
                }
            }
            tvfs
        };
        let mut here = over(
            &mut self
                .windows
                .iter()
                .filter(|w| read.iter().any(|name| same_stream(&w.source, name))),
        );
        if here.is_empty() {
            here = over(&mut self.windows.iter());
            if here.len() > 1 {
                return Ok(None);
            }
        }
        match here.as_slice() {
            [] => Ok(None),
            [tvf] => Ok(Some(*tvf)),
            _ => Err(unsupported(
                "window functions of different kinds or sizes over the same stream",
                "give each window function a stream of its own, or build one of the windowed queries as a view of its own",
            )),
        }
    }
}

/// Is `written` (a window function's stream, as the query wrote it:
/// perhaps qualified or quoted) the stream `name`?
pub(super) fn same_stream(written: &str, name: &str) -> bool {
    let last = written.rsplit('.').next().unwrap_or(written);
    match last.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(quoted) => quoted == name,
        None => last.eq_ignore_ascii_case(name),
    }
}

/// `expr` over `input`, compiled.
pub(super) fn physical(
    expr: &Expr,
    input: &DFSchemaRef,
    props: &ExecutionProps,
) -> Result<Arc<dyn PhysicalExpr>> {
    datafusion::physical_expr::create_physical_expr(
        expr,
        input,
        props,
        &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default(),
    )
    .map_err(|e| PlanError::Invalid(e.message().to_string()))
}

/// Part of a query that a materialized view cannot maintain, and why.
pub(super) fn unsupported(what: &str, why: &str) -> PlanError {
    PlanError::Unsupported {
        what: format!("{what} in a materialized view"),
        hint: Some(why.to_string()),
    }
}

/// The Arrow schema of a DataFusion schema (its qualifiers dropped).
pub(super) fn arrow_schema(schema: &DFSchemaRef) -> SchemaRef {
    Arc::new(Schema::new(schema.as_arrow().fields().clone()))
}
