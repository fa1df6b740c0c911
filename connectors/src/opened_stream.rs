//! A stream's connector, opened: its rows as a continuous source, and (when
//! bounded) as a table for ad-hoc queries.
//!
//! Every stream is first a DataFusion `TableProvider` (files: a listing
//! table; generators: a streaming table of partition streams; Kafka: an
//! infinite table nobody scans). Its sources come from a [`SourceFactory`]
//! the connector hands in; the default one, [`ScanSources`], scans the table
//! once and reads each output partition as one source partition, so batch
//! and stream read rows the same way. This module knows no connector by
//! name: each connector builds its [`OpenedStream`] (see `registry`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use futures::StreamExt;
use weir_runtime::metrics::RuntimeMetrics;
use weir_runtime::source::{ReadProgress, Source, SourcePosition, SourceReader};

use crate::error::Result;

/// A stream's connector, opened.
#[derive(Debug, Clone)]
pub struct OpenedStream {
    table: Arc<dyn TableProvider>,
    bounded: bool,
    /// The event-time column a connector knows by itself (Nexmark's
    /// `date_time`), used when the stream declares no watermark.
    default_time_column: Option<String>,
    /// Makes a source per job.
    sources: Arc<dyn SourceFactory>,
}

/// How a connector makes a streaming source for each job over its stream.
#[async_trait]
pub trait SourceFactory: fmt::Debug + Send + Sync {
    /// A source over the stream's rows, for one job.
    async fn source(&self, state: &dyn Session) -> Result<Arc<dyn Source>>;

    /// Report the stream's metrics as `stream` into the server's (see
    /// [`OpenedStream::observe`]); a connector that decodes nothing and
    /// knows no lag has none to report.
    fn observe(&mut self, _stream: &str, _metrics: &RuntimeMetrics) {}
}

impl OpenedStream {
    /// A stream of `table`'s rows (ending when `bounded`), whose sources
    /// come from `sources`.
    pub fn new(
        table: Arc<dyn TableProvider>,
        bounded: bool,
        sources: Arc<dyn SourceFactory>,
    ) -> Self {
        Self {
            table,
            bounded,
            default_time_column: None,
            sources,
        }
    }

    /// A stream whose sources scan `table` (described as `description` in
    /// EXPLAIN): a reopened partition skips the rows it had read.
    pub fn scanning(table: Arc<dyn TableProvider>, bounded: bool, description: String) -> Self {
        let sources = Arc::new(ScanSources {
            table: table.clone(),
            bounded,
            description,
        });
        Self::new(table, bounded, sources)
    }

    /// The same stream, with an event-time column of its own.
    pub fn with_time_column(mut self, column: &str) -> Self {
        self.default_time_column = Some(column.to_string());
        self
    }

    /// Report the stream's metrics as `stream` into the server's: its
    /// undecodable records (`weir_bad_rows_total`) and, for Kafka, each
    /// partition's lag (`weir_source_lag`). Call before the first job.
    pub fn observe(&mut self, stream: &str, metrics: &RuntimeMetrics) {
        if let Some(sources) = Arc::get_mut(&mut self.sources) {
            sources.observe(stream, metrics);
        }
    }

    /// The stream's columns.
    pub fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    /// Does it end?
    pub fn bounded(&self) -> bool {
        self.bounded
    }

    /// The rows as a table (for `SELECT`; only meaningful when bounded).
    pub fn table(&self) -> Arc<dyn TableProvider> {
        self.table.clone()
    }

    /// The event-time column the connector knows by itself.
    pub fn default_time_column(&self) -> Option<&str> {
        self.default_time_column.as_deref()
    }

    /// A streaming source over the stream's rows.
    pub async fn source(&self, state: &dyn Session) -> Result<Arc<dyn Source>> {
        self.sources.source(state).await
    }
}

/// Sources that scan a table: one source partition per output partition of
/// the scan.
#[derive(Debug)]
pub struct ScanSources {
    table: Arc<dyn TableProvider>,
    bounded: bool,
    description: String,
}

#[async_trait]
impl SourceFactory for ScanSources {
    async fn source(&self, state: &dyn Session) -> Result<Arc<dyn Source>> {
        let plan = self.table.scan(state, None, &[], None).await?;
        Ok(scan_source(
            self.table.schema(),
            plan,
            state.task_ctx(),
            self.bounded,
            self.description.clone(),
        ))
    }
}

