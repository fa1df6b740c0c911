//! Arrow -> Postgres: result columns and rows, through `arrow-pg`.

use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::execution::SendableRecordBatchStream;
use futures::{StreamExt, stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo, QueryResponse};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

use crate::error::ServerError;
use crate::pg_text;

/// Column descriptions for a schema, under the names clients see: a
/// repeated name loses the hidden suffix that kept it apart for DataFusion
/// (see `weir_planner::names::DUPLICATE_MARK`).
pub fn fields(
    schema: &Schema,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    let marked = |name: &str| name.contains(weir_planner::names::DUPLICATE_MARK);
    if !schema.fields().iter().any(|f| marked(f.name())) {
        return arrow_schema_to_pg_fields(schema, format, options);
    }
    let renamed: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            f.as_ref()
                .clone()
                .with_name(weir_planner::names::client_name(f.name()))
        })
        .collect();
    arrow_schema_to_pg_fields(&Schema::new(renamed), format, options)
}

/// A streamed query response: rows are encoded as batches arrive, so a big
/// result never sits whole in memory. An error in the middle of the stream
/// reaches the client with its own SQLSTATE.
pub fn query_response(
    batches: SendableRecordBatchStream,
    format: &Format,
    options: Arc<FormatOptions>,
    time_zone: String,
) -> PgWireResult<QueryResponse> {
    let schema = batches.schema();
    let fields = Arc::new(fields(schema.as_ref(), format, Some(options))?);
    // Text-format columns whose arrow-pg text differs from Postgres's.
    let text_columns: Vec<usize> = fields
        .iter()
        .zip(schema.fields())
        .enumerate()
        .filter(|(_, (info, field))| {
            info.format() == FieldFormat::Text && pg_text::needs_rewrite(field.data_type())
        })
        .map(|(i, _)| i)
        .collect();
    let row_fields = fields.clone();
    let rows = batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send> = match batch {
                Ok(batch) => encode_recordbatch(
                    row_fields.clone(),
                    pg_text::rewrite_batch(&batch, &text_columns, &time_zone),
                ),
                Err(err) => Box::new(std::iter::once(Err(PgWireError::from(
                    ServerError::from_datafusion(err, None),
                )))),
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}
