//! `/api/v1/savepoints`: list, read and delete savepoints, through the
//! statements SQL runs (`SHOW SAVEPOINTS`, `DROP SAVEPOINT`); a savepoint's
//! fields are `SHOW SAVEPOINTS`' columns. Taking one is an action on its
//! job (`POST /api/v1/jobs/{name}/savepoints`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use weir_planner::parser::JobStatement;

use super::errors::{ApiError, ApiResult};
use super::jobs::run;
use super::{Api, rows};

/// A savepoint, as `SHOW SAVEPOINTS` lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Savepoint {
    /// Its name (global, not per job).
    pub name: String,
    /// The job it was taken of.
    pub job: String,
    /// The checkpoint epoch it copies.
    pub epoch: i64,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// Bytes of state it holds.
    pub size_bytes: i64,
    /// `user`, `suspend` or `upgrade`.
    pub origin: String,
}

/// A savepoint's name in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SavepointPath {
    /// The savepoint's name.
    pub name: String,
}

/// `?job=` on the list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SavepointQuery {
    /// Only this job's savepoints (`SHOW SAVEPOINTS FOR JOB job`).
    pub job: Option<String>,
}

/// A savepoint name the API takes: what an unquoted SQL identifier may
/// hold, so the same savepoint is reachable from SQL and no name can reach
/// outside the savepoints' folder.
// The error is the JSON a failed request answers with, built once per
// failure and sent at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(
            ApiError::bad_value(format!("invalid savepoint name \"{name}\""))
                .with_hint("use letters, digits and _ (not first), up to 63"),
        )
    }
}

async fn listed(api: &Api, job: Option<String>) -> ApiResult<Vec<Savepoint>> {
    Ok(rows::typed(run(api, JobStatement::ShowSavepoints { job }).await?).await?)
}

/// Savepoint `name`, or 404 (42704).
pub(super) async fn one(api: &Api, name: &str) -> ApiResult<Savepoint> {
    listed(api, None)
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| crate::statements::savepoints::unknown_savepoint(name).into())
}

/// Every savepoint, or one job's.
#[utoipa::path(get, operation_id = "list_savepoints", path = "/api/v1/savepoints", tag = "savepoints", params(SavepointQuery),
    responses((status = 200, description = "The savepoints", body = [Savepoint]),
        (status = 404, description = "No such job (42704)", body = ApiError)))]
pub async fn list(
    State(api): State<Arc<Api>>,
    Query(query): Query<SavepointQuery>,
) -> ApiResult<Json<Vec<Savepoint>>> {
    Ok(Json(listed(&api, query.job).await?))
}

/// One savepoint.
#[utoipa::path(get, operation_id = "get_savepoint", path = "/api/v1/savepoints/{name}", tag = "savepoints", params(SavepointPath),
    responses((status = 200, description = "The savepoint", body = Savepoint),
        (status = 404, description = "No such savepoint (42704)", body = ApiError)))]
pub async fn get(
    State(api): State<Arc<Api>>,
    Path(SavepointPath { name }): Path<SavepointPath>,
) -> ApiResult<Json<Savepoint>> {
    Ok(Json(one(&api, &name).await?))
}

/// Delete a savepoint (`DROP SAVEPOINT name`).
#[utoipa::path(delete, operation_id = "delete_savepoint", path = "/api/v1/savepoints/{name}", tag = "savepoints", params(SavepointPath),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such savepoint (42704)", body = ApiError)))]
pub async fn delete(
    State(api): State<Arc<Api>>,
    Path(SavepointPath { name }): Path<SavepointPath>,
) -> ApiResult<StatusCode> {
    run(
        &api,
        JobStatement::DropSavepoint {
            name,
            if_exists: false,
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_savepoint_has_the_columns_of_show_savepoints() {
        let value = serde_json::to_value(Savepoint::default()).expect("json");
        let keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
        let mut columns: Vec<String> = crate::statements::savepoints::schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        columns.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, columns);
    }

    #[test]
    fn names_are_identifiers() {
        assert!(check_name("before_upgrade_2").is_ok());
        for bad in ["", "../x", "a b", "1a", &"x".repeat(64)] {
            assert_eq!(check_name(bad).expect_err(bad).code, "22023");
        }
    }
}
