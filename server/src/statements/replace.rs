//! `CREATE OR REPLACE MATERIALIZED VIEW v [WITH (upgrade_strategy =
//! 'stateful' | 'stateless')] AS q`: an upgrade of a running view to a new
//! query (design 0008, "Upgrades that keep state"), and its `EXPLAIN`.
//!
//! ```text
//!  plan old and new ──match signatures──> refused (55000, nothing touched)
//!        │ compatible
//!        v
//!  old job: stop with a savepoint (origin `upgrade`) ──> that checkpoint (the switch point)
//!        v
//!  new view: the old view's rows at the switch, mapped through the new
//!  operators above the stateful ones; new job restored from the switch
//!  point (operator state, source positions) ──> checkpoint ──> catalog
//!        │ the new version fails to start
//!        v
//!  the old version restarts from the switch point
//! ```
//! `stateless` stops the old job and starts the new version from the
//! beginning of its inputs, state cleared.
//!
//! # Correctness
//! - The switch point is the checkpoint at which the old job stopped
//!   (stop-with-savepoint: its sources stop at the barrier with no end of
//!   input, so no window closes), copied into a savepoint of origin
//!   `upgrade`: every row before its barrier is in the kept state and in the
//!   view's rows at the switch (read from the checkpoint, not from the live
//!   view, which may have gone on past the barrier); every row after it is
//!   read again by the new job from the recorded source positions. No row is
//!   lost or counted twice.
//! - The view's rows at the switch are the old operators above the stateful
//!   one applied to its output. They are recomputed for the new version
//!   only when the old ones kept every column of that output and dropped no
//!   row (projections only): otherwise the upgrade is refused, as an
//!   operator's would be.
//! - The catalog names the new query only after the new job wrote a
//!   checkpoint: a crash before that restarts the old version (from the
//!   switch point, or from the beginning when the newer checkpoint is the
//!   new plan's); after it, the new one from its own checkpoint.
//! - If the switch point cannot be saved, or the new version fails to
//!   start, the old version restarts from the switch point and the
//!   statement fails; the savepoint stays, listed by `SHOW SAVEPOINTS`.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use datafusion::arrow::array::{Int8Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use tracing::{info, warn};
use weir_planner::catalog::{CatalogEntry, JobSpec, MaterializedViewDef};
use weir_planner::statement::CreateMaterializedView;
use weir_planner::stream_plan::upgrade::{
    Compatibility, Matching, OperatorState, UpgradeStrategy, match_operators,
};
use weir_runtime::checkpoint::{ManifestPlan, Restored, SavepointOrigin};
use weir_runtime::job::{Checkpointing, Sink};
use weir_runtime::materialized::{
    MaterializedView, VIEW_STATE, VIEW_WATERMARKS, ViewSink, ViewTable,
};
use weir_runtime::operators::stateless;
use weir_runtime::plan::{StageOperator, StatelessOp, StreamPlan};

use super::materialized_views::{
    Planned, RunStart, definition, new_job_spec, plan_view, restarter, start_run, stop_and_wait,
};
use crate::error::{Result, ServerError};
use crate::jobs::JobStatus;
use crate::output::Output;
use crate::registry::{LiveView, Registry};

/// What the old and the new version are, planned, and how they match.
struct Upgrade {
    def: MaterializedViewDef,
    strategy: UpgradeStrategy,
    spec: JobSpec,
    interval: Option<Option<std::time::Duration>>,
    old: Planned,
    new: Planned,
    matching: Matching,
    /// Where each column of the old version's stateful output is in its
    /// rows, or why the rows cannot be recomputed.
    rows: std::result::Result<Vec<usize>, String>,
}

impl Upgrade {
    /// Can the new version keep the old one's state, and if not, which
    /// operator and why?
    fn refusal(&self) -> Option<(String, String)> {
        match self.matching.compatibility() {
            Compatibility::Refused { operator, reason } => Some((operator, reason)),
            Compatibility::Keeps(_) => match &self.rows {
                Ok(_) => None,
                Err(reason) => Some(("StreamMaterialize".into(), reason.clone())),
            },
        }
    }
}

