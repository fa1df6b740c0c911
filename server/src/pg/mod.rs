//! The Postgres wire protocol, through the `pgwire` crate.
//!
//! - [`handler`]: simple and extended query protocol, startup, cancel.
//! - [`copy`]: COPY text output (for `COPY (SUBSCRIBE ...) TO STDOUT`).
//! - [`encode`]: Arrow batches to DataRows (through `arrow-pg`).

pub mod copy;
pub mod encode;
pub mod handler;

pub use handler::WeirHandlers;
