//! # weir-runtime: where Weir's work runs
//!
//! The runtime owns the threads that do CPU-heavy query work and the vocabulary
//! that streaming operators exchange. It knows nothing about SQL text: the
//! planner hands it DataFusion physical plans (bounded queries) and, for
//! continuous queries, stream plans built from the operators here.
//!
//! ```text
//!   server (connection threads)            runtime (worker threads)
//!   ──────────────────────────             ────────────────────────
//!   Executor::run(plan a query)  ───────>  plans on a big-stack worker
//!   Executor::execute(plan)      ───────>  drives the RecordBatch stream
//!        <── bounded channel of batches ── (backpressure: a slow client
//!                                           stalls the producer, not memory)
//! ```
//!
//! # Layout
//! - [`executor`]: the dedicated worker runtime; panics become errors, never
//!   a dead server.
//! - [`message`]: `Message::{Batch, Watermark, Barrier}`, what streaming
//!   operators exchange.
//! - [`job`]: running a stream plan: tasks, watermarks, barriers.
//! - [`failure`]: how a job fails: one reason with its class, every task
//!   stopped, panics caught.
//! - [`checkpoint`]: aligned checkpoints into an object store, and restore.
//! - [`materialized`]: materialized views: queryable, subscribable sinks.
//! - [`source`]: partitioned, positioned sources.
//! - [`plan`]: a stream plan: source, operators, aggregate, sink.
//! - [`operators`]: the stream operators.
//! - [`metrics`]: late rows and job counters.
//! - [`windows`]: window math shared by batch queries and stream operators.
//! - [`failpoint`]: named crash points for crash tests.
//! - [`error`]: this crate's error type.

pub mod checkpoint;
pub mod error;
pub mod executor;
pub mod failpoint;
pub mod failure;
pub mod job;
pub mod materialized;
pub mod message;
pub mod metrics;
pub mod operators;
pub mod plan;
pub mod progress;
pub mod sink;
pub mod source;
pub mod windows;

pub use error::{Result, RuntimeError};
pub use executor::Executor;
pub use message::{Barrier, Message};
