//! # weir-planner: from SQL text to something the runtime can run
//!
//! The planner parses Weir's SQL (Postgres-flavoured, with Weir's statements
//! added), sorts each statement into what it asks for, and turns queries into
//! plans. It never opens a socket or a file: the server hands it text and
//! takes back typed statements and plans.
//!
//! ```text
//!   SQL text ──parser::parse_request──> pieces: sqlparser AST (with source
//!        │                              spans) + Weir's own statements
//!        │                                 │
//!        │                statement::classify_piece
//!        v                                 v
//!   PlanError (SQLSTATE-ready,   WeirStatement::{Query, CreateTable, CreateView,
//!   with a text position)          CreateMaterializedView, Dml, Drop, Set, ...}
//!                                  │ Query                   │ materialized view
//!                                  v                         v
//!                      DataFusion LogicalPlan ──stream_plan──> typed stream plan
//!                      (bounded queries)                  nodes ──> EXPLAIN text
//!                                                               └─> runtime StreamPlan
//! ```
//! Modules depend one way: `statement` reads the parser's pieces and `dml`'s
//! writes; the parser, `statement` and `dml` all name objects through
//! `normalize`, which depends on nothing of theirs.
//!
//! # Layout
//! - [`parser`]: parsing with spans; Weir's statements (sinks, SUBSCRIBE,
//!   FLUSH, cursors) from tokens; syntax errors with their position.
//! - [`statement`]: the statements Weir understands, classified.
//! - [`dml`]: INSERT / UPDATE / DELETE / COPY on tables Weir owns.
//! - [`normalize`]: names and option values as Postgres reads them.
//! - [`compat`]: rewrites for clients' catalog queries.
//! - [`arithmetic`]: integer overflow and float division by zero as errors.
//! - [`names`]: Postgres-style names for unaliased output columns.
//! - [`windows`]: TUMBLE / HOP / CUMULATE / SESSION, rewritten to plain SQL.
//! - [`lookups`]: the tables a query reads `FOR SYSTEM_TIME AS OF` (lookup
//!   joins).
//! - [`stream_plan`]: the incremental rewrite, LogicalPlan to typed stream
//!   plan nodes, their EXPLAIN, and the runtime's StreamPlan.
//! - [`catalog`]: the durable definitions of tables and views.
//! - [`error`]: this crate's error type.

pub mod arithmetic;
pub mod catalog;
pub mod compat;
pub mod dml;
pub mod error;
pub mod lookups;
pub mod names;
pub mod normalize;
pub mod parser;
pub mod statement;
pub mod stream_plan;
pub mod windows;

pub use error::{PlanError, Result};
pub use statement::WeirStatement;
