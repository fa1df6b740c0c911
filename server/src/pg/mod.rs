//! The Postgres wire protocol, through the `pgwire` crate.
//!
//! - [`handler`]: simple and extended query protocol, startup, cancel.
//! - [`encode`]: Arrow batches to DataRows (through `arrow-pg`).

pub mod encode;
pub mod handler;

pub use handler::WeirHandlers;
