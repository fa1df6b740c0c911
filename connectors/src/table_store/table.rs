//! A table Weir owns: its rows in memory as Arrow chunks, a primary-key
//! index, and DataFusion's view of it (scan, INSERT, UPDATE, DELETE).
//!
//! # Correctness
//! - Writers to one table are serialized by its lock: a change is checked
//!   (NOT NULL, primary key), appended to the log and applied to memory
//!   under it, so the log order is the apply order and the index always
//!   holds exactly the live rows of the latest state.
//! - Readers see a change only once it is durable: every chunk and every
//!   deletion carries the LSN of the record that made it, and a scan keeps
//!   what is at or below the log's durable LSN. A writer acknowledges after
//!   its record is durable, so every later statement (of any session) sees
//!   it, and nobody sees a write that a crash could still take back.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::{
    self, CastOptions, cast_with_options, concat_batches, filter_record_batch,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, not_impl_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;
use parking_lot::Mutex;

use super::record::{self, COMMIT, Change};
use super::wal::Lsn;
use super::{Log, OwnedTableSpec};
use crate::error::{ConnectorError, Result};

/// A row that no deletion has touched.
const ALIVE: Lsn = Lsn::MAX;
/// Chunks smaller than this (single-row INSERTs) are merged once
/// [`MERGE_AFTER`] of them pile up, so scans do not walk thousands of tiny
/// batches.
const SMALL_CHUNK: usize = 8192;
const MERGE_AFTER: usize = 64;
/// Scans hand out batches of at most this many rows.
const SCAN_BATCH_ROWS: usize = 64 * 1024;

/// A table Weir owns, as DataFusion sees it.
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
    data: Mutex<TableData>,
    /// How far each changelog reader has read (rows), for `catch_up`.
    pub(crate) readers: Mutex<Vec<std::sync::Weak<std::sync::atomic::AtomicU64>>>,
}

/// Where a live row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    chunk: u32,
    row: u32,
}

struct Chunk {
    batch: RecordBatch,
    /// The end LSN of the record that inserted these rows.
    lsn: Lsn,
    /// Per row, the end LSN of the record that deleted it; `None` while no
    /// row of the chunk was deleted.
    deleted_at: Option<Vec<Lsn>>,
}

/// The rows of a table and its primary-key index.
pub(crate) struct TableData {
    name: String,
    /// The columns as declared (NOT NULL where declared so).
    declared: SchemaRef,
    /// The same columns, all nullable: the schema of every stored batch.
    schema: SchemaRef,
    primary_key: Vec<usize>,
    chunks: Vec<Chunk>,
    /// Encoded primary key -> live row. Only for tables with a primary key.
    index: HashMap<Box<[u8]>, Loc, ahash::RandomState>,
    converter: Option<RowConverter>,
    /// Tables with a primary key: their changes since `history_from`, each
    /// with the end LSN of its record, as batches with the op column (old
    /// rows -1, new rows +1), for the views that read the table.
    pub(crate) history: std::collections::VecDeque<(Lsn, RecordBatch)>,
    /// Every change with an end LSN above this is in `history`.
    pub(crate) history_from: Lsn,
}

impl TableData {
    pub(crate) fn new(spec: &OwnedTableSpec) -> Result<Self> {
        let converter = if spec.primary_key.is_empty() {
            None
        } else {
            let fields = spec
                .primary_key
                .iter()
                .map(|&i| SortField::new(spec.schema.field(i).data_type().clone()))
                .collect();
            Some(RowConverter::new(fields).map_err(|e| ConnectorError::DataFusion(e.into()))?)
        };
        Ok(Self {
            name: spec.name.clone(),
            declared: spec.schema.clone(),
            schema: nullable(&spec.schema),
            primary_key: spec.primary_key.clone(),
            chunks: Vec::new(),
            index: HashMap::default(),
            converter,
            history: Default::default(),
            history_from: 0,
        })
    }

