//! The extended query protocol: Parse (classify and describe once), Bind,
//! Describe (Postgres's answer for statements without rows), Execute (a
//! `SUBSCRIBE` portal is streamed by `subscribe`).

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::into_pg_type;
use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::extendedquery::Execute;
use weir_planner::WeirStatement;

use super::handler::{PgService, execute_guarded, respond, session_of};
use crate::engine::{Engine, Parsed};
use crate::error::ServerError;
use crate::pg::encode;

/// A statement prepared with Parse: classified, and described once.
#[derive(Debug)]
pub struct Prepared {
    pub(super) parsed: Parsed,
    schema: Option<SchemaRef>,
    params: Vec<Option<DataType>>,
}

/// The extended protocol's parser.
pub struct PgParser {
    pub(super) engine: Arc<Engine>,
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
        let mut statements = self.engine.parse(sql).await.inspect_err(|e| {
            self.engine.record_error(e.sqlstate());
            super::handler::session_of(client).statement_failed();
        })?;
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
            .map_err(|e| e.shifted(statement.offset))
            // Describing plans the statement: its errors are the statement's.
            .inspect_err(|_| session_of(client).statement_failed())?;
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
        match execute_guarded(&self.engine, &session, &prepared.parsed, params).await {
            Ok(output) => respond(client, &session, output, &portal.result_column_format).await,
            Err(err) => Err(err.into()),
        }
    }
}
