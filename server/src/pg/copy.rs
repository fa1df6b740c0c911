//! COPY data out: `COPY t | (query) TO STDOUT` and `COPY (SUBSCRIBE TO v)
//! TO STDOUT`, in Postgres's text or csv format.
//!
//! Text: one line per row, columns separated by the delimiter (tab), NULL as
//! `\N`, and backslash, tab, newline and carriage return escaped. CSV: NULL
//! is an unquoted empty field, and a value is quoted when it holds the
//! delimiter, a quote, a line break, or is empty (so that it differs from
//! NULL). Values print as in query results (`pg_text`).

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::Result;
use weir_connectors::copy_format::{CopyFormat, CopyOptions};

use crate::pg_text;

/// The header line of a csv COPY with HEADER, if asked for.
pub fn header(
    batch_schema: &datafusion::arrow::datatypes::Schema,
    options: &CopyOptions,
) -> Option<Vec<u8>> {
    if !(options.header && options.format == CopyFormat::Csv) {
        return None;
    }
    let mut out = Vec::new();
    for (i, field) in batch_schema.fields().iter().enumerate() {
        if i > 0 {
            out.push(options.delimiter);
        }
        csv_value(
            &mut out,
            weir_planner::names::client_name(field.name()),
            options,
        );
    }
    out.push(b'\n');
    Some(out)
}

/// The COPY lines of a batch in `options`' format, one per row: Postgres
/// sends each row in a CopyData message of its own, and clients rely on it
/// (psycopg's `Copy.rows()`, libpq's `PQgetCopyData` loops read one row per
/// message, and would drop the others of a message holding several).
pub fn encode_rows(
    batch: &RecordBatch,
    time_zone: &str,
    options: &CopyOptions,
) -> Result<Vec<Vec<u8>>> {
    let rewrite: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| pg_text::needs_rewrite(batch.column(i).data_type()))
        .collect();
    let batch = pg_text::rewrite_batch(batch, &rewrite, time_zone);
    let format = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &format))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut lines = Vec::with_capacity(batch.num_rows());
    let mut value = String::new();
    for row in 0..batch.num_rows() {
        let mut out = Vec::with_capacity(32);
        for (i, column) in batch.columns().iter().enumerate() {
            if i > 0 {
                out.push(options.delimiter);
            }
            if column.is_null(row) {
                out.extend_from_slice(options.null.as_bytes());
                continue;
            }
            value.clear();
            if *column.data_type() == DataType::Boolean {
                value.push(if column.as_boolean().value(row) {
                    't'
                } else {
                    'f'
                });
            } else {
                use std::fmt::Write;
                let _ = write!(value, "{}", formatters[i].value(row));
            }
            match options.format {
                CopyFormat::Text => text_value(&mut out, &value, options.delimiter),
                CopyFormat::Csv => csv_value(&mut out, &value, options),
            }
        }
        out.push(b'\n');
        lines.push(out);
    }
    Ok(lines)
}

fn text_value(out: &mut Vec<u8>, value: &str, delimiter: u8) {
    for byte in value.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if b == delimiter => {
                out.push(b'\\');
                out.push(b);
            }
            b => out.push(b),
        }
    }
}

fn csv_value(out: &mut Vec<u8>, value: &str, options: &CopyOptions) {
    let needs_quotes = value.is_empty()
        || value == options.null
        || value
            .bytes()
            .any(|b| b == options.delimiter || b == options.quote || b == b'\n' || b == b'\r');
    if !needs_quotes {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    out.push(options.quote);
    for byte in value.bytes() {
        if byte == options.quote || byte == options.escape {
            out.push(options.escape);
        }
        out.push(byte);
    }
    out.push(options.quote);
}
