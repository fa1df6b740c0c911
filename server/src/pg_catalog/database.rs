//! `pg_database` with the collation Weir has. The crate's rows say
//! `en_US.UTF-8`, but Weir orders text by its bytes (Arrow's comparison),
//! which is Postgres's `C` collation, and `SHOW lc_collate` says `C`: psql's
//! `\l` reads `datcollate` and `datctype` here, so they say `C` too.

use datafusion::arrow::array::{ArrayRef, StringArray};

use super::*;

/// The crate's `pg_database` rows (`inner`), `datcollate` and `datctype`
/// set to `C`.
pub(super) fn pg_database(inner: RecordBatch) -> Result<RecordBatch> {
    let schema = inner.schema();
    let rows = inner.num_rows();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .zip(inner.columns())
        .map(|(field, column)| match field.name().as_str() {
            "datcollate" | "datctype" => Arc::new(StringArray::from(vec!["C"; rows])) as ArrayRef,
            _ => column.clone(),
        })
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}
