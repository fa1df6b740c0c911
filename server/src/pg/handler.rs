//! pgwire's entry points: the handlers a connection is served by, startup
//! (authentication is [`crate::auth::startup`]'s), the error log, and how a statement's [`Output`]
//! becomes a pgwire response. The query paths live beside it: the simple
//! protocol in `simple`, the extended one in `extended`, `SUBSCRIBE` in
//! `subscribe`, the COPY sub-protocol in `copy_protocol`.
//!
//! Statements are parsed and classified by the [`Engine`] and run on its
//! worker threads, so the threads that run these handlers only move bytes.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Sink, SinkExt};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::Format;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::CopyResponse;
use pgwire::api::results::{Response, Tag};
use pgwire::api::{
    ClientInfo, ConnectionManager, ErrorHandler, PgWireServerHandlers, RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::startup::ParameterStatus;
use pgwire::types::format::FormatOptions;
use tracing::debug;

use super::activity::{Activity, CancelByKey};
use super::copy_protocol::{copy_out_data, copy_out_response, copy_slot, text_copy};
use super::extended::PgParser;
use crate::auth::Auth;
use crate::auth::startup::{StartupSettings, WeirStartup};
use crate::engine::Engine;
use crate::output::Output;
use crate::pg::encode;
use crate::session::Session;

/// Everything pgwire needs to serve one server's connections.
pub struct WeirHandlers {
    service: Arc<PgService>,
    startup: Arc<StartupSettings>,
    cancel: Arc<CancelByKey>,
}

impl WeirHandlers {
    /// Handlers over `engine`, authenticating against `auth`; with
    /// `tls_required`, plain connections are refused.
    pub fn new(
        engine: Arc<Engine>,
        auth: Arc<Auth>,
        tls_required: bool,
        activity: Arc<Activity>,
    ) -> Self {
        let manager = Arc::new(ConnectionManager::new());
        Self {
            service: Arc::new(PgService {
                parser: Arc::new(PgParser {
                    engine: engine.clone(),
                }),
                engine,
            }),
            startup: Arc::new(StartupSettings {
                auth,
                tls_required,
                manager: manager.clone(),
                pids: Arc::new(RandomPidSecretKeyGenerator::default()),
                activity: activity.clone(),
            }),
            cancel: Arc::new(CancelByKey { activity, manager }),
        }
    }
}

impl PgWireServerHandlers for WeirHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        // One per connection: pgwire's SASL handler keeps the exchange's
        // state in itself (pgwire asks once per connection).
        Arc::new(WeirStartup::new(self.startup.clone()))
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.service.clone()
    }
}

struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C: ClientInfo>(&self, client: &C, error: &mut PgWireError) {
        debug!(client = %client.socket_addr(), %error, "statement failed");
    }
}

/// The query handlers.
pub struct PgService {
    pub(super) engine: Arc<Engine>,
    pub(super) parser: Arc<PgParser>,
}

/// Run a parsed statement for `session`, stopping it with 57014 when it is
/// cancelled or runs past `statement_timeout`, while it runs and while its
/// rows stream.
pub(super) async fn execute_guarded(
    engine: &Engine,
    session: &Arc<Session>,
    parsed: &crate::engine::Parsed,
    params: Option<datafusion::common::ParamValues>,
) -> crate::error::Result<Output> {
    // A failed statement (or a cancelled one) aborts the transaction block.
    run_guarded(engine, session, parsed, params)
        .await
        .inspect_err(|_| session.statement_failed())
}

async fn run_guarded(
    engine: &Engine,
    session: &Arc<Session>,
    parsed: &crate::engine::Parsed,
    params: Option<datafusion::common::ParamValues>,
) -> crate::error::Result<Output> {
    match session.begin(&parsed.text) {
        Some(mut running) => {
            let output = running
                .run(engine.execute(session, parsed, params))
                .await
                .inspect_err(|e| {
                    if e.sqlstate() == "57014" {
                        engine.record_error(e.sqlstate());
                    }
                })?;
            Ok(running.guard(output))
        }
        None => engine.execute(session, parsed, params).await,
    }
}

pub(super) fn session_of<C: ClientInfo + ?Sized>(client: &C) -> Arc<Session> {
    client.session_extensions().get_or_insert_with(Session::new)
}

pub(super) fn format_options<C: ClientInfo + ?Sized>(client: &C) -> Arc<FormatOptions> {
    Arc::new(FormatOptions::from_client_metadata(client.metadata()))
}

/// Turn an engine output into a pgwire response, telling the client about
/// changed settings on the way.
pub(super) async fn respond<C>(
    client: &mut C,
    session: &Session,
    output: Output,
    format: &Format,
) -> PgWireResult<Response>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    Ok(match output {
        Output::Rows(batches) => Response::Query(encode::query_response(
            batches,
            format,
            format_options(client),
            session.time_zone(),
        )?),
        Output::Command { tag, rows } => {
            let tag = Tag::new(tag);
            Response::Execution(match rows {
                Some(rows) => tag.with_rows(rows),
                None => tag,
            })
        }
        Output::Set { tag, changes } => {
            for change in changes {
                if change.name == "TimeZone"
                    || change.name == "DateStyle"
                    || change.name == "IntervalStyle"
                {
                    // arrow-pg formats dates and times from these metadata keys.
                    client
                        .metadata_mut()
                        .insert(change.name.to_lowercase(), change.value.clone());
                }
                client
                    .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                        change.name,
                        change.value,
                    )))
                    .await?;
            }
            Response::Execution(Tag::new(tag))
        }
        Output::Subscribe {
            batches,
            copy: false,
        } => Response::Query(encode::query_response(
            batches,
            format,
            format_options(client),
            session.time_zone(),
        )?),
        Output::Subscribe {
            batches,
            copy: true,
        } => copy_out_response(copy_out_data(batches, text_copy(), session.time_zone())),
        Output::CopyIn(copy) => {
            let columns = copy.columns();
            *copy_slot(client).0.lock() = Some(copy);
            Response::CopyIn(CopyResponse::new(0, columns, futures::stream::empty()))
        }
        Output::CopyOut { batches, options } => {
            copy_out_response(copy_out_data(batches, options, session.time_zone()))
        }
        Output::TransactionStart => Response::TransactionStart(Tag::new("BEGIN")),
        Output::Noticed { notice, output } => {
            client
                .feed(PgWireBackendMessage::NoticeResponse(
                    pgwire::error::ErrorInfo::new(
                        notice.severity.into(),
                        notice.code.into(),
                        notice.message,
                    )
                    .into(),
                ))
                .await?;
            Box::pin(respond(client, session, *output, format)).await?
        }
        Output::TransactionEnd(tag) => {
            // Cursors are the transaction's (none is declared WITH HOLD).
            session.cursors().close_all();
            Response::TransactionEnd(Tag::new(tag))
        }
    })
}
