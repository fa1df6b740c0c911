//! An updating join side's rows as a join keeps them: each distinct row
//! once, in Arrow columns, with how many times it is there, found by its
//! join key.
//!
//! A join probes its kept side once per input row of the other side and
//! gathers the matched rows into its output. Kept in Arrow's row format,
//! every probe hashed and compared a byte string and every matched row was
//! decoded again; here the rows stay in the columns they came in (gathered
//! with `interleave`, as DataFusion's hash join gathers its build side),
//! by keys of `join_keys`. The row format is kept only for a row's identity,
//! which a delete needs to find the row it removes.
//!
//! # Correctness
//! - A NULL key matches nothing, as in SQL: [`JoinKeys::get`] gives none
//!   for it, and such rows are not kept.
//! - A row's count may go below zero (a delete before its insert, which an
//!   upstream never sends in order, but a replay may not be trusted to
//!   avoid): it is kept with its negative count and pairs with nothing
//!   until the insert brings it back to zero, when it goes.
//! - Rows whose count reached zero stay in the stored batches until more
//!   of them are dead than alive (and at least [`COMPACT_AFTER`]); then the
//!   live rows are gathered into one batch, so memory follows the rows kept.

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array, new_null_array};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{HashMap, Result, internal_err};

use smallvec::SmallVec;

use crate::operators::join_keys::{JoinKeys, KeyMap, KeyRef};

/// A distinct row's count and where it is: row `row` of stored batch
/// `batch`.
struct Slot {
    count: i64,
    batch: u32,
    row: u32,
}

impl Slot {
    fn at(&self) -> (usize, usize) {
        (self.batch as usize, self.row as usize)
    }
}

/// Compact only past this many dead rows (and more dead than alive): a small
/// side is not rewritten at every delete.
const COMPACT_AFTER: usize = 4096;

/// An updating side's rows: each distinct row once, with its count, by
/// join key.
pub(crate) struct CountedRows {
    /// The side's input columns (no op column).
    schema: SchemaRef,
    /// Whole rows in the row format: a row's identity.
    rows: RowConverter,
    /// Row (row format) -> its slot.
    slot_of: HashMap<Box<[u8]>, u32>,
    /// Join key -> the slots of its rows (inline up to two: most keys of
    /// a table have one row, and a probe then touches no other memory).
    by_key: KeyMap<SmallVec<[u32; 2]>>,
    /// Per slot: its count and where its row is, side by side (a probe
    /// reads both).
    slots: Vec<Slot>,
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
            slots: Vec::new(),
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
        let mut changes = self.changes(batch)?;
        for i in 0..batch.num_rows() {
            if let Some(key) = keys.get(i) {
                changes.apply(i, key, op(i))?;
            }
        }
        changes.finish()
    }

    /// The changes `batch` (its input columns first) makes, to be applied
    /// row by row: a join probes the other side between them.
    pub(crate) fn changes<'a>(&'a mut self, batch: &'a RecordBatch) -> Result<Changes<'a>> {
        let width = self.schema.fields().len();
        let rows = self.rows.convert_columns(&batch.columns()[..width])?;
        Ok(Changes {
            next_batch: self.batches.len(),
            side: self,
            batch,
            rows,
            new_rows: Vec::new(),
        })
    }

    /// The rows of `key`: each one's slot and count.
    #[inline]
    pub(crate) fn matches(&self, key: KeyRef<'_>) -> impl Iterator<Item = (u32, i64)> + Clone + '_ {
        self.by_key
            .get(key)
            .into_iter()
            .flatten()
            .map(|&slot| (slot, self.slots[slot as usize].count))
    }

    /// How many rows `key` has (with their multiplicity).
    pub(crate) fn count(&self, key: KeyRef<'_>) -> i64 {
        self.matches(key).map(|(_, c)| c).sum()
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
            .map(|s| s.map_or((null_batch, 0), |s| self.slots[s as usize].at()))
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
        let counts = live.iter().map(|&s| self.slots[s as usize].count).collect();
        let columns = self.gather(&live.iter().map(|&s| Some(s)).collect::<Vec<_>>())?;
        Ok((columns, counts))
    }

    /// Gather the live rows into one batch and renumber their slots.
    fn compact(&mut self) -> Result<()> {
        let mut renumbered = vec![u32::MAX; self.slots.len()];
        let mut live: Vec<Option<u32>> = Vec::with_capacity(self.slot_of.len());
        let mut counts = Vec::with_capacity(self.slot_of.len());
        for slot in self.slot_of.values_mut() {
            renumbered[*slot as usize] = live.len() as u32;
            live.push(Some(*slot));
            counts.push(self.slots[*slot as usize].count);
            *slot = renumbered[*slot as usize];
        }
        let columns = self.gather(&live)?;
        let mut slots_of_keys: Vec<&mut SmallVec<[u32; 2]>> = self.by_key.values_mut().collect();
        for slots in slots_of_keys.iter_mut() {
            for slot in slots.iter_mut() {
                *slot = renumbered[*slot as usize];
            }
        }
        if renumbered_missing(&slots_of_keys) {
            return internal_err!("a join side's key lists a dead row");
        }
        self.slots = counts
            .into_iter()
            .enumerate()
            .map(|(row, count)| Slot {
                count,
                batch: 0,
                row: row as u32,
            })
            .collect();
        self.batches = if live.is_empty() {
            Vec::new()
        } else {
            vec![RecordBatch::try_new(self.schema.clone(), columns)?]
        };
        self.dead = 0;
        Ok(())
    }
}

