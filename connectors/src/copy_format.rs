//! COPY data in Postgres's text and csv formats, parsed into Arrow.
//!
//! Data arrives in arbitrary pieces (psql sends a message per line, drivers
//! per buffer). [`CopyReader::cut`] keeps what is left of an unfinished
//! record and hands out runs of whole records; [`parse`] turns one run into
//! a batch of the table's columns, so runs can be parsed on worker threads
//! while more data arrives.
//!
//! Each column is first read as text, then cast to its type; a value that
//! does not cast is reported as Postgres reports it (`22P02`, with the line
//! and column in the context). The parser is written here rather than taken
//! from a csv crate because Postgres's csv has a rule csv crates do not
//! expose: an unquoted empty field is NULL, a quoted one the empty string.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray, new_null_array};
use datafusion::arrow::buffer::{Buffer, NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{ConnectorError, Result};

/// Parse when this much data is waiting.
const CUT_BYTES: usize = 4 << 20;

/// Which COPY format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// Tab-separated, backslash escapes, `\N` for NULL.
    Text,
    /// Comma-separated, `"` quoting, unquoted empty for NULL.
    Csv,
}

/// `COPY ... WITH (...)` options.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// The format.
    pub format: CopyFormat,
    /// Field separator.
    pub delimiter: u8,
    /// The text of a NULL.
    pub null: String,
    /// The first line is a header (csv only).
    pub header: bool,
    /// Quote character (csv).
    pub quote: u8,
    /// Escape character inside quotes (csv).
    pub escape: u8,
}

impl CopyOptions {
    /// The defaults of a format.
    pub fn new(format: CopyFormat) -> Self {
        match format {
            CopyFormat::Text => Self {
                format,
                delimiter: b'\t',
                null: "\\N".into(),
                header: false,
                quote: b'"',
                escape: b'"',
            },
            CopyFormat::Csv => Self {
                format,
                delimiter: b',',
                null: String::new(),
                header: false,
                quote: b'"',
                escape: b'"',
            },
        }
    }
}

/// What a run of records goes into.
#[derive(Debug, Clone)]
pub struct CopyTarget {
    /// The table (for messages).
    pub table: String,
    /// The table's columns.
    pub schema: SchemaRef,
    /// Which table columns the data's fields are, in order.
    pub columns: Vec<usize>,
}

/// Whole records, and the line number of the first.
#[derive(Debug)]
pub struct Run {
    bytes: Vec<u8>,
    first_line: u64,
}

/// Splits incoming data into runs of whole records.
#[derive(Debug)]
pub struct CopyReader {
    options: CopyOptions,
    buf: Vec<u8>,
    /// Lines handed out so far.
    line: u64,
    skip_header: bool,
    /// `\.` was seen: the rest is ignored.
    ended: bool,
}

impl CopyReader {
    /// A reader for data in `options`' format.
    pub fn new(options: CopyOptions) -> Self {
        Self {
            skip_header: options.header,
            options,
            buf: Vec::new(),
            line: 0,
            ended: false,
        }
    }

    /// Add data; returns a run once enough whole records are waiting (or
    /// all of them when `last`).
    pub fn push(&mut self, data: &[u8]) -> Option<Run> {
        if !self.ended {
            self.buf.extend_from_slice(data);
        }
        if self.buf.len() < CUT_BYTES {
            return None;
        }
        self.cut()
    }

    /// The remaining records, at the end of the data.
    pub fn finish(&mut self) -> Option<Run> {
        if !self.buf.is_empty() && !self.buf.ends_with(b"\n") {
            self.buf.push(b'\n');
        }
        self.cut()
    }

    fn cut(&mut self) -> Option<Run> {
        let (end, lines) = match self.options.format {
            CopyFormat::Text => {
                let end = self.buf.iter().rposition(|&b| b == b'\n').map(|p| p + 1)?;
                (end, None)
            }
            CopyFormat::Csv => last_record_end(&self.buf, self.options.quote, self.options.escape)
                .map(|(end, lines)| (end, Some(lines)))?,
        };
        let mut bytes: Vec<u8> = if end == self.buf.len() {
            std::mem::take(&mut self.buf)
        } else {
            let rest = self.buf.split_off(end);
            std::mem::replace(&mut self.buf, rest)
        };
        let lines = lines.unwrap_or_else(|| bytes.iter().filter(|&&b| b == b'\n').count() as u64);
        let mut first_line = self.line + 1;
        self.line += lines;
        if self.skip_header {
            self.skip_header = false;
            let header_end = match self.options.format {
                CopyFormat::Csv => {
                    first_record_end(&bytes, self.options.quote, self.options.escape)
                }
                CopyFormat::Text => bytes.iter().position(|&b| b == b'\n').map(|p| p + 1),
            }
            .unwrap_or(bytes.len());
            first_line += bytes[..header_end].iter().filter(|&&b| b == b'\n').count() as u64;
            bytes.drain(..header_end);
        }
        // `\.` on a line of its own ends the data.
        if let Some(at) = end_marker(&bytes) {
            bytes.truncate(at);
            self.ended = true;
            self.buf.clear();
        }
        (!bytes.is_empty()).then_some(Run { bytes, first_line })
    }
}

