//! Records of a CSV or JSON-lines file decoded into Arrow rows, the bad ones
//! told apart from the good and said what is wrong with them.
//!
//! A block of records goes through Arrow's decoder in one pass; only when
//! that fails is each record decoded alone, and each one that still fails is
//! diagnosed in Postgres's words (`invalid input syntax for type bigint:
//! "abc"`, `missing data for column "b"`, `invalid byte sequence for
//! encoding "UTF8"`) with the column it is in. Well-formed input pays
//! nothing for the policy on bad input (as the Kafka decoder, see
//! `kafka/format.rs`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::FormatOptions;

use super::records::Block;
use crate::copy_format::pg_type_name;

/// How a file's records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Delimited text, `"` quoting.
    Csv {
        /// Field separator.
        delimiter: u8,
    },
    /// One JSON object per line.
    Json,
}

impl Syntax {
    /// The quote character the record splitter must respect.
    pub fn quote(&self) -> Option<u8> {
        match self {
            Syntax::Csv { .. } => Some(b'"'),
            Syntax::Json => None,
        }
    }
}

/// What kind of wrong a bad record is (its SQLSTATE, as Postgres's COPY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A value that is not of its column's type (22P02).
    InvalidText,
    /// A record not in the file's format: ragged, not UTF-8, not JSON, too
    /// long (22P04).
    BadFormat,
    /// Text in a timestamp column that is no timestamp (22007).
    InvalidDatetime,
    /// A timestamp with a field out of range (22008).
    DatetimeOverflow,
}

impl ProblemKind {
    /// Its SQLSTATE.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ProblemKind::InvalidText => "22P02",
            ProblemKind::BadFormat => "22P04",
            ProblemKind::InvalidDatetime => "22007",
            ProblemKind::DatetimeOverflow => "22008",
        }
    }
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Its kind.
    pub kind: ProblemKind,
    /// What is wrong, in Postgres's words.
    pub message: String,
    /// The column it is in, when one is to blame.
    pub column: Option<String>,
    /// The value to blame, when one is.
    pub value: Option<String>,
}

/// A record that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Its index in the block.
    pub index: usize,
    /// Why.
    pub problem: Problem,
}

/// Decodes records of one file format into the table's columns.
pub struct RecordDecoder {
    syntax: Syntax,
    /// The columns as declared or inferred.
    schema: SchemaRef,
    /// The columns as Arrow's decoder reads them: CSV timestamps as text,
    /// parsed afterwards by Weir's fast path (`timestamps`).
    read_schema: SchemaRef,
    timestamp_columns: Vec<usize>,
    max_record_bytes: usize,
    /// Arrow decoders that finished a block, for the next block: a new
    /// one per block grew and zeroed its buffers every time (`memset` and
    /// page faults in the reader's profile); a reused one keeps them.
    spare: parking_lot::Mutex<Vec<PooledDecoder>>,
}

/// One of Arrow's decoders and the rows it takes per batch.
struct PooledDecoder {
    decoder: ArrowDecoder,
    rows: usize,
}

enum ArrowDecoder {
    Csv(Box<datafusion::arrow::csv::reader::Decoder>),
    Json(datafusion::arrow::json::reader::Decoder),
}

