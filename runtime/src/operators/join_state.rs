//! What one side of a regular join (`operators::join`) keeps: its rows by
//! join key and, with a state time to live (the view's `join_state_ttl`),
//! when each row goes.
//!
//! An updating side keeps its distinct rows with their counts
//! (`counted_rows`); an append-only side keeps its batches as they came
//! and, per key, where its rows are. With a TTL, an append-only side with event time also keeps,
//! per stored row, its event time and the watermark its own side had when
//! it arrived, and an index event time -> keys (as the interval join's), so
//! that a rising watermark drops the rows it expires without scanning the
//! rest. Its batches are compacted once more of their rows are dropped than
//! kept, so memory follows the rows kept.
//!
//! # Correctness (TTL)
//! - A row at `t` is dropped once its clock ([`JoinTtl::clock`]) reaches
//!   `t + ttl`: the boundary of Flink's TTL (a value is expired when
//!   `timestamp + ttl <= now`). One nanosecond before, it still pairs.
//! - Both sides with event time (two streams): a pair is made only if each
//!   row was within its TTL in the other side's clock when the other row
//!   arrived: `W_right(r) < t_l + ttl` and `W_left(l) < t_r + ttl`, where
//!   `W_side(x)` is that side's watermark when `x` arrived. Each side's
//!   watermark reaches the worker in order with that side's rows
//!   (`Aligner::with_sides`), so both conditions depend on each side's own
//!   rows and watermarks only, never on how the two sides interleave: a
//!   replay after kill -9 makes the same pairs as the first run. Whichever
//!   row arrives second checks both: the stored row is still there exactly
//!   while the first condition holds (the other side's watermark drops it),
//!   and its arrival watermark, kept beside it, gives the second.
//! - A stream joined with a table (or another side without event time):
//!   the stream's rows go by the stream's own watermark, the table's are
//!   kept. Which table changes meet a stream row then depends on how the
//!   two inputs interleave, as for any stream-table join (0016).
//! - Dropping a row retracts nothing: its pairs stay, a later partner is
//!   missed.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::row::RowConverter;
use datafusion::common::{Result, internal_err};

use crate::operators::counted_rows::CountedRows;
use crate::operators::join_keys::{KeyMap, KeyRef, OwnedKey};
use crate::plan::JoinTtl;
use crate::windows::timestamps_as_nanos;

/// Compact an append-only side's batches only past this many dropped rows
/// (and more dropped than kept): small states are not rewritten at every
/// watermark.
const COMPACT_AFTER: usize = 4096;

/// One side's rows by key.
pub(crate) enum Stored {
    /// An updating side: each distinct row once with how many times it is
    /// there, so a retraction finds its row.
    Counted(CountedRows),
    /// An append-only side (a stream): its batches as they came, and per key
    /// where its rows are. Nothing is re-encoded or copied per row; pairs
    /// are gathered from the batches.
    Appended {
        batches: Vec<RecordBatch>,
        by_key: KeyMap<Vec<(u32, u32)>>,
    },
}

/// One side's row in an output row.
#[derive(Clone, Copy)]
pub(crate) enum Part {
    /// NULLs (the other side of an outer join's row without a match).
    Null,
    /// Row `0` of the input batch being applied.
    Input(u32),
    /// A kept row of an updating side, by its slot.
    Slot(u32),
    /// Row `1` of stored batch `0` (an append-only side).
    At(u32, u32),
}

/// When an append-only side's rows go (with a TTL).
pub(crate) struct Expiry {
    /// The event-time column of the side's rows.
    column: usize,
    /// How long a row is kept (nanoseconds of event time).
    ttl: i64,
    /// Per stored batch, each row's event time (a NULL time is the earliest
    /// there is: the row goes at the first watermark).
    times: Vec<Vec<i64>>,
    /// Per stored batch, each row's own side's watermark when it arrived.
    seen: Vec<Vec<i64>>,
    /// Event time -> the keys with a row at that time: what a rising
    /// watermark drops, oldest first.
    index: BTreeMap<i64, Vec<OwnedKey>>,
    /// Rows of the stored batches that are no longer kept (dropped, or never
    /// kept: a NULL key, or already past its time to live).
    dead: usize,
}

