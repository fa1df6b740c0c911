//! # weir-planner: from SQL text to something the runtime can run
//!
//! The planner parses Weir's SQL (Postgres-flavoured, with Weir's statements
//! added), sorts each statement into what it asks for, and turns queries into
//! plans. It never opens a socket or a file: the server hands it text and
//! takes back typed statements and plans.
//!
//! ```text
//!   SQL text ──parser::parse──> sqlparser AST (with source spans)
//!        │                         │
//!        │       statement::classify
//!        v                         v
//!   PlanError (SQLSTATE-ready,   WeirStatement::{Query, CreateTable, CreateView,
//!   with a text position)          Drop, Set, Show, Transaction, ...}
//!                                  │ Query
//!                                  v
//!                      DataFusion LogicalPlan (bounded queries); the
//!                      incremental rewrite to a StreamPlan builds on it
//! ```
//!
//! # Layout
//! - [`parser`]: parsing with spans; syntax errors with their position.
//! - [`statement`]: the statements Weir understands, classified.
//! - [`compat`]: rewrites for clients' catalog queries.
//! - [`arithmetic`]: integer overflow and float division by zero as errors.
//! - [`cursor`]: `DECLARE ... CURSOR FOR SUBSCRIBE`, `FETCH`, `CLOSE`.
//! - [`names`]: Postgres-style names for unaliased output columns.
//! - [`stream`]: the incremental rewrite, LogicalPlan to StreamPlan.
//! - [`windows`]: TUMBLE / HOP / CUMULATE / SESSION, rewritten to plain SQL.
//! - [`catalog`]: the durable definitions of tables and views.
//! - [`dml`]: INSERT / UPDATE / DELETE / COPY on tables Weir owns.
//! - [`error`]: this crate's error type.

pub mod arithmetic;
pub mod catalog;
pub mod compat;
pub mod cursor;
pub mod dml;
pub mod error;
pub mod names;
pub mod parser;
pub mod statement;
pub mod stream;
pub mod windows;

pub use error::{PlanError, Result};
pub use statement::WeirStatement;
