//! An interval join of two append-only streams: rows of equal keys whose
//! event times are close, `right.time - left.time` within `[lower, upper]`
//! (`b.ts BETWEEN a.ts - INTERVAL .. AND a.ts + INTERVAL ..`), with state
//! bounded by the watermark. A window join (both inputs windowed by the same
//! TVF, joined on the window) is planned as one, with each side's window end
//! as its time and a zero-wide interval.
//!
//! One instance runs per join worker and owns the keys the exchange sends
//! it. Each side keeps its rows by key in Arrow's row format, with their
//! times, and an index from time to keys, so that a watermark drops the rows
//! it makes unmatchable without scanning the rest. A row in is matched
//! against the other side's stored rows of its key within the interval, the
//! pairs are emitted, and the row is stored.
//!
//! # Correctness
//! - Each side's watermark comes to the worker in order with that side's
//!   rows (`Aligner::with_sides`). Every row still to come on a side is at
//!   or after that side's watermark, except late ones. A left row at `t`
//!   matches right rows up to `t + upper`, so it is dropped once the right
//!   watermark passes `t + upper`; a right row at `t` matches left rows from
//!   `t - upper` to `t - lower`, so it is dropped once the left watermark
//!   passes `t - lower` ([`IntervalBounds::expired_below`]).
//! - A row behind its own side's watermark is late: some of its partners
//!   may have been dropped, so matching it would depend on timing. It is
//!   counted (`weir_late_rows_total`) and dropped, as windows drop theirs.
//!   A row at or after it finds every partner still stored: a left row at
//!   `t >= Wl` pairs with right rows from `t + lower`, and right rows are
//!   dropped only below `Wl' + lower <= t + lower` (symmetrically for the
//!   right). Whether a row is late depends only on its own side's messages,
//!   so a run and its replay after a crash judge alike.
//! - The output is append-only, and each pair is emitted once: by whichever
//!   of its two rows arrived second (the classic symmetric join argument).
//! - A pair is emitted when its second row arrives, on time, so its first
//!   row's time is at least `W - output_delay`; the worker forwards that
//!   watermark ([`StreamOperator::output_watermark`]), and an `EMIT ON
//!   WINDOW CLOSE` aggregate or closing TopN over the join sees no pair
//!   behind it.
//! - A NULL key or time matches nothing, as in SQL: such rows are not kept
//!   (a preserved side's is emitted padded at once).
//! - Padding: each stored row of a preserved side carries whether it has
//!   paired. Whether it will is settled when the other side's watermark
//!   passes its reach (the cleanup rule above): every on-time partner has
//!   arrived by then, and a late one is dropped on arrival. So the row is
//!   emitted padded exactly then, if it never paired, and only then; the
//!   same rule, applied to a row that arrives already past its reach,
//!   pads it at once. At the end of input both watermarks are at the end,
//!   so every unpaired row is padded, as in the batch answer.
//! - A padded row is not behind the watermark forwarded before it: a left
//!   row still stored has `t >= Wr - upper`, a right row `t >= Wl + lower`,
//!   both at or above `min(Wl, Wr) - output_delay`, and the worker emits
//!   what a side watermark expires before it forwards the watermark that
//!   side raised. So the pairs' delay covers padded rows too.
//! - Checkpoint: both sides' rows, whole, at each barrier (as the regular
//!   join's), a preserved side's with their "paired" flags
//!   (`join::ChunkTail::Matched`); restore keeps the rows whose key hashes
//!   to the worker. An inner join's chunks are as they were.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{HashMap, Result, internal_err};
use prometheus_client::metrics::counter::Counter;

use crate::checkpoint::StateWrite;
use crate::operators::join::{ChunkTail, MATCHED_COLUMN, SIDE_CHUNKS, side_chunk};
use crate::operators::{StateSummary, StreamBatch, StreamOperator, exchange};
use crate::plan::{IntervalBounds, JoinSpec, Side};
use crate::windows::timestamps_as_nanos;

/// A stored row: its event time (nanoseconds), its columns in Arrow's
/// row format, and whether it has paired (read only on a preserved side).
struct Stored {
    time: i64,
    row: Box<[u8]>,
    matched: bool,
}

