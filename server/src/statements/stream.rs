//! Streams and materialized views: `CREATE STREAM`, `CREATE MATERIALIZED
//! VIEW [... EMIT ON WINDOW CLOSE]`, its `EXPLAIN`, `SUBSCRIBE`, `FLUSH`.
//!
//! A materialized view is a job: its query is planned by DataFusion, turned
//! into a stream plan by `weir_planner::stream_plan`, and run by
//! `weir_runtime::job` into a `MaterializedView`, which is registered as a
//! table so `SELECT` reads its current contents.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::not_impl_err;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{self as ast, Statement};
use tracing::info;
use weir_connectors::ConnectorOptions;
use weir_connectors::registry;
use weir_planner::catalog::{CatalogEntry, MaterializedViewDef, SinkDef, StreamDef, TableDef};
use weir_planner::parser::WatermarkClause;
use weir_planner::statement::ObjectKind;
use weir_planner::statement::{CreateMaterializedView, CreateStream};
use weir_planner::stream_plan::{StreamInput, plan_stream, scanned_tables};
use weir_planner::windows::{Mode, rewrite_windows};
use weir_runtime::job;
use weir_runtime::materialized::{MaterializedView, ViewSink, ViewTable};
use weir_runtime::plan::EventTime;

use crate::engine::{Engine, LiveStream, LiveView, Output};
use crate::error::{Result, ServerError};
use crate::statements::ddl::{declared_schema, persist};

fn name_taken(engine: &Engine, name: &str) -> bool {
    engine.catalog.lock().get(name).is_some()
        || engine
            .ctx
            .table_exist(datafusion::common::TableReference::bare(name))
            .unwrap_or(false)
}

/// `CREATE STREAM`.
pub async fn create_stream(engine: &Arc<Engine>, create: CreateStream) -> Result<Output> {
    let _ddl = engine.ddl_lock.lock().await;
    if name_taken(engine, &create.name) {
        if create.if_not_exists {
            return Ok(Output::Command {
                tag: "CREATE STREAM",
                rows: None,
            });
        }
        return Err(ServerError::DuplicateTable { name: create.name });
    }
    if create.options.is_empty() {
        // No connector: a stream Weir owns, written with INSERT and COPY.
        return super::dml::create_owned(
            engine,
            super::dml::Owned {
                name: create.name,
                columns: create.columns,
                primary_key: Vec::new(),
                watermark: create.watermark,
                tag: "CREATE STREAM",
            },
        )
        .await;
    }
    let declared = if create.columns.is_empty() {
        None
    } else {
        Some(declared_schema(engine, &create.columns).await?)
    };
    let options = ConnectorOptions::new(create.options.clone());
    let stored = options.as_map().clone();
    let (live, def) = open_stream(
        engine,
        &create.name,
        options,
        stored,
        declared,
        create.watermark.as_ref(),
    )
    .await?;
    persist(engine, |catalog| {
        catalog
            .insert(CatalogEntry::Stream(def))
            .map_err(Into::into)
    })?;
    register_stream(engine, &create.name, live)?;
    info!(stream = %create.name, "stream created");
    Ok(Output::Command {
        tag: "CREATE STREAM",
        rows: None,
    })
}

