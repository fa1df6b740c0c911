//! `/api/v1/jobs`: the jobs, their events, and the actions SQL's `ALTER
//! JOB` and `CREATE SAVEPOINT ... FOR JOB` take.
//!
//! Every route runs the statement SQL would run (`statements::jobs::execute`
//! with the same [`JobStatement`]), on the worker threads as a session's
//! statement runs, and reads its rows back: a job's fields are the columns
//! of `SHOW JOBS`, an event's those of `SHOW JOB EVENTS`. So the API and
//! SQL cannot disagree about a job, and a change made by one is what the
//! other sees.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use weir_planner::catalog::CatalogEntry;
use weir_planner::parser::{JobAction, JobStatement};

use super::errors::{ApiError, ApiResult};
use super::graph::{self, Graph};
use super::savepoints::{Savepoint, check_name};
use super::{Api, rows};
use crate::output::Output;

/// A job, as `SHOW JOBS` lists it (the same names: the columns are the
/// contract of both). Times are RFC 3339.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// The materialized view's or sink's name.
    pub name: String,
    /// `view` or `sink` (a sink runs inside its view's job).
    pub kind: String,
    /// `created`, `running`, `suspending`, `suspended`, `restarting`,
    /// `failed` or `finished`.
    pub status: String,
    /// `running` or `suspended`: where Weir drives it.
    pub desired_state: String,
    /// When its current run started.
    pub started_at: Option<String>,
    /// Its latest complete checkpoint's epoch.
    pub last_checkpoint_epoch: Option<i64>,
    /// When that checkpoint completed.
    pub last_checkpoint_at: Option<String>,
    /// Rows its sources read.
    pub rows_in: Option<i64>,
    /// Rows it wrote to its view.
    pub rows_out: Option<i64>,
    /// Its event-time watermark.
    pub watermark: Option<String>,
    /// Restarts over its life.
    pub restarts: i64,
    /// Why it failed or is restarting.
    pub last_error: Option<String>,
    /// How far a bounded job has read.
    pub progress: Option<String>,
}

/// A job with what its page shows: its definition, settings, plan and
/// figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobDetail {
    /// The `SHOW JOBS` row.
    #[serde(flatten)]
    pub job: Job,
    /// The view's query (a sink's: the view it writes out).
    pub definition: String,
    /// Its own settings (`WITH (...)`, `ALTER JOB SET`), over the server's
    /// defaults.
    pub settings: BTreeMap<String, String>,
    /// The stream plan as `EXPLAIN` prints it (none while it is not running).
    pub explain: Option<String>,
    /// The plan's operators and edges, with the runtime's figures.
    pub graph: Graph,
    /// The job's figures from `/metrics` (family without the `weir_`
    /// prefix to value).
    pub metrics: BTreeMap<String, f64>,
}

/// One transition of a job, as `SHOW JOB EVENTS` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobEvent {
    /// Its number, from 1.
    pub seq: i64,
    /// When (RFC 3339).
    pub at: String,
    /// The status before (none for the first event).
    pub from_status: Option<String>,
    /// The status after.
    pub to_status: String,
    /// Why.
    pub reason: String,
}

/// `POST /api/v1/jobs/{name}/resume`'s body (optional).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// Resume from this savepoint (`RESUME FROM SAVEPOINT`); without it,
    /// per the job's restore strategy.
    pub savepoint: Option<String>,
}

/// `POST /api/v1/jobs/{name}/settings`'s body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsRequest {
    /// Settings to change, as `ALTER JOB ... SET (key = 'value')` takes
    /// them: `restart_strategy`, `restart_attempts`, `parallelism`, ...
    pub settings: BTreeMap<String, String>,
}

/// `POST /api/v1/jobs/{name}/savepoints`'s body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SavepointRequest {
    /// The savepoint's name: letters, digits and `_`, up to 63.
    pub name: String,
}

/// A job's name in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// The materialized view's or sink's name.
    pub name: String,
}

/// Run a job statement as SQL runs it: on a worker thread.
pub(super) async fn run(api: &Api, statement: JobStatement) -> ApiResult<Output> {
    let registry = api.registry.clone();
    Ok(api
        .registry
        .run(async move { crate::statements::jobs::execute(&registry, statement).await })
        .await??)
}

/// Every job, as `SHOW JOBS` lists them.
pub(super) async fn all_jobs(api: &Api) -> ApiResult<Vec<Job>> {
    Ok(rows::typed(run(api, JobStatement::ShowJobs).await?).await?)
}

/// Job `name`'s `SHOW JOBS` row, or 404.
pub(super) async fn one_job(api: &Api, name: &str) -> ApiResult<Job> {
    all_jobs(api)
        .await?
        .into_iter()
        .find(|j| j.name == name)
        .ok_or_else(|| crate::jobs::unknown_job(name).into())
}

