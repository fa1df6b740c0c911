//! The engine: what every session shares. It owns the DataFusion context
//! (the live catalog of tables and views), the durable catalog, the worker
//! runtime and the metrics, and runs one classified statement at a time for
//! a session.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{
    PgCatalogSchemaProvider, PgCatalogStaticTables, setup_pg_catalog,
};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use tracing::{info, warn};
use weir_planner::WeirStatement;
use weir_planner::catalog::Catalog;
use weir_planner::parser::{Piece, PieceKind};
use weir_runtime::Executor;

use crate::catalog_store::CatalogStore;
use crate::error::{Result, ServerError};
use crate::metrics::Metrics;
use crate::session::{ReportedChange, Session};
use crate::statements;

/// The database (catalog) name clients see.
pub const DATABASE: &str = "weir";
/// The one schema.
pub const SCHEMA: &str = "public";

/// What a statement produced.
pub enum Output {
    /// Rows, streamed from the workers.
    Rows(SendableRecordBatchStream),
    /// A command that returns no rows: its tag (`CREATE TABLE`) and row count.
    Command {
        /// The command tag.
        tag: &'static str,
        /// The row count the tag carries, if any.
        rows: Option<usize>,
    },
    /// `SET` done; the client may need to hear about the new value.
    Set(Option<ReportedChange>),
    /// `BEGIN`.
    TransactionStart,
    /// `SUBSCRIBE`: a view's snapshot, then its changes as they come, until
    /// the job ends or the client cancels.
    Subscribe {
        /// Batches (with an `op` column for updating views).
        batches: SendableRecordBatchStream,
        /// Send as COPY data.
        copy: bool,
    },
    /// `COMMIT` / `ROLLBACK` (the tag says which).
    TransactionEnd(&'static str),
    /// `COPY t FROM STDIN`: the client sends the data next.
    CopyIn(Box<statements::dml::CopyIn>),
    /// An output, after a WARNING the client should see first.
    Warned {
        /// The warning's message.
        warning: String,
        /// What the statement returns.
        output: Box<Output>,
    },
    /// `COPY ... TO STDOUT`: rows to send as COPY data.
    CopyOut {
        /// The rows.
        batches: SendableRecordBatchStream,
        /// Their format.
        options: weir_connectors::copy_format::CopyOptions,
    },
}

/// What Describe tells a client about a prepared statement.
#[derive(Debug, Clone)]
pub struct Described {
    /// The result columns, or `None` for a statement without rows.
    pub schema: Option<SchemaRef>,
    /// The `$n` parameters' types, where the plan determines them.
    pub params: Vec<Option<DataType>>,
}

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

/// A stream as the engine keeps it.
pub struct LiveStream {
    /// Its connector.
    pub connector: weir_connectors::OpenedStream,
    /// The event-time column and watermark delay.
    pub event_time: Option<(String, i64)>,
}

/// A materialized view as the engine keeps it.
pub struct LiveView {
    /// Its contents.
    pub view: Arc<weir_runtime::materialized::MaterializedView>,
    /// Its job's sink: the view, and the sinks writing it out.
    pub sink: Arc<weir_runtime::materialized::ViewSink>,
    /// Its job.
    pub job: weir_runtime::job::JobHandle,
    /// Its stream plan, for EXPLAIN and SHOW.
    pub explain: String,
    /// The tables and streams it reads.
    pub inputs: Vec<String>,
}

/// The shared state of a running server.
pub struct Engine {
    pub(crate) ctx: SessionContext,
    pub(crate) catalog: parking_lot::Mutex<Catalog>,
    /// DDL runs one statement at a time, so that the durable catalog and the
    /// live one change together. A tokio mutex: it is held across awaits.
    pub(crate) ddl_lock: tokio::sync::Mutex<()>,
    pub(crate) store: CatalogStore,
    pub(crate) executor: Executor,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) streams: parking_lot::Mutex<std::collections::HashMap<String, Arc<LiveStream>>>,
    pub(crate) views: parking_lot::Mutex<std::collections::HashMap<String, Arc<LiveView>>>,
    pub(crate) parallelism: usize,
    pub(crate) runtime_metrics: weir_runtime::metrics::RuntimeMetrics,
    /// Where jobs checkpoint (`None`: checkpoints are off).
    pub(crate) checkpoints: Option<weir_runtime::checkpoint::CheckpointStore>,
    /// The tables Weir owns and their log.
    pub(crate) tables: weir_connectors::table_store::TableStore,
    compat: PostgresCompatibilityParser,
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
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(DATABASE, SCHEMA)
            // Weir serves its own `information_schema` (Postgres type names).
            .with_information_schema(false)
            .with_target_partitions(workers.max(1));
        // Spans let DataFusion's diagnostics point into the SQL text.
        let mut config = config;
        config.options_mut().sql_parser.collect_spans = true;
        let ctx = SessionContext::new_with_config(config);
        // `EmptyContextProvider`, not an `Arc<...>`: the crate's blanket impl
        // for `Arc<T>` calls itself and overflows the stack.
        setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider)
            .map_err(|e| ServerError::from_datafusion(*e, None))?;
        // Replace the pg_catalog schema by one over the catalogs without
        // `information_schema` (see `ClientCatalogs`).
        let visible: Arc<dyn datafusion::catalog::CatalogProviderList> = Arc::new(
            crate::information_schema::ClientCatalogs::without_information_schema(
                ctx.state().catalog_list().clone(),
            ),
        );
        let pg_catalog = PgCatalogSchemaProvider::try_new(
            visible,
            Arc::new(
                PgCatalogStaticTables::try_new()
                    .map_err(|e| ServerError::from_datafusion(e, None))?,
            ),
            crate::pg_catalog::WeirRoles,
        )
        .map_err(|e| ServerError::from_datafusion(e, None))?;
        // Weir's keys and materialized views, which the crate cannot see.
        let keys = Arc::new(crate::pg_catalog::KeyDefinitions::default());
        let pg_catalog = crate::pg_catalog::PgCatalog::new(
            Arc::new(pg_catalog),
            ctx.state().catalog_list().clone(),
            keys.clone(),
        );
        ctx.catalog(DATABASE)
            .ok_or_else(|| ServerError::internal("the default catalog is missing"))?
            .register_schema("pg_catalog", Arc::new(pg_catalog))
            .map_err(|e| ServerError::from_datafusion(e, None))?;
        let catalogs = ctx.state().catalog_list().clone();
        ctx.catalog(DATABASE)
            .ok_or_else(|| ServerError::internal("the default catalog is missing"))?
            .register_schema(
                "information_schema",
                Arc::new(crate::information_schema::PgInformationSchema::new(
                    catalogs,
                )),
            )
            .map_err(|e| ServerError::from_datafusion(e, None))?;
        for function in weir_connectors::table_functions::ReadFiles::all() {
            ctx.register_udtf(function.name(), function);
        }
        crate::pg_functions::register(&ctx);
        crate::pg_catalog::register_functions(&ctx, &keys);
        crate::pg_proc::register(&ctx)
            .await
            .map_err(|e| ServerError::from_datafusion(e, None))?;
        ctx.add_analyzer_rule(Arc::new(weir_planner::arithmetic::CheckedArithmetic));
        weir_runtime::windows::register(&ctx);
        let engine = Arc::new(Self {
            ctx,
            catalog: parking_lot::Mutex::new(Catalog::default()),
            ddl_lock: tokio::sync::Mutex::new(()),
            store,
            executor,
            metrics: metrics.clone(),
            streams: parking_lot::Mutex::new(std::collections::HashMap::new()),
            views: parking_lot::Mutex::new(std::collections::HashMap::new()),
            parallelism: workers.max(1),
            runtime_metrics: metrics.runtime.clone(),
            checkpoints,
            tables,
            compat: PostgresCompatibilityParser::new(),
        });
        statements::ddl::restore(&engine, catalog).await;
        Ok(engine)
    }

    /// Parse a request into classified statements, each rewritten where
    /// needed so DataFusion can run what Postgres clients send.
    ///
    /// On a worker thread: parsing and rewriting recurse as deep as the
    /// statement nests and cost as much as it is long, which must neither
    /// overflow a connection thread's small stack nor keep that thread from
    /// serving other sessions.
    pub async fn parse(self: &Arc<Self>, sql: &str) -> Result<Vec<Parsed>> {
        // pgwire decodes a message's text lossily, each invalid UTF-8
        // sequence becoming U+FFFD; Postgres refuses such text instead of
        // running something the client did not send. A query that really
        // contains U+FFFD is refused too: the price of not seeing the bytes.
        if sql.contains(char::REPLACEMENT_CHARACTER) {
            return Err(ServerError::InvalidByteSequence);
        }
        let engine = self.clone();
        let sql = sql.to_string();
        self.executor
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
            self.compat.rewrite(statement)
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
        self: &Arc<Self>,
        session: &Arc<Session>,
        parsed: &Parsed,
        params: Option<datafusion::common::ParamValues>,
    ) -> Result<Output> {
        self.metrics.statements.inc();
        let engine = self.clone();
        let session = session.clone();
        let statement = parsed.statement.clone();
        let text = parsed.text.clone();
        let result = self
            .executor
            .run(async move {
                engine
                    .execute_inner(&session, (*statement).clone(), &text, params)
                    .await
            })
            .await
            .map_err(ServerError::from)
            .and_then(|result| result)
            .map_err(|e| e.shifted(parsed.offset));
        match result {
            Err(err) => {
                self.metrics.record_error(err.sqlstate());
                Err(err)
            }
            Ok(output) => Ok(self.count_stream_errors(output)),
        }
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

    async fn execute_inner(
        self: &Arc<Self>,
        session: &Session,
        statement: WeirStatement,
        sql: &str,
        params: Option<datafusion::common::ParamValues>,
    ) -> Result<Output> {
        match statement {
            WeirStatement::Query(mut statement) => {
                if sql.to_ascii_lowercase().contains("current_setting") {
                    weir_planner::compat::substitute_settings(&mut statement, |name| {
                        session.get(name)
                    })?;
                }
                let explain = matches!(*statement, Statement::Explain { .. });
                let rows = self.run_query(*statement, sql, params).await?;
                if explain {
                    Ok(Output::Rows(statements::explain::reshape(rows).await?))
                } else {
                    Ok(Output::Rows(rows))
                }
            }
            WeirStatement::CreateTable(create) => statements::ddl::create_table(self, create).await,
            WeirStatement::CreateView(view) => statements::ddl::create_view(self, view, sql).await,
            WeirStatement::Drop {
                kind,
                names,
                if_exists,
                cascade,
            } => statements::ddl::drop(self, kind, names, if_exists, cascade).await,
            WeirStatement::SetVariable { name, value } => {
                Ok(Output::Set(session.set(&name, value)?))
            }
            WeirStatement::ShowVariable { name } => statements::show::variable(session, &name),
            WeirStatement::ShowAll => statements::show::all(session),
            WeirStatement::ShowObjects(kind) => statements::show::objects(self, kind),
            WeirStatement::Transaction(op) => Ok(statements::show::transaction(op)),
            WeirStatement::Discard => Ok(Output::Command {
                tag: "SET",
                rows: None,
            }),
            WeirStatement::Savepoint(tag) => Ok(Output::Command { tag, rows: None }),
            WeirStatement::CreateStream(create) => {
                statements::stream::create_stream(self, create).await
            }
            WeirStatement::CreateMaterializedView(create) => {
                statements::stream::create_materialized_view(self, create, true).await
            }
            WeirStatement::ExplainMaterializedView(create) => {
                statements::stream::explain_materialized_view(self, create).await
            }
            WeirStatement::Subscribe { name, copy } => {
                statements::stream::subscribe(self, &name, copy)
            }
            WeirStatement::Flush { view } => statements::stream::flush(self, view.as_deref()).await,
            WeirStatement::DeclareCursor { name, view } => {
                statements::cursor::declare(self, session, &name, &view)
            }
            WeirStatement::Fetch {
                cursor,
                count,
                timeout,
            } => statements::cursor::fetch(session, &cursor, count, timeout.as_deref()).await,
            WeirStatement::CloseCursor(name) => statements::cursor::close(session, name.as_deref()),
            WeirStatement::CreateSink(create) => statements::sink::create(self, create).await,
            WeirStatement::Dml(dml) => {
                // Each statement commits on its own: a later ROLLBACK is told.
                session.note_write();
                match statements::insert_fast::execute(self, &dml, params.as_ref()).await? {
                    Some(output) => Ok(output),
                    None => statements::dml::execute(self, dml, sql, params).await,
                }
            }
            WeirStatement::Copy(copy) if copy.to => statements::dml::copy_to(self, copy).await,
            WeirStatement::Copy(copy) => {
                session.note_write();
                statements::dml::copy_from(self, copy)
            }
        }
    }

    /// What a prepared statement returns and takes, for Describe.
    /// On a worker thread, as [`Engine::execute`] is.
    pub async fn describe(
        self: &Arc<Self>,
        statement: &Arc<WeirStatement>,
        sql: &str,
    ) -> Result<Described> {
        let engine = self.clone();
        let statement = statement.clone();
        let sql = sql.to_string();
        self.executor
            .run(async move { engine.describe_now(&statement, &sql).await })
            .await?
    }

    async fn describe_now(
        self: &Arc<Self>,
        statement: &WeirStatement,
        sql: &str,
    ) -> Result<Described> {
        if let Some(described) = statements::insert_fast::describe(self, statement) {
            return Ok(described);
        }
        let schema = match statement {
            WeirStatement::Query(statement)
            | WeirStatement::Dml(weir_planner::dml::Dml { statement, .. }) => {
                let plan = self.plan_query((**statement).clone(), sql).await?;
                let params = plan
                    .get_parameter_types()
                    .map_err(|e| ServerError::from_datafusion(e, Some(sql)))?;
                // `$1`, `$2`, ... in numeric order ($10 after $9).
                let mut params: Vec<(usize, Option<DataType>)> = params
                    .into_iter()
                    .filter_map(|(id, ty)| id.trim_start_matches('$').parse().ok().map(|n| (n, ty)))
                    .collect();
                params.sort_by_key(|(n, _)| *n);
                let count = params.last().map_or(0, |(n, _)| *n);
                let mut types = vec![None; count];
                for (n, ty) in params {
                    types[n - 1] = ty;
                }
                if types.iter().any(Option::is_none) {
                    fill_from_casts(&plan, &mut types);
                }
                let schema = match plan {
                    LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) => None,
                    LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => {
                        Some(statements::explain::schema())
                    }
                    plan => Some(Arc::new(plan.schema().as_arrow().clone())),
                };
                return Ok(Described {
                    schema,
                    params: types,
                });
            }
            WeirStatement::ShowVariable { name } => Some(statements::show::variable_schema(name)),
            WeirStatement::ShowAll => Some(statements::show::all_schema()),
            WeirStatement::ShowObjects(kind) => Some(statements::show::objects_schema(*kind)),
            WeirStatement::CreateTable(_)
            | WeirStatement::CreateView(_)
            | WeirStatement::Drop { .. }
            | WeirStatement::SetVariable { .. }
            | WeirStatement::Transaction(_)
            | WeirStatement::Savepoint(_)
            | WeirStatement::Discard
            | WeirStatement::CreateStream(_)
            | WeirStatement::CreateMaterializedView(_)
            | WeirStatement::CreateSink(_)
            | WeirStatement::Copy(_)
            | WeirStatement::Flush { .. }
            | WeirStatement::DeclareCursor { .. }
            | WeirStatement::CloseCursor(_) => None,
            // The cursor's columns, which only the session knows: the
            // protocol handler fills them in.
            WeirStatement::Fetch { .. } => None,
            WeirStatement::ExplainMaterializedView(_) => Some(statements::explain::schema()),
            WeirStatement::Subscribe { name, copy } => {
                if *copy {
                    None
                } else {
                    Some(statements::stream::subscribe_schema(self, name)?)
                }
            }
        };
        Ok(Described {
            schema,
            params: Vec::new(),
        })
    }

    /// Plan a query on a worker thread.
    pub async fn plan_query(
        self: &Arc<Self>,
        statement: Statement,
        sql: &str,
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        let state = self.ctx.state();
        let sql_text = sql.to_string();
        self.executor
            .run(async move {
                state
                    .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                        statement,
                    )))
                    .await
            })
            .await?
            .map_err(|e| ServerError::from_datafusion(e, Some(&sql_text)))
    }

    /// Plan and start a query on the workers; `params` fill `$n` placeholders.
    pub async fn run_query(
        self: &Arc<Self>,
        statement: Statement,
        sql: &str,
        params: Option<datafusion::common::ParamValues>,
    ) -> Result<SendableRecordBatchStream> {
        let state = self.ctx.state();
        let ctx = self.ctx.clone();
        let sql_text = sql.to_string();
        let stream = self
            .executor
            .run(async move {
                let mut plan = state
                    .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                        statement,
                    )))
                    .await?;
                if let Some(params) = params {
                    plan = plan.replace_params_with_values(&params)?;
                }
                let df = ctx.execute_logical_plan(plan).await?;
                df.execute_stream().await
            })
            .await?
            .map_err(|e| ServerError::from_datafusion(e, Some(&sql_text)))?;
        Ok(self.executor.execute(stream))
    }

    /// Stop the workers.
    pub fn shutdown(&self) {
        self.executor.clone().shutdown();
        info!("engine stopped");
    }

    pub(crate) fn warn_restore(&self, name: &str, err: &ServerError) {
        warn!(object = name, error = %err, "could not restore catalog object; it is kept in the catalog");
    }
}

/// DataFusion types a placeholder from what it is compared with, but not
/// from a cast around it (`$1::BIGINT`); take the cast's type for those.
fn fill_from_casts(plan: &LogicalPlan, types: &mut [Option<DataType>]) {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let _ = plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            let _ = expr.apply(|e| {
                if let Expr::Cast(cast) = e
                    && let Expr::Placeholder(placeholder) = cast.expr.as_ref()
                    && let Ok(n) = placeholder.id.trim_start_matches('$').parse::<usize>()
                    && let Some(slot) = n.checked_sub(1).and_then(|i| types.get_mut(i))
                    && slot.is_none()
                {
                    *slot = Some(cast.field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
}

fn mentions_system_catalog(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.contains("pg_") || lower.contains("information_schema") || lower.contains("::reg")
}
