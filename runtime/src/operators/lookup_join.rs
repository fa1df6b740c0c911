//! A lookup join (`s JOIN t FOR SYSTEM_TIME AS OF s.ts ON s.k = t.k`, and
//! its LEFT JOIN): each stream row (the left input) is joined with the
//! table rows (the right input) the worker holds when the row arrives, as
//! Flink's lookup join does against an external table. Design note 0016.
//!
//! One instance runs per join worker and owns the keys the exchange sends
//! it. Only the table side is kept ([`CountedRows`]): by key, each row in
//! columns with how many times it is there, so a table's deletes and
//! updates (its changelog) find their rows. A stream row is probed against
//! it, its pairs
//! (or, for a LEFT JOIN, the row padded with NULLs when the key has no
//! table row) are emitted, and the row is forgotten.
//!
//! # Correctness
//! - A table change emits nothing: it neither retracts nor re-emits pairs
//!   of earlier stream rows. So over an append-only stream the output is
//!   append-only, and each stream row's pairs are emitted exactly once,
//!   when it arrives.
//! - The output's event time is the stream row's, emitted when the row
//!   arrives: the stream's watermark bounds it as it bounds the input, so
//!   the worker forwards it unchanged (the table side has no event time
//!   and holds nothing back: the topology does not count it).
//! - Which table rows a stream row sees depends on how far the table side
//!   was read when the row came (processing time, as Flink's lookup join):
//!   a replay after a crash probes the table side as the checkpoint held
//!   it, then as its source delivers changes after that checkpoint again.
//! - A NULL key matches nothing, as in SQL: such a table row is not kept,
//!   and such a stream row only pads (LEFT JOIN).
//! - The table first: stream rows that come before the table side's
//!   snapshot (the rows its table held when the job started) has ended on
//!   every table-side upstream ([`Message::SnapshotEnd`]) are held, in
//!   order, and so is the stream's watermark; at the snapshot's end they
//!   are probed, then the watermark goes on. So a view created over a
//!   stream that already holds rows joins them with the table's rows, not
//!   with whichever of them happened to arrive first. An empty table's
//!   snapshot ends at once.
//! - No checkpoint holds stream rows: a table-side source sends no barrier
//!   before its snapshot's end (`job::source_task`), so every barrier the
//!   worker aligns comes after it, when nothing is held. The held rows are
//!   then simply unacknowledged input: after a kill -9 before the first
//!   checkpoint the stream is read again from where it was. A barrier
//!   while rows are held would be a broken invariant: an internal error.
//! - Checkpoint: the table side, whole, at a barrier after it changed
//!   (a dimension table rarely does, so most barriers write nothing);
//!   restore keeps the rows whose key hashes to the worker. A restored
//!   join does not wait again: its restored table side is the snapshot
//!   (taken after the first one ended), and its table source resumes with
//!   the changes after it.
//!
//! [`Message::SnapshotEnd`]: crate::message::Message::SnapshotEnd

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{Int8Type, Int64Type};
use datafusion::arrow::row::RowConverter;
use datafusion::common::{Result, internal_err};

use crate::checkpoint::StateWrite;
use crate::operators::counted_rows::CountedRows;
use crate::operators::join::{ChunkTail, SIDE_CHUNKS, side_chunk};
use crate::operators::join_keys::{JoinKeys, key_converter};
use crate::operators::{StateSummary, StreamBatch, StreamOperator, exchange};
use crate::plan::{JoinKind, JoinSpec, Side};

/// One worker's lookup join.
pub struct LookupJoin {
    spec: Arc<JoinSpec>,
    /// Key converters of the stream (left) and the table (right) side:
    /// both give the same keys for equal values (the keys are cast to one
    /// type by the planner).
    keys: [RowConverter; 2],
    /// The table side: its rows in columns, by key.
    table: CountedRows,
    /// Has the table side changed since the last snapshot?
    changed: bool,
    /// The highest watermark seen (the stream's): forwarded as it is once
    /// the table side's snapshot ended.
    watermark: i64,
    /// Stream batches that came before the table side's snapshot ended, in
    /// order; `None` once it ended (or the join was restored).
    held: Option<Vec<RecordBatch>>,
}

