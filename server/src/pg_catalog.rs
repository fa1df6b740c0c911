//! `pg_catalog` as clients read it: `datafusion-pg-catalog`'s tables, plus
//! what that crate cannot know about Weir's own objects.
//!
//! The crate builds `pg_class`, `pg_attribute` and `pg_namespace` from the
//! DataFusion catalogs and serves the other tables (`pg_index`,
//! `pg_constraint`, `pg_type`, ...) as rows exported from a Postgres server.
//! It knows nothing of primary keys or materialized views, so clients that
//! read keys (pgjdbc `getPrimaryKeys`, SQLAlchemy `get_pk_constraint`,
//! psql `\d`) found none, and `\dm` listed nothing. This schema wraps the
//! crate's and derives, from the tables Weir owns and the views it
//! maintains:
//!
//! - `pg_class`: materialized views with `relkind` `'m'`; a table with a
//!   primary key has `relhasindex` and an index row `<table>_pkey`
//!   (`relkind` `'i'`), as Postgres creates one for every primary key;
//! - `pg_index` and `pg_constraint`: one row per primary key, with
//!   `indkey` / `conkey` as arrays (the exported rows held them as text,
//!   so subscripts, `ANY` and `unnest` over them failed);
//! - `pg_matviews`: one row per materialized view.
//!
//! `pg_get_indexdef` and `pg_get_constraintdef` describe those keys.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int16Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, new_null_array,
};
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Int16Type, Int32Type, Schema, SchemaRef};
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TableType,
    TypeSignature, Volatility,
};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use weir_connectors::table_store::OwnedTable;
use weir_runtime::materialized::ViewTable;

/// Key indexes and constraints are not DataFusion objects, so the crate's
/// OID counter never numbers them. Each takes its table's OID plus one of
/// these offsets: stable as long as the table's OID is, and far above the
/// counter's range (it starts at 16384 and counts objects).
const INDEX_OID_OFFSET: i32 = 1 << 30;
const CONSTRAINT_OID_OFFSET: i32 = 1 << 29;

/// Postgres's OID of the btree access method (`pg_am`), which every
/// primary key index uses.
const BTREE_AM_OID: i32 = 403;

/// Who owns every object (Weir has one user).
const OWNER: &str = "weir";

/// The roles `pg_roles` lists (psql's `\\du`): Weir has one user, `weir`,
/// who may do everything. The crate's empty provider listed none.
#[derive(Debug, Clone)]
pub struct WeirRoles;

#[async_trait]
impl datafusion_pg_catalog::pg_catalog::context::PgCatalogContextProvider for WeirRoles {
    async fn roles(&self) -> Vec<String> {
        vec![OWNER.to_string()]
    }

    async fn role(&self, name: &str) -> Option<datafusion_pg_catalog::pg_catalog::context::Role> {
        (name == OWNER).then(|| datafusion_pg_catalog::pg_catalog::context::Role {
            name: OWNER.to_string(),
            is_superuser: true,
            can_login: true,
            can_create_db: true,
            can_create_role: true,
            can_create_user: true,
            can_replication: false,
            grants: Vec::new(),
            inherited_roles: Vec::new(),
        })
    }
}

/// The `pg_catalog` schema: the crate's, with Weir's keys and views.
#[derive(Debug)]
pub struct PgCatalog {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// `datafusion-pg-catalog`'s schema.
    inner: Arc<dyn SchemaProvider>,
    /// The session's catalogs, to find the tables Weir owns and its views.
    catalogs: Arc<dyn CatalogProviderList>,
    keys: Arc<KeyDefinitions>,
}

