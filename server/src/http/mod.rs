//! The HTTP port: `/healthz`, `/metrics`, the REST API under `/api/v1/`
//! with its OpenAPI description, and the web console at `/`.
//!
//! ```text
//!  GET /healthz, /metrics                   open, for probes and Prometheus
//!  GET /, /console/*                        the console's files (embedded), open
//!  /api/v1/...  ──auth (bearer token)──> jobs, savepoints, checkpoints, catalog, sql
//!                                          │ the same statement code SQL runs
//!                                          v
//!                                   statements::{jobs, savepoints}, Engine, Registry
//! ```
//! The API is a second front door to what SQL does, not a second
//! implementation: job routes run the job statements, `POST /api/v1/sql`
//! runs a statement through the engine, and errors carry the SQLSTATE SQL
//! would (mapped to an HTTP status in one place, [`errors::status_of`]).
//! Routes and their OpenAPI description are registered together
//! (`utoipa-axum`), so the description cannot drift from the handlers.
//!
//! # Layout
//! - [`errors`]: the JSON error and the SQLSTATE -> status mapping.
//! - [`auth`]: the bearer token.
//! - [`jobs`], [`checkpoints`], [`savepoints`], [`catalog`], [`sql`]: one
//!   file per resource.
//! - [`graph`]: a job's operator graph from its EXPLAIN.
//! - [`figures`]: per-operator figures (rows per second, watermark, state,
//!   backpressure) from `/metrics`.
//! - [`rows`]: Arrow rows as JSON.
//! - [`console`]: the console's embedded files.

pub mod auth;
pub mod catalog;
pub mod checkpoints;
pub mod console;
pub mod errors;
pub mod figures;
pub mod graph;
pub mod jobs;
pub mod rows;
pub mod savepoints;
pub mod sql;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// What the HTTP handlers share.
pub struct Api {
    /// Runs `POST /api/v1/sql`'s statements.
    pub engine: Arc<Engine>,
    /// The live objects: jobs, catalog, checkpoints.
    pub registry: Arc<Registry>,
    /// `/metrics`, and the figures of a job's page.
    pub metrics: Arc<Metrics>,
    /// Who may call `/api`.
    pub access: auth::Access,
    /// How long an API statement may run (the server's default
    /// `statement_timeout`).
    pub statement_timeout: Option<std::time::Duration>,
    /// Each job's last reading of its counters, for per-second rates.
    pub rates: figures::Rates,
}

/// The OpenAPI description's frame; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Weir REST API",
        description = "Jobs, savepoints, checkpoints, the catalog and SQL statements of a Weir server: the same operations SQL offers (SHOW JOBS, ALTER JOB, CREATE SAVEPOINT), with the same names and SQLSTATEs."
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "Materialized views' and sinks' jobs: status, events, actions"),
        (name = "savepoints", description = "Savepoints: checkpoints kept by name"),
        (name = "catalog", description = "Streams, tables, views and sinks"),
        (name = "sql", description = "Run one SQL statement")
    )
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's routes with their description.
fn api_routes() -> (Router<Arc<Api>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::events))
        .routes(routes!(jobs::suspend))
        .routes(routes!(jobs::resume))
        .routes(routes!(jobs::restart))
        .routes(routes!(jobs::settings))
        .routes(routes!(jobs::create_savepoint))
        .routes(routes!(jobs::logs))
        .routes(routes!(checkpoints::list))
        .routes(routes!(savepoints::list))
        .routes(routes!(savepoints::get, savepoints::delete))
        .routes(routes!(catalog::get))
        .routes(routes!(sql::run))
        .split_for_parts()
}

/// The OpenAPI description of the API (what `/api/v1/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().1
}

/// Every route of the HTTP port.
pub fn router(api: Arc<Api>) -> Router {
    let (routes, description) = api_routes();
    let description = Arc::new(description);
    let guarded = routes
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let description = description.clone();
                async move { axum::Json(description.as_ref().clone()) }
            }),
        )
        .route(
            "/api/{*rest}",
            axum::routing::any(|| async {
                errors::ApiError::new("42704", "no such API route")
                    .with_hint("the routes are listed in /api/v1/openapi.json")
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .merge(console::routes())
        .merge(guarded)
        .with_state(api)
}

async fn metrics_text(State(api): State<Arc<Api>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.metrics.encode(),
    )
}
