//! An equi-join of two inputs, either of which may be updating (a table
//! with a primary key) and both maintained: a symmetric hash join.
//!
//! One instance runs per join worker and owns the keys the exchange sends
//! it. Each side keeps its rows by join key (`join_keys`: one integer key
//! as itself). An updating side (a table with a primary key) keeps each
//! distinct row once in columns with a count (`counted_rows`: a multiset,
//! so duplicates and retractions are exact); an append-only side (a
//! stream) keeps its batches as they came and, per key, where its rows
//! are. Nothing is copied or re-encoded per row: pairs are gathered with
//! `take` and `interleave`. A row
//! on one side is matched against the other side's rows of its key, and the
//! pairs are emitted with the row's op: an insert inserts its pairs, a
//! retraction retracts them. A LEFT JOIN also keeps the null-padded row of
//! a left row without matches, retracting it when the first match arrives
//! and inserting it again when the last match goes.
//!
//! # Correctness
//! - Rows of one input are applied in order and each against the state the
//!   other side had when it arrived, so every pair is emitted exactly once
//!   in whichever order the two sides' rows come (the classic symmetric
//!   hash join argument).
//! - A NULL key matches nothing, as in SQL: such rows are never stored; on
//!   a preserved side of an outer join they are passed through null-padded.
//! - The output carries no watermark (only the end of input): a row on one
//!   side joins the other side's rows of any age, so no event time bounds
//!   what the join may still emit. Windows after a join are therefore
//!   updating and kept (EMIT ON WINDOW CLOSE is refused); an interval join
//!   would be the way to keep a watermark.
//! - With a state TTL (the view's `join_state_ttl`), each side's watermark
//!   drops rows (`join_state`'s notes say which and why a replay drops the
//!   same ones), still forwarding no watermark but the end: a row of one
//!   side pairs with rows of the other as old as the TTL, or as old as a
//!   table's.
//! - State is per key, and both inputs are exchanged by the same key
//!   expressions (cast to one type), so matching rows meet on one worker.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int8Array, Int64Array, RecordBatch, UInt32Array,
    new_empty_array,
};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema, SchemaRef};
use datafusion::common::{Result, internal_err};

use crate::checkpoint::StateWrite;
use crate::operators::changes::changelog_schema;
use crate::operators::counted_rows::{Changes, CountedRows};
use crate::operators::join_keys::{JoinKeys, KeyMap, KeyRef, key_converter};
use crate::operators::join_state::{Expiry, Part, SideState, Stored};
use crate::operators::{StateSummary, StreamBatch, StreamOperator, exchange};
// The join's plan types live with the plan (the planner/runtime contract);
// re-exported here, where a reader of the join looks for them.
pub use crate::plan::{JoinKind, JoinSpec, Side};

/// An output row: the left part, the right part, the op.
type Pair = (Part, Part, i8);

/// How the side whose rows arrived takes them in.
enum Taking<'a> {
    /// An updating side counts each row.
    Counted(Changes<'a>),
    /// An append-only side stored the batch (as its batch `1`) and keeps
    /// each row of it under its key.
    Appended(&'a mut SideState, u32),
}

impl Taking<'_> {
    /// How many rows the side has for `key` now.
    fn count(&self, key: KeyRef<'_>) -> i64 {
        match self {
            Self::Counted(changes) => changes.count(key),
            Self::Appended(side, _) => side.count(key),
        }
    }
}

/// One worker's join.
pub struct JoinOperator {
    spec: Arc<JoinSpec>,
    sides: [SideState; 2],
    /// The highest watermark seen: the join forwards none but the end (see
    /// the module's notes), but its checkpoint keeps it.
    watermark: i64,
    /// Each side's watermark (left, right), with a state TTL: they drop
    /// rows (`operators::join_state`). A side without event time has none.
    side_watermarks: [i64; 2],
}

