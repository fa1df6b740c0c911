//! The job statements: `SHOW JOBS`, `SHOW JOB EVENTS j` and `ALTER JOB j
//! SET (...) | RESTART | SUSPEND | RESUME`; savepoints are in
//! [`super::savepoints`].
//!
//! Every materialized view is a job (`crate::jobs`); a sink runs inside the
//! job of the view it writes out, so it is listed as a job of kind `sink`
//! with that job's status, and `ALTER JOB` on it points at that job. The
//! columns of `SHOW JOBS` are the contract the REST API builds on: change
//! them only together with it.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use weir_planner::catalog::{CatalogEntry, DesiredState};
use weir_planner::parser::{JobAction, JobStatement};
use weir_runtime::metrics::JobLabels;

use weir_runtime::checkpoint::SavepointOrigin;

use crate::error::{Result, ServerError};
use crate::jobs::{Command, Job, JobStatus, RestoreFrom, settings, unknown_job};
use crate::output::Output;
use crate::registry::Registry;

/// Run a job statement.
pub async fn execute(registry: &Registry, statement: JobStatement) -> Result<Output> {
    match statement {
        JobStatement::ShowJobs => show_jobs(registry).await,
        JobStatement::ShowEvents { job } => show_events(registry, &job),
        JobStatement::Alter { job, action } => alter(registry, &job, action).await,
        JobStatement::CreateSavepoint { name, job } => {
            super::savepoints::create(registry, &name, &job).await
        }
        JobStatement::ShowSavepoints { job } => {
            super::savepoints::show(registry, job.as_deref()).await
        }
        JobStatement::DropSavepoint { name, if_exists } => {
            super::savepoints::drop(registry, &name, if_exists).await
        }
    }
}

/// The columns a job statement returns (`None`: a command).
pub fn schema(statement: &JobStatement) -> Option<SchemaRef> {
    match statement {
        JobStatement::ShowJobs => Some(jobs_schema()),
        JobStatement::ShowEvents { .. } => Some(events_schema()),
        JobStatement::ShowSavepoints { .. } => Some(super::savepoints::schema()),
        JobStatement::Alter { .. }
        | JobStatement::CreateSavepoint { .. }
        | JobStatement::DropSavepoint { .. } => None,
    }
}

fn timestamptz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The columns of `SHOW JOBS`.
pub fn jobs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("desired_state", DataType::Utf8, false),
        Field::new("started_at", timestamptz(), true),
        Field::new("last_checkpoint_epoch", DataType::Int64, true),
        Field::new("last_checkpoint_at", timestamptz(), true),
        Field::new("rows_in", DataType::Int64, true),
        Field::new("rows_out", DataType::Int64, true),
        Field::new(
            "watermark",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("restarts", DataType::Int64, false),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("progress", DataType::Utf8, true),
    ]))
}

/// The columns of `SHOW JOB EVENTS`.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("at", timestamptz(), false),
        Field::new("from_status", DataType::Utf8, true),
        Field::new("to_status", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
    ]))
}

/// One `SHOW JOBS` row.
#[derive(Default)]
struct JobRow {
    name: String,
    kind: &'static str,
    status: String,
    desired: String,
    started_at_us: Option<i64>,
    epoch: Option<i64>,
    checkpoint_at_us: Option<i64>,
    rows_in: Option<i64>,
    rows_out: Option<i64>,
    watermark: Option<i64>,
    restarts: i64,
    last_error: Option<String>,
    progress: Option<String>,
}

fn micros(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX).saturating_mul(1000)
}