impl PgCatalog {
    /// Over the crate's `inner` schema; `catalogs` are the session's.
    pub fn new(
        inner: Arc<dyn SchemaProvider>,
        catalogs: Arc<dyn CatalogProviderList>,
        keys: Arc<KeyDefinitions>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                inner,
                catalogs,
                keys,
            }),
        }
    }
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.shared.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let derived = match name.to_ascii_lowercase().as_str() {
            "pg_class" => Derived::Class,
            "pg_index" => Derived::Index,
            "pg_constraint" => Derived::Constraint,
            "pg_matviews" => Derived::MatViews,
            "pg_settings" => Derived::Settings,
            _ => return self.shared.inner.table(name).await,
        };
        let schema = match derived {
            Derived::Class | Derived::MatViews | Derived::Settings => {
                match self.shared.inner.table(name).await? {
                    Some(inner) => with_reloptions(inner.schema()),
                    None => return Ok(None),
                }
            }
            Derived::Index => pg_index_schema(),
            Derived::Constraint => pg_constraint_schema(),
        };
        Ok(Some(Arc::new(DerivedTable {
            derived,
            schema,
            shared: self.shared.clone(),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.shared.inner.table_exist(name)
    }
}

#[derive(Debug, Clone, Copy)]
enum Derived {
    Class,
    Index,
    Constraint,
    MatViews,
    Settings,
}

/// A catalog table computed when scanned (catalogs are small: a row per
/// object), then served from memory.
#[derive(Debug)]
struct DerivedTable {
    derived: Derived,
    schema: SchemaRef,
    shared: Arc<Shared>,
}

#[async_trait]
impl TableProvider for DerivedTable {
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
        let objects = || Objects::read(&self.shared, state);
        let batch = match self.derived {
            Derived::Class => objects().await?.pg_class(&self.schema)?,
            Derived::Index => objects().await?.pg_index(&self.schema)?,
            Derived::Constraint => objects().await?.pg_constraint(&self.schema)?,
            Derived::MatViews => objects().await?.pg_matviews(&self.schema)?,
            Derived::Settings => pg_settings(&self.schema)?,
        };
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// A user relation that the crate's rows say too little about.
#[derive(Debug, Clone)]
enum UserRelation {
    /// A table Weir owns with a primary key: its key columns' names and
    /// attribute numbers (1-based, as `pg_attribute.attnum`), in key order.
    Keyed {
        columns: Vec<(String, i16)>,
    },
    MaterializedView,
}

/// What one catalog scan needs: the crate's `pg_class` rows, the schemas'
/// OIDs and Weir's keyed tables and views.
struct Objects {
    /// The crate's `pg_class`, as one batch.
    class: RecordBatch,
    /// `pg_namespace.oid` -> name.
    namespaces: HashMap<i32, String>,
    /// (schema, name) -> what Weir knows of it.
    relations: HashMap<(String, String), UserRelation>,
    keys: Arc<KeyDefinitions>,
}

/// A primary key, as the catalog tables and functions show it.
#[derive(Debug, Clone)]
pub struct KeyDefinition {
    schema: String,
    table: String,
    table_oid: i32,
    namespace_oid: i32,
    columns: Vec<(String, i16)>,
}

impl KeyDefinition {
    /// Both the index's and the constraint's name, as in Postgres.
    fn index_name(&self) -> String {
        format!("{}_pkey", self.table)
    }

    fn index_oid(&self) -> i32 {
        self.table_oid + INDEX_OID_OFFSET
    }

    fn constraint_oid(&self) -> i32 {
        self.table_oid + CONSTRAINT_OID_OFFSET
    }

    fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(c, _)| c.as_str()).collect();
        names.join(", ")
    }
}

/// The primary keys as the last catalog scan saw them, by index and by
/// constraint OID, for `pg_get_indexdef` and `pg_get_constraintdef`.
///
/// Clients call those functions on OIDs they just read from `pg_index` or
/// `pg_constraint` (in the same query or an earlier one), so the scan that
/// produced an OID has always recorded it first.
#[derive(Debug, Default)]
pub struct KeyDefinitions {
    by_oid: parking_lot::Mutex<HashMap<i32, KeyDefinition>>,
}

impl KeyDefinitions {
    fn record(&self, keys: &[KeyDefinition]) {
        let mut by_oid = self.by_oid.lock();
        for key in keys {
            by_oid.insert(key.index_oid(), key.clone());
            by_oid.insert(key.constraint_oid(), key.clone());
        }
    }

    fn get(&self, oid: i32) -> Option<KeyDefinition> {
        self.by_oid.lock().get(&oid).cloned()
    }
}

impl Objects {
    async fn read(shared: &Shared, state: &dyn Session) -> Result<Self> {
        let class = scan_whole(shared.inner.as_ref(), "pg_class", state).await?;
        let namespace = scan_whole(shared.inner.as_ref(), "pg_namespace", state).await?;
        let oids = int32_column(&namespace, "oid")?;
        let names = string_column(&namespace, "nspname")?;
        let namespaces = (0..namespace.num_rows())
            .filter(|&i| oids.is_valid(i) && names.is_valid(i))
            .map(|i| (oids.value(i), names.value(i).to_string()))
            .collect();
        Ok(Self {
            class,
            namespaces,
            relations: user_relations(shared.catalogs.as_ref())
                .await?
                .into_iter()
                .map(|(_, schema, name, relation)| ((schema, name), relation))
                .collect(),
            keys: shared.keys.clone(),
        })
    }

    /// Each `pg_class` row's (schema, name).
    fn class_names(&self) -> Result<Vec<(String, String)>> {
        let namespaces = int32_column(&self.class, "relnamespace")?;
        let names = string_column(&self.class, "relname")?;
        Ok((0..self.class.num_rows())
            .map(|i| {
                let schema = self
                    .namespaces
                    .get(&namespaces.value(i))
                    .cloned()
                    .unwrap_or_default();
                (schema, names.value(i).to_string())
            })
            .collect())
    }

    /// The primary keys, with their tables' OIDs; recorded for the
    /// functions that describe them.
    fn key_definitions(&self) -> Result<Vec<KeyDefinition>> {
        let oids = int32_column(&self.class, "oid")?;
        let namespaces = int32_column(&self.class, "relnamespace")?;
        let mut keys = Vec::new();
        for (row, name) in self.class_names()?.into_iter().enumerate() {
            if let Some(UserRelation::Keyed { columns }) = self.relations.get(&name) {
                keys.push(KeyDefinition {
                    schema: name.0,
                    table: name.1,
                    table_oid: oids.value(row),
                    namespace_oid: namespaces.value(row),
                    columns: columns.clone(),
                });
            }
        }
        self.keys.record(&keys);
        Ok(keys)
    }

    fn pg_class(&self, schema: &SchemaRef) -> Result<RecordBatch> {
        let names = self.class_names()?;
        let kinds = string_column(&self.class, "relkind")?;
        let has_index = self
            .class
            .column_by_name("relhasindex")
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
            .ok_or_else(|| missing("pg_class", "relhasindex"))?;
        let relkind: StringArray = names
            .iter()
            .enumerate()
            .map(|(i, name)| match self.relations.get(name) {
                Some(UserRelation::MaterializedView) => Some("m"),
                _ => kinds.is_valid(i).then(|| kinds.value(i)),
            })
            .collect();
        let relhasindex: BooleanArray = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                Some(
                    matches!(self.relations.get(name), Some(UserRelation::Keyed { .. }))
                        || (has_index.is_valid(i) && has_index.value(i)),
                )
            })
            .collect();
        let tables = replace_columns(
            &self.class,
            &[
                ("relkind", Arc::new(relkind)),
                ("relhasindex", Arc::new(relhasindex)),
            ],
        )?;

        // An index row per key: its table's row, renamed and re-kinded
        // (every column the crate fills stays filled).
        let keys = self.key_definitions()?;
        let oids = int32_column(&self.class, "oid")?;
        let rows: Vec<u32> = keys
            .iter()
            .filter_map(|k| (0..oids.len()).find(|&i| oids.value(i) == k.table_oid))
            .map(|i| i as u32)
            .collect();
        let table_rows = take_rows(&self.class, &rows)?;
        let indexes = replace_columns(
            &table_rows,
            &[
                (
                    "oid",
                    Arc::new(Int32Array::from_iter_values(
                        keys.iter().map(KeyDefinition::index_oid),
                    )),
                ),
                (
                    "relname",
                    Arc::new(StringArray::from_iter_values(
                        keys.iter().map(KeyDefinition::index_name),
                    )),
                ),
                (
                    "relkind",
                    Arc::new(StringArray::from(vec!["i"; keys.len()])),
                ),
                (
                    "relam",
                    Arc::new(Int32Array::from(vec![BTREE_AM_OID; keys.len()])),
                ),
                (
                    "relhasindex",
                    Arc::new(BooleanArray::from(vec![false; keys.len()])),
                ),
                (
                    "relnatts",
                    Arc::new(Int16Array::from_iter_values(
                        keys.iter().map(|k| k.columns.len() as i16),
                    )),
                ),
            ],
        )?;
        let rows = concat_batches(&self.class.schema(), &[tables, indexes])?;
        let mut columns = rows.columns().to_vec();
        if columns.len() < schema.fields().len() {
            columns.push(new_null_array(
                &DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                rows.num_rows(),
            ));
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }

    fn pg_index(&self, schema: &SchemaRef) -> Result<RecordBatch> {
        let keys = self.key_definitions()?;
        let n = keys.len();
        let count = |k: &KeyDefinition| k.columns.len() as i16;
        let yes = || -> ArrayRef { Arc::new(BooleanArray::from(vec![true; n])) };
        let no = || -> ArrayRef { Arc::new(BooleanArray::from(vec![false; n])) };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter_values(
                keys.iter().map(KeyDefinition::index_oid),
            )),
            Arc::new(Int32Array::from_iter_values(
                keys.iter().map(|k| k.table_oid),
            )),
            Arc::new(Int16Array::from_iter_values(keys.iter().map(count))),
            Arc::new(Int16Array::from_iter_values(keys.iter().map(count))),
            yes(), // indisunique
            no(),  // indnullsnotdistinct
            yes(), // indisprimary
            no(),  // indisexclusion
            yes(), // indimmediate
            no(),  // indisclustered
            yes(), // indisvalid
            no(),  // indcheckxmin
            yes(), // indisready
            yes(), // indislive
            no(),  // indisreplident
            Arc::new(int16_lists(
                keys.iter()
                    .map(|k| k.columns.iter().map(|(_, attnum)| *attnum).collect()),
            )),
            Arc::new(int32_lists(keys.iter().map(|k| vec![0; k.columns.len()]))),
            Arc::new(int32_lists(keys.iter().map(|k| vec![0; k.columns.len()]))),
            Arc::new(int16_lists(keys.iter().map(|k| vec![0; k.columns.len()]))),
            new_null_array(&DataType::Utf8, n),
            new_null_array(&DataType::Utf8, n),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }

    fn pg_constraint(&self, schema: &SchemaRef) -> Result<RecordBatch> {
        let keys = self.key_definitions()?;
        let n = keys.len();
        let text = |value: &str| -> ArrayRef { Arc::new(StringArray::from(vec![value; n])) };
        let int = |value: i32| -> ArrayRef { Arc::new(Int32Array::from(vec![value; n])) };
        let boolean = |value: bool| -> ArrayRef { Arc::new(BooleanArray::from(vec![value; n])) };
        let no_int16s = || -> ArrayRef { new_null_array(&int16_list_type(), n) };
        let no_int32s = || -> ArrayRef { new_null_array(&int32_list_type(), n) };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter_values(
                keys.iter().map(KeyDefinition::constraint_oid),
            )),
            Arc::new(StringArray::from_iter_values(
                keys.iter().map(KeyDefinition::index_name),
            )),
            Arc::new(Int32Array::from_iter_values(
                keys.iter().map(|k| k.namespace_oid),
            )),
            text("p"),
            boolean(false), // condeferrable
            boolean(false), // condeferred
            boolean(true),  // convalidated
            Arc::new(Int32Array::from_iter_values(
                keys.iter().map(|k| k.table_oid),
            )),
            int(0), // contypid
            Arc::new(Int32Array::from_iter_values(
                keys.iter().map(KeyDefinition::index_oid),
            )),
            int(0), // conparentid
            int(0), // confrelid
            text(" "),
            text(" "),
            text(" "),
            boolean(true), // conislocal
            int(0),        // coninhcount
            boolean(true), // connoinherit
            Arc::new(int16_lists(
                keys.iter()
                    .map(|k| k.columns.iter().map(|(_, attnum)| *attnum).collect()),
            )),
            no_int16s(), // confkey
            no_int32s(), // conpfeqop
            no_int32s(), // conppeqop
            no_int32s(), // conffeqop
            no_int16s(), // confdelsetcols
            no_int32s(), // conexclop
            new_null_array(&DataType::Utf8, n),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }

    fn pg_matviews(&self, schema: &SchemaRef) -> Result<RecordBatch> {
        let mut views: Vec<&(String, String)> = self
            .relations
            .iter()
            .filter(|(_, r)| matches!(r, UserRelation::MaterializedView))
            .map(|(name, _)| name)
            .collect();
        views.sort();
        let n = views.len();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.name().as_str() {
                    "schemaname" => Arc::new(StringArray::from_iter_values(
                        views.iter().map(|(s, _)| s.as_str()),
                    )),
                    "matviewname" => Arc::new(StringArray::from_iter_values(
                        views.iter().map(|(_, v)| v.as_str()),
                    )),
                    "matviewowner" => Arc::new(StringArray::from(vec![OWNER; n])),
                    "hasindexes" => Arc::new(BooleanArray::from(vec![false; n])),
                    // A view is queryable from its creation on.
                    "ispopulated" => Arc::new(BooleanArray::from(vec![true; n])),
                    _ => new_null_array(field.data_type(), n),
                }
            })
            .collect();
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// A primary key of a table Weir owns.
#[derive(Debug)]
pub(crate) struct PrimaryKey {
    pub catalog: String,
    pub schema: String,
    pub table: String,
    /// Column names and attribute numbers, in key order.
    pub columns: Vec<(String, i16)>,
}

