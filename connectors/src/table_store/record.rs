//! What one log record says: a change to one table, as Arrow IPC.
//!
//! ```text
//! [table id: u64][transaction: u64][flags: u8]
//! [deleted rows: u32 length + IPC stream, 0 when none][inserted rows: IPC stream, to the end]
//! ```
//! Deleted rows are whole old rows, not just keys, so the log is a changelog
//! a view can read (an UPDATE is its old rows deleted and its new rows
//! inserted). A transaction's changes apply when its record with
//! [`COMMIT`] is read; records of a transaction that never committed (one
//! rolled back, a COPY that failed, a crash before COMMIT) are skipped.

use std::io::Cursor;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{ConnectorError, Result};

/// The record ends its transaction: apply the transaction's changes.
pub const COMMIT: u8 = 1;

/// Set the commit flag of an encoded record (see [`encode`]): a
/// transaction's last record is held back until COMMIT and then appended
/// with it.
pub fn mark_commit(payload: &mut [u8]) {
    if let Some(flags) = payload.get_mut(16) {
        *flags |= COMMIT;
    }
}

/// A change to one table.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Whole old rows that are deleted.
    pub deleted: Option<RecordBatch>,
    /// New rows.
    pub inserted: Option<RecordBatch>,
}

/// A decoded record.
#[derive(Debug)]
pub struct Record {
    /// The table it changes.
    pub table: u64,
    /// The transaction it belongs to.
    pub txn: u64,
    /// [`COMMIT`] or 0.
    pub flags: u8,
    /// What changes.
    pub change: Change,
}

/// The payload of a record.
pub fn encode(table: u64, txn: u64, flags: u8, change: &Change) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(
        64 + change
            .inserted
            .as_ref()
            .map_or(0, |b| b.get_array_memory_size()),
    );
    out.extend_from_slice(&table.to_le_bytes());
    out.extend_from_slice(&txn.to_le_bytes());
    out.push(flags);
    let deleted = match &change.deleted {
        Some(batch) if batch.num_rows() > 0 => ipc(batch)?,
        _ => Vec::new(),
    };
    let len = u32::try_from(deleted.len())
        .map_err(|_| ConnectorError::LogFailed("a change larger than 4 GiB".into()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&deleted);
    if let Some(batch) = &change.inserted
        && batch.num_rows() > 0
    {
        write_ipc(&mut out, batch)?;
    }
    Ok(out)
}

/// Read a payload back; `schema_of(table)` says the table's columns (for
/// records of tables that no longer exist it returns `None` and only the
/// header is read).
pub fn decode(payload: &[u8], schema_of: impl Fn(u64) -> Option<SchemaRef>) -> Result<Record> {
    let bad = || ConnectorError::LogFailed("a log record is malformed".into());
    let header = payload.get(..21).ok_or_else(bad)?;
    let table = u64::from_le_bytes(header[..8].try_into().map_err(|_| bad())?);
    let txn = u64::from_le_bytes(header[8..16].try_into().map_err(|_| bad())?);
    let flags = header[16];
    let deleted_len = u32::from_le_bytes(header[17..21].try_into().map_err(|_| bad())?) as usize;
    let mut change = Change::default();
    if schema_of(table).is_some() {
        let deleted = payload.get(21..21 + deleted_len).ok_or_else(bad)?;
        let inserted = &payload[21 + deleted_len..];
        change.deleted = read_ipc(deleted)?;
        change.inserted = read_ipc(inserted)?;
    }
    Ok(Record {
        table,
        txn,
        flags,
        change,
    })
}

fn ipc(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 256);
    write_ipc(&mut out, batch)?;
    Ok(out)
}

fn write_ipc(out: &mut Vec<u8>, batch: &RecordBatch) -> Result<()> {
    let mut writer = StreamWriter::try_new(out, &batch.schema())
        .map_err(|e| ConnectorError::DataFusion(e.into()))?;
    writer
        .write(batch)
        .and_then(|()| writer.finish())
        .map_err(|e| ConnectorError::DataFusion(e.into()))
}

fn read_ipc(bytes: &[u8]) -> Result<Option<RecordBatch>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let reader = StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(|e| ConnectorError::DataFusion(e.into()))?;
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(batch.map_err(|e| ConnectorError::DataFusion(e.into()))?);
    }
    match batches.len() {
        0 => Ok(None),
        1 => Ok(batches.pop()),
        _ => {
            let schema = batches[0].schema();
            datafusion::arrow::compute::concat_batches(&schema, &batches)
                .map(Some)
                .map_err(|e| ConnectorError::DataFusion(e.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .expect("batch");
        let change = Change {
            deleted: Some(batch.slice(0, 1)),
            inserted: Some(batch.clone()),
        };
        let payload = encode(7, 9, COMMIT, &change).expect("encode");
        let record = decode(&payload, |_| Some(schema.clone())).expect("decode");
        assert_eq!((record.table, record.txn, record.flags), (7, 9, COMMIT));
        assert_eq!(record.change.deleted.expect("deleted").num_rows(), 1);
        assert_eq!(record.change.inserted.expect("inserted"), batch);
        let skipped = decode(&payload, |_| None).expect("decode header");
        assert!(skipped.change.inserted.is_none());
    }
}
