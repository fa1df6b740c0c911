//! One file per statement family.
//!
//! - [`ddl`]: `CREATE TABLE`, `CREATE VIEW`, `DROP`, and replaying the catalog on start.
//! - [`show`]: `SHOW ...`, transactions: statements Weir answers itself.

pub mod ddl;
pub mod show;
