//! `information_schema`, as Postgres clients read it.
//!
//! DataFusion's own `information_schema` names column types the Arrow way
//! (`Int64`, `Utf8`); clients (Grafana, DBeaver, hand-written queries) expect
//! Postgres's names (`bigint`, `text`). This schema wraps DataFusion's and
//! rewrites `columns.data_type`; everything else passes through. Both it and
//! `pg_catalog` read the catalogs through [`ClientCatalogs`], which shows
//! the declared nullability of tables Weir owns. `role_table_grants` and
//! `table_privileges` list the privileges on each relation ([`grants`]).

pub(crate) mod computed;
pub(crate) mod grants;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider,
};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::{ExecutionPlan, collect};
use weir_connectors::table_store::OwnedTable;

use computed::{Computed, ComputedView};

/// The `information_schema` schema.
#[derive(Debug)]
pub struct PgInformationSchema {
    inner: InformationSchemaProvider,
    /// The session's catalogs, for the primary keys of tables Weir owns.
    catalogs: Arc<dyn CatalogProviderList>,
}

impl PgInformationSchema {
    /// Over every catalog in `catalogs`.
    pub fn new(catalogs: Arc<dyn CatalogProviderList>) -> Self {
        Self {
            inner: InformationSchemaProvider::new(Arc::new(ClientCatalogs::new(catalogs.clone()))),
            catalogs,
        }
    }
}

/// The views DataFusion's `information_schema` lacks, which BI tools read
/// for keys (Metabase, Grafana, hand-written queries).
const KEY_VIEWS: [&str; 3] = [
    "table_constraints",
    "key_column_usage",
    "constraint_column_usage",
];

#[async_trait]
impl SchemaProvider for PgInformationSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(KEY_VIEWS.iter().map(|v| v.to_string()));
        names.extend(grants::GRANT_VIEWS.iter().map(|v| v.to_string()));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let lower = name.to_ascii_lowercase();
        if let Some(view) = KEY_VIEWS.iter().find(|v| **v == lower) {
            return Ok(Some(Arc::new(Computed(KeyView {
                view,
                schema: key_view_schema(view),
                catalogs: self.catalogs.clone(),
            }))));
        }
        if grants::GRANT_VIEWS.contains(&lower.as_str()) {
            return Ok(Some(Arc::new(Computed(grants::GrantsView::new(
                self.catalogs.clone(),
            )))));
        }
        let table = self.inner.table(name).await?;
        Ok(match (lower.as_str(), table) {
            ("columns", Some(inner)) => Some(Arc::new(PgColumns::new(inner))),
            (_, table) => table,
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        self.inner.table_exist(name)
            || KEY_VIEWS.contains(&lower.as_str())
            || grants::GRANT_VIEWS.contains(&lower.as_str())
    }
}

/// `table_constraints`, `key_column_usage` or `constraint_column_usage`:
/// one row per primary key (or key column) of the tables Weir owns, the
/// only constraints Weir has besides NOT NULL.
#[derive(Debug)]
struct KeyView {
    view: &'static str,
    schema: SchemaRef,
    catalogs: Arc<dyn CatalogProviderList>,
}

fn key_view_schema(view: &str) -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let fields = match view {
        "table_constraints" => vec![
            text("constraint_catalog"),
            text("constraint_schema"),
            text("constraint_name"),
            text("table_catalog"),
            text("table_schema"),
            text("table_name"),
            text("constraint_type"),
            text("is_deferrable"),
            text("initially_deferred"),
            text("enforced"),
            text("nulls_distinct"),
        ],
        "key_column_usage" => vec![
            text("constraint_catalog"),
            text("constraint_schema"),
            text("constraint_name"),
            text("table_catalog"),
            text("table_schema"),
            text("table_name"),
            text("column_name"),
            Field::new("ordinal_position", DataType::Int32, true),
            Field::new("position_in_unique_constraint", DataType::Int32, true),
        ],
        _ => vec![
            text("table_catalog"),
            text("table_schema"),
            text("table_name"),
            text("column_name"),
            text("constraint_catalog"),
            text("constraint_schema"),
            text("constraint_name"),
        ],
    };
    Arc::new(Schema::new(fields))
}

