//! Savepoints: `CREATE SAVEPOINT sp FOR JOB j`, `SHOW SAVEPOINTS [FOR JOB
//! j]`, `DROP SAVEPOINT [IF EXISTS] sp` (design note 0008).
//!
//! A savepoint is a checkpoint a user asked for by name, copied whole into
//! the checkpoint store's `savepoints/<name>/` so that it outlives its job.
//! Taking one needs the runtime's checkpoint-now and savepoint store, which
//! are not merged yet: until they are, no savepoint can exist, so listing
//! shows none, dropping one is "does not exist", and creating one says it
//! is not supported yet (after checking the job, so the user's own mistakes
//! are reported as such first).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::{Result, ServerError};
use crate::jobs::unknown_job;
use crate::output::Output;
use crate::registry::Registry;

/// The columns of `SHOW SAVEPOINTS`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("job", DataType::Utf8, false),
        Field::new("epoch", DataType::Int64, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("size_bytes", DataType::Int64, false),
        Field::new("origin", DataType::Utf8, false),
    ]))
}

/// `CREATE SAVEPOINT sp FOR JOB j`.
pub async fn create(registry: &Registry, _name: &str, job: &str) -> Result<Output> {
    registry.jobs().job(job)?;
    Err(ServerError::FeatureNotSupported {
        message: "CREATE SAVEPOINT is not supported yet".to_string(),
        hint: Some("it needs the runtime's savepoint store (issue 20)".to_string()),
    })
}

/// `SHOW SAVEPOINTS [FOR JOB j]`.
pub async fn show(registry: &Registry, job: Option<&str>) -> Result<Output> {
    if let Some(job) = job
        && registry.jobs().get(job).is_none()
    {
        return Err(unknown_job(job));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(Vec::<String>::new())),
        Arc::new(StringArray::from(Vec::<String>::new())),
        Arc::new(Int64Array::from(Vec::<i64>::new())),
        Arc::new(TimestampMicrosecondArray::from(Vec::<i64>::new()).with_timezone("UTC")),
        Arc::new(Int64Array::from(Vec::<i64>::new())),
        Arc::new(StringArray::from(Vec::<String>::new())),
    ];
    let batch = datafusion::arrow::array::RecordBatch::try_new(schema(), columns)
        .map_err(|e| ServerError::internal(e.to_string()))?;
    let stream =
        datafusion::physical_plan::memory::MemoryStream::try_new(vec![batch], schema(), None)
            .map_err(|e| ServerError::from_datafusion(e, None))?;
    Ok(Output::Rows(Box::pin(stream)))
}

/// `DROP SAVEPOINT [IF EXISTS] sp`.
pub async fn drop(_registry: &Registry, name: &str, if_exists: bool) -> Result<Output> {
    if if_exists {
        return Ok(Output::Warned {
            warning: format!("savepoint \"{name}\" does not exist, skipping"),
            output: Box::new(Output::command("DROP SAVEPOINT")),
        });
    }
    Err(unknown_savepoint(name))
}

/// The error for a savepoint that does not exist.
pub fn unknown_savepoint(name: &str) -> ServerError {
    ServerError::UndefinedObject {
        message: format!("savepoint \"{name}\" does not exist"),
    }
}
