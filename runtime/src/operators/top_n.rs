//! TopN: `ROW_NUMBER() OVER (PARTITION BY .. ORDER BY ..) <= N`, the first
//! N rows of each partition in an order, as an updating result. With N = 1
//! it is deduplication: keep-first when ordered by time ascending,
//! keep-last when descending.
//!
//! Per partition key, the rows in order (a `BTreeMap` keyed by the `ORDER
//! BY` values in Arrow's row format, whose bytes compare as the order does,
//! then by the whole row, so ties are broken the same way in every run).
//! After each batch, every partition it touched compares its first N rows
//! with those before: a row that left the top N, or whose row number
//! changed, is retracted; a row that entered, or moved, is inserted with its
//! new number.
//!
//! What it keeps: over an append-only input, only the first N rows of each
//! partition (a row that falls out can never come back, as nothing is ever
//! removed); over an updating input, every row (a retracted top row is
//! replaced by the next one), which grows with the input.
//!
//! Per window (partitioned by a window bound, over a watermark): a
//! partition closes with its window. Its state is dropped when the
//! watermark passes the window's end, and a row of a closed window is late
//! (dropped and counted). With `EMIT ON WINDOW CLOSE` nothing is emitted
//! before: each window's first rows are emitted once, as it closes, before
//! the watermark is forwarded (append-only output).
//!
//! Checkpoint chunks: one, [`ROWS_CHUNK`], of every kept row (the input's
//! columns) and its count, written whole at each barrier where something
//! changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int8Array, Int64Array, RecordBatch, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema};
use datafusion::arrow::row::RowConverter;
use datafusion::common::{HashMap, Result, internal_err};
use datafusion::physical_plan::PhysicalExpr;

use prometheus_client::metrics::counter::Counter;

use crate::checkpoint::StateWrite;
use crate::operators::changes::changelog_schema;
use crate::operators::{Side, StateSummary, StreamBatch, StreamOperator, exchange};
use crate::plan::TopNSpec;
use crate::windows::timestamps_as_nanos;

/// The id of the one checkpoint chunk: every kept row with its count.
pub const ROWS_CHUNK: &str = "top_n";

/// The count column of the checkpoint chunk.
const COUNT_COLUMN: &str = "__weir_count";

/// A row of a partition: its `ORDER BY` values, then the whole row, both in
/// the row format.
type Entry = (Box<[u8]>, Box<[u8]>);

/// A row of a batch: its partition key, its entry, and its window's close
/// time (per window only; `None` too when the window bound is NULL).
type Keyed = (Box<[u8]>, Entry, Option<i64>);

/// A row of a partition as a batch changes it: its entry, its op (1 add,
/// -1 remove) and its window's close time.
type Change = (Entry, i8, Option<i64>);

/// One worker's TopN.
pub struct TopN {
    spec: Arc<TopNSpec>,
    /// Row format of the partition keys.
    partitions_format: RowConverter,
    /// Row format of the `ORDER BY` values, ordered as the query orders.
    order_format: RowConverter,
    /// Row format of the input's rows.
    rows_format: RowConverter,
    /// Per partition key, its rows in order, with how many times each is there.
    partitions: HashMap<Box<[u8]>, BTreeMap<Entry, u64>>,
    /// Per window: close time -> the partitions of windows closing then.
    by_close: BTreeMap<i64, Vec<Box<[u8]>>>,
    watermark: i64,
    /// Rows of windows already closed, dropped.
    late: Counter,
    /// Something changed since the last snapshot.
    changed: bool,
}

impl TopN {
    /// A new, empty TopN; `late` counts the rows it drops as late (per
    /// window only).
    pub fn new(spec: Arc<TopNSpec>, late: Counter) -> Result<Self> {
        if spec.limit == 0 {
            return internal_err!("a TopN planned with a limit of 0");
        }
        let schema = &spec.input_schema;
        let [partitions_format, order_format, rows_format] =
            super::keyed_row_formats(&spec.partition, &spec.order, schema)?;
        Ok(Self {
            partitions_format,
            order_format,
            rows_format,
            spec,
            partitions: HashMap::default(),
            by_close: BTreeMap::new(),
            watermark: i64::MIN,
            late,
            changed: false,
        })
    }

