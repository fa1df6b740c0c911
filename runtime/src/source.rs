//! Sources: where a stream's rows come from.
//!
//! A source is split into partitions, each read independently and in order.
//! Each reader reports its position after every batch, so that a checkpoint
//! can record it and recovery can reopen the partition where it stopped:
//! a row count for files, a sequence number for generators, an offset for
//! Kafka.
//!
//! A source whose input is a set of pieces it deals to its partitions (a
//! file stream's files) also records, per partition, the [`Splits`] it
//! still has to read: a restore then reads exactly those, whatever the
//! input holds by then, and a row count always points into the file it
//! was counted in (design 0015).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use datafusion::common::{Result, not_impl_err};
use serde::{Deserialize, Serialize};

/// Where a partition's reader is: what comes next. Opaque to the runtime,
/// meaningful to the source that made it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourcePosition(pub u64);

/// A partitioned, positioned source of batches.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// The rows' columns (after projection).
    fn schema(&self) -> SchemaRef;
    /// How many partitions there are.
    fn partitions(&self) -> usize;
    /// Does every partition end? (files and limited generators do)
    fn bounded(&self) -> bool;
    /// Open `partition` at `from` (its start when `None`).
    fn open(&self, partition: usize, from: Option<SourcePosition>)
    -> Result<Box<dyn SourceReader>>;
    /// One line for EXPLAIN.
    fn describe(&self) -> String;
    /// What the source is, for the plan's state signatures: `describe`
    /// without what may change under a running job (a Kafka topic's
    /// partition count), so that a job restores its checkpoints across
    /// such a change.
    fn identity(&self) -> String {
        self.describe()
    }
    /// Where `partition` starts when the job restores a checkpoint taken
    /// before the source had it (a partition added to a Kafka topic since).
    /// Its rows were all written after the job began, so it is read from
    /// its beginning, whatever the stream's startup says; `None`: where
    /// [`Self::open`] with no position starts.
    fn added_partition_start(&self, _partition: usize) -> Result<Option<SourcePosition>> {
        Ok(None)
    }
    /// Do its batches end with the op column (+1 insert, -1 delete), as a
    /// table with a primary key's changes do? The schema above is without it.
    fn changelog(&self) -> bool {
        false
    }
    /// Is it the rows of a table or a materialized view (what a lookup
    /// join, `FOR SYSTEM_TIME AS OF`, may look rows up in), rather than a
    /// stream of events?
    ///
    /// # Correctness
    /// A table's readers hand on [`SourceItem::SnapshotEnd`] once, after
    /// their snapshot (or at their end): a lookup join holds its stream
    /// rows, and its table side's barriers, until it comes.
    fn is_table(&self) -> bool {
        false
    }
    /// Can `partition` still be reopened at `position` (a checkpoint's)? A
    /// source whose history was compacted away says no, and the job starts
    /// afresh rather than from a gap.
    fn resumable(&self, _partition: usize, _position: SourcePosition) -> bool {
        true
    }
    /// A checkpoint that records `position` for `partition` is complete
    /// (its manifest written, its sinks committed): the job restores from
    /// it or a later one, so a source that keeps history for resuming
    /// readers (a table's change log) must keep it from there on, and may
    /// forget what is before.
    ///
    /// # Correctness
    /// Called in epoch order, after the manifest is durable; a source that
    /// forgot history a later checkpoint's restore needs would make that
    /// restore start afresh and write its sinks' rows again.
    fn checkpointed(&self, _partition: usize, _position: SourcePosition) {}
    /// After how long without rows a partition stops holding back the
    /// stream's watermark (`None`: never; a partition that has nothing to
    /// read then stalls window closing, as it must when it is only slow).
    ///
    /// # Correctness
    /// An idle partition takes the highest watermark of its stream's
    /// other partitions; rows it reads later that are behind it are late.
    fn idle_timeout(&self) -> Option<std::time::Duration> {
        None
    }
    /// Do its readers hand on watermarks of their own input
    /// ([`SourceItem::Watermark`], a materialized view's), in order with its
    /// rows? The source task then sends those on as the stream's watermark
    /// and derives none from the rows' event times (`false`: the stream's
    /// `WATERMARK FOR` is computed from the rows, as for files and topics).
    ///
    /// # Correctness
    /// A watermark handed on says that every row still to come is at or
    /// after it in the stream's event-time column; a reader must hand it
    /// after every row it covers (see `crate::view_source`).
    fn declares_watermarks(&self) -> bool {
        false
    }
    /// How far this source's readers (all partitions, of every job reading
    /// it through this instance) are through its files, for a source that
    /// knows its size (files); `None` otherwise.
    fn read_progress(&self) -> Option<ReadProgress> {
        None
    }
    /// The same source with its partitions reading exactly `splits`, one
    /// per partition, as a checkpoint recorded them ([`SourceReader::splits`]):
    /// partition `p` reads `splits[p].remaining`, and a position given to
    /// [`Self::open`] counts the rows of `splits[p]`'s done splits too.
    /// Only a source whose readers report splits is asked.
    ///
    /// # Correctness
    /// The restored source must not list its input again: a file removed
    /// or added since the checkpoint would deal the others differently, and
    /// the recorded positions would point into the wrong files.
    fn with_splits(&self, _splits: Vec<Splits>) -> Result<Arc<dyn Source>> {
        not_impl_err!(
            "{} cannot restore a checkpoint that recorded its splits",
            self.describe()
        )
    }
}