/// The row of the job of view `name`.
async fn view_row(registry: &Registry, name: &str) -> JobRow {
    let labels = JobLabels {
        job: name.to_string(),
    };
    let metrics = registry.runtime_metrics();
    let count = |n: u64| Some(i64::try_from(n).unwrap_or(i64::MAX));
    let mut row = JobRow {
        name: name.to_string(),
        kind: "view",
        rows_in: count(metrics.rows_in.get_or_create(&labels).get()),
        rows_out: count(metrics.rows_out.get_or_create(&labels).get()),
        ..Default::default()
    };
    match registry.jobs().get(name) {
        Some(job) => {
            let snapshot = job.snapshot();
            row.status = snapshot.status.name().to_string();
            row.desired = snapshot.desired.name().to_string();
            row.started_at_us = snapshot.started_at_ms.map(micros);
            row.restarts = i64::try_from(snapshot.restarts).unwrap_or(i64::MAX);
            row.last_error = snapshot
                .last_error
                .filter(|_| matches!(snapshot.status, JobStatus::Failed | JobStatus::Restarting));
        }
        None => {
            row.status = JobStatus::Failed.name().to_string();
            row.desired = "running".to_string();
            row.last_error = Some("the job is not running".to_string());
        }
    }
    if let Some((epoch, at_ms)) = registry.latest_checkpoint(name).await {
        row.epoch = i64::try_from(epoch).ok();
        row.checkpoint_at_us = Some(micros(at_ms));
    }
    if let Ok(live) = registry.view(name) {
        let p = live.job.progress();
        // The job's event-time watermark: the minimum over its sources
        // still reading (nanoseconds); none before every source sent one,
        // none for a job without event time, and none once every source
        // ended (the runtime's `i64::MAX`).
        row.watermark = p
            .watermark
            .filter(|ns| *ns != i64::MAX && *ns != i64::MIN)
            .map(|ns| ns.div_euclid(1000));
        if live.job.is_bounded() {
            // The running job's own count: a restore reads the partitions
            // its checkpoint recorded, which a listing of the files now may
            // deal differently (a file removed since).
            let partitions = if p.partitions > 0 {
                p.partitions
            } else {
                live.partitions
            };
            row.progress = Some(progress_text(&p, partitions));
        }
    }
    row
}

/// A bounded job's `progress`: rows read in this run (or, for Parquet, the
/// rows read of the files' total), the bytes and files of its CSV and JSON
/// sources read of their total, and its source partitions ended, e.g.
/// `1200 rows, 1.2/4.0 MB, 1/2 files, 1/2 partitions ended` or
/// `30000/50000 rows, 1/2 partitions ended`.
fn progress_text(p: &weir_runtime::job::Progress, partitions: usize) -> String {
    let mut parts = Vec::new();
    match p.read {
        // Parquet: the rows its partitions are past, of what the footers
        // hold (a resumed run's skipped rows count, so it reaches the total).
        Some(read) if read.rows_total > 0 => parts.push(format!(
            "{}/{} rows",
            read.rows_read.min(read.rows_total),
            read.rows_total
        )),
        _ => parts.push(format!("{} rows", p.rows_read)),
    }
    if let Some(read) = p.read.filter(|r| r.files_total > 0) {
        parts.push(megabytes(read.bytes_read, read.bytes_total));
        parts.push(format!(
            "{}/{} files",
            read.files_read.min(read.files_total),
            read.files_total
        ));
    }
    parts.push(format!(
        "{}/{partitions} partitions ended",
        p.sources_ended.min(partitions)
    ));
    parts.join(", ")
}

/// `read/total MB`, with a decimal (MB as 10^6 bytes, as file sizes are
/// usually shown), or in kB when the total is under a megabyte.
fn megabytes(read: u64, total: u64) -> String {
    let read = read.min(total) as f64;
    let total = total as f64;
    if total < 1e6 {
        format!("{:.1}/{:.1} kB", read / 1e3, total / 1e3)
    } else {
        format!("{:.1}/{:.1} MB", read / 1e6, total / 1e6)
    }
}

/// `SHOW JOBS`: every view's job and every sink, by name.
async fn show_jobs(registry: &Registry) -> Result<Output> {
    let catalog = registry.catalog();
    let mut rows = Vec::new();
    for entry in &catalog.entries {
        match entry {
            CatalogEntry::MaterializedView(def) => rows.push(view_row(registry, &def.name).await),
            CatalogEntry::Sink(def) => {
                // The sink's job is its view's: what reaches the view's
                // output is what the sink takes in.
                let view = view_row(registry, &def.from).await;
                rows.push(JobRow {
                    name: def.name.clone(),
                    kind: "sink",
                    rows_in: view.rows_out,
                    rows_out: None,
                    ..view
                });
            }
            CatalogEntry::Table(_) | CatalogEntry::View(_) | CatalogEntry::Stream(_) => {}
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let text = |f: fn(&JobRow) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let int = |f: fn(&JobRow) -> Option<i64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int64Array>())
    };
    let time = |f: fn(&JobRow) -> Option<i64>, tz: bool| -> ArrayRef {
        let array = rows.iter().map(f).collect::<TimestampMicrosecondArray>();
        Arc::new(if tz {
            array.with_timezone("UTC")
        } else {
            array
        })
    };
    let columns = vec![
        text(|r| Some(r.name.clone())),
        text(|r| Some(r.kind.to_string())),
        text(|r| Some(r.status.clone())),
        text(|r| Some(r.desired.clone())),
        time(|r| r.started_at_us, true),
        int(|r| r.epoch),
        time(|r| r.checkpoint_at_us, true),
        int(|r| r.rows_in),
        int(|r| r.rows_out),
        time(|r| r.watermark, false),
        int(|r| Some(r.restarts)),
        text(|r| r.last_error.clone()),
        text(|r| r.progress.clone()),
    ];
    batch_output(jobs_schema(), columns)
}

