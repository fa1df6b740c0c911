//! A view's rows (and changes) to message bytes, for the Kafka sink, with
//! Arrow's own JSON and CSV writers; each row one message, keyed by the
//! sink's key columns.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};
use datafusion::common::Result as DfResult;

use super::format::Format;
use crate::error::{ConnectorError, Result};

/// Writes a view's rows (and changes) as messages.
#[derive(Debug)]
pub struct Encoder {
    format: Format,
    /// The view's columns (without the op column).
    schema: SchemaRef,
    /// Columns of the message key (empty: no key).
    key: Vec<usize>,
    /// The view is updating: batches end with the op column.
    changelog: bool,
}

/// One message to send: key and value.
pub type Message = (Option<Vec<u8>>, Vec<u8>);

impl Encoder {
    /// An encoder of the view's `schema` rows; `key` names key columns.
    pub fn new(format: Format, schema: SchemaRef, key: &[String], changelog: bool) -> Result<Self> {
        if matches!(
            format,
            Format::Raw | Format::Avro(_) | Format::UpsertJson { .. }
        ) {
            return Err(ConnectorError::InvalidOption {
                option: "format".into(),
                value: format.name().into(),
                reason: "a kafka sink writes json, csv or debezium-json".into(),
            });
        }
        let key = key
            .iter()
            .map(|k| {
                schema
                    .index_of(k)
                    .map_err(|_| ConnectorError::InvalidOption {
                        option: "key".into(),
                        value: k.clone(),
                        reason: "not a column of the view".into(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            format,
            schema,
            key,
            changelog,
        })
    }

    /// The messages of `batch`, one per row.
    pub fn encode(&self, batch: &RecordBatch) -> DfResult<Vec<Message>> {
        let n = self.schema.fields().len();
        let rows = RecordBatch::try_new(self.schema.clone(), batch.columns()[..n].to_vec())?;
        let ops: Option<Vec<i8>> = self
            .changelog
            .then(|| batch.column(n).as_primitive::<Int8Type>().values().to_vec());
        let values = match &self.format {
            Format::DebeziumJson => {
                let images = json_lines(&rows)?;
                images
                    .into_iter()
                    .enumerate()
                    .map(|(i, row)| {
                        let row = String::from_utf8_lossy(&row);
                        let delete = ops.as_ref().is_some_and(|o| o[i] < 0);
                        let event = if delete {
                            format!("{{\"before\":{row},\"after\":null,\"op\":\"d\"}}")
                        } else {
                            format!("{{\"before\":null,\"after\":{row},\"op\":\"c\"}}")
                        };
                        event.into_bytes()
                    })
                    .collect()
            }
            Format::Json | Format::Csv { .. } => {
                // An updating view in a plain format: each change with its
                // op, as the file sink writes it.
                let rows = match &ops {
                    Some(ops) => {
                        let mut fields: Vec<Arc<Field>> =
                            self.schema.fields().iter().cloned().collect();
                        fields.push(Arc::new(Field::new("op", DataType::Utf8, false)));
                        let mut columns = rows.columns().to_vec();
                        columns.push(Arc::new(StringArray::from_iter_values(
                            ops.iter().map(|o| if *o < 0 { "delete" } else { "insert" }),
                        )));
                        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?
                    }
                    None => rows.clone(),
                };
                match &self.format {
                    Format::Csv { delimiter } => csv_lines(&rows, *delimiter)?,
                    _ => json_lines(&rows)?,
                }
            }
            Format::Raw | Format::Avro(_) | Format::UpsertJson { .. } => Vec::new(),
        };
        let keys: Vec<Option<Vec<u8>>> = if self.key.is_empty() {
            vec![None; rows.num_rows()]
        } else {
            let keys = rows.project(&self.key)?;
            let lines = match &self.format {
                Format::Csv { delimiter } => csv_lines(&keys, *delimiter)?,
                _ => json_lines(&keys)?,
            };
            lines.into_iter().map(Some).collect()
        };
        Ok(keys.into_iter().zip(values).collect())
    }
}

/// Each row as one JSON object.
fn json_lines(batch: &RecordBatch) -> DfResult<Vec<Vec<u8>>> {
    let mut buf = Vec::new();
    {
        let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
        writer.write(batch)?;
        writer.finish()?;
    }
    // JSON text escapes newlines inside strings: one line per row.
    Ok(buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Each row as one CSV line (no header), written alone so that a quoted
/// newline stays inside its message.
fn csv_lines(batch: &RecordBatch, delimiter: u8) -> DfResult<Vec<Vec<u8>>> {
    (0..batch.num_rows())
        .map(|i| {
            let mut buf = Vec::new();
            {
                let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .build(&mut buf);
                writer.write(&batch.slice(i, 1))?;
            }
            while buf.last() == Some(&b'\n') {
                buf.pop();
            }
            Ok(buf)
        })
        .collect()
}
