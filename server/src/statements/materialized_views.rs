//! Materialized views: `CREATE MATERIALIZED VIEW [... EMIT ON WINDOW
//! CLOSE]`, its `EXPLAIN`, and rebuilding a view on start.
//!
//! A materialized view is a job: its query is planned by DataFusion, turned
//! into a stream plan by `weir_planner::stream_plan`, and run by
//! `weir_runtime::job` into a `MaterializedView`, which is registered as a
//! table so `SELECT` reads its current contents. Reading it as it changes is
//! `SUBSCRIBE` (see [`super::subscribe`]).
//!
//! Each view's job is registered with the job manager (`crate::jobs`) and
//! supervised: a restart (after a failure, or asked for) starts a new run
//! here, over a new view restored from the latest checkpoint, and replaces
//! the old run in the registry.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::Statement;
use tracing::info;
use weir_planner::catalog::{CatalogEntry, DesiredState, JobSpec, MaterializedViewDef, SinkDef};
use weir_planner::statement::{CreateMaterializedView, ObjectKind};
use weir_planner::stream_plan::{QueryUses, StreamInput, plan_stream, scanned_tables};
use weir_planner::windows::{Mode, rewrite_windows};
use weir_runtime::materialized::{MaterializedView, ViewSink, ViewTable};
use weir_runtime::plan::EventTime;

use crate::error::{Result, ServerError};
use crate::jobs::{JobSettings, JobStatus, Restart, RestoreFrom, WatermarkOf, settings};
use crate::output::Output;
use crate::registry::{LiveView, Registry};

/// A view's query, planned.
pub(super) struct Planned {
    pub(super) plan: weir_runtime::plan::StreamPlan,
    pub(super) explain: String,
    pub(super) inputs: Vec<String>,
}

