//! A table Weir owns: its writes (INSERT, UPDATE, DELETE, checked, logged,
//! then applied to its rows in `rows.rs`), the changes its views read, and
//! the handle the rest of Weir holds ([`OwnedTable`]; its DataFusion side
//! is in `provider.rs`).
//!
//! # Correctness
//! - Every write runs in a transaction (`txn.rs`), which holds the table's
//!   write lock from its first write to its end; a change is checked (NOT
//!   NULL, primary key), encoded for the log and applied to memory as
//!   *pending* under the data lock, so the index always holds exactly the
//!   live rows of the latest state (the lock holder's).
//! - Readers see a change only once it is committed and durable: every
//!   chunk and every deletion carries the LSN of the commit that made it
//!   (`PENDING` until then), and a scan keeps what is at or below the log's
//!   durable LSN. A commit acknowledges after its record is durable, so
//!   every later statement (of any session) sees it, and nobody sees a
//!   write that a crash or a rollback could still take back. The writing
//!   transaction itself scans at `PENDING` and sees its own changes.
//! - A view reads changes by commit LSN and never splits one LSN's changes
//!   across batches: it applies a transaction whole.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options, concat_batches};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use parking_lot::Mutex;

use super::record::{self, Change};
use super::rows::{PENDING, TableData, nullable};
use super::txn::{SharedTransaction, Transaction, Writer};
use super::wal::Lsn;
use super::{Log, OwnedTableSpec};
use crate::error::{ConnectorError, Result};

/// A table Weir owns: the handle the server holds, and DataFusion's
/// `TableProvider` for it (in `provider.rs`).
#[derive(Clone)]
pub struct OwnedTable {
    pub(crate) inner: Arc<TableInner>,
}

pub(crate) struct TableInner {
    spec: OwnedTableSpec,
    /// The same columns, all nullable: what DataFusion hands the insert sink,
    /// so that NOT NULL is checked here, with Postgres's message.
    pub(crate) sink_schema: SchemaRef,
    pub(crate) log: Arc<Log>,
    pub(crate) data: Mutex<TableData>,
    /// Held by the transaction writing the table, from its first write to
    /// its end: writers to one table take turns (`txn.rs`).
    pub(crate) write_lock: Arc<tokio::sync::Mutex<()>>,
    /// How far each changelog reader has read (rows), for `catch_up`.
    pub(crate) readers: Mutex<Vec<std::sync::Weak<std::sync::atomic::AtomicU64>>>,
    /// Where each view's latest checkpoint has its reader (as `readers`):
    /// the history after it is kept, so the view can resume there after a
    /// restart or a suspend (`changelog.rs`).
    pub(crate) kept: Mutex<Vec<std::sync::Weak<std::sync::atomic::AtomicU64>>>,
}

impl TableInner {
    pub(crate) fn new(spec: OwnedTableSpec, data: TableData, log: Arc<Log>) -> Self {
        let sink_schema = nullable(&spec.schema);
        Self {
            spec,
            sink_schema,
            log,
            data: Mutex::new(data),
            write_lock: Arc::default(),
            readers: Mutex::new(Vec::new()),
            kept: Mutex::new(Vec::new()),
        }
    }

    /// Insert rows as one statement of `txn`; returns how many.
    pub(crate) async fn insert(
        self: &Arc<Self>,
        txn: &mut Transaction,
        batches: Vec<RecordBatch>,
    ) -> Result<u64> {
        let batch = concat_batches(&self.sink_schema, &batches)
            .map_err(|e| ConnectorError::DataFusion(e.into()))?;
        drop(batches);
        let rows = batch.num_rows() as u64;
        if rows == 0 {
            return Ok(0);
        }
        txn.enter(self).await?;
        let payload = {
            let mut data = self.data.lock();
            data.check_not_null(&batch)?;
            let batch = data.conform(batch)?;
            let change = Change {
                deleted: None,
                inserted: Some(batch),
            };
            let payload = record::encode(self.spec.id, txn.id(), 0, &change)?;
            let batch = change.inserted.unwrap_or_else(|| unreachable!());
            let chunk = data.chunks.len();
            data.index_checked(&batch, chunk)?;
            data.pending_change(None, Some(&batch))?;
            data.push(batch, PENDING);
            payload
        };
        txn.log(payload)?;
        Ok(rows)
    }

