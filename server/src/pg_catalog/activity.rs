//! `pg_stat_activity`: one row per connected backend, from
//! [`crate::pg::activity`]; what it is running, since when, for whom.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::Result;

use crate::pg::activity::Activity;

fn timestamptz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Its columns: Postgres's, those clients read.
pub(super) fn pg_stat_activity_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("datname", DataType::Utf8, true),
        Field::new("pid", DataType::Int32, false),
        Field::new("usename", DataType::Utf8, true),
        Field::new("application_name", DataType::Utf8, true),
        Field::new("client_addr", DataType::Utf8, true),
        Field::new("client_port", DataType::Int32, true),
        Field::new("backend_start", timestamptz(), true),
        Field::new("query_start", timestamptz(), true),
        Field::new("state", DataType::Utf8, true),
        Field::new("query", DataType::Utf8, true),
        Field::new("backend_type", DataType::Utf8, true),
    ]))
}

/// The rows, now.
pub(super) fn pg_stat_activity(schema: &SchemaRef) -> Result<RecordBatch> {
    let backends = Activity::current().map(|a| a.all()).unwrap_or_default();
    let now: Vec<_> = backends.iter().map(|b| b.now()).collect();
    let text = |values: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
    let times = |values: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = vec![
        text(backends.iter().map(|_| Some("weir".to_string())).collect()),
        Arc::new(Int32Array::from(
            backends.iter().map(|b| b.pid).collect::<Vec<_>>(),
        )),
        text(backends.iter().map(|b| Some(b.user.clone())).collect()),
        text(
            backends
                .iter()
                .map(|b| Some(b.application_name.clone()))
                .collect(),
        ),
        text(
            backends
                .iter()
                .map(|b| Some(b.client_addr.ip().to_string()))
                .collect(),
        ),
        Arc::new(Int32Array::from(
            backends
                .iter()
                .map(|b| Some(i32::from(b.client_addr.port())))
                .collect::<Vec<_>>(),
        )),
        times(
            backends
                .iter()
                .map(|b| Some(b.backend_start.timestamp_micros()))
                .collect(),
        ),
        times(
            now.iter()
                .map(|n| n.query_start.map(|t| t.timestamp_micros()))
                .collect(),
        ),
        text(now.iter().map(|n| Some(n.state.to_string())).collect()),
        text(now.iter().map(|n| Some(n.query.clone())).collect()),
        text(
            backends
                .iter()
                .map(|_| Some("client backend".to_string()))
                .collect(),
        ),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
