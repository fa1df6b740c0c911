//! Savepoints: `CREATE SAVEPOINT sp FOR JOB j`, `SHOW SAVEPOINTS [FOR JOB
//! j]`, `DROP SAVEPOINT [IF EXISTS] sp` (design note 0008).
//!
//! A savepoint is a checkpoint copied whole into the checkpoint store's
//! `savepoints/<name>/` (the runtime's `checkpoint::savepoint`), so that it
//! outlives checkpoint retention and its job: a user's (`CREATE
//! SAVEPOINT`), a suspend's (`ALTER JOB SUSPEND`), an upgrade's. `ALTER JOB
//! j RESUME FROM SAVEPOINT sp` makes the job's own folder start there
//! ([`adopt`]) and resumes from it.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use weir_runtime::checkpoint::{CheckpointStore, SavepointInfo, SavepointOrigin};

use crate::error::{Result, ServerError};
use crate::jobs::{JobStatus, unknown_job};
use crate::output::{Notice, Output};
use crate::registry::Registry;

/// The checkpoint store savepoints live in; without one there are none.
fn store(registry: &Registry) -> Result<CheckpointStore> {
    registry
        .checkpoint_store(None)
        .ok_or_else(|| ServerError::ObjectNotInPrerequisiteState {
            message: "savepoints need checkpoints, and checkpoints are off".to_string(),
            hint: Some(
                "start the server with a checkpoint interval (checkpoint_interval)".to_string(),
            ),
        })
}

fn store_error(what: &str, err: datafusion::error::DataFusionError) -> ServerError {
    ServerError::Io {
        message: format!("{what}: {err}"),
    }
}

/// Copy job `job`'s checkpoint `manifest` into savepoint `name`.
pub(crate) async fn save(
    registry: &Registry,
    name: &str,
    job: &str,
    manifest: &weir_runtime::checkpoint::Manifest,
    origin: SavepointOrigin,
) -> Result<SavepointInfo> {
    store(registry)?
        .create_savepoint(name, job, manifest, origin)
        .await
        .map_err(|e| store_error(&format!("savepoint \"{name}\" of job \"{job}\""), e))
}

/// A name for a savepoint Weir takes itself (a suspend's, an upgrade's):
/// `<job>_<origin>_<epoch>`, unique per job and epoch.
pub(crate) fn automatic_name(job: &str, origin: &str, epoch: u64) -> String {
    format!("{job}_{origin}_{epoch}")
}

/// Make job `job`'s checkpoint folder start at savepoint `name`, so that
/// its next run restores it. Refused (55000) when the savepoint is of a
/// plan whose state the job's current plan cannot take.
pub(crate) async fn adopt(registry: &Registry, name: &str, job: &str) -> Result<SavepointInfo> {
    let store = store(registry)?;
    let Some(info) = store
        .savepoint(name)
        .await
        .map_err(|e| store_error(&format!("savepoint \"{name}\""), e))?
    else {
        return Err(unknown_savepoint(name));
    };
    let restored = store
        .load_savepoint(name)
        .await
        .map_err(|e| store_error(&format!("savepoint \"{name}\""), e))?;
    let own = store.job(job);
    if let Some(latest) = own
        .latest()
        .await
        .map_err(|e| store_error(&format!("the checkpoints of \"{job}\""), e))?
        && !restored.manifest.plan.restores_into(&latest.plan)
    {
        return Err(ServerError::ObjectNotInPrerequisiteState {
            message: format!(
                "savepoint \"{name}\" (of job \"{}\") holds the state of another query than job \"{job}\" runs",
                info.job
            ),
            hint: Some("resume from a savepoint of this query, or replace the view with upgrade_strategy = 'stateless'".to_string()),
        });
    }
    own.adopt(&info, &restored.manifest)
        .await
        .map_err(|e| store_error(&format!("savepoint \"{name}\" into job \"{job}\""), e))?;
    Ok(info)
}