/// `CREATE OR REPLACE MATERIALIZED VIEW`: a new view when there is none of
/// that name, else an upgrade of the one there is.
pub async fn replace_view(registry: &Registry, create: CreateMaterializedView) -> Result<Output> {
    if !registry.is_view(&create.name) {
        let mut create = create;
        strategy(&mut create.settings)?;
        return super::materialized_views::create_materialized_view(registry, create, true).await;
    }
    let _ddl = registry.ddl_guard().await;
    let upgrade = plan_upgrade(registry, create.clone()).await?;
    let name = create.name.clone();
    if upgrade.strategy == UpgradeStrategy::Stateful
        && let Some((operator, reason)) = upgrade.refusal()
    {
        return Err(refused(&name, &operator, &reason));
    }
    let old_live = registry.view(&name)?;
    let job = registry.jobs().job(&name)?;
    let mut savepoint = None;
    let switch = match upgrade.strategy {
        UpgradeStrategy::Stateful => {
            // The switch point: the old job stops with a savepoint (origin
            // `upgrade`), which an operator can go back to.
            let manifest = old_live
                .job
                .stop_with_savepoint()
                .await
                .map_err(|failure| ServerError::job_failed(&name, &failure))?;
            stop_and_wait(&old_live.job).await;
            let saved = async {
                let sp = super::savepoints::automatic_name(
                    &name,
                    SavepointOrigin::Upgrade.as_str(),
                    manifest.epoch,
                );
                super::savepoints::save(registry, &sp, &name, &manifest, SavepointOrigin::Upgrade)
                    .await?;
                switch_point(registry, &upgrade).await.map(|r| (sp, r))
            }
            .await;
            match saved {
                Ok((sp, restored)) => {
                    savepoint = Some(sp);
                    Some(restored)
                }
                Err(err) => {
                    warn!(view = %name, %err, "the switch point could not be saved; the old version goes on");
                    resume_old(registry, &upgrade).await?;
                    job.transition(
                        JobStatus::Running,
                        &format!("upgrade failed, the old version goes on: {err}"),
                    );
                    return Err(err);
                }
            }
        }
        UpgradeStrategy::Stateless => {
            stop_and_wait(&old_live.job).await;
            None
        }
    };
    let epoch = switch.as_ref().map(|r| r.manifest.epoch);
    let started = start_new(registry, &name, &create, &upgrade, switch).await;
    let (live, table) = match started {
        Ok(run) => run,
        Err(err) => {
            warn!(view = %name, %err, "the new version did not start; the old one goes on");
            resume_old(registry, &upgrade).await?;
            job.transition(
                JobStatus::Running,
                &format!("upgrade failed, the old version goes on: {err}"),
            );
            return Err(err);
        }
    };
    let progress = live.job.watch();
    registry.replace_view(&name, table, live)?;
    let def = MaterializedViewDef {
        name: name.clone(),
        query: create.query.to_string(),
        emit_on_window_close: create.emit_on_window_close,
        job: upgrade.spec.clone(),
    };
    registry.persist(|catalog| {
        catalog.upsert(CatalogEntry::MaterializedView(def));
        Ok(())
    })?;
    job.set_settings(upgrade.spec.settings.clone(), "upgraded");
    job.transition(
        JobStatus::Running,
        &match epoch {
            Some(epoch) => format!(
                "upgraded (stateful) from checkpoint {epoch} (savepoint \"{}\")",
                savepoint.as_deref().unwrap_or_default()
            ),
            None => "upgraded (stateless), from the beginning of its inputs".into(),
        },
    );
    registry
        .jobs()
        .supervise(&job, progress, restarter(registry, &name)?);
    info!(view = %name, strategy = upgrade.strategy.name(), "materialized view upgraded");
    Ok(Output::command("CREATE MATERIALIZED VIEW"))
}

