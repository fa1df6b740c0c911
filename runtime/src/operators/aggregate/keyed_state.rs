//! Checkpoint chunks of keyed state (updating groups and sessions): one
//! layout, written and read here only, and the delta tracking that decides
//! between a full chunk and a delta.
//!
//! A chunk is `b<epoch>` (every entry: a base) or `d<epoch>` (the entries
//! that changed since the last snapshot, and rows with op -1 for keys that
//! were dropped); a full snapshot replaces the deltas once they outgrow it.
//! Its columns, in order ([`Layout`]):
//!
//! ```text
//!   key columns | op | a | b | emitted | accumulator states... | emitted values...
//! ```
//! - key columns: the group key (updating) or the partition key (sessions),
//!   of the types the group expressions give, so a restore hashes them to
//!   the same worker as the exchange;
//! - `op`: `1` an entry, `-1` the key is gone;
//! - `a`, `b`: updating groups: the close time and the input row count;
//!   sessions: the start and the end;
//! - `emitted`: whether the entry emitted values (the last columns).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int8Array, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int8Type, Int64Type, Schema};
use datafusion::arrow::row::RowConverter;
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::Accumulator;

use super::shared::Base;
use crate::checkpoint::StateWrite;

/// Column positions of a keyed-state chunk with `keys` key columns.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    /// How many key columns come first.
    pub(super) keys: usize,
}

impl Layout {
    /// The op column.
    pub(super) fn op(self) -> usize {
        self.keys
    }
    fn a(self) -> usize {
        self.keys + 1
    }
    fn b(self) -> usize {
        self.keys + 2
    }
    /// The column saying whether an entry emitted values.
    pub(super) fn emitted(self) -> usize {
        self.keys + 3
    }
    /// The first accumulator state column.
    pub(super) fn states(self) -> usize {
        self.keys + 4
    }
}

/// Delta tracking of keyed state, on once the job checkpoints.
#[derive(Default)]
pub(super) struct Tracking {
    on: bool,
    /// Keys (updating groups: full-key bytes; sessions: partition-key bytes)
    /// changed since the last snapshot.
    dirty: HashSet<Box<[u8]>>,
    /// Rows in the last full snapshot, and in the deltas since.
    base_rows: usize,
    delta_rows: usize,
}

impl Tracking {
    /// Record what changes from now on.
    pub(super) fn enable(&mut self) {
        self.on = true;
    }

    /// `key` changed.
    pub(super) fn touch(&mut self, key: &[u8]) {
        if self.on && !self.dirty.contains(key) {
            self.dirty.insert(key.into());
        }
    }

    /// The keys changed since the last snapshot.
    pub(super) fn dirty(&self) -> impl Iterator<Item = &[u8]> {
        self.dirty.iter().map(|k| k.as_ref())
    }

    /// Should the next snapshot be full rather than a delta?
    pub(super) fn full(&self) -> bool {
        self.base_rows == 0 || self.delta_rows + self.dirty.len() > self.base_rows
    }

    /// A restore rebuilt `entries` entries: they are the base.
    pub(super) fn restored(&mut self, entries: usize) {
        self.base_rows = entries.max(1);
    }

    /// A full (`b<epoch>`) or delta (`d<epoch>`) chunk of `rows`.
    pub(super) fn write(
        &mut self,
        rows: StateRows,
        full: bool,
        key_types: &[DataType],
        epoch: u64,
    ) -> Result<StateWrite> {
        let n = rows.len();
        let chunk = rows.finish(key_types)?;
        self.dirty.clear();
        if full {
            self.base_rows = n.max(1);
            self.delta_rows = 0;
        } else {
            self.delta_rows += n;
        }
        Ok(state_write(chunk, full, epoch))
    }
}

/// A full (`b<epoch>`) or delta (`d<epoch>`) chunk as a write; an empty
/// delta writes nothing.
pub(super) fn state_write(chunk: RecordBatch, full: bool, epoch: u64) -> StateWrite {
    let mut write = StateWrite {
        reset: full,
        ..Default::default()
    };
    if full || chunk.num_rows() > 0 {
        let kind = if full { "b" } else { "d" };
        write.put.push((format!("{kind}{epoch}"), chunk));
    }
    write
}

/// A chunk's columns, named by position (`c0`, `c1`, ...): readers go by
/// [`Layout`], not by name.
pub(super) fn chunk(columns: Vec<ArrayRef>) -> Result<RecordBatch> {
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

/// A keyed-state chunk being written, row by row.
pub(super) struct StateRows<'a> {
    base: &'a Base,
    keys: Vec<Vec<ScalarValue>>,
    ops: Vec<i8>,
    a: Vec<Option<i64>>,
    b: Vec<Option<i64>>,
    emitted: Vec<bool>,
    state_fields: Vec<FieldRef>,
    states: Vec<Vec<ScalarValue>>,
    values: Vec<Vec<ScalarValue>>,
}