/// One piece of a source's input that one partition reads whole, from its
/// start to its end: a file, for the file connector (Flink's source split).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// What to read, as its source names it (a file's path in its object
    /// store).
    pub id: String,
    /// Its size in bytes when it was listed (for progress, and to read a
    /// Parquet footer); 0 when unknown.
    pub bytes: u64,
    /// The rows it holds, where the source knows without reading them
    /// (Parquet footers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// When it was last modified as listed (milliseconds since the Unix
    /// epoch), where its store says: with `bytes`, what tells a restore
    /// that a half-read file was rewritten since. `None` in checkpoints
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_ms: Option<i64>,
}

/// What a source partition still reads, by splits, after the last batch
/// it returned: recorded in each checkpoint beside its position.
///
/// Splits read to their end are only counted, not named, so a file read
/// whole and removed since is never opened again, and a checkpoint's size
/// shrinks as the job goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    /// The splits still to read, in order: the partition's position is in
    /// the first.
    pub remaining: Vec<Split>,
    /// How many splits it read to their end before them.
    pub done: u64,
    /// Their rows: the partition's position where `remaining[0]` starts.
    pub done_rows: u64,
    /// Their bytes, as listed.
    pub done_bytes: u64,
}

impl Splits {
    /// Nothing read yet of `remaining`.
    pub fn fresh(remaining: Vec<Split>) -> Self {
        Self {
            remaining,
            ..Default::default()
        }
    }
}

/// How far a bounded source is through its files: by bytes and files
/// where its readers count what they fetch (CSV, JSON), by rows where its
/// files say how many they hold (Parquet footers). A figure whose total is
/// 0 is unknown for that source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadProgress {
    /// Bytes fetched from its files so far.
    pub bytes_read: u64,
    /// The sum of its files' sizes.
    pub bytes_total: u64,
    /// Files read to their end.
    pub files_read: u64,
    /// Files it reads.
    pub files_total: u64,
    /// Rows its partitions are past, counting rows a reopened partition
    /// skipped (so the figure reaches the total after a resume too).
    pub rows_read: u64,
    /// The rows its files hold.
    pub rows_total: u64,
}

/// Both sources' figures together.
impl std::ops::Add for ReadProgress {
    type Output = ReadProgress;

    fn add(self, other: ReadProgress) -> ReadProgress {
        ReadProgress {
            bytes_read: self.bytes_read + other.bytes_read,
            bytes_total: self.bytes_total + other.bytes_total,
            files_read: self.files_read + other.files_read,
            files_total: self.files_total + other.files_total,
            rows_read: self.rows_read + other.rows_read,
            rows_total: self.rows_total + other.rows_total,
        }
    }
}

/// What a partition's reader hands on next: rows, or (from a source that
/// [declares watermarks](Source::declares_watermarks)) its input's
/// watermark, after the rows it covers.
#[derive(Debug, Clone)]
pub enum SourceItem {
    /// Rows.
    Rows(RecordBatch),
    /// Every row still to come is at or after this event time
    /// (nanoseconds).
    Watermark(i64),
    /// Every row the input held when the reader was opened (its snapshot)
    /// was handed on; what follows are changes after it. From a table's
    /// reader ([`Source::is_table`]), once; a reader reopened at a
    /// checkpoint's position has no snapshot and hands it on first.
    SnapshotEnd,
}

/// Reads one partition.
#[async_trait::async_trait]
pub trait SourceReader: Send {
    /// The next batch; `None` at the end of a bounded partition.
    async fn next_batch(&mut self) -> Option<Result<RecordBatch>>;
    /// The next batch or watermark; `None` at the end of a bounded
    /// partition. The source task reads through this. The default hands on
    /// rows only: no watermark (the stream's own `WATERMARK FOR`, if any, is
    /// derived from the rows).
    async fn next_item(&mut self) -> Option<Result<SourceItem>> {
        self.next_batch()
            .await
            .map(|batch| batch.map(SourceItem::Rows))
    }
    /// The position after the last batch returned.
    fn position(&self) -> SourcePosition;
    /// The splits the partition still reads after the last batch returned
    /// (see [`Source::with_splits`]); `None` for a source without splits,
    /// whose position says all (generators, Kafka).
    ///
    /// # Correctness
    /// A split whose last row was returned is done as soon as that batch
    /// is: a checkpoint taken then must not name it, so that its file may
    /// go away.
    fn splits(&self) -> Option<Splits> {
        None
    }
}
