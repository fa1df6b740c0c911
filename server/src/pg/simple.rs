//! The simple query protocol: a request of one or more statements, run in
//! order until one fails. A subscription or a COPY out is streamed from
//! here, batch by batch, rather than gathered by pgwire.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::portal::Format;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::copy_protocol::{copy_out_data, stream_copy, text_copy};
use super::handler::{PgService, execute_guarded, format_options, respond, session_of};
use super::subscribe::{Pushed, push_rows};
use crate::output::Output;
use crate::pg::encode;

#[async_trait]
impl SimpleQueryHandler for PgService {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client);
        let statements = self.engine.parse(query).await.inspect_err(|e| {
            self.engine.record_error(e.sqlstate());
            session.statement_failed();
        })?;
        if statements.is_empty() {
            // Only comments: Postgres answers EmptyQueryResponse, as for an
            // empty string.
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for statement in &statements {
            match execute_guarded(&self.engine, &session, statement, None).await {
                Ok(Output::Subscribe {
                    batches,
                    copy: true,
                }) => {
                    // Streamed here rather than through pgwire's COPY path, to
                    // flush every batch: psql shows rows as they arrive.
                    let data = copy_out_data(batches, text_copy(), session.time_zone());
                    match stream_copy(client, data).await {
                        Ok(rows) => {
                            responses.push(Response::Execution(Tag::new("COPY").with_rows(rows)))
                        }
                        Err(err) => {
                            responses.push(Response::Error(Box::new(err.into())));
                            break;
                        }
                    }
                }
                Ok(Output::Subscribe {
                    batches,
                    copy: false,
                }) => {
                    // Streamed here too: pgwire would buffer the rows of a
                    // result until it ends, and a subscription does not end.
                    let response = encode::query_response(
                        batches,
                        &Format::UnifiedText,
                        format_options(client),
                        session.time_zone(),
                    )?;
                    let fields: Vec<_> = response.row_schema.iter().map(Into::into).collect();
                    client
                        .feed(PgWireBackendMessage::RowDescription(
                            pgwire::messages::data::RowDescription::new(fields),
                        ))
                        .await?;
                    let mut rows = response.data_rows;
                    match push_rows(client, &mut rows, 0).await {
                        Ok(Pushed { rows, .. }) => {
                            responses.push(Response::Execution(Tag::new("SELECT").with_rows(rows)))
                        }
                        Err(err) => {
                            responses.push(Response::Error(Box::new(err.into())));
                            break;
                        }
                    }
                }
                Ok(Output::CopyOut { batches, options }) => {
                    let data = copy_out_data(batches, options, session.time_zone());
                    match stream_copy(client, data).await {
                        Ok(rows) => {
                            responses.push(Response::Execution(Tag::new("COPY").with_rows(rows)))
                        }
                        Err(err) => {
                            responses.push(Response::Error(Box::new(err.into())));
                            break;
                        }
                    }
                }
                Ok(output) => {
                    let copy_in = matches!(output, Output::CopyIn(_));
                    responses.push(respond(client, &session, output, &Format::UnifiedText).await?);
                    if copy_in {
                        // The client sends the data next; statements after a
                        // COPY FROM STDIN in the same request are not run.
                        break;
                    }
                }
                Err(err) => {
                    // Postgres stops at the first failing statement.
                    responses.push(Response::Error(Box::new(err.into())));
                    break;
                }
            }
        }
        Ok(responses)
    }
}
