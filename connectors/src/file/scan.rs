//! CSV and JSON-lines files read record by record, so that a bad record is
//! met where it is (file and line) and handled by the table's `on_error`
//! policy instead of failing the whole scan with no place named.
//!
//! ```text
//!   files (listed, sorted, dealt to partitions: at each scan for a
//!          query, once per job for a stream, see `splits.rs`)
//!     │ object store chunks
//!     v
//!   records::Splitter ── records with their line numbers, in blocks
//!     v
//!   decode::RecordDecoder ── good rows as one batch │ bad records
//!     v                                             v
//!   the scan's batches              bad_rows::BadRows: fail | skip | dead letter
//! ```
//!
//! Parquet files are binary and self-describing: they stay with
//! DataFusion's listing table (see `file/mod.rs`).
//!
//! # Correctness
//! Files are listed in path order and dealt to partitions the same way at
//! every scan. A stream's job does not rely on it: its checkpoints record
//! the files each partition still reads (`splits.rs`).

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::object_store::path::Path as StorePath;
use datafusion::object_store::{ObjectStore, ObjectStoreExt};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::StreamExt;
use futures::stream::BoxStream;
use weir_runtime::source::Split;

use super::bad_rows::BadRows;
use super::decode::RecordDecoder;
use super::records::Splitter;
use super::splits::{Dealing, SplitScan, deal, list};
use crate::opened_stream::ReadCounter;

/// Decode once this many bytes of records are waiting (besides a full
/// batch of records).
const BLOCK_BYTES: usize = 4 << 20;

/// How much of a file one fetch reads.
const PIECE_BYTES: u64 = 4 << 20;

/// Pieces fetched ahead of the one being decoded.
const PIECES_AHEAD: usize = 2;

/// A record longer than this is bad, whatever the policy: it would
/// otherwise be held in memory whole.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// CSV or JSON-lines files as a table.
#[derive(Debug)]
pub struct CheckedFiles {
    url: ListingTableUrl,
    /// Files in a folder must end so; a file or a glob names its own.
    extension: String,
    header: bool,
    decoder: Arc<RecordDecoder>,
    bad_rows: BadRows,
}

impl CheckedFiles {
    /// Files at `url` decoded by `decoder`, skipping a header line per file
    /// when `header`, bad records handled by `bad_rows`.
    pub fn new(
        url: ListingTableUrl,
        extension: String,
        header: bool,
        decoder: RecordDecoder,
        bad_rows: BadRows,
    ) -> Self {
        Self {
            url,
            extension,
            header,
            decoder: Arc::new(decoder),
            bad_rows,
        }
    }

    /// The table's `on_error` policy and its counter.
    pub fn bad_rows(&self) -> &BadRows {
        &self.bad_rows
    }
}

#[async_trait::async_trait]
impl TableProvider for CheckedFiles {
    fn schema(&self) -> SchemaRef {
        self.decoder.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let store = state.runtime_env().object_store(&self.url)?;
        let dealt = deal(
            self.splits(state).await?,
            state.config().target_partitions(),
            Dealing::RoundRobin,
        );
        let batch_size = state.config().batch_size();
        let partitions = dealt
            .into_iter()
            .map(|splits| {
                let files = splits
                    .remaining
                    .iter()
                    .map(|split| parse_location(&split.id))
                    .collect::<DfResult<_>>()?;
                Ok(
                    Arc::new(self.partition(files, store.clone(), batch_size, None))
                        as Arc<dyn PartitionStream>,
                )
            })
            .collect::<DfResult<_>>()?;
        Ok(Arc::new(StreamingTableExec::try_new(
            self.schema(),
            partitions,
            projection,
            [],
            false,
            limit,
        )?))
    }
}

impl CheckedFiles {
    /// The files, listed now in path order, one split each.
    pub(crate) async fn splits(&self, state: &dyn Session) -> DfResult<Vec<Split>> {
        Ok(list(state, &self.url, &self.extension)
            .await?
            .into_iter()
            .map(|meta| super::splits::split_of(&meta, None))
            .collect())
    }