/// One batch's changes to a [`CountedRows`], applied row by row; the rows
/// new to the side are stored at [`Changes::finish`].
pub(crate) struct Changes<'a> {
    side: &'a mut CountedRows,
    batch: &'a RecordBatch,
    /// The batch's rows in the row format: their identities.
    rows: Rows,
    /// The batch's rows new to the side, stored as batch `next_batch`.
    new_rows: Vec<u32>,
    next_batch: usize,
}

impl Changes<'_> {
    /// Count row `i` of the batch `op` more times under `key`.
    pub(crate) fn apply(&mut self, i: usize, key: KeyRef<'_>, op: i64) -> Result<()> {
        if op == 0 {
            return Ok(());
        }
        let side = &mut *self.side;
        side.len += op;
        let row = self.rows.row(i);
        let row = row.data();
        if let Some(&slot) = side.slot_of.get(row) {
            let count = &mut side.slots[slot as usize].count;
            *count += op;
            if *count == 0 {
                side.slot_of.remove(row);
                side.dead += 1;
                if let Some(slots) = side.by_key.get_mut(key) {
                    slots.retain(|s| *s != slot);
                    if slots.is_empty() {
                        side.by_key.remove(key);
                    }
                }
            }
            return Ok(());
        }
        let slot = side.slots.len() as u32;
        side.slots.push(Slot {
            count: op,
            batch: self.next_batch as u32,
            row: self.new_rows.len() as u32,
        });
        self.new_rows.push(i as u32);
        side.slot_of.insert(row.into(), slot);
        side.by_key.get_or_default(key)?.push(slot);
        Ok(())
    }

    /// How many rows `key` has now (with their multiplicity).
    pub(crate) fn count(&self, key: KeyRef<'_>) -> i64 {
        self.side.count(key)
    }

    /// Store the rows new to the side, and compact it when it has more dead
    /// rows than live ones.
    pub(crate) fn finish(self) -> Result<()> {
        let side = self.side;
        if !self.new_rows.is_empty() {
            let width = side.schema.fields().len();
            let indices = UInt32Array::from(self.new_rows);
            let columns = self.batch.columns()[..width]
                .iter()
                .map(|c| take(c.as_ref(), &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            side.batches
                .push(RecordBatch::try_new(side.schema.clone(), columns)?);
        }
        if side.dead >= COMPACT_AFTER && side.dead > side.slot_of.len() {
            side.compact()?;
        }
        Ok(())
    }
}

/// Does any key still list a slot that was not renumbered (a dead one)?
fn renumbered_missing(slots_of_keys: &[&mut SmallVec<[u32; 2]>]) -> bool {
    slots_of_keys.iter().any(|slots| slots.contains(&u32::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::operators::join_keys::key_converter;

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
}