fn end_marker(bytes: &[u8]) -> Option<usize> {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            let line = &bytes[start..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line == b"\\." {
                return Some(start);
            }
            start = i + 1;
        }
    }
    None
}

/// The end of the last whole csv record (after its newline), and the lines
/// up to it.
fn last_record_end(buf: &[u8], quote: u8, escape: u8) -> Option<(usize, u64)> {
    let mut in_quotes = false;
    let mut end = None;
    let mut lines = 0;
    let mut lines_at_end = 0;
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        if in_quotes {
            if b == escape && escape != quote && buf.get(i + 1) == Some(&quote) {
                i += 1;
            } else if b == quote {
                in_quotes = false;
            }
        } else if b == quote {
            in_quotes = true;
        }
        if b == b'\n' {
            lines += 1;
            if !in_quotes {
                end = Some(i + 1);
                lines_at_end = lines;
            }
        }
        i += 1;
    }
    end.map(|e| (e, lines_at_end))
}

fn first_record_end(buf: &[u8], quote: u8, escape: u8) -> Option<usize> {
    let mut in_quotes = false;
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        if in_quotes {
            if b == escape && escape != quote && buf.get(i + 1) == Some(&quote) {
                i += 1;
            } else if b == quote {
                in_quotes = false;
            }
        } else if b == quote {
            in_quotes = true;
        } else if b == b'\n' {
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// Text columns being filled.
struct Columns {
    values: Vec<Vec<u8>>,
    offsets: Vec<Vec<i32>>,
    valid: Vec<Vec<bool>>,
}

impl Columns {
    fn new(n: usize, rows: usize, bytes: usize) -> Self {
        Self {
            values: (0..n)
                .map(|_| Vec::with_capacity(bytes / n.max(1)))
                .collect(),
            offsets: (0..n)
                .map(|_| {
                    let mut o = Vec::with_capacity(rows + 1);
                    o.push(0);
                    o
                })
                .collect(),
            valid: (0..n).map(|_| Vec::with_capacity(rows)).collect(),
        }
    }

    fn end_field(&mut self, column: usize, valid: bool) {
        self.offsets[column].push(self.values[column].len() as i32);
        self.valid[column].push(valid);
    }
}

/// Parse a run into a batch of the target table's columns.
pub fn parse(run: Run, options: &CopyOptions, target: &CopyTarget) -> Result<RecordBatch> {
    let n = target.columns.len();
    let approx_rows = run.bytes.iter().filter(|&&b| b == b'\n').count();
    let mut columns = Columns::new(n, approx_rows, run.bytes.len());
    // Line of each row, for messages.
    let mut row_lines: Vec<u64> = Vec::with_capacity(approx_rows);
    let mut line = run.first_line;
    let bytes = &run.bytes;
    let mut pos = 0;
    while pos < bytes.len() {
        row_lines.push(line);
        let start = pos;
        let (next, lines) = match options.format {
            CopyFormat::Text => text_record(bytes, pos, options, &mut columns, n),
            CopyFormat::Csv => csv_record(bytes, pos, options, &mut columns, n),
        }
        .map_err(|message| bad_data(target, line, message, &bytes[start..]))?;
        line += lines;
        pos = next;
    }
    let rows = row_lines.len();
    let mut arrays: Vec<Option<ArrayRef>> = vec![None; target.schema.fields().len()];
    for (i, &column) in target.columns.iter().enumerate() {
        let text = StringArray::try_new(
            OffsetBuffer::new(std::mem::take(&mut columns.offsets[i]).into()),
            Buffer::from_vec(std::mem::take(&mut columns.values[i])),
            Some(NullBuffer::from(std::mem::take(&mut columns.valid[i]))),
        )
        .map_err(|_| ConnectorError::InvalidText {
            message: "invalid byte sequence for encoding \"UTF8\"".into(),
            context: format!("COPY {}", target.table),
        })?;
        let field = target.schema.field(column);
        arrays[column] = Some(typed(text, field.data_type(), |row, value| {
            ConnectorError::InvalidText {
                message: format!(
                    "invalid input syntax for type {}: \"{value}\"",
                    pg_type_name(field.data_type())
                ),
                context: format!(
                    "COPY {}, line {}, column {}: \"{value}\"",
                    target.table,
                    row_lines[row],
                    field.name()
                ),
            }
        })?);
    }
    let arrays: Vec<ArrayRef> = arrays
        .into_iter()
        .enumerate()
        .map(|(i, a)| a.unwrap_or_else(|| new_null_array(target.schema.field(i).data_type(), rows)))
        .collect();
    let nullable = Arc::new(datafusion::arrow::datatypes::Schema::new(
        target
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(nullable, arrays).map_err(|e| ConnectorError::DataFusion(e.into()))
}

/// Cast text to `data_type`; the first value that does not cast is reported.
fn typed(
    text: StringArray,
    data_type: &DataType,
    error: impl Fn(usize, &str) -> ConnectorError,
) -> Result<ArrayRef> {
    if *data_type == DataType::Utf8 {
        return Ok(Arc::new(text));
    }
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    let cast = cast_with_options(&text, data_type, &safe)
        .map_err(|e| ConnectorError::DataFusion(e.into()))?;
    if cast.null_count() != text.null_count() {
        for row in 0..text.len() {
            if text.is_valid(row) && cast.is_null(row) {
                return Err(error(row, text.value(row)));
            }
        }
    }
    Ok(cast)
}

/// Postgres's name for a column type, in messages.
pub fn pg_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => "numeric".into(),
        other => other.to_string().to_lowercase(),
    }
}

fn bad_data(target: &CopyTarget, line: u64, message: String, rest: &[u8]) -> ConnectorError {
    let text = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    ConnectorError::BadCopyData {
        message,
        context: format!(
            "COPY {}, line {line}: \"{}\"",
            target.table,
            String::from_utf8_lossy(text)
        ),
    }
}

/// One text-format record from `pos`; returns the position after it and
/// the lines it took (always 1).
fn text_record(
    bytes: &[u8],
    pos: usize,
    options: &CopyOptions,
    columns: &mut Columns,
    n: usize,
) -> std::result::Result<(usize, u64), String> {
    let end = bytes[pos..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| pos + p);
    let mut line = &bytes[pos..end];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    let null = options.null.as_bytes();
    let mut field = 0;
    let mut start = 0;
    loop {
        let stop = line[start..]
            .iter()
            .position(|&b| b == options.delimiter)
            .map_or(line.len(), |p| start + p);
        if field >= n {
            return Err("extra data after last expected column".into());
        }
        let raw = &line[start..stop];
        if raw == null {
            columns.end_field(field, false);
        } else {
            unescape_into(raw, &mut columns.values[field]);
            columns.end_field(field, true);
        }
        field += 1;
        if stop == line.len() {
            break;
        }
        start = stop + 1;
    }
    if field < n {
        return Err(format!("missing data for column {}", field + 1));
    }
    Ok((end + 1, 1))
}

fn unescape_into(raw: &[u8], out: &mut Vec<u8>) {
    if !raw.contains(&b'\\') {
        out.extend_from_slice(raw);
        return;
    }
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 == raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                let mut digits = 1;
                while digits < 3 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                    value = value * 8 + u32::from(raw[i] - b'0');
                    i += 1;
                    digits += 1;
                }
                out.push(value as u8);
            }
            b'x' if i < raw.len() && raw[i].is_ascii_hexdigit() => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 2 && i < raw.len() && raw[i].is_ascii_hexdigit() {
                    value = value * 16 + (raw[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    digits += 1;
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
}

/// One csv record from `pos`; returns the position after it and the lines
/// it took.
fn csv_record(
    bytes: &[u8],
    mut pos: usize,
    options: &CopyOptions,
    columns: &mut Columns,
    n: usize,
) -> std::result::Result<(usize, u64), String> {
    let null = options.null.as_bytes();
    let (quote, escape, delimiter) = (options.quote, options.escape, options.delimiter);
    let mut field = 0;
    let mut lines = 1;
    loop {
        if field >= n {
            return Err("extra data after last expected column".into());
        }
        let out = &mut columns.values[field];
        let before = out.len();
        let mut quoted = false;
        let mut raw_start = pos;
        // One field: runs of unquoted and quoted text up to a delimiter or
        // the end of the line.
        let ended_line = loop {
            match bytes.get(pos) {
                None => break true,
                Some(&b'\n') => {
                    pos += 1;
                    break true;
                }
                Some(&b) if b == delimiter => {
                    pos += 1;
                    break false;
                }
                Some(&b) if b == quote => {
                    quoted = true;
                    pos += 1;
                    loop {
                        match bytes.get(pos) {
                            None => return Err("unterminated CSV quoted field".into()),
                            Some(&b) if b == escape && bytes.get(pos + 1) == Some(&quote) => {
                                out.push(quote);
                                pos += 2;
                            }
                            Some(&b) if b == quote => {
                                pos += 1;
                                break;
                            }
                            Some(&b) => {
                                if b == b'\n' {
                                    lines += 1;
                                }
                                out.push(b);
                                pos += 1;
                            }
                        }
                    }
                    raw_start = usize::MAX;
                }
                // The \r of a CRLF line end is not data.
                Some(&b'\r') if bytes.get(pos + 1) == Some(&b'\n') => pos += 1,
                Some(&b) => {
                    out.push(b);
                    pos += 1;
                }
            }
        };
        let is_null = !quoted && raw_start != usize::MAX && &out[before..] == null;
        if is_null {
            out.truncate(before);
        }
        columns.end_field(field, !is_null);
        field += 1;
        if ended_line {
            break;
        }
    }
    if field < n {
        return Err(format!("missing data for column {}", field + 1));
    }
    Ok((pos, lines))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{Field, Int64Type, Schema};

    use super::*;

    fn target() -> CopyTarget {
        CopyTarget {
            table: "t".into(),
            schema: Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Utf8, true),
            ])),
            columns: vec![0, 1],
        }
    }

    fn read(format: CopyFormat, header: bool, pieces: &[&str]) -> Result<Vec<RecordBatch>> {
        let mut options = CopyOptions::new(format);
        options.header = header;
        let mut reader = CopyReader::new(options.clone());
        let mut runs = Vec::new();
        for piece in pieces {
            runs.extend(reader.push(piece.as_bytes()));
        }
        runs.extend(reader.finish());
        runs.into_iter()
            .map(|run| parse(run, &options, &target()))
            .collect()
    }

    #[test]
    fn text_with_escapes_and_nulls() {
        let batches = read(
            CopyFormat::Text,
            false,
            &["1\ta\\tb\n2\t", "\\N\n3\tx\\\\y\n\\.\n"],
        )
        .expect("parse");
        let batch = &batches[0];
        assert_eq!(
            batch.column(0).as_ref(),
            &Int64Array::from(vec![1, 2, 3]) as &dyn Array
        );
        let names = batch.column(1).as_string::<i32>();
        assert_eq!(names.value(0), "a\tb");
        assert!(names.is_null(1));
        assert_eq!(names.value(2), "x\\y");
    }

    #[test]
    fn csv_quotes_header_and_empty_versus_null() {
        let batches = read(
            CopyFormat::Csv,
            true,
            &["id,name\n1,\"a,\"\"b\"\"\"\n2,\n3,\"\"\n4,\"two\nlines\"\r\n"],
        )
        .expect("parse");
        let batch = &batches[0];
        assert_eq!(
            batch.column(0).as_primitive::<Int64Type>().values(),
            &[1, 2, 3, 4]
        );
        let names = batch.column(1).as_string::<i32>();
        assert_eq!(names.value(0), "a,\"b\"");
        assert!(names.is_null(1));
        assert_eq!(names.value(2), "");
        assert_eq!(names.value(3), "two\nlines");
    }

    #[test]
    fn bad_values_say_where() {
        let err = read(CopyFormat::Csv, false, &["1,a\nx,b\n"]).expect_err("bad int");
        let ConnectorError::InvalidText { message, context } = err else {
            panic!("wrong error {err:?}")
        };
        assert_eq!(message, "invalid input syntax for type bigint: \"x\"");
        assert_eq!(context, "COPY t, line 2, column id: \"x\"");
        let err = read(CopyFormat::Text, false, &["1\ta\tb\n"]).expect_err("extra");
        assert!(err.to_string().contains("extra data"), "{err}");
        let err = read(CopyFormat::Text, false, &["1\n"]).expect_err("missing");
        assert!(err.to_string().contains("missing data"), "{err}");
    }
}
