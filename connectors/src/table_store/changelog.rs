//! Tables as streaming sources, so that a materialized view over a table is
//! maintained as it is written.
//!
//! - [`TableSource`], an append-only table: its rows as they are inserted.
//!   The position is the number of rows read: an append-only table never
//!   reorders or removes rows (merging small chunks keeps their order), so
//!   a row offset names the same place after a restart, as an LSN would.
//! - [`ChangelogSource`], a table with a primary key: first its rows (as
//!   inserts), then every change after them, from the table's history (old
//!   rows with op -1, new rows with op +1). The position is one past the
//!   end LSN of the last change read (0: the first rows are not read yet),
//!   so a view resumes from its checkpoint's LSN. The table keeps its
//!   history from the oldest position any reader is at *or any view's
//!   latest checkpoint names* ([`Source::checkpointed`]): a view that
//!   restarts, or resumes after a suspend, reopens at its checkpoint and
//!   continues there rather than reading the table from its beginning
//!   again (which would write its sinks' rows twice). After a server
//!   restart the history reaches back to the table's last compacted
//!   segment.
//!
//! Both hand on the end of their snapshot ([`SourceItem::SnapshotEnd`],
//! what a lookup join waits for before probing its stream rows): after the
//! rows that were durable when the reader was opened (an append-only
//! table's, from the reader's position on), or after a table with a
//! primary key's first rows (at once when reopened at a checkpoint's
//! position: the view restored them).
//!
//! # Correctness
//! A reader only returns rows that are durable, and publishes how far it
//! has read after returning them. [`OwnedTable::catch_up`] waits until every
//! reader has read what was visible when it was called: since a job's
//! source task injects a barrier only between batches, a `FLUSH` that calls
//! it first gets its barrier behind those rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use tokio::sync::watch;
use weir_runtime::source::{Source, SourceItem, SourcePosition, SourceReader};

use super::OwnedTable;
use super::table::TableInner;
use super::wal::Lsn;

/// The rows of an append-only table, as they are inserted.
#[derive(Debug)]
pub struct TableSource {
    table: OwnedTable,
}

impl TableSource {
    /// A source over `table`, which must be append-only.
    pub fn new(table: OwnedTable) -> Self {
        Self { table }
    }
}

impl Source for TableSource {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn partitions(&self) -> usize {
        1
    }

    fn bounded(&self) -> bool {
        false
    }

    fn open(
        &self,
        _partition: usize,
        from: Option<SourcePosition>,
    ) -> datafusion::common::Result<Box<dyn SourceReader>> {
        let read = Arc::new(AtomicU64::new(from.map_or(0, |p| p.0)));
        self.table.inner.readers.lock().push(Arc::downgrade(&read));
        Ok(Box::new(TableReader {
            snapshot_rows: Some(self.table.inner.visible_rows()),
            table: self.table.clone(),
            durable: self.table.inner.log.wal.watch_durable(),
            read,
        }))
    }

    fn describe(&self) -> String {
        format!("table {} (rows as inserted)", self.table.name())
    }

    /// An append-only table is a table; one with a watermark is a stream
    /// without a connector (`CREATE STREAM s (..)`), a stream of events.
    fn is_table(&self) -> bool {
        self.table.event_time().is_none()
    }
}

struct TableReader {
    table: OwnedTable,
    durable: watch::Receiver<Lsn>,
    read: Arc<AtomicU64>,
    /// The rows durable when it was opened: its snapshot ends once it read
    /// that many (`None`: it ended).
    snapshot_rows: Option<u64>,
}

#[async_trait]
impl SourceReader for TableReader {
    async fn next_batch(&mut self) -> Option<datafusion::common::Result<RecordBatch>> {
        let (table, read) = (&self.table, &self.read);
        when_durable(&mut self.durable, || {
            let from = read.load(Ordering::Acquire);
            let batch = table.inner.rows_after(from)?;
            if let Some(batch) = &batch {
                read.store(from + batch.num_rows() as u64, Ordering::Release);
            }
            Ok(batch)
        })
        .await
    }

