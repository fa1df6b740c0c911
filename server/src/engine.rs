//! The engine: what a protocol handler talks to. It parses a request into
//! classified statements (with the rewrites Postgres clients' SQL needs),
//! runs each on a worker thread through [`crate::dispatch`], describes
//! prepared statements, and counts statements and their errors.
//!
//! ```text
//!   pg handlers ──> Engine::parse ──> Engine::execute ──> dispatch ──> statements::*
//!                                     Engine::describe ─┘                 │ ask
//!                                                                         v
//!                                                          Registry (live objects), Output
//! ```
//!
//! What all sessions share lives in the [`Registry`]; the engine only
//! holds it.

use std::sync::Arc;

use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_pg_catalog::sql::rules::{self as compat_rules, SqlStatementRewriteRule};
use tracing::{Instrument, info};
use weir_planner::WeirStatement;
use weir_planner::parser::{Piece, PieceKind};
use weir_runtime::Executor;

use crate::catalog_store::CatalogStore;
use crate::error::{Result, ServerError};
use crate::metrics::Metrics;
use crate::output::{Described, Output};
use crate::registry::{Parts, Registry};
use crate::session::Session;
use crate::statements;

/// A request this short is parsed on the connection's thread, and a
/// statement this short may run there ([`statements::insert_fast::runs_in_place`]):
/// two thread hand-offs cost more than parsing it (a single-row INSERT's
/// parse is about a tenth of its CPU, the hand-offs more), and in so few
/// bytes nothing nests deep enough to matter to a connection thread's
/// stack (each level of nesting takes at least two bytes).
pub(crate) const IN_PLACE_BYTES: usize = 256;

/// One statement of a request, classified, with the text it came from.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// What it asks for. Shared, not copied, on the connection's thread: a
    /// copy of a long statement recurses as deep as it nests, which is work
    /// for a worker's stack (see [`Engine::execute`]).
    pub statement: Arc<WeirStatement>,
    /// Its text (positions inside it are relative to it).
    pub text: String,
    /// Characters of the request before it.
    pub offset: usize,
}

/// Parses, runs and describes statements for every session.
pub struct Engine {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    compat: PostgresCompatibilityParser,
    /// The compatibility layer's rules that users' own queries get.
    user_rules: Vec<Box<dyn SqlStatementRewriteRule>>,
}

/// The compatibility layer's rewrite rules for users' own queries: all but
/// `RemoveSubqueryFromProjection`, which replaces every scalar subquery in a
/// select list that it takes for correlated with NULL and stamps `LIMIT 1` on
/// the others. Its correlation test only knows the aliases of plain tables,
/// so `(SELECT count(*) FROM (SELECT ..) a JOIN (SELECT ..) b ON a.x = b.x)`
/// silently became NULL: a wrong answer. Catalog queries from clients keep
/// the whole list; users' subqueries are planned by DataFusion as written
/// (decorrelated, or refused with an error).
fn user_rules() -> Vec<Box<dyn SqlStatementRewriteRule>> {
    vec![
        Box::new(compat_rules::AliasDuplicatedProjectionRewrite),
        Box::new(compat_rules::ResolveUnqualifiedIdentifier),
        Box::new(compat_rules::RewriteArrayAnyAllOperation),
        Box::new(compat_rules::PrependUnqualifiedPgTableName),
        Box::new(compat_rules::StripCallableQualifier),
        Box::new(compat_rules::FixArrayLiteral),
        Box::new(compat_rules::CurrentUserVariableToSessionUserFunctionCall),
        Box::new(compat_rules::StripCollate),
        Box::new(compat_rules::RewritePgCatalogOperator),
        Box::new(compat_rules::RewriteRegCastToSubquery::new()),
        Box::new(compat_rules::FixVersionColumnName),
    ]
}