    /// How a job's source reads one of the files.
    pub(crate) fn split_scan(&self, state: &dyn Session) -> DfResult<Arc<dyn SplitScan>> {
        Ok(Arc::new(CheckedSplits {
            files: CheckedFiles {
                url: self.url.clone(),
                extension: self.extension.clone(),
                header: self.header,
                decoder: self.decoder.clone(),
                bad_rows: self.bad_rows.clone(),
            },
            store: state.runtime_env().object_store(&self.url)?,
            batch_size: state.config().batch_size(),
        }))
    }

    /// A partition reading `files` one after the other.
    fn partition(
        &self,
        files: Vec<StorePath>,
        store: Arc<dyn ObjectStore>,
        batch_size: usize,
        read: Option<Arc<ReadCounter>>,
    ) -> FilePartition {
        FilePartition {
            files,
            store,
            header: self.header,
            decoder: self.decoder.clone(),
            bad_rows: self.bad_rows.clone(),
            batch_size,
            read,
        }
    }
}

/// A split's path as the object store names it.
fn parse_location(id: &str) -> DfResult<StorePath> {
    StorePath::parse(id).map_err(|e| DataFusionError::External(Box::new(e)))
}

/// CSV or JSON-lines files read one at a time, for a job's source
/// (`file/splits.rs`).
#[derive(Debug)]
struct CheckedSplits {
    files: CheckedFiles,
    store: Arc<dyn ObjectStore>,
    batch_size: usize,
}

#[async_trait::async_trait]
impl SplitScan for CheckedSplits {
    async fn open(
        &self,
        split: &Split,
        task: Arc<TaskContext>,
        read: &Arc<ReadCounter>,
    ) -> DfResult<SendableRecordBatchStream> {
        let partition = self.files.partition(
            vec![parse_location(&split.id)?],
            self.store.clone(),
            self.batch_size,
            Some(read.clone()),
        );
        Ok(partition.execute(task))
    }
}

/// The files one partition reads, one after the other.
#[derive(Debug)]
struct FilePartition {
    files: Vec<StorePath>,
    store: Arc<dyn ObjectStore>,
    header: bool,
    decoder: Arc<RecordDecoder>,
    bad_rows: BadRows,
    batch_size: usize,
    /// Where its readers count what they fetch, if anywhere.
    read: Option<Arc<ReadCounter>>,
}

impl PartitionStream for FilePartition {
    fn schema(&self) -> &SchemaRef {
        // The decoder's schema is the table's; kept here to hand out a
        // reference.
        self.decoder.schema_ref()
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let reading = Reading {
            files: self.files.clone().into(),
            store: self.store.clone(),
            header: self.header,
            decoder: self.decoder.clone(),
            bad_rows: self.bad_rows.clone(),
            batch_size: self.batch_size.max(1),
            read: self.read.clone(),
            current: None,
            out: VecDeque::new(),
            failed: false,
        };
        let stream = futures::stream::unfold(reading, |mut reading| async move {
            let next = reading.next().await?;
            if next.is_err() {
                reading.failed = true;
            }
            Some((next, reading))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.decoder.schema(), stream))
    }
}

/// One file being read.
struct OpenFile {
    name: String,
    bytes: BoxStream<'static, datafusion::object_store::Result<bytes::Bytes>>,
    splitter: Splitter,
    /// Bytes pushed into the splitter and not yet counted as read.
    unreported: u64,
    /// Its first record is a header still to skip.
    header: bool,
}

/// A partition's read, step by step.
struct Reading {
    files: VecDeque<StorePath>,
    store: Arc<dyn ObjectStore>,
    header: bool,
    decoder: Arc<RecordDecoder>,
    bad_rows: BadRows,
    batch_size: usize,
    read: Option<Arc<ReadCounter>>,
    current: Option<OpenFile>,
    /// Decoded batches to hand out, each with the file bytes it stands
    /// for (counted as read when it is handed out, so progress follows
    /// the rows, not the fetches, which run pieces ahead).
    out: VecDeque<(RecordBatch, u64)>,
    failed: bool,
}

