//! `EXPLAIN`, shaped as Postgres shapes it: one `QUERY PLAN` text column,
//! one row per line, so psql, pgAdmin and DBeaver show it as they show a
//! Postgres plan. Each of DataFusion's plans (logical, physical, ...) becomes
//! a `name:` line followed by its lines, indented.

use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use futures::TryStreamExt;

use crate::error::{Result, ServerError};

/// The columns of an `EXPLAIN`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "QUERY PLAN",
        DataType::Utf8,
        false,
    )]))
}

/// Reshape DataFusion's `(plan_type, plan)` rows into `QUERY PLAN` lines.
pub async fn reshape(stream: SendableRecordBatchStream) -> Result<SendableRecordBatchStream> {
    let batches: Vec<RecordBatch> = stream
        .try_collect()
        .await
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    let mut lines = Vec::new();
    for batch in &batches {
        if batch.num_columns() < 2 {
            continue;
        }
        let text = |i: usize| -> Result<StringArray> {
            let column = datafusion::arrow::compute::cast(batch.column(i), &DataType::Utf8)
                .map_err(|e| ServerError::internal(e.to_string()))?;
            Ok(column
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .unwrap_or_else(|| StringArray::from(Vec::<String>::new())))
        };
        let (kinds, plans) = (text(0)?, text(1)?);
        for row in 0..batch.num_rows() {
            if kinds.is_null(row) || plans.is_null(row) {
                continue;
            }
            lines.push(format!("{}:", kinds.value(row)));
            for line in plans.value(row).lines().filter(|l| !l.trim().is_empty()) {
                lines.push(format!("  {line}"));
            }
        }
    }
    super::show::text_stream(schema(), vec![lines])
}
