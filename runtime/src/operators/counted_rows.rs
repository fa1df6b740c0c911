//! An updating join side's rows as a join keeps them: each distinct row
//! once, in Arrow columns, with how many times it is there, found by its
//! join key.
//!
//! A join probes its kept side once per input row of the other side and
//! gathers the matched rows into its output. Kept in Arrow's row format,
//! every probe hashed and compared a byte string and every matched row was
//! decoded again; here the rows stay in the columns they came in (gathered
//! with `interleave`, as DataFusion's hash join gathers its build side),
//! and a key of one 64-bit integer, the commonest join key, is hashed as
//! the integer itself. The row format is kept only for a row's identity,
//! which a delete needs to find the row it removes.
//!
//! # Correctness
//! - A NULL key matches nothing, as in SQL: [`JoinKeys::get`] gives none
//!   for it, and such rows are not kept.
//! - Equal keys give equal [`KeyRef`]s on both sides of a join: the
//!   planner casts both sides' keys to one type, and both sides choose the
//!   integer form from those types alone.
//! - A row's count may go below zero (a delete before its insert, which an
//!   upstream never sends in order, but a replay may not be trusted to
//!   avoid): it is kept with its negative count and pairs with nothing
//!   until the insert brings it back to zero, when it goes.
//! - Rows whose count reached zero stay in the stored batches until more
//!   of them are dead than alive (and at least [`COMPACT_AFTER`]); then the
//!   live rows are gathered into one batch, so memory follows the rows kept.

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array, new_null_array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{HashMap, Result, internal_err};

/// Compact only past this many dead rows (and more dead than alive): a small
/// side is not rewritten at every delete.
const COMPACT_AFTER: usize = 4096;

/// Does a key of these types take the integer form?
fn integer_key(types: &[DataType]) -> bool {
    matches!(types, [DataType::Int64])
}

/// The row-format converter of a key of `types`.
pub(crate) fn key_converter(types: Vec<DataType>) -> Result<RowConverter> {
    Ok(RowConverter::new(
        types.into_iter().map(SortField::new).collect(),
    )?)
}

/// A batch's join keys, each row's as a [`KeyRef`].
pub(crate) enum JoinKeys {
    /// One 64-bit integer column.
    Int(Int64Array),
    /// Anything else, in Arrow's row format, with the rows where any key
    /// column is NULL.
    Rows(Rows, Option<NullBuffer>),
}

/// One row's join key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum KeyRef<'a> {
    Int(i64),
    Bytes(&'a [u8]),
}

impl JoinKeys {
    /// The keys of the evaluated key `columns` of a batch, by `converter`
    /// (made by [`key_converter`] for the columns' types).
    pub(crate) fn new(converter: &RowConverter, columns: &[ArrayRef]) -> Result<Self> {
        if let [column] = columns
            && column.data_type() == &DataType::Int64
        {
            return Ok(Self::Int(column.as_primitive::<Int64Type>().clone()));
        }
        let nulls = columns.iter().fold(None, |acc: Option<NullBuffer>, c| {
            NullBuffer::union(acc.as_ref(), c.logical_nulls().as_ref())
        });
        Ok(Self::Rows(converter.convert_columns(columns)?, nulls))
    }

    /// Row `i`'s key, or none when a key column is NULL there.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<KeyRef<'_>> {
        match self {
            Self::Int(values) => values.is_valid(i).then(|| KeyRef::Int(values.value(i))),
            Self::Rows(rows, nulls) => match nulls {
                Some(nulls) if nulls.is_null(i) => None,
                _ => Some(KeyRef::Bytes(rows.row(i).data())),
            },
        }
    }
}

/// A map from join keys: integers as themselves, other keys as row-format
/// bytes.
pub(crate) enum KeyMap<V> {
    Int(HashMap<i64, V>),
    Bytes(HashMap<Box<[u8]>, V>),
}