/// `EXPLAIN CREATE OR REPLACE MATERIALIZED VIEW`: the new plan, then what
/// happens to each stateful operator's state.
pub async fn explain_replace(
    registry: &Registry,
    create: CreateMaterializedView,
) -> Result<Output> {
    if !registry.is_view(&create.name) {
        let mut create = create;
        strategy(&mut create.settings)?;
        return super::materialized_views::explain_materialized_view(registry, create).await;
    }
    let upgrade = plan_upgrade(registry, create).await?;
    let mut lines: Vec<String> = upgrade.new.explain.lines().map(str::to_string).collect();
    let refusal = upgrade.refusal();
    lines.push(format!(
        "Upgrade: upgrade_strategy={} {}",
        upgrade.strategy.name(),
        match (upgrade.strategy, &refusal) {
            (UpgradeStrategy::Stateless, _) =>
                "(state cleared, the new version reads its inputs from the beginning)",
            (UpgradeStrategy::Stateful, None) => "(compatible: the state is kept)",
            (UpgradeStrategy::Stateful, Some(_)) => "(refused: the state cannot be kept)",
        }
    ));
    for (operator, state) in &upgrade.matching.operators {
        lines.push(match state {
            OperatorState::Kept { from } => format!("  {operator}: state: kept (from {from})"),
            OperatorState::New { reason } => format!("  {operator}: state: new ({reason})"),
        });
    }
    for (operator, reason) in &upgrade.matching.dropped {
        lines.push(format!("  {operator} (old): state: dropped ({reason})"));
    }
    lines.push(match &upgrade.rows {
        Ok(_) => "  StreamMaterialize: rows: recomputed from the old version's rows".into(),
        Err(reason) => format!("  StreamMaterialize: rows: new ({reason})"),
    });
    Ok(Output::Rows(super::show::text_stream(
        super::explain::schema(),
        vec![lines],
    )?))
}

/// The `upgrade_strategy` among `settings`, taken out of them (the rest
/// are job settings): `stateful` when not given.
fn strategy(settings: &mut Vec<(String, String)>) -> Result<UpgradeStrategy> {
    let mut chosen = UpgradeStrategy::Stateful;
    let mut bad = None;
    settings.retain(|(key, value)| {
        if key != UpgradeStrategy::OPTION {
            return true;
        }
        match UpgradeStrategy::parse(value) {
            Some(s) => chosen = s,
            None => bad = Some(value.clone()),
        }
        false
    });
    match bad {
        Some(value) => Err(ServerError::InvalidParameterValue {
            message: format!("invalid value for option \"upgrade_strategy\": \"{value}\""),
            hint: Some("upgrade_strategy is 'stateful' or 'stateless'".into()),
        }),
        None => Ok(chosen),
    }
}

/// Plan the old version (from the catalog) and the new one, and match them.
async fn plan_upgrade(registry: &Registry, mut create: CreateMaterializedView) -> Result<Upgrade> {
    let strategy = strategy(&mut create.settings)?;
    let Some(CatalogEntry::MaterializedView(def)) = registry.catalog().get(&create.name).cloned()
    else {
        return Err(ServerError::UndefinedTable {
            kind: "relation",
            name: create.name,
            position: None,
        });
    };
    let spec = new_job_spec(&create)?;
    let resolved = registry.jobs().resolve(&spec.settings);
    let new = plan_view(registry, &create, &resolved).await?;
    let old_resolved = registry.jobs().resolve(&def.job.settings);
    let old = plan_view(registry, &definition(&def)?, &old_resolved).await?;
    let matching = match_operators(&old.plan.state, &new.plan.state);
    let rows = recoverable(&old.plan);
    Ok(Upgrade {
        def,
        strategy,
        spec,
        interval: resolved.checkpoint_interval,
        old,
        new,
        matching,
        rows,
    })
}

/// The error of a refused stateful upgrade (55000: the old job is not in a
/// state the new version can take over; nothing was touched).
fn refused(name: &str, operator: &str, reason: &str) -> ServerError {
    ServerError::ObjectNotInPrerequisiteState {
        message: format!(
            "cannot upgrade materialized view \"{name}\" keeping its state: {operator}: {reason}"
        ),
        hint: Some(
            "the old version goes on unchanged; to start the new version from the beginning of its inputs, add WITH (upgrade_strategy = 'stateless')"
                .into(),
        ),
    }
}

/// The operators above the last stateful one, which made the view's rows
/// from its output, and that output's columns.
fn above(plan: &StreamPlan) -> Option<(Vec<StatelessOp>, SchemaRef)> {
    let stage = plan.last_stage()?;
    match &stage.operator {
        // A TopN's rows are not recoverable from the view's (it keeps rows
        // the view no longer shows).
        StageOperator::TopN(_) => None,
        operator => Some((stage.after.clone(), operator.output_schema())),
    }
}