/// A JSON body of `T`, or 400 with 22023 saying what is wrong with it.
// The error is the JSON a failed request answers with, built once per
// failure and sent at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub(super) fn body<T: serde::de::DeserializeOwned + Default>(bytes: &Bytes) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_value(format!("invalid body: {e}")))
}

/// List every job.
#[utoipa::path(get, operation_id = "list_jobs", path = "/api/v1/jobs", tag = "jobs",
    responses((status = 200, description = "Every job, by name", body = [Job]),
        (status = 401, description = "No or a wrong bearer token", body = ApiError)))]
pub async fn list(State(api): State<Arc<Api>>) -> ApiResult<Json<Vec<Job>>> {
    Ok(Json(all_jobs(&api).await?))
}

/// One job with its definition, settings, plan graph and figures.
#[utoipa::path(get, operation_id = "get_job", path = "/api/v1/jobs/{name}", tag = "jobs", params(JobPath),
    responses((status = 200, description = "The job", body = JobDetail),
        (status = 404, description = "No such job (42704)", body = ApiError)))]
pub async fn get(
    State(api): State<Arc<Api>>,
    Path(JobPath { name }): Path<JobPath>,
) -> ApiResult<Json<JobDetail>> {
    let job = one_job(&api, &name).await?;
    let registry = &api.registry;
    let (definition, view) = match registry.catalog().get(&name) {
        Some(CatalogEntry::MaterializedView(def)) => (def.query.clone(), def.name.clone()),
        Some(CatalogEntry::Sink(def)) => (
            format!("CREATE SINK {} FROM {}", def.name, def.from),
            def.from.clone(),
        ),
        _ => return Err(crate::jobs::unknown_job(&name).into()),
    };
    let settings = registry
        .jobs()
        .get(&view)
        .map(|j| j.snapshot().settings)
        .unwrap_or_default();
    let explain = registry.view(&view).ok().map(|live| live.explain.clone());
    let samples = graph::samples(&api.metrics.encode());
    let mut plan = explain
        .as_deref()
        .map(graph::from_explain)
        .unwrap_or_default();
    graph::attach_metrics(&mut plan, &samples, &view);
    super::figures::attach(&mut plan, &samples, &view, &api.rates);
    Ok(Json(JobDetail {
        job,
        definition,
        settings,
        explain,
        graph: plan,
        metrics: graph::job_metrics(&samples, &view),
    }))
}

/// The job's status changes, oldest first (`SHOW JOB EVENTS`).
#[utoipa::path(get, operation_id = "list_job_events", path = "/api/v1/jobs/{name}/events", tag = "jobs", params(JobPath),
    responses((status = 200, description = "Its events", body = [JobEvent]),
        (status = 404, description = "No such job (42704)", body = ApiError)))]
pub async fn events(
    State(api): State<Arc<Api>>,
    Path(JobPath { name }): Path<JobPath>,
) -> ApiResult<Json<Vec<JobEvent>>> {
    let output = run(&api, JobStatement::ShowEvents { job: name }).await?;
    Ok(Json(rows::typed(output).await?))
}

async fn alter(api: &Api, name: String, action: JobAction) -> ApiResult<Json<Job>> {
    run(
        api,
        JobStatement::Alter {
            job: name.clone(),
            action,
        },
    )
    .await?;
    Ok(Json(one_job(api, &name).await?))
}

/// Suspend with a savepoint (`ALTER JOB name SUSPEND`).
#[utoipa::path(post, operation_id = "suspend_job", path = "/api/v1/jobs/{name}/suspend", tag = "jobs", params(JobPath),
    responses((status = 200, description = "Suspended; the job as it is now", body = Job),
        (status = 404, description = "No such job (42704)", body = ApiError),
        (status = 409, description = "Not running (55000)", body = ApiError)))]
pub async fn suspend(
    State(api): State<Arc<Api>>,
    Path(JobPath { name }): Path<JobPath>,
) -> ApiResult<Json<Job>> {
    alter(&api, name, JobAction::Suspend).await
}

/// Resume a suspended job (`ALTER JOB name RESUME [FROM SAVEPOINT sp]`).
#[utoipa::path(post, operation_id = "resume_job", path = "/api/v1/jobs/{name}/resume", tag = "jobs", params(JobPath),
    request_body(content = Option<ResumeRequest>, description = "Optional: the savepoint to resume from"),
    responses((status = 200, description = "Running again", body = Job),
        (status = 404, description = "No such job or savepoint (42704)", body = ApiError),
        (status = 409, description = "Not suspended, or a savepoint of another query (55000)", body = ApiError)))]
pub async fn resume(
    State(api): State<Arc<Api>>,
    Path(JobPath { name }): Path<JobPath>,
    bytes: Bytes,
) -> ApiResult<Json<Job>> {
    let request: ResumeRequest = body(&bytes)?;
    if let Some(savepoint) = &request.savepoint {
        check_name(savepoint)?;
    }
    alter(
        &api,
        name,
        JobAction::Resume {
            savepoint: request.savepoint,
        },
    )
    .await
}

