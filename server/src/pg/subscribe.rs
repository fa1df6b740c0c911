//! Sending a subscription over the extended protocol: rows as they come,
//! a portal at a time (`max_rows`), until the job ends or the client
//! cancels.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{FutureExt, Sink, SinkExt, StreamExt};
use pgwire::api::portal::{Portal, PortalExecutionState};
use pgwire::api::results::Tag;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionHandle, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::copy_protocol::{copy_out_data, stream_copy, text_copy};
use super::extended::Prepared;
use super::handler::{PgService, format_options, session_of};
use crate::error::ServerError;
use crate::output::Output;
use crate::pg::encode;

impl PgService {
    /// Execute on a `SUBSCRIBE` portal. pgwire's own Execute would gather
    /// `max_rows` rows (all of them when 0) before sending any, which a
    /// subscription may never have; here rows go out as they come:
    /// - `max_rows` 0: every row, flushed whenever the next one is not
    ///   there yet, until the job ends or the client cancels;
    /// - `max_rows` n: up to n rows, waiting for at least one, then
    ///   `PortalSuspended` (the next Execute goes on from there), as a
    ///   `FETCH n` on a cursor does.
    pub(super) async fn execute_subscription<C>(
        &self,
        client: &mut C,
        portal: &Portal<Arc<Prepared>>,
        max_rows: usize,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let state = portal.state();
        let mut state = state.lock().await;
        if matches!(*state, PortalExecutionState::Initial) {
            let session = session_of(client);
            let output = self
                .engine
                .execute(&session, &portal.statement.statement.parsed, None)
                .await?;
            let Output::Subscribe { batches, copy } = output else {
                return Err(ServerError::internal("SUBSCRIBE gave no rows").into());
            };
            if copy {
                // COPY data has no row limit: it streams to the end.
                let data = copy_out_data(batches, text_copy(), session.time_zone());
                let cancel = cancel_receiver(client).await;
                let rows = until_cancelled(cancel, stream_copy(client, data)).await??;
                *state = PortalExecutionState::Finished;
                client
                    .send(PgWireBackendMessage::CommandComplete(
                        Tag::new("COPY").with_rows(rows).into(),
                    ))
                    .await?;
                client.set_state(PgWireConnectionState::ReadyForQuery);
                return Ok(());
            }
            *state = PortalExecutionState::Suspended(encode::query_response(
                batches,
                &portal.result_column_format,
                format_options(client),
                session.time_zone(),
            )?);
        }
        let pushed = match &mut *state {
            PortalExecutionState::Suspended(response) => {
                let cancel = cancel_receiver(client).await;
                until_cancelled(cancel, push_rows(client, &mut response.data_rows, max_rows))
                    .await??
            }
            _ => Pushed {
                rows: 0,
                ended: true,
            },
        };
        if pushed.ended {
            *state = PortalExecutionState::Finished;
            client
                .send(PgWireBackendMessage::CommandComplete(
                    Tag::new("SELECT").with_rows(pushed.rows).into(),
                ))
                .await?;
        } else {
            client
                .send(PgWireBackendMessage::PortalSuspended(
                    pgwire::messages::extendedquery::PortalSuspended::new(),
                ))
                .await?;
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }
}

/// The receiver of the connection's next cancel request (pgwire keeps one
/// per connection, and fires it on a CancelRequest with its key).
pub(super) async fn cancel_receiver<C: ClientInfo>(
    client: &C,
) -> Option<futures::channel::oneshot::Receiver<()>> {
    let handle = client.session_extensions().get::<Arc<ConnectionHandle>>()?;
    Some(handle.start_query().await)
}

/// Run `work` until it ends or the client cancels it.
pub(super) async fn until_cancelled<T>(
    cancel: Option<futures::channel::oneshot::Receiver<()>>,
    work: impl std::future::Future<Output = T>,
) -> PgWireResult<T> {
    let Some(cancel) = cancel else {
        return Ok(work.await);
    };
    tokio::select! {
        done = work => Ok(done),
        _ = cancel => Err(PgWireError::QueryCanceled),
    }
}

/// What [`push_rows`] sent.
pub(super) struct Pushed {
    pub(super) rows: usize,
    /// The rows ended (the subscription's job finished).
    pub(super) ended: bool,
}

/// Send rows as they come, flushing whenever the next row is not there yet,
/// so a subscriber sees each change at once and a burst still goes out in
/// few writes. `limit` 0: until the rows end; n: up to n rows, waiting
/// only for the first.
pub(super) async fn push_rows<C>(
    client: &mut C,
    rows: &mut pgwire::api::results::SendableRowStream,
    limit: usize,
) -> PgWireResult<Pushed>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut sent = 0;
    loop {
        if limit > 0 && sent == limit {
            return Ok(Pushed {
                rows: sent,
                ended: false,
            });
        }
        let row = match rows.next().now_or_never() {
            Some(row) => row,
            None if limit > 0 && sent > 0 => {
                return Ok(Pushed {
                    rows: sent,
                    ended: false,
                });
            }
            None => {
                client.flush().await?;
                rows.next().await
            }
        };
        match row {
            Some(row) => {
                client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                sent += 1;
            }
            None => {
                return Ok(Pushed {
                    rows: sent,
                    ended: true,
                });
            }
        }
    }
}
