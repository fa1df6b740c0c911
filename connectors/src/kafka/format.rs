//! How messages are written (`Format`), and message bytes to Arrow rows
//! for the source, with Arrow's own JSON and CSV decoders (rows to message
//! bytes, for the sink: `encode.rs`).
//!
//! A batch of messages is decoded in one pass: their payloads, one per line,
//! go through one decoder. Only when that fails (or yields a different
//! number of rows than lines) is each message decoded alone, to tell the bad
//! ones from the good, so well-formed input pays nothing for the policy on
//! bad input.
//!
//! Metadata columns are filled from the message, not its payload: a column
//! declared as `_partition`, `_offset`, `_key` or `_kafka_timestamp`.
//!
//! JSON timestamps (zone-less `TIMESTAMP` columns) are read as text and
//! parsed by `crate::timestamps`, as CSV files' are: Arrow's JSON decoder
//! builds a parser per value, about a tenth of a JSON topic's CPU. A batch
//! whose times that path cannot read (numbers, another shape) is decoded
//! again with Arrow's own reading, which then decodes every later batch of
//! the stream, so the rows are always exactly what Arrow's decoder gives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, Int8Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Result as DfResult;

use super::avro::Avro;
use crate::error::{ConnectorError, Result};
use crate::options::ConnectorOptions;

/// How message payloads are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per message.
    Json,
    /// One CSV line per message.
    Csv {
        /// Field separator.
        delimiter: u8,
    },
    /// The payload itself, as the stream's one TEXT or BYTEA column.
    Raw,
    /// Debezium change events (`before`, `after`, `op`): an updating input.
    DebeziumJson,
    /// Each message the latest value of its key (the stream's `PRIMARY
    /// KEY`), a tombstone its delete: an updating input once the reader
    /// pairs each value with the one it replaces (see `upsert.rs`).
    UpsertJson {
        /// The key columns, in `PRIMARY KEY` order.
        key: Vec<String>,
    },
    /// One Avro datum per message, of a schema given inline (a source
    /// format only).
    Avro(Arc<Avro>),
}

impl Format {
    /// Take `format` (and `delimiter` for csv) from `options`.
    pub fn from_options(options: &mut ConnectorOptions) -> Result<Self> {
        let format = options.require(super::CONNECTOR, "format")?;
        let delimiter = options.take_char("delimiter")?;
        // Set by the server from the stream's `PRIMARY KEY`.
        let primary_key: Option<Vec<String>> = options
            .take("primary_key")
            .map(|k| k.split(',').map(|c| c.trim().to_string()).collect());
        let parsed = match format.to_ascii_lowercase().as_str() {
            "json" => Format::Json,
            "csv" => Format::Csv {
                delimiter: delimiter.unwrap_or(b','),
            },
            "raw" => Format::Raw,
            "debezium-json" => Format::DebeziumJson,
            "upsert-json" => Format::UpsertJson {
                key: primary_key.clone().ok_or_else(|| ConnectorError::InvalidOption {
                    option: "format".into(),
                    value: format.clone(),
                    reason: "an upsert-json stream needs a PRIMARY KEY: the columns its messages' keys hold".into(),
                })?,
            },
            "avro" => Format::Avro(Arc::new(Avro::from_options(options)?)),
            _ => {
                return Err(ConnectorError::InvalidOption {
                    option: "format".into(),
                    value: format,
                    reason: "expected json, csv, raw, debezium-json, upsert-json or avro".into(),
                });
            }
        };
        if !matches!(parsed, Format::Avro(_)) {
            Avro::refuse_options(options, parsed.name())?;
        }
        if let (Some(key), false) = (&primary_key, matches!(parsed, Format::UpsertJson { .. })) {
            return Err(ConnectorError::InvalidOption {
                option: "primary_key".into(),
                value: key.join(", "),
                reason: format!(
                    "a PRIMARY KEY on a kafka stream needs format 'upsert-json', not '{}'",
                    parsed.name()
                ),
            });
        }
        if delimiter.is_some() && !matches!(parsed, Format::Csv { .. }) {
            return Err(ConnectorError::InvalidOption {
                option: "delimiter".into(),
                value: (delimiter.unwrap_or_default() as char).to_string(),
                reason: "only the csv format has a delimiter".into(),
            });
        }
        Ok(parsed)
    }