/// One side's rows.
struct SideRows {
    keys: RowConverter,
    rows: RowConverter,
    /// Key (row format) -> its rows, in arrival order.
    by_key: HashMap<Box<[u8]>, Vec<Stored>>,
    /// Event time -> the keys with a row at that time: what a rising
    /// watermark expires, oldest first.
    expiry: BTreeMap<i64, Vec<Box<[u8]>>>,
    /// How many rows are stored.
    len: usize,
    /// An outer join preserves this side: its rows that never paired are
    /// emitted padded when they expire.
    pads: bool,
}

impl SideRows {
    /// Keep `row` of `key` at `time`, paired already or not.
    fn store(&mut self, key: &[u8], time: i64, row: &[u8], matched: bool) {
        let stored = Stored {
            time,
            row: row.into(),
            matched,
        };
        match self.by_key.get_mut(key) {
            Some(rows) => rows.push(stored),
            None => {
                self.by_key.insert(key.into(), vec![stored]);
            }
        }
        self.expiry.entry(time).or_default().push(key.into());
        self.len += 1;
    }

    /// Drop every row before `cutoff`; on a preserved side, add those that
    /// never paired to `padded`.
    fn expire(&mut self, cutoff: i64, padded: &mut Rows) {
        if self
            .expiry
            .first_key_value()
            .is_none_or(|(t, _)| *t >= cutoff)
        {
            return;
        }
        let kept = self.expiry.split_off(&cutoff);
        let expired = std::mem::replace(&mut self.expiry, kept);
        let parser = self.rows.parser();
        for key in expired.into_values().flatten() {
            let Some(rows) = self.by_key.get_mut(&key) else {
                // A key listed at two times: already emptied.
                continue;
            };
            let before = rows.len();
            rows.retain(|r| {
                let keep = r.time >= cutoff;
                if !keep && self.pads && !r.matched {
                    padded.push(parser.parse(&r.row));
                }
                keep
            });
            self.len -= before - rows.len();
            if rows.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }
}

/// The output being built: for each output row, its left part and its
/// right part, in the row format; then each side's rows that never paired,
/// to be padded with NULLs for the other side.
struct Pairs {
    sides: [Rows; 2],
    padded: [Rows; 2],
}

/// One worker's interval join.
pub struct IntervalJoin {
    spec: Arc<JoinSpec>,
    bounds: IntervalBounds,
    sides: [SideRows; 2],
    /// Each side's watermark (left, right): its rows behind it are late, and
    /// it expires the other side's rows.
    side_watermarks: [i64; 2],
    /// The highest watermark forwarded (the lower of the two sides', less
    /// the output delay), kept with the checkpoint: the stage it feeds
    /// restores its clock of this join to it, not to the inputs' watermark,
    /// which pairs emitted after the restore can be behind.
    forwarded: i64,
    /// Counts the rows dropped as late, per side (each its stream's
    /// `weir_late_rows_total`).
    late: [Counter; 2],
}

impl IntervalJoin {
    /// A new, empty interval join of `spec` (whose `interval` it takes);
    /// `late` counts the rows it drops as late, per side (left, right).
    pub fn new(spec: Arc<JoinSpec>, late: [Counter; 2]) -> Result<Self> {
        if spec.input_changelog.iter().any(|c| *c) {
            return internal_err!("an interval join over an updating input");
        }
        let Some(bounds) = spec.interval else {
            return internal_err!("an interval join of a join without time bounds");
        };
        let side = |i: usize| -> Result<SideRows> {
            let key_types = spec.keys[i]
                .iter()
                .map(|k| k.data_type(&spec.inputs[i]))
                .collect::<Result<Vec<_>>>()?;
            Ok(SideRows {
                keys: RowConverter::new(key_types.into_iter().map(SortField::new).collect())?,
                rows: RowConverter::new(
                    spec.inputs[i]
                        .fields()
                        .iter()
                        .map(|f| SortField::new(f.data_type().clone()))
                        .collect(),
                )?,
                by_key: HashMap::default(),
                expiry: BTreeMap::new(),
                len: 0,
                pads: spec.kind.preserves(Side::BOTH[i]),
            })
        };
        let sides = [side(0)?, side(1)?];
        Ok(Self {
            spec,
            bounds,
            sides,
            side_watermarks: [i64::MIN; 2],
            forwarded: i64::MIN,
            late,
        })
    }

