//! A table's rows in memory and its primary-key index: Arrow chunks, each
//! row with the LSN that inserted it and the one that deleted it, and the
//! history of changes the views over the table read.
//!
//! # Correctness
//! Every chunk and every deletion carries the LSN of the record that made
//! it, so a scan at a durable LSN keeps exactly what a crash could not take
//! back; the index holds exactly the live rows of the latest state (its
//! callers, in `table.rs`, change both under the table's lock).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{self, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::OwnedTableSpec;
use super::record::Change;
use super::wal::Lsn;
use crate::error::{ConnectorError, Result};

/// A row that no deletion has touched.
pub(super) const ALIVE: Lsn = Lsn::MAX;
/// The LSN of a change an open transaction made: above every real LSN, so
/// no scan at a durable LSN sees it; the transaction itself scans at
/// `PENDING` (its rows in, the rows it deleted out).
pub(super) const PENDING: Lsn = ALIVE - 1;
/// Small chunks (single-row INSERTs) are merged so scans do not walk
/// thousands of tiny batches, in tiers as an LSM tree's runs are: once
/// [`MERGE_AFTER`] chunks smaller than a tier's size pile up at the end,
/// they become one. A row is copied (and its key indexed again) about once
/// per tier on its way into a chunk of hundreds of thousands of rows.
/// Merging every trailing chunk below one size instead re-copied up to that
/// many rows every [`MERGE_AFTER`] commits: most of a single-row INSERT's
/// CPU once a table held a few thousand of them.
const TIERS: [usize; 3] = [64, 4096, SMALL_CHUNK];
/// Chunks this large (a COPY's) are never merged.
const SMALL_CHUNK: usize = 8192;
const MERGE_AFTER: usize = 64;

/// Where a live row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Loc {
    pub(super) chunk: u32,
    pub(super) row: u32,
}

pub(super) struct Chunk {
    pub(super) batch: RecordBatch,
    /// The end LSN of the record that inserted these rows.
    pub(super) lsn: Lsn,
    /// Per row, the end LSN of the record that deleted it; `None` while no
    /// row of the chunk was deleted.
    pub(super) deleted_at: Option<Vec<Lsn>>,
}

/// The rows of a table and its primary-key index.
pub(crate) struct TableData {
    name: String,
    /// The columns as declared (NOT NULL where declared so).
    declared: SchemaRef,
    /// The same columns, all nullable: the schema of every stored batch.
    schema: SchemaRef,
    primary_key: Vec<usize>,
    pub(super) chunks: Vec<Chunk>,
    /// Encoded primary key -> live row. Only for tables with a primary key.
    pub(super) index: HashMap<Box<[u8]>, Loc, ahash::RandomState>,
    converter: Option<RowConverter>,
    /// Tables with a primary key: their changes since `history_from`, each
    /// with the end LSN of its record, as batches with the op column (old
    /// rows -1, new rows +1), for the views that read the table.
    pub(crate) history: std::collections::VecDeque<(Lsn, RecordBatch)>,
    /// Every change with an end LSN above this is in `history`.
    pub(crate) history_from: Lsn,
    /// The open transaction that holds the table's write lock and has
    /// changed it: what COMMIT stamps and ROLLBACK takes out.
    pub(super) pending: Option<Pending>,
}

