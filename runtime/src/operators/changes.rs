//! Changelogs: what "changelog" means everywhere in the runtime.
//!
//! A changelog is a stream of batches whose last column is the op column
//! ([`OP_COLUMN`], `Int8`): `1` inserts the row, `-1` deletes it. An updating
//! source (a table with a primary key) emits one; an updating aggregate or a
//! join that may retract emits one; a view applies one. Its schema is the
//! rows' schema plus that column ([`changelog_schema`]); everywhere else the
//! rows' schema is meant without it.
//!
//! What an operator emits says which it is by its type, [`StreamBatch`],
//! not by a flag beside it.

use std::sync::Arc;

use datafusion::arrow::array::{Int8Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Result;

/// Name of the column that carries the change kind in a changelog batch:
/// `1` inserts the row, `-1` deletes it.
pub const OP_COLUMN: &str = "__weir_op";

/// The schema of a changelog: the rows' columns plus the op column.
pub fn changelog_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(OP_COLUMN, DataType::Int8, false)));
    Arc::new(Schema::new(fields))
}

/// `batch` as a changelog whose every row has op `op` (1 insert, -1 delete).
pub fn with_op(batch: &RecordBatch, op: i8) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int8Array::from(vec![op; batch.num_rows()])));
    Ok(RecordBatch::try_new(
        changelog_schema(&batch.schema()),
        columns,
    )?)
}

/// A batch as an operator emits it: plain rows, or a changelog batch.
#[derive(Debug, Clone)]
pub enum StreamBatch {
    /// Rows of an append-only stream: each one is an insert.
    Rows(RecordBatch),
    /// A changelog batch: its last column is the op column.
    Changes(RecordBatch),
}

impl StreamBatch {
    /// `batch`, as a source that declared whether it is a changelog gives it.
    pub fn new(batch: RecordBatch, changelog: bool) -> Self {
        if changelog {
            StreamBatch::Changes(batch)
        } else {
            StreamBatch::Rows(batch)
        }
    }

    /// The batch itself (with the op column for changes).
    pub fn batch(&self) -> &RecordBatch {
        match self {
            StreamBatch::Rows(batch) | StreamBatch::Changes(batch) => batch,
        }
    }

    /// The batch itself, taken out (with the op column for changes).
    pub fn into_batch(self) -> RecordBatch {
        match self {
            StreamBatch::Rows(batch) | StreamBatch::Changes(batch) => batch,
        }
    }
}
