//! OVER windows over event time: `agg(..) OVER (PARTITION BY k ORDER BY ts
//! ROWS BETWEEN n PRECEDING AND CURRENT ROW)` (or `RANGE BETWEEN INTERVAL ..
//! PRECEDING AND CURRENT ROW`, or from `UNBOUNDED PRECEDING`), as Flink's
//! event-time OVER aggregation: every input row comes out once, with the
//! value of each function over its frame.
//!
//! A row's frame holds only rows at or before it in event time, so a row
//! can be computed once no row before it can still arrive: once the
//! watermark passes its time. Rows wait per partition until then, ordered
//! by the `ORDER BY` values (event time first) and then by the whole row,
//! so ties are broken alike in every run; on a watermark each partition
//! releases its rows older than it, in that order, through its
//! accumulators (DataFusion's, the same that compute the batch answer).
//! A row older than the watermark on arrival is late: dropped and counted.
//!
//! What it keeps per partition: the rows not yet released, and the frame's
//! rows that a later row's frame may still hold (the last `n` for `ROWS n
//! PRECEDING`; those within the range of the watermark for `RANGE`;
//! none from `UNBOUNDED PRECEDING`, whose accumulators hold everything).
//! Accumulators over a bounded frame retract what leaves it (DataFusion's
//! sliding accumulators).
//!
//! Output: append-only, the input's columns then one per function, with
//! the input's watermark (every row released later is at or after it).
//!
//! Checkpoint chunks, written whole at each barrier where something
//! changed: [`ROWS_CHUNK`], every waiting and frame row (the input's
//! columns, a count and which of the two); [`PARTITIONS_CHUNK`], per
//! partition whose state is more than its rows (a row number, or
//! accumulators over an unbounded frame), its last row, its rows released
//! and its accumulators' state. A bounded frame's accumulators are
//! rebuilt from its rows.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int8Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::{SortOptions, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema, SchemaRef};
use datafusion::arrow::row::RowConverter;
use datafusion::common::{HashMap, Result, ScalarValue, internal_err};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::PhysicalExpr;

use prometheus_client::metrics::counter::Counter;

use crate::checkpoint::StateWrite;
use crate::operators::{Side, StateSummary, StreamBatch, StreamOperator, exchange};
use crate::windows::timestamps_as_nanos;

/// The id of the chunk of rows: waiting ones and frames'.
pub const ROWS_CHUNK: &str = "over_rows";

/// The id of the chunk of per-partition state beyond rows.
pub const PARTITIONS_CHUNK: &str = "over_partitions";

/// The count column of [`ROWS_CHUNK`].
const COUNT_COLUMN: &str = "__weir_count";
/// Which rows of [`ROWS_CHUNK`] wait (1) and which are a frame's (0).
const WAITING_COLUMN: &str = "__weir_waiting";
/// The rows released so far, in [`PARTITIONS_CHUNK`].
const RELEASED_COLUMN: &str = "__weir_released";

/// An OVER window's frame: from where to the current row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverFrame {
    /// `ROWS BETWEEN n PRECEDING AND CURRENT ROW`.
    Rows(usize),
    /// `RANGE BETWEEN d PRECEDING AND CURRENT ROW`, `d` in nanoseconds of
    /// event time; the current row's peers (same time) are in its frame.
    Range(i64),
    /// `ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW`.
    UnboundedRows,
    /// `RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW` (the frame when
    /// only `ORDER BY` is given): the current row's peers are in it.
    UnboundedRange,
}

impl OverFrame {
    /// Are the current row's peers (rows of the same time) in its frame?
    fn peers(self) -> bool {
        matches!(self, OverFrame::Range(_) | OverFrame::UnboundedRange)
    }

    /// Does the frame start from the partition's first row?
    fn unbounded(self) -> bool {
        matches!(self, OverFrame::UnboundedRows | OverFrame::UnboundedRange)
    }
}

/// One function computed over each row's frame.
#[derive(Debug)]
pub enum OverFunction {
    /// An aggregate (count, sum, avg, min, max, ...) over the frame.
    Aggregate(Arc<AggregateFunctionExpr>),
    /// `ROW_NUMBER()`: the row's place in its partition, from 1.
    RowNumber,
}