/// Where each column of the stateful output is in the old version's rows,
/// when its operators above kept every column and dropped no row.
fn recoverable(old: &StreamPlan) -> std::result::Result<Vec<usize>, String> {
    let Some((ops, output)) = above(old) else {
        return Err("the old version keeps no state its rows could be recomputed from".into());
    };
    // Column i of the stateful output is at position[i] after each step.
    let mut position: Vec<Option<usize>> = (0..output.fields().len()).map(Some).collect();
    for op in &ops {
        match op {
            StatelessOp::Project { exprs, .. } => {
                for p in &mut position {
                    *p = p.and_then(|from| {
                        exprs.iter().position(|e| {
                            e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                                .is_some_and(|c| c.index() == from)
                        })
                    });
                }
            }
            StatelessOp::Filter(_) | StatelessOp::Unnest { .. } => {
                return Err("the old version's rows cannot be recomputed: a filter (or unnest) above its stateful operator left some out".into());
            }
        }
    }
    position
        .iter()
        .zip(output.fields())
        .map(|(p, field)| {
            p.ok_or_else(|| {
                format!(
                    "the old version's rows cannot be recomputed: they do not keep the column \"{}\"",
                    field.name()
                )
            })
        })
        .collect()
}

/// The old job's latest checkpoint, read back: the switch point.
async fn switch_point(registry: &Registry, upgrade: &Upgrade) -> Result<Restored> {
    let name = &upgrade.def.name;
    let Some(checkpoints) = registry.checkpoint_store(upgrade.interval) else {
        return Err(ServerError::ObjectNotInPrerequisiteState {
            message: format!(
                "cannot upgrade materialized view \"{name}\" keeping its state: checkpoints are off"
            ),
            hint: Some("turn checkpoints on, or add WITH (upgrade_strategy = 'stateless')".into()),
        });
    };
    let store = checkpoints.job(name);
    let io = |e: datafusion::error::DataFusionError| ServerError::Io {
        message: format!("the checkpoints of \"{name}\": {e}"),
    };
    let old = ManifestPlan::of(&upgrade.def.query, &upgrade.old.plan);
    match store.latest().await.map_err(io)? {
        Some(manifest) if manifest.plan.restores_into(&old) => {
            store.load(manifest).await.map_err(io)
        }
        _ => Err(ServerError::internal(format!(
            "the old version of \"{name}\" stopped without a checkpoint of its plan"
        ))),
    }
}

/// Start the new version: from the switch point (its view holding the old
/// rows recomputed) or, stateless, from the beginning; then checkpoint it,
/// so that a restart after the catalog names it restores its own state.
async fn start_new(
    registry: &Registry,
    name: &str,
    create: &CreateMaterializedView,
    upgrade: &Upgrade,
    switch: Option<Restored>,
) -> Result<(LiveView, Arc<dyn datafusion::catalog::TableProvider>)> {
    let plan = upgrade.new.plan.clone();
    let query = create.query.to_string();
    let checkpoints = registry.checkpoint_store(upgrade.interval);
    let datafusion_error = |e| ServerError::from_datafusion(e, None);
    let view = MaterializedView::new(plan.output_schema.clone(), plan.changelog, plan.event_time)
        .map_err(datafusion_error)?;
    let restored = match switch {
        Some(mut restored) => {
            let rows = old_rows(&restored, &upgrade.old.plan)?;
            let positions = upgrade.rows.clone().map_err(ServerError::internal)?;
            for batch in recompute(&rows, &positions, &upgrade.old.plan, &plan)? {
                view.apply(batch).map_err(datafusion_error)?;
            }
            // The view's part is what was just recomputed; its watermark
            // was the old query's (and its marks the old rows').
            for part in [VIEW_STATE, VIEW_WATERMARKS] {
                restored.sinks.remove(part);
                restored.manifest.sinks.remove(part);
            }
            Some(restored)
        }
        None => {
            if let Some(checkpoints) = &checkpoints {
                let io = |e: datafusion::error::DataFusionError| ServerError::Io {
                    message: format!("the checkpoints of \"{name}\": {e}"),
                };
                checkpoints.job(name).delete_all().await.map_err(io)?;
            }
            None
        }
    };
    let output = ViewSink::new(view.clone());
    // The view's sinks go on writing its changes from the switch point on
    // (from their part of it); without them here they would miss every
    // change until the next restart.
    super::materialized_views::attach_sinks(registry, name, &view, &output)?;
    let checkpointing = Checkpointing {
        store: checkpoints.as_ref().map(|c| c.job(name)),
        restored,
        plan: ManifestPlan::of(&query, &plan),
        metrics: registry.runtime_metrics().checkpoints.clone(),
        state_limit: registry
            .jobs()
            .resolve(&upgrade.spec.settings)
            .state_size_limit,
    };
    let partitions = plan.partitions().len();
    // A panic while starting (a bug, or a failpoint in a test) is the new
    // version failing to start, not the server's end.
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| {
        weir_runtime::job::start(
            name,
            plan,
            output.clone(),
            registry.executor(),
            registry.runtime_metrics(),
            checkpointing,
        )
    }));
    let handle = match started {
        Ok(handle) => handle.map_err(datafusion_error)?,
        Err(_) => {
            return Err(ServerError::internal(
                "the new version's job panicked while starting",
            ));
        }
    };
    if let Err(failure) = handle.flush().await {
        handle.stop();
        return Err(ServerError::job_failed(name, &failure));
    }
    let table = Arc::new(ViewTable::of_job(view.clone(), name, handle.watch()));
    Ok((
        LiveView {
            view,
            output,
            job: handle,
            explain: upgrade.new.explain.clone(),
            inputs: upgrade.new.inputs.clone(),
            partitions,
        },
        table,
    ))
}