impl LookupJoin {
    /// A new lookup join of `spec`, empty.
    pub fn new(spec: Arc<JoinSpec>) -> Result<Self> {
        if !spec.lookup() || !matches!(spec.kind, JoinKind::Inner | JoinKind::Left) {
            return internal_err!("a lookup join of a {:?} join spec", spec.kind);
        }
        if spec.input_changelog[0] {
            return internal_err!("a lookup join over an updating stream");
        }
        let key_types = |s: usize| -> Result<Vec<_>> {
            spec.keys[s]
                .iter()
                .map(|k| k.data_type(&spec.inputs[s]))
                .collect()
        };
        let table = CountedRows::new(spec.inputs[1].clone(), &key_types(1)?)?;
        Ok(Self {
            keys: [key_converter(key_types(0)?)?, key_converter(key_types(1)?)?],
            table,
            spec,
            changed: false,
            watermark: i64::MIN,
            held: Some(Vec::new()),
        })
    }

    /// The join keys of `batch` (of side `s`).
    fn join_keys(&self, s: usize, batch: &RecordBatch) -> Result<JoinKeys> {
        let n = batch.num_rows();
        let columns = self.spec.keys[s]
            .iter()
            .map(|k| k.evaluate(batch)?.into_array(n))
            .collect::<Result<Vec<ArrayRef>>>()?;
        JoinKeys::new(&self.keys[s], &columns)
    }

    /// Table rows arrive (inserts, or a changelog's inserts and deletes):
    /// applied to the table side; nothing is emitted.
    fn table_rows(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys = self.join_keys(1, batch)?;
        if self.spec.input_changelog[1] {
            let ops = batch
                .column(batch.num_columns() - 1)
                .as_primitive::<Int8Type>();
            self.table
                .apply(batch, &keys, |i| i64::from(ops.value(i)))?;
        } else {
            self.table.apply(batch, &keys, |_| 1)?;
        }
        self.changed = true;
        Ok(())
    }

    /// Stream rows arrive: each is joined with the table rows of its key
    /// held now, and forgotten.
    fn stream_rows(&self, batch: &RecordBatch) -> Result<Vec<StreamBatch>> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(Vec::new());
        }
        let padded = self.spec.kind == JoinKind::Left;
        let keys = self.join_keys(0, batch)?;
        // For each output row: the stream row it extends, and the table
        // row's slot or none (padded).
        let mut left: Vec<u32> = Vec::with_capacity(n);
        let mut right: Vec<Option<u32>> = Vec::with_capacity(n);
        for i in 0..n {
            let mut matched = false;
            if let Some(key) = keys.get(i) {
                for (slot, count) in self.table.matches(key) {
                    for _ in 0..count.max(0) {
                        left.push(i as u32);
                        right.push(Some(slot));
                        matched = true;
                    }
                }
            }
            if padded && !matched {
                left.push(i as u32);
                right.push(None);
            }
        }
        if left.is_empty() {
            return Ok(Vec::new());
        }
        let width = self.spec.inputs[0].fields().len();
        let mut columns =
            if left.len() == n && left.iter().enumerate().all(|(i, &l)| l as usize == i) {
                // Each stream row once, in order: its columns as they are.
                batch.columns()[..width].to_vec()
            } else {
                let indices = UInt32Array::from(left);
                batch.columns()[..width]
                    .iter()
                    .map(|c| take(c.as_ref(), &indices, None))
                    .collect::<std::result::Result<Vec<_>, _>>()?
            };
        columns.extend(self.table.gather(&right)?);
        let schema = self.spec.output_schema.clone();
        let columns = crate::operators::conform(&schema, columns)?;
        Ok(vec![StreamBatch::Rows(RecordBatch::try_new(
            schema, columns,
        )?)])
    }

    /// The table side, whole.
    fn snapshot_table(&self) -> Result<StateWrite> {
        let mut write = StateWrite {
            reset: true,
            ..Default::default()
        };
        if self.table.distinct() == 0 {
            return Ok(write);
        }
        let (columns, counts) = self.table.snapshot()?;
        write.put.push((
            TABLE_CHUNK.to_string(),
            side_chunk(&self.spec.inputs[1], columns, ChunkTail::Counts(counts))?,
        ));
        Ok(write)
    }

    /// Keep the rows of a table-side chunk (of any old worker) whose key
    /// hashes to `worker` of `workers`.
    fn restore_chunk(&mut self, chunk: &RecordBatch, worker: usize, workers: usize) -> Result<()> {
        let width = self.spec.inputs[1].fields().len();
        if chunk.num_columns() != width + 1 {
            return internal_err!(
                "lookup join: a checkpoint chunk of {} columns for a table of {width}",
                chunk.num_columns()
            );
        }
        let Some(mine) = exchange::rows_of_worker(chunk, &self.spec.keys[1], worker, workers)?
        else {
            return Ok(());
        };
        let keys = self.join_keys(1, &mine)?;
        let counts = mine.column(width).as_primitive::<Int64Type>();
        self.table.apply(&mine, &keys, |i| counts.value(i))
    }
}