impl JoinOperator {
    /// A new, empty join.
    pub fn new(spec: Arc<JoinSpec>) -> Result<Self> {
        let side = |i: usize| -> Result<SideState> {
            let key_types = spec.keys[i]
                .iter()
                .map(|k| k.data_type(&spec.inputs[i]))
                .collect::<Result<Vec<_>>>()?;
            Ok(SideState {
                stored: if spec.input_changelog[i] {
                    Stored::Counted(CountedRows::new(spec.inputs[i].clone(), &key_types)?)
                } else {
                    Stored::Appended {
                        batches: Vec::new(),
                        by_key: KeyMap::for_types(&key_types),
                    }
                },
                keys: key_converter(key_types)?,
                expiry: Expiry::of(spec.ttl(), i),
            })
        };
        let sides = [side(0)?, side(1)?];
        if sides
            .iter()
            .zip(&spec.input_changelog)
            .any(|(side, changelog)| side.expiry.is_some() && *changelog)
        {
            return internal_err!("a join state TTL on an updating side");
        }
        Ok(Self {
            spec,
            sides,
            watermark: i64::MIN,
            side_watermarks: [i64::MIN; 2],
        })
    }

    /// Rows of input `side` arrive: apply them to that side's state and
    /// return the pairs they make or unmake.
    pub fn on_batch(&mut self, side: Side, batch: &RecordBatch) -> Result<Vec<StreamBatch>> {
        let s = side.index();
        let n = batch.num_rows();
        if n == 0 {
            return Ok(Vec::new());
        }
        let width = self.spec.inputs[s].fields().len();
        let ops = if self.spec.input_changelog[s] {
            Some(
                batch
                    .column(batch.num_columns() - 1)
                    .as_primitive::<Int8Type>()
                    .clone(),
            )
        } else {
            None
        };
        let key_columns = self.spec.keys[s]
            .iter()
            .map(|k| k.evaluate(batch)?.into_array(n))
            .collect::<Result<Vec<_>>>()?;
        // Outer joins: is this side's row kept without a match (padded),
        // and is the other side's?
        let (mine_kept, theirs_kept) = (
            self.spec.kind.preserves(side),
            self.spec.kind.preserves(side.other()),
        );
        // With a TTL: the watermark that drops this side's rows, this
        // side's own (kept with each row), and whether a pair must be
        // within the TTL both ways (two sides with event time).
        let ttl = self.spec.ttl().copied();
        let clock = ttl.map_or(i64::MIN, |t| self.side_watermarks[t.clock(side).index()]);
        let own = self.side_watermarks[s];
        let both = ttl.is_some_and(|t| t.both());
        let (mine, theirs) = match &mut self.sides {
            [left, right] if side == Side::Left => (left, &*right),
            [left, right] => (right, &*left),
        };
        let keys = JoinKeys::new(&mine.keys, &key_columns)?;
        let times = match &mine.expiry {
            Some(expiry) => expiry.times_of(batch)?,
            None => Vec::new(),
        };
        // The input's own columns: its part of each output row, and what an
        // append-only side stores.
        let input = batch.project(&(0..width).collect::<Vec<_>>())?;
        let mut taking = if let Stored::Counted(rows) = &mut mine.stored {
            Taking::Counted(rows.changes(&input)?)
        } else {
            let seen = if mine.expiry.is_some() {
                vec![own; n]
            } else {
                Vec::new()
            };
            let at = mine.append(input.clone(), times.clone(), seen);
            Taking::Appended(mine, at)
        };
        fn pair(side: Side, mine: Part, other: Part) -> (Part, Part) {
            if side == Side::Left {
                (mine, other)
            } else {
                (other, mine)
            }
        }
        let mut out: Vec<Pair> = Vec::new();
        for i in 0..n {
            let op = ops.as_ref().map_or(1, |o| o.value(i));
            let this = Part::Input(i as u32);
            let Some(key) = keys.get(i) else {
                if mine_kept {
                    let (l, r) = pair(side, this, Part::Null);
                    out.push((l, r, op));
                }
                continue;
            };
            // Two sides with event time: only the other side's rows that
            // were within the TTL of this row when they arrived.
            let time = times.get(i).copied().filter(|_| both);
            let matches =
                theirs
                    .matches(key)
                    .filter(move |(part, _)| match (part, time, &theirs.expiry) {
                        (Part::At(b, r), Some(time), Some(expiry)) => {
                            expiry.pairs_with(*b, *r, time)
                        }
                        _ => true,
                    });
            // The other side's rows of the key are padded while this side
            // has none: the padded rows go when the key's first row comes
            // here, and come back when its last one goes.
            let before = if theirs_kept { taking.count(key) } else { 0 };
            let after = before + op as i64;
            if theirs_kept && before <= 0 && after > 0 {
                for (t, c) in matches.clone() {
                    for _ in 0..c {
                        let (l, r) = pair(side, Part::Null, t);
                        out.push((l, r, -1));
                    }
                }
            }
            let mut matched = false;
            for (t, c) in matches.clone() {
                matched |= c > 0;
                for _ in 0..c {
                    let (l, r) = pair(side, this, t);
                    out.push((l, r, op));
                }
            }
            if theirs_kept && before > 0 && after <= 0 {
                for (t, c) in matches.clone() {
                    for _ in 0..c {
                        let (l, r) = pair(side, Part::Null, t);
                        out.push((l, r, 1));
                    }
                }
            }
            if mine_kept && !matched {
                let (l, r) = pair(side, this, Part::Null);
                out.push((l, r, op));
            }
            // The row joins this side's state only now: it was matched
            // against the other side as it was when it arrived.
            match &mut taking {
                Taking::Counted(changes) => changes.apply(i, key, i64::from(op))?,
                Taking::Appended(mine, at) => mine.keep(key, *at, i as u32, clock)?,
            }
        }
        if let Taking::Counted(changes) = taking {
            changes.finish()?;
        }
        let sides = [&self.sides[0], &self.sides[1]];
        Ok(pairs_batch(&self.spec, sides, &input, &out)?
            .into_iter()
            .collect())
    }

