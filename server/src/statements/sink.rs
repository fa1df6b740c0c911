//! `CREATE SINK name FROM view WITH (connector = 'file', ...)` and
//! `DROP SINK`: a materialized view's rows written out by its job, exactly
//! once (see `weir_connectors::registry` and each connector's sink).
//!
//! A sink is part of its view's job: it gets the view's contents when it is
//! created, then every change, and takes part in the job's checkpoints.
//!
//! `CREATE OR REPLACE SINK` (design 0008, "Upgrades that keep state")
//! switches a sink to new connector options (another path, another format)
//! at a stop-with-savepoint of its view's job:
//!
//! ```text
//!  new definition checked ──refused (0A000 / 55000 / 22023): nothing touched
//!        v
//!  view's job: stop with a savepoint ──> checkpoint E (the old sink committed
//!        v                               everything up to E)
//!  checkpoint E rewritten without the sink's pending output (committed),
//!  copied into savepoint `<sink>_upgrade_<E>` (origin `upgrade`)
//!        v
//!  catalog names the new sink ──> the job restarts from E, the new sink in it
//!        │ the new run fails to start
//!        v
//!  catalog names the old sink again ──> the job restarts from E with it
//! ```
//!
//! # Correctness
//! - E is a barrier cut: the old sink's committed output holds exactly the
//!   view's changes up to E, and the restarted job feeds the new sink every
//!   change after E. The sink's part of E is kept (only its pending files
//!   are dropped, being already committed), so the restore neither hands
//!   the new sink the view's contents again nor commits the old sink's
//!   files at the new place: each change reaches exactly one of the two.
//! - E is rewritten before the catalog changes, so a crash anywhere
//!   restores E (or a later checkpoint of the new run) with whichever
//!   definition the catalog holds, and neither sink repeats a row.

use std::sync::Arc;

use tracing::info;
use weir_connectors::ConnectorOptions;
use weir_connectors::registry;
use weir_planner::catalog::{CatalogEntry, SinkDef};
use weir_planner::statement::CreateSink;
use weir_runtime::checkpoint::SavepointOrigin;
use weir_runtime::job::Sink;
use weir_runtime::materialized::sink_part;

use super::materialized_views::{
    RunStart, definition, plan_view, restarter, start_run, stop_and_wait,
};
use crate::error::{Result, ServerError};
use crate::jobs::JobStatus;
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

/// `CREATE SINK`, and `CREATE OR REPLACE SINK` of a name no sink has.
pub async fn create(registry: &Registry, create: CreateSink) -> Result<Output> {
    if create.or_replace {
        return replace(registry, create).await;
    }
    let _ddl = registry.ddl_guard().await;
    create_locked(registry, create).await
}

