//! Tables Weir owns: `CREATE TABLE t (...)` without a connector, written
//! with INSERT, UPDATE, DELETE and COPY, durable across crashes.
//!
//! ```text
//!   INSERT / UPDATE / DELETE (DataFusion DML)      COPY t FROM STDIN
//!        │ OwnedTable (TableProvider)                  │ OwnedTable::insert
//!        v                                             v
//!   TableInner::{insert, update, delete}, in a transaction (txn.rs) that
//!   holds the table's write lock: check NOT NULL and the primary key,
//!   apply to the in-memory chunks and index as pending, log a record
//!        │ COMMIT: last record with the commit flag; pending rows stamped
//!        │ Wal::append (shared buffer)      ┌── flusher thread: write + fsync,
//!        v                                  │   once for every waiting committer
//!   Wal::wait_durable(end) <────────────────┘   (group commit)
//!        │ acknowledged: visible to every later scan
//!        v
//!   SELECT: OwnedTable::scan -> the chunks at or below the durable LSN
//!           (and the scanning transaction's own pending ones)
//! ```
//! On start, [`TableStore::open`] loads each table's last compacted segment
//! and replays the log after it; a torn record at the end is cut off. A
//! background thread compacts once the log has grown by [`COMPACT_BYTES`].
//!
//! # Layout
//! - [`wal`]: the log: framing, checksums, group commit, recovery.
//! - [`record`]: what a record says (a table's deleted and inserted rows).
//! - [`txn`]: transactions: a table's write lock held to COMMIT, pending
//!   changes stamped at COMMIT or taken out at ROLLBACK, deadlocks found.
//! - `rows`: a table's rows in memory (Arrow chunks) and its primary-key index.
//! - [`table`]: a table's writes (checked, logged, applied) and the changes
//!   its views read; [`OwnedTable`], the handle to it.
//! - `provider`: [`OwnedTable`] as DataFusion's `TableProvider`.
//! - [`changelog`]: an append-only table as a streaming source.
//! - `segments`: compaction: tables written as Arrow IPC files, the log
//!   before them deleted.

pub mod changelog;
mod provider;
pub mod record;
mod rows;
mod segments;
pub mod table;
pub mod txn;
pub mod wal;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::datatypes::SchemaRef;
use parking_lot::RwLock;
use tracing::info;

use crate::error::Result;
use rows::TableData;
pub use table::OwnedTable;
use table::TableInner;
use wal::Wal;

/// What the catalog says about a table Weir owns.
#[derive(Debug, Clone)]
pub struct OwnedTableSpec {
    /// Its id in the log; never reused, so records of a dropped table are
    /// never read into a new one of the same name.
    pub id: u64,
    /// Its name, for messages.
    pub name: String,
    /// Its columns (primary-key columns not nullable).
    pub schema: SchemaRef,
    /// Column indexes of the primary key; empty: append-only.
    pub primary_key: Vec<usize>,
    /// A stream without a connector: its event-time column (index) and
    /// watermark delay in nanoseconds.
    pub event_time: Option<(usize, i64)>,
}

/// The log and the transaction ids handed out over it.
pub(crate) struct Log {
    pub(crate) wal: Wal,
    next_txn: AtomicU64,
    /// Every view was started (restored ones at their checkpoint's
    /// position): from now on a table's history need only reach back to
    /// its slowest reader.
    pub(crate) readers_started: std::sync::atomic::AtomicBool,
    /// Open transactions that wrote: where their first record may be, so
    /// compaction keeps the log from there.
    pub(crate) open: parking_lot::Mutex<txn::OpenTransactions>,
    /// Who holds and who waits for which table's write lock.
    pub(crate) locks: parking_lot::Mutex<txn::LockGraph>,
}

impl Log {
    pub(crate) fn next_txn(&self) -> u64 {
        self.next_txn.fetch_add(1, Ordering::Relaxed)
    }
}

/// Compact once the log has grown by this much since the last compaction.
pub const COMPACT_BYTES: u64 = 256 << 20;

