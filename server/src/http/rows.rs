//! Arrow rows as JSON: what a statement's [`Output`] becomes in the API.
//!
//! Values are written by arrow's own JSON writer, so a number stays a
//! number, a list an array and a timestamp an RFC 3339 string, exactly as
//! `COPY ... (FORMAT json)`-like consumers of Arrow expect; the job routes
//! read the rows of `SHOW JOBS` and friends back into typed structs, so the
//! API's field names are those columns' names.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::json::writer::JsonArray;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Result, ServerError};
use crate::output::Output;

/// Batches as JSON objects, one per row, keyed by column name (nulls
/// written as `null`).
pub fn objects(batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>> {
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer
        .write_batches(&refs)
        .and_then(|()| writer.finish())
        .map_err(|e| ServerError::internal(format!("rows as JSON: {e}")))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| ServerError::internal(format!("rows as JSON: {e}")))
}

/// One batch's rows as arrays of values in column order (names may repeat
/// in a query's result, so not objects).
pub fn arrays(batch: &RecordBatch) -> Result<Vec<Vec<Value>>> {
    let mut rows = vec![Vec::with_capacity(batch.num_columns()); batch.num_rows()];
    for column in batch.columns() {
        // Each column alone under one name, through the same writer.
        let field = Field::new("v", column.data_type().clone(), true);
        let one = RecordBatch::try_new(
            std::sync::Arc::new(Schema::new(vec![field])),
            vec![column.clone()],
        )
        .map_err(|e| ServerError::internal(e.to_string()))?;
        for (row, mut object) in rows.iter_mut().zip(objects(&[one])?) {
            row.push(object.remove("v").unwrap_or(Value::Null));
        }
    }
    Ok(rows)
}

/// Read up to `limit` rows of `batches`; `true` when more were left.
pub async fn take(
    mut batches: SendableRecordBatchStream,
    limit: usize,
) -> Result<(SchemaRef, Vec<RecordBatch>, bool)> {
    let schema = batches.schema();
    let mut taken = Vec::new();
    let mut rows = 0;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| ServerError::from_datafusion(e, None))?;
        if rows + batch.num_rows() > limit {
            taken.push(batch.slice(0, limit - rows));
            return Ok((schema, taken, true));
        }
        rows += batch.num_rows();
        taken.push(batch);
    }
    Ok((schema, taken, false))
}

/// The rows of a statement Weir answers itself (`SHOW JOBS`), as `T`s.
pub async fn typed<T: DeserializeOwned>(output: Output) -> Result<Vec<T>> {
    let Output::Rows(batches) = output else {
        return Err(ServerError::internal("a SHOW statement returned no rows"));
    };
    let (_, batches, _) = take(batches, usize::MAX).await?;
    objects(&batches)?
        .into_iter()
        .map(|row| {
            serde_json::from_value(Value::Object(row))
                .map_err(|e| ServerError::internal(format!("a row that does not read: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::DataType;

    use super::*;

    #[test]
    fn rows_keep_order_types_and_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("a", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("x"), Some("y")])),
            ],
        )
        .expect("batch");
        let rows = arrays(&batch).expect("rows");
        assert_eq!(
            rows,
            vec![
                vec![Value::from(1), Value::from("x")],
                vec![Value::Null, Value::from("y")]
            ]
        );
        let objects = objects(&[batch]).expect("objects");
        assert_eq!(objects.len(), 2);
    }
}