/// `CREATE SINK`, under the DDL guard.
async fn create_locked(registry: &Registry, create: CreateSink) -> Result<Output> {
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

/// The option of `CREATE OR REPLACE SINK ... WITH (...)` that is not a
/// connector's.
const UPGRADE_STRATEGY: &str = "upgrade_strategy";

/// `CREATE OR REPLACE SINK`: a new sink when there is none of that name,
/// else the switch of the one there is to the new definition, at a
/// stop-with-savepoint of its view's job.
async fn replace(registry: &Registry, mut create: CreateSink) -> Result<Output> {
    let _ddl = registry.ddl_guard().await;
    let name = create.name.clone();
    let old = match registry.catalog().get(&name).cloned() {
        None => {
            // Nothing to upgrade: a new sink, whatever the strategy.
            create.options.retain(|(k, _)| k != UPGRADE_STRATEGY);
            return create_locked(registry, create).await;
        }
        Some(CatalogEntry::Sink(def)) => def,
        Some(_) => {
            return Err(ServerError::WrongObjectType {
                message: format!("\"{name}\" is not a sink"),
            });
        }
    };
    let new = checked_change(&old, create)?;
    if new.options == old.options {
        return Ok(Output::command("CREATE SINK"));
    }
    let view = old.from.clone();
    let live = registry.view(&view)?;
    let job = registry.jobs().job(&view)?;
    if job.status() != JobStatus::Running {
        return Err(ServerError::ObjectNotInPrerequisiteState {
            message: format!(
                "cannot replace sink \"{name}\": the job of materialized view \"{view}\" is {}",
                job.status()
            ),
            hint: Some(format!(
                "a sink switches at a stop-with-savepoint of a running job: ALTER JOB {view} RESUME first, or drop the sink and create it again"
            )),
        });
    }
    // Bad options (a path that cannot be a folder, an unknown format) are
    // refused before anything is touched.
    drop(open(&new, live.output.view())?);
    let manifest = live
        .job
        .stop_with_savepoint()
        .await
        .map_err(|failure| ServerError::job_failed(&view, &failure))?;
    stop_and_wait(&live.job).await;
    let epoch = manifest.epoch;
    let savepoint =
        super::savepoints::automatic_name(&name, SavepointOrigin::Upgrade.as_str(), epoch);
    let switched = async {
        switch_point(registry, &view, &name, manifest).await?;
        registry.persist(|catalog| {
            catalog.upsert(CatalogEntry::Sink(new.clone()));
            Ok(())
        })?;
        run_again(registry, &view).await
    }
    .await;
    if let Err(err) = switched {
        tracing::warn!(sink = %name, %err, "the sink could not be switched; the old one goes on");
        registry.persist(|catalog| {
            catalog.upsert(CatalogEntry::Sink(old.clone()));
            Ok(())
        })?;
        if let Err(again) = run_again(registry, &view).await {
            job.transition(
                JobStatus::Failed,
                &format!("replacing sink \"{name}\" failed ({err}), and so did restarting the job with the old one: {again}"),
            );
            return Err(again);
        }
        job.transition(
            JobStatus::Running,
            &format!("replacing sink \"{name}\" failed, the old one goes on: {err}"),
        );
        return Err(err);
    }
    job.transition(
        JobStatus::Running,
        &format!(
            "sink \"{name}\" replaced at checkpoint {epoch} (savepoint \"{savepoint}\"): its output continues from there"
        ),
    );
    info!(sink = %name, view = %view, epoch, "sink replaced");
    Ok(Output::command("CREATE SINK"))
}

/// The new definition `create` asks for, when sink `old` may switch to it:
/// the same view and connector, no job settings, `upgrade_strategy`
/// `stateful` if given (a sink keeps no state but its place in the view's
/// changes, which is what a switch keeps).
fn checked_change(old: &SinkDef, create: CreateSink) -> Result<SinkDef> {
    let name = &create.name;
    if create.from != old.from {
        return Err(ServerError::FeatureNotSupported {
            message: format!(
                "cannot replace sink \"{name}\": it writes out materialized view \"{}\", not \"{}\"",
                old.from, create.from
            ),
            hint: Some("a sink continues from where it is in its view's changes; to write out another view, create another sink".into()),
        });
    }
    let mut options = create.options;
    let mut strategy = None;
    options.retain(|(k, v)| {
        if k == UPGRADE_STRATEGY {
            strategy = Some(v.clone());
            return false;
        }
        true
    });
    match strategy.as_deref() {
        None | Some("stateful") => {}
        Some("stateless") => {
            return Err(ServerError::FeatureNotSupported {
                message: format!(
                    "upgrade_strategy 'stateless' for sink \"{name}\": a replaced sink continues from the switch"
                ),
                hint: Some(
                    "to write the view's whole contents again, drop the sink and create it again"
                        .into(),
                ),
            });
        }
        Some(other) => {
            return Err(ServerError::InvalidParameterValue {
                message: format!("invalid value for option \"upgrade_strategy\": \"{other}\""),
                hint: Some("upgrade_strategy is 'stateful' or 'stateless'".into()),
            });
        }
    }
    super::jobs::refuse_sink_settings(&old.from, &options)?;
    let options: std::collections::BTreeMap<String, String> = options.into_iter().collect();
    let connector = |options: &std::collections::BTreeMap<String, String>| {
        options.get("connector").map(|v| v.to_lowercase())
    };
    let (was, now) = (connector(&old.options), connector(&options));
    if was != now {
        return Err(ServerError::FeatureNotSupported {
            message: format!(
                "cannot replace sink \"{name}\": its connector changes from {} to {}",
                was.as_deref().unwrap_or("none"),
                now.as_deref().unwrap_or("none")
            ),
            hint: Some("a sink's checkpointed state is its connector's own; drop the sink and create a new one".into()),
        });
    }
    Ok(SinkDef {
        name: create.name,
        from: create.from,
        options,
    })
}

/// Make checkpoint `manifest` (the stop's, whose output the old sink has
/// committed) the switch point: its part for sink `name` without pending
/// output, so no restore commits the old sink's files again at the new
/// sink's place; then copy it into savepoint `<sink>_upgrade_<epoch>`.
async fn switch_point(
    registry: &Registry,
    view: &str,
    name: &str,
    mut manifest: weir_runtime::checkpoint::Manifest,
) -> Result<()> {
    let interval = registry.jobs().job(view)?.settings().checkpoint_interval;
    let Some(store) = registry.checkpoint_store(interval) else {
        return Err(ServerError::ObjectNotInPrerequisiteState {
            message: format!("cannot replace sink \"{name}\": checkpoints are off"),
            hint: None,
        });
    };
    if let Some(part) = manifest.sinks.get_mut(&sink_part(name)) {
        part.pending.clear();
    }
    store
        .job(view)
        .write_manifest(&manifest)
        .await
        .map_err(|e| ServerError::Io {
            message: format!("the checkpoint of \"{view}\" at the switch: {e}"),
        })?;
    let savepoint =
        super::savepoints::automatic_name(name, SavepointOrigin::Upgrade.as_str(), manifest.epoch);
    super::savepoints::save(
        registry,
        &savepoint,
        view,
        &manifest,
        SavepointOrigin::Upgrade,
    )
    .await?;
    Ok(())
}

/// Start view `view`'s job again from its latest checkpoint, its sinks as
/// the catalog defines them now, and supervise the new run.
async fn run_again(registry: &Registry, view: &str) -> Result<()> {
    let Some(CatalogEntry::MaterializedView(def)) = registry.catalog().get(view).cloned() else {
        return Err(ServerError::UndefinedTable {
            kind: "relation",
            name: view.to_string(),
            position: None,
        });
    };
    let job = registry.jobs().job(view)?;
    let settings = job.settings();
    let planned = plan_view(registry, &definition(&def)?, &settings).await?;
    let run = start_run(
        registry,
        view,
        &def.query,
        planned,
        RunStart {
            restore: true,
            sinks: true,
        },
        settings.checkpoint_interval,
    )
    .await?;
    let progress = run.live.job.watch();
    registry.replace_view(view, run.table, run.live)?;
    registry
        .jobs()
        .supervise(&job, progress, restarter(registry, view)?);
    Ok(())
}