impl std::fmt::Debug for RecordDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordDecoder")
            .field("syntax", &self.syntax)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl RecordDecoder {
    /// A decoder of `syntax` records into `schema`; longer records than
    /// `max_record_bytes` are bad.
    pub fn new(syntax: Syntax, schema: SchemaRef, max_record_bytes: usize) -> Self {
        let timestamp_columns: Vec<usize> = match syntax {
            Syntax::Csv { .. } => schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| matches!(f.data_type(), DataType::Timestamp(_, None)))
                .map(|(i, _)| i)
                .collect(),
            Syntax::Json => Vec::new(),
        };
        let read_schema = if timestamp_columns.is_empty() {
            schema.clone()
        } else {
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let f = f.as_ref().clone();
                    if timestamp_columns.contains(&i) {
                        f.with_data_type(DataType::Utf8)
                    } else {
                        f
                    }
                })
                .collect();
            Arc::new(Schema::new(fields))
        };
        Self {
            syntax,
            schema,
            read_schema,
            timestamp_columns,
            max_record_bytes,
            spare: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// A new Arrow decoder of `rows` rows per batch.
    fn arrow_decoder(&self, rows: usize) -> Result<PooledDecoder, String> {
        let decoder = match self.syntax {
            Syntax::Csv { delimiter } => ArrowDecoder::Csv(Box::new(
                datafusion::arrow::csv::ReaderBuilder::new(self.read_schema.clone())
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .with_batch_size(rows)
                    .build_decoder(),
            )),
            Syntax::Json => ArrowDecoder::Json(
                datafusion::arrow::json::ReaderBuilder::new(self.read_schema.clone())
                    .with_batch_size(rows)
                    .build_decoder()
                    .map_err(|e| e.to_string())?,
            ),
        };
        Ok(PooledDecoder { decoder, rows })
    }

    /// The decoded batches' schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The decoded batches' schema, borrowed.
    pub fn schema_ref(&self) -> &SchemaRef {
        &self.schema
    }

    /// How its records are written.
    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// Records longer than this are bad.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// Decode `block`: the good records as one batch (`None` if none), in
    /// file order, and the bad ones.
    pub fn decode(&self, block: &Block) -> (Option<RecordBatch>, Vec<BadRecord>) {
        // Well-formed input: the block's bytes as they are, no copy. When
        // that fails, the records gathered below are the same ones, so
        // they are not decoded together a second time.
        let whole_failed = match block.contiguous() {
            Some(lines) => match self.decode_lines(lines, block.records.len()) {
                Ok(batch) => return (Some(batch), Vec::new()),
                Err(_) => true,
            },
            None => false,
        };
        let mut bad = Vec::new();
        let mut buf = Vec::with_capacity(block.buf.len() + block.records.len());
        let mut kept = Vec::with_capacity(block.records.len());
        for (i, record) in block.records.iter().enumerate() {
            if record.oversized {
                bad.push(BadRecord {
                    index: i,
                    problem: Problem {
                        kind: ProblemKind::BadFormat,
                        message: format!(
                            "the record is longer than {} bytes",
                            self.max_record_bytes
                        ),
                        column: None,
                        value: None,
                    },
                });
                continue;
            }
            buf.extend_from_slice(block.bytes(i));
            buf.push(b'\n');
            kept.push(i);
        }
        if kept.is_empty() {
            return (None, bad);
        }
        if !whole_failed && let Ok(batch) = self.decode_lines(&buf, kept.len()) {
            return (Some(batch), bad);
        }
        // Find the bad ones: each record alone.
        let mut good = Vec::new();
        let mut one = Vec::new();
        for i in kept {
            one.clear();
            one.extend_from_slice(block.bytes(i));
            one.push(b'\n');
            match self.decode_lines(&one, 1) {
                Ok(batch) => good.push(batch),
                Err(error) => bad.push(BadRecord {
                    index: i,
                    problem: self.diagnose(block.bytes(i), error),
                }),
            }
        }
        bad.sort_by_key(|b| b.index);
        if good.is_empty() {
            return (None, bad);
        }
        match datafusion::arrow::compute::concat_batches(&self.schema, &good) {
            Ok(batch) => (Some(batch), bad),
            // Batches of one schema always concatenate.
            Err(_) => (None, bad),
        }
    }

    /// Exactly `n` rows from `n` newline-terminated records, or why not.
    fn decode_lines(&self, buf: &[u8], n: usize) -> Result<RecordBatch, String> {
        // A decoder of a block's size or more from the pool, else a new one
        // with room to spare, so blocks of about the same size reuse it.
        let spare = self.spare.lock().pop().filter(|d| d.rows > n);
        let mut arrow = match spare {
            Some(arrow) => arrow,
            None => self.arrow_decoder((n + 1).next_power_of_two())?,
        };
        let decoded = match &mut arrow.decoder {
            ArrowDecoder::Csv(decoder) => {
                feed(buf, |b| decoder.decode(b))?;
                decoder.flush().map_err(|e| e.to_string())?
            }
            ArrowDecoder::Json(decoder) => {
                feed(buf, |b| decoder.decode(b))?;
                decoder.flush().map_err(|e| e.to_string())?
            }
        };
        // Only a decoder that finished cleanly goes back: one that failed
        // may hold half a record.
        self.spare.lock().push(arrow);
        let batch = decoded.unwrap_or_else(|| RecordBatch::new_empty(self.read_schema.clone()));
        if batch.num_rows() != n {
            return Err(format!(
                "expected one row per record, got {} from {n}",
                batch.num_rows()
            ));
        }
        if self.timestamp_columns.is_empty() {
            return Ok(batch);
        }
        let mut columns = batch.columns().to_vec();
        for &i in &self.timestamp_columns {
            columns[i] = crate::timestamps::parse(&columns[i], self.schema.field(i).data_type())
                .map_err(|e| e.to_string())?;
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())
    }

    /// Why `record` does not decode alone (`error`: what Arrow said).
    fn diagnose(&self, record: &[u8], error: String) -> Problem {
        let text = match std::str::from_utf8(record) {
            Ok(text) => text,
            Err(e) => {
                let at = e.valid_up_to();
                let column = match self.syntax {
                    Syntax::Csv { delimiter } => {
                        let index = record[..at].iter().filter(|&&b| b == delimiter).count();
                        self.schema.fields().get(index).map(|f| f.name().clone())
                    }
                    Syntax::Json => None,
                };
                return Problem {
                    kind: ProblemKind::BadFormat,
                    message: format!(
                        "invalid byte sequence for encoding \"UTF8\": 0x{:02x}",
                        record[at]
                    ),
                    column,
                    value: None,
                };
            }
        };
        let found = match self.syntax {
            Syntax::Csv { delimiter } => self.diagnose_csv(text, delimiter),
            Syntax::Json => self.diagnose_json(text),
        };
        found.unwrap_or(Problem {
            kind: ProblemKind::InvalidText,
            message: error,
            column: None,
            value: None,
        })
    }

    fn diagnose_csv(&self, text: &str, delimiter: u8) -> Option<Problem> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(text.as_bytes());
        let fields = reader.records().next()?.ok()?;
        let want = self.schema.fields().len();
        if fields.len() < want {
            return Some(Problem {
                kind: ProblemKind::BadFormat,
                message: format!(
                    "missing data for column \"{}\"",
                    self.schema.field(fields.len()).name()
                ),
                column: Some(self.schema.field(fields.len()).name().clone()),
                value: None,
            });
        }
        if fields.len() > want {
            return Some(Problem {
                kind: ProblemKind::BadFormat,
                message: "extra data after last expected column".into(),
                column: None,
                value: None,
            });
        }
        fields
            .iter()
            .zip(self.schema.fields())
            .enumerate()
            .find_map(|(i, (value, field))| {
                // Arrow reads an empty field as NULL.
                if value.is_empty() {
                    return None;
                }
                let array: ArrayRef = Arc::new(StringArray::from(vec![value]));
                if self.timestamp_columns.contains(&i) {
                    crate::timestamps::parse(&array, field.data_type())
                        .err()
                        .map(|_| invalid_timestamp(field, value))
                } else {
                    cast_strict(&array, field.data_type())
                        .err()
                        .map(|_| invalid_value(field, value))
                }
            })
    }

    fn diagnose_json(&self, text: &str) -> Option<Problem> {
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => {
                return Some(Problem {
                    kind: ProblemKind::InvalidText,
                    message: format!("invalid input syntax for type json: {e}"),
                    column: None,
                    value: None,
                });
            }
        };
        let Some(object) = value.as_object() else {
            return Some(Problem {
                kind: ProblemKind::BadFormat,
                message: "expected a JSON object per line".into(),
                column: None,
                value: None,
            });
        };
        self.schema.fields().iter().find_map(|field| {
            let value = object.get(field.name())?;
            let one = Arc::new(Schema::new(vec![field.as_ref().clone()]));
            let line = serde_json::json!({ field.name(): value }).to_string();
            let mut decoder = datafusion::arrow::json::ReaderBuilder::new(one)
                .build_decoder()
                .ok()?;
            let ok =
                feed(line.as_bytes(), |b| decoder.decode(b)).is_ok() && decoder.flush().is_ok();
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            (!ok).then(|| match field.data_type() {
                DataType::Timestamp(_, _) => invalid_timestamp(field, &text),
                _ => invalid_value(field, &text),
            })
        })
    }
}

