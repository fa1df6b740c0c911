//! One file per statement family.
//!
//! - [`ddl`]: `CREATE TABLE`, `CREATE VIEW`, `DROP`, and replaying the catalog on start.
//! - [`dml`]: tables Weir owns: CREATE TABLE, INSERT, UPDATE, DELETE, COPY.
//! - [`insert_fast`]: INSERT ... VALUES of plain values, without DataFusion.
//! - [`explain`]: `EXPLAIN` as Postgres shapes it.
//! - [`stream`]: streams, materialized views, SUBSCRIBE, FLUSH.
//! - [`cursor`]: `DECLARE ... CURSOR FOR SUBSCRIBE`, `FETCH`, `CLOSE`.
//! - [`sink`]: `CREATE SINK`: a view's rows written out.
//! - [`show`]: `SHOW ...`, transactions: statements Weir answers itself.

pub mod cursor;
pub mod ddl;
pub mod dml;
pub mod explain;
pub mod insert_fast;
pub mod show;
pub mod sink;
pub mod stream;