    /// Its name in `WITH (format = ...)`.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv { .. } => "csv",
            Format::Raw => "raw",
            Format::DebeziumJson => "debezium-json",
            Format::UpsertJson { .. } => "upsert-json",
            Format::Avro(_) => "avro",
        }
    }

    /// Does it carry changes (an updating input or output)?
    pub fn changelog(&self) -> bool {
        matches!(self, Format::DebeziumJson | Format::UpsertJson { .. })
    }
}

/// A metadata column, filled from the message rather than its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meta {
    Partition,
    Offset,
    Key,
    Timestamp,
}

impl Meta {
    fn of(name: &str) -> Option<Self> {
        match name {
            "_partition" => Some(Meta::Partition),
            "_offset" => Some(Meta::Offset),
            "_key" => Some(Meta::Key),
            "_kafka_timestamp" => Some(Meta::Timestamp),
            _ => None,
        }
    }
}

/// Where an output column comes from.
#[derive(Debug, Clone, Copy)]
enum Column {
    Payload(usize),
    Meta(Meta),
}

/// One message, borrowed from the consumer.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The value (`None`: a tombstone).
    pub payload: Option<&'a [u8]>,
    /// The key.
    pub key: Option<&'a [u8]>,
    /// For `upsert-json`: the value this message replaces, retracted before
    /// it (set by the reader, which knows each key's latest value).
    pub retract: Option<&'a [u8]>,
    /// Where it is.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The message's timestamp, in milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

/// An upsert stream's key columns are payload columns, and it has no
/// per-message metadata but `_key`: a row's retraction is built from an
/// older message, whose partition, offset and time differ.
fn check_upsert(
    key: &[String],
    payload: &[datafusion::arrow::datatypes::FieldRef],
    columns: &[Column],
) -> Result<()> {
    for column in key {
        if !payload.iter().any(|f| f.name() == column) {
            return Err(ConnectorError::InvalidOption {
                option: "primary_key".into(),
                value: column.clone(),
                reason: "a PRIMARY KEY column of an upsert-json stream must be a column of its messages' values".into(),
            });
        }
    }
    if columns
        .iter()
        .any(|c| matches!(c, Column::Meta(m) if *m != Meta::Key))
    {
        return Err(ConnectorError::InvalidOption {
            option: "format".into(),
            value: "upsert-json".into(),
            reason: "an upsert-json stream can have _key but not _partition, _offset or _kafka_timestamp: a row's retraction comes from an older message".into(),
        });
    }
    Ok(())
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Its index in the messages given to [`Decoder::decode`].
    pub index: usize,
    /// Why.
    pub error: String,
}

/// Decodes messages of one stream.
#[derive(Debug)]
pub struct Decoder {
    format: Format,
    /// The declared columns (without the op column).
    schema: SchemaRef,
    /// The columns read from payloads.
    payload: SchemaRef,
    /// `payload` with its zone-less timestamp columns as text, for JSON
    /// formats (`None`: no such column, or another format).
    text_times: Option<SchemaRef>,
    /// Whether JSON times are still read through `text_times`: cleared by
    /// the first batch whose times only Arrow's decoder reads.
    fast_times: AtomicBool,
    columns: Vec<Column>,
}

/// The lines one message makes, and their ops.
struct Lines {
    buf: Vec<u8>,
    /// Where each row's bytes end in `buf`, for formats whose rows are not
    /// lines (Avro).
    ends: Vec<usize>,
    /// Per line: the message it came from, and its op (+1 or -1).
    rows: Vec<(u32, i8)>,
}