impl<'a> StateRows<'a> {
    /// An empty chunk with `key_count` key columns.
    pub(super) fn new(base: &'a Base, key_count: usize) -> Result<Self> {
        let mut state_fields = Vec::new();
        for i in 0..base.spec.aggregates.len() {
            state_fields.extend(base.state_fields(i)?);
        }
        Ok(Self {
            base,
            keys: vec![Vec::new(); key_count],
            ops: Vec::new(),
            a: Vec::new(),
            b: Vec::new(),
            emitted: Vec::new(),
            states: vec![Vec::new(); state_fields.len()],
            state_fields,
            values: vec![Vec::new(); base.spec.aggregates.len()],
        })
    }

    fn len(&self) -> usize {
        self.ops.len()
    }

    /// The type of aggregate `i`'s emitted value.
    fn value_type(&self, i: usize) -> &DataType {
        let spec = &self.base.spec;
        spec.output_schema.field(spec.group.len() + i).data_type()
    }

    /// One entry.
    pub(super) fn push(
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
        for i in 0..self.values.len() {
            let value = match emitted.and_then(|v| v.get(i)) {
                Some(v) => v.clone(),
                None => ScalarValue::try_from(self.value_type(i))?,
            };
            self.values[i].push(value);
        }
        Ok(())
    }

    /// Rows that drop keys (given as row bytes of `converter`).
    pub(super) fn push_dropped(&mut self, converter: &RowConverter, keys: &[&[u8]]) -> Result<()> {
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
            for i in 0..self.values.len() {
                let null = ScalarValue::try_from(self.value_type(i))?;
                self.values[i].push(null);
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
        let spec = &self.base.spec;
        for (i, values) in self.values.into_iter().enumerate() {
            let data_type = spec.output_schema.field(spec.group.len() + i).data_type();
            columns.push(array_of(values, data_type)?);
        }
        chunk(columns)
    }
}

/// A group's accumulators and the values it last emitted.
pub(super) type RestoredEntry = (Vec<Box<dyn Accumulator>>, Option<Vec<ScalarValue>>);

/// A keyed-state chunk being read.
pub(super) struct StateChunk<'a> {
    chunk: &'a RecordBatch,
    layout: Layout,
}

impl<'a> StateChunk<'a> {
    /// `chunk`, with `keys` key columns first.
    pub(super) fn new(chunk: &'a RecordBatch, keys: usize) -> Result<Self> {
        let layout = Layout { keys };
        if chunk.num_columns() < layout.states() {
            return internal_err!(
                "a keyed-state chunk of {} columns, fewer than its layout's {}",
                chunk.num_columns(),
                layout.states()
            );
        }
        Ok(Self { chunk, layout })
    }

    /// The key columns.
    pub(super) fn keys(&self) -> &'a [ArrayRef] {
        &self.chunk.columns()[..self.layout.keys]
    }

    /// Key value `k` of `row`.
    pub(super) fn key(&self, k: usize, row: usize) -> Result<ScalarValue> {
        ScalarValue::try_from_array(self.chunk.column(k), row)
    }

    /// Rows.
    pub(super) fn rows(&self) -> usize {
        self.chunk.num_rows()
    }

    /// Does `row` drop its key (op -1)?
    pub(super) fn dropped(&self, row: usize) -> bool {
        self.chunk
            .column(self.layout.op())
            .as_primitive::<Int8Type>()
            .value(row)
            < 0
    }

    /// Column `a` of `row`.
    pub(super) fn a(&self, row: usize) -> Option<i64> {
        let a = self
            .chunk
            .column(self.layout.a())
            .as_primitive::<Int64Type>();
        (!a.is_null(row)).then(|| a.value(row))
    }

    /// Column `b` of `row`.
    pub(super) fn b(&self, row: usize) -> Option<i64> {
        let b = self
            .chunk
            .column(self.layout.b())
            .as_primitive::<Int64Type>();
        (!b.is_null(row)).then(|| b.value(row))
    }

    /// Did `row` emit values?
    pub(super) fn emitted(&self, row: usize) -> bool {
        self.chunk
            .column(self.layout.emitted())
            .as_boolean()
            .value(row)
    }

    /// The accumulators of `row` and the values it emitted.
    pub(super) fn entry(&self, base: &Base, row: usize) -> Result<RestoredEntry> {
        let emitted = self
            .chunk
            .column(self.layout.emitted())
            .as_boolean()
            .value(row);
        let take_row = UInt32Array::from(vec![row as u32]);
        let mut column = self.layout.states();
        let aggregates = base.spec.aggregates.len();
        let mut accumulators = Vec::with_capacity(aggregates);
        for i in 0..aggregates {
            let width = base.state_fields(i)?.len();
            let states = self.chunk.columns()[column..column + width]
                .iter()
                .map(|c| Ok(take(c.as_ref(), &take_row, None)?))
                .collect::<Result<Vec<_>>>()?;
            column += width;
            let mut acc = base.accumulator(i)?;
            acc.merge_batch(&states)?;
            accumulators.push(acc);
        }
        let values = if emitted {
            Some(
                (0..aggregates)
                    .map(|a| ScalarValue::try_from_array(self.chunk.column(column + a), row))
                    .collect::<Result<Vec<_>>>()?,
            )
        } else {
            None
        };
        Ok((accumulators, values))
    }
}
