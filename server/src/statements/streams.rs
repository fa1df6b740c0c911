//! `CREATE STREAM`, and rebuilding a stream on start: an unbounded source
//! (a connector's, or a table Weir owns that takes INSERT and COPY) with its
//! event-time column and watermark.
//!
//! A stream is registered as a table so that materialized views can read it;
//! a bounded one (over files) can also be queried directly, an unbounded one
//! refuses a `SELECT` that would never end.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::not_impl_err;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast;
use tracing::info;
use weir_connectors::ConnectorOptions;
use weir_connectors::registry as connectors;
use weir_planner::catalog::{CatalogEntry, StreamDef, TableDef};
use weir_planner::parser::WatermarkClause;
use weir_planner::statement::CreateStream;

use crate::error::{Result, ServerError};
use crate::output::Output;
use crate::registry::{LiveStream, Registry};
use crate::statements::ddl::declared_schema;

/// `CREATE STREAM`.
pub async fn create_stream(registry: &Registry, create: CreateStream) -> Result<Output> {
    let _ddl = registry.ddl_guard().await;
    if registry.name_taken(&create.name) {
        if create.if_not_exists {
            return Ok(Output::command("CREATE STREAM"));
        }
        return Err(ServerError::DuplicateTable { name: create.name });
    }
    if !create.primary_key.is_empty() && !takes_primary_key(&create.options) {
        return Err(ServerError::FeatureNotSupported {
            message: "a PRIMARY KEY on a stream needs a keyed change format".into(),
            hint: Some(
                "a kafka stream with format = 'upsert-json' takes one: its messages' keys".into(),
            ),
        });
    }
    if create.options.is_empty() {
        // No connector: a stream Weir owns, written with INSERT and COPY.
        return super::dml::create_owned(
            registry,
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
        Some(declared_schema(registry, &create.columns).await?)
    };
    let mut options = create.options.clone();
    if !create.primary_key.is_empty() {
        // The connector reads the key as an option, so it is stored (and
        // the stream rebuilt on start) with the others.
        options.push(("primary_key".into(), create.primary_key.join(",")));
    }
    let options = ConnectorOptions::new(options);
    let stored = options.as_map().clone();
    let (live, def) = open_stream(
        registry,
        &create.name,
        options,
        stored,
        declared,
        create.watermark.as_ref(),
        false,
    )
    .await?;
    registry.persist(|catalog| {
        catalog
            .insert(CatalogEntry::Stream(def))
            .map_err(Into::into)
    })?;
    register_stream(registry, &create.name, live)?;
    info!(stream = %create.name, "stream created");
    Ok(Output::command("CREATE STREAM"))
}

/// Does the stream's connector take a key (only Kafka's, for upsert-json)?
fn takes_primary_key(options: &[(String, String)]) -> bool {
    options
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("connector"))
        .and_then(|(_, name)| connectors::find(name).ok())
        .is_some_and(|c| c.options().iter().any(|o| o.name == "primary_key"))
}

async fn open_stream(
    registry: &Registry,
    name: &str,
    options: ConnectorOptions,
    stored: std::collections::BTreeMap<String, String>,
    declared: Option<SchemaRef>,
    watermark: Option<&WatermarkClause>,
    restoring: bool,
) -> Result<(LiveStream, StreamDef)> {
    let state = registry.state();
    let mut connector = registry
        .run(async move {
            match (restoring, declared) {
                (true, Some(declared)) => {
                    connectors::reopen_stream(&state, options, declared).await
                }
                (_, declared) => connectors::open_stream(&state, options, declared).await,
            }
        })
        .await??;
    connector.observe(name, registry.runtime_metrics());
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
    if weir_planner::windows::is_proctime(&expr) {
        return Err(weir_planner::PlanError::Unsupported {
            what: "a watermark over processing time (PROCTIME())".into(),
            hint: Some(format!(
                "a watermark bounds a time column of the stream's rows, and processing time is none of them; {}",
                weir_planner::windows::PROCTIME_HINT
            )),
        }
        .into());
    }
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

fn register_stream(registry: &Registry, name: &str, live: LiveStream) -> Result<()> {
    let table: Arc<dyn TableProvider> = if live.connector.bounded() {
        live.connector.table()
    } else {
        Arc::new(UnboundedStream {
            name: name.to_string(),
            schema: live.connector.schema(),
        })
    };
    registry.add_stream(name, table, live)
}

/// Rebuild a stream from the catalog on start.
pub async fn restore_stream(registry: &Registry, def: &StreamDef) -> Result<()> {
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
        registry,
        &def.name,
        options,
        def.options.clone(),
        Some(declared),
        watermark.as_ref(),
        true,
    )
    .await?;
    register_stream(registry, &def.name, live)
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
