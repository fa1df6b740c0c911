//! Tables Weir owns: `CREATE TABLE t (...)` without a connector, INSERT,
//! UPDATE, DELETE, `COPY t FROM STDIN` and `COPY ... TO STDOUT`.
//!
//! The rows live in `weir_connectors::table_store`: DataFusion plans the
//! writes and calls the table's provider, which checks them, logs them
//! durably and applies them before the statement is acknowledged.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema, UInt64Type};
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;
use tracing::info;
use weir_connectors::copy_format::{CopyFormat, CopyOptions, CopyReader, CopyTarget, Run};
use weir_connectors::table_store::{OwnedTable, OwnedTableSpec};
use weir_planner::catalog::{Catalog, CatalogEntry, OwnedTableDef, TableDef};
use weir_planner::dml::{Copy, Dml, DmlKind};
use weir_planner::statement::CreateTable;

use crate::engine::{Engine, Output};
use crate::error::{Result, ServerError};
use crate::statements::ddl::{declared_schema, persist};

/// `CREATE TABLE t (columns, PRIMARY KEY (...))`: a table Weir owns. The
/// caller holds the DDL lock and checked that the name is free.
pub async fn create_table(engine: &Arc<Engine>, create: CreateTable) -> Result<Output> {
    if create.has_query {
        return Err(ServerError::FeatureNotSupported {
            message: "CREATE TABLE ... AS SELECT is not supported".into(),
            hint: Some("create the table, then INSERT INTO t SELECT ...".into()),
        });
    }
    if create.has_constraints {
        return Err(ServerError::FeatureNotSupported {
            message: "constraints other than PRIMARY KEY and NOT NULL are not supported".into(),
            hint: None,
        });
    }
    create_owned(
        engine,
        Owned {
            name: create.name,
            columns: create.columns,
            primary_key: create.primary_key,
            watermark: None,
            tag: "CREATE TABLE",
        },
    )
    .await
}

/// What a table or stream Weir owns is created from.
pub struct Owned {
    /// Its name.
    pub name: String,
    /// Its declared columns.
    pub columns: Vec<datafusion::sql::sqlparser::ast::ColumnDef>,
    /// Primary-key columns (none: append-only).
    pub primary_key: Vec<String>,
    /// A stream's watermark.
    pub watermark: Option<weir_planner::parser::WatermarkClause>,
    /// The command tag.
    pub tag: &'static str,
}

/// A table Weir owns, or a stream without a connector (an append-only
/// table with a watermark). The caller holds the DDL lock.
pub async fn create_owned(engine: &Arc<Engine>, create: Owned) -> Result<Output> {
    if create.columns.is_empty() {
        return Err(ServerError::InvalidStatement {
            message: format!("table \"{}\" needs at least one column", create.name),
            position: None,
        });
    }
    let declared = declared_schema(engine, &create.columns).await?;
    let mut key = Vec::with_capacity(create.primary_key.len());
    for column in &create.primary_key {
        let index = declared
            .index_of(column)
            .map_err(|_| ServerError::UndefinedColumn {
                message: format!("column \"{column}\" named in key does not exist"),
                hint: None,
                position: None,
            })?;
        key.push(index);
    }
    // Primary-key columns are NOT NULL, as in Postgres.
    let schema = Arc::new(Schema::new(
        declared
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let nullable = f.is_nullable() && !key.contains(&i);
                Field::new(f.name(), f.data_type().clone(), nullable)
            })
            .collect::<Vec<_>>(),
    ));
    let watermark = match &create.watermark {
        Some(clause) => {
            let delay = super::stream::watermark_delay(clause)?;
            match schema.index_of(&clause.column) {
                Ok(i)
                    if matches!(
                        schema.field(i).data_type(),
                        datafusion::arrow::datatypes::DataType::Timestamp(_, _)
                    ) =>
                {
                    Some((clause.column.clone(), i, delay))
                }
                Ok(i) => {
                    return Err(ServerError::DatatypeMismatch {
                        message: format!(
                            "the watermark column \"{}\" must be a TIMESTAMP, not {}",
                            clause.column,
                            schema.field(i).data_type()
                        ),
                        position: None,
                    });
                }
                Err(_) => {
                    return Err(ServerError::UndefinedColumn {
                        message: format!(
                            "the watermark column \"{}\" does not exist in stream \"{}\"",
                            clause.column, create.name
                        ),
                        hint: None,
                        position: None,
                    });
                }
            }
        }
        None => None,
    };
    let spec = OwnedTableSpec {
        id: engine.tables.new_table_id(),
        name: create.name.clone(),
        schema: schema.clone(),
        primary_key: key,
        event_time: watermark.as_ref().map(|(_, i, d)| (*i, *d)),
    };
    let table = engine.tables.create(spec.clone())?;
    let def = TableDef {
        name: create.name.clone(),
        columns: TableDef::columns_of(&schema),
        options: Default::default(),
        owned: Some(OwnedTableDef {
            id: spec.id,
            primary_key: create.primary_key.clone(),
            watermark: watermark.map(|(c, _, d)| (c, d)),
        }),
    };
    persist(engine, |catalog| {
        catalog.insert(CatalogEntry::Table(def)).map_err(Into::into)
    })?;
    engine.tables.add(table.clone());
    engine
        .ctx
        .register_table(
            datafusion::common::TableReference::bare(create.name.as_str()),
            Arc::new(table),
        )
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    info!(table = %create.name, id = spec.id, "table created");
    Ok(Output::Command {
        tag: create.tag,
        rows: None,
    })
}