impl StreamOperator for LookupJoin {
    fn state(&self) -> StateSummary {
        let held: usize = self.held.iter().flatten().map(RecordBatch::num_rows).sum();
        StateSummary {
            operator: "lookup join",
            entries: self.table.len() + held,
        }
    }

    fn on_batch(&mut self, side: Option<Side>, batch: &RecordBatch) -> Result<Vec<StreamBatch>> {
        match side {
            Some(Side::Left) => match &mut self.held {
                Some(held) => {
                    held.push(batch.clone());
                    Ok(Vec::new())
                }
                None => self.stream_rows(batch),
            },
            Some(Side::Right) => {
                self.table_rows(batch)?;
                Ok(Vec::new())
            }
            None => internal_err!("a lookup join was given a batch of neither side"),
        }
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<StreamBatch>> {
        self.watermark = self.watermark.max(watermark);
        Ok(Vec::new())
    }

    /// The held stream rows, probed in the order they came.
    fn on_snapshot_end(&mut self, side: Side) -> Result<Vec<StreamBatch>> {
        if side != Side::Right {
            return internal_err!("a lookup join's stream side sent the end of a snapshot");
        }
        let Some(held) = self.held.take() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for batch in &held {
            out.extend(self.stream_rows(batch)?);
        }
        Ok(out)
    }

    /// Nothing while stream rows are held: they would be behind it.
    fn output_watermark(&self, watermark: i64) -> i64 {
        if self.held.is_some() {
            i64::MIN
        } else {
            watermark
        }
    }

    fn watermark(&self) -> i64 {
        self.output_watermark(self.watermark)
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<StateWrite> {
        if self.held.is_some() {
            // The table side sends no barrier before its snapshot's end.
            return internal_err!(
                "a lookup join reached a barrier before its table side's snapshot ended"
            );
        }
        if !self.changed {
            // The chunks written last still hold the table side.
            return Ok(StateWrite::default());
        }
        self.changed = false;
        self.snapshot_table()
    }

    fn restore(
        &mut self,
        watermark: i64,
        chunks: &[(String, RecordBatch)],
        worker: usize,
        workers: usize,
    ) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        // Every checkpoint was taken after the first snapshot ended, and
        // the table source resumes after it: the restored rows are the
        // snapshot, and a stream row waits for nothing.
        self.held = None;
        for (id, chunk) in chunks {
            if id != TABLE_CHUNK {
                return internal_err!("a lookup join chunk of no table side: {id}");
            }
            self.restore_chunk(chunk, worker, workers)?;
        }
        // The old workers' chunks are not this worker's: write its own at
        // the first barrier.
        self.changed = true;
        Ok(())
    }
}

/// The chunk id of the table side's state: the right side's, as a regular
/// join names it.
const TABLE_CHUNK: &str = SIDE_CHUNKS[1];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::changes::changelog_schema;
    use crate::plan::JoinState;
    use datafusion::arrow::array::{Int8Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_plan::PhysicalExpr;

    fn spec(kind: JoinKind) -> Arc<JoinSpec> {
        let stream = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]));
        let table = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let mut fields: Vec<Field> = stream.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(
            table
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        Arc::new(JoinSpec {
            kind,
            keys: [
                vec![Arc::new(Column::new("k", 0)) as Arc<dyn PhysicalExpr>],
                vec![Arc::new(Column::new("id", 0)) as Arc<dyn PhysicalExpr>],
            ],
            inputs: [stream, table],
            input_changelog: [false, true],
            output_schema: Arc::new(Schema::new(fields)),
            interval: None,
            state: JoinState::TableSideOnly,
        })
    }

    fn stream(rows: &[(Option<i64>, &str)]) -> RecordBatch {
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
        .expect("stream rows")
    }

    fn table(rows: &[(i64, &str, i8)]) -> RecordBatch {
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
        .expect("table rows")
    }

    fn text(batches: Vec<StreamBatch>) -> Vec<String> {
        let mut out = Vec::new();
        for batch in batches {
            let StreamBatch::Rows(b) = batch else {
                panic!("a lookup join emitted a changelog batch");
            };
            for r in 0..b.num_rows() {
                let cells: Vec<String> = (0..b.num_columns())
                    .map(|c| {
                        datafusion::arrow::util::display::array_value_to_string(b.column(c), r)
                            .expect("a cell")
                    })
                    .collect();
                out.push(cells.join(" "));
            }
        }
        out
    }

    /// A new join whose table side's snapshot ended (empty).
    fn started(kind: JoinKind) -> LookupJoin {
        let mut join = LookupJoin::new(spec(kind)).expect("a lookup join");
        let none = join.on_snapshot_end(Side::Right).expect("snapshot end");
        assert!(none.is_empty(), "nothing was held");
        join
    }

    #[test]
    fn a_stream_row_sees_the_table_as_it_is_when_it_arrives() {
        let mut join = started(JoinKind::Inner);
        let none = join
            .on_batch(Some(Side::Right), &table(&[(1, "ada", 1), (2, "bob", 1)]))
            .expect("table rows");
        assert!(none.is_empty(), "a table row emits nothing");
        let out = join
            .on_batch(Some(Side::Left), &stream(&[(Some(1), "a"), (Some(3), "c")]))
            .expect("stream rows");
        assert_eq!(text(out), vec!["1 a 1 ada"]);
        // An update: nothing retracted, later rows see the new name.
        let none = join
            .on_batch(
                Some(Side::Right),
                &table(&[(1, "ada", -1), (1, "ann", 1), (3, "cy", 1)]),
            )
            .expect("an update");
        assert!(none.is_empty());
        let out = join
            .on_batch(Some(Side::Left), &stream(&[(Some(1), "b"), (Some(3), "d")]))
            .expect("stream rows");
        assert_eq!(text(out), vec!["1 b 1 ann", "3 d 3 cy"]);
        assert_eq!(join.state().entries, 3, "the table side only");
    }

    #[test]
    fn a_left_lookup_join_pads_rows_without_a_table_row() {
        let mut join = started(JoinKind::Left);
        join.on_batch(Some(Side::Right), &table(&[(1, "ada", 1)]))
            .expect("table rows");
        let out = join
            .on_batch(
                Some(Side::Left),
                &stream(&[(Some(2), "x"), (Some(1), "a"), (None, "n")]),
            )
            .expect("stream rows");
        assert_eq!(text(out), vec!["2 x  ", "1 a 1 ada", " n  "]);
    }

    #[test]
    fn the_table_side_survives_a_checkpoint_on_more_workers_and_is_written_when_changed() {
        let mut join = started(JoinKind::Inner);
        join.on_batch(
            Some(Side::Right),
            &table(&[(1, "ada", 1), (2, "bob", 1), (3, "cy", 1)]),
        )
        .expect("table rows");
        let write = join.snapshot(1).expect("snapshot");
        assert!(write.reset && write.put.len() == 1);
        assert!(
            join.snapshot(2).expect("snapshot").is_empty(),
            "an unchanged table side writes nothing"
        );
        let mut total = 0;
        let mut matched = Vec::new();
        for worker in 0..2 {
            let mut again = LookupJoin::new(spec(JoinKind::Inner)).expect("a lookup join");
            again
                .restore(i64::MIN, &write.put, worker, 2)
                .expect("restore");
            total += again.state().entries;
            let probe = exchange::rows_of_worker(
                &stream(&[(Some(1), "a"), (Some(2), "b"), (Some(3), "c")]),
                &again.spec.keys[0],
                worker,
                2,
            )
            .expect("partition");
            if let Some(probe) = probe {
                matched.extend(text(
                    again.on_batch(Some(Side::Left), &probe).expect("stream"),
                ));
            }
        }
        matched.sort();
        assert_eq!(total, 3);
        assert_eq!(matched, vec!["1 a 1 ada", "2 b 2 bob", "3 c 3 cy"]);
    }

    #[test]
    fn stream_rows_and_their_watermark_wait_for_the_end_of_the_table_snapshot() {
        let mut join = LookupJoin::new(spec(JoinKind::Left)).expect("a lookup join");
        // Stream rows before any table row: held, and so is the watermark.
        let out = join
            .on_batch(Some(Side::Left), &stream(&[(Some(1), "a"), (Some(2), "b")]))
            .expect("stream rows");
        assert!(
            out.is_empty(),
            "a stream row before the snapshot's end is held"
        );
        assert!(join.on_watermark(100).expect("watermark").is_empty());
        assert_eq!(
            join.output_watermark(100),
            i64::MIN,
            "the watermark is held"
        );
        assert_eq!(join.watermark(), i64::MIN);
        assert_eq!(join.state().entries, 2, "the held rows count");
        assert!(
            join.snapshot(1).is_err(),
            "no barrier may come while stream rows are held"
        );
        // The snapshot's rows, then more stream rows, then its end: every
        // held row sees the whole snapshot, in the order the rows came.
        join.on_batch(Some(Side::Right), &table(&[(1, "ada", 1), (2, "bob", 1)]))
            .expect("table rows");
        let out = join
            .on_batch(Some(Side::Left), &stream(&[(Some(3), "c"), (Some(2), "d")]))
            .expect("stream rows");
        assert!(out.is_empty());
        let out = join.on_snapshot_end(Side::Right).expect("snapshot end");
        assert_eq!(
            text(out),
            vec!["1 a 1 ada", "2 b 2 bob", "3 c  ", "2 d 2 bob"]
        );
        assert_eq!(
            join.watermark(),
            100,
            "the held watermark goes on after them"
        );
        assert_eq!(join.output_watermark(120), 120);
        // From now on each row is probed as it comes; a second end (another
        // table-side upstream's, already counted) changes nothing.
        assert!(join.on_snapshot_end(Side::Right).expect("again").is_empty());
        let out = join
            .on_batch(Some(Side::Left), &stream(&[(Some(1), "e")]))
            .expect("stream rows");
        assert_eq!(text(out), vec!["1 e 1 ada"]);
        assert!(!join.snapshot(2).expect("snapshot").is_empty());
    }

    #[test]
    fn an_empty_table_ends_its_snapshot_and_a_restored_join_does_not_wait() {
        let mut inner = LookupJoin::new(spec(JoinKind::Inner)).expect("a lookup join");
        let mut left = LookupJoin::new(spec(JoinKind::Left)).expect("a lookup join");
        let rows = stream(&[(Some(1), "a"), (None, "b")]);
        for join in [&mut inner, &mut left] {
            assert!(
                join.on_batch(Some(Side::Left), &rows)
                    .expect("rows")
                    .is_empty()
            );
        }
        assert!(text(inner.on_snapshot_end(Side::Right).expect("end")).is_empty());
        assert_eq!(
            text(left.on_snapshot_end(Side::Right).expect("end")),
            vec!["1 a  ", " b  "]
        );
        // Restored, even from no chunks: the checkpoint's table side is the
        // snapshot, and stream rows are probed at once.
        let mut restored = LookupJoin::new(spec(JoinKind::Left)).expect("a lookup join");
        restored.restore(50, &[], 0, 1).expect("restore");
        assert_eq!(restored.watermark(), 50);
        let out = restored
            .on_batch(Some(Side::Left), &stream(&[(Some(1), "a")]))
            .expect("rows");
        assert_eq!(text(out), vec!["1 a  "]);
    }
}
