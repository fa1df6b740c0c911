//! `information_schema`, as Postgres clients read it.
//!
//! DataFusion's own `information_schema` names column types the Arrow way
//! (`Int64`, `Utf8`); clients (Grafana, DBeaver, hand-written queries) expect
//! Postgres's names (`bigint`, `text`). This schema wraps DataFusion's and
//! rewrites `columns.data_type`; everything else passes through. Both it and
//! `pg_catalog` read the catalogs through [`ClientCatalogs`], which shows
//! the declared nullability of tables Weir owns.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider,
};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::{ExecutionPlan, collect};
use weir_connectors::table_store::OwnedTable;

/// The `information_schema` schema.
#[derive(Debug)]
pub struct PgInformationSchema {
    inner: InformationSchemaProvider,
}

impl PgInformationSchema {
    /// Over every catalog in `catalogs`.
    pub fn new(catalogs: Arc<dyn CatalogProviderList>) -> Self {
        Self {
            inner: InformationSchemaProvider::new(Arc::new(ClientCatalogs::new(catalogs))),
        }
    }
}

#[async_trait]
impl SchemaProvider for PgInformationSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        Ok(match (name.to_ascii_lowercase().as_str(), table) {
            ("columns", Some(inner)) => Some(Arc::new(PgColumns { inner })),
            (_, table) => table,
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// `information_schema.columns` with Postgres type names.
#[derive(Debug)]
struct PgColumns {
    inner: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for PgColumns {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The table is small (one row per column of every table): read it
        // whole, rename the types, then serve the scan from memory.
        let plan = self.inner.scan(state, None, &[], None).await?;
        let batches = collect(plan, state.task_ctx()).await?;
        let schema = self.inner.schema();
        let type_index = schema.index_of("data_type")?;
        let renamed = batches
            .into_iter()
            .map(|batch| {
                let mut columns = batch.columns().to_vec();
                columns[type_index] = pg_type_names(&columns[type_index]);
                RecordBatch::try_new(schema.clone(), columns)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        MemTable::try_new(schema, vec![renamed])?
            .scan(state, projection, filters, limit)
            .await
    }
}

fn pg_type_names(arrow_names: &ArrayRef) -> ArrayRef {
    let Some(strings) = arrow_names.as_any().downcast_ref::<StringArray>() else {
        return arrow_names.clone();
    };
    let renamed: StringArray = strings
        .iter()
        .map(|name| {
            name.map(|name| match name.parse::<DataType>() {
                Ok(data_type) => sql_type_name(&data_type).to_string(),
                Err(_) => name.to_string(),
            })
        })
        .collect();
    Arc::new(renamed)
}

/// The SQL-standard name Postgres reports for a type in
/// `information_schema.columns.data_type`.
pub fn sql_type_name(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int64 | DataType::UInt32 => "bigint",
        DataType::UInt64 | DataType::Decimal32(..) | DataType::Decimal64(..) => "numeric",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
        DataType::Float16 | DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "bytea",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone",
        DataType::Timestamp(_, None) => "timestamp without time zone",
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        DataType::Interval(_)
        | DataType::Duration(
            TimeUnit::Second | TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond,
        ) => "interval",
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::ListView(_)
        | DataType::LargeListView(_) => "ARRAY",
        DataType::Null => "unknown",
        _ => "USER-DEFINED",
    }
}

/// The catalogs as clients' catalog tables (`pg_catalog`,
/// `information_schema`) see them.
///
/// - Tables Weir owns show the nullability they were declared with. Their
///   providers show every column nullable, so that DataFusion leaves NOT
///   NULL to the table (which reports it with Postgres's message); `\d`,
///   `pg_attribute.attnotnull` and `information_schema.columns.is_nullable`
///   should still say NOT NULL.
/// - For `pg_catalog`, without `information_schema`: in Postgres its views
///   live in `pg_class` but are not visible on the search path;
///   `datafusion-pg-catalog` has no notion of visibility, so clients that
///   list "all visible views" (SQLAlchemy) would report them as user views.
///   Hiding the schema from `pg_catalog` keeps those listings to the user's
///   objects.
///
/// Only catalog tables read these providers, and only for their schemas:
/// queries resolve tables through the session's own catalogs.
#[derive(Debug)]
pub struct ClientCatalogs {
    inner: Arc<dyn CatalogProviderList>,
    hide_information_schema: bool,
}

impl ClientCatalogs {
    /// `inner` as `pg_catalog` sees it: without `information_schema`.
    pub fn without_information_schema(inner: Arc<dyn CatalogProviderList>) -> Self {
        Self {
            inner,
            hide_information_schema: true,
        }
    }

    /// `inner` as `information_schema` sees it.
    fn new(inner: Arc<dyn CatalogProviderList>) -> Self {
        Self {
            inner,
            hide_information_schema: false,
        }
    }
}

impl CatalogProviderList for ClientCatalogs {
    fn register_catalog(
        &self,
        name: String,
        catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        self.inner.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        self.inner.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.inner.catalog(name).map(|inner| {
            Arc::new(ClientCatalog {
                inner,
                hide_information_schema: self.hide_information_schema,
            }) as Arc<dyn CatalogProvider>
        })
    }
}

#[derive(Debug)]
struct ClientCatalog {
    inner: Arc<dyn CatalogProvider>,
    hide_information_schema: bool,
}

const HIDDEN: &str = "information_schema";

impl CatalogProvider for ClientCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.inner
            .schema_names()
            .into_iter()
            .filter(|s| !(self.hide_information_schema && s == HIDDEN))
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if self.hide_information_schema && name == HIDDEN {
            None
        } else {
            self.inner
                .schema(name)
                .map(|inner| Arc::new(DeclaredColumns { inner }) as Arc<dyn SchemaProvider>)
        }
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        self.inner.register_schema(name, schema)
    }

    fn deregister_schema(
        &self,
        name: &str,
        cascade: bool,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        self.inner.deregister_schema(name, cascade)
    }
}

/// A schema whose tables Weir owns show their declared columns.
#[derive(Debug)]
struct DeclaredColumns {
    inner: Arc<dyn SchemaProvider>,
}

#[async_trait]
impl SchemaProvider for DeclaredColumns {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        Ok(table.map(|table| {
            match table
                .downcast_ref::<OwnedTable>()
                .map(OwnedTable::declared_schema)
            {
                Some(schema) => Arc::new(Declared { table, schema }) as Arc<dyn TableProvider>,
                None => table,
            }
        }))
    }

    async fn table_type(&self, name: &str) -> Result<Option<TableType>> {
        self.inner.table_type(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// A table Weir owns, with the schema it was declared with.
#[derive(Debug)]
struct Declared {
    table: Arc<dyn TableProvider>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for Declared {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.table.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Catalog tables never scan it; should anything, it gets the rows.
        self.table.scan(state, projection, filters, limit).await
    }
}