async fn open_stream(
    engine: &Arc<Engine>,
    name: &str,
    options: ConnectorOptions,
    stored: std::collections::BTreeMap<String, String>,
    declared: Option<SchemaRef>,
    watermark: Option<&WatermarkClause>,
) -> Result<(LiveStream, StreamDef)> {
    let state = engine.ctx.state();
    let mut connector = engine
        .executor
        .run(async move { registry::open_stream(&state, options, declared).await })
        .await??;
    connector.observe(name, &engine.runtime_metrics);
    let schema = connector.schema();
    let (time_column, delay, written) = match watermark {
        Some(clause) => {
            let delay = watermark_delay(clause)?;
            (
                Some(clause.column.clone()),
                delay,
                Some(format!("{} AS {}", clause.column, clause.expr)),
            )
        }
        None => (connector.default_time_column().map(str::to_string), 0, None),
    };
    if let Some(column) = &time_column {
        match schema.field_with_name(column) {
            Ok(field) if matches!(field.data_type(), DataType::Timestamp(_, _)) => {}
            Ok(field) => {
                return Err(ServerError::DatatypeMismatch {
                    message: format!(
                        "the watermark column \"{column}\" must be a TIMESTAMP, not {}",
                        field.data_type()
                    ),
                    position: None,
                });
            }
            Err(_) => {
                return Err(ServerError::UndefinedColumn {
                    message: format!(
                        "the watermark column \"{column}\" does not exist in stream \"{name}\""
                    ),
                    hint: None,
                    position: None,
                });
            }
        }
    }
    let def = StreamDef {
        name: name.to_string(),
        columns: TableDef::columns_of(&schema),
        options: stored,
        time_column: time_column.clone(),
        watermark_delay_ns: delay,
        watermark: written,
    };
    Ok((
        LiveStream {
            connector,
            event_time: time_column.map(|c| (c, delay)),
        },
        def,
    ))
}