    async fn next_item(&mut self) -> Option<datafusion::common::Result<SourceItem>> {
        if let Some(rows) = self.snapshot_rows
            && self.read.load(Ordering::Acquire) >= rows
        {
            self.snapshot_rows = None;
            return Some(Ok(SourceItem::SnapshotEnd));
        }
        self.next_batch()
            .await
            .map(|batch| batch.map(SourceItem::Rows))
    }

    fn position(&self) -> SourcePosition {
        SourcePosition(self.read.load(Ordering::Acquire))
    }
}

/// Call `read` until it finds something, again each time more of the log is
/// durable; `None` once the log is gone. Cancel-safe as long as `read`
/// changes nothing when it finds nothing.
async fn when_durable<T>(
    durable: &mut watch::Receiver<Lsn>,
    mut read: impl FnMut() -> crate::error::Result<Option<T>>,
) -> Option<datafusion::common::Result<T>> {
    loop {
        // Marked seen before reading, so a commit after the read wakes the
        // wait below.
        durable.borrow_and_update();
        match read() {
            Ok(Some(found)) => return Some(Ok(found)),
            Ok(None) => {}
            Err(err) => return Some(Err(err.into())),
        }
        if durable.changed().await.is_err() {
            return None;
        }
    }
}

impl OwnedTable {
    /// Wait until every reader of this table has read the rows visible now
    /// (gives up after `timeout`, returning false).
    pub async fn catch_up(&self, timeout: std::time::Duration) -> bool {
        // Readers count rows of an append-only table, and LSNs (one past the
        // last change read) of a table with a primary key.
        let target = if self.has_primary_key() {
            self.inner.last_change() + 1
        } else {
            self.inner.visible_rows()
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let behind = {
                let mut readers = self.inner.readers.lock();
                readers.retain(|r| r.strong_count() > 0);
                readers
                    .iter()
                    .filter_map(|r| r.upgrade())
                    .any(|r| r.load(Ordering::Acquire) < target)
            };
            if !behind {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

/// The changes of a table with a primary key.
#[derive(Debug)]
pub struct ChangelogSource {
    table: OwnedTable,
    /// Where this view's latest checkpoint (or the one it restored) has its
    /// reader: the table keeps its history after it for as long as this
    /// source lives (the view's job holds it, also while suspended).
    kept: parking_lot::Mutex<Option<Arc<AtomicU64>>>,
}

impl ChangelogSource {
    /// A source over `table`, which has a primary key.
    pub fn new(table: OwnedTable) -> Self {
        Self {
            table,
            kept: parking_lot::Mutex::new(None),
        }
    }

    /// Keep the table's history after `position` (one past the last LSN a
    /// checkpoint covers; 0: before the first rows, which needs none).
    fn keep_from(&self, position: SourcePosition) {
        if position.0 == 0 {
            return;
        }
        let mut kept = self.kept.lock();
        match kept.as_ref() {
            Some(mark) => mark.store(position.0, Ordering::Release),
            None => {
                let mark = Arc::new(AtomicU64::new(position.0));
                self.table.inner.kept.lock().push(Arc::downgrade(&mark));
                *kept = Some(mark);
            }
        }
    }
}

/// Changes returned together at most (single-row writes are many).
const CHANGES_PER_BATCH: usize = 256;

impl Source for ChangelogSource {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn partitions(&self) -> usize {
        1
    }

    fn bounded(&self) -> bool {
        false
    }

    fn changelog(&self) -> bool {
        true
    }

    fn is_table(&self) -> bool {
        true
    }

    fn resumable(&self, _partition: usize, position: SourcePosition) -> bool {
        position.0 == 0 || position.0 > self.table.inner.history_from()
    }

    fn checkpointed(&self, _partition: usize, position: SourcePosition) {
        self.keep_from(position);
    }

    fn open(
        &self,
        _partition: usize,
        from: Option<SourcePosition>,
    ) -> datafusion::common::Result<Box<dyn SourceReader>> {
        // Restored at a checkpoint: its history stays until a newer
        // checkpoint of this run replaces it, in case this run fails first.
        if let Some(from) = from {
            self.keep_from(from);
        }
        let read = Arc::new(AtomicU64::new(from.map_or(0, |p| p.0)));
        // Registered before the snapshot: every change after it is kept.
        self.table.inner.readers.lock().push(Arc::downgrade(&read));
        let snapshot = match read.load(Ordering::Acquire) {
            0 => Some(self.table.inner.applied_snapshot()?),
            _ => None,
        };
        Ok(Box::new(ChangelogReader {
            table: self.table.inner.clone(),
            durable: self.table.inner.log.wal.watch_durable(),
            read,
            snapshot,
            snapshot_ended: false,
        }))
    }

    fn describe(&self) -> String {
        format!("table {} (its rows, then its changes)", self.table.name())
    }
}

struct ChangelogReader {
    table: Arc<TableInner>,
    durable: watch::Receiver<Lsn>,
    read: Arc<AtomicU64>,
    snapshot: Option<(Lsn, Vec<RecordBatch>)>,
    /// It handed on the end of its first rows.
    snapshot_ended: bool,
}

impl ChangelogReader {
    /// The first rows, as inserts, once they are durable.
    async fn first_rows(&mut self) -> datafusion::common::Result<Option<RecordBatch>> {
        let Some((lsn, batches)) = self.snapshot.as_ref() else {
            return Ok(None);
        };
        let lsn = *lsn;
        self.table.wait_durable(lsn).await?;
        let schema = weir_runtime::operators::aggregate::changelog_schema(&self.table.sink_schema);
        let rows: Vec<RecordBatch> = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| weir_runtime::operators::aggregate::with_op(b, 1))
            .collect::<datafusion::common::Result<_>>()?;
        // One batch: a barrier between two parts of it would record a
        // position no restart could resume from.
        let batch = datafusion::arrow::compute::concat_batches(&schema, &rows)?;
        self.snapshot = None;
        self.read.store(lsn + 1, Ordering::Release);
        Ok((batch.num_rows() > 0).then_some(batch))
    }
}

#[async_trait]
impl SourceReader for ChangelogReader {
    async fn next_batch(&mut self) -> Option<datafusion::common::Result<RecordBatch>> {
        if self.snapshot.is_some() {
            match self.first_rows().await {
                Ok(Some(batch)) => return Some(Ok(batch)),
                Ok(None) => {}
                Err(err) => return Some(Err(err)),
            }
        }
        let (table, read) = (&self.table, &self.read);
        when_durable(&mut self.durable, || {
            let after = read.load(Ordering::Acquire) - 1;
            let Some((last, batch)) = table.changes_after(after, CHANGES_PER_BATCH)? else {
                return Ok(None);
            };
            read.store(last + 1, Ordering::Release);
            table.release_history();
            Ok(Some(batch))
        })
        .await
    }

    /// Its first rows (none when reopened at a checkpoint's position), the
    /// end of them, then its changes.
    async fn next_item(&mut self) -> Option<datafusion::common::Result<SourceItem>> {
        if !self.snapshot_ended {
            if self.snapshot.is_some() {
                match self.first_rows().await {
                    Ok(Some(batch)) => return Some(Ok(SourceItem::Rows(batch))),
                    Ok(None) => {}
                    Err(err) => return Some(Err(err)),
                }
            }
            self.snapshot_ended = true;
            return Some(Ok(SourceItem::SnapshotEnd));
        }
        self.next_batch()
            .await
            .map(|batch| batch.map(SourceItem::Rows))
    }

    fn position(&self) -> SourcePosition {
        SourcePosition(self.read.load(Ordering::Acquire))
    }
}
