//! # weir-connectors: how data gets in and out of Weir
//!
//! A connector turns an outside system into something the engine can read or
//! write. For bounded data that is a DataFusion `TableProvider` (the planner
//! scans it like any table); for streams it will be a partitioned source that
//! emits `Message`s and tracks its offsets (see `weir_runtime::message`).
//!
//! ```text
//!   WITH (connector = 'file', path = 'data/*.csv', format = 'csv', header = 'true')
//!        │  ConnectorOptions::parse        (validated, typed options)
//!        v
//!   FileSpec ── file::open_table ──> ListingTable (DataFusion scan: csv/json/parquet)
//!
//!   read_csv('...') / read_json('...') / read_parquet('...')
//!        └── table_functions ──> the same FileSpec path, options as named args
//! ```
//!
//! # Layout
//! - [`options`]: the `WITH (...)` option bag, and the errors for bad options.
//! - [`file`]: files on disk (csv, newline-delimited json, parquet; globs).
//! - [`file_sink`]: a view's rows written to files, exactly once.
//! - [`stream`]: a stream's connector as a table and as a streaming source.
//! - [`nexmark`]: the Nexmark generator (person, auction, bid).
//! - [`datagen`]: rows made up from declared columns.
//! - [`kafka`]: topics as streams (offsets in checkpoints) and as sinks.
//! - [`timestamps`]: a fast path for CSV timestamp text.
//! - [`table_functions`]: `read_csv`, `read_json`, `read_parquet`.
//! - [`table_store`]: tables Weir owns: the write-ahead log, rows, index.
//! - [`copy_format`]: COPY text and csv data, parsed into Arrow.
//! - [`error`]: this crate's error type.

pub mod copy_format;
pub mod datagen;
pub mod error;
pub mod file;
pub mod file_sink;
pub mod kafka;
pub mod nexmark;
pub mod options;
pub mod stream;
pub mod table_functions;
pub mod table_store;
pub mod timestamps;

pub use error::{ConnectorError, Result};
pub use file::{FileFormatKind, FileSpec};
pub use options::ConnectorOptions;
