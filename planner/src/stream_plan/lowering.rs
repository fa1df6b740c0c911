//! What every lowering step shares: the view-wide settings, compiling a
//! DataFusion expression for the runtime, Arrow schemas of DataFusion's,
//! and the shape of a refusal.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::DFSchemaRef;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::PhysicalExpr;

use crate::error::{PlanError, Result};
use crate::windows::WindowUse;

/// What every lowering step may need to know about the view as a whole.
pub(super) struct Lowering<'a> {
    /// For compiling expressions.
    pub(super) props: ExecutionProps,
    /// The window function the query uses, if any.
    pub(super) window: Option<&'a WindowUse>,
    /// `EMIT ON WINDOW CLOSE` was given.
    pub(super) emit_on_window_close: bool,
    /// Workers per keyed stage.
    pub(super) parallelism: usize,
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