/// `functions OVER (PARTITION BY partition ORDER BY order frame)` over an
/// append-only input with a watermark.
#[derive(Debug)]
pub struct OverWindowSpec {
    /// The `PARTITION BY` keys over the input (none: one partition).
    pub partition: Vec<Arc<dyn PhysicalExpr>>,
    /// The `ORDER BY` over the input, the event-time column first
    /// (ascending); the rest break ties.
    pub order: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    /// The event-time column in the input's rows (a TIMESTAMP): the one
    /// its watermark is over.
    pub time: usize,
    /// Every function's frame.
    pub frame: OverFrame,
    /// The functions, one output column each.
    pub functions: Vec<OverFunction>,
    /// The input's rows.
    pub input_schema: SchemaRef,
    /// The input's columns, then one per function.
    pub output_schema: SchemaRef,
}

impl OverWindowSpec {
    /// Does a partition keep state beyond its rows (a row number, or
    /// accumulators over an unbounded frame)? Else a partition with no
    /// rows left is forgotten.
    fn partition_state(&self) -> bool {
        self.frame.unbounded()
            || self
                .functions
                .iter()
                .any(|f| matches!(f, OverFunction::RowNumber))
    }
}

/// A waiting row: its event time, `ORDER BY` values and whole row (the
/// last two in the row format), in the order rows are released.
type Waiting = (i64, Box<[u8]>, Box<[u8]>);

/// A row of a batch: its partition key and its waiting entry.
type Keyed = (Box<[u8]>, Waiting);

/// One partition's state.
#[derive(Default)]
struct Partition {
    /// Rows the watermark has not passed yet, with how many times each is
    /// there.
    waiting: BTreeMap<Waiting, u64>,
    /// The frame's rows the accumulators hold (bounded frames), oldest
    /// first: event time and row.
    frame: VecDeque<(i64, Box<[u8]>)>,
    /// One accumulator per function (`None` for a row number), made at
    /// the first release.
    accumulators: Vec<Option<Box<dyn Accumulator>>>,
    /// Rows released so far.
    released: u64,
    /// The last row released (names the partition in a checkpoint).
    last: Option<Box<[u8]>>,
}

/// One worker's OVER window.
pub struct OverWindow {
    spec: Arc<OverWindowSpec>,
    /// Row format of the partition keys.
    partitions_format: RowConverter,
    /// Row format of the `ORDER BY` values, ordered as the query orders.
    order_format: RowConverter,
    /// Row format of the input's rows.
    rows_format: RowConverter,
    partitions: HashMap<Box<[u8]>, Partition>,
    watermark: i64,
    /// Rows older than the watermark on arrival, dropped.
    late: Counter,
    /// Something changed since the last snapshot.
    changed: bool,
}

impl OverWindow {
    /// A new, empty OVER window; `late` counts the rows it drops as late.
    pub fn new(spec: Arc<OverWindowSpec>, late: Counter) -> Result<Self> {
        let schema = &spec.input_schema;
        if spec.time >= schema.fields().len() || spec.order.is_empty() {
            return internal_err!("an OVER window planned without its event-time column");
        }
        let [partitions_format, order_format, rows_format] =
            super::keyed_row_formats(&spec.partition, &spec.order, schema)?;
        Ok(Self {
            partitions_format,
            order_format,
            rows_format,
            spec,
            partitions: HashMap::default(),
            watermark: i64::MIN,
            late,
            changed: false,
        })
    }

    /// Each row of `batch` (whose first columns are the input's) as its
    /// partition key and waiting entry; `None` for a row without an event
    /// time.
    fn entries(&self, batch: &RecordBatch) -> Result<Vec<Option<Keyed>>> {
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
        let times = timestamps_as_nanos(batch.column(self.spec.time))?;
        Ok((0..n)
            .map(|i| {
                times.is_valid(i).then(|| {
                    let key: Box<[u8]> = match &partitions {
                        Some(p) => p.row(i).as_ref().into(),
                        None => Box::default(),
                    };
                    (
                        key,
                        (
                            times.value(i),
                            orders.row(i).as_ref().into(),
                            rows.row(i).as_ref().into(),
                        ),
                    )
                })
            })
            .collect())
    }

