//! A file stream's source: its files listed once, when the job starts, and
//! dealt to partitions as splits (one split per file); each partition reads
//! its files one after the other, and every checkpoint records the files it
//! still has to read beside its row position. A restored job reads exactly
//! those, whatever the folder holds by then (design 0015).
//!
//! ```text
//!   job start: list (sorted) ──> deal ──> partition p: [part-0, part-2, ..]
//!   barrier:   position (rows past) + Splits { remaining, done.. } ──> manifest
//!   restore:   Manifest::splits_restored ──> SplitSource::with_splits(recorded)
//!              ──> partition p opens remaining[0], skips the rows it had read
//! ```
//!
//! # Correctness
//! - A file whose last row a partition returned is done at once (the reader
//!   reads one batch ahead), so a checkpoint taken after it no longer names
//!   it, and a restore never opens it: it may be removed.
//! - A reader's `next_batch` may be cancelled by a barrier at any await: a
//!   batch counts in its position only once returned.
//! - A file the checkpoint still names that has vanished fails the read,
//!   naming the file; the job's restart policy takes it from there.
//! - Files added to the folder after the job started are not read by it
//!   (as Flink's bounded `FileSource`, which enumerates once): the job's
//!   input is what was there when it started, so every run and restore of
//!   it gives the same answer.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::{Result as DfResult, internal_err};
use datafusion::datasource::listing::{ListingTableUrl, PartitionedFile};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, FileSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::object_store::path::Path as StorePath;
use datafusion::object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use datafusion::physical_plan::ExecutionPlan;
use futures::{StreamExt, TryStreamExt};
use weir_runtime::source::{ReadProgress, Source, SourcePosition, SourceReader, Split, Splits};

use crate::opened_stream::ReadCounter;

/// How one split (a file) is read from its start.
#[async_trait::async_trait]
pub(crate) trait SplitScan: fmt::Debug + Send + Sync {
    /// The rows of `split`, in order; what is fetched is counted in `read`.
    async fn open(
        &self,
        split: &Split,
        task: Arc<TaskContext>,
        read: &Arc<ReadCounter>,
    ) -> DfResult<SendableRecordBatchStream>;
}

/// How a format's files are dealt to partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dealing {
    /// One at a time, in path order (CSV and JSON).
    RoundRobin,
    /// In runs of consecutive paths, as DataFusion's listing table groups
    /// them (`FileGroup::split_files`; Parquet went through it before
    /// splits were recorded, so an old checkpoint's row counts still fall
    /// where they did).
    Runs,
}

/// What a job's progress counts for a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counting {
    /// Bytes fetched and files read (CSV, JSON: their readers fetch them all).
    Bytes,
    /// Rows, of the total the files' footers give (Parquet: its reader
    /// fetches only what it needs, so bytes say little).
    Rows,
}

/// The files at `url` ending in `extension`, in path order.
pub(crate) async fn list(
    state: &dyn Session,
    url: &ListingTableUrl,
    extension: &str,
) -> DfResult<Vec<ObjectMeta>> {
    let store = state.runtime_env().object_store(url)?;
    let mut files: Vec<ObjectMeta> = url
        .list_all_files(state, store.as_ref(), extension)
        .await?
        .try_collect()
        .await?;
    files.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(files)
}

/// `files` dealt to at most `partitions` partitions (at least one, which
/// reads nothing when there is no file).
pub(crate) fn deal(files: Vec<Split>, partitions: usize, dealing: Dealing) -> Vec<Splits> {
    let count = partitions.min(files.len()).max(1);
    let mut groups: Vec<Vec<Split>> = match dealing {
        Dealing::RoundRobin => {
            let mut groups = vec![Vec::new(); count];
            for (i, file) in files.into_iter().enumerate() {
                groups[i % count].push(file);
            }
            groups
        }
        Dealing::Runs => {
            let run = files.len().div_ceil(count).max(1);
            files.chunks(run).map(<[Split]>::to_vec).collect()
        }
    };
    if groups.is_empty() {
        groups.push(Vec::new());
    }
    groups.into_iter().map(Splits::fresh).collect()
}

