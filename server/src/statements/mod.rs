//! One file per statement family. Each handler takes the [`Registry`] (the
//! live objects it reads and changes) and, where it needs one, the session,
//! and returns an [`Output`]; `crate::dispatch` picks the handler for a
//! statement. Handlers ask the registry, never reach into the engine.
//!
//! - [`ddl`]: `CREATE TABLE ... WITH (connector ...)`, `CREATE VIEW`, `DROP`,
//!   and rebuilding the live catalog from the durable one on start.
//! - [`dml`]: tables Weir owns: `CREATE TABLE`, INSERT, UPDATE, DELETE, COPY.
//! - [`insert_fast`]: INSERT ... VALUES of plain values, without DataFusion.
//! - [`streams`]: `CREATE STREAM`.
//! - [`materialized_views`]: `CREATE MATERIALIZED VIEW` and its `EXPLAIN`.
//! - [`subscribe`]: `SUBSCRIBE TO v`: a view's rows, then its changes.
//! - [`flush`]: `FLUSH`: wait until what was read is in the views.
//! - [`cursor`]: `DECLARE ... CURSOR FOR SUBSCRIBE`, `FETCH`, `CLOSE`.
//! - [`sink`]: `CREATE SINK`: a view's rows written out.
//! - [`explain`]: `EXPLAIN` as Postgres shapes it.
//! - [`show`]: `SHOW ...`, transactions: statements Weir answers itself.
//! - [`jobs`]: `SHOW JOBS`, `SHOW JOB EVENTS`, `ALTER JOB`.
//! - [`savepoints`]: `CREATE SAVEPOINT ... FOR JOB`, `SHOW` / `DROP SAVEPOINT`.
//!
//! [`Registry`]: crate::registry::Registry
//! [`Output`]: crate::output::Output

pub mod cursor;
pub mod ddl;
pub mod dml;
pub mod explain;
pub mod flush;
pub mod insert_fast;
pub mod jobs;
pub mod materialized_views;
pub mod replace;
pub mod savepoints;
pub mod show;
pub mod sink;
pub mod streams;
pub mod subscribe;
