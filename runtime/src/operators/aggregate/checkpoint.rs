//! The aggregate's state in checkpoints: what changed since the last barrier,
//! as Arrow chunks, and how to rebuild the state from them.
//!
//! Every chunk starts with the group-key columns (in group order), so a
//! restore can keep the rows whose partition key hashes to this worker.
//!
//! - Closing windows: one chunk per window (`c<close>`): key columns then the
//!   accumulators' state columns. Only windows that took rows since the last
//!   barrier are written; closed windows' chunks are removed.
//! - Updating groups: `b<epoch>` (every group) or `d<epoch>` (the groups that
//!   changed or were dropped: `op` -1); a full snapshot replaces the deltas
//!   once they outgrow it.
//! - Sessions: the same, per partition key: a delta drops the key's sessions
//!   (`op` -1) and lists the ones it has now.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int8Array, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{Accumulator, EmitTo};

use super::{AggregateOperator, Group, KeySessions, Session, State, WindowTable};
use crate::checkpoint::StateWrite;
use crate::operators::exchange;

/// Delta tracking, on once the job checkpoints.
#[derive(Default)]
pub(super) struct Tracking {
    pub(super) on: bool,
    /// Closing windows written by earlier snapshots.
    pub(super) saved: std::collections::BTreeSet<i64>,
    /// Updating groups (full-key bytes) or session keys (partition-key
    /// bytes) changed since the last snapshot.
    pub(super) dirty: std::collections::HashSet<Box<[u8]>>,
    /// Rows in the last full snapshot, and in the deltas since.
    pub(super) base_rows: usize,
    pub(super) delta_rows: usize,
}

impl Tracking {
    pub(super) fn touch(&mut self, key: &[u8]) {
        if self.on && !self.dirty.contains(key) {
            self.dirty.insert(key.into());
        }
    }

    fn full(&self) -> bool {
        self.base_rows == 0 || self.delta_rows + self.dirty.len() > self.base_rows
    }

    /// A full (`b<epoch>`) or delta (`d<epoch>`) chunk of keyed rows.
    fn keyed_write(
        &mut self,
        rows: StateRows,
        full: bool,
        key_types: &[DataType],
        epoch: u64,
    ) -> Result<StateWrite> {
        let n = rows.len();
        let chunk = rows.finish(key_types)?;
        self.wrote(full, n);
        let mut write = StateWrite {
            reset: full,
            ..Default::default()
        };
        if full || n > 0 {
            let kind = if full { "b" } else { "d" };
            write.put.push((format!("{kind}{epoch}"), chunk));
        }
        Ok(write)
    }

    fn wrote(&mut self, full: bool, rows: usize) {
        self.dirty.clear();
        if full {
            self.base_rows = rows.max(1);
            self.delta_rows = 0;
        } else {
            self.delta_rows += rows;
        }
    }
}

