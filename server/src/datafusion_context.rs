//! The DataFusion context every session plans in: Weir's catalog and
//! schema as the defaults, `pg_catalog` and `information_schema` as Postgres
//! clients read them, the `read_*` table functions, Postgres's system
//! functions, checked arithmetic and the window functions.
//!
//! Built once on start; tables, streams and views are registered in it by
//! the [`crate::registry::Registry`] as they are created.
//!
//! Each query runs with a memory pool of its own ([`query_runtime`]), of the
//! session's `query_memory_limit`: past it an operator that can spill (a
//! sort, a hash aggregate) writes to temporary files, and one that cannot
//! fails the query with 53200, so one query cannot take the server's memory.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnv;

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

tokio::task_local! {
    /// The memory limit of the statement running in this task: its
    /// session's `query_memory_limit`, set by the engine around each
    /// statement ([`with_query_memory_limit`]), read where a query starts
    /// ([`query_runtime`]) however deep the statement's handler calls it.
    static QUERY_MEMORY_LIMIT: Option<usize>;
}

/// Run `statement` with `limit` as the memory limit of the queries it starts.
pub async fn with_query_memory_limit<F: Future>(limit: Option<usize>, statement: F) -> F::Output {
    QUERY_MEMORY_LIMIT.scope(limit, statement).await
}

/// The runtime a query starting now runs with: `shared` (its disk manager
/// for spill files, caches and object stores) with a memory pool of the
/// statement's own limit. A fair pool: each operator that can spill gets an
/// equal share, so one cannot starve another of the same query. Tracking
/// the largest consumers names them in a 53200's message. Outside a
/// statement (no limit set), `shared` as it is.
pub fn query_runtime(shared: &Arc<RuntimeEnv>) -> Arc<RuntimeEnv> {
    match QUERY_MEMORY_LIMIT.try_with(|limit| *limit).ok().flatten() {
        None => shared.clone(),
        Some(limit) => {
            let mut runtime = RuntimeEnv::clone(shared);
            runtime.memory_pool = Arc::new(TrackConsumersPool::new(
                FairSpillPool::new(limit),
                NonZeroUsize::new(3).expect("3 is not zero"),
            ));
            Arc::new(runtime)
        }
    }
}

/// A memory size as Postgres writes one (`work_mem`): a number with a unit
/// (`B`, `kB`, `MB`, `GB`, `TB`, any case), or a plain number of kilobytes.
/// `Some(None)` for 0 or -1 (no limit), `None` if it is not a size.
pub fn parse_memory_limit(text: &str) -> Option<Option<usize>> {
    let text = text.trim().trim_matches('\'').trim();
    if text == "-1" {
        return Some(None);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().ok()?;
    let unit: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 1,
        "" | "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        _ => return None,
    };
    let bytes = number.checked_mul(unit)?;
    Some((bytes > 0).then_some(bytes))
}

/// A memory size as Postgres shows one: in the largest unit that divides it.
pub fn format_memory_limit(limit: Option<usize>) -> String {
    let Some(bytes) = limit else {
        return "0".to_string();
    };
    for (unit, size) in [
        ("TB", 1usize << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("kB", 1 << 10),
    ] {
        if bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_read_and_show_as_postgres_writes_them() {
        assert_eq!(parse_memory_limit("512MB"), Some(Some(512 << 20)));
        assert_eq!(parse_memory_limit("'2GB'"), Some(Some(2 << 30)));
        assert_eq!(parse_memory_limit("64kb"), Some(Some(64 << 10)));
        assert_eq!(parse_memory_limit("1024"), Some(Some(1 << 20)));
        assert_eq!(parse_memory_limit("0"), Some(None));
        assert_eq!(parse_memory_limit("-1"), Some(None));
        assert_eq!(parse_memory_limit("lots"), None);
        assert_eq!(parse_memory_limit("1.5GB"), None);
        assert_eq!(format_memory_limit(Some(1 << 30)), "1GB");
        assert_eq!(format_memory_limit(Some(1536 << 20)), "1536MB");
        assert_eq!(format_memory_limit(Some(1000)), "1000B");
        assert_eq!(format_memory_limit(None), "0");
    }
}