/// The old version's rows at the switch point, from its checkpoint.
fn old_rows(restored: &Restored, old: &StreamPlan) -> Result<Vec<RecordBatch>> {
    let datafusion_error = |e| ServerError::from_datafusion(e, None);
    // Only read here: no job, no watermark.
    let view = MaterializedView::new(old.output_schema.clone(), old.changelog, None)
        .map_err(datafusion_error)?;
    let only_view: BTreeMap<String, Vec<(String, RecordBatch)>> = restored
        .sinks
        .get(VIEW_STATE)
        .map(|chunks| BTreeMap::from([(VIEW_STATE.to_string(), chunks.clone())]))
        .unwrap_or_default();
    view.restore(&only_view, &BTreeMap::new())
        .map_err(datafusion_error)?;
    view.snapshot().map_err(datafusion_error)
}

/// The new version's rows for the old version's `rows`: each row's
/// stateful output (its columns at `positions`), through the new
/// operators above the stateful one. A changelog view takes them as
/// inserts.
fn recompute(
    rows: &[RecordBatch],
    positions: &[usize],
    old: &StreamPlan,
    new: &StreamPlan,
) -> Result<Vec<RecordBatch>> {
    let datafusion_error = |e| ServerError::from_datafusion(e, None);
    let (Some((_, output)), Some((ops, _))) = (above(old), above(new)) else {
        return Err(ServerError::internal(
            "an upgrade without a stateful operator",
        ));
    };
    let mut out = Vec::new();
    for batch in rows {
        if batch.num_rows() == 0 {
            continue;
        }
        let columns = positions.iter().map(|&p| batch.column(p).clone()).collect();
        let stateful = RecordBatch::try_new(output.clone(), columns)
            .map_err(|e| datafusion_error(e.into()))?;
        let made = if new.changelog {
            let inserts = Arc::new(Int8Array::from(vec![1i8; stateful.num_rows()]));
            let mut columns = stateful.columns().to_vec();
            columns.push(inserts);
            let with_ops = RecordBatch::try_new(
                weir_runtime::operators::changes::changelog_schema(&output),
                columns,
            )
            .map_err(|e| datafusion_error(e.into()))?;
            stateless::apply_changelog(&ops, with_ops).map_err(datafusion_error)?
        } else {
            stateless::apply(&ops, stateful).map_err(datafusion_error)?
        };
        out.extend(made);
    }
    Ok(out)
}

/// The new version did not start: the old one restarts from its latest
/// checkpoint (the switch point), over its own view.
async fn resume_old(registry: &Registry, upgrade: &Upgrade) -> Result<()> {
    let name = &upgrade.def.name;
    let old_settings = registry.jobs().resolve(&upgrade.def.job.settings);
    let planned = plan_view(registry, &definition(&upgrade.def)?, &old_settings).await?;
    let run = start_run(
        registry,
        name,
        &upgrade.def.query,
        planned,
        RunStart {
            restore: true,
            sinks: true,
        },
        old_settings.checkpoint_interval,
    )
    .await?;
    let progress = run.live.job.watch();
    registry.replace_view(name, run.table, run.live)?;
    let job = registry.jobs().job(name)?;
    registry
        .jobs()
        .supervise(&job, progress, restarter(registry, name)?);
    Ok(())
}