impl Decoder {
    /// A decoder of `format` into the declared `schema`.
    pub fn new(format: Format, schema: SchemaRef) -> Result<Self> {
        let mut payload = Vec::new();
        let mut columns = Vec::new();
        for field in schema.fields() {
            match Meta::of(field.name()) {
                Some(meta) => columns.push(Column::Meta(meta)),
                None => {
                    columns.push(Column::Payload(payload.len()));
                    payload.push(field.clone());
                }
            }
        }
        if format == Format::Raw
            && !matches!(
                payload.as_slice(),
                [f] if matches!(f.data_type(), DataType::Utf8 | DataType::Binary)
            )
        {
            return Err(ConnectorError::InvalidOption {
                option: "format".into(),
                value: "raw".into(),
                reason: "a raw stream has one TEXT or BYTEA column for the message (besides metadata columns)"
                    .into(),
            });
        }
        if let Format::UpsertJson { key } = &format {
            check_upsert(key, &payload, &columns)?;
        }
        let payload = Arc::new(Schema::new(payload));
        if let Format::Avro(avro) = &format {
            avro.check(&payload)?;
        }
        let json = matches!(
            format,
            Format::Json | Format::DebeziumJson | Format::UpsertJson { .. }
        );
        let text_times = json.then(|| text_times(&payload)).flatten();
        Ok(Self {
            format,
            schema,
            payload,
            fast_times: AtomicBool::new(text_times.is_some()),
            text_times,
            columns,
        })
    }

    /// The batches' schema: the declared columns, and the op column for a
    /// changelog format.
    pub fn output_schema(&self) -> SchemaRef {
        if self.format.changelog() {
            weir_runtime::operators::aggregate::changelog_schema(&self.schema)
        } else {
            self.schema.clone()
        }
    }