/// Plan view `create` as it runs with `settings` (its parallelism, and the
/// settings that change what its operators keep).
pub(super) async fn plan_view(
    registry: &Registry,
    create: &CreateMaterializedView,
    settings: &JobSettings,
) -> Result<Planned> {
    let mut statement = Statement::Query(create.query.clone());
    let windows = rewrite_windows(&mut statement, Mode::Stream)?;
    let lookups = weir_planner::lookups::lookup_uses(&statement);
    let text = statement.to_string();
    let logical = registry.plan_query(statement, &text).await?;
    let optimized = registry.optimize(&logical)?;
    let tables = scanned_tables(&optimized);
    let mut inputs = HashMap::new();
    for table in &tables {
        if registry.is_view(table) {
            inputs.insert(table.clone(), view_input(registry, table)?);
            continue;
        }
        if let Some(input) = super::dml::stream_input(registry, table)? {
            inputs.insert(table.clone(), input);
            continue;
        }
        if lookups.iter().any(|l| l.table == *table)
            && let Some(input) = file_table_input(registry, table).await?
        {
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
        QueryUses {
            windows: &windows,
            lookups: &lookups,
            join_state_ttl: settings.join_state_ttl,
        },
        create.emit_on_window_close,
        parallelism(registry, settings),
        &inputs,
    )?;
    Ok(Planned {
        plan,
        explain,
        inputs: tables,
    })
}

/// Materialized view `name` read as a stream by another view: its rows,
/// then its changes (`weir_runtime::view_source`), with its watermark when
/// its rows have one: its event-time column is the one its own plan's
/// watermark bounds (`StreamPlan::event_time`, see
/// `docs/design/0012-sql-breadth.md`), handed on by the view as its job
/// aligns it, never derived from the rows (hence no delay).
fn view_input(registry: &Registry, name: &str) -> Result<StreamInput> {
    let live = registry.view(name)?;
    let event_time = live.view.event_time();
    let source = weir_runtime::view_source::ViewSource::new(
        name,
        live.view.clone(),
        live.job.watch(),
        live.job.is_bounded(),
    );
    Ok(StreamInput {
        source: Arc::new(source),
        event_time: event_time.map(|column| EventTime { column, delay: 0 }),
        time_column: event_time.map(|column| live.view.schema().field(column).name().clone()),
    })
}

/// File table `name` read by a view that looks rows up in it (`FOR
/// SYSTEM_TIME AS OF`): its files, read once when the job starts, as a
/// table's rows (`weir_connectors::file::table_rows`). `None` when `name`
/// is not a table over files. Only as a lookup's table side: a view that
/// reads a file table otherwise is refused as before (it would see the
/// files once, never their changes).
async fn file_table_input(registry: &Registry, name: &str) -> Result<Option<StreamInput>> {
    let Some(CatalogEntry::Table(def)) = registry.catalog().get(name).cloned() else {
        return Ok(None);
    };
    if def.owned.is_some() {
        return Ok(None);
    }
    let options = weir_connectors::ConnectorOptions::new(def.options.clone());
    let schema = def.schema()?;
    let state = registry.state();
    // Opened as its stream would be: the files listed when the job starts,
    // read as splits that its checkpoints record.
    let files = registry
        .run(async move {
            let opened = weir_connectors::registry::reopen_stream(&state, options, schema).await?;
            opened.source(&state).await
        })
        .await??;
    Ok(Some(StreamInput {
        source: Arc::new(weir_connectors::file::table_rows::TableRows::new(
            name, files,
        )),
        event_time: None,
        time_column: None,
    }))
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
    // Bad settings are refused before anything is planned or written.
    let spec = new_job_spec(&create)?;
    let resolved = registry.jobs().resolve(&spec.settings);
    let planned = plan_view(registry, &create, &resolved).await?;
    let query = create.query.to_string();
    if persist_it {
        let def = MaterializedViewDef {
            name: create.name.clone(),
            query: query.clone(),
            emit_on_window_close: create.emit_on_window_close,
            job: spec.clone(),
        };
        registry.persist(|catalog| {
            catalog
                .insert(CatalogEntry::MaterializedView(def))
                .map_err(Into::into)
        })?;
    }
    let job = registry.jobs().add(&create.name, &spec, persist_it)?;
    // On start, a job restores what its restore strategy says.
    let start = if persist_it {
        crate::checkpoints::StrategyStart {
            restore: false,
            savepoint: None,
        }
    } else {
        match crate::checkpoints::apply_restore_strategy(registry, &create.name, resolved.restore)
            .await
        {
            Ok(start) => start,
            Err(err) => {
                job.transition(JobStatus::Failed, &format!("could not start: {err}"));
                return Err(err);
            }
        }
    };
    let run = match start_run(
        registry,
        &create.name,
        &query,
        planned,
        RunStart {
            restore: start.restore,
            sinks: !persist_it,
        },
        resolved.checkpoint_interval,
    )
    .await
    {
        Ok(run) => run,
        Err(err) => {
            job.transition(JobStatus::Failed, &format!("could not start: {err}"));
            return Err(err);
        }
    };
    let progress = run.live.job.watch();
    registry.add_view(&create.name, run.table, run.live)?;
    job.transition(
        JobStatus::Running,
        &started_from(persist_it, run.restored, start.savepoint.as_ref()),
    );
    registry
        .jobs()
        .supervise(&job, progress, restarter(registry, &create.name)?);
    info!(view = %create.name, "materialized view created, its job is running");
    Ok(Output::command("CREATE MATERIALIZED VIEW"))
}

/// The event of a job's first run.
fn started_from(
    created: bool,
    restored: Option<u64>,
    savepoint: Option<&weir_runtime::checkpoint::SavepointInfo>,
) -> String {
    match (created, restored, savepoint) {
        (true, _, _) => "started".to_string(),
        (false, Some(_), Some(sp)) => {
            format!(
                "resumed from savepoint \"{}\" (epoch {})",
                sp.name, sp.epoch
            )
        }
        (false, Some(epoch), None) => format!("resumed from checkpoint {epoch}"),
        (false, None, _) => "started from the beginning of its inputs".to_string(),
    }
}

/// How a run starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunStart {
    /// From the job's latest checkpoint (`false`: its checkpoints are
    /// removed and it starts from its inputs' beginning, empty).
    pub(super) restore: bool,
    /// Attach the view's sinks from the catalog (every run but a new
    /// view's first, whose sinks do not exist yet).
    pub(super) sinks: bool,
}

/// How many workers a job's stages get: its `parallelism`, or one per
/// worker thread.
pub(super) fn parallelism(registry: &Registry, settings: &JobSettings) -> usize {
    settings
        .parallelism
        .unwrap_or_else(|| registry.parallelism())
}

/// A run of a view's job: what the registry keeps of it, its table, and
/// the checkpoint it restored.
pub(super) struct Run {
    pub(super) live: LiveView,
    pub(super) table: Arc<dyn datafusion::catalog::TableProvider>,
    pub(super) restored: Option<u64>,
}