/// The tables Weir owns that the catalog names, for the store to replay
/// its log into.
pub fn owned_specs(catalog: &Catalog) -> Vec<OwnedTableSpec> {
    catalog
        .entries
        .iter()
        .filter_map(|entry| match entry {
            CatalogEntry::Table(def) => {
                let owned = def.owned.as_ref()?;
                let schema = def.schema().ok()?;
                let primary_key = owned
                    .primary_key
                    .iter()
                    .filter_map(|c| schema.index_of(c).ok())
                    .collect();
                let event_time = owned
                    .watermark
                    .as_ref()
                    .and_then(|(column, delay)| schema.index_of(column).ok().map(|i| (i, *delay)));
                Some(OwnedTableSpec {
                    id: owned.id,
                    name: def.name.clone(),
                    schema,
                    primary_key,
                    event_time,
                })
            }
            _ => None,
        })
        .collect()
}

/// Register a table the store recovered, on start.
pub fn restore_table(engine: &Arc<Engine>, def: &TableDef, owned: &OwnedTableDef) -> Result<()> {
    let table = engine.tables.get(owned.id).ok_or_else(|| {
        ServerError::internal(format!(
            "the rows of table \"{}\" were not recovered",
            def.name
        ))
    })?;
    engine
        .ctx
        .register_table(
            datafusion::common::TableReference::bare(def.name.as_str()),
            Arc::new(table),
        )
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    Ok(())
}

/// Forget the rows of a dropped table, if Weir owned it.
pub fn dropped(engine: &Engine, name: &str) {
    engine.tables.remove_named(name);
}

/// A materialized view's input when it reads a table Weir owns: its rows
/// as they are inserted, or its changes when it has a primary key. `None`
/// when `name` is not such a table.
pub fn stream_input(
    engine: &Engine,
    name: &str,
) -> Result<Option<weir_planner::stream_plan::StreamInput>> {
    // By name in the store: on start, views are restored before the
    // engine's catalog is filled in.
    let Some(table) = engine.tables.named(name) else {
        return Ok(None);
    };
    use weir_connectors::table_store::changelog::{ChangelogSource, TableSource};
    // A table with a primary key is read as its changes (updates and
    // deletes retract rows); an append-only one as its rows.
    let event_time = table.event_time();
    let source: Arc<dyn weir_runtime::source::Source> = if table.has_primary_key() {
        Arc::new(ChangelogSource::new(table))
    } else {
        Arc::new(TableSource::new(table))
    };
    let schema = source.schema();
    Ok(Some(weir_planner::stream_plan::StreamInput {
        source,
        event_time: event_time
            .map(|(column, delay)| weir_runtime::plan::EventTime { column, delay }),
        time_column: event_time.map(|(column, _)| schema.field(column).name().clone()),
    }))
}

