//! Filter, project and unnest: no state, one batch in, at most one out.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{Result, exec_err};

use crate::operators::changes::StreamBatch;
use crate::plan::StatelessOp;

/// Run `ops` over `batch`, rows or changes alike (changes keep their op
/// column). Returns `None` when no row is left.
pub fn run(ops: &[StatelessOp], batch: StreamBatch) -> Result<Option<StreamBatch>> {
    Ok(match batch {
        StreamBatch::Rows(batch) => apply(ops, batch)?.map(StreamBatch::Rows),
        StreamBatch::Changes(batch) => apply_changelog(ops, batch)?.map(StreamBatch::Changes),
    })
}

/// Run `ops` over `batch` in order. Returns `None` when no row is left.
pub fn apply(ops: &[StatelessOp], mut batch: RecordBatch) -> Result<Option<RecordBatch>> {
    for op in ops {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        batch = match op {
            StatelessOp::Filter(predicate) => {
                let mask = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
                let Some(mask) = mask.as_any().downcast_ref::<BooleanArray>() else {
                    return exec_err!("a filter predicate must be boolean");
                };
                filter_record_batch(&batch, mask)?
            }
            StatelessOp::Project { exprs, schema } => {
                let columns = exprs
                    .iter()
                    .map(|e| e.evaluate(&batch)?.into_array(batch.num_rows()))
                    .collect::<Result<Vec<_>>>()?;
                let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                RecordBatch::try_new_with_options(schema.clone(), columns, &options)?
            }
            StatelessOp::Unnest { column, schema } => unnest(&batch, *column, schema)?,
        };
    }
    Ok((batch.num_rows() > 0).then_some(batch))
}

/// Run `ops` over a changelog batch: the last column is the op column, which
/// filters keep row for row and projections carry along.
pub fn apply_changelog(ops: &[StatelessOp], mut batch: RecordBatch) -> Result<Option<RecordBatch>> {
    for op in ops {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        batch = match op {
            StatelessOp::Filter(_) => match apply(std::slice::from_ref(op), batch)? {
                Some(b) => b,
                None => return Ok(None),
            },
            StatelessOp::Project { exprs, schema } => {
                let mut columns = exprs
                    .iter()
                    .map(|e| e.evaluate(&batch)?.into_array(batch.num_rows()))
                    .collect::<Result<Vec<_>>>()?;
                columns.push(batch.column(batch.num_columns() - 1).clone());
                RecordBatch::try_new(crate::operators::changes::changelog_schema(schema), columns)?
            }
            // The op column is one more parent column: each element's row
            // keeps its parent's op.
            StatelessOp::Unnest { column, schema } => unnest(
                &batch,
                *column,
                &crate::operators::changes::changelog_schema(schema),
            )?,
        };
    }
    Ok((batch.num_rows() > 0).then_some(batch))
}

fn unnest(
    batch: &RecordBatch,
    column: usize,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<RecordBatch> {
    let list = batch.column(column).as_list::<i32>();
    let offsets = list.value_offsets();
    let mut parent = Vec::with_capacity(list.values().len());
    let mut child = Vec::with_capacity(list.values().len());
    for row in 0..list.len() {
        if list.is_null(row) {
            continue;
        }
        for i in offsets[row]..offsets[row + 1] {
            parent.push(row as u32);
            child.push(i as u32);
        }
    }
    let parent = UInt32Array::from(parent);
    let child = UInt32Array::from(child);
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i == column {
                take(list.values().as_ref(), &child, None)
            } else {
                take(c.as_ref(), &parent, None)
            }
        })
        .collect::<std::result::Result<_, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(parent.len()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}
