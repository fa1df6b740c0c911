//! What the three aggregate kinds share: the plan's keys and accumulators
//! made ready for one worker ([`Base`]), the rows of a batch that are not
//! late, and output batches built from group rows.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int8Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, FieldRef, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::Accumulator;
use prometheus_client::metrics::counter::Counter;

use super::filtered::Filtered;
use super::retract;
use crate::operators::changes::{StreamBatch, changelog_schema};
use crate::plan::AggregateSpec;
use crate::windows::timestamps_as_nanos;

/// A batch's group keys and aggregate inputs, evaluated.
pub(super) struct Evaluated {
    /// One column per group key.
    pub(super) keys: Vec<ArrayRef>,
    /// Per aggregate, its argument columns (and, when it has a FILTER, the
    /// condition's mask last); over a changelog, one more entry last: the op
    /// column, so that rows picked from the batch keep their ops.
    pub(super) inputs: Vec<Vec<ArrayRef>>,
    /// Rows.
    pub(super) rows: usize,
}

impl Evaluated {
    /// Only the rows at `live` (all of them when `live` has every row).
    pub(super) fn select(self, live: &[u32]) -> Result<Evaluated> {
        if live.len() == self.rows {
            return Ok(self);
        }
        let rows = UInt32Array::from(live.to_vec());
        Ok(Evaluated {
            keys: take_all(&self.keys, &rows)?,
            inputs: self
                .inputs
                .iter()
                .map(|i| take_all(i, &rows))
                .collect::<Result<_>>()?,
            rows: live.len(),
        })
    }
}

/// One worker's view of the plan's aggregate: the spec, the key types and
/// row formats, the watermark and the late-row counter.
pub(super) struct Base {
    pub(super) spec: Arc<AggregateSpec>,
    /// The highest watermark seen.
    pub(super) watermark: i64,
    /// Rows dropped as late.
    pub(super) late: Counter,
    /// Row format of all the group keys.
    pub(super) converter: RowConverter,
    /// Row format of the partition keys alone.
    pub(super) partition_converter: RowConverter,
    /// The partition keys' types, as the group expressions give them.
    pub(super) partition_types: Vec<DataType>,
    /// The group keys' types, as the group expressions give them.
    pub(super) group_types: Vec<DataType>,
}

impl Base {
    pub(super) fn new(
        spec: Arc<AggregateSpec>,
        input_schema: &SchemaRef,
        late: Counter,
    ) -> Result<Self> {
        let group_types = spec
            .group
            .iter()
            .map(|g| g.data_type(input_schema))
            .collect::<Result<Vec<_>>>()?;
        let partition_types: Vec<DataType> = spec
            .partition_keys
            .iter()
            .map(|&k| group_types[k].clone())
            .collect();
        let row_format = |types: &[DataType]| {
            RowConverter::new(types.iter().map(|t| SortField::new(t.clone())).collect())
        };
        Ok(Self {
            converter: row_format(&group_types)?,
            partition_converter: row_format(&partition_types)?,
            spec,
            watermark: i64::MIN,
            late,
            partition_types,
            group_types,
        })
    }

