//! The cursors open on one connection (`DECLARE ... CURSOR FOR SUBSCRIBE`):
//! each a subscription's batches and the rows of the last one that no
//! `FETCH` took yet. The session owns them; `statements::cursor` runs the
//! statements over them.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use parking_lot::Mutex;

use crate::error::{Result, ServerError};

/// The cursors open on one connection.
#[derive(Default)]
pub struct Cursors(Mutex<HashMap<String, Cursor>>);

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.lock().keys()).finish()
    }
}

/// One open cursor.
pub struct Cursor {
    /// The subscription's batches.
    pub batches: SendableRecordBatchStream,
    /// Rows of the last batch read that no `FETCH` took yet.
    pub pending: Option<RecordBatch>,
}

impl Cursors {
    /// The columns `FETCH` from `name` returns, if it is open.
    pub fn schema(&self, name: &str) -> Option<SchemaRef> {
        self.0.lock().get(name).map(|c| c.batches.schema())
    }

    /// Close every cursor (the transaction ended, or `CLOSE ALL`).
    pub fn close_all(&self) {
        self.0.lock().clear();
    }

    /// Is a cursor called `name` open?
    pub fn is_open(&self, name: &str) -> bool {
        self.0.lock().contains_key(name)
    }

    /// Open cursor `name` over `batches`.
    pub fn open(&self, name: &str, batches: SendableRecordBatchStream) -> Result<()> {
        let mut cursors = self.0.lock();
        if cursors.contains_key(name) {
            return Err(ServerError::DuplicateCursor {
                name: name.to_string(),
            });
        }
        cursors.insert(
            name.to_string(),
            Cursor {
                batches,
                pending: None,
            },
        );
        Ok(())
    }

    /// Take cursor `name` out (to close it, or to read it without holding
    /// the lock across an await: see [`Cursors::put_back`]).
    pub fn take(&self, name: &str) -> Result<Cursor> {
        self.0
            .lock()
            .remove(name)
            .ok_or_else(|| ServerError::InvalidCursorName {
                name: name.to_string(),
            })
    }

    /// Put back a cursor taken out to be read.
    pub fn put_back(&self, name: &str, cursor: Cursor) {
        self.0.lock().insert(name.to_string(), cursor);
    }
}