    /// Each row's partition key, `ORDER BY` values and whole row, in the
    /// row format, and its window's close time, of `batch` (whose first
    /// columns are the input's).
    fn entries(&self, batch: &RecordBatch) -> Result<Vec<Keyed>> {
        let n = batch.num_rows();
        let evaluate = |exprs: Vec<&Arc<dyn PhysicalExpr>>| {
            exprs
                .into_iter()
                .map(|e| e.evaluate(batch)?.into_array(n))
                .collect::<Result<Vec<ArrayRef>>>()
        };
        let partition = evaluate(self.spec.partition.iter().collect())?;
        let order = evaluate(self.spec.order.iter().map(|(e, _)| e).collect())?;
        let width = self.spec.input_schema.fields().len();
        let rows = self
            .rows_format
            .convert_columns(&batch.columns()[..width])?;
        let orders = self.order_format.convert_columns(&order)?;
        // The row format cannot express no columns: one partition then.
        let partitions = (!partition.is_empty())
            .then(|| self.partitions_format.convert_columns(&partition))
            .transpose()?;
        let closes = match &self.spec.window {
            Some(window) => match partition.get(window.key) {
                Some(bound) => Some((timestamps_as_nanos(bound)?, window.plus)),
                None => return internal_err!("TopN: a window key past its partition keys"),
            },
            None => None,
        };
        Ok((0..n)
            .map(|i| {
                let key: Box<[u8]> = match &partitions {
                    Some(p) => p.row(i).as_ref().into(),
                    None => Box::default(),
                };
                let close = closes
                    .as_ref()
                    .filter(|(bound, _)| bound.is_valid(i))
                    .map(|(bound, plus)| bound.value(i) + plus);
                (
                    key,
                    (orders.row(i).as_ref().into(), rows.row(i).as_ref().into()),
                    close,
                )
            })
            .collect())
    }

    /// Emit on window close?
    fn on_close(&self) -> bool {
        self.spec.window.is_some_and(|w| w.emit_on_close)
    }

    /// A partition's rows: new ones are registered with their window.
    fn partition(&mut self, key: &[u8], close: Option<i64>) -> &mut BTreeMap<Entry, u64> {
        if !self.partitions.contains_key(key) {
            if let Some(close) = close {
                self.by_close.entry(close).or_default().push(key.into());
            }
            self.partitions.insert(key.into(), BTreeMap::new());
        }
        self.partitions.entry(key.into()).or_default()
    }

    /// The first `limit` rows of a partition, in order, a row counted `n`
    /// times standing `n` times.
    fn top(&self, rows: Option<&BTreeMap<Entry, u64>>) -> Vec<Entry> {
        let mut top = Vec::with_capacity(self.spec.limit);
        for (entry, count) in rows.into_iter().flatten() {
            for _ in 0..*count {
                if top.len() == self.spec.limit {
                    return top;
                }
                top.push(entry.clone());
            }
        }
        top
    }