/// `col` or `col - INTERVAL '...'`.
pub(crate) fn watermark_delay(clause: &WatermarkClause) -> Result<i64> {
    let bad = || ServerError::InvalidStatement {
        message: format!(
            "a watermark must be \"{0}\" or \"{0} - INTERVAL '...'\", not \"{1}\"",
            clause.column, clause.expr
        ),
        position: None,
    };
    let expr = datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(&clause.expr)
    .and_then(|mut p| p.parse_expr())
    .map_err(|_| bad())?;
    let is_column = |e: &ast::Expr| matches!(e, ast::Expr::Identifier(i) if i.value.eq_ignore_ascii_case(&clause.column));
    match &expr {
        e if is_column(e) => Ok(0),
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Minus,
            right,
        } if is_column(left) => {
            let ast::Expr::Interval(interval) = right.as_ref() else {
                return Err(bad());
            };
            let text = match interval.value.as_ref() {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                _ => return Err(bad()),
            };
            let text = match &interval.leading_field {
                Some(field) => format!("{text} {field}"),
                None => text,
            };
            weir_runtime::windows::interval_nanos(&text).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

fn register_stream(engine: &Arc<Engine>, name: &str, live: LiveStream) -> Result<()> {
    let table: Arc<dyn TableProvider> = if live.connector.bounded() {
        live.connector.table()
    } else {
        Arc::new(UnboundedStream {
            name: name.to_string(),
            schema: live.connector.schema(),
        })
    };
    engine
        .ctx
        .register_table(datafusion::common::TableReference::bare(name), table)
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    engine
        .streams
        .lock()
        .insert(name.to_string(), Arc::new(live));
    Ok(())
}

/// Rebuild a stream from the catalog on start.
pub async fn restore_stream(engine: &Arc<Engine>, def: &StreamDef) -> Result<()> {
    let declared = weir_planner::catalog::schema_of(&def.name, &def.columns)?;
    let options = ConnectorOptions::new(def.options.clone());
    let watermark =
        def.time_column
            .as_ref()
            .zip(def.watermark.as_ref())
            .map(|(column, written)| WatermarkClause {
                column: column.clone(),
                expr: written
                    .split_once(" AS ")
                    .map_or(written.clone(), |(_, e)| e.to_string()),
            });
    let (live, _) = open_stream(
        engine,
        &def.name,
        options,
        def.options.clone(),
        Some(declared),
        watermark.as_ref(),
    )
    .await?;
    register_stream(engine, &def.name, live)
}

/// An unbounded stream as a table: it has columns, but a `SELECT` over it
/// would never end, so scanning it is refused with the way out.
#[derive(Debug)]
struct UnboundedStream {
    name: String,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for UnboundedStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _: &dyn DfSession,
        _: Option<&Vec<usize>>,
        _: &[Expr],
        _: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        not_impl_err!(
            "a SELECT over the unbounded stream \"{}\" would never end; query it through a materialized view",
            self.name
        )
    }
}

struct Planned {
    plan: weir_runtime::plan::StreamPlan,
    explain: String,
    inputs: Vec<String>,
}

async fn plan_view(engine: &Arc<Engine>, create: &CreateMaterializedView) -> Result<Planned> {
    let mut statement = Statement::Query(create.query.clone());
    let windows = rewrite_windows(&mut statement, Mode::Stream)?;
    if windows.len() > 1 {
        return Err(ServerError::FeatureNotSupported {
            message: "more than one window function in a materialized view is not supported".into(),
            hint: None,
        });
    }
    let text = statement.to_string();
    let logical = engine.plan_query(statement, &text).await?;
    let optimized = engine
        .ctx
        .state()
        .optimize(&logical)
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    let tables = scanned_tables(&optimized);
    let mut inputs = HashMap::new();
    for table in &tables {
        if engine.views.lock().contains_key(table) {
            return Err(ServerError::FeatureNotSupported {
                message: format!(
                    "a materialized view over the materialized view \"{table}\" is not supported yet"
                ),
                hint: Some("define it over the stream the other view reads".into()),
            });
        }
        if let Some(input) = super::dml::stream_input(engine, table)? {
            inputs.insert(table.clone(), input);
            continue;
        }
        let Some(stream) = engine.streams.lock().get(table).cloned() else {
            continue;
        };
        let state = engine.ctx.state();
        let connector = stream.connector.clone();
        let source = engine
            .executor
            .run(async move { connector.source(&state).await })
            .await??;
        let schema = source.schema();
        let event_time = stream.event_time.as_ref().and_then(|(column, delay)| {
            schema.index_of(column).ok().map(|i| EventTime {
                column: i,
                delay: *delay,
            })
        });
        inputs.insert(
            table.clone(),
            StreamInput {
                source,
                event_time,
                time_column: stream.event_time.as_ref().map(|(c, _)| c.clone()),
            },
        );
    }
    let (plan, explain) = plan_stream(
        &optimized,
        windows.first(),
        create.emit_on_window_close,
        engine.parallelism,
        &inputs,
    )?;
    Ok(Planned {
        plan,
        explain,
        inputs: tables,
    })
}

/// `CREATE MATERIALIZED VIEW`; `persist` is false when restoring.
pub async fn create_materialized_view(
    engine: &Arc<Engine>,
    create: CreateMaterializedView,
    persist_it: bool,
) -> Result<Output> {
    let _ddl = if persist_it {
        Some(engine.ddl_lock.lock().await)
    } else {
        None
    };
    if persist_it && name_taken(engine, &create.name) {
        if create.if_not_exists {
            return Ok(Output::Command {
                tag: "CREATE MATERIALIZED VIEW",
                rows: None,
            });
        }
        return Err(ServerError::DuplicateTable { name: create.name });
    }
    let planned = plan_view(engine, &create).await?;
    let view = MaterializedView::new(planned.plan.output_schema.clone(), planned.plan.changelog)
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    if persist_it {
        let def = MaterializedViewDef {
            name: create.name.clone(),
            query: create.query.to_string(),
            emit_on_window_close: create.emit_on_window_close,
        };
        persist(engine, |catalog| {
            catalog
                .insert(CatalogEntry::MaterializedView(def))
                .map_err(Into::into)
        })?;
    }
    let job_sink = ViewSink::new(view.clone());
    if !persist_it {
        // Sinks of this view, from the catalog: attached before the job
        // runs, so the restore hands them their part of the checkpoint.
        let sinks: Vec<SinkDef> = engine
            .catalog
            .lock()
            .of_kind(ObjectKind::Sink)
            .filter_map(|e| match e {
                CatalogEntry::Sink(def) if def.from == create.name => Some(def.clone()),
                _ => None,
            })
            .collect();
        for def in sinks {
            match super::sink::open(&def, &view) {
                Ok(sink) => job_sink
                    .attach(&def.name, sink, false)
                    .map_err(|e| ServerError::from_datafusion(e, None))?,
                Err(err) => engine.warn_restore(&def.name, &err),
            }
        }
    }
    let checkpointing = crate::checkpoints::for_job(
        engine,
        &create.name,
        &create.query.to_string(),
        &planned.plan,
        !persist_it,
    )
    .await?;
    let handle = job::start(
        &create.name,
        planned.plan,
        job_sink.clone(),
        &engine.executor,
        &engine.runtime_metrics,
        checkpointing,
    )
    .map_err(|e| ServerError::from_datafusion(e, None))?;
    engine
        .ctx
        .register_table(
            datafusion::common::TableReference::bare(create.name.as_str()),
            Arc::new(ViewTable::of_job(
                view.clone(),
                &create.name,
                handle.watch(),
            )),
        )
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    engine.views.lock().insert(
        create.name.clone(),
        Arc::new(LiveView {
            view,
            sink: job_sink,
            job: handle,
            explain: planned.explain,
            inputs: planned.inputs,
        }),
    );
    info!(view = %create.name, "materialized view created, its job is running");
    Ok(Output::Command {
        tag: "CREATE MATERIALIZED VIEW",
        rows: None,
    })
}

/// Rebuild a materialized view on start: its job resumes from its latest
/// checkpoint (or runs again from the start of its stream without one).
pub async fn restore_view(engine: &Arc<Engine>, def: &MaterializedViewDef) -> Result<()> {
    let statement = weir_planner::parser::parse(&def.query)?
        .pop()
        .ok_or_else(|| ServerError::internal("empty materialized view definition"))?;
    let Statement::Query(query) = statement else {
        return Err(ServerError::internal(
            "a materialized view's definition is not a query",
        ));
    };
    create_materialized_view(
        engine,
        CreateMaterializedView {
            name: def.name.clone(),
            if_not_exists: false,
            query,
            emit_on_window_close: def.emit_on_window_close,
        },
        false,
    )
    .await
    .map(|_| ())
}

/// `EXPLAIN CREATE MATERIALIZED VIEW`: the stream plan, with each operator's
/// key and state.
pub async fn explain_materialized_view(
    engine: &Arc<Engine>,
    create: CreateMaterializedView,
) -> Result<Output> {
    let planned = plan_view(engine, &create).await?;
    let lines: Vec<String> = planned.explain.lines().map(str::to_string).collect();
    Ok(Output::Rows(super::show::text_stream(
        super::explain::schema(),
        vec![lines],
    )?))
}

fn live_view(engine: &Engine, name: &str) -> Result<Arc<LiveView>> {
    engine
        .views
        .lock()
        .get(name)
        .cloned()
        .ok_or_else(|| ServerError::UndefinedTable {
            name: name.to_string(),
            position: None,
        })
}

/// The columns a subscription sends: the view's, plus `op` for an
/// updating view.
pub fn subscribe_schema(engine: &Engine, name: &str) -> Result<SchemaRef> {
    let live = live_view(engine, name)?;
    Ok(subscription_schema(
        &live.view.schema(),
        live.view.is_changelog(),
    ))
}

fn subscription_schema(schema: &SchemaRef, changelog: bool) -> SchemaRef {
    if !changelog {
        return schema.clone();
    }
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("op", DataType::Utf8, false)));
    Arc::new(Schema::new(fields))
}