impl<V: Default> KeyMap<V> {
    /// An empty map for keys of `types`.
    pub(crate) fn for_types(types: &[DataType]) -> Self {
        if integer_key(types) {
            Self::Int(HashMap::default())
        } else {
            Self::Bytes(HashMap::default())
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: KeyRef<'_>) -> Option<&V> {
        match (self, key) {
            (Self::Int(map), KeyRef::Int(k)) => map.get(&k),
            (Self::Bytes(map), KeyRef::Bytes(k)) => map.get(k),
            _ => None,
        }
    }

    /// The value of `key`, a default one inserted when it has none. Keys are
    /// copied only when new.
    pub(crate) fn get_or_default(&mut self, key: KeyRef<'_>) -> Result<&mut V> {
        match (self, key) {
            (Self::Int(map), KeyRef::Int(k)) => Ok(map.entry(k).or_default()),
            (Self::Bytes(map), KeyRef::Bytes(k)) => {
                if !map.contains_key(k) {
                    map.insert(k.into(), V::default());
                }
                match map.get_mut(k) {
                    Some(v) => Ok(v),
                    None => internal_err!("a key just inserted is missing"),
                }
            }
            _ => internal_err!("a join key of the wrong form for its map"),
        }
    }

    pub(crate) fn get_mut(&mut self, key: KeyRef<'_>) -> Option<&mut V> {
        match (self, key) {
            (Self::Int(map), KeyRef::Int(k)) => map.get_mut(&k),
            (Self::Bytes(map), KeyRef::Bytes(k)) => map.get_mut(k),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, key: KeyRef<'_>) {
        match (self, key) {
            (Self::Int(map), KeyRef::Int(k)) => {
                map.remove(&k);
            }
            (Self::Bytes(map), KeyRef::Bytes(k)) => {
                map.remove(k);
            }
            _ => {}
        }
    }
}

/// An updating side's rows: each distinct row once, with its count, by
/// join key.
pub(crate) struct CountedRows {
    /// The side's input columns (no op column).
    schema: SchemaRef,
    /// Whole rows in the row format: a row's identity.
    rows: RowConverter,
    /// Row (row format) -> its slot.
    slot_of: HashMap<Box<[u8]>, u32>,
    /// Join key -> the slots of its rows.
    by_key: KeyMap<Vec<u32>>,
    /// Per slot: how many times its row is there (0: dead).
    counts: Vec<i64>,
    /// Per slot: where its row is, as (batch, row) of `batches`.
    place: Vec<(usize, usize)>,
    batches: Vec<RecordBatch>,
    /// Slots whose count is zero.
    dead: usize,
    /// Rows kept, counted with their multiplicity.
    len: i64,
}

impl CountedRows {
    /// An empty side of `schema` (its input columns) with keys of
    /// `key_types`.
    pub(crate) fn new(schema: SchemaRef, key_types: &[DataType]) -> Result<Self> {
        let rows = RowConverter::new(
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        Ok(Self {
            schema,
            rows,
            slot_of: HashMap::default(),
            by_key: KeyMap::for_types(key_types),
            counts: Vec::new(),
            place: Vec::new(),
            batches: Vec::new(),
            dead: 0,
            len: 0,
        })
    }

    /// Rows kept, counted with their multiplicity.
    pub(crate) fn len(&self) -> usize {
        self.len.max(0) as usize
    }

    /// Distinct rows kept.
    pub(crate) fn distinct(&self) -> usize {
        self.slot_of.len()
    }

    /// Count each row `i` of `batch` (its input columns first) `op(i)` more
    /// times under `keys.get(i)` (a negative op removes it); rows with a
    /// NULL key are skipped.
    pub(crate) fn apply(
        &mut self,
        batch: &RecordBatch,
        keys: &JoinKeys,
        op: impl Fn(usize) -> i64,
    ) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let width = self.schema.fields().len();
        let rows = self.rows.convert_columns(&batch.columns()[..width])?;
        // Rows new to the side, gathered into one stored batch.
        let mut new_rows: Vec<u32> = Vec::new();
        let next_batch = self.batches.len();
        for i in 0..n {
            let Some(key) = keys.get(i) else { continue };
            let op = op(i);
            if op == 0 {
                continue;
            }
            self.len += op;
            let row = rows.row(i);
            let row = row.data();
            if let Some(&slot) = self.slot_of.get(row) {
                let count = &mut self.counts[slot as usize];
                *count += op;
                if *count == 0 {
                    self.slot_of.remove(row);
                    self.dead += 1;
                    if let Some(slots) = self.by_key.get_mut(key) {
                        slots.retain(|&s| s != slot);
                        if slots.is_empty() {
                            self.by_key.remove(key);
                        }
                    }
                }
                continue;
            }
            let slot = self.counts.len() as u32;
            self.counts.push(op);
            self.place.push((next_batch, new_rows.len()));
            new_rows.push(i as u32);
            self.slot_of.insert(row.into(), slot);
            self.by_key.get_or_default(key)?.push(slot);
        }
        if !new_rows.is_empty() {
            let indices = UInt32Array::from(new_rows);
            let columns = batch.columns()[..width]
                .iter()
                .map(|c| take(c.as_ref(), &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            self.batches
                .push(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        if self.dead >= COMPACT_AFTER && self.dead > self.slot_of.len() {
            self.compact()?;
        }
        Ok(())
    }

    /// The rows of `key`: each one's slot and count.
    #[inline]
    pub(crate) fn matches(&self, key: KeyRef<'_>) -> impl Iterator<Item = (u32, i64)> + '_ {
        self.by_key
            .get(key)
            .into_iter()
            .flatten()
            .map(|&slot| (slot, self.counts[slot as usize]))
    }

    /// The side's columns for `slots`, in order: each slot's row, NULLs
    /// where there is none.
    pub(crate) fn gather(&self, slots: &[Option<u32>]) -> Result<Vec<ArrayRef>> {
        let fields = self.schema.fields();
        if slots.iter().all(Option::is_none) {
            return Ok(fields
                .iter()
                .map(|f| new_null_array(f.data_type(), slots.len()))
                .collect());
        }
        // A one-row batch of NULLs after the stored ones, for the padding.
        let null_batch = self.batches.len();
        let at: Vec<(usize, usize)> = slots
            .iter()
            .map(|s| s.map_or((null_batch, 0), |s| self.place[s as usize]))
            .collect();
        let padded = slots.iter().any(Option::is_none);
        (0..fields.len())
            .map(|c| {
                let nulls = padded.then(|| new_null_array(fields[c].data_type(), 1));
                let mut arrays: Vec<&dyn Array> =
                    self.batches.iter().map(|b| b.column(c).as_ref()).collect();
                if let Some(nulls) = &nulls {
                    arrays.push(nulls.as_ref());
                }
                Ok(interleave(&arrays, &at)?)
            })
            .collect()
    }

    /// Every live row's columns and its count: what a checkpoint keeps.
    pub(crate) fn snapshot(&self) -> Result<(Vec<ArrayRef>, Vec<i64>)> {
        let live: Vec<u32> = self.slot_of.values().copied().collect();
        let counts = live.iter().map(|&s| self.counts[s as usize]).collect();
        let columns = self.gather(&live.iter().map(|&s| Some(s)).collect::<Vec<_>>())?;
        Ok((columns, counts))
    }

    /// Gather the live rows into one batch and renumber their slots.
    fn compact(&mut self) -> Result<()> {
        let mut renumbered = vec![u32::MAX; self.counts.len()];
        let mut live: Vec<Option<u32>> = Vec::with_capacity(self.slot_of.len());
        let mut counts = Vec::with_capacity(self.slot_of.len());
        for slot in self.slot_of.values_mut() {
            renumbered[*slot as usize] = live.len() as u32;
            live.push(Some(*slot));
            counts.push(self.counts[*slot as usize]);
            *slot = renumbered[*slot as usize];
        }
        let columns = self.gather(&live)?;
        let mut slots_of_keys: Vec<&mut Vec<u32>> = match &mut self.by_key {
            KeyMap::Int(map) => map.values_mut().collect(),
            KeyMap::Bytes(map) => map.values_mut().collect(),
        };
        for slots in slots_of_keys.iter_mut() {
            for slot in slots.iter_mut() {
                *slot = renumbered[*slot as usize];
            }
        }
        if renumbered_missing(&slots_of_keys) {
            return internal_err!("a join side's key lists a dead row");
        }
        self.place = (0..live.len()).map(|r| (0, r)).collect();
        self.counts = counts;
        self.batches = if live.is_empty() {
            Vec::new()
        } else {
            vec![RecordBatch::try_new(self.schema.clone(), columns)?]
        };
        self.dead = 0;
        Ok(())
    }
}

/// Does any key still list a slot that was not renumbered (a dead one)?
fn renumbered_missing(slots_of_keys: &[&mut Vec<u32>]) -> bool {
    slots_of_keys
        .iter()
        .any(|slots| slots.iter().any(|&s| s == u32::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn batch(rows: &[(Option<i64>, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("rows")
    }

    /// The names kept under integer key `k`, with their counts, sorted.
    fn names(side: &CountedRows, k: i64) -> Vec<(String, i64)> {
        let slots: Vec<(u32, i64)> = side.matches(KeyRef::Int(k)).collect();
        let columns = side
            .gather(&slots.iter().map(|s| Some(s.0)).collect::<Vec<_>>())
            .expect("gather");
        let mut out: Vec<(String, i64)> = slots
            .iter()
            .enumerate()
            .map(|(i, s)| (columns[1].as_string::<i32>().value(i).to_string(), s.1))
            .collect();
        out.sort();
        out
    }

    fn apply(side: &mut CountedRows, rows: &[(Option<i64>, &str)], ops: &[i64]) {
        let b = batch(rows);
        let converter = key_converter(vec![DataType::Int64]).expect("converter");
        let keys = JoinKeys::new(&converter, &[b.column(0).clone()]).expect("keys");
        side.apply(&b, &keys, |i| ops[i]).expect("apply");
    }

    #[test]
    fn rows_are_counted_found_by_key_and_removed_at_zero() {
        let mut side = CountedRows::new(schema(), &[DataType::Int64]).expect("side");
        apply(
            &mut side,
            &[(Some(1), "a"), (Some(1), "b"), (Some(1), "a"), (None, "n")],
            &[1, 1, 1, 1],
        );
        assert_eq!(names(&side, 1), vec![("a".into(), 2), ("b".into(), 1)]);
        assert_eq!(
            (side.len(), side.distinct()),
            (3, 2),
            "the NULL key is not kept"
        );
        apply(&mut side, &[(Some(1), "a"), (Some(1), "b")], &[-1, -1]);
        assert_eq!(names(&side, 1), vec![("a".into(), 1)]);
        apply(&mut side, &[(Some(1), "a")], &[-1]);
        assert!(names(&side, 1).is_empty());
        assert_eq!(side.matches(KeyRef::Int(1)).count(), 0);
        assert_eq!((side.len(), side.distinct()), (0, 0));
    }

    #[test]
    fn a_padded_slot_gathers_nulls() {
        let mut side = CountedRows::new(schema(), &[DataType::Int64]).expect("side");
        apply(&mut side, &[(Some(7), "x")], &[1]);
        let columns = side.gather(&[None, Some(0), None]).expect("gather");
        let names = columns[1].as_string::<i32>();
        assert_eq!(
            (0..3).map(|i| names.is_null(i)).collect::<Vec<_>>(),
            vec![true, false, true]
        );
        assert_eq!(names.value(1), "x");
    }

    #[test]
    fn dead_rows_are_compacted_away_and_the_live_ones_still_found() {
        let mut side = CountedRows::new(schema(), &[DataType::Int64]).expect("side");
        let rows: Vec<(Option<i64>, String)> = (0..10_000)
            .map(|i| (Some(i % 100), format!("r{i}")))
            .collect();
        let rows: Vec<(Option<i64>, &str)> = rows.iter().map(|(k, n)| (*k, n.as_str())).collect();
        apply(&mut side, &rows, &vec![1; rows.len()]);
        // Remove all but every tenth row.
        let gone: Vec<(Option<i64>, &str)> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 10 != 0)
            .map(|(_, r)| *r)
            .collect();
        apply(&mut side, &gone, &vec![-1; gone.len()]);
        assert_eq!(side.batches.len(), 1, "compacted into one batch");
        assert_eq!(side.batches[0].num_rows(), 1_000);
        assert_eq!(side.dead, 0);
        let mut expected: Vec<(String, i64)> = (0..100)
            .map(|j| (format!("r{}", 30 + 100 * j), 1))
            .collect();
        expected.sort();
        assert_eq!(names(&side, 30), expected);
        let (columns, counts) = side.snapshot().expect("snapshot");
        assert_eq!((columns[0].len(), counts.len()), (1_000, 1_000));
    }

    #[test]
    fn keys_of_several_columns_use_the_row_format_and_skip_nulls() {
        let b = batch(&[(Some(1), "a"), (None, "b"), (Some(1), "a")]);
        let converter = key_converter(vec![DataType::Int64, DataType::Utf8]).expect("converter");
        let keys = JoinKeys::new(&converter, b.columns()).expect("keys");
        assert!(matches!(keys.get(0), Some(KeyRef::Bytes(_))));
        assert_eq!(keys.get(1), None);
        assert_eq!(keys.get(0), keys.get(2));
    }
}