#[async_trait]
impl ComputedView for KeyView {
    fn columns(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn compute(&self, _state: &dyn Session) -> Result<RecordBatch> {
        let keys = crate::pg_catalog::primary_keys(self.catalogs.as_ref()).await?;
        // One row per key for table_constraints, per key column otherwise.
        let rows: Vec<(&crate::pg_catalog::PrimaryKey, Option<(usize, &str)>)> = keys
            .iter()
            .flat_map(|key| -> Vec<_> {
                if self.view == "table_constraints" {
                    vec![(key, None)]
                } else {
                    key.columns
                        .iter()
                        .enumerate()
                        .map(|(i, (column, _))| (key, Some((i, column.as_str()))))
                        .collect()
                }
            })
            .collect();
        let columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                let text = |f: &dyn Fn(
                    &crate::pg_catalog::PrimaryKey,
                    Option<(usize, &str)>,
                ) -> Option<String>|
                 -> ArrayRef {
                    Arc::new(rows.iter().map(|(k, c)| f(k, *c)).collect::<StringArray>())
                };
                match field.name().as_str() {
                    "constraint_catalog" | "table_catalog" => text(&|k, _| Some(k.catalog.clone())),
                    "constraint_schema" | "table_schema" => text(&|k, _| Some(k.schema.clone())),
                    "constraint_name" => text(&|k, _| Some(k.constraint_name())),
                    "table_name" => text(&|k, _| Some(k.table.clone())),
                    "column_name" => text(&|_, c| c.map(|(_, name)| name.to_string())),
                    "constraint_type" => text(&|_, _| Some("PRIMARY KEY".to_string())),
                    "is_deferrable" | "initially_deferred" => text(&|_, _| Some("NO".to_string())),
                    "enforced" => text(&|_, _| Some("YES".to_string())),
                    "ordinal_position" => Arc::new(
                        rows.iter()
                            .map(|(_, c)| c.map(|(i, _)| i as i32 + 1))
                            .collect::<Int32Array>(),
                    ),
                    _ => datafusion::arrow::array::new_null_array(field.data_type(), rows.len()),
                }
            })
            .collect();
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// `information_schema.columns` with Postgres type names, and the
/// `udt_*` columns that name each type as `pg_type` does (Grafana and
/// Metabase read `udt_name`).
#[derive(Debug)]
struct PgColumns {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
}

const UDT_COLUMNS: [&str; 3] = ["udt_catalog", "udt_schema", "udt_name"];

impl PgColumns {
    fn new(inner: Arc<dyn TableProvider>) -> Self {
        let mut fields: Vec<Field> = inner
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(UDT_COLUMNS.map(|name| Field::new(name, DataType::Utf8, true)));
        Self {
            inner,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

#[async_trait]
impl TableProvider for PgColumns {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
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
        let type_index = self.inner.schema().index_of("data_type")?;
        let renamed = batches
            .into_iter()
            .map(|batch| {
                let mut columns = batch.columns().to_vec();
                let arrow_types = columns[type_index].clone();
                columns[type_index] = pg_type_names(&arrow_types);
                let rows = batch.num_rows();
                columns.push(Arc::new(StringArray::from(vec![
                    crate::datafusion_context::DATABASE;
                    rows
                ])));
                columns.push(Arc::new(StringArray::from(vec!["pg_catalog"; rows])));
                columns.push(udt_names(&arrow_types));
                RecordBatch::try_new(self.schema.clone(), columns)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        MemTable::try_new(self.schema.clone(), vec![renamed])?
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

/// `pg_type.typname` of each Arrow type name (`int8`, `text`).
fn udt_names(arrow_names: &ArrayRef) -> ArrayRef {
    let Some(strings) = arrow_names.as_any().downcast_ref::<StringArray>() else {
        return datafusion::arrow::array::new_null_array(&DataType::Utf8, arrow_names.len());
    };
    let names: StringArray = strings
        .iter()
        .map(|name| {
            let data_type = name?.parse::<DataType>().ok()?;
            arrow_pg::datatypes::into_pg_type(&data_type)
                .ok()
                .map(|t| t.name().to_string())
        })
        .collect();
    Arc::new(names)
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
