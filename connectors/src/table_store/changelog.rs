//! An append-only table as a streaming source, so that a materialized view
//! over it is maintained as rows are inserted.
//!
//! The position is the number of rows read: an append-only table never
//! reorders or removes rows (merging small chunks keeps their order), so a
//! row offset names the same place after a restart, as an LSN would. Tables
//! with a primary key need their deletions as retractions, which views do
//! not take yet (see `docs/design/0004-owned-tables.md`).
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
use weir_runtime::source::{Source, SourcePosition, SourceReader};

use super::OwnedTable;
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
            table: self.table.clone(),
            durable: self.table.inner.log.wal.watch_durable(),
            read,
        }))
    }

    fn describe(&self) -> String {
        format!("table {} (rows as inserted)", self.table.name())
    }
}

struct TableReader {
    table: OwnedTable,
    durable: watch::Receiver<Lsn>,
    read: Arc<AtomicU64>,
}

#[async_trait]
impl SourceReader for TableReader {
    async fn next_batch(&mut self) -> Option<datafusion::common::Result<RecordBatch>> {
        loop {
            // Marked seen before reading, so a commit after the read wakes
            // the wait below. Cancel-safe: nothing changes until a batch is
            // returned.
            self.durable.borrow_and_update();
            let from = self.read.load(Ordering::Acquire);
            match self.table.inner.rows_after(from) {
                Ok(Some(batch)) => {
                    self.read
                        .store(from + batch.num_rows() as u64, Ordering::Release);
                    return Some(Ok(batch));
                }
                Ok(None) => {}
                Err(err) => return Some(Err(err.into())),
            }
            if self.durable.changed().await.is_err() {
                return None;
            }
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition(self.read.load(Ordering::Acquire))
    }
}

impl OwnedTable {
    /// Wait until every reader of this table has read the rows visible now
    /// (gives up after `timeout`, returning false).
    pub async fn catch_up(&self, timeout: std::time::Duration) -> bool {
        let target = self.inner.visible_rows();
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