    /// Delete the live rows matching `filters`.
    pub(super) async fn delete(
        self: &Arc<Self>,
        txn: &mut Transaction,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<u64> {
        self.require_key("DELETE")?;
        let predicate = self.predicate(state, filters)?;
        txn.enter(self).await?;
        let (rows, payload) = {
            let mut data = self.data.lock();
            let (locs, old) = data.matching(predicate.as_ref())?;
            if locs.is_empty() {
                return Ok(0);
            }
            let old = concat_batches(&self.sink_schema, &old)
                .map_err(|e| ConnectorError::DataFusion(e.into()))?;
            let payload = record::encode(
                self.spec.id,
                txn.id(),
                0,
                &Change {
                    deleted: Some(old.clone()),
                    inserted: None,
                },
            )?;
            data.unindex(&old)?;
            data.pending_delete(&locs)?;
            data.pending_change(Some(&old), None)?;
            (locs.len() as u64, payload)
        };
        txn.log(payload)?;
        Ok(rows)
    }

    /// Update the live rows matching `filters`: their old versions are
    /// deleted and the new ones inserted, in one record.
    pub(super) async fn update(
        self: &Arc<Self>,
        txn: &mut Transaction,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<u64> {
        self.require_key("UPDATE")?;
        let predicate = self.predicate(state, filters)?;
        let df_schema = self.df_schema()?;
        let mut exprs = HashMap::new();
        for (name, expr) in assignments {
            let index = self.spec.schema.index_of(&name).map_err(|_| {
                ConnectorError::DataFusion(datafusion::error::DataFusionError::Plan(format!(
                    "column \"{name}\" of relation \"{}\" does not exist",
                    self.spec.name
                )))
            })?;
            exprs.insert(index, state.create_physical_expr(expr, &df_schema)?);
        }
        txn.enter(self).await?;
        let (rows, payload) = {
            let mut data = self.data.lock();
            let (locs, old) = data.matching(predicate.as_ref())?;
            if locs.is_empty() {
                return Ok(0);
            }
            let old = concat_batches(&self.sink_schema, &old)
                .map_err(|e| ConnectorError::DataFusion(e.into()))?;
            let mut columns = Vec::with_capacity(old.num_columns());
            for (i, field) in self.sink_schema.fields().iter().enumerate() {
                let column = match exprs.get(&i) {
                    Some(expr) => {
                        let value = expr
                            .evaluate(&old)
                            .and_then(|v| v.into_array(old.num_rows()))?;
                        if value.data_type() == field.data_type() {
                            value
                        } else {
                            cast_with_options(
                                &value,
                                field.data_type(),
                                &CastOptions {
                                    safe: false,
                                    ..Default::default()
                                },
                            )
                            .map_err(|e| ConnectorError::DataFusion(e.into()))?
                        }
                    }
                    None => old.column(i).clone(),
                };
                columns.push(column);
            }
            let new = RecordBatch::try_new(self.sink_schema.clone(), columns)
                .map_err(|e| ConnectorError::DataFusion(e.into()))?;
            data.check_not_null(&new)?;
            let new = data.conform(new)?;
            // The old keys go first, so a row may keep its key, and keys may
            // move between the updated rows.
            let old_keys = data.keys(&old)?.unwrap_or_else(|| unreachable!());
            for r in 0..old_keys.num_rows() {
                data.index.remove(old_keys.row(r).as_ref());
            }
            let chunk = data.chunks.len();
            if let Err(err) = data.index_checked(&new, chunk) {
                for (r, loc) in locs.iter().enumerate() {
                    data.index.insert(old_keys.row(r).as_ref().into(), *loc);
                }
                return Err(err);
            }
            let payload = record::encode(
                self.spec.id,
                txn.id(),
                0,
                &Change {
                    deleted: Some(old.clone()),
                    inserted: Some(new.clone()),
                },
            )?;
            data.pending_delete(&locs)?;
            data.pending_change(Some(&old), Some(&new))?;
            data.push(new, PENDING);
            (locs.len() as u64, payload)
        };
        txn.log(payload)?;
        Ok(rows)
    }

    fn require_key(&self, what: &str) -> Result<()> {
        if self.spec.primary_key.is_empty() {
            return Err(ConnectorError::AppendOnly {
                table: self.spec.name.clone(),
                statement: what.to_string(),
            });
        }
        Ok(())
    }

    fn df_schema(&self) -> Result<DFSchema> {
        DFSchema::try_from_qualified_schema(self.spec.name.as_str(), &self.sink_schema)
            .map_err(ConnectorError::DataFusion)
    }

    fn predicate(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Option<Arc<dyn datafusion::physical_plan::PhysicalExpr>>> {
        let Some(filter) = filters.into_iter().reduce(Expr::and) else {
            return Ok(None);
        };
        Ok(Some(
            state.create_physical_expr(filter, &self.df_schema()?)?,
        ))
    }

    /// The durable rows from row `from` on (at most one chunk's worth), in
    /// insertion order; `None` when there are none yet. Append-only tables
    /// only: rows are never removed, so offsets are stable.
    pub(crate) fn rows_after(&self, from: u64) -> Result<Option<RecordBatch>> {
        let durable = self.log.wal.durable();
        let data = self.data.lock();
        let mut start = 0u64;
        for (i, chunk) in data.chunks.iter().enumerate() {
            if chunk.lsn > durable {
                break;
            }
            let rows = chunk.batch.num_rows() as u64;
            if from < start + rows {
                let offset = (from - start) as usize;
                let mut parts = vec![chunk.batch.slice(offset, rows as usize - offset)];
                // The rest of its transaction too (chunks of one commit share
                // its LSN): a view sees a transaction whole or not at all.
                parts.extend(
                    data.chunks[i + 1..]
                        .iter()
                        .take_while(|c| c.lsn == chunk.lsn)
                        .map(|c| c.batch.clone()),
                );
                if parts.len() == 1 {
                    return Ok(parts.pop());
                }
                return concat_batches(&self.sink_schema, &parts)
                    .map(Some)
                    .map_err(|e| ConnectorError::DataFusion(e.into()));
            }
            start += rows;
        }
        Ok(None)
    }

    /// Durable changes after `lsn` (at most `limit` records, concatenated)
    /// and the end LSN of the last; `None` when there are none yet.
    pub(crate) fn changes_after(
        &self,
        lsn: Lsn,
        limit: usize,
    ) -> Result<Option<(Lsn, RecordBatch)>> {
        let durable = self.log.wal.durable();
        let data = self.data.lock();
        let start = data.history.partition_point(|(at, _)| *at <= lsn);
        let mut picked: Vec<&(Lsn, RecordBatch)> = data
            .history
            .range(start..)
            .take_while(|(at, _)| *at <= durable)
            .take(limit)
            .collect();
        // Never part of a transaction: its changes share its commit LSN, and
        // a reader resumes after the LSN it read.
        if let Some(&&(last, _)) = picked.last() {
            let more = start + picked.len();
            picked.extend(data.history.range(more..).take_while(|(at, _)| *at == last));
        }
        let Some((last, first)) = picked.last().map(|(at, _)| *at).zip(picked.first()) else {
            return Ok(None);
        };
        let batch = if picked.len() == 1 {
            first.1.clone()
        } else {
            let batches: Vec<RecordBatch> = picked.iter().map(|(_, b)| b.clone()).collect();
            concat_batches(&first.1.schema(), &batches)
                .map_err(|e| ConnectorError::DataFusion(e.into()))?
        };
        Ok(Some((last, batch)))
    }

    /// The end LSN of the last durable change a view can read (tables with
    /// a primary key), or where the history starts when it is empty.
    pub(crate) fn last_change(&self) -> Lsn {
        let durable = self.log.wal.durable();
        let data = self.data.lock();
        data.history
            .iter()
            .rev()
            .map(|(at, _)| *at)
            .find(|at| *at <= durable)
            .unwrap_or(0)
            .max(data.history_from)
    }

    /// The table's id in the log.
    pub(crate) fn id(&self) -> u64 {
        self.spec.id
    }

    /// The table's name.
    pub(crate) fn name(&self) -> &str {
        &self.spec.name
    }

    /// A transaction that holds the write lock starts changing the table.
    pub(crate) fn begin(&self, owner: u64) {
        self.data.lock().begin(owner);
    }

    /// Must a change be kept for views? Yes while views are starting (one
    /// may resume from before it) and while any view reads the table.
    pub(crate) fn keep_history(&self) -> bool {
        if !self
            .log
            .readers_started
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return true;
        }
        let mut readers = self.readers.lock();
        readers.retain(|r| r.strong_count() > 0);
        let mut kept = self.kept.lock();
        kept.retain(|r| r.strong_count() > 0);
        !readers.is_empty() || !kept.is_empty()
    }

    /// After a read: forget the changes every reader has read.
    pub(crate) fn release_history(&self) {
        if !self
            .log
            .readers_started
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        // Positions are one past the LSN read; 0: the reader has not taken
        // its snapshot yet.
        let min = {
            let (readers, kept) = (self.readers.lock(), self.kept.lock());
            readers
                .iter()
                .chain(kept.iter())
                .filter_map(|r| r.upgrade())
                .map(|r| r.load(std::sync::atomic::Ordering::Acquire))
                .min()
        };
        if let Some(min) = min.filter(|&m| m > 0) {
            self.trim_history(min - 1);
        }
    }

    /// Where the history starts: changes above this LSN can be replayed.
    pub(crate) fn history_from(&self) -> Lsn {
        self.data.lock().history_from
    }

    /// Forget changes every reader has read, up to `lsn` at most.
    pub(crate) fn trim_history(&self, lsn: Lsn) {
        self.data.lock().trim_history(lsn);
    }

    /// How many rows are durable (append-only tables).
    pub(crate) fn visible_rows(&self) -> u64 {
        let durable = self.log.wal.durable();
        self.data
            .lock()
            .chunks
            .iter()
            .take_while(|c| c.lsn <= durable)
            .map(|c| c.batch.num_rows() as u64)
            .sum()
    }

    /// The durable rows and the LSN they are as of, read under the lock so
    /// that no change is half in them.
    pub(crate) fn durable_snapshot(&self) -> Result<(Lsn, Vec<RecordBatch>)> {
        let data = self.data.lock();
        let durable = self.log.wal.durable();
        Ok((durable, data.snapshot(durable)?))
    }

    /// Every row applied so far (durable or not) and the log end they are
    /// as of: a change to this table either is in them or ends after it.
    /// Wait until that end is durable before using them.
    pub(crate) fn applied_snapshot(&self) -> Result<(Lsn, Vec<RecordBatch>)> {
        let data = self.data.lock();
        // Every committed row: not an open transaction's (whose commit will
        // end after this LSN, so the reader gets it as a change).
        Ok((self.log.wal.end(), data.snapshot(PENDING - 1)?))
    }

    /// Wait until the log is durable up to `lsn`.
    pub(crate) async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        self.log.wal.wait_durable(lsn).await
    }

    /// Visible rows now: the durable ones, and the pending changes of the
    /// transaction `own` (read committed: a transaction sees its own writes).
    pub(crate) fn snapshot(&self, own: Option<u64>) -> Result<Vec<RecordBatch>> {
        let durable = self.log.wal.durable();
        let data = self.data.lock();
        let mine = own.is_some() && data.pending.as_ref().map(|p| p.owner) == own;
        data.snapshot(if mine { PENDING } else { durable })
    }
}

impl OwnedTable {
    pub(crate) fn new(inner: Arc<TableInner>) -> Self {
        Self { inner }
    }