fn batch(columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn array_of(values: Vec<ScalarValue>, data_type: &DataType) -> Result<ArrayRef> {
    if values.is_empty() {
        return Ok(datafusion::arrow::array::new_empty_array(data_type));
    }
    let array = ScalarValue::iter_to_array(values)?;
    if array.data_type() == data_type {
        Ok(array)
    } else {
        Ok(datafusion::arrow::compute::cast(&array, data_type)?)
    }
}

impl AggregateOperator {
    /// Record what changes from now on, for delta checkpoints.
    pub fn enable_checkpoints(&mut self) {
        self.tracking.on = true;
    }

    /// The watermark this operator has seen.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// What changed since the last snapshot, as chunks (at a barrier).
    pub fn snapshot(&mut self, epoch: u64) -> Result<StateWrite> {
        let spec = self.spec.clone();
        let mut write = StateWrite::default();
        match &mut self.state {
            State::Closing(windows) => {
                let gone: Vec<i64> = self
                    .tracking
                    .saved
                    .iter()
                    .copied()
                    .filter(|c| !windows.contains_key(c))
                    .collect();
                for close in gone {
                    self.tracking.saved.remove(&close);
                    write.remove.push(format!("c{close}"));
                }
                for (close, table) in windows.iter_mut() {
                    if !table.dirty {
                        continue;
                    }
                    table.dirty = false;
                    write.put.push((
                        format!("c{close}"),
                        table.checkpoint(&spec, &self.partition_converter)?,
                    ));
                    self.tracking.saved.insert(*close);
                }
            }
            State::Updating(groups) => {
                let full = self.tracking.full();
                let mut rows = StateRows::new(&spec, spec.group.len())?;
                if full {
                    for g in groups.groups.values_mut() {
                        rows.push(
                            &g.key,
                            g.close,
                            Some(g.rows),
                            &mut g.accumulators,
                            g.emitted.as_ref(),
                        )?;
                    }
                } else {
                    let mut dropped = Vec::new();
                    for key in &self.tracking.dirty {
                        match groups.groups.get_mut(key) {
                            Some(g) => rows.push(
                                &g.key,
                                g.close,
                                Some(g.rows),
                                &mut g.accumulators,
                                g.emitted.as_ref(),
                            )?,
                            None => dropped.push(key.as_ref()),
                        }
                    }
                    rows.push_dropped(&self.converter, &dropped)?;
                }
                write = self
                    .tracking
                    .keyed_write(rows, full, &self.group_types, epoch)?;
            }
            State::Sessions(keys) => {
                let full = self.tracking.full();
                let mut rows = StateRows::new(&spec, spec.partition_keys.len())?;
                let visit = |rows: &mut StateRows, entry: &mut KeySessions| -> Result<()> {
                    for session in entry.sessions.iter_mut() {
                        rows.push(
                            &entry.key,
                            Some(session.start),
                            Some(session.end),
                            &mut session.accumulators,
                            session.emitted.as_ref(),
                        )?;
                    }
                    Ok(())
                };
                if full {
                    for entry in keys.values_mut() {
                        visit(&mut rows, entry)?;
                    }
                } else {
                    // A changed key: drop what the checkpoint had, then list
                    // its sessions now.
                    let dirty: Vec<&[u8]> =
                        self.tracking.dirty.iter().map(|k| k.as_ref()).collect();
                    rows.push_dropped(&self.partition_converter, &dirty)?;
                    for key in &self.tracking.dirty {
                        if let Some(entry) = keys.get_mut(key) {
                            visit(&mut rows, entry)?;
                        }
                    }
                }
                write = self
                    .tracking
                    .keyed_write(rows, full, &self.partition_types, epoch)?;
            }
        }
        Ok(write)
    }

    /// Rebuild state from a checkpoint's chunks (of every old worker, each
    /// worker's in order), keeping the keys that hash to `worker` of `workers`.
    pub fn restore(
        &mut self,
        watermark: i64,
        chunks: &[(String, RecordBatch)],
        worker: usize,
        workers: usize,
    ) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let spec = self.spec.clone();
        for (id, chunk) in chunks {
            let key_columns: Vec<usize> = match &self.state {
                State::Sessions(_) => (0..spec.partition_keys.len()).collect(),
                _ => spec.partition_keys.clone(),
            };
            let keys: Vec<ArrayRef> = key_columns
                .iter()
                .map(|&k| chunk.column(k).clone())
                .collect();
            let Some(mine) = exchange::partition(chunk, &keys, workers)?
                .into_iter()
                .nth(worker)
                .flatten()
            else {
                continue;
            };
            match &mut self.state {
                State::Closing(windows) => {
                    let Some(close) = id.strip_prefix('c').and_then(|c| c.parse::<i64>().ok())
                    else {
                        return exec_err!("a window chunk without its close time: {id}");
                    };
                    let groups = spec.group.len();
                    let table = match windows.entry(close) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            let window_values = (0..groups)
                                .map(|k| {
                                    if spec.partition_keys.contains(&k) {
                                        Ok(None)
                                    } else {
                                        ScalarValue::try_from_array(mine.column(k), 0).map(Some)
                                    }
                                })
                                .collect::<Result<Vec<_>>>()?;
                            e.insert(WindowTable::new(
                                &spec,
                                &self.partition_types,
                                &self.partition_converter,
                                window_values,
                            )?)
                        }
                    };
                    let partition: Vec<ArrayRef> = spec
                        .partition_keys
                        .iter()
                        .map(|&k| mine.column(k).clone())
                        .collect();
                    let rows = match self.partition_types.as_slice() {
                        [] | [DataType::Int64] => None,
                        _ => Some(self.partition_converter.convert_columns(&partition)?),
                    };
                    let all: Vec<u32> = (0..mine.num_rows() as u32).collect();
                    let indices = table.index.indices(&partition, rows.as_ref(), &all);
                    let total = table.index.len();
                    let mut column = groups;
                    for (acc, aggregate) in table.accumulators.iter_mut().zip(&spec.aggregates) {
                        let width = aggregate.state_fields()?.len();
                        let states = mine.columns()[column..column + width].to_vec();
                        column += width;
                        acc.merge_batch(&states, &indices, total)?;
                    }
                    table.dirty = true;
                }
                State::Updating(state) => {
                    let groups = spec.group.len();
                    let key_rows = super::key_rows(
                        &self.converter,
                        &mine.columns()[..groups],
                        mine.num_rows(),
                    )?;
                    let ops = mine.column(groups).as_primitive::<Int8Type>();
                    let closes = mine.column(groups + 1).as_primitive::<Int64Type>();
                    let counts = mine.column(groups + 2).as_primitive::<Int64Type>();
                    let emitted = mine.column(groups + 3).as_boolean();
                    for (row, key) in key_rows.into_iter().enumerate() {
                        if ops.value(row) < 0 {
                            state.groups.remove(&key);
                            continue;
                        }
                        let (accumulators, values) = restore_accumulators(
                            &spec,
                            &mine,
                            groups + 4,
                            row,
                            emitted.value(row),
                        )?;
                        let close = (!closes.is_null(row)).then(|| closes.value(row));
                        if let Some(close) = close {
                            state.by_close.entry(close).or_default().push(key.clone());
                        }
                        state.groups.insert(
                            key,
                            Group {
                                key: (0..groups)
                                    .map(|k| ScalarValue::try_from_array(mine.column(k), row))
                                    .collect::<Result<_>>()?,
                                accumulators,
                                emitted: values,
                                close,
                                rows: if counts.is_null(row) {
                                    0
                                } else {
                                    counts.value(row)
                                },
                            },
                        );
                    }
                    self.tracking.base_rows = state.groups.len().max(1);
                }
                State::Sessions(state) => {
                    let p = spec.partition_keys.len();
                    let key_rows = self
                        .partition_converter
                        .convert_columns(&mine.columns()[..p])?;
                    let ops = mine.column(p).as_primitive::<Int8Type>();
                    let starts = mine.column(p + 1).as_primitive::<Int64Type>();
                    let ends = mine.column(p + 2).as_primitive::<Int64Type>();
                    let emitted = mine.column(p + 3).as_boolean();
                    for row in 0..mine.num_rows() {
                        let key: Box<[u8]> = key_rows.row(row).as_ref().into();
                        if ops.value(row) < 0 {
                            state.remove(&key);
                            continue;
                        }
                        let (accumulators, values) =
                            restore_accumulators(&spec, &mine, p + 4, row, emitted.value(row))?;
                        let entry = match state.entry(key) {
                            datafusion::common::hash_map::Entry::Occupied(e) => e.into_mut(),
                            datafusion::common::hash_map::Entry::Vacant(e) => {
                                e.insert(KeySessions {
                                    key: (0..p)
                                        .map(|k| ScalarValue::try_from_array(mine.column(k), row))
                                        .collect::<Result<_>>()?,
                                    sessions: Vec::new(),
                                })
                            }
                        };
                        entry.sessions.push(Session {
                            start: starts.value(row),
                            end: ends.value(row),
                            accumulators,
                            emitted: values,
                        });
                    }
                    self.tracking.base_rows = state.len().max(1);
                }
            }
        }
        if let State::Closing(windows) = &mut self.state {
            // Restored windows are already in the checkpoint: clean.
            for (close, table) in windows.iter_mut() {
                table.dirty = false;
                self.tracking.saved.insert(*close);
            }
        }
        Ok(())
    }
}

