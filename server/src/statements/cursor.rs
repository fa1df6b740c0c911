//! Cursors over subscriptions: `DECLARE c CURSOR FOR SUBSCRIBE TO v`,
//! `FETCH n c`, `CLOSE c`.
//!
//! A cursor holds a subscription's stream of batches, and the rest of a
//! batch a `FETCH` did not take. `FETCH n` returns up to n rows: it waits
//! until at least one is there (or its `timeout` passes), then takes what
//! else is there already, without waiting for more: a subscription never
//! ends, so "exactly n rows" could wait forever for a view that changes
//! rarely (Materialize's `FETCH` behaves the same).
//!
//! Cursors belong to the connection and close at `COMMIT` / `ROLLBACK`, as
//! Postgres's do without `WITH HOLD`. Weir does not insist on a transaction
//! block: outside one, a cursor stays open until `CLOSE` or the end of the
//! connection.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use weir_planner::parser::FetchCount;

use crate::engine::{Engine, Output};
use crate::error::{Result, ServerError};
use crate::session::Session;

/// The cursors open on one connection.
#[derive(Default)]
pub struct Cursors(Mutex<HashMap<String, Cursor>>);

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.lock().keys()).finish()
    }
}

struct Cursor {
    batches: SendableRecordBatchStream,
    /// Rows of the last batch read that no `FETCH` took yet.
    pending: Option<RecordBatch>,
}

impl Cursors {
    /// The columns `FETCH` from `name` returns, if it is open.
    pub fn schema(&self, name: &str) -> Option<SchemaRef> {
        self.0.lock().get(name).map(|c| c.batches.schema())
    }

    /// Close every cursor (the transaction ended).
    pub fn close_all(&self) {
        self.0.lock().clear();
    }
}

/// `DECLARE name CURSOR FOR SUBSCRIBE TO view`.
pub fn declare(engine: &Arc<Engine>, session: &Session, name: &str, view: &str) -> Result<Output> {
    if session.cursors().0.lock().contains_key(name) {
        return Err(ServerError::DuplicateCursor {
            name: name.to_string(),
        });
    }
    let Output::Subscribe { batches, .. } = super::stream::subscribe(engine, view, false)? else {
        return Err(ServerError::internal("SUBSCRIBE gave no rows"));
    };
    session.cursors().0.lock().insert(
        name.to_string(),
        Cursor {
            batches,
            pending: None,
        },
    );
    Ok(Output::Command {
        tag: "DECLARE CURSOR",
        rows: None,
    })
}

/// `CLOSE name` / `CLOSE ALL`.
pub fn close(session: &Session, name: Option<&str>) -> Result<Output> {
    let mut cursors = session.cursors().0.lock();
    match name {
        None => cursors.clear(),
        Some(name) => {
            if cursors.remove(name).is_none() {
                return Err(ServerError::InvalidCursorName {
                    name: name.to_string(),
                });
            }
        }
    }
    Ok(Output::Command {
        tag: "CLOSE CURSOR",
        rows: None,
    })
}

/// `FETCH count name [WITH (timeout = ...)]`.
pub async fn fetch(
    session: &Session,
    name: &str,
    count: FetchCount,
    timeout: Option<&str>,
) -> Result<Output> {
    let timeout = timeout.map(timeout_of).transpose()?;
    // Taken out while it waits, so no lock is held across an await; a FETCH
    // cancelled while waiting loses the cursor, as a cancelled statement
    // aborts the transaction (and closes its cursors) in Postgres.
    let Some(mut cursor) = session.cursors().0.lock().remove(name) else {
        return Err(ServerError::InvalidCursorName {
            name: name.to_string(),
        });
    };
    let schema = cursor.batches.schema();
    let limit = match count {
        FetchCount::Rows(n) => usize::try_from(n).unwrap_or(usize::MAX),
        FetchCount::All => usize::MAX,
    };
    let taken = take(&mut cursor, limit, timeout).await;
    session.cursors().0.lock().insert(name.to_string(), cursor);
    let batches = taken?;
    let stream = MemoryStream::try_new(batches, schema, None)
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    Ok(Output::Rows(Box::pin(stream)))
}

/// Up to `limit` rows: wait for the first (up to `timeout`), then take
/// what is there already.
async fn take(
    cursor: &mut Cursor,
    limit: usize,
    timeout: Option<std::time::Duration>,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    while cursor.pending.as_ref().is_none_or(|b| b.num_rows() == 0) {
        let next = match deadline {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline, cursor.batches.next()).await {
                    Ok(next) => next,
                    Err(_) => return Ok(out),
                }
            }
            None => cursor.batches.next().await,
        };
        match next {
            Some(batch) => {
                cursor.pending = Some(batch.map_err(|e| ServerError::from_datafusion(e, None))?)
            }
            // The subscription ended (its job finished): no more rows.
            None => return Ok(out),
        }
    }
    let mut rows = 0;
    loop {
        if let Some(batch) = cursor.pending.take() {
            let n = batch.num_rows().min(limit - rows);
            out.push(batch.slice(0, n));
            if n < batch.num_rows() {
                cursor.pending = Some(batch.slice(n, batch.num_rows() - n));
            }
            rows += n;
        }
        if rows >= limit {
            break;
        }
        // Only what is there already: the next batch, if it needs no wait.
        match cursor.batches.next().now_or_never() {
            Some(Some(batch)) => {
                cursor.pending = Some(batch.map_err(|e| ServerError::from_datafusion(e, None))?)
            }
            Some(None) | None => break,
        }
    }
    Ok(out)
}

/// `'1s'`, `'500ms'` (Materialize's style) or a Postgres interval.
fn timeout_of(text: &str) -> Result<std::time::Duration> {
    let short = [("ms", 1_000_000.0), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
        .iter()
        .find_map(|(unit, nanos)| {
            let number: f64 = text.trim().strip_suffix(unit)?.trim().parse().ok()?;
            (number >= 0.0).then(|| std::time::Duration::from_nanos((number * nanos) as u64))
        });
    if let Some(duration) = short {
        return Ok(duration);
    }
    let nanos = weir_runtime::windows::interval_nanos(text).map_err(|_| {
        ServerError::InvalidParameterValue {
            message: format!("invalid FETCH timeout: \"{text}\""),
            hint: Some("give an interval, as in WITH (timeout = '1s')".into()),
        }
    })?;
    Ok(std::time::Duration::from_nanos(nanos.max(0) as u64))
}
