//! Tables Weir owns: `CREATE TABLE t (...)` without a connector, INSERT,
//! UPDATE, DELETE, `COPY t FROM STDIN` and `COPY ... TO STDOUT`.
//!
//! The rows live in `weir_connectors::table_store`: DataFusion plans the
//! writes and calls the table's provider, which checks them, logs them
//! durably and applies them before the statement is acknowledged.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Field, Schema, UInt64Type};
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;
use tracing::info;
use weir_connectors::copy_format::{CopyFormat, CopyOptions, CopyTarget};
use weir_connectors::table_store::txn::SharedTransaction;
use weir_connectors::table_store::{OwnedTable, OwnedTableSpec};
use weir_planner::catalog::{Catalog, CatalogEntry, OwnedTableDef, TableDef};
use weir_planner::dml::{Copy, Dml, DmlKind};
use weir_planner::statement::CreateTable;

use crate::copy_in::CopyIn;
use crate::error::{Result, ServerError};
use crate::output::Output;
use crate::registry::{Registry, WriteTarget};
use crate::statements::ddl::declared_schema;

/// `CREATE TABLE t (columns, PRIMARY KEY (...))`: a table Weir owns. The
/// caller holds the DDL lock and checked that the name is free.
pub async fn create_table(registry: &Registry, create: CreateTable) -> Result<Output> {
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
        registry,
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
pub async fn create_owned(registry: &Registry, create: Owned) -> Result<Output> {
    if create.columns.is_empty() {
        return Err(ServerError::InvalidStatement {
            message: format!("table \"{}\" needs at least one column", create.name),
            position: None,
        });
    }
    let declared = declared_schema(registry, &create.columns).await?;
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
            let delay = super::streams::watermark_delay(clause)?;
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
        id: registry.tables().new_table_id(),
        name: create.name.clone(),
        schema: schema.clone(),
        primary_key: key,
        event_time: watermark.as_ref().map(|(_, i, d)| (*i, *d)),
    };
    let table = registry.tables().create(spec.clone())?;
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
    registry.persist(|catalog| catalog.insert(CatalogEntry::Table(def)).map_err(Into::into))?;
    registry.tables().add(table.clone());
    registry.register_table(&create.name, Arc::new(table))?;
    info!(table = %create.name, id = spec.id, "table created");
    Ok(Output::command(create.tag))
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
pub fn restore_table(registry: &Registry, def: &TableDef, owned: &OwnedTableDef) -> Result<()> {
    let table = registry.tables().get(owned.id).ok_or_else(|| {
        ServerError::internal(format!(
            "the rows of table \"{}\" were not recovered",
            def.name
        ))
    })?;
    registry.register_table(&def.name, Arc::new(table))
}

/// Forget the rows of a dropped table, if Weir owned it.
pub fn dropped(registry: &Registry, name: &str) {
    registry.tables().remove_named(name);
}

/// A materialized view's input when it reads a table Weir owns: its rows
/// as they are inserted, or its changes when it has a primary key. `None`
/// when `name` is not such a table.
pub fn stream_input(
    registry: &Registry,
    name: &str,
) -> Result<Option<weir_planner::stream_plan::StreamInput>> {
    // By name in the store: on start, views are restored before the
    // registry's catalog is filled in.
    let Some(table) = registry.tables().named(name) else {
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
pub async fn catch_up(registry: &Registry) -> Result<()> {
    let inputs: Vec<String> = registry
        .views()
        .into_iter()
        .flat_map(|(_, v)| v.inputs.clone())
        .collect();
    for name in inputs {
        if let Some(table) = registry.tables().named(&name)
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
fn owned_table(registry: &Registry, name: &str, what: &str) -> Result<Option<OwnedTable>> {
    match registry.write_target(name) {
        WriteTarget::Owned(table) => Ok(table),
        WriteTarget::Other(kind) => Err(ServerError::WrongObjectType {
            message: format!(
                "cannot {what} {} \"{name}\": only tables created without a connector take writes",
                kind.name()
            ),
        }),
        // DataFusion reports the missing table, with its position.
        WriteTarget::Missing => Ok(None),
    }
}

/// INSERT / UPDATE / DELETE.
pub async fn execute(
    registry: &Registry,
    dml: Dml,
    sql: &str,
    params: Option<datafusion::common::ParamValues>,
) -> Result<Output> {
    let what = match dml.kind {
        DmlKind::Insert => "insert into",
        DmlKind::Update => "update",
        DmlKind::Delete => "delete from",
    };
    owned_table(registry, &dml.table, what)?;
    let mut rows = registry.run_query(*dml.statement, sql, params).await?;
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
pub async fn copy_to(registry: &Registry, copy: Copy) -> Result<Output> {
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
    let batches = registry.run_query(statement, &text, None).await?;
    Ok(Output::CopyOut { batches, options })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `COPY t FROM STDIN`: check the table and columns; the data follows in
/// the COPY sub-protocol (see [`CopyIn`]) and is written in `txn`, which
/// the COPY commits when it is `autocommit` (outside a transaction block).
pub fn copy_from(
    registry: &Registry,
    copy: Copy,
    txn: &SharedTransaction,
    autocommit: bool,
) -> Result<Output> {
    let name = copy
        .table
        .clone()
        .ok_or_else(|| ServerError::internal("COPY FROM without a table"))?;
    let table =
        owned_table(registry, &name, "copy to")?.ok_or_else(|| ServerError::UndefinedTable {
            kind: "relation",
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
    Ok(Output::CopyIn(Box::new(CopyIn::new(
        registry.executor().clone(),
        options,
        target,
        table,
        txn.clone(),
        autocommit,
    ))))
}