/// All tables Weir owns in one data directory, and their log.
pub struct TableStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    dir: std::path::PathBuf,
    log: Arc<Log>,
    tables: RwLock<HashMap<u64, OwnedTable>>,
    /// One compaction at a time; holds the log end it covered.
    compacted: parking_lot::Mutex<wal::Lsn>,
}

impl TableStore {
    /// Open the store under `dir`: load `specs`' segments, replay the log
    /// after them, and start compacting in the background.
    pub fn open(dir: &Path, specs: Vec<OwnedTableSpec>) -> Result<Self> {
        let manifest = segments::Manifest::read(dir)?;
        let segment_dir = segments::segment_dir(dir);
        let mut data: HashMap<u64, (OwnedTableSpec, TableData)> = HashMap::new();
        // Records that end at or before a table's segment are in it.
        let mut covered: HashMap<u64, wal::Lsn> = HashMap::new();
        for spec in specs {
            let mut table = TableData::new(&spec)?;
            if let Some((lsn, file)) = manifest.tables.get(&spec.id) {
                for batch in segments::read(&segment_dir, file)? {
                    table.apply_replayed(
                        record::Change {
                            deleted: None,
                            inserted: Some(batch),
                        },
                        0,
                    )?;
                }
                covered.insert(spec.id, *lsn);
                table.history_from = *lsn;
            }
            data.insert(spec.id, (spec, table));
        }
        let schemas: HashMap<u64, SchemaRef> = data
            .iter()
            .map(|(id, (spec, _))| (*id, spec.schema.clone()))
            .collect();
        let mut pending: HashMap<u64, Vec<record::Record>> = HashMap::new();
        let mut max_txn = 0;
        let mut records = 0u64;
        let wal = Wal::open(&dir.join("wal"), |_, end, payload| {
            let record = record::decode(payload, |id| schemas.get(&id).cloned())?;
            records += 1;
            max_txn = max_txn.max(record.txn);
            let txn = record.txn;
            let commit = record.flags & record::COMMIT != 0;
            pending.entry(txn).or_default().push(record);
            if commit {
                for record in pending.remove(&txn).unwrap_or_default() {
                    let done = covered.get(&record.table).copied().unwrap_or(0);
                    if let Some((_, table)) = data.get_mut(&record.table)
                        && end > done
                    {
                        table.apply_replayed(record.change, end)?;
                    }
                }
            }
            Ok(())
        })?;
        info!(
            records,
            tables = data.len(),
            uncommitted = pending.len(),
            "tables recovered from the log"
        );
        let next_txn = (max_txn + 1).max(wal.end());
        let log = Arc::new(Log {
            wal,
            next_txn: AtomicU64::new(next_txn),
            readers_started: Default::default(),
            open: Default::default(),
            locks: Default::default(),
        });
        let tables = data
            .into_iter()
            .map(|(id, (spec, table))| {
                (
                    id,
                    OwnedTable::new(Arc::new(TableInner::new(spec, table, log.clone()))),
                )
            })
            .collect();
        let end = log.wal.end();
        let inner = Arc::new(StoreInner {
            dir: dir.to_path_buf(),
            log,
            tables: RwLock::new(tables),
            compacted: parking_lot::Mutex::new(end),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("weir-compact".into())
            .spawn(move || compact_loop(&weak))
            .map_err(|e| wal::storage("start compaction in", dir, e))?;
        Ok(Self { inner })
    }

    /// Write every table's durable rows to a segment and delete the log
    /// and the segments that are no longer needed. Blocks: call it off the
    /// async threads.
    pub fn compact(&self) -> Result<()> {
        self.inner.compact()
    }

    /// A new, empty table (not yet in the store: see [`TableStore::add`]).
    pub fn create(&self, spec: OwnedTableSpec) -> Result<OwnedTable> {
        let data = TableData::new(&spec)?;
        Ok(OwnedTable::new(Arc::new(TableInner::new(
            spec,
            data,
            self.inner.log.clone(),
        ))))
    }

    /// Put a created table in the store.
    pub fn add(&self, table: OwnedTable) {
        self.inner.tables.write().insert(table.id(), table);
    }

    /// The table with this id.
    pub fn get(&self, id: u64) -> Option<OwnedTable> {
        self.inner.tables.read().get(&id).cloned()
    }

    /// Forget a dropped table; its records in the log are skipped from now on.
    pub fn remove(&self, id: u64) {
        self.inner.tables.write().remove(&id);
    }

    /// The table called `name`.
    pub fn named(&self, name: &str) -> Option<OwnedTable> {
        self.inner
            .tables
            .read()
            .values()
            .find(|t| t.name() == name)
            .cloned()
    }

    /// Forget the table called `name`, if the store has one.
    pub fn remove_named(&self, name: &str) {
        self.inner.tables.write().retain(|_, t| t.name() != name);
    }

    /// Every view over these tables is running: changes that every reader
    /// has read may be forgotten. Until then the tables keep every change
    /// since their segment, for views that resume from a checkpoint.
    pub fn readers_started(&self) {
        self.inner
            .log
            .readers_started
            .store(true, Ordering::Release);
    }

    /// An id no table had: past every LSN and transaction id so far.
    pub fn new_table_id(&self) -> u64 {
        self.inner.log.next_txn()
    }
}

impl StoreInner {
    fn compact(&self) -> Result<()> {
        let mut compacted = self.compacted.lock();
        let end = self.log.wal.end();
        let tables: Vec<OwnedTable> = self.tables.read().values().cloned().collect();
        let dir = segments::segment_dir(&self.dir);
        let mut manifest = segments::Manifest::default();
        for table in &tables {
            let (lsn, batches) = table.inner.durable_snapshot()?;
            let file = segments::write(&dir, table.id(), lsn, &table.inner.sink_schema, &batches)?;
            manifest.tables.insert(table.id(), (lsn, file));
        }
        manifest.write(&self.dir)?;
        // With no tables, nothing before the durable end is needed; an open
        // transaction needs its records from its first on (read after the
        // snapshots: one that wrote before them is listed by now).
        let cut = manifest.covered().unwrap_or_else(|| self.log.wal.durable());
        let cut = match self.log.open.lock().values().min() {
            Some(&first) => cut.min(first),
            None => cut,
        };
        self.log.wal.remove_before(cut)?;
        segments::remove_unlisted(&dir, &manifest)?;
        info!(tables = tables.len(), lsn = cut, "tables compacted");
        *compacted = end;
        Ok(())
    }
}

/// Compact whenever the log has grown by [`COMPACT_BYTES`]; stops when the
/// store is dropped.
fn compact_loop(store: &std::sync::Weak<StoreInner>) {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let Some(store) = store.upgrade() else {
            return;
        };
        let grown = store.log.wal.end() - *store.compacted.lock();
        if grown >= COMPACT_BYTES
            && let Err(err) = store.compact()
        {
            tracing::warn!(%err, "compacting tables failed; the log keeps everything meanwhile");
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::catalog::TableProvider;

    use super::*;
    use crate::error::ConnectorError;

    fn spec() -> OwnedTableSpec {
        OwnedTableSpec {
            id: 42,
            name: "t".into(),
            schema: Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Utf8, true),
            ])),
            primary_key: vec![0],
            event_time: None,
        }
    }

    fn rows(ids: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(ids.clone())),
                Arc::new(StringArray::from_iter_values(ids.map(|i| format!("n{i}")))),
            ],
        )
        .expect("batch")
    }

    fn all(table: &OwnedTable) -> RecordBatch {
        concat_batches(&table.schema(), &table.snapshot().expect("snapshot")).expect("concat")
    }

    #[tokio::test]
    async fn a_transaction_is_seen_whole_at_commit_and_never_after_rollback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = TableStore::open(dir.path(), vec![spec()]).expect("open");
        let table = store.get(42).expect("table");
        table.insert(vec![rows(0..10)]).await.expect("insert");
        let seen_by = |txn: &txn::SharedTransaction| -> usize {
            let batches = table.inner.snapshot(Some(txn.key())).expect("snapshot");
            batches.iter().map(RecordBatch::num_rows).sum()
        };

        // Rolled back: never seen by others, its keys free again.
        let open = txn::SharedTransaction::new();
        for ids in [10..20, 20..30] {
            table
                .insert_in(Some(&open), vec![rows(ids)])
                .await
                .expect("insert");
        }
        assert_eq!((all(&table).num_rows(), seen_by(&open)), (10, 30));
        open.rollback().await;
        assert_eq!(all(&table).num_rows(), 10);
        table
            .insert(vec![rows(10..20)])
            .await
            .expect("the keys are free");

        // Committed: all at once, as one change for a view.
        let before = table.inner.last_change();
        let open = txn::SharedTransaction::new();
        for ids in [20..30, 30..40] {
            table
                .insert_in(Some(&open), vec![rows(ids)])
                .await
                .expect("insert");
        }
        assert_eq!(all(&table).num_rows(), 20);
        open.commit().await.expect("commit");
        assert_eq!(all(&table).num_rows(), 40);
        let (_, change) = table
            .inner
            .changes_after(before, 1)
            .expect("changes")
            .expect("a change");
        assert_eq!(change.num_rows(), 20, "one transaction, one batch");

        // Open at a crash: its first record is in the log, durable, without
        // a commit; replay skips it.
        let open = txn::SharedTransaction::new();
        for ids in [40..50, 50..60] {
            table
                .insert_in(Some(&open), vec![rows(ids)])
                .await
                .expect("insert");
        }
        let log = table.inner.log.clone();
        log.wal.wait_durable(log.wal.end()).await.expect("durable");
        drop((open, log, table, store));
        let store = TableStore::open(dir.path(), vec![spec()]).expect("reopen");
        assert_eq!(all(&store.get(42).expect("table")).num_rows(), 40);
    }

    #[tokio::test]
    async fn single_row_inserts_merge_into_few_chunks_and_stay_indexed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = TableStore::open(dir.path(), vec![spec()]).expect("open");
        let table = store.get(42).expect("table");
        let n = 64 * 64 + 300;
        for i in 0..n {
            table.insert(vec![rows(i..i + 1)]).await.expect("insert");
        }
        let chunks = table.inner.data.lock().chunks.len();
        // Each tier holds fewer than 64 chunks of its size.
        assert!(chunks < 3 * 64, "{chunks} chunks");
        let ids = all(&table);
        let ids = ids
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("ids");
        assert_eq!(ids.values().to_vec(), (0..n).collect::<Vec<_>>());
        // Every key still finds its row, in every tier.
        for i in [0, 63, 64, 4095, 4096, n - 1] {
            let err = table.insert(vec![rows(i..i + 1)]).await.expect_err("dup");
            assert!(
                matches!(err, ConnectorError::UniqueViolation { .. }),
                "{i}: {err}"
            );
        }
        drop((table, store));
        let store = TableStore::open(dir.path(), vec![spec()]).expect("reopen");
        assert_eq!(all(&store.get(42).expect("table")).num_rows(), n as usize);
    }

    #[tokio::test]
    async fn compaction_then_replay_gives_the_same_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = TableStore::open(dir.path(), vec![spec()]).expect("open");
        let table = store.get(42).expect("table");
        for i in 0..100 {
            table.insert(vec![rows(i..i + 1)]).await.expect("insert");
        }
        store.compact().expect("compact");
        table.insert(vec![rows(100..150)]).await.expect("insert");
        let before = all(&table);
        assert_eq!(before.num_rows(), 150);
        drop((table, store));

        let store = TableStore::open(dir.path(), vec![spec()]).expect("reopen");
        let table = store.get(42).expect("table");
        assert_eq!(all(&table), before);
        // The index came back too.
        let err = table.insert(vec![rows(5..6)]).await.expect_err("dup");
        assert!(
            matches!(err, ConnectorError::UniqueViolation { .. }),
            "{err}"
        );
        // Compacting again and reopening without any log still has it all.
        store.compact().expect("compact again");
        drop((table, store));
        let store = TableStore::open(dir.path(), vec![spec()]).expect("reopen");
        assert_eq!(all(&store.get(42).expect("table")), before);
    }
}