impl WindowTable {
    /// The table as a chunk: group keys, then each accumulator's state.
    /// Reading a `GroupsAccumulator`'s state drains it, so the state is
    /// merged back into fresh accumulators (one pass over the groups).
    fn checkpoint(
        &mut self,
        spec: &super::AggregateSpec,
        converter: &datafusion::arrow::row::RowConverter,
    ) -> Result<RecordBatch> {
        let groups = self.index.len();
        let mut partition = self.index.columns(converter)?.into_iter();
        let mut columns = Vec::new();
        // Keys keep the types the group expressions give (not the output's),
        // so a restore hashes them to the same worker as the exchange.
        for value in &self.window_values {
            columns.push(match value {
                Some(value) => value.to_array_of_size(groups)?,
                None => match partition.next() {
                    Some(column) => column,
                    None => return exec_err!("a partition key is missing"),
                },
            });
        }
        let indices: Vec<usize> = (0..groups).collect();
        let fresh = WindowTable::new(spec, &[], converter, Vec::new())?.accumulators;
        for (acc, mut new) in self.accumulators.iter_mut().zip(fresh) {
            let state = acc.state(EmitTo::All)?;
            new.merge_batch(&state, &indices, groups)?;
            *acc = new;
            columns.extend(state);
        }
        batch(columns)
    }
}

