//! # weir-server: the front door
//!
//! The `weir` binary: Postgres clients connect over pgwire, operators watch
//! `/metrics` over HTTP. This crate owns sessions, the wire protocol, the
//! registry of live objects, the durable catalog file, and error reporting;
//! the planner decides what a statement means, the runtime runs it,
//! connectors read and write the data.
//!
//! ```text
//!   psql / drivers ──pgwire──> pg::{simple, extended, subscribe, copy_protocol}
//!                                  │ SQL text
//!                                  v
//!                              Engine::parse ──> weir_planner (AST, classify)
//!                                  │ Parsed (a WeirStatement)
//!                                  v
//!                              Engine::execute ──> dispatch ──> statements::*
//!                                                                  │ ask
//!                                                                  v
//!                              Registry: DataFusion context, catalog (+ catalog_store),
//!                                        streams, views and their jobs, tables, workers
//!                                  │ Output (rows as RecordBatches, a tag, COPY, ...)
//!                                  v
//!                              pg::handler / pg::encode (arrow-pg) ──> messages to the client
//! ```
//! Dependencies point one way: `engine` -> `dispatch` -> `statements` ->
//! `registry` and `output`; the registry knows no statement.
//!
//! # Layout
//! - [`server`]: start-up, listeners, shutdown.
//! - [`config`]: flags, `WEIR_*` variables, the TOML file, defaults.
//! - [`auth`]: roles, SCRAM verifiers, who may connect; [`tls`]: certificates.
//! - [`engine`]: parses a request, runs and describes its statements.
//! - [`dispatch`]: which handler runs each kind of statement.
//! - [`statements`]: one module per statement family.
//! - [`registry`]: the live objects every session shares.
//! - [`output`]: what a statement produces; [`copy_in`]: a COPY FROM STDIN
//!   in progress.
//! - [`datafusion_context`]: the DataFusion context sessions plan in.
//! - [`pg`]: the pgwire handlers.
//! - [`session`]: per-connection settings; [`cursors`]: its open cursors.
//! - [`catalog_store`]: the durable catalog file.
//! - [`checkpoints`]: the checkpoint store, and what a job restores from.
//! - [`pg_catalog`]: `pg_catalog` with Weir's keys and materialized views.
//! - [`pg_functions`]: Postgres system functions clients expect.
//! - [`pg_proc`]: what `\df` and `\sf` say about a built-in function.
//! - [`pg_text`]: Postgres text output where arrow-pg's differs.
//! - [`information_schema`]: `information_schema` with Postgres type names.
//! - [`http`]: the HTTP port: `/healthz`, `/metrics`, the REST API under
//!   `/api/v1/` and the web console; [`metrics`]: what `/metrics` says.
//! - [`logs`]: each job's recent log lines, for the API and the console.
//! - [`error`]: `ServerError` and its SQLSTATEs.

pub mod auth;
pub mod catalog_store;
pub mod checkpoints;
pub mod config;
pub mod copy_in;
pub mod cursors;
pub mod datafusion_context;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod http;
pub mod information_schema;
pub mod jobs;
pub mod logs;
pub mod metrics;
pub mod output;
pub mod pg;
pub mod pg_catalog;
pub mod pg_functions;
pub mod pg_proc;
pub mod pg_text;
pub mod registry;
pub mod server;
pub mod session;
pub mod statements;
pub mod tls;

/// The Postgres version Weir speaks as (what `server_version` says).
pub const PG_SERVER_VERSION: &str = "16.6";
/// The same as a number, as `server_version_num` says it.
pub const PG_SERVER_VERSION_NUM: &str = "160006";
