//! # weir-server: the front door
//!
//! The `weir` binary: Postgres clients connect over pgwire, operators watch
//! `/metrics` over HTTP. This crate owns sessions, the wire protocol, the
//! durable catalog file, and error reporting; the planner decides what a
//! statement means, the runtime runs it, connectors read the data.
//!
//! ```text
//!   psql / drivers ──pgwire──> pg::handler (simple + extended protocol)
//!                                  │ SQL text
//!                                  v
//!                              Engine::parse ──> weir_planner (AST, classify)
//!                                  │ WeirStatement
//!                                  v
//!                              Engine::execute ──> statements::{ddl, show}
//!                                  │                 └─> catalog_store (atomic file)
//!                                  v Query
//!                              DataFusion plan ──> weir_runtime::Executor (workers)
//!                                  │ RecordBatches (bounded channel)
//!                                  v
//!                              pg::encode (arrow-pg) ──> DataRows to the client
//! ```
//!
//! # Layout
//! - [`server`]: start-up, listeners, shutdown.
//! - [`config`]: flags, `WEIR_*` variables, the TOML file, defaults.
//! - [`engine`]: what all sessions share; runs one statement.
//! - [`pg`]: the pgwire handlers.
//! - [`session`]: per-connection settings.
//! - [`statements`]: one module per statement family.
//! - [`catalog_store`]: the durable catalog file.
//! - [`checkpoints`]: the checkpoint store, and what a job restores from.
//! - [`pg_catalog`]: `pg_catalog` with Weir's keys and materialized views.
//! - [`pg_functions`]: Postgres system functions clients expect.
//! - [`pg_proc`]: what `\df` and `\sf` say about a built-in function.
//! - [`pg_text`]: Postgres text output where arrow-pg's differs.
//! - [`information_schema`]: `information_schema` with Postgres type names.
//! - [`http`], [`metrics`]: `/healthz`, `/metrics`.
//! - [`error`]: `ServerError` and its SQLSTATEs.

pub mod catalog_store;
pub mod checkpoints;
pub mod config;
pub mod engine;
pub mod error;
pub mod http;
pub mod information_schema;
pub mod metrics;
pub mod pg;
pub mod pg_catalog;
pub mod pg_functions;
pub mod pg_proc;
pub mod pg_text;
pub mod server;
pub mod session;
pub mod statements;

/// The Postgres version Weir speaks as (what `server_version` says).
pub const PG_SERVER_VERSION: &str = "16.6";
/// The same as a number, as `server_version_num` says it.
pub const PG_SERVER_VERSION_NUM: &str = "160006";