impl PrimaryKey {
    /// `<table>_pkey`, as Postgres names it.
    pub fn constraint_name(&self) -> String {
        format!("{}_pkey", self.table)
    }
}

/// The primary keys of the tables Weir owns, in name order.
pub(crate) async fn primary_keys(catalogs: &dyn CatalogProviderList) -> Result<Vec<PrimaryKey>> {
    let mut keys: Vec<PrimaryKey> = user_relations(catalogs)
        .await?
        .into_iter()
        .filter_map(|(catalog, schema, table, relation)| match relation {
            UserRelation::Keyed { columns } => Some(PrimaryKey {
                catalog,
                schema,
                table,
                columns,
            }),
            UserRelation::MaterializedView => None,
        })
        .collect();
    keys.sort_by(|a, b| (&a.schema, &a.table).cmp(&(&b.schema, &b.table)));
    Ok(keys)
}

/// `pg_class` with `reloptions` (storage options, a `text[]`; SQLAlchemy's
/// `get_indexes` reads them), which the crate lacks: always NULL, as for a
/// relation created without options. Other schemas pass unchanged.
fn with_reloptions(schema: SchemaRef) -> SchemaRef {
    if schema.index_of("relkind").is_err() || schema.index_of("reloptions").is_ok() {
        return schema;
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(
        "reloptions",
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        true,
    ));
    Arc::new(Schema::new(fields))
}