    /// Rows of `side` arrive: match each against the other side's rows,
    /// then keep it (unless late), and return the pairs; on a preserved
    /// side, with the rows that can pair with nothing, padded.
    fn rows_in(&mut self, side: Side, batch: &RecordBatch) -> Result<Vec<StreamBatch>> {
        let s = side.index();
        let n = batch.num_rows();
        if n == 0 {
            return Ok(Vec::new());
        }
        let width = self.spec.inputs[s].fields().len();
        let keys = self.spec.keys[s]
            .iter()
            .map(|k| k.evaluate(batch)?.into_array(n))
            .collect::<Result<Vec<_>>>()?;
        let times = timestamps_as_nanos(batch.column(self.bounds.time[s]))?;
        let mut pairs = self.pairs();
        let (watermark, bounds) = (self.side_watermarks[s], self.bounds);
        let [left, right] = &mut self.sides;
        let (mine, theirs) = match side {
            Side::Left => (left, right),
            Side::Right => (right, left),
        };
        let key_rows = mine.keys.convert_columns(&keys)?;
        let rows = mine.rows.convert_columns(&batch.columns()[..width])?;
        let their_parser = theirs.rows.parser();
        let mut late = 0u64;
        for i in 0..n {
            if times.is_null(i) || keys.iter().any(|k| k.is_null(i)) {
                // It matches nothing; a preserved side's row is padded now.
                if mine.pads {
                    pairs.padded[s].push(rows.row(i));
                }
                continue;
            }
            let time = times.value(i);
            if time < watermark {
                late += 1;
                continue;
            }
            let key = key_rows.row(i);
            let mut matched = false;
            for other in theirs.by_key.get_mut(key.as_ref()).into_iter().flatten() {
                let (l, r) = match side {
                    Side::Left => (time, other.time),
                    Side::Right => (other.time, time),
                };
                if bounds.matches(l, r) {
                    other.matched = true;
                    matched = true;
                    pairs.sides[s].push(rows.row(i));
                    pairs.sides[1 - s].push(their_parser.parse(&other.row));
                }
            }
            mine.store(key.as_ref(), time, rows.row(i).data(), matched);
        }
        self.late[s].inc_by(late);
        // A preserved row already past its reach (the other side's
        // watermark passed it before it came) can pair with nothing more.
        if self.sides[s].pads {
            let cutoff = self.cutoff(side, self.side_watermarks[1 - s]);
            self.sides[s].expire(cutoff, &mut pairs.padded[s]);
        }
        self.output(pairs)
    }

    /// Rows of `side` before this can no longer match, once the other
    /// side's watermark is `watermark`; all of them at the end of input.
    fn cutoff(&self, side: Side, watermark: i64) -> i64 {
        if watermark == i64::MAX {
            i64::MAX
        } else {
            self.bounds.expired_below(side, watermark)
        }
    }

    /// An empty output.
    fn pairs(&self) -> Pairs {
        let empty = |s: usize| self.sides[s].rows.empty_rows(0, 0);
        Pairs {
            sides: [empty(0), empty(1)],
            padded: [empty(0), empty(1)],
        }
    }

    /// The output batches of `pairs`, if any: the pairs, then each side's
    /// padded rows.
    fn output(&self, pairs: Pairs) -> Result<Vec<StreamBatch>> {
        let schema = self.spec.output_schema.clone();
        let mut out = Vec::new();
        if pairs.sides[0].num_rows() > 0 {
            let mut columns: Vec<ArrayRef> = Vec::new();
            for (side, rows) in self.sides.iter().zip(&pairs.sides) {
                columns.extend(side.rows.convert_rows(rows)?);
            }
            let columns = crate::operators::conform(&schema, columns)?;
            out.push(StreamBatch::Rows(RecordBatch::try_new(
                schema.clone(),
                columns,
            )?));
        }
        for (s, rows) in pairs.padded.iter().enumerate() {
            let n = rows.num_rows();
            if n == 0 {
                continue;
            }
            let nulls = |input: &datafusion::arrow::datatypes::SchemaRef| -> Vec<ArrayRef> {
                input
                    .fields()
                    .iter()
                    .map(|f| new_null_array(f.data_type(), n))
                    .collect()
            };
            let mine = self.sides[s].rows.convert_rows(rows)?;
            let columns = match s {
                0 => mine
                    .into_iter()
                    .chain(nulls(&self.spec.inputs[1]))
                    .collect(),
                _ => nulls(&self.spec.inputs[0])
                    .into_iter()
                    .chain(mine)
                    .collect(),
            };
            let columns = crate::operators::conform(&schema, columns)?;
            out.push(StreamBatch::Rows(RecordBatch::try_new(
                schema.clone(),
                columns,
            )?));
        }
        Ok(out)
    }