    /// Add (`op` > 0) or remove one row of a partition.
    fn apply(&mut self, key: &[u8], entry: Entry, op: i8, close: Option<i64>) -> Result<()> {
        let limit = self.spec.limit;
        let append_only = !self.spec.input_changelog;
        let rows = self.partition(key, close);
        if op > 0 {
            *rows.entry(entry).or_insert(0) += 1;
            if append_only {
                // Append-only: what falls below the first `limit` rows can
                // never come back.
                trim(rows, limit);
            }
            return Ok(());
        }
        match rows.get_mut(&entry) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                rows.remove(&entry);
            }
            None => return internal_err!("TopN: a row was retracted that it does not hold"),
        }
        // An emptied partition stays until its window closes (its key is
        // listed there); without windows it goes now.
        if rows.is_empty() && close.is_none() {
            self.partitions.remove(key);
        }
        Ok(())
    }

    /// The rows `changes` names (with their row numbers), as they are in
    /// the output: inserts only, or changes with their ops.
    fn rows_batch(&self, changes: &[(Box<[u8]>, u64, i8)]) -> Result<Vec<ArrayRef>> {
        let parser = self.rows_format.parser();
        let mut rows = self.rows_format.empty_rows(changes.len(), 0);
        for (row, _, _) in changes {
            rows.push(parser.parse(row));
        }
        let mut columns = self.rows_format.convert_rows(&rows)?;
        columns.push(Arc::new(UInt64Array::from_iter_values(
            changes.iter().map(|(_, n, _)| *n),
        )));
        Ok(columns)
    }

    /// The output rows (with their row numbers and ops) as a changelog batch.
    fn output(&self, changes: Vec<(Box<[u8]>, u64, i8)>) -> Result<Vec<StreamBatch>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut columns =
            crate::operators::conform(&self.spec.output_schema, self.rows_batch(&changes)?)?;
        columns.push(Arc::new(Int8Array::from_iter_values(
            changes.iter().map(|(_, _, op)| *op),
        )));
        Ok(vec![StreamBatch::Changes(RecordBatch::try_new(
            changelog_schema(&self.spec.output_schema),
            columns,
        )?)])
    }
}

/// Keep only the first `limit` rows (counting repeats) of `rows`.
fn trim(rows: &mut BTreeMap<Entry, u64>, limit: usize) {
    let mut seen = 0u64;
    let mut cut = None;
    for (entry, count) in rows.iter_mut() {
        if seen >= limit as u64 {
            cut = Some(entry.clone());
            break;
        }
        let keep = (*count).min(limit as u64 - seen);
        *count = keep;
        seen += keep;
    }
    if let Some(from) = cut {
        rows.split_off(&from);
    }
}

/// What changed between a partition's first rows before and after: rows
/// whose number changed are retracted with the old one and inserted with
/// the new one (a row's number is part of the view's row).
fn diff(before: &[Entry], after: &[Entry], out: &mut Vec<(Box<[u8]>, u64, i8)>) {
    for i in 0..before.len().max(after.len()) {
        let (old, new) = (before.get(i), after.get(i));
        if old == new {
            continue;
        }
        if let Some((_, row)) = old {
            out.push((row.clone(), i as u64 + 1, -1));
        }
        if let Some((_, row)) = new {
            out.push((row.clone(), i as u64 + 1, 1));
        }
    }
}

impl StreamOperator for TopN {
    fn state(&self) -> StateSummary {
        StateSummary {
            operator: "top n",
            entries: self.partitions.values().map(BTreeMap::len).sum(),
        }
    }