/// An open transaction's changes to one table.
pub(super) struct Pending {
    /// The transaction's key.
    pub(super) owner: u64,
    /// Chunks from here on are its inserts (chunks are not merged while a
    /// transaction is pending, so positions hold still).
    first_chunk: usize,
    /// Rows it deleted (their `deleted_at` is `PENDING`).
    deleted: Vec<Loc>,
    /// Its changes, in order, for the history (tables with a primary key).
    changes: Vec<Change>,
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
            pending: None,
        })
    }

    /// The transaction `owner` (which holds the write lock) starts changing
    /// the table.
    pub(super) fn begin(&mut self, owner: u64) {
        if self.pending.as_ref().is_none_or(|p| p.owner != owner) {
            self.pending = Some(Pending {
                owner,
                first_chunk: self.chunks.len(),
                deleted: Vec::new(),
                changes: Vec::new(),
            });
        }
    }

    /// The pending transaction's changes (it holds the write lock).
    pub(super) fn pending_mut(&mut self) -> Result<&mut Pending> {
        self.pending.as_mut().ok_or_else(|| {
            ConnectorError::LogFailed(format!(
                "a write to table \"{}\" outside its transaction",
                self.name
            ))
        })
    }

    /// Keep a pending change for the history, stamped at COMMIT.
    pub(super) fn pending_change(
        &mut self,
        deleted: Option<&RecordBatch>,
        inserted: Option<&RecordBatch>,
    ) -> Result<()> {
        let history = !self.primary_key.is_empty();
        let pending = self.pending_mut()?;
        if history {
            pending.changes.push(Change {
                deleted: deleted.cloned(),
                inserted: inserted.cloned(),
            });
        }
        Ok(())
    }

    /// Rows the pending transaction deleted.
    pub(super) fn pending_delete(&mut self, locs: &[Loc]) -> Result<()> {
        self.mark_deleted(locs, PENDING);
        self.pending_mut()?.deleted.extend_from_slice(locs);
        Ok(())
    }

    /// COMMIT, with the commit record ending at `end`: the pending changes
    /// become changes at `end` (visible once it is durable), the history
    /// gets them (when `keep`), small chunks are merged again.
    pub(super) fn commit(&mut self, end: Lsn, keep: bool, durable: Lsn) -> Result<()> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        for chunk in &mut self.chunks[pending.first_chunk..] {
            chunk.lsn = end;
        }
        for loc in &pending.deleted {
            if let Some(deleted_at) = &mut self.chunks[loc.chunk as usize].deleted_at {
                deleted_at[loc.row as usize] = end;
            }
        }
        for change in &pending.changes {
            self.record_change(change.deleted.as_ref(), change.inserted.as_ref(), end, keep)?;
        }
        self.merge_small_chunks(durable)
    }

    /// ROLLBACK: the pending rows out of the chunks and the index, the rows
    /// it deleted back in.
    pub(super) fn rollback(&mut self) -> Result<()> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        // Keys of its rows still live: out of the index first, since a row
        // it deleted may have the same key.
        for c in pending.first_chunk..self.chunks.len() {
            if let Some(keys) = self.keys(&self.chunks[c].batch)? {
                let chunk = &self.chunks[c];
                for row in 0..keys.num_rows() {
                    if chunk.deleted_at.as_ref().is_none_or(|d| d[row] == ALIVE) {
                        self.index.remove(keys.row(row).as_ref());
                    }
                }
            }
        }
        self.chunks.truncate(pending.first_chunk);
        let mut by_chunk: HashMap<u32, Vec<u32>> = HashMap::new();
        for loc in pending.deleted {
            if (loc.chunk as usize) < pending.first_chunk {
                by_chunk.entry(loc.chunk).or_default().push(loc.row);
            }
        }
        for (c, rows) in by_chunk {
            let keys = self.keys(&self.chunks[c as usize].batch)?;
            let chunk = &mut self.chunks[c as usize];
            for &row in &rows {
                if let Some(deleted_at) = &mut chunk.deleted_at {
                    deleted_at[row as usize] = ALIVE;
                }
                if let Some(keys) = &keys {
                    self.index.insert(
                        keys.row(row as usize).as_ref().into(),
                        Loc { chunk: c, row },
                    );
                }
            }
        }
        Ok(())
    }

    /// Keep a change for the views over a table with a primary key.
    pub(super) fn record_change(
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

    pub(super) fn keys(&self, batch: &RecordBatch) -> Result<Option<Rows>> {
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
    pub(super) fn index_checked(&mut self, batch: &RecordBatch, chunk: usize) -> Result<()> {
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
    pub(super) fn unindex(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Some(keys) = self.keys(batch)? {
            for r in 0..keys.num_rows() {
                self.index.remove(keys.row(r).as_ref());
            }
        }
        Ok(())
    }

    pub(super) fn duplicate(&self, batch: &RecordBatch, row: usize) -> ConnectorError {
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

    pub(super) fn check_not_null(&self, batch: &RecordBatch) -> Result<()> {
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

    pub(super) fn push(&mut self, batch: RecordBatch, lsn: Lsn) {
        if batch.num_rows() > 0 {
            self.chunks.push(Chunk {
                batch,
                lsn,
                deleted_at: None,
            });
        }
    }

    pub(super) fn mark_deleted(&mut self, locs: &[Loc], lsn: Lsn) {
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
    pub(super) fn conform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        if batch.schema() == self.schema {
            return Ok(batch);
        }
        RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| ConnectorError::DataFusion(e.into()))
    }

    /// The rows visible at `durable`.
    pub(super) fn snapshot(&self, durable: Lsn) -> Result<Vec<RecordBatch>> {
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
    pub(super) fn matching(
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

    /// Merge runs of small durable chunks at the end into one (not while a
    /// transaction is pending: its positions must hold still).
    pub(super) fn merge_small_chunks(&mut self, durable: Lsn) -> Result<()> {
        if self.pending.is_some() {
            return Ok(());
        }
        // Chunks are newest last and, below SMALL_CHUNK, smaller the newer:
        // each tier is the run of chunks of its size just before the
        // smaller tiers' runs.
        let mut below = 0;
        for tier in TIERS {
            let rows = |c: &Chunk| c.batch.num_rows();
            let end = self.chunks.len()
                - self
                    .chunks
                    .iter()
                    .rev()
                    .take_while(|c| rows(c) < below)
                    .count();
            let run = self.chunks[..end]
                .iter()
                .rev()
                .take_while(|c| (below..tier).contains(&rows(c)))
                .count();
            if run >= MERGE_AFTER {
                self.merge_run(end - run, end, durable)?;
            }
            below = tier;
        }
        Ok(())
    }

    /// Merge the durable ones of the chunks `from..end` into one.
    fn merge_run(&mut self, from: usize, end: usize, durable: Lsn) -> Result<()> {
        let to = from
            + self.chunks[from..end]
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

/// The same columns, all nullable. DataFusion sees a table Weir owns this
/// way, so that NOT NULL is checked here (with Postgres's message and
/// SQLSTATE) rather than failing inside DataFusion's VALUES.
pub(super) fn nullable(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}
