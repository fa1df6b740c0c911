//! The DataFusion context every session plans in: Weir's catalog and
//! schema as the defaults, `pg_catalog` and `information_schema` as Postgres
//! clients read them, the `read_*` table functions, Postgres's system
//! functions, checked arithmetic and the window functions.
//!
//! Built once on start; tables, streams and views are registered in it by
//! the [`crate::registry::Registry`] as they are created.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{
    PgCatalogSchemaProvider, PgCatalogStaticTables, setup_pg_catalog,
};

use crate::error::{Result, ServerError};

/// The database (catalog) name clients see.
pub const DATABASE: &str = "weir";
/// The one schema.
pub const SCHEMA: &str = "public";

/// A context planning with `workers` partitions.
pub async fn build(workers: usize) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(DATABASE, SCHEMA)
        // Weir serves its own `information_schema` (Postgres type names).
        .with_information_schema(false)
        .with_target_partitions(workers.max(1));
    // Spans let DataFusion's diagnostics point into the SQL text.
    let mut config = config;
    config.options_mut().sql_parser.collect_spans = true;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        // Every join gets a yield point, so a cancel or a timeout can stop
        // a query that multiplies rows in memory (a cross join).
        .with_physical_optimizer_rule(Arc::new(weir_runtime::executor::YieldAfterJoins))
        .build();
    let ctx = SessionContext::new_with_state(state);
    // `EmptyContextProvider`, not an `Arc<...>`: the crate's blanket impl
    // for `Arc<T>` calls itself and overflows the stack.
    setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider)
        .map_err(|e| ServerError::from_datafusion(*e, None))?;
    // Replace the pg_catalog schema by one over the catalogs without
    // `information_schema` (see `ClientCatalogs`).
    let visible: Arc<dyn datafusion::catalog::CatalogProviderList> = Arc::new(
        crate::information_schema::ClientCatalogs::without_information_schema(
            ctx.state().catalog_list().clone(),
        ),
    );
    let pg_catalog = PgCatalogSchemaProvider::try_new(
        visible,
        Arc::new(
            PgCatalogStaticTables::try_new().map_err(|e| ServerError::from_datafusion(e, None))?,
        ),
        crate::pg_catalog::WeirRoles,
    )
    .map_err(|e| ServerError::from_datafusion(e, None))?;
    // Weir's keys and materialized views, which the crate cannot see.
    let keys = Arc::new(crate::pg_catalog::KeyDefinitions::default());
    let pg_catalog = crate::pg_catalog::PgCatalog::new(
        Arc::new(pg_catalog),
        ctx.state().catalog_list().clone(),
        keys.clone(),
    );
    ctx.catalog(DATABASE)
        .ok_or_else(|| ServerError::internal("the default catalog is missing"))?
        .register_schema("pg_catalog", Arc::new(pg_catalog))
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    let catalogs = ctx.state().catalog_list().clone();
    ctx.catalog(DATABASE)
        .ok_or_else(|| ServerError::internal("the default catalog is missing"))?
        .register_schema(
            "information_schema",
            Arc::new(crate::information_schema::PgInformationSchema::new(
                catalogs,
            )),
        )
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    for function in weir_connectors::table_functions::ReadFiles::all() {
        ctx.register_udtf(function.name(), function);
    }
    crate::pg_functions::register(&ctx);
    crate::pg_catalog::register_functions(&ctx, &keys);
    crate::pg_proc::register(&ctx)
        .await
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    ctx.add_analyzer_rule(Arc::new(weir_planner::arithmetic::CheckedArithmetic));
    weir_runtime::windows::register(&ctx);
    Ok(ctx)
}