/// Before a FLUSH: wait until the views reading tables Weir owns have read
/// every row written so far, so the FLUSH barrier follows those rows.
pub async fn catch_up(engine: &Engine) -> Result<()> {
    let inputs: Vec<String> = engine
        .views
        .lock()
        .values()
        .flat_map(|v| v.inputs.clone())
        .collect();
    for name in inputs {
        if let Some(table) = engine.tables.named(&name)
            && !table.catch_up(std::time::Duration::from_secs(60)).await
        {
            return Err(ServerError::Io {
                message: format!("views reading table \"{name}\" did not catch up within 60 s"),
            });
        }
    }
    Ok(())
}

/// The table Weir owns called `name`, or why a write to it is refused.
fn owned_table(engine: &Engine, name: &str, what: &str) -> Result<Option<OwnedTable>> {
    let id = match engine.catalog.lock().get(name) {
        Some(CatalogEntry::Table(TableDef {
            owned: Some(owned), ..
        })) => owned.id,
        Some(entry) => {
            return Err(ServerError::WrongObjectType {
                message: format!(
                    "cannot {what} {} \"{name}\": only tables created without a connector take writes",
                    entry.kind().name()
                ),
            });
        }
        // DataFusion reports the missing table, with its position.
        None => return Ok(None),
    };
    Ok(engine.tables.get(id))
}

/// INSERT / UPDATE / DELETE.
pub async fn execute(
    engine: &Arc<Engine>,
    dml: Dml,
    sql: &str,
    params: Option<datafusion::common::ParamValues>,
) -> Result<Output> {
    let what = match dml.kind {
        DmlKind::Insert => "insert into",
        DmlKind::Update => "update",
        DmlKind::Delete => "delete from",
    };
    owned_table(engine, &dml.table, what)?;
    let mut rows = engine.run_query(*dml.statement, sql, params).await?;
    let mut count = 0;
    while let Some(batch) = rows.next().await {
        let batch = batch.map_err(|e| ServerError::from_datafusion(e, Some(sql)))?;
        if batch.num_rows() > 0
            && let Some(counts) = batch.column(0).as_primitive_opt::<UInt64Type>()
        {
            count += counts.value(0) as usize;
        }
    }
    Ok(Output::Command {
        tag: dml.kind.tag(),
        rows: Some(count),
    })
}

/// The format options of a COPY statement.
fn copy_options(copy: &Copy) -> Result<CopyOptions> {
    let format = match copy.format.as_str() {
        "csv" => CopyFormat::Csv,
        _ => CopyFormat::Text,
    };
    let mut options = CopyOptions::new(format);
    let byte = |c: char, what: &str| -> Result<u8> {
        u8::try_from(c)
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| ServerError::FeatureNotSupported {
                message: format!("COPY {what} must be a single one-byte character"),
                hint: None,
            })
    };
    if let Some(d) = copy.delimiter {
        options.delimiter = byte(d, "delimiter")?;
    }
    if let Some(q) = copy.quote {
        options.quote = byte(q, "quote")?;
        if copy.escape.is_none() {
            options.escape = options.quote;
        }
    }
    if let Some(e) = copy.escape {
        options.escape = byte(e, "escape")?;
    }
    if let Some(null) = &copy.null {
        options.null = null.clone();
    }
    options.header = copy.header;
    if copy.header && format == CopyFormat::Text {
        return Err(ServerError::FeatureNotSupported {
            message: "COPY HEADER available only in CSV mode".into(),
            hint: None,
        });
    }
    Ok(options)
}