    /// Decode `records`: the good ones as one batch (`None` if none), and
    /// the bad ones.
    pub fn decode(
        &self,
        records: &[Record<'_>],
    ) -> DfResult<(Option<RecordBatch>, Vec<BadRecord>)> {
        let mut bad = Vec::new();
        let mut lines = Lines {
            buf: Vec::new(),
            ends: Vec::new(),
            rows: Vec::with_capacity(records.len()),
        };
        for (i, record) in records.iter().enumerate() {
            if let Err(error) = self.lines(i as u32, record, &mut lines) {
                bad.push(BadRecord { index: i, error });
            }
        }
        if lines.rows.is_empty() {
            return Ok((None, bad));
        }
        let payload = match self.decode_lines(&lines) {
            Ok(batch) => Some((batch, lines.rows)),
            Err(_) => {
                // Find the bad ones: each message alone.
                let mut good = Vec::new();
                let mut rows = Vec::new();
                let mut start = 0;
                while start < lines.rows.len() {
                    let index = lines.rows[start].0;
                    let end = start
                        + lines.rows[start..]
                            .iter()
                            .take_while(|(r, _)| *r == index)
                            .count();
                    let one = self.lines_of(records, index, &lines.rows[start..end]);
                    match one.and_then(|one| self.decode_lines(&one).map(|b| (b, one.rows))) {
                        Ok((batch, r)) => {
                            good.push(batch);
                            rows.extend(r);
                        }
                        Err(error) => bad.push(BadRecord {
                            index: index as usize,
                            error,
                        }),
                    }
                    start = end;
                }
                bad.sort_by_key(|b| b.index);
                if good.is_empty() {
                    None
                } else {
                    Some((concat_batches(&self.payload, &good)?, rows))
                }
            }
        };
        let Some((payload, rows)) = payload else {
            return Ok((None, bad));
        };
        Ok((Some(self.assemble(records, &payload, &rows)?), bad))
    }

    /// The lines of message `index` again, for decoding it alone.
    fn lines_of(
        &self,
        records: &[Record<'_>],
        index: u32,
        _rows: &[(u32, i8)],
    ) -> std::result::Result<Lines, String> {
        let mut one = Lines {
            buf: Vec::new(),
            ends: Vec::new(),
            rows: Vec::new(),
        };
        self.lines(index, &records[index as usize], &mut one)?;
        Ok(one)
    }

    /// Append the lines of `record` (message `index`) to `lines`.
    fn lines(
        &self,
        index: u32,
        record: &Record<'_>,
        lines: &mut Lines,
    ) -> std::result::Result<(), String> {
        match &self.format {
            Format::Avro(avro) => {
                let Some(payload) = record.payload else {
                    return Err("the message has no value".into());
                };
                lines.buf.extend_from_slice(avro.datum(payload)?);
                lines.ends.push(lines.buf.len());
                lines.rows.push((index, 1));
                Ok(())
            }
            Format::Json | Format::Csv { .. } | Format::Raw => {
                let Some(payload) = record.payload else {
                    return Err("the message has no value".into());
                };
                if self.format == Format::Raw {
                    lines.rows.push((index, 1));
                    return Ok(());
                }
                if payload.contains(&b'\n') && self.format != Format::Json {
                    return Err("a csv message must be one line".into());
                }
                lines.buf.extend_from_slice(payload);
                lines.buf.push(b'\n');
                lines.rows.push((index, 1));
                Ok(())
            }
            Format::UpsertJson { .. } => {
                // The reader decided what this message changes: the value it
                // replaces goes out, its own comes in (a tombstone: only the
                // former; a value equal to the one it replaces: neither).
                for (row, op) in [(record.retract, -1), (record.payload, 1)] {
                    if let Some(row) = row {
                        lines.buf.extend_from_slice(row);
                        lines.buf.push(b'\n');
                        lines.rows.push((index, op));
                    }
                }
                Ok(())
            }
            Format::DebeziumJson => {
                // A tombstone follows a delete for log compaction: no change.
                let Some(payload) = record.payload else {
                    return Ok(());
                };
                let event: serde_json::Value =
                    serde_json::from_slice(payload).map_err(|e| format!("invalid json: {e}"))?;
                // With the JSON converter's schemas on, the event is wrapped.
                let event = match event.get("payload") {
                    Some(inner) if inner.get("op").is_some() => inner,
                    _ => &event,
                };
                let op = event
                    .get("op")
                    .and_then(|o| o.as_str())
                    .ok_or("a debezium event needs an \"op\"")?;
                let image = |name: &str| -> std::result::Result<Vec<u8>, String> {
                    match event.get(name) {
                        Some(row @ serde_json::Value::Object(_)) => {
                            serde_json::to_vec(row).map_err(|e| e.to_string())
                        }
                        _ => Err(format!("a debezium \"{op}\" event needs \"{name}\"")),
                    }
                };
                let images: Vec<(Vec<u8>, i8)> = match op {
                    "c" | "r" => vec![(image("after")?, 1)],
                    "u" => vec![(image("before")?, -1), (image("after")?, 1)],
                    "d" => vec![(image("before")?, -1)],
                    other => return Err(format!("unknown debezium op \"{other}\"")),
                };
                for (row, op) in images {
                    lines.buf.extend_from_slice(&row);
                    lines.buf.push(b'\n');
                    lines.rows.push((index, op));
                }
                Ok(())
            }
        }
    }

    /// Decode `lines` into the payload columns: exactly one row per line.
    fn decode_lines(&self, lines: &Lines) -> std::result::Result<RecordBatch, String> {
        let n = lines.rows.len();
        let batch = match &self.format {
            Format::Avro(avro) => {
                let datums: Vec<&[u8]> = lines
                    .ends
                    .iter()
                    .scan(0, |start, &end| {
                        let datum = &lines.buf[*start..end];
                        *start = end;
                        Some(datum)
                    })
                    .collect();
                Some(avro.decode(datums.into_iter(), &self.payload)?)
            }
            Format::Json | Format::DebeziumJson | Format::UpsertJson { .. } => {
                match self
                    .text_times
                    .as_ref()
                    .filter(|_| self.fast_times.load(Ordering::Relaxed))
                {
                    Some(text) => match self.json_with_text_times(lines, text) {
                        Ok(batch) => batch,
                        Err(_) => {
                            // Arrow's reading of the whole batch: if it
                            // succeeds, the times have a shape the fast
                            // path does not read, and it is left for good;
                            // if not, a message is bad (found one by one).
                            let batch = self.json(lines, &self.payload)?;
                            self.fast_times.store(false, Ordering::Relaxed);
                            batch
                        }
                    },
                    None => self.json(lines, &self.payload)?,
                }
            }
            Format::Csv { delimiter } => {
                let mut decoder = datafusion::arrow::csv::ReaderBuilder::new(self.payload.clone())
                    .with_header(false)
                    .with_delimiter(*delimiter)
                    .with_batch_size(n + 1)
                    .build_decoder();
                feed(&lines.buf, |b| decoder.decode(b))?;
                decoder.flush().map_err(|e| e.to_string())?
            }
            // Filled from the messages in `assemble`.
            Format::Raw => Some(
                RecordBatch::try_new(
                    self.payload.clone(),
                    vec![datafusion::arrow::array::new_null_array(
                        self.payload.field(0).data_type(),
                        n,
                    )],
                )
                .map_err(|e| e.to_string())?,
            ),
        };
        let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(self.payload.clone()));
        if batch.num_rows() != n {
            return Err(format!(
                "expected one row per message, got {} from {n}",
                batch.num_rows()
            ));
        }
        Ok(batch)
    }

    /// `lines` through Arrow's JSON decoder into `schema`.
    fn json(
        &self,
        lines: &Lines,
        schema: &SchemaRef,
    ) -> std::result::Result<Option<RecordBatch>, String> {
        let mut decoder = datafusion::arrow::json::ReaderBuilder::new(schema.clone())
            .with_batch_size(lines.rows.len() + 1)
            .build_decoder()
            .map_err(|e| e.to_string())?;
        feed(&lines.buf, |b| decoder.decode(b))?;
        decoder.flush().map_err(|e| e.to_string())
    }

    /// `lines` decoded with their times as `text`, then the times parsed
    /// into the payload's types.
    fn json_with_text_times(
        &self,
        lines: &Lines,
        text: &SchemaRef,
    ) -> std::result::Result<Option<RecordBatch>, String> {
        let Some(batch) = self.json(lines, text)? else {
            return Ok(None);
        };
        let columns = batch
            .columns()
            .iter()
            .zip(self.payload.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    crate::timestamps::parse(column, field.data_type()).map_err(|e| e.to_string())
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.payload.clone(), columns)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// The output batch: payload columns and metadata in declared order.
    fn assemble(
        &self,
        records: &[Record<'_>],
        payload: &RecordBatch,
        rows: &[(u32, i8)],
    ) -> DfResult<RecordBatch> {
        let record = |row: &(u32, i8)| &records[row.0 as usize];
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 1);
        for (column, field) in self.columns.iter().zip(self.schema.fields()) {
            let array: ArrayRef = match column {
                Column::Payload(i) => payload.column(*i).clone(),
                Column::Meta(Meta::Partition) => Arc::new(Int32Array::from_iter_values(
                    rows.iter().map(|r| record(r).partition),
                )),
                Column::Meta(Meta::Offset) => Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| record(r).offset),
                )),
                Column::Meta(Meta::Timestamp) => Arc::new(TimestampMillisecondArray::from_iter(
                    rows.iter().map(|r| record(r).timestamp_ms),
                )),
                Column::Meta(Meta::Key) if field.data_type() == &DataType::Utf8 => {
                    Arc::new(StringArray::from_iter(rows.iter().map(|r| {
                        record(r)
                            .key
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                    })))
                }
                Column::Meta(Meta::Key) => {
                    Arc::new(BinaryArray::from_iter(rows.iter().map(|r| record(r).key)))
                }
            };
            columns.push(if array.data_type() == field.data_type() {
                array
            } else {
                cast(&array, field.data_type())?
            });
        }
        if self.format == Format::Raw {
            // The payload column, straight from the messages.
            let index = self
                .columns
                .iter()
                .position(|c| matches!(c, Column::Payload(_)))
                .unwrap_or(0);
            let values = rows.iter().map(|r| record(r).payload);
            columns[index] = match self.schema.field(index).data_type() {
                DataType::Utf8 => Arc::new(StringArray::from_iter(
                    values.map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned())),
                )),
                _ => Arc::new(BinaryArray::from_iter(values)),
            };
        }
        if self.format.changelog() {
            columns.push(Arc::new(Int8Array::from_iter_values(
                rows.iter().map(|r| r.1),
            )));
        }
        Ok(RecordBatch::try_new(self.output_schema(), columns)?)
    }
}