impl Engine {
    /// Open the data directory, start `workers` worker threads and rebuild
    /// the catalog from disk.
    pub async fn start(config: &crate::config::Config, metrics: Arc<Metrics>) -> Result<Arc<Self>> {
        let (data_dir, workers) = (config.data_dir.as_path(), config.workers);
        let store = CatalogStore::open(data_dir)?;
        let checkpoints = crate::checkpoints::open(config)?;
        let catalog = store.load()?;
        // Replay the table log before anything reads the tables.
        let tables = weir_connectors::table_store::TableStore::open(
            &data_dir.join("tables"),
            statements::dml::owned_specs(&catalog),
        )?;
        let executor = Executor::new(workers)?;
        let ctx = crate::datafusion_context::build(workers).await?;
        let jobs = crate::jobs::JobManager::new(
            data_dir.join("jobs"),
            &config.job_defaults,
            metrics.jobs.clone(),
        )?;
        let registry = Registry::new(Parts {
            ctx,
            store,
            executor,
            parallelism: workers,
            runtime_metrics: metrics.runtime.clone(),
            checkpoints,
            tables,
            jobs,
        });
        // A crash while a savepoint was copied or dropped leaves a folder
        // without its `savepoint.json`: never listed, removed now.
        if let Some(checkpoints) = registry.checkpoint_store(None)
            && let Err(err) = checkpoints.remove_incomplete_savepoints().await
        {
            tracing::warn!(error = %err, "could not remove incomplete savepoints");
        }
        statements::ddl::restore(&registry, catalog).await;
        Ok(Arc::new(Self {
            registry,
            metrics,
            compat: PostgresCompatibilityParser::new(),
            user_rules: user_rules(),
        }))
    }

    /// Parse a request into classified statements, each rewritten where
    /// needed so DataFusion can run what Postgres clients send.
    ///
    /// On a worker thread: parsing and rewriting recurse as deep as the
    /// statement nests and cost as much as it is long, which must neither
    /// overflow a connection thread's small stack nor keep that thread from
    /// serving other sessions. A short request is parsed in place instead
    /// (`IN_PLACE_BYTES`).
    pub async fn parse(self: &Arc<Self>, sql: &str) -> Result<Vec<Parsed>> {
        // pgwire decodes a message's text lossily, each invalid UTF-8
        // sequence becoming U+FFFD; Postgres refuses such text instead of
        // running something the client did not send. A query that really
        // contains U+FFFD is refused too: the price of not seeing the bytes.
        if sql.contains(char::REPLACEMENT_CHARACTER) {
            return Err(ServerError::InvalidByteSequence);
        }
        if sql.len() <= IN_PLACE_BYTES {
            return self.parse_now(sql);
        }
        let engine = self.clone();
        let sql = sql.to_string();
        self.registry
            .run(async move { engine.parse_now(&sql) })
            .await?
    }

    fn parse_now(&self, sql: &str) -> Result<Vec<Parsed>> {
        let pieces = weir_planner::parser::parse_request(sql)?;
        pieces
            .into_iter()
            .map(|piece| {
                let Piece { kind, text, offset } = piece;
                let kind = match kind {
                    PieceKind::Sql {
                        statement,
                        stream,
                        watermark,
                        emit_on_window_close,
                    } => PieceKind::Sql {
                        statement: Box::new(self.rewrite(*statement, &text)?),
                        stream,
                        watermark,
                        emit_on_window_close,
                    },
                    other => other,
                };
                let statement = WeirStatement::classify_piece(kind).map_err(ServerError::from)?;
                Ok(Parsed {
                    statement: Arc::new(statement),
                    text,
                    offset,
                })
            })
            .collect()
    }

    /// Compatibility rewrites, Postgres column names and batch windows.
    fn rewrite(&self, statement: Statement, text: &str) -> Result<Statement> {
        if statements::insert_fast::takes_no_rewrite(&statement) {
            return Ok(statement);
        }
        // Clients' catalog queries (psql's \d, JDBC metadata) need the
        // compatibility layer's whole-query substitutions, which work on
        // tokens and lose source positions; users' own queries keep theirs.
        let mut statement = if mentions_system_catalog(text) {
            let mut rewritten = match self.compat.parse(text) {
                Ok(mut rewritten) if rewritten.len() == 1 => rewritten.remove(0),
                _ => self.compat.rewrite(statement),
            };
            weir_planner::compat::expand_arrays(&mut rewritten);
            weir_planner::compat::field_accesses(&mut rewritten);
            weir_planner::compat::generate_subscripts(&mut rewritten);
            weir_planner::compat::regproc_names(&mut rewritten);
            weir_planner::compat::array_subqueries(&mut rewritten);
            weir_planner::compat::aggregate_scalar_subqueries(&mut rewritten);
            weir_planner::names::name_output_columns(&mut rewritten)?;
            rewritten
        } else {
            // Named before the compatibility rewrite, which renames some
            // functions (`current_user` becomes `session_user`): the
            // column keeps the name the user wrote, as in Postgres.
            let mut statement = statement;
            weir_planner::names::name_output_columns(&mut statement)?;
            self.user_rules
                .iter()
                .fold(statement, |statement, rule| rule.rewrite(statement))
        };
        weir_planner::compat::like_escapes(&mut statement);
        let batch = match &statement {
            Statement::Query(_) => true,
            Statement::CreateView(view) => !view.materialized,
            Statement::Explain { statement, .. } => {
                !matches!(statement.as_ref(), Statement::CreateView(v) if v.materialized)
            }
            _ => false,
        };
        if batch {
            weir_planner::windows::rewrite_windows(
                &mut statement,
                weir_planner::windows::Mode::Batch,
            )?;
        }
        Ok(statement)
    }

