//! pgwire handlers: startup, the simple and the extended query protocol,
//! cancel requests.
//!
//! Statements are parsed and classified here, then run by the [`Engine`];
//! query work happens on the engine's worker threads, so the threads that run
//! these handlers only move bytes.

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::into_pg_type;
use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use futures::{FutureExt, Sink, SinkExt, StreamExt};
use pgwire::api::auth::StartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::CopyResponse;
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, ConnectionManager, DEFAULT_NAME, ErrorHandler,
    PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyOutResponse};
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::startup::ParameterStatus;
use pgwire::types::format::FormatOptions;
use tracing::debug;
use weir_planner::WeirStatement;

use crate::engine::{Engine, Output, Parsed};
use crate::error::ServerError;
use crate::pg::encode;
use crate::session::Session;

/// Everything pgwire needs to serve one server's connections.
pub struct WeirHandlers {
    service: Arc<PgService>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl WeirHandlers {
    /// Handlers over `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        let manager = Arc::new(ConnectionManager::new());
        Self {
            service: Arc::new(PgService {
                parser: Arc::new(PgParser {
                    engine: engine.clone(),
                }),
                engine,
            }),
            startup: Arc::new(Startup {
                manager: manager.clone(),
            }),
            cancel: Arc::new(DefaultCancelHandler::new(manager)),
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
        self.startup.clone()
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

/// No authentication (yet): any user and database name connect.
pub struct Startup {
    manager: Arc<ConnectionManager>,
}

impl NoopStartupHandler for Startup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.manager.clone())
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
    engine: Arc<Engine>,
    parser: Arc<PgParser>,
}

fn session_of<C: ClientInfo + ?Sized>(client: &C) -> Arc<Session> {
    client.session_extensions().get_or_insert_with(Session::new)
}

fn format_options<C: ClientInfo + ?Sized>(client: &C) -> Arc<FormatOptions> {
    Arc::new(FormatOptions::from_client_metadata(client.metadata()))
}

/// Turn an engine output into a pgwire response, telling the client about
/// changed settings on the way.
async fn respond<C>(
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
        Output::Set(change) => {
            if let Some(change) = change {
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
            Response::Execution(Tag::new("SET"))
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
        Output::TransactionStart => {
            session.take_writes();
            Response::TransactionStart(Tag::new("BEGIN"))
        }
        Output::Warned { warning, output } => {
            client
                .feed(PgWireBackendMessage::NoticeResponse(
                    pgwire::error::ErrorInfo::new("WARNING".into(), "01000".into(), warning).into(),
                ))
                .await?;
            Box::pin(respond(client, session, *output, format)).await?
        }
        Output::TransactionEnd(tag) => {
            // Cursors are the transaction's (none is declared WITH HOLD).
            session.cursors().close_all();
            // Writes to tables Weir owns commit statement by statement, so a
            // ROLLBACK cannot undo them: say so rather than let the client
            // believe they are gone.
            if session.take_writes() && tag == "ROLLBACK" {
                client
                    .feed(PgWireBackendMessage::NoticeResponse(
                        pgwire::error::ErrorInfo::new(
                            "WARNING".into(),
                            "01000".into(),
                            "ROLLBACK does not undo writes to tables Weir owns: each statement was committed when it completed".into(),
                        )
                        .into(),
                    ))
                    .await?;
            }
            Response::TransactionEnd(Tag::new(tag))
        }
    })
}

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
        let statements = self
            .engine
            .parse(query)
            .await
            .inspect_err(|e| self.engine.metrics.record_error(e.sqlstate()))?;
        if statements.is_empty() {
            // Only comments: Postgres answers EmptyQueryResponse, as for an
            // empty string.
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for statement in &statements {
            match self.engine.execute(&session, statement, None).await {
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

/// A statement prepared with Parse: classified, and described once.
#[derive(Debug)]
pub struct Prepared {
    parsed: Parsed,
    schema: Option<SchemaRef>,
    params: Vec<Option<DataType>>,
}

/// The extended protocol's parser.
pub struct PgParser {
    engine: Arc<Engine>,
}

#[async_trait]
impl QueryParser for PgParser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self
            .engine
            .parse(sql)
            .await
            .inspect_err(|e| self.engine.metrics.record_error(e.sqlstate()))?;
        let statement = match statements.len() {
            0 => return Ok(None),
            1 => statements.remove(0),
            _ => {
                return Err(ServerError::Syntax {
                    message: "cannot insert multiple commands into a prepared statement"
                        .to_string(),
                    detail: None,
                    position: None,
                }
                .into());
            }
        };
        let mut described = self
            .engine
            .describe(&statement.statement, &statement.text)
            .await
            .map_err(|e| e.shifted(statement.offset))?;
        if let WeirStatement::Fetch { cursor, .. } = &*statement.statement {
            // A cursor's columns are the session's to know.
            described.schema =
                Some(session_of(client).cursors().schema(cursor).ok_or_else(|| {
                    ServerError::InvalidCursorName {
                        name: cursor.clone(),
                    }
                })?);
        }
        Ok(Some(Arc::new(Prepared {
            parsed: statement,
            schema: described.schema,
            params: described.params,
        })))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        stmt.params
            .iter()
            .map(|ty| match ty {
                Some(ty) => into_pg_type(ty),
                // Untyped: the client sends text and DataFusion coerces it.
                None => Ok(Type::TEXT),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.schema {
            Some(schema) => {
                encode::fields(schema, column_format.unwrap_or(&Format::UnifiedText), None)
            }
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for PgService {
    type Statement = Arc<Prepared>;
    type QueryParser = PgParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// Describe of a statement that returns no rows but takes parameters
    /// (`INSERT ... VALUES ($1, $2)`) answers ParameterDescription, then
    /// NoData, as Postgres does. pgwire's default sends an empty
    /// RowDescription instead, which pgjdbc reads as a result set: its
    /// `executeBatch` then reported 0 for every row it wrote.
    async fn on_describe<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::extendedquery::Describe,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use pgwire::messages::data::{NoData, ParameterDescription};
        use pgwire::messages::extendedquery::TARGET_TYPE_BYTE_STATEMENT;
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            if let Some(Entry::Value(statement)) = client.portal_store().get_statement(name) {
                let described = self.do_describe_statement(client, &statement).await?;
                if described.fields.is_empty() {
                    let types = described.parameters.iter().map(Type::oid).collect();
                    client
                        .send(PgWireBackendMessage::ParameterDescription(
                            ParameterDescription::new(types),
                        ))
                        .await?;
                    client
                        .send(PgWireBackendMessage::NoData(NoData::new()))
                        .await?;
                    return Ok(());
                }
            }
        }
        self._on_describe(client, message).await
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal))
                if matches!(
                    *portal.statement.statement.parsed.statement,
                    WeirStatement::Subscribe { .. }
                ) =>
            {
                self.execute_subscription(client, &portal, message.max_rows as usize)
                    .await
            }
            _ => self._on_execute(client, message).await,
        }
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = portal.statement.statement.clone();
        let session = session_of(client);
        let params = match prepared.parsed.statement.as_ref() {
            WeirStatement::Query(_) | WeirStatement::Dml(_) => {
                let types: Vec<Option<&DataType>> =
                    prepared.params.iter().map(|t| t.as_ref()).collect();
                Some(deserialize_parameters(portal, &types)?)
            }
            _ => None,
        };
        match self
            .engine
            .execute(&session, &prepared.parsed, params)
            .await
        {
            Ok(output) => respond(client, &session, output, &portal.result_column_format).await,
            Err(err) => Err(err.into()),
        }
    }
}

impl PgService {
    /// Execute on a `SUBSCRIBE` portal. pgwire's own Execute would gather
    /// `max_rows` rows (all of them when 0) before sending any, which a
    /// subscription may never have; here rows go out as they come:
    /// - `max_rows` 0: every row, flushed whenever the next one is not
    ///   there yet, until the job ends or the client cancels;
    /// - `max_rows` n: up to n rows, waiting for at least one, then
    ///   `PortalSuspended` (the next Execute goes on from there), as a
    ///   `FETCH n` on a cursor does.
    async fn execute_subscription<C>(
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
async fn cancel_receiver<C: ClientInfo>(
    client: &C,
) -> Option<futures::channel::oneshot::Receiver<()>> {
    let handle = client.session_extensions().get::<Arc<ConnectionHandle>>()?;
    Some(handle.start_query().await)
}

/// Run `work` until it ends or the client cancels it.
async fn until_cancelled<T>(
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
struct Pushed {
    rows: usize,
    /// The rows ended (the subscription's job finished).
    ended: bool,
}

/// Send rows as they come, flushing whenever the next row is not there yet,
/// so a subscriber sees each change at once and a burst still goes out in
/// few writes. `limit` 0: until the rows end; n: up to n rows, waiting
/// only for the first.
async fn push_rows<C>(
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

/// The COPY FROM STDIN in progress on a connection.
#[derive(Default)]
struct CopySlot(parking_lot::Mutex<Option<Box<crate::statements::dml::CopyIn>>>);

fn copy_slot<C: ClientInfo + ?Sized>(client: &C) -> Arc<CopySlot> {
    client
        .session_extensions()
        .get_or_insert_with(CopySlot::default)
}

/// COPY data with its column count: a batch's messages, one per row (a
/// csv header is one message of no row).
struct CopyOutData {
    columns: usize,
    stream: futures::stream::BoxStream<'static, Result<CopyBatch, ServerError>>,
}

/// One batch as COPY messages (one per row), and its row count.
type CopyBatch = (Vec<Vec<u8>>, usize);

/// How `COPY (SUBSCRIBE ...) TO STDOUT` sends rows: Postgres's text format.
fn text_copy() -> weir_connectors::copy_format::CopyOptions {
    weir_connectors::copy_format::CopyOptions::new(weir_connectors::copy_format::CopyFormat::Text)
}

/// Rows as COPY data: the csv header, if asked for, then one message per
/// row.
fn copy_out_data(
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
fn copy_out_response(data: CopyOutData) -> Response {
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
async fn stream_copy<C>(client: &mut C, mut data: CopyOutData) -> Result<usize, ServerError>
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
            copy.data(&copy_data.data).await;
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
                self.engine.metrics.record_error(err.sqlstate());
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
        copy_slot(client).0.lock().take();
        PgWireError::UserError(Box::new(pgwire::error::ErrorInfo::new(
            "ERROR".to_string(),
            "57014".to_string(),
            format!("COPY from stdin failed: {}", fail.message),
        )))
    }
}