impl Expiry {
    /// The expiry of side `side` of a join with `ttl`, if its rows go.
    pub(crate) fn of(ttl: Option<&JoinTtl>, side: usize) -> Option<Expiry> {
        let ttl = ttl?;
        Some(Expiry {
            column: ttl.time[side]?,
            ttl: ttl.ttl,
            times: Vec::new(),
            seen: Vec::new(),
            index: BTreeMap::new(),
            dead: 0,
        })
    }

    /// The event times of `batch`'s rows.
    pub(crate) fn times_of(&self, batch: &RecordBatch) -> Result<Vec<i64>> {
        let times = timestamps_as_nanos(batch.column(self.column))?;
        Ok(times.iter().map(|t| t.unwrap_or(i64::MIN)).collect())
    }

    /// Is a row at `time` still kept when its clock is at `watermark`?
    pub(crate) fn keeps(&self, time: i64, watermark: i64) -> bool {
        time.saturating_add(self.ttl) > watermark
    }

    /// May the stored row at `(batch, row)` pair with a row of the other
    /// side at `time`: was it within the TTL of that row in its own side's
    /// clock when it arrived?
    pub(crate) fn pairs_with(&self, batch: u32, row: u32, time: i64) -> bool {
        self.seen[batch as usize][row as usize] < time.saturating_add(self.ttl)
    }
}

/// One side's state.
pub(crate) struct SideState {
    /// The row format of its keys, when they are not one integer.
    pub(crate) keys: RowConverter,
    pub(crate) stored: Stored,
    /// When its rows go, with a TTL (an append-only side with event time).
    pub(crate) expiry: Option<Expiry>,
}

impl SideState {
    /// How many rows the side has for `key`.
    pub(crate) fn count(&self, key: KeyRef<'_>) -> i64 {
        match &self.stored {
            Stored::Counted(rows) => rows.count(key),
            Stored::Appended { by_key, .. } => by_key.get(key).map_or(0, |v| v.len() as i64),
        }
    }

    /// How many rows it keeps.
    pub(crate) fn entries(&self) -> usize {
        match &self.stored {
            Stored::Counted(rows) => rows.distinct(),
            Stored::Appended { batches, .. } => {
                batches.iter().map(RecordBatch::num_rows).sum::<usize>()
                    - self.expiry.as_ref().map_or(0, |e| e.dead)
            }
        }
    }

    /// The side's rows for `key`, each with how many times it is there.
    /// An iterator, not a list: it runs once per input row.
    pub(crate) fn matches(&self, key: KeyRef<'_>) -> impl Iterator<Item = (Part, i64)> + Clone {
        let (counted, appended) = match &self.stored {
            Stored::Counted(rows) => (Some(rows.matches(key)), None),
            Stored::Appended { by_key, .. } => (None, by_key.get(key)),
        };
        let counted = counted
            .into_iter()
            .flatten()
            .map(|(slot, c)| (Part::Slot(slot), c));
        let appended = appended
            .into_iter()
            .flatten()
            .map(|&(b, r)| (Part::At(b, r), 1));
        counted.chain(appended)
    }

    /// Store `batch` (an append-only side's rows, its input columns only),
    /// whose rows are at `times` (with a TTL) and arrived when this side's
    /// watermark was `seen`: its number among the stored batches. Its rows
    /// are kept by [`Self::keep`].
    pub(crate) fn append(&mut self, batch: RecordBatch, times: Vec<i64>, seen: Vec<i64>) -> u32 {
        let Stored::Appended { batches, .. } = &mut self.stored else {
            return 0;
        };
        let n = batch.num_rows();
        batches.push(batch);
        if let Some(expiry) = &mut self.expiry {
            expiry.times.push(times);
            expiry.seen.push(seen);
            // Counted dead until kept.
            expiry.dead += n;
        }
        (batches.len() - 1) as u32
    }

    /// Keep row `row` of stored batch `batch` under `key`, unless a TTL has
    /// already passed it (its clock is at `watermark`).
    pub(crate) fn keep(
        &mut self,
        key: KeyRef<'_>,
        batch: u32,
        row: u32,
        watermark: i64,
    ) -> Result<()> {
        let Stored::Appended { by_key, .. } = &mut self.stored else {
            return internal_err!("an updating join side kept as an append-only one");
        };
        if let Some(expiry) = &mut self.expiry {
            let time = expiry.times[batch as usize][row as usize];
            if !expiry.keeps(time, watermark) {
                return Ok(());
            }
            expiry.dead -= 1;
            expiry.index.entry(time).or_default().push(key.into());
        }
        by_key.get_or_default(key)?.push((batch, row));
        Ok(())
    }