    /// Both sides' rows, whole (at a barrier).
    fn snapshot_sides(&self) -> Result<StateWrite> {
        let mut write = StateWrite {
            reset: true,
            ..Default::default()
        };
        for (s, side) in self.sides.iter().enumerate() {
            if side.len == 0 {
                continue;
            }
            let parser = side.rows.parser();
            let mut encoded = side.rows.empty_rows(side.len, 0);
            let mut matched = Vec::with_capacity(if side.pads { side.len } else { 0 });
            for stored in side.by_key.values().flatten() {
                encoded.push(parser.parse(&stored.row));
                if side.pads {
                    matched.push(stored.matched);
                }
            }
            let columns = side.rows.convert_rows(&encoded)?;
            let tail = match side.pads {
                true => ChunkTail::Matched(matched),
                false => ChunkTail::Nothing,
            };
            write.put.push((
                SIDE_CHUNKS[s].to_string(),
                side_chunk(&self.spec.inputs[s], columns, tail)?,
            ));
        }
        Ok(write)
    }

    /// Keep the rows of `chunk` (side `s`, of any old worker) whose key
    /// hashes to `worker` of `workers`.
    fn restore_chunk(
        &mut self,
        s: usize,
        chunk: &RecordBatch,
        worker: usize,
        workers: usize,
    ) -> Result<()> {
        let width = self.spec.inputs[s].fields().len();
        // A preserved side's chunk has its rows' "paired" flags after them.
        let pads = self.sides[s].pads;
        let flags = chunk.schema().index_of(MATCHED_COLUMN).ok();
        if chunk.num_columns() != width + usize::from(pads) || pads != (flags == Some(width)) {
            return internal_err!(
                "interval join: a checkpoint chunk of {} columns for an input of {width}{}",
                chunk.num_columns(),
                if pads {
                    " and its \"paired\" flags"
                } else {
                    ""
                }
            );
        }
        let Some(mine) = exchange::rows_of_worker(chunk, &self.spec.keys[s], worker, workers)?
        else {
            return Ok(());
        };
        let n = mine.num_rows();
        let keys = self.spec.keys[s]
            .iter()
            .map(|k| k.evaluate(&mine)?.into_array(n))
            .collect::<Result<Vec<_>>>()?;
        let times = timestamps_as_nanos(mine.column(self.bounds.time[s]))?;
        let side = &mut self.sides[s];
        let key_rows = side.keys.convert_columns(&keys)?;
        let rows = side.rows.convert_columns(&mine.columns()[..width])?;
        let matched = pads.then(|| mine.column(width).as_boolean());
        for i in 0..n {
            if times.is_null(i) {
                return internal_err!("interval join: a stored row without a time");
            }
            let paired = matched.is_some_and(|m| m.is_valid(i) && m.value(i));
            side.store(
                key_rows.row(i).as_ref(),
                times.value(i),
                rows.row(i).data(),
                paired,
            );
        }
        Ok(())
    }
}

impl StreamOperator for IntervalJoin {
    fn state(&self) -> StateSummary {
        StateSummary {
            operator: "interval join",
            entries: self.sides.iter().map(|s| s.len).sum(),
        }
    }

    fn on_batch(&mut self, side: Option<Side>, batch: &RecordBatch) -> Result<Vec<StreamBatch>> {
        match side {
            Some(side) => self.rows_in(side, batch),
            None => internal_err!("an interval join was given a batch of neither side"),
        }
    }