/// The columns of `SHOW SAVEPOINTS`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("job", DataType::Utf8, false),
        Field::new("epoch", DataType::Int64, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("size_bytes", DataType::Int64, false),
        Field::new("origin", DataType::Utf8, false),
    ]))
}

/// `CREATE SAVEPOINT sp FOR JOB j`: a checkpoint now, copied.
pub async fn create(registry: &Registry, name: &str, job: &str) -> Result<Output> {
    let handle = registry.jobs().job(job)?;
    let store = store(registry)?;
    if store
        .savepoint(name)
        .await
        .map_err(|e| store_error(&format!("savepoint \"{name}\""), e))?
        .is_some()
    {
        return Err(ServerError::DuplicateObject {
            message: format!("savepoint \"{name}\" already exists"),
        });
    }
    let status = handle.status();
    if status != JobStatus::Running {
        return Err(ServerError::ObjectNotInPrerequisiteState {
            message: format!("job \"{job}\" is {status}"),
            hint: Some(
                "a savepoint is taken of a running job; a suspended job already has its suspend's savepoint (SHOW SAVEPOINTS)"
                    .to_string(),
            ),
        });
    }
    let live = registry.view(job)?;
    let manifest = live
        .job
        .checkpoint_now()
        .await
        .map_err(|f| ServerError::job_failed(job, &f))?;
    save(registry, name, job, &manifest, SavepointOrigin::User).await?;
    Ok(Output::command("CREATE SAVEPOINT"))
}

/// `SHOW SAVEPOINTS [FOR JOB j]`.
pub async fn show(registry: &Registry, job: Option<&str>) -> Result<Output> {
    if let Some(job) = job
        && registry.jobs().get(job).is_none()
    {
        return Err(unknown_job(job));
    }
    let listed: Vec<SavepointInfo> = match registry.checkpoint_store(None) {
        None => Vec::new(),
        Some(store) => store
            .savepoints()
            .await
            .map_err(|e| store_error("the savepoints", e))?
            .into_iter()
            .filter(|info| job.is_none_or(|job| info.job == job))
            .collect(),
    };
    let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            listed.iter().map(|i| i.name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            listed.iter().map(|i| i.job.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            listed.iter().map(|i| to_i64(i.epoch)),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                listed
                    .iter()
                    .map(|i| to_i64(i.created_at_ms).saturating_mul(1000)),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(Int64Array::from_iter_values(
            listed.iter().map(|i| to_i64(i.size_bytes)),
        )),
        Arc::new(StringArray::from_iter_values(
            listed.iter().map(|i| i.origin.as_str()),
        )),
    ];
    let batch = datafusion::arrow::array::RecordBatch::try_new(schema(), columns)
        .map_err(|e| ServerError::internal(e.to_string()))?;
    let stream =
        datafusion::physical_plan::memory::MemoryStream::try_new(vec![batch], schema(), None)
            .map_err(|e| ServerError::from_datafusion(e, None))?;
    Ok(Output::Rows(Box::pin(stream)))
}

/// `DROP SAVEPOINT [IF EXISTS] sp`.
pub async fn drop(registry: &Registry, name: &str, if_exists: bool) -> Result<Output> {
    if let Some(store) = registry.checkpoint_store(None)
        && store
            .drop_savepoint(name)
            .await
            .map_err(|e| store_error(&format!("savepoint \"{name}\""), e))?
    {
        return Ok(Output::command("DROP SAVEPOINT"));
    }
    if if_exists {
        return Ok(
            Output::command("DROP SAVEPOINT").after(Notice::info(format!(
                "savepoint \"{name}\" does not exist, skipping"
            ))),
        );
    }
    Err(unknown_savepoint(name))
}

/// The error for a savepoint that does not exist.
pub fn unknown_savepoint(name: &str) -> ServerError {
    ServerError::UndefinedObject {
        message: format!("savepoint \"{name}\" does not exist"),
    }
}
