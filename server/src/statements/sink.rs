//! `CREATE SINK name FROM view WITH (connector = 'file', ...)` and
//! `DROP SINK`: a materialized view's rows written out by its job, exactly
//! once (see `weir_connectors::registry` and each connector's sink).
//!
//! A sink is part of its view's job: it gets the view's contents when it is
//! created, then every change, and takes part in the job's checkpoints.

use std::sync::Arc;

use tracing::info;
use weir_connectors::ConnectorOptions;
use weir_connectors::registry;
use weir_planner::catalog::{CatalogEntry, SinkDef};
use weir_planner::statement::CreateSink;
use weir_runtime::job::Sink;

use crate::error::{Result, ServerError};
use crate::output::Output;
use crate::registry::Registry;

/// Open the connector of sink `def` for the rows of `view`.
pub fn open(
    def: &SinkDef,
    view: &weir_runtime::materialized::MaterializedView,
) -> Result<Arc<dyn Sink>> {
    let options = ConnectorOptions::new(def.options.clone());
    Ok(registry::open_sink(
        &def.name,
        view.schema(),
        view.is_changelog(),
        options,
    )?)
}

/// `CREATE SINK`.
pub async fn create(registry: &Registry, create: CreateSink) -> Result<Output> {
    let _ddl = registry.ddl_guard().await;
    let done = Output::command("CREATE SINK");
    if registry.kind_of(&create.name).is_some() {
        if create.if_not_exists {
            return Ok(done);
        }
        return Err(ServerError::DuplicateTable { name: create.name });
    }
    let live = registry.view(&create.from)?;
    super::jobs::refuse_sink_settings(&create.from, &create.options)?;
    let def = SinkDef {
        name: create.name.clone(),
        from: create.from.clone(),
        options: create.options.into_iter().collect(),
    };
    let sink = open(&def, live.output.view())?;
    // Leftovers of an earlier sink of this name are not ours to commit.
    sink.restore(&Default::default(), &Default::default())
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    registry.persist(|catalog| catalog.insert(CatalogEntry::Sink(def)).map_err(Into::into))?;
    live.output
        .attach(&create.name, sink.clone(), true)
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    if live.job.is_bounded() {
        // A bounded job that ended before a checkpoint saw this sink takes
        // no more barriers: once it is done, a checkpoint of the ended job
        // records and commits what the sink got (if the job's final
        // checkpoint saw the sink, this finds nothing new to commit).
        let finished_now = live.job.progress().finished;
        let job = live.clone();
        let name = create.name.clone();
        let late = async move {
            if job.job.finished().await.is_ok()
                && let Err(err) = job.job.checkpoint_finished().await
            {
                tracing::warn!(sink = %name, %err, "committing the sink's files failed");
            }
        };
        if finished_now {
            late.await;
        } else {
            tokio::spawn(late);
        }
    }
    info!(sink = %create.name, view = %create.from, "sink created");
    Ok(done)
}