    /// Run one statement for `session`, on a worker thread: the statement
    /// is copied, planned and dropped there, where a deep one has the stack
    /// it needs and a panic fails the statement rather than the server.
    pub async fn execute(
        &self,
        session: &Arc<Session>,
        parsed: &Parsed,
        params: Option<datafusion::common::ParamValues>,
    ) -> Result<Output> {
        self.metrics.statements.inc();
        let registry = self.registry.clone();
        let session = session.clone();
        let statement = parsed.statement.clone();
        let text = parsed.text.clone();
        let span = tracing::info_span!("statement", session = session.id());
        // The queries the statement starts get the session's memory limit.
        let memory_limit = session.query_memory_limit();
        // Taken here, on the connection's task: the worker may start after
        // a cancel let the next statement begin.
        let gate = session.statement_gate();
        let in_place = statements::insert_fast::runs_in_place(&parsed.statement, &parsed.text);
        let work = crate::datafusion_context::with_query_memory_limit(memory_limit, async move {
            crate::dispatch::execute(
                &registry,
                &session,
                (*statement).clone(),
                &text,
                params,
                gate,
            )
            .await
        })
        .instrument(span);
        let result = if in_place {
            self.registry.run_here(work).await
        } else {
            self.registry.run(work).await
        }
        .and_then(|result| result)
        .map_err(|e| e.shifted(parsed.offset));
        match result {
            Err(err) => {
                self.record_error(err.sqlstate());
                Err(err)
            }
            Ok(output) => Ok(self.count_stream_errors(output)),
        }
    }

    /// Count an error a client was sent, by its SQLSTATE.
    pub fn record_error(&self, sqlstate: &str) {
        self.metrics.record_error(sqlstate);
    }

    /// A statement can also fail after it started, while its rows stream
    /// (a division by zero in the tenth batch, a bad line in a file): count
    /// that failure as well.
    fn count_stream_errors(&self, output: Output) -> Output {
        let counted = |batches: SendableRecordBatchStream| -> SendableRecordBatchStream {
            use futures::StreamExt;
            let metrics = self.metrics.clone();
            let schema = batches.schema();
            Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    schema,
                    batches.inspect(move |item| {
                        if let Err(err) = item {
                            metrics.record_error(crate::error::sqlstate_of(err));
                        }
                    }),
                ),
            )
        };
        match output {
            Output::Rows(batches) => Output::Rows(counted(batches)),
            Output::Subscribe { batches, copy } => Output::Subscribe {
                batches: counted(batches),
                copy,
            },
            Output::CopyOut { batches, options } => Output::CopyOut {
                batches: counted(batches),
                options,
            },
            other => other,
        }
    }

    /// What a prepared statement returns and takes, for Describe.
    /// On a worker thread, as [`Engine::execute`] is.
    pub async fn describe(&self, statement: &Arc<WeirStatement>, sql: &str) -> Result<Described> {
        let registry = self.registry.clone();
        let statement = statement.clone();
        let sql = sql.to_string();
        self.registry
            .run(async move { crate::dispatch::describe(&registry, &statement, &sql).await })
            .await?
    }

    /// The live objects, for the REST API (which drives the same job
    /// statements SQL does).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Stop the workers.
    pub fn shutdown(&self) {
        self.registry.shutdown();
        info!("engine stopped");
    }
}

fn mentions_system_catalog(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.contains("pg_") || lower.contains("information_schema") || lower.contains("::reg")
}