/// `pg_settings`: Weir's settings as `SHOW ALL` lists them, with their
/// defaults (a catalog table does not see the session, so a `SET` does
/// not show here; `SHOW` and `current_setting` see it). The crate's
/// view had one row.
fn pg_settings(schema: &SchemaRef) -> Result<RecordBatch> {
    let settings = crate::session::Session::new().all();
    let n = settings.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            let text = |f: &dyn Fn(&(String, String, String)) -> String| -> ArrayRef {
                Arc::new(StringArray::from_iter_values(settings.iter().map(f)))
            };
            match field.name().as_str() {
                "name" => text(&|(name, _, _)| name.clone()),
                "setting" | "reset_val" | "boot_val" => text(&|(_, value, _)| value.clone()),
                "short_desc" => text(&|(_, _, description)| description.clone()),
                "vartype" => text(&|_| "string".to_string()),
                "source" => text(&|_| "default".to_string()),
                "context" => text(&|_| "user".to_string()),
                "pending_restart" => Arc::new(BooleanArray::from(vec![false; n])),
                _ => new_null_array(field.data_type(), n),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The user relations whose catalog rows need more than the crate gives:
/// (catalog, schema, name, what they are).
async fn user_relations(
    catalogs: &dyn CatalogProviderList,
) -> Result<Vec<(String, String, String, UserRelation)>> {
    let mut relations = Vec::new();
    for catalog_name in catalogs.catalog_names() {
        let Some(catalog) = catalogs.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            if schema_name == "pg_catalog" || schema_name == "information_schema" {
                continue;
            }
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            for name in schema.table_names() {
                let Some(table) = schema.table(&name).await? else {
                    continue;
                };
                let relation = if let Some(owned) = table.downcast_ref::<OwnedTable>() {
                    let declared = owned.declared_schema();
                    let columns: Vec<(String, i16)> = owned
                        .primary_key()
                        .iter()
                        .map(|&i| (declared.field(i).name().clone(), i as i16 + 1))
                        .collect();
                    if columns.is_empty() {
                        continue;
                    }
                    UserRelation::Keyed { columns }
                } else if table.downcast_ref::<ViewTable>().is_some() {
                    UserRelation::MaterializedView
                } else {
                    continue;
                };
                relations.push((catalog_name.clone(), schema_name.clone(), name, relation));
            }
        }
    }
    Ok(relations)
}

async fn scan_whole(
    schema: &dyn SchemaProvider,
    table: &str,
    state: &dyn Session,
) -> Result<RecordBatch> {
    let provider = schema
        .table(table)
        .await?
        .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog.{table} is missing")))?;
    let plan = provider.scan(state, None, &[], None).await?;
    let batches = collect(plan, state.task_ctx()).await?;
    Ok(concat_batches(&provider.schema(), &batches)?)
}

fn missing(table: &str, column: &str) -> DataFusionError {
    DataFusionError::Internal(format!("{table}.{column} is missing or has another type"))
}

fn int32_column(batch: &RecordBatch, name: &str) -> Result<Int32Array> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| missing("pg_catalog", name))?;
    Ok(cast(column, &DataType::Int32)?
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| missing("pg_catalog", name))?
        .clone())
}