/// `SUBSCRIBE TO v`: the current rows, then every change, until the job
/// ends (a bounded stream) or the client cancels. A failed job is an error,
/// at once or when it fails.
pub fn subscribe(engine: &Arc<Engine>, name: &str, copy: bool) -> Result<Output> {
    let live = live_view(engine, name)?;
    if let Some(failure) = live.job.progress().failed {
        return Err(ServerError::job_failed(name, &failure));
    }
    let changelog = live.view.is_changelog();
    let view_schema = live.view.schema();
    let schema = subscription_schema(&view_schema, changelog);
    let (snapshot, changes) = live
        .view
        .subscribe()
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    let progress = live.job.watch();
    let out_schema = schema.clone();
    let to_output =
        move |batch: RecordBatch, snapshot: bool| -> datafusion::common::Result<RecordBatch> {
            if !changelog {
                return Ok(batch);
            }
            let n = view_schema.fields().len();
            let ops: ArrayRef = if snapshot {
                Arc::new(StringArray::from(vec!["insert"; batch.num_rows()]))
            } else {
                let ops = batch.column(n).as_primitive::<Int8Type>();
                Arc::new(
                    ops.iter()
                        .map(|o| Some(if o == Some(-1) { "delete" } else { "insert" }))
                        .collect::<StringArray>(),
                )
            };
            let mut columns: Vec<ArrayRef> = batch.columns()[..n].to_vec();
            columns.push(ops);
            Ok(RecordBatch::try_new(out_schema.clone(), columns)?)
        };
    struct State {
        snapshot: std::vec::IntoIter<RecordBatch>,
        changes: tokio::sync::broadcast::Receiver<RecordBatch>,
        progress: tokio::sync::watch::Receiver<job::Progress>,
        done: bool,
        /// The job failed: said after the changes it made before.
        failed: Option<job::JobFailure>,
    }
    let state = State {
        snapshot: snapshot.into_iter(),
        changes,
        progress,
        done: false,
        failed: None,
    };
    let view_name = name.to_string();
    let batches = futures::stream::unfold(state, move |mut state| {
        let to_output = to_output.clone();
        let view_name = view_name.clone();
        async move {
            if let Some(batch) = state.snapshot.next() {
                return Some((to_output(batch, true), state));
            }
            loop {
                if state.done {
                    // The job ended: deliver what is still queued, then stop
                    // (with the job's error, if it failed).
                    return match state.changes.try_recv() {
                        Ok(batch) => Some((to_output(batch, false), state)),
                        Err(_) => state.failed.take().map(|failure| {
                            let error = weir_runtime::RuntimeError::JobFailed {
                                view: view_name,
                                failure,
                            };
                            (
                                Err(datafusion::error::DataFusionError::External(Box::new(
                                    error,
                                ))),
                                state,
                            )
                        }),
                    };
                }
                tokio::select! {
                    received = state.changes.recv() => match received {
                        Ok(batch) => return Some((to_output(batch, false), state)),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            return Some((Err(datafusion::error::DataFusionError::ResourcesExhausted(format!(
                                "the subscriber fell {n} batches behind and was dropped"
                            ))), State { done: true, ..state }));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    changed = state.progress.changed() => {
                        let finished = changed.is_err() || {
                            let p = state.progress.borrow();
                            state.failed = p.failed.clone();
                            p.finished || p.failed.is_some()
                        };
                        if finished {
                            state.done = true;
                        }
                    }
                }
            }
        }
    });
    let batches: SendableRecordBatchStream =
        Box::pin(RecordBatchStreamAdapter::new(schema, batches));
    Ok(Output::Subscribe { batches, copy })
}

/// `FLUSH`: wait until everything the sources have read is in every view.
/// A failed view does not hold up the others: they are all flushed, and a
/// warning names the failed ones. `FLUSH v`: that view alone; its job's
/// failure, if it failed, is the statement's error.
pub async fn flush(engine: &Arc<Engine>, only: Option<&str>) -> Result<Output> {
    let views: Vec<(String, Arc<LiveView>)> = match only {
        Some(name) => vec![(name.to_string(), live_view(engine, name)?)],
        None => {
            let mut views: Vec<(String, Arc<LiveView>)> = engine
                .views
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            views.sort_by(|a, b| a.0.cmp(&b.0));
            views
        }
    };
    if let Some(name) = only
        && let Some(failure) = views[0].1.job.progress().failed
    {
        return Err(ServerError::job_failed(name, &failure));
    }
    super::dml::catch_up(engine).await?;
    // Concurrently: one view's wait does not add to the next one's.
    let outcomes = futures::future::join_all(views.iter().map(|(_, live)| live.job.flush())).await;
    let mut failed = Vec::new();
    for ((name, _), outcome) in views.iter().zip(outcomes) {
        if let Err(failure) = outcome {
            if only.is_some() {
                return Err(ServerError::job_failed(name, &failure));
            }
            failed.push(ServerError::job_failed(name, &failure).to_string());
        }
    }
    let done = Output::Command {
        tag: "FLUSH",
        rows: None,
    };
    Ok(if failed.is_empty() {
        done
    } else {
        Output::Warned {
            warning: format!("FLUSH skipped failed views: {}", failed.join("; ")),
            output: Box::new(done),
        }
    })
}
