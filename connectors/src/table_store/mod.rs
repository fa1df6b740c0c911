//! Tables Weir owns: `CREATE TABLE t (...)` without a connector, written
//! with INSERT, UPDATE, DELETE and COPY, durable across crashes.
//!
//! ```text
//!   INSERT / UPDATE / DELETE (DataFusion DML)      COPY t FROM STDIN
//!        │ OwnedTable (TableProvider)                  │ OwnedTable::insert
//!        v                                             v
//!   TableInner::{insert, update, delete}: under the table's lock,
//!   check NOT NULL and the primary key, append a record to the log,
//!   apply it to the in-memory chunks and index
//!        │ Wal::append (shared buffer)      ┌── flusher thread: write + fsync,
//!        v                                  │   once for every waiting committer
//!   Wal::wait_durable(end) <────────────────┘   (group commit)
//!        │ acknowledged: visible to every later scan
//!        v
//!   SELECT: OwnedTable::scan -> the chunks at or below the durable LSN
//! ```
//! On start, [`TableStore::open`] replays the log into the tables named by
//! the catalog; a torn record at the end is cut off.
//!
//! # Layout
//! - [`wal`]: the log: framing, checksums, group commit, recovery.
//! - [`record`]: what a record says (a table's deleted and inserted rows).
//! - [`table`]: a table's rows and index, and its `TableProvider`.
//! - [`changelog`]: an append-only table as a streaming source.

pub mod changelog;
pub mod record;
pub mod table;
pub mod wal;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::datatypes::SchemaRef;
use parking_lot::RwLock;
use tracing::info;

use crate::error::Result;
pub use table::OwnedTable;
use table::{TableData, TableInner};
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
}

/// The log and the transaction ids handed out over it.
pub(crate) struct Log {
    pub(crate) wal: Wal,
    next_txn: AtomicU64,
}

impl Log {
    fn next_txn(&self) -> u64 {
        self.next_txn.fetch_add(1, Ordering::Relaxed)
    }
}

/// All tables Weir owns in one data directory, and their log.
pub struct TableStore {
    log: Arc<Log>,
    tables: RwLock<HashMap<u64, OwnedTable>>,
}

impl TableStore {
    /// Open the store under `dir` and replay its log into `specs`.
    pub fn open(dir: &Path, specs: Vec<OwnedTableSpec>) -> Result<Self> {
        let mut data: HashMap<u64, (OwnedTableSpec, TableData)> = HashMap::new();
        for spec in specs {
            let table = TableData::new(&spec)?;
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
                    if let Some((_, table)) = data.get_mut(&record.table) {
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
        Ok(Self {
            log,
            tables: RwLock::new(tables),
        })
    }

    /// A new, empty table (not yet in the store: see [`TableStore::add`]).
    pub fn create(&self, spec: OwnedTableSpec) -> Result<OwnedTable> {
        let data = TableData::new(&spec)?;
        Ok(OwnedTable::new(Arc::new(TableInner::new(
            spec,
            data,
            self.log.clone(),
        ))))
    }

    /// Put a created table in the store.
    pub fn add(&self, table: OwnedTable) {
        self.tables.write().insert(table.id(), table);
    }

    /// The table with this id.
    pub fn get(&self, id: u64) -> Option<OwnedTable> {
        self.tables.read().get(&id).cloned()
    }

    /// Forget a dropped table; its records in the log are skipped from now on.
    pub fn remove(&self, id: u64) {
        self.tables.write().remove(&id);
    }

    /// The table called `name`.
    pub fn named(&self, name: &str) -> Option<OwnedTable> {
        self.tables
            .read()
            .values()
            .find(|t| t.name() == name)
            .cloned()
    }

    /// Forget the table called `name`, if the store has one.
    pub fn remove_named(&self, name: &str) {
        self.tables.write().retain(|_, t| t.name() != name);
    }

    /// An id no table had: past every LSN and transaction id so far.
    pub fn new_table_id(&self) -> u64 {
        self.log.next_txn()
    }
}