fn string_column(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| missing("pg_catalog", name))?;
    Ok(cast(column, &DataType::Utf8)?
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| missing("pg_catalog", name))?
        .clone())
}

/// `batch` with the named columns replaced (cast to the column's type).
fn replace_columns(batch: &RecordBatch, with: &[(&str, ArrayRef)]) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    for (name, values) in with {
        let index = schema.index_of(name)?;
        columns[index] = cast(values, schema.field(index).data_type())?;
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch> {
    let indices = datafusion::arrow::array::UInt32Array::from(rows.to_vec());
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

fn int16_list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Int16, true)))
}

fn int32_list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)))
}

fn int16_lists(lists: impl Iterator<Item = Vec<i16>>) -> ListArray {
    ListArray::from_iter_primitive::<Int16Type, _, _>(
        lists.map(|l| Some(l.into_iter().map(Some).collect::<Vec<_>>())),
    )
}

fn int32_lists(lists: impl Iterator<Item = Vec<i32>>) -> ListArray {
    ListArray::from_iter_primitive::<Int32Type, _, _>(
        lists.map(|l| Some(l.into_iter().map(Some).collect::<Vec<_>>())),
    )
}

/// `pg_index` as Postgres 15 has it; the `int2vector` / `oidvector`
/// columns are arrays.
fn pg_index_schema() -> SchemaRef {
    let boolean = |name: &str| Field::new(name, DataType::Boolean, false);
    Arc::new(Schema::new(vec![
        Field::new("indexrelid", DataType::Int32, false),
        Field::new("indrelid", DataType::Int32, false),
        Field::new("indnatts", DataType::Int16, false),
        Field::new("indnkeyatts", DataType::Int16, false),
        boolean("indisunique"),
        boolean("indnullsnotdistinct"),
        boolean("indisprimary"),
        boolean("indisexclusion"),
        boolean("indimmediate"),
        boolean("indisclustered"),
        boolean("indisvalid"),
        boolean("indcheckxmin"),
        boolean("indisready"),
        boolean("indislive"),
        boolean("indisreplident"),
        Field::new("indkey", int16_list_type(), false),
        Field::new("indcollation", int32_list_type(), false),
        Field::new("indclass", int32_list_type(), false),
        Field::new("indoption", int16_list_type(), false),
        Field::new("indexprs", DataType::Utf8, true),
        Field::new("indpred", DataType::Utf8, true),
    ]))
}