/// A group's accumulators and the values it last emitted.
type RestoredGroup = (Vec<Box<dyn Accumulator>>, Option<Vec<ScalarValue>>);

/// Rebuild one row's accumulators (and its emitted values) from a chunk.
fn restore_accumulators(
    spec: &super::AggregateSpec,
    chunk: &RecordBatch,
    first_state: usize,
    row: usize,
    emitted: bool,
) -> Result<RestoredGroup> {
    let take_row = UInt32Array::from(vec![row as u32]);
    let mut column = first_state;
    let mut accumulators = Vec::with_capacity(spec.aggregates.len());
    for i in 0..spec.aggregates.len() {
        let width = spec.state_fields(i)?.len();
        let states = chunk.columns()[column..column + width]
            .iter()
            .map(|c| Ok(take(c.as_ref(), &take_row, None)?))
            .collect::<Result<Vec<_>>>()?;
        column += width;
        let mut acc = spec.accumulator(i)?;
        acc.merge_batch(&states)?;
        accumulators.push(acc);
    }
    let values = if emitted {
        Some(
            (0..spec.aggregates.len())
                .map(|a| ScalarValue::try_from_array(chunk.column(column + a), row))
                .collect::<Result<Vec<_>>>()?,
        )
    } else {
        None
    };
    Ok((accumulators, values))
}

/// Rows of keyed state: key columns | op | a | b | emitted | accumulator
/// states | emitted values. Updating groups put their close time in `a`;
/// sessions their bounds in `a` and `b`.
struct StateRows<'a> {
    spec: &'a super::AggregateSpec,
    keys: Vec<Vec<ScalarValue>>,
    ops: Vec<i8>,
    a: Vec<Option<i64>>,
    b: Vec<Option<i64>>,
    emitted: Vec<bool>,
    state_fields: Vec<datafusion::arrow::datatypes::FieldRef>,
    states: Vec<Vec<ScalarValue>>,
    values: Vec<Vec<ScalarValue>>,
}