    /// Rows in the row format, as a batch of the input's columns.
    fn rows_batch<'a>(&self, rows: impl Iterator<Item = &'a [u8]>) -> Result<RecordBatch> {
        let parser = self.rows_format.parser();
        let mut parsed = self.rows_format.empty_rows(0, 0);
        for row in rows {
            parsed.push(parser.parse(row));
        }
        let columns = self.rows_format.convert_rows(&parsed)?;
        let columns = crate::operators::conform(&self.spec.input_schema, columns)?;
        Ok(RecordBatch::try_new_with_options(
            self.spec.input_schema.clone(),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(parsed.num_rows())),
        )?)
    }

    /// New accumulators for a partition (`None` for a row number).
    fn accumulators(&self) -> Result<Vec<Option<Box<dyn Accumulator>>>> {
        self.spec
            .functions
            .iter()
            .map(|f| match f {
                OverFunction::RowNumber => Ok(None),
                OverFunction::Aggregate(a) if self.spec.frame.unbounded() => {
                    a.create_accumulator().map(Some)
                }
                OverFunction::Aggregate(a) => a.create_sliding_accumulator().map(Some),
            })
            .collect()
    }

    /// Each aggregate's arguments over `batch` (empty for a row number).
    fn arguments(&self, batch: &RecordBatch) -> Result<Vec<Vec<ArrayRef>>> {
        self.spec
            .functions
            .iter()
            .map(|f| match f {
                OverFunction::RowNumber => Ok(Vec::new()),
                OverFunction::Aggregate(a) => a
                    .expressions()
                    .iter()
                    .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
                    .collect(),
            })
            .collect()
    }

    /// Release the rows of partition `key` older than `upto`, computing
    /// their functions; returns them as output rows. Then drop the frame's
    /// rows no later row can hold.
    fn release(&mut self, key: &[u8], upto: i64) -> Result<Option<RecordBatch>> {
        let frame_kind = self.spec.frame;
        let Some(mut part) = self.partitions.remove(key) else {
            return Ok(None);
        };
        let later = part
            .waiting
            .split_off(&(upto, Box::default(), Box::default()));
        let ready = std::mem::replace(&mut part.waiting, later);
        let mut out = None;
        if !ready.is_empty() {
            if part.accumulators.is_empty() {
                part.accumulators = self.accumulators()?;
            }
            // The frame's rows, then the released ones, in order.
            let mut times: Vec<i64> = part.frame.iter().map(|(t, _)| *t).collect();
            let mut rows: Vec<Box<[u8]>> = part.frame.iter().map(|(_, r)| r.clone()).collect();
            let held = rows.len();
            for ((time, _, row), count) in ready {
                for _ in 0..count {
                    times.push(time);
                    rows.push(row.clone());
                }
            }
            let batch = self.rows_batch(rows.iter().map(|r| r.as_ref()))?;
            let arguments = self.arguments(&batch)?;
            let released = rows.len() - held;
            let mut values: Vec<Vec<ScalarValue>> = self
                .spec
                .functions
                .iter()
                .map(|_| Vec::with_capacity(released))
                .collect();
            // The accumulators hold rows `start..` of the batch.
            let mut start = 0;
            let mut at = held;
            while at < rows.len() {
                // The rows computed together: the row, and with peers in the
                // frame, every row of its time.
                let mut end = at + 1;
                if frame_kind.peers() {
                    while end < rows.len() && times[end] == times[at] {
                        end += 1;
                    }
                }
                let first = match frame_kind {
                    OverFrame::Rows(n) => (end - 1).saturating_sub(n),
                    OverFrame::Range(d) => {
                        let from = times[at].saturating_sub(d);
                        start + times[start..at].partition_point(|t| *t < from)
                    }
                    OverFrame::UnboundedRows | OverFrame::UnboundedRange => start,
                };
                let first = first.max(start);
                for (i, acc) in part.accumulators.iter_mut().enumerate() {
                    let Some(acc) = acc else {
                        let base = part.released + (at - held) as u64;
                        values[i].extend(
                            (0..end - at).map(|j| ScalarValue::UInt64(Some(base + j as u64 + 1))),
                        );
                        continue;
                    };
                    let args = &arguments[i];
                    acc.update_batch(&slices(args, at, end - at))?;
                    if first > start {
                        acc.retract_batch(&slices(args, start, first - start))?;
                    }
                    let value = acc.evaluate()?;
                    values[i].extend(std::iter::repeat_n(value, end - at));
                }
                start = first;
                at = end;
            }
            // What the next rows' frames may still hold.
            let keep_from = match frame_kind {
                OverFrame::Rows(n) => rows.len().saturating_sub(n).max(start),
                OverFrame::Range(_) => start,
                OverFrame::UnboundedRows | OverFrame::UnboundedRange => rows.len(),
            };
            if keep_from > start {
                for (i, acc) in part.accumulators.iter_mut().enumerate() {
                    if let Some(acc) = acc
                        && !frame_kind.unbounded()
                    {
                        acc.retract_batch(&slices(&arguments[i], start, keep_from - start))?;
                    }
                }
            }
            part.frame = times[keep_from..]
                .iter()
                .copied()
                .zip(rows[keep_from..].iter().cloned())
                .collect();
            part.released += released as u64;
            part.last = rows.last().cloned();
            let mut columns = batch.slice(held, released).columns().to_vec();
            for function_values in values {
                columns.push(ScalarValue::iter_to_array(function_values)?);
            }
            let columns = crate::operators::conform(&self.spec.output_schema, columns)?;
            out = Some(RecordBatch::try_new(
                self.spec.output_schema.clone(),
                columns,
            )?);
        }
        // A range's rows older than the watermark less its reach are in no
        // later row's frame: every later row is at or after the watermark.
        if let OverFrame::Range(d) = frame_kind {
            let from = upto.saturating_sub(d);
            let gone = part.frame.iter().take_while(|(t, _)| *t < from).count();
            if gone > 0 {
                let old: Vec<Box<[u8]>> = part.frame.drain(..gone).map(|(_, r)| r).collect();
                let batch = self.rows_batch(old.iter().map(|r| r.as_ref()))?;
                let arguments = self.arguments(&batch)?;
                for (i, acc) in part.accumulators.iter_mut().enumerate() {
                    if let Some(acc) = acc {
                        acc.retract_batch(&arguments[i])?;
                    }
                }
            }
        }
        let empty = part.waiting.is_empty() && part.frame.is_empty();
        if !(empty && (part.released == 0 || !self.spec.partition_state())) {
            self.partitions.insert(key.into(), part);
        }
        Ok(out)
    }

    /// Rebuild the accumulators of a restored bounded frame from its rows.
    fn refill(&self, part: &mut Partition) -> Result<()> {
        if part.frame.is_empty() || self.spec.frame.unbounded() {
            return Ok(());
        }
        if part.accumulators.is_empty() {
            part.accumulators = self.accumulators()?;
        }
        let batch = self.rows_batch(part.frame.iter().map(|(_, r)| r.as_ref()))?;
        let arguments = self.arguments(&batch)?;
        for (i, acc) in part.accumulators.iter_mut().enumerate() {
            if let Some(acc) = acc {
                acc.update_batch(&arguments[i])?;
            }
        }
        Ok(())
    }

    /// The [`ROWS_CHUNK`] of every waiting and frame row.
    fn rows_chunk(&self) -> Result<Option<RecordBatch>> {
        let mut rows: Vec<&[u8]> = Vec::new();
        let mut counts = Vec::new();
        let mut waiting = Vec::new();
        for part in self.partitions.values() {
            for (_, row) in &part.frame {
                rows.push(row);
                counts.push(1i64);
                waiting.push(0i8);
            }
            for ((_, _, row), count) in &part.waiting {
                rows.push(row);
                counts.push(i64::try_from(*count).unwrap_or(i64::MAX));
                waiting.push(1i8);
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let batch = self.rows_batch(rows.into_iter())?;
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(counts)));
        columns.push(Arc::new(Int8Array::from(waiting)));
        let mut fields = nullable_fields(&self.spec.input_schema);
        fields.push(Arc::new(Field::new(COUNT_COLUMN, DataType::Int64, false)));
        fields.push(Arc::new(Field::new(WAITING_COLUMN, DataType::Int8, false)));
        Ok(Some(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?))
    }

    /// The [`PARTITIONS_CHUNK`]: per partition with state beyond its rows,
    /// its last row, rows released and (unbounded frames) accumulators'
    /// state.
    fn partitions_chunk(&mut self) -> Result<Option<RecordBatch>> {
        if !self.spec.partition_state() {
            return Ok(None);
        }
        let unbounded = self.spec.frame.unbounded();
        let mut last: Vec<Box<[u8]>> = Vec::new();
        let mut released = Vec::new();
        let mut states: Vec<Vec<Vec<ScalarValue>>> = Vec::new();
        for part in self.partitions.values_mut() {
            let Some(row) = &part.last else { continue };
            last.push(row.clone());
            released.push(i64::try_from(part.released).unwrap_or(i64::MAX));
            if unbounded {
                let mut of_part = Vec::new();
                for acc in part.accumulators.iter_mut().flatten() {
                    of_part.push(acc.state()?);
                }
                states.push(of_part);
            }
        }
        if last.is_empty() {
            return Ok(None);
        }
        let batch = self.rows_batch(last.iter().map(|r| r.as_ref()))?;
        let mut columns = batch.columns().to_vec();
        let mut fields = nullable_fields(&self.spec.input_schema);
        columns.push(Arc::new(Int64Array::from(released)));
        fields.push(Arc::new(Field::new(
            RELEASED_COLUMN,
            DataType::Int64,
            false,
        )));
        if unbounded {
            let mut function = 0;
            for f in &self.spec.functions {
                let OverFunction::Aggregate(a) = f else {
                    continue;
                };
                for (s, field) in a.state_fields()?.iter().enumerate() {
                    let values = states.iter().map(|p| p[function][s].clone());
                    columns.push(ScalarValue::iter_to_array(values)?);
                    fields.push(Arc::new(Field::new(
                        format!("__weir_state_{}", fields.len()),
                        field.data_type().clone(),
                        true,
                    )));
                }
                function += 1;
            }
        }
        let columns = columns
            .into_iter()
            .zip(&fields)
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    Ok(datafusion::arrow::compute::cast(&c, f.data_type())?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?))
    }
}

