//! `POST /api/v1/sql`: one statement, run as a session runs it (the
//! engine's parse and execute, in a fresh session with default settings),
//! answered with its columns, their Postgres types and up to `limit` rows,
//! or with the error a Postgres client would get, position included.
//!
//! What never ends or needs the wire protocol is refused before it runs:
//! `SUBSCRIBE` (use a Postgres client, or poll the view), `COPY ... FROM
//! STDIN`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use weir_planner::WeirStatement;

use super::errors::{ApiError, ApiResult};
use super::{Api, rows};
use crate::error::ServerError;
use crate::output::Output;
use crate::session::Session;

/// Rows returned when the request does not say.
pub const DEFAULT_LIMIT: usize = 1000;
/// Rows returned at most.
pub const MAX_LIMIT: usize = 100_000;

/// The request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One SQL statement.
    pub sql: String,
    /// Rows to return at most (default 1000, at most 100000); the rest are
    /// not read.
    pub limit: Option<usize>,
}

/// A result column.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SqlColumn {
    /// Its name.
    pub name: String,
    /// Its Postgres type name.
    #[serde(rename = "type")]
    pub data_type: String,
}

/// A statement's result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SqlResult {
    /// The command tag (`SELECT`, `CREATE MATERIALIZED VIEW`, `ALTER JOB`).
    pub tag: String,
    /// The result's columns (empty for a command).
    pub columns: Vec<SqlColumn>,
    /// The rows, each an array in column order; values as JSON (numbers,
    /// strings, RFC 3339 times, arrays).
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Rows returned (or affected, for a command that counts them).
    pub row_count: usize,
    /// More rows were left unread past `limit`.
    pub truncated: bool,
    /// Warnings the statement raised.
    pub notices: Vec<String>,
}

fn command(tag: &str, rows: Option<usize>, notices: Vec<String>) -> SqlResult {
    SqlResult {
        tag: tag.to_string(),
        columns: Vec::new(),
        rows: Vec::new(),
        row_count: rows.unwrap_or(0),
        truncated: false,
        notices,
    }
}

fn refused(what: &str, hint: &str) -> ApiError {
    ApiError::from(ServerError::FeatureNotSupported {
        message: format!("{what} is not available over the REST API"),
        hint: Some(hint.to_string()),
    })
}

/// Run one statement.
#[utoipa::path(post, operation_id = "run_sql", path = "/api/v1/sql", tag = "sql", request_body = SqlRequest,
    responses((status = 200, description = "Its result", body = SqlResult),
        (status = 400, description = "Bad SQL (42601 with its position), a bad value (22023), ...", body = ApiError),
        (status = 404, description = "A relation that does not exist (42P01)", body = ApiError),
        (status = 409, description = "An action that does not fit an object's state (55000)", body = ApiError)))]
pub async fn run(State(api): State<Arc<Api>>, bytes: Bytes) -> ApiResult<Json<SqlResult>> {
    let request: SqlRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_value(format!("invalid body: {e}")))?;
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(ApiError::bad_value(format!(
            "limit {limit} is over the most rows returned, {MAX_LIMIT}"
        )));
    }
    let work = execute(&api, &request.sql, limit);
    let result = match api.statement_timeout {
        Some(timeout) => tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(ServerError::StatementTimeout.into())),
        None => work.await,
    };
    if let Err(err) = &result {
        api.engine.record_error(&err.code);
    }
    result.map(Json)
}

async fn execute(api: &Api, sql: &str, limit: usize) -> ApiResult<SqlResult> {
    let mut parsed = api.engine.parse(sql).await?;
    let statement = match parsed.len() {
        1 => parsed.remove(0),
        0 => return Err(ApiError::new("42601", "no statement given")),
        n => {
            return Err(ApiError::new(
                "42601",
                format!("{n} statements given; the API runs one per request"),
            )
            .with_hint("send each statement in its own request"));
        }
    };
    if matches!(*statement.statement, WeirStatement::Subscribe { .. }) {
        return Err(refused(
            "SUBSCRIBE",
            "subscribe with a Postgres client, or SELECT from the view",
        ));
    }
    let session = Arc::new(Session::new());
    let output = api.engine.execute(&session, &statement, None).await?;
    respond(output, limit, Vec::new()).await
}

async fn respond(output: Output, limit: usize, mut notices: Vec<String>) -> ApiResult<SqlResult> {
    let batches = match output {
        Output::Rows(batches) | Output::CopyOut { batches, .. } => batches,
        Output::Command { tag, rows } => return Ok(command(tag, rows, notices)),
        Output::Set { tag, .. } => return Ok(command(tag, None, notices)),
        Output::TransactionStart => return Ok(command("BEGIN", None, notices)),
        Output::TransactionEnd(tag) => return Ok(command(tag, None, notices)),
        Output::Noticed { notice, output } => {
            notices.push(notice.message);
            return Box::pin(respond(*output, limit, notices)).await;
        }
        Output::CopyIn(_) => {
            return Err(refused(
                "COPY FROM STDIN",
                "load with psql's \\copy, or INSERT the rows",
            ));
        }
        Output::Subscribe { .. } => {
            return Err(refused(
                "SUBSCRIBE",
                "subscribe with a Postgres client, or SELECT from the view",
            ));
        }
    };
    let (schema, taken, truncated) = rows::take(batches, limit).await?;
    let columns = schema
        .fields()
        .iter()
        .map(|f| SqlColumn {
            name: weir_planner::names::client_name(f.name()).to_string(),
            data_type: crate::information_schema::sql_type_name(f.data_type()).to_string(),
        })
        .collect();
    let mut out = Vec::new();
    for batch in &taken {
        out.extend(rows::arrays(batch)?);
    }
    Ok(SqlResult {
        tag: "SELECT".to_string(),
        columns,
        row_count: out.len(),
        rows: out,
        truncated,
        notices,
    })
}