/// `COPY t | (query) TO STDOUT`: rows streamed as COPY data.
pub async fn copy_to(engine: &Arc<Engine>, copy: Copy) -> Result<Output> {
    let options = copy_options(&copy)?;
    let (statement, text) = match (&copy.query, &copy.table) {
        (Some(query), _) => {
            let statement = Statement::Query(query.clone());
            let text = statement.to_string();
            (statement, text)
        }
        (None, Some(table)) => {
            let columns = if copy.columns.is_empty() {
                "*".to_string()
            } else {
                copy.columns
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let text = format!("SELECT {columns} FROM {}", quote_ident(table));
            let statement = weir_planner::parser::parse(&text)?
                .pop()
                .ok_or_else(|| ServerError::internal("COPY query vanished"))?;
            (statement, text)
        }
        (None, None) => return Err(ServerError::internal("COPY without a source")),
    };
    let batches = engine.run_query(statement, &text, None).await?;
    Ok(Output::CopyOut { batches, options })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `COPY t FROM STDIN`: check the table and columns; the data follows in
/// the COPY sub-protocol (see [`CopyIn`]).
pub fn copy_from(engine: &Arc<Engine>, copy: Copy) -> Result<Output> {
    let name = copy
        .table
        .clone()
        .ok_or_else(|| ServerError::internal("COPY FROM without a table"))?;
    let table =
        owned_table(engine, &name, "copy to")?.ok_or_else(|| ServerError::UndefinedTable {
            name: name.clone(),
            position: None,
        })?;
    let options = copy_options(&copy)?;
    let schema = datafusion::catalog::TableProvider::schema(&table);
    let columns = if copy.columns.is_empty() {
        (0..schema.fields().len()).collect()
    } else {
        copy.columns
            .iter()
            .map(|c| {
                schema
                    .index_of(c)
                    .map_err(|_| ServerError::UndefinedColumn {
                        message: format!("column \"{c}\" of relation \"{name}\" does not exist"),
                        hint: None,
                        position: None,
                    })
            })
            .collect::<Result<Vec<_>>>()?
    };
    let target = CopyTarget {
        table: name,
        schema,
        columns,
    };
    Ok(Output::CopyIn(Box::new(CopyIn {
        engine: engine.clone(),
        reader: CopyReader::new(options.clone()),
        options,
        target,
        table,
        parsing: std::collections::VecDeque::new(),
        batches: Vec::new(),
        error: None,
    })))
}

/// Runs parsed ahead of the ones being received: enough to keep a worker
/// busy while the connection reads, few enough to bound memory.
const PARSE_AHEAD: usize = 2;

/// A `COPY FROM STDIN` in progress: data is cut into runs of whole records,
/// parsed on the workers while more arrives, and inserted as one statement
/// when the client says it is done.
pub struct CopyIn {
    engine: Arc<Engine>,
    reader: CopyReader,
    options: CopyOptions,
    target: CopyTarget,
    table: OwnedTable,
    parsing: std::collections::VecDeque<tokio::sync::oneshot::Receiver<Result<RecordBatch>>>,
    batches: Vec<RecordBatch>,
    /// The first error; later data is read and dropped, and the error is
    /// reported when the client ends the COPY (as Postgres does).
    error: Option<ServerError>,
}

impl CopyIn {
    /// The number of columns the data has.
    pub fn columns(&self) -> usize {
        self.target.columns.len()
    }

    /// Take one CopyData message.
    pub async fn data(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if let Some(run) = self.reader.push(bytes) {
            self.parse(run);
        }
        while self.parsing.len() > PARSE_AHEAD {
            self.collect_one().await;
        }
    }

    /// CopyDone: parse the rest, insert everything; the row count.
    pub async fn finish(mut self) -> Result<usize> {
        if self.error.is_none()
            && let Some(run) = self.reader.finish()
        {
            self.parse(run);
        }
        while !self.parsing.is_empty() {
            self.collect_one().await;
        }
        if let Some(err) = self.error {
            return Err(err);
        }
        let table = self.table.clone();
        let batches = std::mem::take(&mut self.batches);
        let rows = self
            .engine
            .executor
            .run(async move { table.insert(batches).await })
            .await??;
        Ok(rows as usize)
    }

    fn parse(&mut self, run: Run) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let options = self.options.clone();
        let target = self.target.clone();
        self.engine.executor.spawn(async move {
            let _ = tx.send(
                weir_connectors::copy_format::parse(run, &options, &target).map_err(Into::into),
            );
        });
        self.parsing.push_back(rx);
    }

    async fn collect_one(&mut self) {
        let Some(next) = self.parsing.pop_front() else {
            return;
        };
        match next.await {
            Ok(Ok(batch)) => self.batches.push(batch),
            Ok(Err(err)) => {
                self.error.get_or_insert(err);
            }
            Err(_) => {
                self.error
                    .get_or_insert_with(|| ServerError::internal("a COPY parse task failed"));
            }
        }
    }
}