    /// Keep a change for the views over a table with a primary key.
    fn record_change(
        &mut self,
        deleted: Option<&RecordBatch>,
        inserted: Option<&RecordBatch>,
        lsn: Lsn,
        keep: bool,
    ) -> Result<()> {
        if self.primary_key.is_empty() {
            return Ok(());
        }
        if !keep {
            self.trim_history(lsn);
            return Ok(());
        }
        let schema = weir_runtime::operators::aggregate::changelog_schema(&self.schema);
        let mut parts = Vec::new();
        for (batch, op) in [(deleted, -1i8), (inserted, 1i8)] {
            if let Some(batch) = batch.filter(|b| b.num_rows() > 0) {
                parts.push(weir_runtime::operators::aggregate::with_op(batch, op)?);
            }
        }
        if !parts.is_empty() {
            let change = concat_batches(&schema, &parts)
                .map_err(|e| ConnectorError::DataFusion(e.into()))?;
            self.history.push_back((lsn, change));
        }
        Ok(())
    }

    /// Forget the history at or below `lsn`.
    pub(crate) fn trim_history(&mut self, lsn: Lsn) {
        while self.history.front().is_some_and(|(at, _)| *at <= lsn) {
            self.history.pop_front();
        }
        self.history_from = self.history_from.max(lsn);
    }

    fn keys(&self, batch: &RecordBatch) -> Result<Option<Rows>> {
        let Some(converter) = &self.converter else {
            return Ok(None);
        };
        let columns: Vec<ArrayRef> = self
            .primary_key
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        converter
            .convert_columns(&columns)
            .map(Some)
            .map_err(|e| ConnectorError::DataFusion(e.into()))
    }

    /// Index the rows of `batch`, to become chunk `chunk`; on a duplicate
    /// key, undo and fail.
    fn index_checked(&mut self, batch: &RecordBatch, chunk: usize) -> Result<()> {
        let Some(keys) = self.keys(batch)? else {
            return Ok(());
        };
        self.index.reserve(keys.num_rows());
        for row in 0..keys.num_rows() {
            let key: Box<[u8]> = keys.row(row).as_ref().into();
            if self.index.contains_key(&key) {
                for done in 0..row {
                    self.index.remove(keys.row(done).as_ref());
                }
                return Err(self.duplicate(batch, row));
            }
            self.index.insert(
                key,
                Loc {
                    chunk: chunk as u32,
                    row: row as u32,
                },
            );
        }
        Ok(())
    }

    /// Remove the keys of `batch` from the index.
    fn unindex(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Some(keys) = self.keys(batch)? {
            for r in 0..keys.num_rows() {
                self.index.remove(keys.row(r).as_ref());
            }
        }
        Ok(())
    }

    fn duplicate(&self, batch: &RecordBatch, row: usize) -> ConnectorError {
        let options = FormatOptions::default().with_null("NULL");
        let names: Vec<&str> = self
            .primary_key
            .iter()
            .map(|&i| self.schema.field(i).name().as_str())
            .collect();
        let values: Vec<String> = self
            .primary_key
            .iter()
            .map(|&i| {
                ArrayFormatter::try_new(batch.column(i).as_ref(), &options)
                    .map(|f| f.value(row).to_string())
                    .unwrap_or_default()
            })
            .collect();
        ConnectorError::UniqueViolation {
            constraint: format!("{}_pkey", self.name),
            detail: format!(
                "Key ({})=({}) already exists.",
                names.join(", "),
                values.join(", ")
            ),
        }
    }

    fn check_not_null(&self, batch: &RecordBatch) -> Result<()> {
        for (i, field) in self.declared.fields().iter().enumerate() {
            if !field.is_nullable() && batch.column(i).null_count() > 0 {
                return Err(ConnectorError::NotNullViolation {
                    table: self.name.clone(),
                    column: field.name().clone(),
                });
            }
        }
        Ok(())
    }

    fn push(&mut self, batch: RecordBatch, lsn: Lsn) {
        if batch.num_rows() > 0 {
            self.chunks.push(Chunk {
                batch,
                lsn,
                deleted_at: None,
            });
        }
    }

    fn mark_deleted(&mut self, locs: &[Loc], lsn: Lsn) {
        for loc in locs {
            let chunk = &mut self.chunks[loc.chunk as usize];
            let rows = chunk.batch.num_rows();
            chunk.deleted_at.get_or_insert_with(|| vec![ALIVE; rows])[loc.row as usize] = lsn;
        }
    }

