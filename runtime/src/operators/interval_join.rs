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
//! - A NULL key or time matches nothing, as in SQL: such rows are not kept.
//! - Checkpoint: both sides' rows, whole, at each barrier (as the regular
//!   join's); restore keeps the rows whose key hashes to the worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{HashMap, Result, internal_err};
use prometheus_client::metrics::counter::Counter;

use crate::checkpoint::StateWrite;
use crate::operators::join::{SIDE_CHUNKS, side_chunk};
use crate::operators::{StateSummary, StreamBatch, StreamOperator, exchange};
use crate::plan::{IntervalBounds, JoinSpec, Side};
use crate::windows::timestamps_as_nanos;

/// A stored row: its event time (nanoseconds) and its columns in Arrow's
/// row format.
struct Stored {
    time: i64,
    row: Box<[u8]>,
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
}

impl SideRows {
    /// Keep `row` of `key` at `time`.
    fn store(&mut self, key: &[u8], time: i64, row: &[u8]) {
        let stored = Stored {
            time,
            row: row.into(),
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

    /// Drop every row before `cutoff`.
    fn expire(&mut self, cutoff: i64) {
        let kept = self.expiry.split_off(&cutoff);
        let expired = std::mem::replace(&mut self.expiry, kept);
        for key in expired.into_values().flatten() {
            let Some(rows) = self.by_key.get_mut(&key) else {
                // A key listed at two times: already emptied.
                continue;
            };
            let before = rows.len();
            rows.retain(|r| r.time >= cutoff);
            self.len -= before - rows.len();
            if rows.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }
}

/// The output being built: for each output row, its left part and its
/// right part, in the row format.
struct Pairs {
    sides: [Rows; 2],
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
    /// then keep it (unless late), and return the pairs.
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
            Side::Left => (left, &*right),
            Side::Right => (right, &*left),
        };
        let key_rows = mine.keys.convert_columns(&keys)?;
        let rows = mine.rows.convert_columns(&batch.columns()[..width])?;
        let their_parser = theirs.rows.parser();
        let mut late = 0u64;
        for i in 0..n {
            if times.is_null(i) || keys.iter().any(|k| k.is_null(i)) {
                continue;
            }
            let time = times.value(i);
            if time < watermark {
                late += 1;
                continue;
            }
            let key = key_rows.row(i);
            for other in theirs.by_key.get(key.as_ref()).into_iter().flatten() {
                let (l, r) = match side {
                    Side::Left => (time, other.time),
                    Side::Right => (other.time, time),
                };
                if bounds.matches(l, r) {
                    let other = their_parser.parse(&other.row);
                    pairs.sides[s].push(rows.row(i));
                    pairs.sides[1 - s].push(other);
                }
            }
            mine.store(key.as_ref(), time, rows.row(i).data());
        }
        self.late[s].inc_by(late);
        self.output(pairs)
    }

    /// An empty output.
    fn pairs(&self) -> Pairs {
        Pairs {
            sides: [
                self.sides[0].rows.empty_rows(0, 0),
                self.sides[1].rows.empty_rows(0, 0),
            ],
        }
    }

    /// The output batch of `pairs`, if any.
    fn output(&self, pairs: Pairs) -> Result<Vec<StreamBatch>> {
        if pairs.sides[0].num_rows() == 0 {
            return Ok(Vec::new());
        }
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (side, rows) in self.sides.iter().zip(&pairs.sides) {
            columns.extend(side.rows.convert_rows(rows)?);
        }
        let schema = self.spec.output_schema.clone();
        let columns = crate::operators::conform(&schema, columns)?;
        Ok(vec![StreamBatch::Rows(RecordBatch::try_new(
            schema, columns,
        )?)])
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
            for stored in side.by_key.values().flatten() {
                encoded.push(parser.parse(&stored.row));
            }
            let columns = side.rows.convert_rows(&encoded)?;
            write.put.push((
                SIDE_CHUNKS[s].to_string(),
                side_chunk(&self.spec.inputs[s], columns, None)?,
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
        if chunk.num_columns() != width {
            return internal_err!(
                "interval join: a checkpoint chunk of {} columns for an input of {width}",
                chunk.num_columns()
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
        let rows = side.rows.convert_columns(mine.columns())?;
        for i in 0..n {
            if times.is_null(i) {
                return internal_err!("interval join: a stored row without a time");
            }
            side.store(key_rows.row(i).as_ref(), times.value(i), rows.row(i).data());
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
        if watermark > self.side_watermarks[s] {
            self.side_watermarks[s] = watermark;
            let other = Side::BOTH[1 - s];
            let cutoff = self.bounds.expired_below(other, watermark);
            self.sides[other.index()].expire(cutoff);
        }
        Ok(Vec::new())
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
        let mut fields: Vec<Field> = input()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(input().fields().iter().map(|f| f.as_ref().clone()));
        let key = || vec![Arc::new(Column::new("k", 0)) as Arc<dyn PhysicalExpr>];
        let spec = Arc::new(JoinSpec {
            kind: crate::plan::JoinKind::Inner,
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
}
