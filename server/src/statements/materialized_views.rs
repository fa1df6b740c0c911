//! Materialized views: `CREATE MATERIALIZED VIEW [... EMIT ON WINDOW
//! CLOSE]`, its `EXPLAIN`, and rebuilding a view on start.
//!
//! A materialized view is a job: its query is planned by DataFusion, turned
//! into a stream plan by `weir_planner::stream_plan`, and run by
//! `weir_runtime::job` into a `MaterializedView`, which is registered as a
//! table so `SELECT` reads its current contents. Reading it as it changes is
//! `SUBSCRIBE` (see [`super::subscribe`]).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::Statement;
use tracing::info;
use weir_planner::catalog::{CatalogEntry, MaterializedViewDef, SinkDef};
use weir_planner::statement::{CreateMaterializedView, ObjectKind};
use weir_planner::stream_plan::{StreamInput, plan_stream, scanned_tables};
use weir_planner::windows::{Mode, rewrite_windows};
use weir_runtime::materialized::{MaterializedView, ViewSink, ViewTable};
use weir_runtime::plan::EventTime;

use crate::error::{Result, ServerError};
use crate::output::Output;
use crate::registry::{LiveView, Registry};

/// A view's query, planned.
struct Planned {
    plan: weir_runtime::plan::StreamPlan,
    explain: String,
    inputs: Vec<String>,
}

async fn plan_view(registry: &Registry, create: &CreateMaterializedView) -> Result<Planned> {
    let mut statement = Statement::Query(create.query.clone());
    let windows = rewrite_windows(&mut statement, Mode::Stream)?;
    if windows.len() > 1 {
        return Err(ServerError::FeatureNotSupported {
            message: "more than one window function in a materialized view is not supported".into(),
            hint: None,
        });
    }
    let text = statement.to_string();
    let logical = registry.plan_query(statement, &text).await?;
    let optimized = registry.optimize(&logical)?;
    let tables = scanned_tables(&optimized);
    let mut inputs = HashMap::new();
    for table in &tables {
        if registry.is_view(table) {
            return Err(ServerError::FeatureNotSupported {
                message: format!(
                    "a materialized view over the materialized view \"{table}\" is not supported yet"
                ),
                hint: Some("define it over the stream the other view reads".into()),
            });
        }
        if let Some(input) = super::dml::stream_input(registry, table)? {
            inputs.insert(table.clone(), input);
            continue;
        }
        let Some(stream) = registry.stream(table) else {
            continue;
        };
        let state = registry.state();
        let connector = stream.connector.clone();
        let source = registry
            .run(async move { connector.source(&state).await })
            .await??;
        let schema = source.schema();
        let event_time = stream.event_time.as_ref().and_then(|(column, delay)| {
            schema.index_of(column).ok().map(|i| EventTime {
                column: i,
                delay: *delay,
            })
        });
        inputs.insert(
            table.clone(),
            StreamInput {
                source,
                event_time,
                time_column: stream.event_time.as_ref().map(|(c, _)| c.clone()),
            },
        );
    }
    let (plan, explain) = plan_stream(
        &optimized,
        windows.first(),
        create.emit_on_window_close,
        registry.parallelism(),
        &inputs,
    )?;
    Ok(Planned {
        plan,
        explain,
        inputs: tables,
    })
}

/// `CREATE MATERIALIZED VIEW`; `persist_it` is false when restoring.
pub async fn create_materialized_view(
    registry: &Registry,
    create: CreateMaterializedView,
    persist_it: bool,
) -> Result<Output> {
    let _ddl = if persist_it {
        Some(registry.ddl_guard().await)
    } else {
        None
    };
    if persist_it && registry.name_taken(&create.name) {
        if create.if_not_exists {
            return Ok(Output::command("CREATE MATERIALIZED VIEW"));
        }
        return Err(ServerError::DuplicateTable { name: create.name });
    }
    let planned = plan_view(registry, &create).await?;
    let view = MaterializedView::new(planned.plan.output_schema.clone(), planned.plan.changelog)
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    if persist_it {
        let def = MaterializedViewDef {
            name: create.name.clone(),
            query: create.query.to_string(),
            emit_on_window_close: create.emit_on_window_close,
        };
        registry.persist(|catalog| {
            catalog
                .insert(CatalogEntry::MaterializedView(def))
                .map_err(Into::into)
        })?;
    }
    // Where the job's rows go: the view, and the sinks that write it out.
    let output = ViewSink::new(view.clone());
    if !persist_it {
        // Sinks of this view, from the catalog: attached before the job
        // runs, so the restore hands them their part of the checkpoint.
        let sinks: Vec<SinkDef> = registry
            .entries_of(ObjectKind::Sink)
            .into_iter()
            .filter_map(|e| match e {
                CatalogEntry::Sink(def) if def.from == create.name => Some(def),
                _ => None,
            })
            .collect();
        for def in sinks {
            match super::sink::open(&def, &view) {
                Ok(sink) => output
                    .attach(&def.name, sink, false)
                    .map_err(|e| ServerError::from_datafusion(e, None))?,
                Err(err) => super::ddl::warn_restore(&def.name, &err),
            }
        }
    }
    let handle = registry
        .start_job(
            &create.name,
            &create.query.to_string(),
            planned.plan,
            output.clone(),
            !persist_it,
        )
        .await?;
    let table = Arc::new(ViewTable::of_job(
        view.clone(),
        &create.name,
        handle.watch(),
    ));
    registry.add_view(
        &create.name,
        table,
        LiveView {
            view,
            output,
            job: handle,
            explain: planned.explain,
            inputs: planned.inputs,
        },
    )?;
    info!(view = %create.name, "materialized view created, its job is running");
    Ok(Output::command("CREATE MATERIALIZED VIEW"))
}

/// Rebuild a materialized view on start: its job resumes from its latest
/// checkpoint (or runs again from the start of its stream without one).
pub async fn restore_view(registry: &Registry, def: &MaterializedViewDef) -> Result<()> {
    let statement = weir_planner::parser::parse(&def.query)?
        .pop()
        .ok_or_else(|| ServerError::internal("empty materialized view definition"))?;
    let Statement::Query(query) = statement else {
        return Err(ServerError::internal(
            "a materialized view's definition is not a query",
        ));
    };
    create_materialized_view(
        registry,
        CreateMaterializedView {
            name: def.name.clone(),
            if_not_exists: false,
            query,
            emit_on_window_close: def.emit_on_window_close,
        },
        false,
    )
    .await
    .map(|_| ())
}

/// `EXPLAIN CREATE MATERIALIZED VIEW`: the stream plan, with each operator's
/// key and state.
pub async fn explain_materialized_view(
    registry: &Registry,
    create: CreateMaterializedView,
) -> Result<Output> {
    let planned = plan_view(registry, &create).await?;
    let lines: Vec<String> = planned.explain.lines().map(str::to_string).collect();
    Ok(Output::Rows(super::show::text_stream(
        super::explain::schema(),
        vec![lines],
    )?))
}