    /// The table's id in the log.
    pub fn id(&self) -> u64 {
        self.inner.spec.id
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    /// A stream without a connector: its event-time column and watermark
    /// delay (nanoseconds).
    pub fn event_time(&self) -> Option<(usize, i64)> {
        self.inner.spec.event_time
    }

    /// Does the table have a primary key (or is it append-only)?
    pub fn has_primary_key(&self) -> bool {
        !self.inner.spec.primary_key.is_empty()
    }

    /// The primary key's columns, as positions in the declared schema, in
    /// key order; empty for an append-only table.
    pub fn primary_key(&self) -> &[usize] {
        &self.inner.spec.primary_key
    }

    /// The columns as declared: NOT NULL where the table says so. The
    /// provider's `schema()` shows every column nullable (see [`nullable`]);
    /// catalogs (`pg_attribute`, `information_schema`) report this one.
    pub fn declared_schema(&self) -> SchemaRef {
        self.inner.spec.schema.clone()
    }

    /// Insert rows (columns in table order, any nullability) as one
    /// statement: in the transaction of the running statement
    /// ([`super::txn::current`]), else as a transaction of its own,
    /// committed and durable when this returns. The row count.
    pub async fn insert(&self, batches: Vec<RecordBatch>) -> Result<u64> {
        self.insert_in(super::txn::current().as_ref(), batches)
            .await
    }

    /// Insert rows in `txn` (`None`: a transaction of their own, committed
    /// when this returns). The row count.
    pub async fn insert_in(
        &self,
        txn: Option<&SharedTransaction>,
        batches: Vec<RecordBatch>,
    ) -> Result<u64> {
        let mut writer = Writer::of(txn).await?;
        let rows = self.inner.insert(writer.txn(), batches).await?;
        writer.done().await?;
        Ok(rows)
    }

    /// The rows visible now (outside any transaction).
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        self.inner.snapshot(None)
    }
}

impl fmt::Debug for OwnedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedTable")
            .field("name", &self.inner.spec.name)
            .field("id", &self.inner.spec.id)
            .finish()
    }
}