/// A source reading the partitions of `plan` (a scan of a table of
/// `schema`).
pub fn scan_source(
    schema: SchemaRef,
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    bounded: bool,
    description: String,
) -> Arc<dyn Source> {
    Arc::new(ScanSource {
        schema,
        partitions: plan.output_partitioning().partition_count(),
        plan,
        task,
        bounded,
        description,
    })
}

/// How far one file source's readers are through its files: bytes fetched
/// and files read to their end, of what the source was dealt. The file
/// readers bump it (a relaxed add per chunk fetched); the job's progress
/// reads it (`SHOW JOBS`' `progress`).
///
/// A restored source starts it at what its checkpoint's partitions had
/// done (files and bytes of the files they had read whole). Bytes are
/// counted as fetched, so the file a restored partition reopens counts
/// again the bytes it skips: the figure reaches the total at the end
/// either way.
///
/// Rows are counted by position instead: each partition's reader sets how
/// many rows of its partition it is past (skipped ones included), so the
/// figure is right after a reopen too; the total is known only where the
/// files say it (Parquet footers).
#[derive(Debug, Default)]
pub struct ReadCounter {
    bytes_read: AtomicU64,
    bytes_total: AtomicU64,
    files_read: AtomicU64,
    files_total: AtomicU64,
    rows_total: AtomicU64,
    /// Rows each partition is past, by partition.
    rows_at: parking_lot::Mutex<Vec<u64>>,
}

impl ReadCounter {
    /// `files` more files, of `bytes` bytes together, to read.
    pub fn listed(&self, files: u64, bytes: u64) {
        self.files_total.fetch_add(files, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` more bytes fetched.
    pub fn fetched(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    /// One more file read to its end.
    pub fn file_done(&self) {
        self.files_read.fetch_add(1, Ordering::Relaxed);
    }

    /// The files hold `rows` rows.
    pub fn rows_listed(&self, rows: u64) {
        self.rows_total.fetch_add(rows, Ordering::Relaxed);
    }

    /// Partition `partition` is past its first `rows` rows.
    pub(crate) fn rows_at(&self, partition: usize, rows: u64) {
        let mut at = self.rows_at.lock();
        if at.len() <= partition {
            at.resize(partition + 1, 0);
        }
        at[partition] = rows;
    }

    /// The figures now.
    pub fn progress(&self) -> ReadProgress {
        ReadProgress {
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            files_read: self.files_read.load(Ordering::Relaxed),
            files_total: self.files_total.load(Ordering::Relaxed),
            rows_read: self.rows_at.lock().iter().sum(),
            rows_total: self.rows_total.load(Ordering::Relaxed),
        }
    }
}

/// A source that reads the partitions of a DataFusion scan.
#[derive(Debug)]
struct ScanSource {
    schema: SchemaRef,
    plan: Arc<dyn ExecutionPlan>,
    partitions: usize,
    task: Arc<TaskContext>,
    bounded: bool,
    description: String,
}

impl Source for ScanSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn partitions(&self) -> usize {
        self.partitions
    }

    fn bounded(&self) -> bool {
        self.bounded
    }

    fn open(
        &self,
        partition: usize,
        from: Option<SourcePosition>,
    ) -> datafusion::common::Result<Box<dyn SourceReader>> {
        let stream = self.plan.execute(partition, self.task.clone())?;
        Ok(Box::new(RowCountReader {
            stream,
            skip: from.map_or(0, |p| p.0),
            read: 0,
        }))
    }

    fn describe(&self) -> String {
        format!("{}, {} partition(s)", self.description, self.partitions)
    }
}

/// Reads a partition's batches; position = rows read, so reopening skips
/// that many rows (a generator's partition starts there instead).
pub(crate) struct RowCountReader {
    stream: SendableRecordBatchStream,
    skip: u64,
    read: u64,
}

impl RowCountReader {
    /// A reader of `stream` whose first row is row `from` of the partition.
    pub(crate) fn starting_at(stream: SendableRecordBatchStream, from: u64) -> Self {
        Self {
            stream,
            skip: 0,
            read: from,
        }
    }
}

#[async_trait]
impl SourceReader for RowCountReader {
    async fn next_batch(&mut self) -> Option<datafusion::common::Result<RecordBatch>> {
        loop {
            let batch = match self.stream.next().await? {
                Ok(batch) => batch,
                Err(e) => return Some(Err(e)),
            };
            let rows = batch.num_rows() as u64;
            self.read += rows;
            if self.skip >= rows {
                self.skip -= rows;
                continue;
            }
            let batch = batch.slice(self.skip as usize, (rows - self.skip) as usize);
            self.skip = 0;
            return Some(Ok(batch));
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition(self.read)
    }
}
