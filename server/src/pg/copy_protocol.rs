//! The COPY sub-protocol: `COPY t FROM STDIN` (the data the client sends,
//! handed to the statement's [`crate::copy_in::CopyIn`]) and COPY data out
//! (`COPY ... TO STDOUT`, `COPY (SUBSCRIBE ...) TO STDOUT`), flushed batch
//! by batch. The rows' text is encoded by [`super::copy`].

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::CopyResponse;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyOutResponse};

use super::handler::PgService;
use crate::error::ServerError;

/// The COPY FROM STDIN in progress on a connection.
#[derive(Default)]
pub(super) struct CopySlot(pub(super) parking_lot::Mutex<Option<Box<crate::copy_in::CopyIn>>>);

pub(super) fn copy_slot<C: ClientInfo + ?Sized>(client: &C) -> Arc<CopySlot> {
    client
        .session_extensions()
        .get_or_insert_with(CopySlot::default)
}

/// COPY data with its column count: a batch's messages, one per row (a
/// csv header is one message of no row).
pub(super) struct CopyOutData {
    columns: usize,
    stream: futures::stream::BoxStream<'static, Result<CopyBatch, ServerError>>,
}

/// One batch as COPY messages (one per row), and its row count.
type CopyBatch = (Vec<Vec<u8>>, usize);

/// How `COPY (SUBSCRIBE ...) TO STDOUT` sends rows: Postgres's text format.
pub(super) fn text_copy() -> weir_connectors::copy_format::CopyOptions {
    weir_connectors::copy_format::CopyOptions::new(weir_connectors::copy_format::CopyFormat::Text)
}

/// Rows as COPY data: the csv header, if asked for, then one message per
/// row.
pub(super) fn copy_out_data(
    batches: datafusion::execution::SendableRecordBatchStream,
    options: weir_connectors::copy_format::CopyOptions,
    time_zone: String,
) -> CopyOutData {
    let schema = batches.schema();
    let header = crate::pg::copy::header(&schema, &options).map(|h| Ok((vec![h], 0)));
    let rows = batches.map(move |batch| {
        let batch = batch.map_err(|e| ServerError::from_datafusion(e, None))?;
        crate::pg::copy::encode_rows(&batch, &time_zone, &options)
            .map(|bytes| (bytes, batch.num_rows()))
            .map_err(|e| ServerError::from_datafusion(e, None))
    });
    CopyOutData {
        columns: schema.fields().len(),
        stream: futures::stream::iter(header).chain(rows).boxed(),
    }
}

/// COPY data as pgwire's response (the extended protocol's path).
pub(super) fn copy_out_response(data: CopyOutData) -> Response {
    let stream = data
        .stream
        .map(|item| match item {
            Ok((lines, _)) => futures::stream::iter(
                lines
                    .into_iter()
                    .map(|line| Ok(CopyData::new(line.into())))
                    .collect::<Vec<_>>(),
            )
            .boxed(),
            Err(err) => futures::stream::once(async move { Err(err.into()) }).boxed(),
        })
        .flatten();
    Response::CopyOut(CopyResponse::new(0, data.columns, stream))
}

/// Send COPY data, flushing after every batch (psql shows a subscription's
/// rows as they arrive); returns the rows sent.
pub(super) async fn stream_copy<C>(
    client: &mut C,
    mut data: CopyOutData,
) -> Result<usize, ServerError>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
{
    let sent = |r: Result<(), C::Error>| {
        r.map_err(|e| ServerError::Io {
            message: format!("could not send to the client: {e:?}"),
        })
    };
    sent(
        client
            .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
                0,
                data.columns as i16,
                vec![0; data.columns],
            )))
            .await,
    )?;
    let mut rows = 0;
    while let Some(item) = data.stream.next().await {
        let (lines, count) = item?;
        rows += count;
        for line in lines {
            sent(
                client
                    .feed(PgWireBackendMessage::CopyData(CopyData::new(line.into())))
                    .await,
            )?;
        }
        sent(client.flush().await)?;
    }
    sent(
        client
            .send(PgWireBackendMessage::CopyDone(CopyDone::new()))
            .await,
    )?;
    Ok(rows)
}

#[async_trait]
impl CopyHandler for PgService {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let slot = copy_slot(client);
        // Taken out while it awaits parsing, so the lock is never held
        // across an await.
        let copy = slot.0.lock().take();
        if let Some(mut copy) = copy {
            if let Err(err) = copy.data(&copy_data.data).await {
                // Stopped (cancel, timeout, client gone): dropping the COPY
                // rolls its own transaction back, and a block it ran in is
                // aborted. pgwire then drops the rest of the client's COPY
                // messages, as Postgres does after an error.
                drop(copy);
                self.engine.record_error(err.sqlstate());
                super::handler::session_of(client).statement_failed();
                return Err(err.into());
            }
            *slot.0.lock() = Some(copy);
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let copy = copy_slot(client).0.lock().take();
        let Some(copy) = copy else {
            return Err(ServerError::internal("COPY data without a COPY statement").into());
        };
        match copy.finish().await {
            Ok(rows) => {
                client
                    .send(PgWireBackendMessage::CommandComplete(
                        Tag::new("COPY").with_rows(rows).into(),
                    ))
                    .await?;
                Ok(())
            }
            Err(err) => {
                self.engine.record_error(err.sqlstate());
                super::handler::session_of(client).statement_failed();
                Err(err.into())
            }
        }
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Dropping the COPY rolls back what it wrote (its own transaction),
        // and a block it ran in is aborted.
        copy_slot(client).0.lock().take();
        super::handler::session_of(client).statement_failed();
        PgWireError::UserError(Box::new(pgwire::error::ErrorInfo::new(
            "ERROR".to_string(),
            "57014".to_string(),
            format!("COPY from stdin failed: {}", fail.message),
        )))
    }
}
