//! Rolling bases: how keyed state (an updating aggregate's groups, a view's
//! rows) checkpoints so that, once it exists, no checkpoint writes all of it.
//!
//! Writing the whole state whenever the deltas outgrew it made one
//! checkpoint in ten cost the full state: 63 MB and 320-640 ms for 1M groups
//! (`bench/checkpoint.sh`), against 12 MB and about 110 ms for the others.
//! Here the keys fall into [`SLICES`] slices, by a rule the participant
//! keeps while it runs (a group's slot, a row's hash). A full snapshot puts
//! one base chunk per slice (`s<slice>-<epoch>`); each later checkpoint puts
//! a delta (`d<epoch>`: the entries changed since, rows of dropped keys) and,
//! once the deltas kept add up to more than half the bases, rewrites the
//! base of the one slice whose base is oldest. So a checkpoint writes what
//! changed and at most an eighth of the state, and the chunks kept stay
//! within the bases plus about [`SLICES`] deltas.
//!
//! # Correctness
//! Chunks apply in the order put, each row replacing its key's entry and a
//! dropped key's row removing it; a base replaces nothing else. A key's row
//! in a kept chunk is outdated only if the key changed later, and that
//! change is in the delta of its epoch. That delta leaves only once every
//! slice has a base of that epoch or newer, which holds the key's later
//! state; by then the older base of the key's slice at the time (the only
//! other kind of chunk that can hold the outdated row) has left too, and
//! any delta older than the change left before it. The slicing rule need
//! only hold while the participant runs: after a restore the next snapshot
//! is full ([`RollingBase::restarted`]).

use datafusion::arrow::array::RecordBatch;

use super::StateWrite;

/// How many slices a participant's keys fall into.
pub const SLICES: usize = 8;

/// What the next snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Every slice's base, replacing every chunk.
    Full,
    /// The changes, and the base of `rewrite` if it is due.
    Delta {
        /// The slice whose base to write again.
        rewrite: Option<usize>,
    },
}

/// A chunk this participant's checkpoint names.
#[derive(Debug, Clone)]
struct Kept {
    id: String,
    epoch: u64,
    rows: usize,
}

/// The chunks of one participant's keyed state, and when to rewrite which.
#[derive(Debug, Default)]
pub struct RollingBase {
    /// Each slice's base (`None` until the first full snapshot), and its
    /// epoch (its chunk is `None` when the slice was empty).
    bases: Vec<(u64, Option<Kept>)>,
    /// The deltas kept, oldest first.
    deltas: Vec<Kept>,
}

impl RollingBase {
    /// What the next snapshot writes, with `changes` entries changed since
    /// the last.
    pub fn next(&self, changes: usize) -> Next {
        if self.bases.is_empty() {
            return Next::Full;
        }
        let kept: usize = self.deltas.iter().map(|d| d.rows).sum::<usize>() + changes;
        let base: usize = self.bases.iter().flat_map(|(_, b)| b).map(|b| b.rows).sum();
        let rewrite = (kept > base / 2).then(|| {
            (0..self.bases.len())
                .min_by_key(|&s| self.bases[s].0)
                .unwrap_or(0)
        });
        Next::Delta { rewrite }
    }

    /// A restore rebuilt the state from chunks this participant did not
    /// write, slicing its keys anew: the next snapshot is full.
    pub fn restarted(&mut self) {
        *self = Self::default();
    }

    /// A full snapshot of `epoch`: one base per slice (`slices` has
    /// [`SLICES`] batches; an empty one puts no chunk).
    pub fn full(&mut self, epoch: u64, slices: Vec<RecordBatch>) -> StateWrite {
        debug_assert_eq!(slices.len(), SLICES);
        let mut write = StateWrite {
            reset: true,
            ..Default::default()
        };
        self.deltas.clear();
        self.bases = slices
            .into_iter()
            .enumerate()
            .map(|(slice, batch)| (epoch, put_base(&mut write, slice, epoch, batch)))
            .collect();
        write
    }

    /// A delta snapshot of `epoch`: `changes` (nothing is put when empty)
    /// and, when [`Next::Delta`] asked for it, `rebased` (a slice and all
    /// of its entries).
    pub fn delta(
        &mut self,
        epoch: u64,
        changes: RecordBatch,
        rebased: Option<(usize, RecordBatch)>,
    ) -> StateWrite {
        let mut write = StateWrite::default();
        if changes.num_rows() > 0 {
            let id = format!("d{epoch}");
            self.deltas.push(Kept {
                id: id.clone(),
                epoch,
                rows: changes.num_rows(),
            });
            write.put.push((id, changes));
        }
        if let Some((slice, batch)) = rebased {
            if let Some(old) = self.bases[slice].1.take() {
                write.remove.push(old.id);
            }
            self.bases[slice] = (epoch, put_base(&mut write, slice, epoch, batch));
            // Every slice's base is at least this new: older deltas hold
            // nothing a base does not.
            let oldest = self.bases.iter().map(|(e, _)| *e).min().unwrap_or(0);
            self.deltas.retain(|d| {
                let gone = d.epoch <= oldest;
                if gone {
                    write.remove.push(d.id.clone());
                }
                !gone
            });
        }
        write
    }
}