/// Start a run of view `name`'s job over a new view (contents from the
/// checkpoint when `start.restore`), its sinks from the catalog attached
/// when `start.sinks`.
pub(super) async fn start_run(
    registry: &Registry,
    name: &str,
    query: &str,
    planned: Planned,
    start: RunStart,
    interval: Option<Option<std::time::Duration>>,
) -> Result<Run> {
    let restore = start.restore;
    let view = MaterializedView::new(
        planned.plan.output_schema.clone(),
        planned.plan.changelog,
        planned.plan.event_time,
    )
    .map_err(|e| ServerError::from_datafusion(e, None))?;
    // Where the job's rows go: the view, and the sinks that write it out.
    let output = ViewSink::new(view.clone());
    if start.sinks {
        attach_sinks(registry, name, &view, &output)?;
    }
    let partitions = planned.plan.partitions().len();
    let (handle, restored) = registry
        .start_job(name, query, planned.plan, output.clone(), restore, interval)
        .await?;
    let table = Arc::new(ViewTable::of_job(view.clone(), name, handle.watch()));
    Ok(Run {
        live: LiveView {
            view,
            output,
            job: handle,
            explain: planned.explain,
            inputs: planned.inputs,
            partitions,
        },
        table,
        restored,
    })
}

/// Attach view `name`'s sinks from the catalog to a new run's `output`,
/// before its job starts, so that its restore hands them their part of the
/// checkpoint.
pub(super) fn attach_sinks(
    registry: &Registry,
    name: &str,
    view: &MaterializedView,
    output: &ViewSink,
) -> Result<()> {
    let sinks: Vec<SinkDef> = registry
        .entries_of(ObjectKind::Sink)
        .into_iter()
        .filter_map(|e| match e {
            CatalogEntry::Sink(def) if def.from == name => Some(def),
            _ => None,
        })
        .collect();
    for def in sinks {
        match super::sink::open(&def, view) {
            Ok(sink) => output
                .attach(&def.name, sink, false)
                .map_err(|e| ServerError::from_datafusion(e, None))?,
            Err(err) => super::ddl::warn_restore(&def.name, &err),
        }
    }
    Ok(())
}

/// How the supervisor of view `name`'s job starts a new run, and reads the
/// current run's watermark.
pub(super) fn restarter(registry: &Registry, name: &str) -> Result<(Restart, WatermarkOf)> {
    let registry = Arc::downgrade(&registry.shared()?);
    let watermark: WatermarkOf = {
        let (registry, name) = (registry.clone(), name.to_string());
        Arc::new(move || {
            let live = registry.upgrade()?.view(&name).ok()?;
            live.job.progress().watermark
        })
    };
    let name = name.to_string();
    let restart: Restart = Arc::new(move |from| {
        let registry = registry.clone();
        let name = name.clone();
        Box::pin(async move {
            let registry = registry.upgrade().ok_or(ServerError::ShuttingDown)?;
            restart_view(&registry, &name, from).await
        })
    });
    Ok((restart, watermark))
}

/// Stop the current run of view `name` and start a new one from its
/// latest checkpoint, or from where its restore strategy says (`from`),
/// with the job's settings now.
async fn restart_view(
    registry: &Registry,
    name: &str,
    from: RestoreFrom,
) -> Result<(
    tokio::sync::watch::Receiver<weir_runtime::job::Progress>,
    Option<String>,
)> {
    let _ddl = registry.ddl_guard().await;
    if registry.jobs().shutting_down() {
        return Err(ServerError::ShuttingDown);
    }
    let Some(CatalogEntry::MaterializedView(def)) = registry.catalog().get(name).cloned() else {
        return Err(ServerError::UndefinedTable {
            kind: "relation",
            name: name.to_string(),
            position: None,
        });
    };
    let settings = registry.jobs().job(name)?.settings();
    let create = definition(&def)?;
    let planned = plan_view(registry, &create, &settings).await?;
    // The old run stops before the new one restores: two runs must never
    // write the same checkpoints and sinks.
    if let Ok(old) = registry.view(name) {
        stop_and_wait(&old.job).await;
    }
    let start = match from {
        RestoreFrom::LatestState => crate::checkpoints::StrategyStart {
            restore: true,
            savepoint: None,
        },
        RestoreFrom::Strategy => {
            crate::checkpoints::apply_restore_strategy(registry, name, settings.restore).await?
        }
    };
    let run = start_run(
        registry,
        name,
        &def.query,
        planned,
        RunStart {
            restore: start.restore,
            sinks: true,
        },
        settings.checkpoint_interval,
    )
    .await?;
    let progress = run.live.job.watch();
    registry.replace_view(name, run.table, run.live)?;
    restart_readers(registry, name);
    let restored = run.restored.map(|epoch| match &start.savepoint {
        Some(sp) => format!("savepoint \"{}\" (epoch {epoch})", sp.name),
        None => format!("checkpoint {epoch}"),
    });
    Ok((progress, restored))
}