/// `invalid input syntax for type bigint: "abc"`, in `field`.
fn invalid_value(field: &Field, value: &str) -> Problem {
    Problem {
        kind: ProblemKind::InvalidText,
        message: format!(
            "invalid input syntax for type {}: \"{}\"",
            pg_type_name(field.data_type()),
            value
        ),
        column: Some(field.name().clone()),
        value: Some(value.to_string()),
    }
}

/// A value of a timestamp column that is none, in Postgres's words: out of
/// range (22008) or not a timestamp at all (22007).
fn invalid_timestamp(field: &Field, value: &str) -> Problem {
    let error = crate::timestamps::bad_timestamp(value);
    let kind = match error {
        crate::ConnectorError::TimestampOutOfRange { .. } => ProblemKind::DatetimeOverflow,
        _ => ProblemKind::InvalidDatetime,
    };
    Problem {
        kind,
        message: error.to_string(),
        column: Some(field.name().clone()),
        value: Some(value.to_string()),
    }
}

/// Arrow's cast of text, where text that does not parse is an error rather
/// than a NULL.
fn cast_strict(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, String> {
    let options = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    cast_with_options(array, to, &options).map_err(|e| e.to_string())
}

/// Give all of `buf` to a decoder that may take it in parts.
fn feed(
    mut buf: &[u8],
    mut decode: impl FnMut(&[u8]) -> Result<usize, ArrowError>,
) -> Result<(), String> {
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
    use crate::file::records::Splitter;
    use datafusion::arrow::datatypes::TimeUnit;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]))
    }

    fn block(syntax: Syntax, text: &[u8]) -> Block {
        let mut splitter = Splitter::new(syntax.quote(), 1 << 20);
        splitter.push(text);
        splitter.finish();
        splitter.take()
    }

    #[test]
    fn csv_bad_records_are_named_by_kind_and_column() {
        let syntax = Syntax::Csv { delimiter: b',' };
        let decoder = RecordDecoder::new(syntax, schema(), 1 << 20);
        let text = b"1,a,2024-01-01 00:00:00\n2,b\nx,c,2024-01-01 00:00:00\n3,d,2024-01-01 00:00:00,9\n4,\xff,2024-01-01 00:00:00\n5,e,yesterday\n6,\"f,g\",2024-01-02 00:00:00\n";
        let b = block(syntax, text);
        let (batch, bad) = decoder.decode(&b);
        assert_eq!(batch.expect("good rows").num_rows(), 2);
        let got: Vec<(usize, ProblemKind, String, Option<String>)> = bad
            .into_iter()
            .map(|b| (b.index, b.problem.kind, b.problem.message, b.problem.column))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    1,
                    ProblemKind::BadFormat,
                    "missing data for column \"at\"".into(),
                    Some("at".into())
                ),
                (
                    2,
                    ProblemKind::InvalidText,
                    "invalid input syntax for type bigint: \"x\"".into(),
                    Some("id".into())
                ),
                (
                    3,
                    ProblemKind::BadFormat,
                    "extra data after last expected column".into(),
                    None
                ),
                (
                    4,
                    ProblemKind::BadFormat,
                    "invalid byte sequence for encoding \"UTF8\": 0xff".into(),
                    Some("name".into())
                ),
                (
                    5,
                    ProblemKind::InvalidDatetime,
                    "invalid input syntax for type timestamp: \"yesterday\"".into(),
                    Some("at".into())
                ),
            ]
        );
    }

    #[test]
    fn json_bad_records_are_named_by_kind_and_column() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let decoder = RecordDecoder::new(Syntax::Json, schema, 1 << 20);
        let b = block(
            Syntax::Json,
            b"{\"id\":1,\"name\":\"a\"}\n{\"id\":\"x\"}\n{not json\n[1]\n{\"id\":2}\n",
        );
        let (batch, bad) = decoder.decode(&b);
        assert_eq!(batch.expect("good rows").num_rows(), 2);
        assert_eq!(bad.len(), 3);
        assert_eq!(bad[0].index, 1);
        assert_eq!(bad[0].problem.column.as_deref(), Some("id"));
        assert_eq!(bad[1].problem.kind, ProblemKind::InvalidText);
        assert_eq!(bad[2].problem.kind, ProblemKind::BadFormat);
    }
}