/// `length` rows of each argument from `offset`.
fn slices(arguments: &[ArrayRef], offset: usize, length: usize) -> Vec<ArrayRef> {
    arguments.iter().map(|a| a.slice(offset, length)).collect()
}

/// The input's fields, each nullable (a checkpoint chunk's columns).
fn nullable_fields(schema: &SchemaRef) -> Vec<Arc<Field>> {
    schema
        .fields()
        .iter()
        .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
        .collect()
}

impl StreamOperator for OverWindow {
    fn state(&self) -> StateSummary {
        StateSummary {
            operator: "over window",
            entries: self
                .partitions
                .values()
                .map(|p| p.waiting.len() + p.frame.len())
                .sum(),
        }
    }

    fn on_batch(&mut self, _side: Option<Side>, batch: &RecordBatch) -> Result<Vec<StreamBatch>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let mut late = 0u64;
        for entry in self.entries(batch)? {
            match entry {
                // Older than the watermark: rows after it were released.
                Some((_, (time, _, _))) if time < self.watermark => late += 1,
                Some((key, waiting)) => {
                    *self
                        .partitions
                        .entry(key)
                        .or_default()
                        .waiting
                        .entry(waiting)
                        .or_insert(0) += 1;
                }
                // No event time: no place in any order.
                None => late += 1,
            }
        }
        self.late.inc_by(late);
        self.changed = true;
        Ok(Vec::new())
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<StreamBatch>> {
        if watermark <= self.watermark {
            return Ok(Vec::new());
        }
        self.watermark = watermark;
        let due: Vec<Box<[u8]>> = self
            .partitions
            .iter()
            .filter(|(_, p)| {
                p.waiting
                    .first_key_value()
                    .is_some_and(|((t, _, _), _)| *t < watermark)
                    || matches!(self.spec.frame, OverFrame::Range(_)) && !p.frame.is_empty()
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in due {
            if let Some(rows) = self.release(&key, watermark)? {
                out.push(rows);
            }
            self.changed = true;
        }
        match out.len() {
            0 => Ok(Vec::new()),
            1 => Ok(out.into_iter().map(StreamBatch::Rows).collect()),
            _ => Ok(vec![StreamBatch::Rows(concat_batches(
                &self.spec.output_schema,
                &out,
            )?)]),
        }
    }

    fn watermark(&self) -> i64 {
        self.watermark
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<StateWrite> {
        if !self.changed {
            return Ok(StateWrite::default());
        }
        self.changed = false;
        let mut write = StateWrite {
            reset: true,
            ..Default::default()
        };
        if let Some(rows) = self.rows_chunk()? {
            write.put.push((ROWS_CHUNK.to_string(), rows));
        }
        if let Some(partitions) = self.partitions_chunk()? {
            write.put.push((PARTITIONS_CHUNK.to_string(), partitions));
        }
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
        // Partition state first: the frames' rows are fed to accumulators
        // made (or restored) here.
        for (id, chunk) in chunks.iter().filter(|(id, _)| id == PARTITIONS_CHUNK) {
            let Some(mine) =
                exchange::rows_of_worker(chunk, &self.spec.partition, worker, workers)?
            else {
                continue;
            };
            if mine.num_columns() <= width {
                return internal_err!("OVER window: a checkpoint chunk {id} without its state");
            }
            let released = mine.column(width).as_primitive::<Int64Type>();
            let entries = self.entries(&mine)?;
            for (i, entry) in entries.into_iter().enumerate() {
                let Some((key, (_, _, row))) = entry else {
                    return internal_err!("OVER window: a checkpointed partition without a time");
                };
                let mut accumulators = self.accumulators()?;
                if self.spec.frame.unbounded() {
                    let mut column = width + 1;
                    for (f, acc) in self.spec.functions.iter().zip(accumulators.iter_mut()) {
                        let (OverFunction::Aggregate(a), Some(acc)) = (f, acc) else {
                            continue;
                        };
                        let n = a.state_fields()?.len();
                        if column + n > mine.num_columns() {
                            return internal_err!(
                                "OVER window: a checkpoint chunk {id} of {} columns",
                                mine.num_columns()
                            );
                        }
                        let states: Vec<ArrayRef> = mine.columns()[column..column + n]
                            .iter()
                            .map(|c| c.slice(i, 1))
                            .collect();
                        acc.merge_batch(&states)?;
                        column += n;
                    }
                }
                let part = self.partitions.entry(key).or_default();
                part.released = u64::try_from(released.value(i)).unwrap_or(0);
                part.last = Some(row);
                part.accumulators = accumulators;
            }
        }
        let mut frames: HashMap<Box<[u8]>, Vec<Waiting>> = HashMap::default();
        for (id, chunk) in chunks.iter().filter(|(id, _)| id != PARTITIONS_CHUNK) {
            if id != ROWS_CHUNK || chunk.num_columns() != width + 2 {
                return internal_err!(
                    "OVER window: a checkpoint chunk {id} of {} columns, not {ROWS_CHUNK} of {}",
                    chunk.num_columns(),
                    width + 2
                );
            }
            let Some(mine) =
                exchange::rows_of_worker(chunk, &self.spec.partition, worker, workers)?
            else {
                continue;
            };
            let counts = mine.column(width).as_primitive::<Int64Type>();
            let waiting = mine.column(width + 1).as_primitive::<Int8Type>();
            for (i, entry) in self.entries(&mine)?.into_iter().enumerate() {
                let Some((key, row)) = entry else {
                    return internal_err!("OVER window: a checkpointed row without a time");
                };
                if waiting.value(i) == 1 {
                    let count = u64::try_from(counts.value(i)).unwrap_or(0);
                    *self
                        .partitions
                        .entry(key)
                        .or_default()
                        .waiting
                        .entry(row)
                        .or_insert(0) += count;
                } else {
                    frames.entry(key).or_default().push(row);
                }
            }
        }
        // Frames in the order their rows were released.
        for (key, mut rows) in frames {
            rows.sort();
            let mut part = self.partitions.remove(&key).unwrap_or_default();
            part.frame = rows.into_iter().map(|(t, _, r)| (t, r)).collect();
            self.refill(&mut part)?;
            self.partitions.insert(key, part);
        }
        self.changed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
