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
//! A continuous query runs as a job (`job::start`): one task per source
//! partition, a stage of workers per stateful operator, one sink task.
//!
//! ```text
//!   source partitions ──exchange──> join workers ──exchange──> aggregate workers ──> sink task ──> view
//!   (source_task.rs)   by key      (operators/join.rs)        (operators/aggregate/)  (sink_task.rs)
//!        └───── barriers and watermarks flow with the rows; each task aligns them (aligner.rs)
//! ```
//!
//! # Layout
//! - [`executor`]: the dedicated worker runtime; panics become errors, never
//!   a dead server.
//! - [`message`]: `Message::{Batch, Watermark, Barrier, SnapshotEnd}`, what streaming
//!   tasks exchange.
//! - [`plan`]: a stream plan (the planner/runtime contract): its sources or
//!   join, aggregate, stateless operators.
//! - [`job`]: running a stream plan. Start with `job/mod.rs` (`start`), then
//!   `topology.rs` (which tasks and channels a plan needs), `aligner.rs`
//!   (barriers and watermarks over several upstreams) and the three tasks
//!   (`source_task.rs`, `worker.rs`, `sink_task.rs`).
//! - [`operators`]: the stream operators and their contract,
//!   [`operators::StreamOperator`]: `join.rs`, `aggregate/` (`window.rs`,
//!   `updating.rs`, `session.rs`), `stateless.rs`, `exchange.rs`,
//!   `changes.rs` (the op column: what "changelog" means).
//! - [`failure`]: how a job fails: one reason with its class, every task
//!   stopped, panics caught.
//! - [`progress`]: what a job has done so far.
//! - [`proctime`]: processing time: the clock that stamps rows entering a
//!   job (`PROCTIME()`) and paces its processing-time watermark.
//! - [`sink`]: where a job's output goes.
//! - [`checkpoint`]: aligned checkpoints into an object store, the
//!   coordinator, and restore.
//! - [`materialized`]: materialized views: queryable, subscribable sinks;
//!   `materialized/feed.rs`: what views reading a view follow (its batches
//!   and its watermark).
//! - [`source`]: partitioned, positioned sources.
//! - [`view_source`]: a materialized view read as a stream by another view,
//!   with its watermark when its rows have one.
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
pub mod proctime;
pub mod progress;
pub mod sink;
pub mod source;
pub mod view_source;
pub mod windows;

pub use error::{Result, RuntimeError};
pub use executor::Executor;
pub use message::{Barrier, Message};