/// `payload` with each zone-less timestamp column as text (`None` if it
/// has none).
fn text_times(payload: &SchemaRef) -> Option<SchemaRef> {
    let zoneless = |f: &Arc<Field>| matches!(f.data_type(), DataType::Timestamp(_, None));
    payload.fields().iter().any(zoneless).then(|| {
        Arc::new(Schema::new(
            payload
                .fields()
                .iter()
                .map(|f| {
                    if zoneless(f) {
                        Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8))
                    } else {
                        f.clone()
                    }
                })
                .collect::<Vec<_>>(),
        ))
    })
}

/// Give all of `buf` to a decoder that may take it in parts.
fn feed(
    mut buf: &[u8],
    mut decode: impl FnMut(&[u8]) -> std::result::Result<usize, datafusion::arrow::error::ArrowError>,
) -> std::result::Result<(), String> {
    while !buf.is_empty() {
        let read = decode(buf).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the decoder took no more input".into());
        }
        buf = &buf[read..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::encode::Encoder;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int8Type;
    use datafusion::arrow::datatypes::TimeUnit;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("auction", DataType::Int64, true),
            Field::new("price", DataType::Int64, true),
            Field::new("_partition", DataType::Int32, true),
            Field::new("_offset", DataType::Int64, true),
            Field::new(
                "_kafka_timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
        ]))
    }

    fn record(payload: &[u8], offset: i64) -> Record<'_> {
        Record {
            retract: None,
            payload: Some(payload),
            key: None,
            partition: 2,
            offset,
            timestamp_ms: Some(1_000 + offset),
        }
    }

    #[test]
    fn json_rows_with_metadata_and_bad_messages_apart() {
        let decoder = Decoder::new(Format::Json, schema()).expect("decoder");
        let records = [
            record(br#"{"auction": 1, "price": 10}"#, 5),
            record(b"{not json", 6),
            record(br#"{"auction": 2, "price": 20}"#, 7),
        ];
        let (batch, bad) = decoder.decode(&records).expect("decode");
        let batch = batch.expect("good rows");
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].index, 1);
        let offsets = batch
            .column(3)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!(offsets.values().to_vec(), vec![5, 7]);
        let partitions = batch
            .column(2)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        assert_eq!(partitions.value(0), 2);
    }

    /// The times of `payloads` decoded by a fresh decoder, and whether it
    /// still reads times as text afterwards.
    fn times(payloads: &[&[u8]]) -> (Vec<Option<i64>>, Vec<usize>, bool) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        let decoder = Decoder::new(Format::Json, schema).expect("decoder");
        let records: Vec<Record<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| record(p, i as i64))
            .collect();
        let (batch, bad) = decoder.decode(&records).expect("decode");
        let values = batch.map_or_else(Vec::new, |b| {
            b.column(1)
                .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>()
                .iter()
                .collect()
        });
        let bad = bad.iter().map(|b| b.index).collect();
        (values, bad, decoder.fast_times.load(Ordering::Relaxed))
    }

    #[test]
    fn json_times_as_text_are_what_arrow_reads_and_other_shapes_fall_back() {
        // The common shape, a NULL and a missing time: read as text.
        let (values, bad, fast) = times(&[
            br#"{"id": 1, "ts": "2024-03-01 12:00:00.250"}"#,
            br#"{"id": 2, "ts": null}"#,
            br#"{"id": 3}"#,
            br#"{"id": 4, "ts": "2024-03-01T12:00:01"}"#,
        ]);
        assert_eq!(
            values,
            vec![Some(1_709_294_400_250), None, None, Some(1_709_294_401_000)]
        );
        assert!(bad.is_empty());
        assert!(fast);
        // A number (milliseconds, as Arrow's decoder reads it): the batch is
        // read again by Arrow, and the stream stays with Arrow's reading.
        let (values, bad, fast) = times(&[
            br#"{"id": 1, "ts": "2024-03-01 12:00:00"}"#,
            br#"{"id": 2, "ts": 1709294400500}"#,
        ]);
        assert_eq!(
            values,
            vec![Some(1_709_294_400_000), Some(1_709_294_400_500)]
        );
        assert!(bad.is_empty());
        assert!(!fast);
        // A bad message is a bad message, and the fast path stays.
        let (values, bad, fast) = times(&[
            br#"{"id": 1, "ts": "2024-03-01 12:00:00"}"#,
            b"{not json",
            br#"{"id": 3, "ts": "not a time"}"#,
        ]);
        assert_eq!(values, vec![Some(1_709_294_400_000)]);
        assert_eq!(bad, vec![1, 2]);
        assert!(fast);
    }

    #[test]
    fn csv_rows_and_a_short_line_is_bad() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let decoder = Decoder::new(Format::Csv { delimiter: b',' }, schema).expect("decoder");
        let records = [record(b"1,x", 0), record(b"2", 1), record(b"3,\"y,z\"", 2)];
        let (batch, bad) = decoder.decode(&records).expect("decode");
        assert_eq!(batch.expect("rows").num_rows(), 2);
        assert_eq!(bad.iter().map(|b| b.index).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn debezium_updates_are_a_delete_and_an_insert() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]));
        let decoder = Decoder::new(Format::DebeziumJson, schema).expect("decoder");
        let records = [
            record(br#"{"before":null,"after":{"id":1,"v":"a"},"op":"c"}"#, 0),
            record(
                br#"{"payload":{"before":{"id":1,"v":"a"},"after":{"id":1,"v":"b"},"op":"u"}}"#,
                1,
            ),
            record(br#"{"before":{"id":1,"v":"b"},"after":null,"op":"d"}"#, 2),
            record(br#"{"op":"x"}"#, 3),
        ];
        let (batch, bad) = decoder.decode(&records).expect("decode");
        let batch = batch.expect("rows");
        let ops = batch.column(2).as_primitive::<Int8Type>();
        assert_eq!(ops.values().to_vec(), vec![1, -1, 1, -1]);
        assert_eq!(bad.len(), 1);
    }

    #[test]
    fn encoded_changes_decode_back() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]));
        let encoder = Encoder::new(Format::DebeziumJson, schema.clone(), &["id".into()], true)
            .expect("encoder");
        let batch = RecordBatch::try_new(
            weir_runtime::operators::aggregate::changelog_schema(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 1])),
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Int8Array::from(vec![-1, 1])),
            ],
        )
        .expect("batch");
        let messages = encoder.encode(&batch).expect("encode");
        assert_eq!(messages[0].0.as_deref(), Some(&br#"{"id":1}"#[..]));
        let decoder = Decoder::new(Format::DebeziumJson, schema).expect("decoder");
        let records: Vec<Record<'_>> = messages.iter().map(|m| record(&m.1, 0)).collect();
        let (decoded, bad) = decoder.decode(&records).expect("decode");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(decoded.expect("rows"), batch);
    }
}
