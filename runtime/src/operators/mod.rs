//! Stream operators. Each works on whole `RecordBatch`es.
//!
//! - [`stateless`]: filter, project, unnest.
//! - [`aggregate`]: keyed aggregates over windows (tumble, hop, cumulate,
//!   session) or plain groups, emitting on window close or as a changelog.
//! - [`join`]: equi-joins of two inputs, either of them updating.
//! - [`exchange`]: hash-partitioning rows to the join and aggregate workers.

pub mod aggregate;
pub mod exchange;
pub mod join;
pub mod stateless;

/// Name of the column that carries the change kind in a changelog batch:
/// `1` inserts the row, `-1` deletes it.
pub const OP_COLUMN: &str = "__weir_op";