/// The split of the file `meta` describes, as listed now: its size and
/// modification time recorded, to tell a rewrite apart on restore.
pub(crate) fn split_of(meta: &ObjectMeta, rows: Option<u64>) -> Split {
    Split {
        id: meta.location.to_string(),
        bytes: meta.size,
        rows,
        modified_ms: Some(meta.last_modified.timestamp_millis()),
    }
}

/// How a file stream's files are read, whatever each partition is dealt:
/// the same for a job's first run and for every restore of it.
#[derive(Debug, Clone)]
pub(crate) struct FileReading {
    /// The rows' columns.
    pub(crate) schema: SchemaRef,
    /// How one file is read.
    pub(crate) scan: Arc<dyn SplitScan>,
    /// Where the files are: asked, on restore, whether a half-read file is
    /// still the one the checkpoint read.
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The context the reads run in.
    pub(crate) task: Arc<TaskContext>,
    /// The files and format, for EXPLAIN and the plan's signature.
    pub(crate) description: String,
    /// What the job's progress counts.
    pub(crate) counting: Counting,
}

/// A file stream's source for one job: its partitions' splits.
#[derive(Debug)]
pub(crate) struct SplitSource {
    reading: FileReading,
    /// What each partition reads.
    assigned: Vec<Splits>,
    /// How far its readers are, for the job's progress.
    read: Arc<ReadCounter>,
}

impl SplitSource {
    /// A source whose partition `p` reads `assigned[p]` as `reading` says.
    pub(crate) fn new(reading: FileReading, assigned: Vec<Splits>) -> Self {
        let read = Arc::new(ReadCounter::default());
        // What was done before a restore counts as read, so that the
        // figures reach their totals at the end of a restored run too.
        for (partition, splits) in assigned.iter().enumerate() {
            read.rows_at(partition, splits.done_rows);
        }
        match reading.counting {
            Counting::Bytes => {
                let files = assigned
                    .iter()
                    .map(|s| s.done + s.remaining.len() as u64)
                    .sum();
                let bytes = assigned
                    .iter()
                    .map(|s| s.done_bytes + s.remaining.iter().map(|f| f.bytes).sum::<u64>())
                    .sum();
                read.listed(files, bytes);
                read.fetched(assigned.iter().map(|s| s.done_bytes).sum());
                for _ in 0..assigned.iter().map(|s| s.done).sum::<u64>() {
                    read.file_done();
                }
            }
            Counting::Rows => {
                let rows: Option<u64> = assigned
                    .iter()
                    .flat_map(|s| s.remaining.iter().map(|f| f.rows))
                    .sum();
                if let Some(rows) = rows {
                    read.rows_listed(rows + assigned.iter().map(|s| s.done_rows).sum::<u64>());
                }
            }
        }
        Self {
            reading,
            assigned,
            read,
        }
    }
}

impl Source for SplitSource {
    fn schema(&self) -> SchemaRef {
        self.reading.schema.clone()
    }

    fn partitions(&self) -> usize {
        self.assigned.len()
    }

    fn bounded(&self) -> bool {
        true
    }