/// `pg_constraint` as Postgres 15 has it, with array columns as arrays.
fn pg_constraint_schema() -> SchemaRef {
    let oid = |name: &str| Field::new(name, DataType::Int32, false);
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    let boolean = |name: &str| Field::new(name, DataType::Boolean, false);
    Arc::new(Schema::new(vec![
        oid("oid"),
        text("conname"),
        oid("connamespace"),
        text("contype"),
        boolean("condeferrable"),
        boolean("condeferred"),
        boolean("convalidated"),
        oid("conrelid"),
        oid("contypid"),
        oid("conindid"),
        oid("conparentid"),
        oid("confrelid"),
        text("confupdtype"),
        text("confdeltype"),
        text("confmatchtype"),
        boolean("conislocal"),
        Field::new("coninhcount", DataType::Int32, false),
        boolean("connoinherit"),
        Field::new("conkey", int16_list_type(), true),
        Field::new("confkey", int16_list_type(), true),
        Field::new("conpfeqop", int32_list_type(), true),
        Field::new("conppeqop", int32_list_type(), true),
        Field::new("conffeqop", int32_list_type(), true),
        Field::new("confdelsetcols", int16_list_type(), true),
        Field::new("conexclop", int32_list_type(), true),
        Field::new("conbin", DataType::Utf8, true),
    ]))
}