    /// Both sides' rows with their counts, whole (at a barrier); with a
    /// TTL, only the rows kept, each with its side's watermark when it
    /// arrived (its event time is in the row: the time index is rebuilt
    /// from it on restore).
    pub fn snapshot(&mut self) -> Result<StateWrite> {
        let mut write = StateWrite {
            reset: true,
            ..Default::default()
        };
        for side in &mut self.sides {
            side.compact()?;
        }
        for (s, side) in self.sides.iter().enumerate() {
            let (columns, counts) = match &side.stored {
                Stored::Counted(rows) => {
                    if rows.distinct() == 0 {
                        continue;
                    }
                    rows.snapshot()?
                }
                Stored::Appended { batches, .. } => {
                    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
                    if total == 0 {
                        continue;
                    }
                    let whole =
                        datafusion::arrow::compute::concat_batches(&batches[0].schema(), batches)?;
                    (whole.columns().to_vec(), vec![1i64; total])
                }
            };
            let mut chunk = side_chunk(&self.spec.inputs[s], columns, ChunkTail::Counts(counts))?;
            if side.expiry.is_some() {
                chunk = with_seen(chunk, side.seen()?)?;
            }
            write.put.push((SIDE_CHUNKS[s].to_string(), chunk));
        }
        Ok(write)
    }