    fn open(
        &self,
        partition: usize,
        from: Option<SourcePosition>,
    ) -> DfResult<Box<dyn SourceReader>> {
        let Some(splits) = self.assigned.get(partition) else {
            return internal_err!("{} has no partition {partition}", self.describe());
        };
        Ok(Box::new(SplitReader {
            scan: self.reading.scan.clone(),
            store: self.reading.store.clone(),
            task: self.reading.task.clone(),
            read: self.read.clone(),
            partition,
            files: splits.remaining.clone(),
            next: 0,
            done: Splits {
                remaining: Vec::new(),
                ..splits.clone()
            },
            stream: None,
            in_split: 0,
            // A checkpoint without splits (written before they were
            // recorded) counts rows from the partition's start: they are
            // skipped across its files, as they were then.
            skip_to: from.map_or(0, |p| p.0),
            ready: None,
            ahead: None,
            ended: false,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "{}, {} partition(s)",
            self.reading.description,
            self.assigned.len()
        )
    }

    /// The files and format without the partition count: a file removed or
    /// added since a checkpoint changes the count a new listing deals, but
    /// not what the checkpoint's state means.
    fn identity(&self) -> String {
        self.reading.description.clone()
    }

    fn read_progress(&self) -> Option<ReadProgress> {
        Some(self.read.progress())
    }

    fn with_splits(&self, splits: Vec<Splits>) -> DfResult<Arc<dyn Source>> {
        Ok(Arc::new(SplitSource::new(self.reading.clone(), splits)))
    }
}

/// Reads one partition's files in order; its position counts the rows of
/// the partition it is past, the done files' included.
///
/// Cancel-safe, as the source task needs (a barrier cancels a pending
/// `next_batch`): its state changes only between awaits, and a batch is
/// counted only as it is returned.
struct SplitReader {
    scan: Arc<dyn SplitScan>,
    store: Arc<dyn ObjectStore>,
    task: Arc<TaskContext>,
    read: Arc<ReadCounter>,
    partition: usize,
    /// The files it had to read when opened; `files[next]` is the current.
    files: Vec<Split>,
    next: usize,
    /// The files done, counted (`remaining` unused).
    done: Splits,
    /// The current file's rows, once opened.
    stream: Option<SendableRecordBatchStream>,
    /// Rows of the current file past.
    in_split: u64,
    /// Rows up to this position are dropped (a restore's position).
    skip_to: u64,
    /// The batch to return next (what is left of it after skipping), and
    /// the rows of the current file it takes the partition past.
    ready: Option<(RecordBatch, u64)>,
    /// The current file's next batch, read ahead.
    ahead: Option<DfResult<RecordBatch>>,
    /// The read ahead met the current file's end.
    ended: bool,
}

impl SplitReader {
    fn at(&self) -> u64 {
        self.done.done_rows + self.in_split
    }

    /// The next batch of the current file, opening files as they come and
    /// passing over empty ones; `None` when all are read.
    async fn pull(&mut self) -> Option<DfResult<RecordBatch>> {
        loop {
            if self.stream.is_none() {
                let split = self.files.get(self.next)?;
                // A restore resumes inside this file: it must be the file
                // the checkpoint read, or the recorded row count would
                // point into other rows.
                if self.skip_to > self.at()
                    && let Err(e) = unchanged(self.store.as_ref(), split).await
                {
                    return Some(Err(e));
                }
                match self.scan.open(split, self.task.clone(), &self.read).await {
                    Ok(stream) => self.stream = Some(stream),
                    Err(e) => return Some(Err(e)),
                }
            }
            let stream = self.stream.as_mut()?;
            match stream.next().await {
                Some(item) => return Some(item),
                None => self.split_done(),
            }
        }
    }

    /// The current file is read to its end: count it done.
    fn split_done(&mut self) {
        self.stream = None;
        self.ended = false;
        let Some(split) = self.files.get(self.next) else {
            return;
        };
        self.done.done += 1;
        self.done.done_rows += self.in_split;
        self.done.done_bytes += split.bytes;
        self.in_split = 0;
        self.next += 1;
    }
}

#[async_trait::async_trait]
impl SourceReader for SplitReader {
    async fn next_batch(&mut self) -> Option<DfResult<RecordBatch>> {
        loop {
            if self.ready.is_some() {
                // Read the current file's next batch ahead first: when this
                // is its last, the file is done as this batch is returned,
                // before the next barrier could name it. A cancelled read
                // ahead changed nothing and is made again.
                if self.ahead.is_none()
                    && !self.ended
                    && let Some(stream) = self.stream.as_mut()
                {
                    match stream.next().await {
                        Some(item) => self.ahead = Some(item),
                        None => self.ended = true,
                    }
                }
                let (batch, rows) = self.ready.take()?;
                self.in_split += rows;
                if self.ended {
                    self.split_done();
                }
                self.read.rows_at(self.partition, self.at());
                return Some(Ok(batch));
            }
            let item = match self.ahead.take() {
                Some(item) => item,
                None => self.pull().await?,
            };
            let batch = match item {
                Ok(batch) => batch,
                Err(e) => return Some(Err(e)),
            };
            let start = self.at();
            let rows = batch.num_rows() as u64;
            if start + rows <= self.skip_to {
                // Read before the checkpoint being restored.
                self.in_split += rows;
                self.read.rows_at(self.partition, self.at());
                continue;
            }
            let skip = self.skip_to.saturating_sub(start) as usize;
            self.ready = Some((batch.slice(skip, rows as usize - skip), rows));
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition(self.at())
    }

    fn splits(&self) -> Option<Splits> {
        Some(Splits {
            remaining: self.files[self.next.min(self.files.len())..].to_vec(),
            ..self.done.clone()
        })
    }
}

/// Is the file of `split` still the one that was listed: the same size
/// and, where both are known, the same modification time? A file
/// truncated, appended to or replaced since fails here, naming it, as
/// Flink's `FileSource` would find a different file: resuming it at a
/// recorded row count would skip or repeat rows silently.
async fn unchanged(store: &dyn ObjectStore, split: &Split) -> DfResult<()> {
    let location = StorePath::parse(&split.id)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    let now = store.head(&location).await?;
    let modified = now.last_modified.timestamp_millis();
    let same_time = split.modified_ms.is_none_or(|then| then == modified);
    if now.size == split.bytes && same_time {
        return Ok(());
    }
    Err(datafusion::error::DataFusionError::Execution(format!(
        "file {} changed since the checkpoint being restored: it was {} bytes{} when the job \
         listed it and is {} bytes, modified {} UTC now; the job read part of it and cannot resume \
         inside another file (restore the file, or drop and create the view to read it anew)",
        split.id,
        split.bytes,
        split
            .modified_ms
            .and_then(datafusion::arrow::temporal_conversions::timestamp_ms_to_datetime)
            .map_or(String::new(), |t| format!(", modified {t} UTC")),
        now.size,
        now.last_modified.naive_utc(),
    )))
}

/// Parquet files read one at a time through DataFusion's Parquet scan
/// (projection, row groups and page index as a listing table's).
pub(crate) struct ParquetSplits {
    url: ObjectStoreUrl,
    store: Arc<dyn ObjectStore>,
    source: Arc<dyn FileSource>,
}

impl ParquetSplits {
    /// Files of the store at `url` read by `source` (the format's).
    pub(crate) fn new(
        url: ObjectStoreUrl,
        store: Arc<dyn ObjectStore>,
        source: Arc<dyn FileSource>,
    ) -> Self {
        Self { url, store, source }
    }
}

impl fmt::Debug for ParquetSplits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The file source has no Debug; the store's URL says which files.
        f.debug_struct("ParquetSplits")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl SplitScan for ParquetSplits {
    async fn open(
        &self,
        split: &Split,
        task: Arc<TaskContext>,
        _read: &Arc<ReadCounter>,
    ) -> DfResult<SendableRecordBatchStream> {
        let location = StorePath::parse(&split.id)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        // As it is now: a file gone fails here, naming it, and the size is
        // the one its footer is read at.
        let meta = self.store.head(&location).await?;
        let config = FileScanConfigBuilder::new(self.url.clone(), self.source.clone())
            .with_file_group(FileGroup::new(vec![PartitionedFile::new_from_meta(meta)]))
            .build();
        DataSourceExec::from_data_source(config).execute(0, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(n: usize) -> Vec<Split> {
        (0..n)
            .map(|i| Split {
                id: format!("f{i}"),
                bytes: 1,
                rows: None,
                modified_ms: None,
            })
            .collect()
    }

    fn ids(dealt: &[Splits]) -> Vec<Vec<String>> {
        dealt
            .iter()
            .map(|s| s.remaining.iter().map(|f| f.id.clone()).collect())
            .collect()
    }

    #[test]
    fn files_are_dealt_round_robin_or_in_runs_to_at_most_the_partitions() {
        assert_eq!(
            ids(&deal(files(5), 2, Dealing::RoundRobin)),
            [vec!["f0", "f2", "f4"], vec!["f1", "f3"]]
        );
        assert_eq!(
            ids(&deal(files(5), 2, Dealing::Runs)),
            [vec!["f0", "f1", "f2"], vec!["f3", "f4"]]
        );
        assert_eq!(ids(&deal(files(1), 4, Dealing::Runs)), [vec!["f0"]]);
        assert_eq!(ids(&deal(files(0), 4, Dealing::RoundRobin)).len(), 1);
        assert_eq!(ids(&deal(files(0), 4, Dealing::Runs)).len(), 1);
    }
}