    fn on_side_watermark(&mut self, side: Side, watermark: i64) -> Result<Vec<StreamBatch>> {
        let s = side.index();
        if watermark <= self.side_watermarks[s] {
            return Ok(Vec::new());
        }
        self.side_watermarks[s] = watermark;
        let other = side.other();
        let cutoff = self.cutoff(other, watermark);
        let mut out = self.pairs();
        self.sides[other.index()].expire(cutoff, &mut out.padded[other.index()]);
        self.output(out)
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<StreamBatch>> {
        self.forwarded = self.forwarded.max(self.output_watermark(watermark));
        Ok(Vec::new())
    }

    fn output_watermark(&self, watermark: i64) -> i64 {
        if watermark == i64::MAX {
            watermark
        } else {
            watermark.saturating_sub(self.bounds.output_delay())
        }
    }

    fn watermark(&self) -> i64 {
        self.forwarded
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<StateWrite> {
        self.snapshot_sides()
    }

    fn restore(
        &mut self,
        watermark: i64,
        chunks: &[(String, RecordBatch)],
        worker: usize,
        workers: usize,
    ) -> Result<()> {
        self.forwarded = self.forwarded.max(watermark);
        for (id, chunk) in chunks {
            let Some(s) = SIDE_CHUNKS.iter().position(|c| c == id) else {
                return internal_err!("an interval join chunk of neither side: {id}");
            };
            self.restore_chunk(s, chunk, worker, workers)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_plan::PhysicalExpr;

    const SECOND: i64 = 1_000_000_000;

    fn input() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]))
    }

    /// `right.ts` within 10 s before to 5 s after `left.ts`.
    fn join() -> IntervalJoin {
        join_of(crate::plan::JoinKind::Inner)
    }

    /// The same bounds, for a join of `kind`.
    fn join_of(kind: crate::plan::JoinKind) -> IntervalJoin {
        let mut fields: Vec<Field> = input()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(input().fields().iter().map(|f| f.as_ref().clone()));
        let key = || vec![Arc::new(Column::new("k", 0)) as Arc<dyn PhysicalExpr>];
        let spec = Arc::new(JoinSpec {
            kind,
            keys: [key(), key()],
            inputs: [input(), input()],
            input_changelog: [false, false],
            output_schema: Arc::new(Schema::new(fields)),
            interval: Some(IntervalBounds {
                time: [1, 1],
                lower: -10 * SECOND,
                upper: 5 * SECOND,
            }),
            state: Default::default(),
        });
        IntervalJoin::new(spec, [Counter::default(), Counter::default()]).expect("an interval join")
    }

