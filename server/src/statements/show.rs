//! Statements Weir answers itself: `SHOW ...` and transaction control.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use weir_planner::catalog::CatalogEntry;
use weir_planner::statement::ObjectKind;

use crate::error::{Result, ServerError};
use crate::output::Output;
use crate::registry::Registry;
use crate::session::Session;

fn text_schema(names: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// Text columns as a one-batch stream: the rows of statements Weir answers
/// itself (`SHOW`, `EXPLAIN`).
pub(crate) fn text_stream(
    schema: SchemaRef,
    columns: Vec<Vec<String>>,
) -> Result<SendableRecordBatchStream> {
    let arrays: Vec<ArrayRef> = columns
        .into_iter()
        .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)
        .map_err(|e| ServerError::internal(e.to_string()))?;
    let stream = MemoryStream::try_new(vec![batch], schema, None)
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    Ok(Box::pin(stream))
}

fn rows(schema: SchemaRef, columns: Vec<Vec<String>>) -> Result<Output> {
    Ok(Output::Rows(text_stream(schema, columns)?))
}

/// The columns of `SHOW name`.
pub fn variable_schema(name: &str) -> SchemaRef {
    text_schema(&[name])
}

/// `SHOW name`.
pub fn variable(session: &Session, name: &str) -> Result<Output> {
    let value = session.get(name)?;
    rows(variable_schema(name), vec![vec![value]])
}

/// The columns of `SHOW ALL`.
pub fn all_schema() -> SchemaRef {
    text_schema(&["name", "setting", "description"])
}

/// `SHOW ALL`.
pub fn all(session: &Session) -> Result<Output> {
    let (mut names, mut values, mut descriptions) = (Vec::new(), Vec::new(), Vec::new());
    for (n, v, d) in session.all() {
        names.push(n);
        values.push(v);
        descriptions.push(d);
    }
    rows(all_schema(), vec![names, values, descriptions])
}

/// The columns of `SHOW TABLES` / `SHOW VIEWS`.
pub fn objects_schema(kind: ObjectKind) -> SchemaRef {
    match kind {
        ObjectKind::Table => text_schema(&["name", "connector", "format", "path"]),
        ObjectKind::View => text_schema(&["name", "definition"]),
        ObjectKind::Stream => text_schema(&["name", "connector", "watermark"]),
        ObjectKind::MaterializedView => {
            text_schema(&["name", "status", "emit", "definition", "error"])
        }
        ObjectKind::Sink => text_schema(&["name", "from", "connector", "format", "path"]),
    }
}

/// `SHOW TABLES` / `SHOW VIEWS`, sorted by name.
pub fn objects(registry: &Registry, kind: ObjectKind) -> Result<Output> {
    let mut entries: Vec<CatalogEntry> = registry.entries_of(kind);
    entries.sort_by(|a, b| a.name().cmp(b.name()));
    let mut columns: Vec<Vec<String>> = vec![Vec::new(); objects_schema(kind).fields().len()];
    for entry in entries {
        match entry {
            CatalogEntry::Table(t) => {
                let opt = |k: &str| t.options.get(k).cloned().unwrap_or_default();
                columns[0].push(t.name.clone());
                columns[1].push(opt("connector"));
                columns[2].push(opt("format"));
                columns[3].push(opt("path"));
            }
            CatalogEntry::View(v) => {
                columns[0].push(v.name);
                columns[1].push(v.definition);
            }
            CatalogEntry::Stream(s) => {
                columns[0].push(s.name.clone());
                columns[1].push(s.options.get("connector").cloned().unwrap_or_default());
                columns[2].push(
                    s.watermark
                        .clone()
                        .or(s.time_column.clone())
                        .unwrap_or_default(),
                );
            }
            CatalogEntry::MaterializedView(m) => {
                let (status, error) = match registry.view(&m.name) {
                    Err(_) => ("not running", String::new()),
                    Ok(live) => {
                        let p = live.job.progress();
                        match (p.failed, p.finished) {
                            (Some(failure), _) => (
                                "failed",
                                // The cause alone: the row names the view.
                                match ServerError::job_failed(&m.name, &failure) {
                                    ServerError::JobFailed { cause, .. } => cause.to_string(),
                                    other => other.to_string(),
                                },
                            ),
                            (None, true) => ("finished", String::new()),
                            (None, false) => ("running", String::new()),
                        }
                    }
                };
                columns[0].push(m.name.clone());
                columns[1].push(status.to_string());
                columns[2].push(
                    if m.emit_on_window_close {
                        "on window close"
                    } else {
                        "updates"
                    }
                    .to_string(),
                );
                columns[3].push(m.query.clone());
                columns[4].push(error);
            }
            CatalogEntry::Sink(s) => {
                let opt = |k: &str| s.options.get(k).cloned().unwrap_or_default();
                columns[0].push(s.name.clone());
                columns[1].push(s.from.clone());
                columns[2].push(opt("connector"));
                columns[3].push(opt("format"));
                columns[4].push(opt("path"));
            }
        }
    }
    rows(objects_schema(kind), columns)
}
