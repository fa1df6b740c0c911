//! # weir-connectors: how data gets in and out of Weir
//!
//! A connector turns an outside system into something SQL can use: a
//! stream (a partitioned source of `Message`s that tracks its positions for
//! checkpoints), a table (a DataFusion `TableProvider` the planner scans),
//! or a sink (where a view's changes are written, committed with its job's
//! checkpoints). Every connector is listed once, in [`registry`], which
//! `CREATE STREAM`, `CREATE TABLE` and `CREATE SINK` all go through. Start
//! reading there, then at one connector ([`file`]).
//!
//! ```text
//!   CREATE STREAM / TABLE / SINK ... WITH (connector = 'file', path = 'data/*.csv', format = 'csv')
//!        │  registry: find the connector, check it can be that, check the options
//!        v
//!   Connector::open_stream ──> OpenedStream (a table + a source per job) ──> the job's sources
//!   Connector::open_table  ──> TableProvider (file: DataFusion's ListingTable)
//!   Connector::open_sink   ──> the job's output (FileSink, KafkaSink)
//!
//!   read_csv('...') / read_json('...') / read_parquet('...')
//!        └── table_functions ──> the file connector's FileSpec, options as named args
//!
//!   CREATE TABLE t (...) / INSERT / COPY ──> table_store (tables Weir owns: log, rows, index)
//! ```
//!
//! Words: a *sink* is always a `CREATE SINK` and the connector end that
//! writes it (`FileSink`, `KafkaSink`, which implement the runtime's
//! `job::Sink`, the output of a view's job); a *stream* is a `CREATE
//! STREAM`, opened as an [`OpenedStream`].
//!
//! # Layout
//! - [`registry`]: the `Connector` trait and the list of connectors by name.
//! - [`options`]: the `WITH (...)` option bag, consumed as it is read.
//! - [`paths`]: which files SQL may name (`allowed_paths`), checked once for all.
//! - [`file`]: files on disk (csv, newline-delimited json, parquet; globs)
//!   as tables, bounded streams and sinks (`file/sink.rs`).
//! - [`nexmark`]: the Nexmark generator (person, auction, bid), a stream.
//! - [`datagen`]: rows made up from declared columns, a stream.
//! - [`kafka`]: topics as streams (offsets in checkpoints) and as sinks.
//! - [`opened_stream`]: a stream's connector, opened: its table and sources.
//! - [`generator`]: what the generators share (seekable partitions, pacing).
//! - [`timestamps`]: a fast path for CSV timestamp text.
//! - [`table_functions`]: `read_csv`, `read_json`, `read_parquet`.
//! - [`table_store`]: tables Weir owns: the write-ahead log, rows, index.
//! - [`copy_format`]: COPY text and csv data, parsed into Arrow.
//! - [`error`]: this crate's error type.

pub mod copy_format;
pub mod datagen;
pub mod error;
pub mod file;
pub mod generator;
pub mod kafka;
pub mod nexmark;
pub mod opened_stream;
pub mod options;
pub mod paths;
pub mod registry;
pub mod table_functions;
pub mod table_store;
pub mod timestamps;

pub use error::{ConnectorError, Result};
pub use file::{FileFormatKind, FileSpec};
pub use opened_stream::OpenedStream;
pub use options::ConnectorOptions;