    /// A change read back from the log, already checked when it was made.
    pub(crate) fn apply_replayed(&mut self, change: Change, lsn: Lsn) -> Result<()> {
        if lsn > 0 {
            // From the log (not a segment): a change views may not have read.
            self.record_change(change.deleted.as_ref(), change.inserted.as_ref(), lsn, true)?;
        }
        if let Some(deleted) = &change.deleted
            && let Some(keys) = self.keys(deleted)?
        {
            let locs: Vec<Loc> = (0..keys.num_rows())
                .filter_map(|r| self.index.remove(keys.row(r).as_ref()))
                .collect();
            self.mark_deleted(&locs, lsn);
        }
        if let Some(inserted) = change.inserted {
            let inserted = self.conform(inserted)?;
            let chunk = self.chunks.len();
            if let Some(keys) = self.keys(&inserted)? {
                for row in 0..keys.num_rows() {
                    self.index.insert(
                        keys.row(row).as_ref().into(),
                        Loc {
                            chunk: chunk as u32,
                            row: row as u32,
                        },
                    );
                }
            }
            self.push(inserted, lsn);
            self.merge_small_chunks(Lsn::MAX)?;
        }
        Ok(())
    }

    /// The batch with exactly the table's schema (field names and
    /// nullability as declared).
    fn conform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        if batch.schema() == self.schema {
            return Ok(batch);
        }
        RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| ConnectorError::DataFusion(e.into()))
    }

    /// The rows visible at `durable`.
    fn snapshot(&self, durable: Lsn) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::with_capacity(self.chunks.len());
        for chunk in &self.chunks {
            if chunk.lsn > durable {
                // Chunks are in log order: all later ones are newer still.
                break;
            }
            match &chunk.deleted_at {
                None => out.push(chunk.batch.clone()),
                Some(deleted_at) => {
                    let keep: BooleanArray =
                        deleted_at.iter().map(|&at| Some(at > durable)).collect();
                    let batch = filter_record_batch(&chunk.batch, &keep)
                        .map_err(|e| ConnectorError::DataFusion(e.into()))?;
                    if batch.num_rows() > 0 {
                        out.push(batch);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The live rows (latest state, durable or not) matching `predicate`,
    /// with where they are.
    fn matching(
        &self,
        predicate: Option<&Arc<dyn datafusion::physical_plan::PhysicalExpr>>,
    ) -> Result<(Vec<Loc>, Vec<RecordBatch>)> {
        let mut locs = Vec::new();
        let mut rows = Vec::new();
        for (c, chunk) in self.chunks.iter().enumerate() {
            let n = chunk.batch.num_rows();
            let mask: Vec<bool> = match predicate {
                Some(predicate) => {
                    let value = predicate
                        .evaluate(&chunk.batch)
                        .and_then(|v| v.into_array(n))
                        .map_err(ConnectorError::DataFusion)?;
                    let value = value
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| {
                            ConnectorError::DataFusion(datafusion::error::DataFusionError::Plan(
                                "argument of WHERE must be type boolean".into(),
                            ))
                        })?;
                    (0..n)
                        .map(|i| value.is_valid(i) && value.value(i))
                        .collect()
                }
                None => vec![true; n],
            };
            let selected: Vec<u32> = (0..n)
                .filter(|&i| mask[i] && chunk.deleted_at.as_ref().is_none_or(|d| d[i] == ALIVE))
                .map(|i| i as u32)
                .collect();
            if selected.is_empty() {
                continue;
            }
            let indices = UInt32Array::from(selected.clone());
            let taken = compute::take_record_batch(&chunk.batch, &indices)
                .map_err(|e| ConnectorError::DataFusion(e.into()))?;
            rows.push(taken);
            locs.extend(selected.into_iter().map(|row| Loc {
                chunk: c as u32,
                row,
            }));
        }
        Ok((locs, rows))
    }

    /// Merge runs of small durable chunks at the end into one.
    fn merge_small_chunks(&mut self, durable: Lsn) -> Result<()> {
        let small = self
            .chunks
            .iter()
            .rev()
            .take_while(|c| c.batch.num_rows() < SMALL_CHUNK)
            .count();
        if small < MERGE_AFTER {
            return Ok(());
        }
        let from = self.chunks.len() - small;
        let to = from
            + self.chunks[from..]
                .iter()
                .take_while(|c| c.lsn <= durable)
                .count();
        if to - from < 2 {
            return Ok(());
        }
        let batches: Vec<RecordBatch> = self.chunks[from..to]
            .iter()
            .map(|c| c.batch.clone())
            .collect();
        let merged = concat_batches(&self.schema, &batches)
            .map_err(|e| ConnectorError::DataFusion(e.into()))?;
        let deleted_at = if self.chunks[from..to].iter().any(|c| c.deleted_at.is_some()) {
            let mut all = Vec::with_capacity(merged.num_rows());
            for c in &self.chunks[from..to] {
                match &c.deleted_at {
                    Some(d) => all.extend_from_slice(d),
                    None => all.extend(std::iter::repeat_n(ALIVE, c.batch.num_rows())),
                }
            }
            Some(all)
        } else {
            None
        };
        let lsn = self.chunks[to - 1].lsn;
        self.chunks.splice(
            from..to,
            [Chunk {
                batch: merged,
                lsn,
                deleted_at,
            }],
        );
        // Every live row from `from` on has moved: index it again.
        if self.converter.is_some() {
            for c in from..self.chunks.len() {
                let keys = self
                    .keys(&self.chunks[c].batch)?
                    .unwrap_or_else(|| unreachable!());
                let chunk = &self.chunks[c];
                for row in 0..keys.num_rows() {
                    if chunk.deleted_at.as_ref().is_none_or(|d| d[row] == ALIVE) {
                        self.index.insert(
                            keys.row(row).as_ref().into(),
                            Loc {
                                chunk: c as u32,
                                row: row as u32,
                            },
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

impl TableInner {
    pub(crate) fn new(spec: OwnedTableSpec, data: TableData, log: Arc<Log>) -> Self {
        let sink_schema = nullable(&spec.schema);
        Self {
            spec,
            sink_schema,
            log,
            data: Mutex::new(data),
            readers: Mutex::new(Vec::new()),
        }
    }

    /// Insert rows as one statement; returns how many once they are durable.
    pub(crate) async fn insert(&self, batches: Vec<RecordBatch>) -> Result<u64> {
        let batch = concat_batches(&self.sink_schema, &batches)
            .map_err(|e| ConnectorError::DataFusion(e.into()))?;
        let rows = batch.num_rows() as u64;
        if rows == 0 {
            return Ok(0);
        }
        let end = {
            let mut data = self.data.lock();
            data.check_not_null(&batch)?;
            let batch = data.conform(batch)?;
            let txn = self.log.next_txn();
            let payload = record::encode(
                self.spec.id,
                txn,
                COMMIT,
                &Change {
                    deleted: None,
                    inserted: Some(batch.clone()),
                },
            )?;
            let chunk = data.chunks.len();
            data.index_checked(&batch, chunk)?;
            let end = match self.log.wal.append(&payload) {
                Ok((_, end)) => end,
                Err(err) => {
                    data.unindex(&batch)?;
                    return Err(err);
                }
            };
            data.record_change(None, Some(&batch), end, self.keep_history())?;
            data.push(batch, end);
            let durable = self.log.wal.durable();
            data.merge_small_chunks(durable)?;
            end
        };
        self.log.wal.wait_durable(end).await?;
        Ok(rows)
    }

    /// Delete the live rows matching `filters`.
    async fn delete(&self, state: &dyn Session, filters: Vec<Expr>) -> Result<u64> {
        self.require_key("DELETE")?;
        let predicate = self.predicate(state, filters)?;
        let (rows, end) = {
            let mut data = self.data.lock();
            let (locs, old) = data.matching(predicate.as_ref())?;
            if locs.is_empty() {
                return Ok(0);
            }
            let old = concat_batches(&self.sink_schema, &old)
                .map_err(|e| ConnectorError::DataFusion(e.into()))?;
            let payload = record::encode(
                self.spec.id,
                self.log.next_txn(),
                COMMIT,
                &Change {
                    deleted: Some(old.clone()),
                    inserted: None,
                },
            )?;
            let (_, end) = self.log.wal.append(&payload)?;
            data.unindex(&old)?;
            data.mark_deleted(&locs, end);
            data.record_change(Some(&old), None, end, self.keep_history())?;
            (locs.len() as u64, end)
        };
        self.log.wal.wait_durable(end).await?;
        Ok(rows)
    }

    /// Update the live rows matching `filters`: their old versions are
    /// deleted and the new ones inserted, in one record.
    async fn update(
        &self,
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
        let (rows, end) = {
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
                self.log.next_txn(),
                COMMIT,
                &Change {
                    deleted: Some(old.clone()),
                    inserted: Some(new.clone()),
                },
            )?;
            let (_, end) = self.log.wal.append(&payload)?;
            data.mark_deleted(&locs, end);
            data.record_change(Some(&old), Some(&new), end, self.keep_history())?;
            data.push(new, end);
            (locs.len() as u64, end)
        };
        self.log.wal.wait_durable(end).await?;
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
        for chunk in &data.chunks {
            if chunk.lsn > durable {
                break;
            }
            let rows = chunk.batch.num_rows() as u64;
            if from < start + rows {
                let offset = (from - start) as usize;
                return Ok(Some(chunk.batch.slice(offset, rows as usize - offset)));
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
        let picked: Vec<&(Lsn, RecordBatch)> = data
            .history
            .range(start..)
            .take_while(|(at, _)| *at <= durable)
            .take(limit)
            .collect();
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

    /// Must a change be kept for views? Yes while views are starting (one
    /// may resume from before it) and while any view reads the table.
    fn keep_history(&self) -> bool {
        if !self
            .log
            .readers_started
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return true;
        }
        let mut readers = self.readers.lock();
        readers.retain(|r| r.strong_count() > 0);
        !readers.is_empty()
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
        let min = self
            .readers
            .lock()
            .iter()
            .filter_map(|r| r.upgrade())
            .map(|r| r.load(std::sync::atomic::Ordering::Acquire))
            .min();
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
        // Every live row: not one deleted at or before the last LSN there is.
        Ok((self.log.wal.end(), data.snapshot(ALIVE - 1)?))
    }

    /// Wait until the log is durable up to `lsn`.
    pub(crate) async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        self.log.wal.wait_durable(lsn).await
    }

    /// Visible rows now.
    pub(crate) fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        let durable = self.log.wal.durable();
        self.data.lock().snapshot(durable)
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
    /// statement; returns the row count once durable.
    pub async fn insert(&self, batches: Vec<RecordBatch>) -> Result<u64> {
        self.inner.insert(batches).await
    }

    /// The rows visible now.
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        self.inner.snapshot()
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

/// The same columns, all nullable. DataFusion sees a table Weir owns this
/// way, so that NOT NULL is checked here (with Postgres's message and
/// SQLSTATE) rather than failing inside DataFusion's VALUES.
fn nullable(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

fn count_plan(rows: u64) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(UInt64Array::from(vec![rows]))],
    )?;
    Ok(MemorySourceConfig::try_new_exec(
        &[vec![batch]],
        schema,
        None,
    )?)
}

#[async_trait]
impl TableProvider for OwnedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.sink_schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        // Big chunks (a COPY) are cut so every partition gets work.
        let batches: Vec<RecordBatch> = self
            .inner
            .snapshot()?
            .into_iter()
            .flat_map(|b| {
                (0..b.num_rows())
                    .step_by(SCAN_BATCH_ROWS)
                    .map(move |at| b.slice(at, SCAN_BATCH_ROWS.min(b.num_rows() - at)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let n = state
            .config()
            .target_partitions()
            .max(1)
            .min(batches.len().max(1));
        let mut partitions = vec![Vec::new(); n];
        for (i, batch) in batches.into_iter().enumerate() {
            partitions[i % n].push(batch);
        }
        Ok(MemorySourceConfig::try_new_exec(
            &partitions,
            self.schema(),
            projection.cloned(),
        )?)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return not_impl_err!("{insert_op} is not supported on tables Weir owns");
        }
        Ok(Arc::new(DataSinkExec::new(
            input,
            Arc::new(InsertSink {
                table: self.clone(),
            }),
            None,
        )))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        count_plan(self.inner.delete(state, filters).await?)
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        count_plan(self.inner.update(state, assignments, filters).await?)
    }
}

/// Where DataFusion's INSERT plan delivers rows: collected, then committed
/// as one statement.
#[derive(Debug)]
struct InsertSink {
    table: OwnedTable,
}

impl DisplayAs for InsertSink {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeirTableSink: {}", self.table.name())
    }
}

#[async_trait]
impl DataSink for InsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.table.inner.sink_schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> datafusion::common::Result<u64> {
        let mut batches = Vec::new();
        while let Some(batch) = data.next().await {
            batches.push(batch?);
        }
        Ok(self.table.inner.insert(batches).await?)
    }
}