/// View `name` has a new run, over a new view: the running views that read
/// it start again from its contents (their reader of the old run fails, or
/// is about to; see `weir_runtime::view_source`). Through their
/// supervisors, which start them once this statement lets go of the DDL
/// guard.
fn restart_readers(registry: &Registry, name: &str) {
    for (reader, live) in registry.views() {
        if reader == name || !live.inputs.iter().any(|i| i == name) {
            continue;
        }
        let Some(job) = registry.jobs().get(&reader) else {
            continue;
        };
        if job.spec().desired_state != DesiredState::Running {
            continue;
        }
        job.command(crate::jobs::Command::Restart {
            reason: format!("the materialized view \"{name}\" it reads restarted"),
            resume: false,
            from: RestoreFrom::LatestState,
            reply: None,
        });
    }
}

/// Stop a run's tasks and wait (a little, at most) until every one of
/// them has let go of the job's progress: then none runs any more.
pub(crate) async fn stop_and_wait(job: &weir_runtime::job::JobHandle) {
    let mut progress = job.watch();
    job.stop();
    let gone = async { while progress.changed().await.is_ok() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(10), gone)
        .await
        .is_err()
    {
        tracing::warn!("a stopped job's tasks took more than 10s to end");
    }
}

/// The job spec a new view's statement asks for: running, with its
/// `WITH (...)` settings checked (22023 naming a bad one).
pub(super) fn new_job_spec(create: &CreateMaterializedView) -> Result<JobSpec> {
    Ok(JobSpec {
        desired_state: DesiredState::Running,
        settings: settings::check_all(
            create
                .settings
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )?,
    })
}

/// A view's definition from the catalog, as the statement that made it.
pub(super) fn definition(def: &MaterializedViewDef) -> Result<CreateMaterializedView> {
    let statement = weir_planner::parser::parse(&def.query)?
        .pop()
        .ok_or_else(|| ServerError::internal("empty materialized view definition"))?;
    let Statement::Query(query) = statement else {
        return Err(ServerError::internal(
            "a materialized view's definition is not a query",
        ));
    };
    Ok(CreateMaterializedView {
        name: def.name.clone(),
        if_not_exists: false,
        query,
        emit_on_window_close: def.emit_on_window_close,
        settings: def.job.settings.clone().into_iter().collect(),
        or_replace: false,
    })
}

/// Rebuild a materialized view on start: its job resumes from its latest
/// checkpoint (or runs again from the start of its stream without one).
pub async fn restore_view(registry: &Registry, def: &MaterializedViewDef) -> Result<()> {
    let result = match definition(def) {
        Ok(create) => create_materialized_view(registry, create, false)
            .await
            .map(|_| ()),
        Err(err) => Err(err),
    };
    if result.is_ok() && def.job.desired_state == DesiredState::Suspended {
        // A suspended job (or one killed while suspending): stopped again
        // at once, at the checkpoint it restored.
        if let Some(job) = registry.jobs().get(&def.name) {
            job.set_desired(DesiredState::Suspended);
        }
        return super::jobs::suspend_now(
            registry,
            &def.name,
            "server started: its desired state is suspended",
            false,
        )
        .await;
    }
    if let Err(err) = &result
        && registry.jobs().get(&def.name).is_none()
    {
        // Listed all the same, failed, with the reason.
        if let Ok(job) = registry.jobs().add(&def.name, &def.job, false) {
            job.transition(JobStatus::Failed, &format!("could not be restored: {err}"));
        }
    }
    result
}

/// `EXPLAIN CREATE MATERIALIZED VIEW`: the stream plan, with each operator's
/// key and state.
pub async fn explain_materialized_view(
    registry: &Registry,
    create: CreateMaterializedView,
) -> Result<Output> {
    let own = settings::check_all(
        create
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    let resolved = registry.jobs().resolve(&own);
    let planned = plan_view(registry, &create, &resolved).await?;
    let lines: Vec<String> = planned.explain.lines().map(str::to_string).collect();
    Ok(Output::Rows(super::show::text_stream(
        super::explain::schema(),
        vec![lines],
    )?))
}
