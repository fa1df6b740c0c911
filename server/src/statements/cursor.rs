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

use datafusion::arrow::array::RecordBatch;
use datafusion::physical_plan::memory::MemoryStream;
use futures::{FutureExt, StreamExt};
use weir_planner::parser::FetchCount;

use crate::cursors::Cursor;
use crate::error::{Result, ServerError};
use crate::output::Output;
use crate::registry::Registry;
use crate::session::Session;

/// `DECLARE name CURSOR FOR SUBSCRIBE TO view`.
pub fn declare(registry: &Registry, session: &Session, name: &str, view: &str) -> Result<Output> {
    if session.cursors().is_open(name) {
        return Err(ServerError::DuplicateCursor {
            name: name.to_string(),
        });
    }
    let Output::Subscribe { batches, .. } = super::subscribe::subscribe(registry, view, false)?
    else {
        return Err(ServerError::internal("SUBSCRIBE gave no rows"));
    };
    session.cursors().open(name, batches)?;
    Ok(Output::command("DECLARE CURSOR"))
}

/// `CLOSE name` / `CLOSE ALL`.
pub fn close(session: &Session, name: Option<&str>) -> Result<Output> {
    match name {
        None => session.cursors().close_all(),
        Some(name) => {
            session.cursors().take(name)?;
        }
    }
    Ok(Output::command("CLOSE CURSOR"))
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
    let mut cursor = session.cursors().take(name)?;
    let schema = cursor.batches.schema();
    let limit = match count {
        FetchCount::Rows(n) => usize::try_from(n).unwrap_or(usize::MAX),
        FetchCount::All => usize::MAX,
    };
    let taken = take(&mut cursor, limit, timeout).await;
    session.cursors().put_back(name, cursor);
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