    fn on_batch(&mut self, _side: Option<Side>, batch: &RecordBatch) -> Result<Vec<StreamBatch>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let ops: Option<Vec<i8>> = if self.spec.input_changelog {
            let Some(ops) = batch
                .columns()
                .last()
                .and_then(|c| c.as_primitive_opt::<Int8Type>())
            else {
                return internal_err!("TopN: an updating input's batch without its op column");
            };
            Some(ops.values().to_vec())
        } else {
            None
        };
        // Rows per partition, in first-seen order.
        let mut order: Vec<Box<[u8]>> = Vec::new();
        let mut members: HashMap<Box<[u8]>, Vec<Change>> = HashMap::default();
        let mut late = 0u64;
        for (i, (key, entry, close)) in self.entries(batch)?.into_iter().enumerate() {
            if self.spec.window.is_some() {
                match close {
                    // A row of a window already closed.
                    Some(close) if close <= self.watermark => {
                        late += 1;
                        continue;
                    }
                    Some(_) => {}
                    // No window: it belongs to none.
                    None => continue,
                }
            }
            let op = ops.as_ref().map_or(1, |o| o[i]);
            match members.get_mut(&key) {
                Some(list) => list.push((entry, op, close)),
                None => {
                    order.push(key.clone());
                    members.insert(key, vec![(entry, op, close)]);
                }
            }
        }
        self.late.inc_by(late);
        let on_close = self.on_close();
        let mut changes = Vec::new();
        for key in order {
            let before = self.top(self.partitions.get(&key));
            for (entry, op, close) in members.remove(&key).unwrap_or_default() {
                self.apply(&key, entry, op, close)?;
            }
            if !on_close {
                let after = self.top(self.partitions.get(&key));
                diff(&before, &after, &mut changes);
            }
        }
        self.changed = true;
        self.output(changes)
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<StreamBatch>> {
        if watermark <= self.watermark {
            return Ok(Vec::new());
        }
        self.watermark = watermark;
        // Windows the watermark passed close: their partitions go, and with
        // EMIT ON WINDOW CLOSE their first rows are emitted now.
        let open = self.by_close.split_off(&watermark.saturating_add(1));
        let closed = std::mem::replace(&mut self.by_close, open);
        let mut rows = Vec::new();
        for key in closed.into_values().flatten() {
            let top = self.top(self.partitions.get(&key));
            if self.on_close() {
                rows.extend(
                    top.into_iter()
                        .enumerate()
                        .map(|(i, (_, row))| (row, i as u64 + 1, 1i8)),
                );
            }
            self.partitions.remove(&key);
            self.changed = true;
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let columns = self.rows_batch(&rows)?;
        let columns = crate::operators::conform(&self.spec.output_schema, columns)?;
        Ok(vec![StreamBatch::Rows(RecordBatch::try_new(
            self.spec.output_schema.clone(),
            columns,
        )?)])
    }

    fn watermark(&self) -> i64 {
        self.watermark
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<StateWrite> {
        if !self.changed {
            return Ok(StateWrite::default());
        }
        self.changed = false;
        let total: usize = self.partitions.values().map(BTreeMap::len).sum();
        let mut write = StateWrite {
            reset: true,
            ..Default::default()
        };
        if total == 0 {
            return Ok(write);
        }
        let parser = self.rows_format.parser();
        let mut rows = self.rows_format.empty_rows(total, 0);
        let mut counts = Vec::with_capacity(total);
        for partition in self.partitions.values() {
            for ((_, row), count) in partition {
                rows.push(parser.parse(row));
                counts.push(i64::try_from(*count).unwrap_or(i64::MAX));
            }
        }
        let mut columns = self.rows_format.convert_rows(&rows)?;
        columns.push(Arc::new(Int64Array::from(counts)));
        let mut fields: Vec<Arc<Field>> = self
            .spec
            .input_schema
            .fields()
            .iter()
            .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
            .collect();
        fields.push(Arc::new(Field::new(COUNT_COLUMN, DataType::Int64, false)));
        write.put.push((
            ROWS_CHUNK.to_string(),
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?,
        ));
        Ok(write)
    }

    fn restore(
        &mut self,
        watermark: i64,
        chunks: &[(String, RecordBatch)],
        worker: usize,
        workers: usize,
    ) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let width = self.spec.input_schema.fields().len();
        for (id, chunk) in chunks {
            if id != ROWS_CHUNK || chunk.num_columns() != width + 1 {
                return internal_err!(
                    "TopN: a checkpoint chunk {id} of {} columns, not {ROWS_CHUNK} of {}",
                    chunk.num_columns(),
                    width + 1
                );
            }
            // The rows whose partition key the exchange sends this worker.
            let Some(mine) =
                exchange::rows_of_worker(chunk, &self.spec.partition, worker, workers)?
            else {
                continue;
            };
            let counts = mine.column(width).as_primitive::<Int64Type>();
            for (i, (key, entry, close)) in self.entries(&mine)?.into_iter().enumerate() {
                let count = u64::try_from(counts.value(i)).unwrap_or(0);
                if count > 0 {
                    *self.partition(&key, close).entry(entry).or_insert(0) += count;
                }
            }
        }
        self.changed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::compute::SortOptions;
    use datafusion::arrow::datatypes::SchemaRef;
    use datafusion::physical_expr::expressions::Column;

    use super::*;

    fn input() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]))
    }

    fn spec(limit: usize, input_changelog: bool) -> Arc<TopNSpec> {
        let mut fields: Vec<Arc<Field>> = input().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new("rn", DataType::UInt64, false)));
        Arc::new(TopNSpec {
            partition: vec![Arc::new(Column::new("k", 0))],
            order: vec![(
                Arc::new(Column::new("v", 1)),
                SortOptions {
                    descending: true,
                    nulls_first: true,
                },
            )],
            limit,
            input_schema: input(),
            input_changelog,
            output_schema: Arc::new(Schema::new(fields)),
            window: None,
        })
    }

    fn rows(k: &[i64], v: &[i64], ops: Option<&[i8]>) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(k.to_vec())),
            Arc::new(Int64Array::from(v.to_vec())),
        ];
        let schema = match ops {
            Some(ops) => {
                columns.push(Arc::new(Int8Array::from(ops.to_vec())));
                changelog_schema(&input())
            }
            None => input(),
        };
        RecordBatch::try_new(schema, columns).expect("a batch")
    }

    /// The output as (k, v, row number, op), in order.
    fn changes(out: Vec<StreamBatch>) -> Vec<(i64, i64, u64, i8)> {
        out.iter()
            .flat_map(|b| {
                let b = b.batch();
                let (k, v) = (
                    b.column(0).as_primitive::<Int64Type>(),
                    b.column(1).as_primitive::<Int64Type>(),
                );
                let rn = b
                    .column(2)
                    .as_primitive::<datafusion::arrow::datatypes::UInt64Type>();
                let op = b.column(3).as_primitive::<Int8Type>();
                (0..b.num_rows())
                    .map(|i| (k.value(i), v.value(i), rn.value(i), op.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_row_that_enters_pushes_the_last_one_out_and_renumbers_those_below() {
        let mut top = TopN::new(spec(2, false), Counter::default()).expect("top n");
        let first = top
            .on_batch(None, &rows(&[1, 1, 2], &[10, 30, 5], None))
            .expect("batch");
        assert_eq!(
            changes(first),
            vec![(1, 30, 1, 1), (1, 10, 2, 1), (2, 5, 1, 1)]
        );
        let second = top
            .on_batch(None, &rows(&[1, 1], &[20, 1], None))
            .expect("batch");
        assert_eq!(changes(second), vec![(1, 10, 2, -1), (1, 20, 2, 1)]);
        // Append-only: only the first two rows of a partition are kept.
        assert_eq!(top.state().entries, 3);
    }

    #[test]
    fn a_retracted_top_row_is_replaced_by_the_next() {
        let mut top = TopN::new(spec(1, true), Counter::default()).expect("top n");
        top.on_batch(None, &rows(&[1, 1, 1], &[10, 30, 20], Some(&[1, 1, 1])))
            .expect("batch");
        let out = top
            .on_batch(None, &rows(&[1], &[30], Some(&[-1])))
            .expect("retraction");
        assert_eq!(changes(out), vec![(1, 30, 1, -1), (1, 20, 1, 1)]);
        assert!(top.on_batch(None, &rows(&[1], &[99], Some(&[-1]))).is_err());
    }

    #[test]
    fn state_survives_a_checkpoint_split_over_new_workers() {
        let mut top = TopN::new(spec(2, false), Counter::default()).expect("top n");
        top.on_batch(None, &rows(&[1, 1, 1, 2, 3], &[1, 2, 3, 4, 5], None))
            .expect("batch");
        let write = top.snapshot(1).expect("snapshot");
        assert!(write.reset);
        let chunks: Vec<(String, RecordBatch)> = write.put;
        let mut restored: Vec<TopN> = (0..2)
            .map(|w| {
                let mut t = TopN::new(spec(2, false), Counter::default()).expect("top n");
                t.restore(7, &chunks, w, 2).expect("restore");
                t
            })
            .collect();
        let entries: usize = restored.iter().map(|t| t.state().entries).sum();
        assert_eq!(entries, top.state().entries);
        assert!(restored.iter().all(|t| t.watermark() == 7));
        // Nothing changed, nothing written; the restored state goes on.
        let owner = restored
            .iter()
            .position(|t| t.partitions.values().any(|rows| rows.len() == 2))
            .expect("the worker of key 1, the only one with two rows");
        let out = restored[owner]
            .on_batch(None, &rows(&[1], &[9], None))
            .expect("batch");
        assert_eq!(
            changes(out),
            vec![(1, 3, 1, -1), (1, 9, 1, 1), (1, 2, 2, -1), (1, 3, 2, 1)]
        );
    }

    /// Partitioned by a window end (column `k` as nanoseconds), per window.
    fn per_window(emit_on_close: bool) -> Arc<TopNSpec> {
        let base = spec(1, false);
        let input = Arc::new(Schema::new(vec![
            Field::new(
                "k",
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None),
                false,
            ),
            Field::new("v", DataType::Int64, false),
        ]));
        let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new("rn", DataType::UInt64, false)));
        Arc::new(TopNSpec {
            partition: base.partition.clone(),
            order: base.order.clone(),
            limit: 1,
            input_schema: input,
            input_changelog: false,
            output_schema: Arc::new(Schema::new(fields)),
            window: Some(crate::plan::TopNWindow {
                key: 0,
                plus: 0,
                emit_on_close,
            }),
        })
    }

    fn windowed(ends: &[i64], v: &[i64], spec: &TopNSpec) -> RecordBatch {
        RecordBatch::try_new(
            spec.input_schema.clone(),
            vec![
                Arc::new(datafusion::arrow::array::TimestampNanosecondArray::from(
                    ends.to_vec(),
                )),
                Arc::new(Int64Array::from(v.to_vec())),
            ],
        )
        .expect("a batch")
    }

    #[test]
    fn per_window_on_close_the_first_rows_come_once_the_window_closes() {
        let spec = per_window(true);
        let late = Counter::default();
        let mut top = TopN::new(spec.clone(), late.clone()).expect("top n");
        let out = top
            .on_batch(None, &windowed(&[10, 10, 20], &[1, 5, 3], &spec))
            .expect("batch");
        assert!(out.is_empty(), "nothing before the window closes");
        let closed = top.on_watermark(10).expect("watermark");
        let [StreamBatch::Rows(rows)] = closed.as_slice() else {
            panic!("one append-only batch, not {closed:?}");
        };
        assert_eq!(rows.num_rows(), 1);
        assert_eq!(rows.column(1).as_primitive::<Int64Type>().value(0), 5);
        // The closed window's state is gone; its rows are late now.
        assert_eq!(top.state().entries, 1);
        top.on_batch(None, &windowed(&[10], &[99], &spec))
            .expect("a late row");
        assert_eq!(late.get(), 1);
        assert_eq!(top.state().entries, 1);
    }

    #[test]
    fn per_window_updating_drops_a_window_when_it_closes() {
        let spec = per_window(false);
        let mut top = TopN::new(spec.clone(), Counter::default()).expect("top n");
        let out = top
            .on_batch(None, &windowed(&[10, 20], &[1, 3], &spec))
            .expect("batch");
        assert_eq!(out.len(), 1, "updates at once");
        assert!(top.on_watermark(15).expect("watermark").is_empty());
        assert_eq!(top.state().entries, 1);
    }
}
