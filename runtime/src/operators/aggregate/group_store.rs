//! Columnar state of the updating aggregate's groups: each group's
//! key, accumulator state and last emitted values live as one row of an
//! Arrow chunk, found by the group's slot.
//!
//! Every batch appends one chunk holding the new rows of the groups it
//! touched and points their slots there; the rows they had before become
//! garbage. Once garbage outgrows the live rows, every live row is gathered
//! into one chunk (`interleave`), so memory stays within about twice the
//! live state and each row is copied a bounded number of times. Reading any
//! set of groups is one `interleave` per column, never a `ScalarValue` per
//! value: that is what makes a batch, and a checkpoint of what changed, cost
//! what they touch rather than what the operator holds.
//!
//! A chunk's columns are the group keys, then the accumulator states (the
//! aggregates' `state_fields`, in order), then the emitted values.
//!
//! The store also tracks what changed since the last checkpoint, by slot
//! (no per-key allocation), and the keys dropped since.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, new_empty_array};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{HashMap, Result, internal_err};

/// Rows of garbage tolerated beyond the live rows before a compaction.
const SLACK_ROWS: usize = 64 * 1024;

/// One group's place in the store.
struct Slot {
    /// Row-format key (empty for the one group of a global aggregate).
    key: Arc<[u8]>,
    /// Its row: chunk, row in the chunk. `None` until first written.
    at: Option<(u32, u32)>,
    /// The window's close time, for windowed groups.
    close: Option<i64>,
    /// Has it emitted values (the value columns of its row hold them)?
    emitted: bool,
    /// Changed since the last checkpoint (and listed in `dirty`).
    dirty: bool,
    live: bool,
}

/// The groups of one updating aggregate worker.
pub(super) struct GroupStore {
    /// The chunks' column types.
    types: Vec<DataType>,
    map: HashMap<Arc<[u8]>, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    chunks: Vec<Vec<ArrayRef>>,
    /// Rows in `chunks`, live or not.
    stored_rows: usize,
    /// Track changes for checkpoints?
    tracking: bool,
    dirty: Vec<u32>,
    dropped: Vec<Arc<[u8]>>,
}