    /// Rebuild state from a checkpoint's chunks (of every old worker),
    /// keeping the keys that hash to `worker` of `workers`.
    fn restore_chunks(
        &mut self,
        chunks: &[(String, RecordBatch)],
        worker: usize,
        workers: usize,
    ) -> Result<()> {
        for (id, chunk) in chunks {
            let Some(s) = SIDE_CHUNKS.iter().position(|c| c == id) else {
                return internal_err!("a join chunk of neither side: {id}");
            };
            let Some(mine) = exchange::rows_of_worker(chunk, &self.spec.keys[s], worker, workers)?
            else {
                continue;
            };
            let n = mine.num_rows();
            let width = self.spec.inputs[s].fields().len();
            let keys = self.spec.keys[s]
                .iter()
                .map(|k| k.evaluate(&mine)?.into_array(n))
                .collect::<Result<Vec<_>>>()?;
            let side = &mut self.sides[s];
            let keys = JoinKeys::new(&side.keys, &keys)?;
            let counts = mine.column(width).as_primitive::<Int64Type>();
            match &mut side.stored {
                Stored::Counted(rows) => rows.apply(&mine, &keys, |i| counts.value(i))?,
                Stored::Appended { .. } => {
                    // A row counted twice is there twice.
                    let repeat: Vec<u32> = (0..n as u32)
                        .flat_map(|i| {
                            std::iter::repeat_n(i, counts.value(i as usize).max(0) as usize)
                        })
                        .collect();
                    let rows = RecordBatch::try_new(
                        self.spec.inputs[s].clone(),
                        mine.columns()[..width]
                            .iter()
                            .map(|c| take(c.as_ref(), &UInt32Array::from(repeat.clone()), None))
                            .collect::<std::result::Result<Vec<_>, _>>()?,
                    )?;
                    let (times, seen) = match &side.expiry {
                        Some(expiry) => {
                            if mine.num_columns() != width + 2 {
                                return internal_err!(
                                    "a join side with a state TTL restored from a chunk without arrival watermarks"
                                );
                            }
                            let seen = mine.column(width + 1).as_primitive::<Int64Type>();
                            let seen = repeat.iter().map(|&i| seen.value(i as usize)).collect();
                            (expiry.times_of(&rows)?, seen)
                        }
                        None => (Vec::new(), Vec::new()),
                    };
                    let at = side.append(rows, times, seen);
                    for (r, &i) in repeat.iter().enumerate() {
                        // The restored side watermarks drop what they
                        // expire before any row comes.
                        if let Some(key) = keys.get(i as usize) {
                            side.keep(key, at, r as u32, i64::MIN)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
impl JoinOperator {
    /// Its two sides, for the tests of what they keep.
    pub(crate) fn sides_for_tests(&self) -> &[SideState; 2] {
        &self.sides
    }
}

impl StreamOperator for JoinOperator {
    fn state(&self) -> StateSummary {
        StateSummary {
            operator: "join",
            entries: self.sides.iter().map(SideState::entries).sum(),
        }
    }

    fn on_batch(&mut self, side: Option<Side>, batch: &RecordBatch) -> Result<Vec<StreamBatch>> {
        match side {
            Some(side) => JoinOperator::on_batch(self, side, batch),
            None => internal_err!("a join was given a batch of neither side"),
        }
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<StreamBatch>> {
        self.watermark = self.watermark.max(watermark);
        Ok(Vec::new())
    }

    /// With a state TTL: the rows whose clock is `side`'s watermark and
    /// whose time to live it reached are dropped, retracting nothing.
    fn on_side_watermark(&mut self, side: Side, watermark: i64) -> Result<Vec<StreamBatch>> {
        let Some(ttl) = self.spec.ttl().copied() else {
            return Ok(Vec::new());
        };
        let s = side.index();
        if watermark > self.side_watermarks[s] {
            self.side_watermarks[s] = watermark;
            for dropped in Side::BOTH {
                if ttl.clock(dropped) == side {
                    self.sides[dropped.index()].expire(watermark)?;
                }
            }
        }
        Ok(Vec::new())
    }

    fn watermark(&self) -> i64 {
        self.watermark
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<StateWrite> {
        JoinOperator::snapshot(self)
    }

    fn restore(
        &mut self,
        watermark: i64,
        chunks: &[(String, RecordBatch)],
        worker: usize,
        workers: usize,
    ) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        self.restore_chunks(chunks, worker, workers)
    }
}

/// The output rows of `pairs`: each side's columns gathered from the input
/// batch or the side's state, NULLs where a part is missing.
fn pairs_batch(
    spec: &JoinSpec,
    sides: [&SideState; 2],
    input: &RecordBatch,
    pairs: &[Pair],
) -> Result<Option<StreamBatch>> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut columns = Vec::with_capacity(spec.output_schema.fields().len() + 1);
    for (s, side) in sides.into_iter().enumerate() {
        let parts: Vec<Part> = pairs
            .iter()
            .map(|p| if s == 0 { p.0 } else { p.1 })
            .collect();
        columns.extend(gather(spec, Side::BOTH[s], side, input, &parts)?);
    }
    let schema = spec.output_schema.clone();
    let columns = crate::operators::conform(&schema, columns)?;
    if spec.changelog() {
        let mut columns = columns;
        columns.push(Arc::new(Int8Array::from(
            pairs.iter().map(|p| p.2).collect::<Vec<_>>(),
        )));
        Ok(Some(StreamBatch::Changes(RecordBatch::try_new(
            changelog_schema(&schema),
            columns,
        )?)))
    } else {
        Ok(Some(StreamBatch::Rows(RecordBatch::try_new(
            schema, columns,
        )?)))
    }
}

/// One side's output columns of `parts`: from the input batch (the side
/// whose rows arrived: its parts are all `Input` or `Null`) or from its
/// state (the other side's: `Slot` or `At`, or `Null`).
fn gather(
    spec: &JoinSpec,
    side: Side,
    state: &SideState,
    input: &RecordBatch,
    parts: &[Part],
) -> Result<Vec<ArrayRef>> {
    // Not an event-time column appended for a TTL alone.
    let width = spec.output_columns(side);
    if parts.iter().any(|p| matches!(p, Part::Input(_))) {
        let indices: UInt32Array = parts
            .iter()
            .map(|p| match p {
                Part::Input(i) => Some(*i),
                _ => None,
            })
            .collect();
        return input.columns()[..width]
            .iter()
            .map(|c| Ok(take(c.as_ref(), &indices, None)?))
            .collect();
    }
    match &state.stored {
        Stored::Counted(rows) => {
            let slots: Vec<Option<u32>> = parts
                .iter()
                .map(|p| match p {
                    Part::Slot(slot) => Some(*slot),
                    _ => None,
                })
                .collect();
            let mut columns = rows.gather(&slots)?;
            columns.truncate(width);
            Ok(columns)
        }
        Stored::Appended { batches, .. } => {
            // Where each output row's part is among the gathered ones.
            let mut next = 0u32;
            let indices: UInt32Array = parts
                .iter()
                .map(|p| match p {
                    Part::At(..) => {
                        next += 1;
                        Some(next - 1)
                    }
                    _ => None,
                })
                .collect();
            let at: Vec<(usize, usize)> = parts
                .iter()
                .filter_map(|p| match p {
                    Part::At(b, r) => Some((*b as usize, *r as usize)),
                    _ => None,
                })
                .collect();
            (0..width)
                .map(|c| {
                    let gathered = if at.is_empty() {
                        // Only padded rows on this side (an outer join's
                        // other side before this one has any rows):
                        // nothing to gather, from no batch.
                        new_empty_array(spec.inputs[side.index()].field(c).data_type())
                    } else {
                        let arrays: Vec<&dyn Array> =
                            batches.iter().map(|b| b.column(c).as_ref()).collect();
                        interleave(&arrays, &at)?
                    };
                    Ok(if indices.null_count() == 0 {
                        gathered
                    } else {
                        take(gathered.as_ref(), &indices, None)?
                    })
                })
                .collect()
        }
    }
}

/// The name of a TTL'd side chunk's column of arrival watermarks.
const SEEN_COLUMN: &str = "__weir_seen_watermark";

/// `chunk` with each row's side watermark at its arrival (a TTL'd side's)
/// as a last column.
fn with_seen(chunk: RecordBatch, seen: Vec<i64>) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = chunk
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(SEEN_COLUMN, DataType::Int64, true));
    let mut columns = chunk.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(seen)) as ArrayRef);
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Chunk ids of the two sides' state.
pub(crate) const SIDE_CHUNKS: [&str; 2] = ["left", "right"];

/// The name of a side chunk's count column.
const COUNT_COLUMN: &str = "__weir_count";

/// The name of a side chunk's "paired" column (an outer interval join's
/// preserved side).
pub(crate) const MATCHED_COLUMN: &str = "__weir_matched";

/// What a side chunk carries after the side's input columns.
pub(crate) enum ChunkTail {
    /// Nothing: an inner interval join's rows, or an outer one's side
    /// whose rows are never padded.
    Nothing,
    /// Each row's count (the regular and the lookup join), as
    /// `__weir_count`.
    Counts(Vec<i64>),
    /// Whether each row has paired yet (the preserved side of an outer
    /// interval join: a row that never did is padded once it expires), as
    /// `__weir_matched`.
    Matched(Vec<bool>),
}

/// One join side's rows as a checkpoint chunk: the side's input columns
/// (`columns`, at least as many as `input` has; extra ones are dropped),
/// each made nullable, so a chunk reads back whatever nullability the
/// plan declared, then the rows' counts or "paired" flags (`tail`). What
/// the regular, the interval and the lookup join write alike.
pub(crate) fn side_chunk(
    input: &SchemaRef,
    mut columns: Vec<ArrayRef>,
    tail: ChunkTail,
) -> Result<RecordBatch> {
    columns.truncate(input.fields().len());
    let mut fields: Vec<Field> = input
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    match tail {
        ChunkTail::Nothing => {}
        ChunkTail::Counts(counts) => {
            fields.push(Field::new(COUNT_COLUMN, DataType::Int64, true));
            columns.push(Arc::new(Int64Array::from(counts)) as ArrayRef);
        }
        ChunkTail::Matched(matched) => {
            fields.push(Field::new(MATCHED_COLUMN, DataType::Boolean, true));
            columns.push(Arc::new(BooleanArray::from(matched)) as ArrayRef);
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_plan::PhysicalExpr;

    fn spec(kind: JoinKind) -> Arc<JoinSpec> {
        let left = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]));
        let right = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let mut fields: Vec<Field> = left.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(right.fields().iter().map(|f| f.as_ref().clone()));
        Arc::new(JoinSpec {
            kind,
            keys: [
                vec![Arc::new(Column::new("k", 0)) as Arc<dyn PhysicalExpr>],
                vec![Arc::new(Column::new("id", 0)) as Arc<dyn PhysicalExpr>],
            ],
            inputs: [left, right],
            input_changelog: [false, true],
            output_schema: Arc::new(Schema::new(fields)),
            interval: None,
            state: Default::default(),
        })
    }

    fn left(rows: &[(Option<i64>, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            spec(JoinKind::Inner).inputs[0].clone(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn right(rows: &[(i64, &str, i8)]) -> RecordBatch {
        RecordBatch::try_new(
            changelog_schema(&spec(JoinKind::Inner).inputs[1]),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int8Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn text(batches: Vec<StreamBatch>) -> Vec<String> {
        let batches: Vec<RecordBatch> = batches.into_iter().map(StreamBatch::into_batch).collect();
        let mut out = Vec::new();
        for b in batches {
            for r in 0..b.num_rows() {
                let cells: Vec<String> = (0..b.num_columns())
                    .map(|c| {
                        datafusion::arrow::util::display::array_value_to_string(b.column(c), r)
                            .unwrap()
                    })
                    .collect();
                out.push(cells.join(" "));
            }
        }
        out
    }

    #[test]
    fn left_join_pads_and_unpads() {
        let mut join = JoinOperator::new(spec(JoinKind::Left)).unwrap();
        assert_eq!(
            text(
                join.on_batch(Side::Left, &left(&[(Some(1), "a"), (None, "n")]))
                    .unwrap()
            ),
            vec!["1 a   1", " n   1"]
        );
        assert_eq!(
            text(
                join.on_batch(Side::Right, &right(&[(1, "one", 1)]))
                    .unwrap()
            ),
            vec!["1 a   -1", "1 a 1 one 1"]
        );
        // Through a checkpoint, then the match goes again.
        let write = join.snapshot().unwrap();
        let mut again = JoinOperator::new(spec(JoinKind::Left)).unwrap();
        again.restore_chunks(&write.put, 0, 1).unwrap();
        assert_eq!(
            text(
                again
                    .on_batch(Side::Right, &right(&[(1, "one", -1)]))
                    .unwrap()
            ),
            vec!["1 a 1 one -1", "1 a   1"]
        );
    }

    #[test]
    fn inner_join_matches_either_order() {
        let mut join = JoinOperator::new(spec(JoinKind::Inner)).unwrap();
        assert!(
            join.on_batch(Side::Right, &right(&[(2, "two", 1)]))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            text(
                join.on_batch(Side::Left, &left(&[(Some(2), "x"), (Some(3), "y")]))
                    .unwrap()
            ),
            vec!["2 x 2 two 1"]
        );
        assert_eq!(
            text(
                join.on_batch(Side::Right, &right(&[(3, "three", 1)]))
                    .unwrap()
            ),
            vec!["3 y 3 three 1"]
        );
    }

    #[test]
    fn right_and_full_joins_pad_the_other_side() {
        let mut right_join = JoinOperator::new(spec(JoinKind::Right)).unwrap();
        assert_eq!(
            text(
                right_join
                    .on_batch(Side::Right, &right(&[(1, "one", 1)]))
                    .unwrap()
            ),
            vec!["  1 one 1"]
        );
        assert_eq!(
            text(
                right_join
                    .on_batch(Side::Left, &left(&[(Some(1), "a"), (Some(2), "b")]))
                    .unwrap()
            ),
            vec!["  1 one -1", "1 a 1 one 1"]
        );
        let mut full = JoinOperator::new(spec(JoinKind::Full)).unwrap();
        assert_eq!(
            text(
                full.on_batch(Side::Left, &left(&[(Some(1), "a"), (None, "n")]))
                    .unwrap()
            ),
            vec!["1 a   1", " n   1"]
        );
        assert_eq!(
            text(
                full.on_batch(Side::Right, &right(&[(1, "one", 1), (3, "three", 1)]))
                    .unwrap()
            ),
            vec!["1 a   -1", "1 a 1 one 1", "  3 three 1"]
        );
        // The last right row of key 1 goes: the left row is padded again,
        // and the right row's pair is retracted.
        assert_eq!(
            text(
                full.on_batch(Side::Right, &right(&[(1, "one", -1)]))
                    .unwrap()
            ),
            vec!["1 a 1 one -1", "1 a   1"]
        );
    }
}