    /// Its clock rose to `watermark`: drop every row whose time to live it
    /// reached, without retracting anything.
    pub(crate) fn expire(&mut self, watermark: i64) -> Result<()> {
        let (Some(expiry), Stored::Appended { by_key, .. }) = (&mut self.expiry, &mut self.stored)
        else {
            return Ok(());
        };
        // Rows at or before `last` go: `t + ttl <= watermark`.
        let last = watermark.saturating_sub(expiry.ttl);
        let kept = match last.checked_add(1) {
            Some(first_kept) => expiry.index.split_off(&first_kept),
            None => BTreeMap::new(),
        };
        let expired = std::mem::replace(&mut expiry.index, kept);
        for key in expired.into_values().flatten() {
            let Some(at) = by_key.get_mut(key.as_ref()) else {
                // A key listed at two times: already emptied.
                continue;
            };
            let before = at.len();
            at.retain(|&(b, r)| expiry.times[b as usize][r as usize] > last);
            expiry.dead += before - at.len();
            if at.is_empty() {
                by_key.remove(key.as_ref());
            }
        }
        let live: usize = by_key.values().map(Vec::len).sum();
        if expiry.dead >= COMPACT_AFTER && expiry.dead > live {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrite an append-only side's batches as one holding only the rows
    /// it keeps (their order per key unchanged), so that dropped rows free
    /// their memory and a checkpoint writes only kept rows.
    pub(crate) fn compact(&mut self) -> Result<()> {
        let (Some(expiry), Stored::Appended { batches, by_key }) =
            (&mut self.expiry, &mut self.stored)
        else {
            return Ok(());
        };
        if expiry.dead == 0 {
            return Ok(());
        }
        let live: usize = by_key.values().map(Vec::len).sum();
        let mut at: Vec<(usize, usize)> = Vec::with_capacity(live);
        let (mut times, mut seen) = (Vec::with_capacity(live), Vec::with_capacity(live));
        for list in by_key.values_mut() {
            for place in list.iter_mut() {
                let (b, r) = (place.0 as usize, place.1 as usize);
                times.push(expiry.times[b][r]);
                seen.push(expiry.seen[b][r]);
                *place = (0, at.len() as u32);
                at.push((b, r));
            }
        }
        let compacted = match batches.first() {
            Some(first) if live > 0 => {
                let schema = first.schema();
                let columns = (0..schema.fields().len())
                    .map(|c| {
                        let arrays: Vec<&dyn Array> =
                            batches.iter().map(|b| b.column(c).as_ref()).collect();
                        interleave(&arrays, &at)
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                vec![RecordBatch::try_new(schema, columns)?]
            }
            _ => Vec::new(),
        };
        *batches = compacted;
        if batches.is_empty() {
            expiry.times.clear();
            expiry.seen.clear();
        } else {
            expiry.times = vec![times];
            expiry.seen = vec![seen];
        }
        expiry.dead = 0;
        Ok(())
    }

    /// Each stored row's own side's watermark when it arrived, in the order
    /// of the stored batches' rows (after [`Self::compact`]: the rows it
    /// keeps): what a checkpoint keeps beside the rows, since it is not in
    /// them.
    pub(crate) fn seen(&self) -> Result<Vec<i64>> {
        match &self.expiry {
            Some(expiry) if expiry.dead == 0 => Ok(expiry.seen.concat()),
            Some(_) => {
                internal_err!("a join side's arrival watermarks asked for before compacting")
            }
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_plan::PhysicalExpr;

    use crate::operators::StreamOperator;
    use crate::operators::join::JoinOperator;
    use crate::plan::{JoinKind, JoinSpec, JoinState, JoinTtl, Side};

    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn spec() -> Arc<JoinSpec> {
        let side = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("k", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        let mut fields: Vec<Field> = side.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(side.fields().iter().map(|f| f.as_ref().clone()));
        let key = || vec![Arc::new(Column::new("k", 1)) as Arc<dyn PhysicalExpr>];
        Arc::new(JoinSpec {
            kind: JoinKind::Inner,
            keys: [key(), key()],
            inputs: [side.clone(), side],
            input_changelog: [false, false],
            output_schema: Arc::new(Schema::new(fields)),
            interval: None,
            state: JoinState::Ttl(JoinTtl {
                ttl: 60 * SECOND,
                time: [Some(2), Some(2)],
                appended: [false, false],
            }),
        })
    }

    /// Rows `(id, k, seconds)`.
    fn rows(rows: &[(i64, i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            spec().inputs[0].clone(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMicrosecondArray::from(
                    rows.iter().map(|r| r.2 * 1_000_000).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("rows")
    }

    /// The (left id, right id) pairs of an output.
    fn ids(out: Vec<crate::operators::StreamBatch>) -> Vec<(i64, i64)> {
        let mut pairs = Vec::new();
        for batch in out {
            let batch = batch.into_batch();
            let (l, r) = (
                batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("ids"),
                batch
                    .column(3)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("ids"),
            );
            pairs.extend((0..batch.num_rows()).map(|i| (l.value(i), r.value(i))));
        }
        pairs
    }

    #[test]
    fn a_row_pairs_until_the_other_sides_watermark_reaches_its_time_plus_the_ttl() {
        let mut join = JoinOperator::new(spec()).expect("join");
        assert!(
            ids(join
                .on_batch(Side::Left, &rows(&[(1, 1, 0), (2, 2, 0)]))
                .unwrap())
            .is_empty()
        );
        join.on_side_watermark(Side::Left, 0).unwrap();
        // One nanosecond short of 0 + 60 s: row 1 is still there.
        join.on_side_watermark(Side::Right, 60 * SECOND - 1)
            .unwrap();
        assert_eq!(
            ids(join.on_batch(Side::Right, &rows(&[(101, 1, 60)])).unwrap()),
            vec![(1, 101)]
        );
        // At exactly 0 + 60 s both left rows are gone, and nothing is
        // retracted.
        assert!(
            join.on_side_watermark(Side::Right, 60 * SECOND)
                .unwrap()
                .is_empty()
        );
        assert_eq!(join.state().entries, 1, "only the right row is kept");
        assert!(ids(join.on_batch(Side::Right, &rows(&[(102, 2, 60)])).unwrap()).is_empty());
        // Through a checkpoint: the right rows and their arrival
        // watermarks come back, and go by the left watermark.
        let write = StreamOperator::snapshot(&mut join, 1).unwrap();
        let mut again = JoinOperator::new(spec()).expect("join");
        again.restore(i64::MIN, &write.put, 0, 1).unwrap();
        again.on_side_watermark(Side::Left, 0).unwrap();
        again.on_side_watermark(Side::Right, 60 * SECOND).unwrap();
        assert_eq!(again.state().entries, 2);
        // Row 3 (90 s) meets row 102, which came when the right watermark
        // was 60 s < 90 s + 60 s.
        assert_eq!(
            ids(again.on_batch(Side::Left, &rows(&[(3, 2, 90)])).unwrap()),
            vec![(3, 102)]
        );
        // Row 4 (-60 s) is behind: the right watermark had passed its TTL
        // (0 s) when row 102 came, so they do not pair, and it is not kept.
        assert!(ids(again.on_batch(Side::Left, &rows(&[(4, 2, -60)])).unwrap()).is_empty());
        assert_eq!(again.state().entries, 3);
        // The left watermark at 120 s drops the right rows at 60 s.
        again.on_side_watermark(Side::Left, 120 * SECOND).unwrap();
        assert_eq!(again.state().entries, 1, "only row 3 is kept");
    }

    #[test]
    fn dropped_rows_are_compacted_away() {
        let mut join = JoinOperator::new(spec()).expect("join");
        let many: Vec<(i64, i64, i64)> = (0..10_000).map(|i| (i, i % 7, i)).collect();
        join.on_batch(Side::Left, &rows(&many)).unwrap();
        join.on_side_watermark(Side::Right, 9_000 * SECOND).unwrap();
        // Rows at 8 940 s and later are kept (t + 60 s > 9 000 s).
        assert_eq!(join.state().entries, 10_000 - 8_941);
        let side = &join.sides_for_tests()[0];
        let Stored::Appended { batches, .. } = &side.stored else {
            panic!("an append-only side");
        };
        assert_eq!(
            batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            1_059
        );
        // The rows still pair after the compaction.
        assert_eq!(
            ids(join
                .on_batch(Side::Right, &rows(&[(-1, 3, 9_000)]))
                .unwrap())
            .len(),
            (8_941..10_000).filter(|i| i % 7 == 3).count()
        );
    }
}