/// Put `batch` as the base of `slice` at `epoch`, unless it is empty.
fn put_base(write: &mut StateWrite, slice: usize, epoch: u64, batch: RecordBatch) -> Option<Kept> {
    if batch.num_rows() == 0 {
        return None;
    }
    let id = format!("s{slice}-{epoch}");
    let rows = batch.num_rows();
    write.put.push((id.clone(), batch));
    Some(Kept { id, epoch, rows })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;
    use crate::checkpoint::{ChunkList, ChunkRef, Written};

    /// Rows of (key, value); value -1 drops the key.
    fn batch(rows: &[(i64, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .expect("batch")
    }

    fn slice_of(key: i64) -> usize {
        key as usize % SLICES
    }

    /// Apply a write to the chunk list as the coordinator does, keeping the
    /// batches by id.
    fn apply(list: &mut ChunkList, files: &mut BTreeMap<String, RecordBatch>, write: StateWrite) {
        let written = Written {
            reset: write.reset,
            remove: write.remove,
            put: write
                .put
                .iter()
                .map(|(id, b)| ChunkRef {
                    id: id.clone(),
                    file: id.clone(),
                    rows: b.num_rows() as u64,
                    bytes: 0,
                })
                .collect(),
            pending: Vec::new(),
        };
        for (id, b) in write.put {
            files.insert(id, b);
        }
        list.apply(&written);
    }

    /// The state the chunks give, applied in order.
    fn restore(list: &ChunkList, files: &BTreeMap<String, RecordBatch>) -> BTreeMap<i64, i64> {
        let mut state = BTreeMap::new();
        for chunk in &list.chunks {
            let b = &files[&chunk.id];
            let (k, v) = (
                b.column(0).as_primitive::<Int64Type>(),
                b.column(1).as_primitive::<Int64Type>(),
            );
            for i in 0..b.num_rows() {
                if v.value(i) < 0 {
                    state.remove(&k.value(i));
                } else {
                    state.insert(k.value(i), v.value(i));
                }
            }
        }
        state
    }

    #[test]
    fn every_epoch_restores_exactly_and_no_checkpoint_writes_it_all() {
        let mut rolling = RollingBase::default();
        let mut state: BTreeMap<i64, i64> = BTreeMap::new();
        let mut list = ChunkList::default();
        let mut files = BTreeMap::new();
        let mut seed = 7u64;
        let mut random = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let keys = 4000;
        for epoch in 1..=200u64 {
            // Change or drop about a tenth of the keys.
            let mut changed = BTreeMap::new();
            for _ in 0..keys / 10 {
                let k = random(keys) as i64;
                if random(5) == 0 {
                    if state.remove(&k).is_some() {
                        changed.insert(k, -1);
                    }
                } else {
                    state.insert(k, epoch as i64);
                    changed.insert(k, epoch as i64);
                }
            }
            let slice_rows = |s: usize| -> Vec<(i64, i64)> {
                state
                    .iter()
                    .filter(|(k, _)| slice_of(**k) == s)
                    .map(|(k, v)| (*k, *v))
                    .collect()
            };
            let write = match rolling.next(changed.len()) {
                Next::Full => {
                    rolling.full(epoch, (0..SLICES).map(|s| batch(&slice_rows(s))).collect())
                }
                Next::Delta { rewrite } => {
                    let changes: Vec<(i64, i64)> = changed.into_iter().collect();
                    let rebased = rewrite.map(|s| (s, batch(&slice_rows(s))));
                    rolling.delta(epoch, batch(&changes), rebased)
                }
            };
            let written: usize = write.put.iter().map(|(_, b)| b.num_rows()).sum();
            if epoch > 1 {
                assert!(
                    written <= keys as usize / 10 + state.len() / 4,
                    "epoch {epoch} wrote {written} rows of {}",
                    state.len()
                );
            }
            apply(&mut list, &mut files, write);
            assert_eq!(restore(&list, &files), state, "epoch {epoch}");
            let kept: u64 = list.chunks.iter().map(|c| c.rows).sum();
            assert!(
                kept as usize <= 3 * keys as usize,
                "epoch {epoch}: {kept} rows kept"
            );
        }
    }

    #[test]
    fn a_restart_makes_the_next_snapshot_full() {
        let mut rolling = RollingBase::default();
        assert_eq!(rolling.next(0), Next::Full);
        rolling.full(1, (0..SLICES).map(|_| batch(&[(1, 1)])).collect());
        assert_eq!(rolling.next(0), Next::Delta { rewrite: None });
        rolling.restarted();
        assert_eq!(rolling.next(0), Next::Full);
    }
}