impl<'a> StateRows<'a> {
    fn new(spec: &'a super::AggregateSpec, key_count: usize) -> Result<Self> {
        let mut state_fields = Vec::new();
        for i in 0..spec.aggregates.len() {
            state_fields.extend(spec.state_fields(i)?);
        }
        Ok(Self {
            spec,
            keys: vec![Vec::new(); key_count],
            ops: Vec::new(),
            a: Vec::new(),
            b: Vec::new(),
            emitted: Vec::new(),
            states: vec![Vec::new(); state_fields.len()],
            state_fields,
            values: vec![Vec::new(); spec.aggregates.len()],
        })
    }

    fn len(&self) -> usize {
        self.ops.len()
    }

    fn push(
        &mut self,
        key: &[ScalarValue],
        a: Option<i64>,
        b: Option<i64>,
        accumulators: &mut [Box<dyn Accumulator>],
        emitted: Option<&Vec<ScalarValue>>,
    ) -> Result<()> {
        for (column, value) in self.keys.iter_mut().zip(key) {
            column.push(value.clone());
        }
        self.ops.push(1);
        self.a.push(a);
        self.b.push(b);
        self.emitted.push(emitted.is_some());
        let mut field = 0;
        for acc in accumulators.iter_mut() {
            // `state` may be read at any time without changing the result.
            for value in acc.state()? {
                self.states[field].push(value);
                field += 1;
            }
        }
        let group_count = self.spec.group.len();
        for (i, column) in self.values.iter_mut().enumerate() {
            column.push(match emitted.and_then(|v| v.get(i)) {
                Some(v) => v.clone(),
                None => ScalarValue::try_from(
                    self.spec.output_schema.field(group_count + i).data_type(),
                )?,
            });
        }
        Ok(())
    }

    /// Rows that drop keys (given as row bytes of `converter`).
    fn push_dropped(
        &mut self,
        converter: &datafusion::arrow::row::RowConverter,
        keys: &[&[u8]],
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        // No key columns (one global group): nothing to decode.
        let columns = if self.keys.is_empty() {
            Vec::new()
        } else {
            let parser = converter.parser();
            let mut encoded = converter.empty_rows(keys.len(), 0);
            for key in keys {
                encoded.push(parser.parse(key));
            }
            converter.convert_rows(&encoded)?
        };
        for row in 0..keys.len() {
            for (column, values) in self.keys.iter_mut().zip(&columns) {
                column.push(ScalarValue::try_from_array(values, row)?);
            }
            self.ops.push(-1);
            self.a.push(None);
            self.b.push(None);
            self.emitted.push(false);
            for (values, field) in self.states.iter_mut().zip(&self.state_fields) {
                values.push(ScalarValue::try_from(field.data_type())?);
            }
            let group_count = self.spec.group.len();
            for (i, column) in self.values.iter_mut().enumerate() {
                column.push(ScalarValue::try_from(
                    self.spec.output_schema.field(group_count + i).data_type(),
                )?);
            }
        }
        Ok(())
    }

    fn finish(self, key_types: &[DataType]) -> Result<RecordBatch> {
        let mut columns = Vec::new();
        for (values, data_type) in self.keys.into_iter().zip(key_types) {
            columns.push(array_of(values, data_type)?);
        }
        columns.push(Arc::new(Int8Array::from(self.ops)) as ArrayRef);
        columns.push(Arc::new(Int64Array::from(self.a)));
        columns.push(Arc::new(Int64Array::from(self.b)));
        columns.push(Arc::new(BooleanArray::from(self.emitted)));
        for (values, field) in self.states.into_iter().zip(&self.state_fields) {
            columns.push(array_of(values, field.data_type())?);
        }
        let group_count = self.spec.group.len();
        for (i, values) in self.values.into_iter().enumerate() {
            columns.push(array_of(
                values,
                self.spec.output_schema.field(group_count + i).data_type(),
            )?);
        }
        batch(columns)
    }
}