impl GroupStore {
    /// An empty store of chunks with columns of `types`.
    pub(super) fn new(types: Vec<DataType>) -> Self {
        Self {
            types,
            map: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            chunks: Vec::new(),
            stored_rows: 0,
            tracking: false,
            dirty: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// The chunks' column types.
    pub(super) fn types(&self) -> &[DataType] {
        &self.types
    }

    /// Live groups.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The slot of `key`, if it is a group.
    pub(super) fn get(&self, key: &[u8]) -> Option<u32> {
        self.map.get(key).copied()
    }

    /// A new group for `key` (not yet written: see [`Self::append`]).
    pub(super) fn insert(&mut self, key: &[u8], close: Option<i64>) -> u32 {
        let key: Arc<[u8]> = key.into();
        let slot = Slot {
            key: key.clone(),
            at: None,
            close,
            emitted: false,
            dirty: false,
            live: true,
        };
        let id = match self.free.pop() {
            Some(id) => {
                let old = &mut self.slots[id as usize];
                // A freed slot still listed as dirty stays listed once.
                let dirty = old.dirty;
                *old = Slot { dirty, ..slot };
                id
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(key, id);
        id
    }

    /// Slots that may be handed out: one past the highest.
    pub(super) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Drop a group (its window closed), remembering its key for the next
    /// checkpoint.
    pub(super) fn remove(&mut self, id: u32) {
        let slot = &mut self.slots[id as usize];
        if !slot.live {
            return;
        }
        slot.live = false;
        slot.at = None;
        self.map.remove(&slot.key);
        if self.tracking {
            self.dropped.push(slot.key.clone());
        }
        self.free.push(id);
    }

    /// The close time of a live group's window.
    pub(super) fn close(&self, id: u32) -> Option<i64> {
        self.slots[id as usize].close
    }

    /// Has the group a stored row (state from earlier input)?
    pub(super) fn stored(&self, id: u32) -> bool {
        self.slots[id as usize].at.is_some()
    }

    /// Has the group emitted values?
    pub(super) fn emitted(&self, id: u32) -> bool {
        self.slots[id as usize].emitted
    }

    /// Store a chunk whose row `i` is group `ids[i]`'s new row, with
    /// `emitted[i]` saying whether it emitted values.
    pub(super) fn append(&mut self, ids: &[u32], emitted: &[bool], columns: Vec<ArrayRef>) {
        let chunk = self.chunks.len() as u32;
        for (row, (&id, &emitted)) in ids.iter().zip(emitted).enumerate() {
            let slot = &mut self.slots[id as usize];
            slot.at = Some((chunk, row as u32));
            slot.emitted = emitted;
            if self.tracking && !slot.dirty {
                slot.dirty = true;
                self.dirty.push(id);
            }
        }
        self.stored_rows += columns.first().map_or(ids.len(), |c| c.len());
        self.chunks.push(columns);
    }

    /// Columns `columns` of the rows of groups `ids`, in that order. Every
    /// group must have been written.
    pub(super) fn gather(&self, ids: &[u32], columns: Range<usize>) -> Result<Vec<ArrayRef>> {
        if ids.is_empty() {
            return Ok(columns.map(|c| new_empty_array(&self.types[c])).collect());
        }
        let mut at = Vec::with_capacity(ids.len());
        for &id in ids {
            match self.slots[id as usize].at {
                Some((chunk, row)) => at.push((chunk as usize, row as usize)),
                None => return internal_err!("a group without a stored row was read"),
            }
        }
        columns
            .map(|c| {
                let sources: Vec<&dyn Array> =
                    self.chunks.iter().map(|chunk| chunk[c].as_ref()).collect();
                Ok(interleave(&sources, &at)?)
            })
            .collect()
    }

    /// Every live, written group, in slot order.
    pub(super) fn live(&self) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|&id| {
                let slot = &self.slots[id as usize];
                slot.live && slot.at.is_some()
            })
            .collect()
    }

    /// Gather every live row into one chunk once garbage outgrows them.
    pub(super) fn compact_if_needed(&mut self) -> Result<()> {
        if self.stored_rows <= 2 * self.map.len() + SLACK_ROWS || self.chunks.len() < 2 {
            return Ok(());
        }
        let live = self.live();
        let columns = self.gather(&live, 0..self.types.len())?;
        for (row, &id) in live.iter().enumerate() {
            self.slots[id as usize].at = Some((0, row as u32));
        }
        self.stored_rows = live.len();
        self.chunks = vec![columns];
        Ok(())
    }

    /// Record changes from now on.
    pub(super) fn enable_tracking(&mut self) {
        self.tracking = true;
    }

    /// Groups changed since the last checkpoint that are still live, and the
    /// keys dropped since; both lists are cleared.
    pub(super) fn take_changes(&mut self) -> (Vec<u32>, Vec<Arc<[u8]>>) {
        let mut changed = Vec::with_capacity(self.dirty.len());
        for id in std::mem::take(&mut self.dirty) {
            let slot = &mut self.slots[id as usize];
            slot.dirty = false;
            if slot.live && slot.at.is_some() {
                changed.push(id);
            }
        }
        (changed, std::mem::take(&mut self.dropped))
    }

    /// How many groups changed or were dropped since the last checkpoint
    /// (at most; a group changed then dropped counts twice).
    pub(super) fn changes(&self) -> usize {
        self.dirty.len() + self.dropped.len()
    }

    /// Forget what changed: every group is in the checkpoint as it is.
    pub(super) fn clear_changes(&mut self) {
        self.take_changes();
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;

    fn column(values: &[i64]) -> Vec<ArrayRef> {
        vec![Arc::new(Int64Array::from(values.to_vec()))]
    }

    fn values(store: &GroupStore, ids: &[u32]) -> Vec<i64> {
        let columns = store.gather(ids, 0..1).expect("gather");
        columns[0].as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn rows_are_found_after_rewrites_and_compaction() {
        let mut store = GroupStore::new(vec![DataType::Int64]);
        store.enable_tracking();
        let ids: Vec<u32> = (0..1000i64)
            .map(|k| store.insert(&k.to_le_bytes(), None))
            .collect();
        store.append(
            &ids,
            &vec![true; 1000],
            column(&(0..1000).collect::<Vec<_>>()),
        );
        // Rewrite group 7 many times: garbage grows, compaction gathers.
        for round in 0..(2 * SLACK_ROWS as i64) / 100 {
            let rewrite: Vec<u32> = (0..100).map(|i| ids[(i * 7) % 1000]).collect();
            let v: Vec<i64> = (0..100).map(|i| round * 1000 + i).collect();
            store.append(&rewrite, &[true; 100], column(&v));
            store.compact_if_needed().expect("compact");
        }
        assert!(
            store.stored_rows <= 2 * store.len() + SLACK_ROWS + 100,
            "compaction bounds the garbage"
        );
        assert!(store.chunks.len() < 1400, "compaction ran");
        assert_eq!(values(&store, &[ids[1], ids[7]])[0], 1);
        let (changed, dropped) = store.take_changes();
        assert_eq!(changed.len(), 1000);
        assert!(dropped.is_empty());
    }

    #[test]
    fn a_dropped_group_is_reported_once_and_its_slot_reused() {
        let mut store = GroupStore::new(vec![DataType::Int64]);
        store.enable_tracking();
        let a = store.insert(b"a", Some(10));
        store.append(&[a], &[true], column(&[1]));
        store.take_changes();
        store.remove(a);
        assert_eq!(store.get(b"a"), None);
        let b = store.insert(b"b", None);
        assert_eq!(a, b, "the slot is reused");
        store.append(&[b], &[true], column(&[2]));
        let (changed, dropped) = store.take_changes();
        assert_eq!(changed, vec![b]);
        assert_eq!(dropped, vec![Arc::<[u8]>::from(&b"a"[..])]);
        assert_eq!(values(&store, &[b]), vec![2]);
    }
}