    /// Rows of (key, seconds).
    fn rows(rows: &[(i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            input(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMicrosecondArray::from(
                    rows.iter().map(|r| r.1 * 1_000_000).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("rows")
    }

    /// Each output row as (left seconds, right seconds), NULL as -1.
    fn padded_times(out: Vec<StreamBatch>) -> Vec<(i64, i64)> {
        let mut rows = Vec::new();
        for batch in out {
            let batch = batch.into_batch();
            let l = timestamps_as_nanos(batch.column(1)).expect("left time");
            let r = timestamps_as_nanos(batch.column(3)).expect("right time");
            let second = |t: &datafusion::arrow::array::TimestampNanosecondArray, i: usize| {
                if t.is_null(i) {
                    -1
                } else {
                    t.value(i) / SECOND
                }
            };
            for i in 0..batch.num_rows() {
                rows.push((second(&l, i), second(&r, i)));
            }
        }
        rows.sort();
        rows
    }

    /// Each output row as (left seconds, right seconds).
    fn times(out: Vec<StreamBatch>) -> Vec<(i64, i64)> {
        let mut pairs = Vec::new();
        for batch in out {
            let batch = batch.into_batch();
            let l = timestamps_as_nanos(batch.column(1)).expect("left time");
            let r = timestamps_as_nanos(batch.column(3)).expect("right time");
            for i in 0..batch.num_rows() {
                pairs.push((l.value(i) / SECOND, r.value(i) / SECOND));
            }
        }
        pairs.sort();
        pairs
    }

    #[test]
    fn pairs_within_the_interval_edges_included() {
        let mut join = join();
        join.on_batch(Some(Side::Left), &rows(&[(1, 100), (2, 100)]))
            .expect("left");
        let out = join
            .on_batch(
                Some(Side::Right),
                &rows(&[(1, 89), (1, 90), (1, 105), (1, 106), (2, 100), (3, 100)]),
            )
            .expect("right");
        assert_eq!(times(out), vec![(100, 90), (100, 100), (100, 105)]);
    }

    #[test]
    fn a_watermark_drops_what_it_makes_unmatchable_and_later_rows_behind_it_are_late() {
        let mut join = join();
        join.on_batch(Some(Side::Left), &rows(&[(1, 100)]))
            .expect("left");
        join.on_batch(Some(Side::Right), &rows(&[(1, 100)]))
            .expect("right");
        // A left row at 100 s matches right rows up to 105 s: kept while
        // the right watermark is at 105 s, dropped once it passes.
        join.on_side_watermark(Side::Right, 105 * SECOND)
            .expect("watermark");
        assert_eq!(join.state().entries, 2);
        join.on_side_watermark(Side::Right, 106 * SECOND)
            .expect("watermark");
        assert_eq!(join.state().entries, 1);
        // A right row at 100 s matches left rows from 95 s to 110 s.
        join.on_side_watermark(Side::Left, 110 * SECOND)
            .expect("watermark");
        assert_eq!(join.state().entries, 1);
        join.on_side_watermark(Side::Left, 111 * SECOND)
            .expect("watermark");
        assert_eq!(join.state().entries, 0);
        // A left row behind the left watermark is late; one at it is not.
        assert!(
            join.on_batch(Some(Side::Left), &rows(&[(1, 111)]))
                .expect("on time")
                .is_empty()
        );
        assert_eq!(join.late[0].get(), 0);
        assert!(
            join.on_batch(Some(Side::Left), &rows(&[(1, 110)]))
                .expect("late")
                .is_empty()
        );
        assert_eq!(join.late[0].get(), 1);
        assert_eq!(join.output_watermark(111 * SECOND), 101 * SECOND);
        assert_eq!(join.output_watermark(i64::MAX), i64::MAX);
        // What it reports with its checkpoint (the clock the stage over it
        // restores) is what it forwarded, not its inputs' watermark.
        join.on_watermark(111 * SECOND).expect("watermark");
        assert_eq!(join.watermark(), 101 * SECOND);
    }

    #[test]
    fn state_survives_a_checkpoint_on_more_workers() {
        let mut join = join();
        join.on_batch(Some(Side::Left), &rows(&[(1, 100), (2, 100), (3, 100)]))
            .expect("left");
        let write = join.snapshot(1).expect("snapshot");
        let mut total = 0;
        let mut matched = Vec::new();
        for worker in 0..2 {
            let mut again = super::tests::join();
            again
                .restore(i64::MIN, &write.put, worker, 2)
                .expect("restore");
            total += again.state().entries;
            let probe = exchange::rows_of_worker(
                &rows(&[(1, 101), (2, 101), (3, 101)]),
                &again.spec.keys[1],
                worker,
                2,
            )
            .expect("partition");
            if let Some(probe) = probe {
                matched.extend(times(
                    again.on_batch(Some(Side::Right), &probe).expect("right"),
                ));
            }
        }
        assert_eq!(total, 3);
        assert_eq!(matched, vec![(100, 101); 3]);
    }

    #[test]
    fn a_left_row_that_never_paired_is_padded_once_the_right_watermark_passes_its_reach() {
        let mut join = join_of(crate::plan::JoinKind::Left);
        join.on_batch(Some(Side::Left), &rows(&[(1, 100), (2, 100), (3, 100)]))
            .expect("left");
        // Key 1 pairs; key 2's partner is one second outside the upper bound.
        let out = join
            .on_batch(Some(Side::Right), &rows(&[(1, 105), (2, 106)]))
            .expect("right");
        assert_eq!(padded_times(out), vec![(100, 105)]);
        // Up to 105 s a right row could still pair with them: nothing padded.
        let out = join
            .on_side_watermark(Side::Right, 105 * SECOND)
            .expect("watermark");
        assert!(out.is_empty(), "padded too early");
        // Past it, keys 2 and 3 never paired: padded, once; key 1 is not.
        let out = join
            .on_side_watermark(Side::Right, 106 * SECOND)
            .expect("watermark");
        assert_eq!(padded_times(out), vec![(100, -1), (100, -1)]);
        assert!(
            join.on_side_watermark(Side::Right, 200 * SECOND)
                .expect("watermark")
                .is_empty()
        );
        // A left row already past its reach when it comes, or with a NULL
        // key, is padded at once; right rows are never padded.
        let out = join
            .on_batch(Some(Side::Left), &rows(&[(4, 150)]))
            .expect("left");
        assert_eq!(padded_times(out), vec![(150, -1)]);
        let out = join.on_side_watermark(Side::Left, i64::MAX).expect("end");
        assert!(out.is_empty(), "a LEFT join pads no right row");
    }

    #[test]
    fn the_end_of_input_pads_every_unpaired_row_of_a_full_join() {
        let mut join = join_of(crate::plan::JoinKind::Full);
        join.on_batch(Some(Side::Left), &rows(&[(1, 100), (2, 100)]))
            .expect("left");
        join.on_batch(Some(Side::Right), &rows(&[(1, 90), (3, 100)]))
            .expect("right");
        let mut out = join.on_side_watermark(Side::Left, i64::MAX).expect("end");
        out.extend(join.on_side_watermark(Side::Right, i64::MAX).expect("end"));
        assert_eq!(padded_times(out), vec![(-1, 100), (100, -1)]);
        assert_eq!(join.state().entries, 0);
    }

    #[test]
    fn paired_flags_survive_a_checkpoint() {
        let mut join = join_of(crate::plan::JoinKind::Left);
        join.on_batch(Some(Side::Left), &rows(&[(1, 100), (2, 100), (3, 100)]))
            .expect("left");
        join.on_batch(Some(Side::Right), &rows(&[(1, 101), (3, 99)]))
            .expect("right");
        let write = join.snapshot(1).expect("snapshot");
        let left = &write
            .put
            .iter()
            .find(|(id, _)| id == "left")
            .expect("a left chunk")
            .1;
        assert_eq!(left.schema().field(2).name(), MATCHED_COLUMN);
        let right = &write
            .put
            .iter()
            .find(|(id, _)| id == "right")
            .expect("a right chunk")
            .1;
        assert_eq!(
            right.num_columns(),
            2,
            "an unpadded side's chunk is as before"
        );
        let mut padded = Vec::new();
        for worker in 0..2 {
            let mut again = join_of(crate::plan::JoinKind::Left);
            again
                .restore(i64::MIN, &write.put, worker, 2)
                .expect("restore");
            padded.extend(padded_times(
                again.on_side_watermark(Side::Right, i64::MAX).expect("end"),
            ));
        }
        assert_eq!(padded, vec![(100, -1)]);
        // A preserved side's chunk without the flags is refused.
        let mut inner = super::tests::join();
        assert!(inner.restore(i64::MIN, &write.put, 0, 1).is_err());
    }

    /// Every row a join emits is at or after the watermark it forwarded
    /// before: pairs and padded rows alike, with the pairs' delay.
    #[test]
    fn no_padded_row_is_behind_the_watermark_forwarded_before_it() {
        for kind in [
            crate::plan::JoinKind::Left,
            crate::plan::JoinKind::Right,
            crate::plan::JoinKind::Full,
        ] {
            let mut join = join_of(kind);
            let mut forwarded = i64::MIN;
            let mut marks = [i64::MIN; 2];
            let mut emitted = 0;
            // A fixed pseudo-random walk: each side's rows in order of time
            // with jitter, its watermark 2 s behind, sides interleaved
            // unevenly.
            let mut seed = 7u64;
            let mut next = || {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                seed >> 33
            };
            let mut clock = [0i64; 2];
            for _ in 0..400 {
                let s = (next() % 2) as usize;
                clock[s] += (next() % 7) as i64;
                let t = clock[s] + (next() % 3) as i64;
                let side = Side::BOTH[s];
                let mut out = join
                    .on_batch(Some(side), &rows(&[((next() % 4) as i64, t)]))
                    .expect("rows");
                let mark = (clock[s] - 2) * SECOND;
                out.extend(join.on_side_watermark(side, mark).expect("side"));
                for (l, r) in padded_times(out) {
                    emitted += 1;
                    let earliest = if l < 0 {
                        r
                    } else if r < 0 {
                        l
                    } else {
                        l.min(r)
                    };
                    assert!(
                        earliest * SECOND >= forwarded,
                        "{kind:?}: a row at {earliest} s behind the forwarded {forwarded}"
                    );
                }
                marks[s] = marks[s].max(mark);
                forwarded = forwarded.max(join.output_watermark(marks[0].min(marks[1])));
            }
            assert!(emitted > 100, "{kind:?}: only {emitted} rows");
        }
    }
}
