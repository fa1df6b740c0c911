//! The Postgres wire protocol, through the `pgwire` crate.
//!
//! - [`activity`]: the live backends: cancel, statement_timeout,
//!   `pg_stat_activity`, the connection cap.
//! - [`handler`]: the handlers a connection is served by, startup, cancel,
//!   and a statement's output as a pgwire response.
//! - [`simple`]: the simple query protocol.
//! - [`extended`]: the extended query protocol (Parse, Bind, Describe, Execute).
//! - [`subscribe`]: a `SUBSCRIBE` portal's rows, sent as they come.
//! - [`copy_protocol`]: the COPY sub-protocol, data in and out.
//! - [`copy`]: COPY's text and csv formats for rows sent out.
//! - [`encode`]: Arrow batches to DataRows (through `arrow-pg`).
//! - [`frame_guard`]: every client message checked ([`frame_check`]) before
//!   pgwire decodes it.

pub mod activity;
pub mod copy;
pub mod copy_protocol;
pub mod encode;
pub mod extended;
pub mod frame_check;
pub mod frame_guard;
pub mod handler;
pub mod simple;
pub mod subscribe;

pub use handler::WeirHandlers;