/// Restart from the latest state (`ALTER JOB name RESTART`).
#[utoipa::path(post, operation_id = "restart_job", path = "/api/v1/jobs/{name}/restart", tag = "jobs", params(JobPath),
    responses((status = 200, description = "Restarted", body = Job),
        (status = 404, description = "No such job (42704)", body = ApiError),
        (status = 409, description = "Suspended (55000)", body = ApiError)))]
pub async fn restart(
    State(api): State<Arc<Api>>,
    Path(JobPath { name }): Path<JobPath>,
) -> ApiResult<Json<Job>> {
    alter(&api, name, JobAction::Restart).await
}

/// Change settings (`ALTER JOB name SET (key = 'value', ...)`).
#[utoipa::path(post, operation_id = "set_job_settings", path = "/api/v1/jobs/{name}/settings", tag = "jobs", params(JobPath),
    request_body = SettingsRequest,
    responses((status = 200, description = "Taken (a new parallelism or checkpoint interval restarted the job)", body = Job),
        (status = 400, description = "A bad setting (22023)", body = ApiError),
        (status = 404, description = "No such job (42704)", body = ApiError)))]
pub async fn settings(
    State(api): State<Arc<Api>>,
    Path(JobPath { name }): Path<JobPath>,
    bytes: Bytes,
) -> ApiResult<Json<Job>> {
    let request: Option<SettingsRequest> = body::<Option<SettingsRequest>>(&bytes)?;
    let Some(request) = request.filter(|r| !r.settings.is_empty()) else {
        return Err(ApiError::bad_value("no settings given")
            .with_hint("send {\"settings\": {\"restart_strategy\": \"fixed_delay\"}}"));
    };
    // Keys are lowercased as the SQL parser lowercases them.
    let pairs = request
        .settings
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    alter(&api, name, JobAction::Set(pairs)).await
}

/// Take a savepoint now (`CREATE SAVEPOINT sp FOR JOB name`).
#[utoipa::path(post, operation_id = "create_savepoint", path = "/api/v1/jobs/{name}/savepoints", tag = "jobs", params(JobPath),
    request_body = SavepointRequest,
    responses((status = 201, description = "Taken", body = Savepoint),
        (status = 400, description = "A bad name (22023)", body = ApiError),
        (status = 404, description = "No such job (42704)", body = ApiError),
        (status = 409, description = "Not running (55000), or the name is taken (42710)", body = ApiError)))]
pub async fn create_savepoint(
    State(api): State<Arc<Api>>,
    Path(JobPath { name }): Path<JobPath>,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Savepoint>)> {
    let Some(request) = body::<Option<SavepointRequest>>(&bytes)? else {
        return Err(ApiError::bad_value("no savepoint name given")
            .with_hint("send {\"name\": \"before_upgrade\"}"));
    };
    check_name(&request.name)?;
    run(
        &api,
        JobStatement::CreateSavepoint {
            name: request.name.clone(),
            job: name,
        },
    )
    .await?;
    let savepoint = super::savepoints::one(&api, &request.name).await?;
    Ok((StatusCode::CREATED, Json(savepoint)))
}

/// `?limit=` on a job's logs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// The newest this many lines (default 200).
    pub limit: Option<usize>,
}

/// The job's recent log lines, oldest first (kept in memory, per job).
#[utoipa::path(get, operation_id = "list_job_logs", path = "/api/v1/jobs/{name}/logs", tag = "jobs", params(JobPath, LogQuery),
    responses((status = 200, description = "Its recent log lines", body = [crate::logs::LogLine]),
        (status = 404, description = "No such job (42704)", body = ApiError)))]
pub async fn logs(
    State(api): State<Arc<Api>>,
    Path(JobPath { name }): Path<JobPath>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Json<Vec<crate::logs::LogLine>>> {
    let view = job_view(&api, &name)?;
    Ok(Json(
        crate::logs::global().lines(&view, query.limit.unwrap_or(200)),
    ))
}

/// The view whose job runs `name` (a sink's view), or 404.
// The error is the JSON a failed request answers with, built once per
// failure and sent at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub(super) fn job_view(api: &Api, name: &str) -> ApiResult<String> {
    match api.registry.catalog().get(name) {
        Some(CatalogEntry::MaterializedView(def)) => Ok(def.name.clone()),
        Some(CatalogEntry::Sink(def)) => Ok(def.from.clone()),
        _ => Err(crate::jobs::unknown_job(name).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_has_the_columns_of_show_jobs() {
        let value = serde_json::to_value(Job::default()).expect("json");
        let keys: Vec<&String> = value.as_object().expect("object").keys().collect();
        let columns: Vec<String> = crate::statements::jobs::jobs_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut sorted = columns.clone();
        sorted.sort();
        let mut keys: Vec<String> = keys.into_iter().cloned().collect();
        keys.sort();
        assert_eq!(keys, sorted);
    }
}