impl Reading {
    /// The next batch, an error (the last item), or the end.
    async fn next(&mut self) -> Option<DfResult<RecordBatch>> {
        loop {
            if let Some((batch, bytes)) = self.out.pop_front() {
                if let Some(read) = &self.read {
                    read.fetched(bytes);
                }
                return Some(Ok(batch));
            }
            if self.failed {
                return None;
            }
            if self.current.is_none() {
                let location = self.files.pop_front()?;
                let size = match self.store.head(&location).await {
                    Ok(meta) => meta.size,
                    Err(e) => return Some(Err(e.into())),
                };
                self.current = Some(OpenFile {
                    name: display_name(&location),
                    bytes: pieces(self.store.clone(), location.clone(), size),
                    unreported: 0,
                    splitter: Splitter::new(
                        self.decoder.syntax().quote(),
                        self.decoder.max_record_bytes(),
                    ),
                    header: self.header,
                });
            }
            let Some(file) = self.current.as_mut() else {
                continue;
            };
            match file.bytes.next().await {
                Some(Ok(piece)) => {
                    file.unreported += piece.len() as u64;
                    file.splitter.push(&piece);
                    let full = file.splitter.ready_records() >= self.batch_size
                        || file.splitter.ready_bytes() >= BLOCK_BYTES;
                    if full && let Err(e) = self.decode_ready() {
                        return Some(Err(e));
                    }
                }
                Some(Err(e)) => return Some(Err(e.into())),
                None => {
                    file.splitter.finish();
                    let decoded = self.decode_ready();
                    self.current = None;
                    if let Some(read) = &self.read {
                        read.file_done();
                    }
                    if let Err(e) = decoded {
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// Decode the current file's ready records into `out`, in batches of
    /// at most `batch_size` rows.
    fn decode_ready(&mut self) -> DfResult<()> {
        let Some(file) = self.current.as_mut() else {
            return Ok(());
        };
        let mut block = file.splitter.take();
        let mut bytes = std::mem::take(&mut file.unreported);
        if file.header && !block.records.is_empty() {
            block.records.remove(0);
            file.header = false;
        }
        let batch = if block.records.is_empty() {
            None
        } else {
            let (batch, bad) = self.decoder.decode(&block);
            self.bad_rows.handle(&file.name, &block, &bad)?;
            batch.filter(|b| b.num_rows() > 0)
        };
        file.splitter.recycle(block);
        let Some(batch) = batch else {
            // Nothing to hand out: the bytes are read now.
            if let Some(read) = &self.read {
                read.fetched(bytes);
            }
            return Ok(());
        };
        let rows = batch.num_rows();
        let mut offset = 0;
        while offset < rows {
            let len = self.batch_size.min(rows - offset);
            // Each slice its share of the bytes; the last the rest.
            let share = if offset + len == rows {
                bytes
            } else {
                bytes * len as u64 / (rows - offset) as u64
            };
            bytes -= share;
            self.out.push_back((batch.slice(offset, len), share));
            offset += len;
        }
        Ok(())
    }
}

/// The bytes of the file at `location` (of `size` bytes), in pieces of
/// [`PIECE_BYTES`], the next [`PIECES_AHEAD`] fetched while the decoder
/// works on the current one. The object store's own stream of a local file
/// reads 8 KiB per blocking task, so an 800 MB file cost 100,000 trips
/// through tokio's blocking pool; in pieces it costs 200.
fn pieces(
    store: Arc<dyn ObjectStore>,
    location: StorePath,
    size: u64,
) -> BoxStream<'static, datafusion::object_store::Result<bytes::Bytes>> {
    let ranges = (0..size)
        .step_by(PIECE_BYTES as usize)
        .map(move |start| start..(start + PIECE_BYTES).min(size));
    futures::stream::iter(ranges)
        .map(move |range| {
            let (store, location) = (store.clone(), location.clone());
            async move { store.get_range(&location, range).await }
        })
        .buffered(PIECES_AHEAD)
        .boxed()
}

/// A file's name in messages: relative to the server's working directory
/// when it is under it (as SQL usually names it), else absolute.
fn display_name(location: &StorePath) -> String {
    let absolute = std::path::PathBuf::from(format!("/{location}"));
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            absolute
                .strip_prefix(cwd)
                .ok()
                .map(|p| p.display().to_string())
        })
        .unwrap_or_else(|| absolute.display().to_string())
}