    /// The batch's group keys and aggregate inputs.
    pub(super) fn evaluate(&self, batch: &RecordBatch) -> Result<Evaluated> {
        let rows = batch.num_rows();
        let keys = self
            .spec
            .group
            .iter()
            .map(|g| g.evaluate(batch)?.into_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let mut inputs = self
            .spec
            .aggregates
            .iter()
            .zip(&self.spec.filters)
            .map(|(a, filter)| {
                // A FILTER's condition goes last, as a mask (`filtered.rs`).
                a.expressions()
                    .iter()
                    .chain(filter)
                    .map(|e| e.evaluate(batch)?.into_array(rows))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        if self.spec.retracting.is_some() {
            inputs.push(vec![batch.column(batch.num_columns() - 1).clone()]);
        }
        Ok(Evaluated { keys, inputs, rows })
    }

    /// Rows of a fixed window whose close time (`key`'s value `+ plus`) is
    /// still ahead of the watermark, with those close times; the others are
    /// late, counted and dropped.
    pub(super) fn live_windows(
        &self,
        evaluated: Evaluated,
        key: usize,
        plus: i64,
    ) -> Result<(Evaluated, Vec<i64>)> {
        let close = timestamps_as_nanos(&evaluated.keys[key])?;
        let mut live = Vec::with_capacity(evaluated.rows);
        let mut closes = Vec::with_capacity(evaluated.rows);
        let mut late = 0u64;
        for row in 0..evaluated.rows {
            if close.is_null(row) {
                continue;
            }
            let c = close.value(row) + plus;
            if c <= self.watermark {
                late += 1;
            } else {
                live.push(row as u32);
                closes.push(c);
            }
        }
        self.late.inc_by(late);
        Ok((evaluated.select(&live)?, closes))
    }

    /// A fresh accumulator for aggregate `i`: one that retracts in any order
    /// over a changelog, DataFusion's own otherwise.
    pub(super) fn accumulator(&self, i: usize) -> Result<Box<dyn Accumulator>> {
        let accumulator = match &self.spec.retracting {
            Some(types) => retract::accumulator(&self.spec.aggregates[i], &types[i])?,
            None => self.spec.aggregates[i].create_accumulator()?,
        };
        Ok(match self.spec.filters.get(i) {
            Some(Some(_)) => Box::new(Filtered::new(accumulator)),
            _ => accumulator,
        })
    }

    /// Fresh accumulators, one per aggregate.
    pub(super) fn accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        (0..self.spec.aggregates.len())
            .map(|i| self.accumulator(i))
            .collect()
    }

    /// The fields of aggregate `i`'s state, as its accumulator gives it.
    pub(super) fn state_fields(&self, i: usize) -> Result<Vec<FieldRef>> {
        match &self.spec.retracting {
            Some(types) => retract::state_fields(&self.spec.aggregates[i], &types[i]),
            None => self.spec.aggregates[i].state_fields(),
        }
    }

    /// Rise to `watermark`; false when it is not news.
    pub(super) fn advance(&mut self, watermark: i64) -> bool {
        if watermark <= self.watermark {
            return false;
        }
        self.watermark = watermark;
        true
    }
}

/// Each row's group key in the row format; a GROUP BY without keys (one
/// global group) has the empty key, which the row format cannot express.
pub(super) fn key_rows(
    converter: &RowConverter,
    keys: &[ArrayRef],
    n: usize,
) -> Result<Vec<Box<[u8]>>> {
    if keys.is_empty() {
        return Ok(vec![Box::default(); n]);
    }
    let rows = converter.convert_columns(keys)?;
    Ok((0..n).map(|r| rows.row(r).as_ref().into()).collect())
}

pub(super) fn evaluate_all(accumulators: &mut [Box<dyn Accumulator>]) -> Result<Vec<ScalarValue>> {
    accumulators.iter_mut().map(|a| a.evaluate()).collect()
}

pub(super) fn take_all(values: &[ArrayRef], rows: &UInt32Array) -> Result<Vec<ArrayRef>> {
    values
        .iter()
        .map(|v| Ok(take(v.as_ref(), rows, None)?))
        .collect()
}

/// One output row of an aggregate: group key values, aggregate values, op.
pub(super) type GroupRow = (Vec<ScalarValue>, Vec<ScalarValue>, i8);

/// Build a batch from group rows; changes (with the op column) when
/// `with_op`, rows otherwise. Timestamps are cast to `time_type` when given (session bounds).
pub(super) fn rows_to_batch(
    spec: &AggregateSpec,
    time_type: Option<DataType>,
    rows: Vec<GroupRow>,
    with_op: bool,
) -> Result<Vec<StreamBatch>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let schema = &spec.output_schema;
    let mut columns = Vec::with_capacity(schema.fields().len() + 1);
    for (i, field) in schema.fields().iter().enumerate() {
        let values = rows.iter().map(|(k, v, _)| {
            if i < k.len() {
                k[i].clone()
            } else {
                v[i - k.len()].clone()
            }
        });
        let array = ScalarValue::iter_to_array(values)?;
        let array = match (&time_type, array.data_type()) {
            (Some(t), DataType::Timestamp(_, _)) if array.data_type() != t => cast(&array, t)?,
            _ => array,
        };
        columns.push(if array.data_type() == field.data_type() {
            array
        } else {
            cast(&array, field.data_type())?
        });
    }
    Ok(vec![if with_op {
        columns.push(Arc::new(Int8Array::from(
            rows.iter().map(|(_, _, op)| *op).collect::<Vec<_>>(),
        )));
        StreamBatch::Changes(RecordBatch::try_new(changelog_schema(schema), columns)?)
    } else {
        StreamBatch::Rows(RecordBatch::try_new(schema.clone(), columns)?)
    }])
}

/// The rows of a checkpoint chunk whose keys (the columns at `key_columns`)
/// hash to `worker` of `workers`, as the exchange would send them.
pub(super) fn rows_of_worker(
    chunk: &RecordBatch,
    key_columns: &[usize],
    worker: usize,
    workers: usize,
) -> Result<Option<RecordBatch>> {
    let keys: Vec<ArrayRef> = key_columns
        .iter()
        .map(|&k| chunk.column(k).clone())
        .collect();
    Ok(
        crate::operators::exchange::partition(chunk, &keys, workers)?
            .into_iter()
            .nth(worker)
            .flatten(),
    )
}