fn batch_output(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<Output> {
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| ServerError::internal(e.to_string()))?;
    let stream: SendableRecordBatchStream = Box::pin(
        MemoryStream::try_new(vec![batch], schema, None)
            .map_err(|e| ServerError::from_datafusion(e, None))?,
    );
    Ok(Output::Rows(stream))
}

/// The job that runs `name`: a view's own, or a sink's view's; and the
/// view's name when `name` is a sink.
fn job_of(registry: &Registry, name: &str) -> Result<(Arc<Job>, Option<String>)> {
    match registry.catalog().get(name) {
        Some(CatalogEntry::Sink(def)) => {
            Ok((registry.jobs().job(&def.from)?, Some(def.from.clone())))
        }
        Some(CatalogEntry::MaterializedView(_)) => Ok((registry.jobs().job(name)?, None)),
        _ => Err(unknown_job(name)),
    }
}

/// `SHOW JOB EVENTS name`, oldest first (a sink's are its view's job's).
fn show_events(registry: &Registry, name: &str) -> Result<Output> {
    let (job, _) = job_of(registry, name)?;
    let events = job.events()?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            events
                .iter()
                .map(|e| i64::try_from(e.seq).unwrap_or(i64::MAX))
                .collect::<Int64Array>(),
        ),
        Arc::new(
            events
                .iter()
                .map(|e| Some(micros(e.at_ms)))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
        Arc::new(
            events
                .iter()
                .map(|e| e.from.map(|s| s.name()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            events
                .iter()
                .map(|e| Some(e.to.name()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            events
                .iter()
                .map(|e| Some(e.reason.as_str()))
                .collect::<StringArray>(),
        ),
    ];
    batch_output(events_schema(), columns)
}

fn not_now(name: &str, status: JobStatus, hint: &str) -> ServerError {
    ServerError::ObjectNotInPrerequisiteState {
        message: format!("job \"{name}\" is {status}"),
        hint: Some(hint.to_string()),
    }
}

/// `ALTER JOB name ...`.
async fn alter(registry: &Registry, name: &str, action: JobAction) -> Result<Output> {
    let (job, view) = job_of(registry, name)?;
    if let Some(view) = view {
        return Err(ServerError::FeatureNotSupported {
            message: format!("sink \"{name}\" runs inside the job of materialized view \"{view}\""),
            hint: Some(format!("alter that job: ALTER JOB {view} ...")),
        });
    }
    let status = job.status();
    match action {
        JobAction::Set(pairs) => set(registry, &job, pairs).await?,
        JobAction::Restart => {
            if matches!(status, JobStatus::Suspending | JobStatus::Suspended) {
                return Err(not_now(
                    name,
                    status,
                    "a suspended job starts again with ALTER JOB ... RESUME",
                ));
            }
            restart(
                &job,
                "restart asked for (ALTER JOB RESTART)".to_string(),
                RestoreFrom::Strategy,
            )
            .await?;
        }
        JobAction::Suspend => {
            if !matches!(status, JobStatus::Running) {
                return Err(not_now(name, status, "only a running job can be suspended"));
            }
            set_desired(registry, &job, DesiredState::Suspended).await?;
            suspend_now(
                registry,
                name,
                "suspend asked for (ALTER JOB SUSPEND)",
                true,
            )
            .await?;
        }
        JobAction::Resume { savepoint } => {
            if status != JobStatus::Suspended {
                return Err(not_now(name, status, "only a suspended job can be resumed"));
            }
            // The job's folder starts at the savepoint first: the resumed
            // run restores its latest checkpoint, which is then that one.
            let reason = match &savepoint {
                Some(sp) => {
                    let info = super::savepoints::adopt(registry, sp, name).await?;
                    format!(
                        "resume from savepoint \"{sp}\" (epoch {}) asked for (ALTER JOB RESUME FROM SAVEPOINT)",
                        info.epoch
                    )
                }
                None => "resume asked for (ALTER JOB RESUME)".to_string(),
            };
            set_desired(registry, &job, DesiredState::Running).await?;
            // A savepoint named is the job's latest state now; otherwise
            // the job's restore strategy says where it resumes.
            let from = match savepoint {
                Some(_) => RestoreFrom::LatestState,
                None => RestoreFrom::Strategy,
            };
            let (reply, outcome) = tokio::sync::oneshot::channel();
            if !job.command(Command::Restart {
                reason,
                resume: true,
                from,
                reply: Some(reply),
            }) {
                return Err(ServerError::internal(format!(
                    "job \"{name}\" has no supervisor"
                )));
            }
            outcome.await.map_err(|_| ServerError::ShuttingDown)??;
        }
    }
    Ok(Output::command("ALTER JOB"))
}

/// Write job `job`'s desired state to the catalog, then take it.
async fn set_desired(registry: &Registry, job: &Job, desired: DesiredState) -> Result<()> {
    let _ddl = registry.ddl_guard().await;
    registry.persist(|catalog| {
        let Some(CatalogEntry::MaterializedView(mut def)) = catalog.get(job.name()).cloned() else {
            return Err(unknown_job(job.name()));
        };
        def.job.desired_state = desired;
        catalog.upsert(CatalogEntry::MaterializedView(def));
        Ok(())
    })?;
    job.set_desired(desired);
    Ok(())
}

/// Suspend view `name`'s running job with a savepoint (Flink's
/// stop-with-savepoint): every source stops at a checkpoint's barrier,
/// without an end of input (no window closes), the checkpoint completes and
/// its sinks commit, every task ends, and the checkpoint is copied into a
/// savepoint of origin `suspend`. The view keeps its contents as of the
/// barrier; a resume restores that checkpoint, so the output equals a run
/// that never stopped.
///
/// `checkpoint` false (on start, for a job whose desired state is
/// suspended): no new checkpoint; the job is stopped at once after its
/// restore, and resumes later from the checkpoint it restored.
pub(crate) async fn suspend_now(
    registry: &Registry,
    name: &str,
    reason: &str,
    checkpoint: bool,
) -> Result<()> {
    let job = registry.jobs().job(name)?;
    let live = registry.view(name)?;
    if !registry.checkpoints_on() {
        return Err(ServerError::ObjectNotInPrerequisiteState {
            message: format!("job \"{name}\" cannot be suspended: checkpoints are off"),
            hint: Some("a suspended job resumes from a checkpoint: start the server with a checkpoint interval".to_string()),
        });
    }
    job.transition(JobStatus::Suspending, reason);
    if !checkpoint {
        super::materialized_views::stop_and_wait(&live.job).await;
        let at = match registry.latest_checkpoint(name).await {
            Some((epoch, _)) => format!("at checkpoint {epoch}"),
            None => "before its first checkpoint".to_string(),
        };
        job.transition(JobStatus::Suspended, &format!("suspended {at}"));
        return Ok(());
    }
    let outcome = async {
        let manifest = live
            .job
            .stop_with_savepoint()
            .await
            .map_err(|f| ServerError::job_failed(name, &f))?;
        let savepoint = super::savepoints::automatic_name(
            name,
            SavepointOrigin::Suspend.as_str(),
            manifest.epoch,
        );
        super::savepoints::save(
            registry,
            &savepoint,
            name,
            &manifest,
            SavepointOrigin::Suspend,
        )
        .await?;
        Ok::<_, ServerError>((manifest.epoch, savepoint))
    }
    .await;
    match outcome {
        Ok((epoch, savepoint)) => {
            job.transition(
                JobStatus::Suspended,
                &format!("suspended at checkpoint {epoch} (savepoint \"{savepoint}\")"),
            );
            Ok(())
        }
        Err(err) => {
            job.transition(JobStatus::Running, &format!("the suspend failed: {err}"));
            Err(err)
        }
    }
}

/// `ALTER JOB name SET (...)`: checked, written to the catalog, taken; a
/// new parallelism, checkpoint interval or state size limit restarts a
/// running job from its latest state (the runtime takes them at start).
async fn set(registry: &Registry, job: &Arc<Job>, pairs: Vec<(String, String)>) -> Result<()> {
    let changes = settings::check_all(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    if let Some(key) = changes
        .keys()
        .find(|k| settings::VIEW_ONLY.contains(&k.as_str()))
    {
        return Err(ServerError::FeatureNotSupported {
            message: format!(
                "ALTER JOB .. SET ({key} = ..): it changes what the view's state means"
            ),
            hint: Some(format!(
                "give it with the view's query: CREATE OR REPLACE MATERIALIZED VIEW {} WITH ({key} = ..) AS ..",
                job.name()
            )),
        });
    }
    {
        let _ddl = registry.ddl_guard().await;
        let mut merged = job.spec().settings;
        merged.extend(changes.clone());
        registry.persist(|catalog| {
            let Some(CatalogEntry::MaterializedView(def)) = catalog.get(job.name()).cloned() else {
                return Err(unknown_job(job.name()));
            };
            let mut def = def;
            def.job.settings = merged.clone();
            catalog.upsert(CatalogEntry::MaterializedView(def));
            Ok(())
        })?;
        let said: Vec<String> = changes.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        job.set_settings(merged, &format!("settings changed: {}", said.join(", ")));
    }
    let reshaping: Vec<&String> = changes
        .keys()
        .filter(|k| {
            matches!(
                k.as_str(),
                "parallelism" | "checkpoint_interval" | "state_size_limit"
            )
        })
        .collect();
    if !reshaping.is_empty() && matches!(job.status(), JobStatus::Running | JobStatus::Restarting) {
        let said: Vec<String> = reshaping
            .iter()
            .map(|k| format!("{k} changed to {}", changes[*k]))
            .collect();
        restart(job, said.join(", "), RestoreFrom::LatestState).await?;
    }
    Ok(())
}

/// Restart `job` through its supervisor from `from` and wait until the new
/// run started.
async fn restart(job: &Job, reason: String, from: RestoreFrom) -> Result<()> {
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if !job.command(Command::Restart {
        reason,
        resume: false,
        from,
        reply: Some(reply),
    }) {
        return Err(ServerError::internal(format!(
            "job \"{}\" has no supervisor",
            job.name()
        )));
    }
    outcome.await.map_err(|_| ServerError::ShuttingDown)?
}

/// Job settings given to `CREATE SINK`: refused, since a sink runs in its
/// view's job (its connector options are checked by the connector).
pub fn refuse_sink_settings(view: &str, options: &[(String, String)]) -> Result<()> {
    match options.iter().find(|(k, _)| settings::is_job_setting(k)) {
        Some((key, _)) => Err(ServerError::FeatureNotSupported {
            message: format!(
                "job setting \"{key}\" on a sink: a sink runs inside the job of materialized view \"{view}\""
            ),
            hint: Some(format!(
                "set it on that job: ALTER JOB {view} SET ({key} = ...)"
            )),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_take_no_job_settings() {
        let options = vec![
            ("connector".to_string(), "file".to_string()),
            ("restart_strategy".to_string(), "none".to_string()),
        ];
        let err = refuse_sink_settings("v", &options).expect_err("refused");
        assert_eq!(err.sqlstate(), "0A000");
        assert!(err.to_string().contains("restart_strategy"), "{err}");
        assert!(refuse_sink_settings("v", &options[..1]).is_ok());
    }

    #[test]
    fn progress_says_rows_bytes_files_and_partitions() {
        let mut p = weir_runtime::job::Progress {
            rows_read: 1200,
            sources_ended: 1,
            ..Default::default()
        };
        assert_eq!(progress_text(&p, 2), "1200 rows, 1/2 partitions ended");
        p.read = Some(weir_runtime::source::ReadProgress {
            bytes_read: 1_200_000,
            bytes_total: 4_000_000,
            files_read: 1,
            files_total: 2,
            ..Default::default()
        });
        assert_eq!(
            progress_text(&p, 2),
            "1200 rows, 1.2/4.0 MB, 1/2 files, 1/2 partitions ended"
        );
        p.read = Some(weir_runtime::source::ReadProgress {
            bytes_read: 2_500,
            bytes_total: 5_000,
            files_read: 0,
            files_total: 1,
            ..Default::default()
        });
        assert_eq!(
            progress_text(&p, 2),
            "1200 rows, 2.5/5.0 kB, 0/1 files, 1/2 partitions ended"
        );
        // Parquet: rows of the footers' total, no bytes or files.
        p.read = Some(weir_runtime::source::ReadProgress {
            rows_read: 30_000,
            rows_total: 50_000,
            ..Default::default()
        });
        assert_eq!(
            progress_text(&p, 2),
            "30000/50000 rows, 1/2 partitions ended"
        );
    }

    #[test]
    fn show_jobs_has_the_contract_columns() {
        let names: Vec<String> = jobs_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            [
                "name",
                "kind",
                "status",
                "desired_state",
                "started_at",
                "last_checkpoint_epoch",
                "last_checkpoint_at",
                "rows_in",
                "rows_out",
                "watermark",
                "restarts",
                "last_error",
                "progress"
            ]
        );
    }
}
