//! COPY text format out: `COPY (SUBSCRIBE TO v) TO STDOUT`.
//!
//! Each row is one line, columns separated by tabs, NULL as `\N`, and
//! backslash, tab, newline and carriage return escaped, as Postgres writes
//! COPY text. Values print as in query results (`pg_text`).

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::Result;

use crate::pg_text;

/// The COPY text lines of a batch.
pub fn text_rows(batch: &RecordBatch, time_zone: &str) -> Result<Vec<u8>> {
    let rewrite: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| pg_text::needs_rewrite(batch.column(i).data_type()))
        .collect();
    let batch = pg_text::rewrite_batch(batch, &rewrite, time_zone);
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(batch.num_rows() * 32);
    for row in 0..batch.num_rows() {
        for (i, column) in batch.columns().iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            if column.is_null(row) {
                out.extend_from_slice(b"\\N");
                continue;
            }
            if *column.data_type() == DataType::Boolean {
                out.push(if column.as_boolean().value(row) {
                    b't'
                } else {
                    b'f'
                });
                continue;
            }
            for byte in formatters[i].value(row).to_string().bytes() {
                match byte {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b => out.push(b),
                }
            }
        }
        out.push(b'\n');
    }
    Ok(out)
}
