//! `/api/v1/jobs/{name}/checkpoints`: a job's checkpoints with epoch, time,
//! duration and size.
//!
//! The checkpoint store keeps only the last few manifests (retention), and
//! a manifest does not record how long its checkpoint took; the job's
//! checkpoint coordinator says both when it completes one (its "checkpoint
//! complete" log event, with `epoch`, `ms` and `size`). So the history is
//! the one the server saw since it started ([`crate::logs`] keeps the last
//! ones per job), and the latest manifest in the store when the history
//! does not reach it (right after a restart).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::Api;
use super::errors::{ApiError, ApiResult};
use super::jobs::{JobPath, job_view};

/// One completed checkpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Checkpoint {
    /// Its epoch.
    pub epoch: u64,
    /// When its manifest was written (RFC 3339).
    pub completed_at: String,
    /// The same, in milliseconds since the Unix epoch.
    pub completed_at_ms: u64,
    /// From its barrier's injection to its manifest (unknown for a
    /// checkpoint taken before the server started).
    pub duration_ms: Option<f64>,
    /// Bytes of state its manifest names.
    pub size_bytes: Option<u64>,
    /// Bytes it wrote (its delta over the one before).
    pub written_bytes: Option<u64>,
}

/// RFC 3339 for milliseconds since the Unix epoch.
pub fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The job's checkpoints, oldest first.
#[utoipa::path(get, operation_id = "list_job_checkpoints", path = "/api/v1/jobs/{name}/checkpoints", tag = "jobs", params(JobPath),
    responses((status = 200, description = "Its completed checkpoints, oldest first", body = [Checkpoint]),
        (status = 404, description = "No such job (42704)", body = ApiError)))]
pub async fn list(
    State(api): State<Arc<Api>>,
    Path(JobPath { name }): Path<JobPath>,
) -> ApiResult<Json<Vec<Checkpoint>>> {
    let view = job_view(&api, &name)?;
    let mut listed: Vec<Checkpoint> = crate::logs::global()
        .checkpoints(&view)
        .into_iter()
        .map(|c| Checkpoint {
            epoch: c.epoch,
            completed_at: rfc3339(c.at_ms),
            completed_at_ms: c.at_ms,
            duration_ms: Some(c.duration_ms),
            size_bytes: c.size_bytes,
            written_bytes: c.written_bytes,
        })
        .collect();
    let stored = match api.registry.checkpoint_store(None) {
        Some(store) => {
            store
                .job(&view)
                .latest()
                .await
                .map_err(|e| crate::error::ServerError::Io {
                    message: format!("the checkpoints of \"{view}\": {e}"),
                })?
        }
        None => None,
    };
    if let Some(manifest) = stored
        && listed.iter().all(|c| c.epoch < manifest.epoch)
    {
        listed.push(Checkpoint {
            epoch: manifest.epoch,
            completed_at: rfc3339(manifest.written_at_ms),
            completed_at_ms: manifest.written_at_ms,
            duration_ms: None,
            size_bytes: Some(manifest.state_bytes()),
            written_bytes: None,
        });
    }
    Ok(Json(listed))
}