/// Register `pg_get_indexdef` and `pg_get_constraintdef` over `keys`,
/// replacing same-named functions.
pub fn register_functions(ctx: &SessionContext, keys: &Arc<KeyDefinitions>) {
    for kind in [Describe::IndexDef, Describe::ConstraintDef] {
        ctx.register_udf(ScalarUDF::new_from_impl(DescribeKey {
            kind,
            keys: keys.clone(),
            signature: Signature::one_of(
                vec![
                    TypeSignature::Any(1),
                    TypeSignature::Any(2),
                    TypeSignature::Any(3),
                ],
                Volatility::Stable,
            ),
        }));
    }
}

#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Describe {
    IndexDef,
    ConstraintDef,
}

/// `pg_get_indexdef(oid [, column, pretty])` and
/// `pg_get_constraintdef(oid [, pretty])` for primary keys; NULL for any
/// other OID (Weir has no other indexes or constraints).
#[derive(Debug)]
struct DescribeKey {
    kind: Describe,
    keys: Arc<KeyDefinitions>,
    signature: Signature,
}

impl PartialEq for DescribeKey {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Eq for DescribeKey {}

impl std::hash::Hash for DescribeKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

impl DescribeKey {
    fn describe(&self, key: &KeyDefinition, column: i64) -> Option<String> {
        match self.kind {
            // `pg_get_indexdef(oid, n, ...)` with n > 0 names the n-th
            // column only (pgjdbc `getIndexInfo` reads names this way).
            Describe::IndexDef if column > 0 => key
                .columns
                .get(usize::try_from(column - 1).ok()?)
                .map(|(name, _)| name.clone()),
            Describe::IndexDef => Some(format!(
                "CREATE UNIQUE INDEX {} ON {}.{} USING btree ({})",
                key.index_name(),
                key.schema,
                key.table,
                key.column_list()
            )),
            Describe::ConstraintDef => Some(format!("PRIMARY KEY ({})", key.column_list())),
        }
    }
}

impl ScalarUDFImpl for DescribeKey {
    fn name(&self) -> &str {
        match self.kind {
            Describe::IndexDef => "pg_get_indexdef",
            Describe::ConstraintDef => "pg_get_constraintdef",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let int64 = |value: &ColumnarValue| -> Result<Int64Array> {
            let array = cast(&value.to_array(rows)?, &DataType::Int64)?;
            Ok(array
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| DataFusionError::Internal("not an oid".to_string()))?
                .clone())
        };
        let oids = int64(&args.args[0])?;
        let columns = match (self.kind, args.args.get(1)) {
            (Describe::IndexDef, Some(column)) => Some(int64(column)?),
            _ => None,
        };
        let described: StringArray = (0..rows)
            .map(|i| {
                let oid = i32::try_from(oids.is_valid(i).then(|| oids.value(i))?).ok()?;
                let column = columns
                    .as_ref()
                    .map_or(0, |c| if c.is_valid(i) { c.value(i) } else { 0 });
                self.describe(&self.keys.get(oid)?, column)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(described)))
    }
}
