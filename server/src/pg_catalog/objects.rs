//! What Weir adds to the catalog: its keyed tables and views found in the
//! DataFusion catalogs, and the `pg_class`, `pg_index` and `pg_constraint`
//! rows derived from them.

use super::*;

/// What one catalog scan needs: the crate's `pg_class` rows, the schemas'
/// OIDs and Weir's keyed tables and views.
pub(super) struct Objects {
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
    pub(super) schema: String,
    pub(super) table: String,
    pub(super) table_oid: i32,
    pub(super) namespace_oid: i32,
    pub(super) columns: Vec<(String, i16)>,
}

impl KeyDefinition {
    /// Both the index's and the constraint's name, as in Postgres.
    pub(super) fn index_name(&self) -> String {
        format!("{}_pkey", self.table)
    }

    pub(super) fn index_oid(&self) -> i32 {
        self.table_oid + INDEX_OID_OFFSET
    }

    pub(super) fn constraint_oid(&self) -> i32 {
        self.table_oid + CONSTRAINT_OID_OFFSET
    }

    pub(super) fn column_list(&self) -> String {
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
    pub(super) fn record(&self, keys: &[KeyDefinition]) {
        let mut by_oid = self.by_oid.lock();
        for key in keys {
            by_oid.insert(key.index_oid(), key.clone());
            by_oid.insert(key.constraint_oid(), key.clone());
        }
    }

    pub(super) fn get(&self, oid: i32) -> Option<KeyDefinition> {
        self.by_oid.lock().get(&oid).cloned()
    }
}

impl Objects {
    pub(super) async fn read(shared: &Shared, state: &dyn Session) -> Result<Self> {
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
    pub(super) fn class_names(&self) -> Result<Vec<(String, String)>> {
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
    pub(super) fn key_definitions(&self) -> Result<Vec<KeyDefinition>> {
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

    /// `relacl`: a relation's `aclitem`s by (schema, name), `None` for the
    /// default privileges.
    pub(super) fn pg_class(
        &self,
        schema: &SchemaRef,
        relacl: &dyn Fn(&str, &str) -> Option<Vec<String>>,
    ) -> Result<RecordBatch> {
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
        if schema.index_of("reloptions").is_ok()
            && self.class.schema().index_of("reloptions").is_err()
        {
            columns.push(new_null_array(
                &DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                rows.num_rows(),
            ));
        }
        if schema.index_of("relacl").is_ok() && self.class.schema().index_of("relacl").is_err() {
            // Tables' rows first, then the index rows (no privileges).
            let mut acl = datafusion::arrow::array::ListBuilder::new(
                datafusion::arrow::array::StringBuilder::new(),
            );
            for (schema_name, name) in &names {
                acl.append_option(
                    relacl(schema_name, name).map(|items| items.into_iter().map(Some)),
                );
            }
            for _ in 0..rows.num_rows() - names.len() {
                acl.append_null();
            }
            columns.push(Arc::new(acl.finish()));
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }

    pub(super) fn pg_index(&self, schema: &SchemaRef) -> Result<RecordBatch> {
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

    pub(super) fn pg_constraint(&self, schema: &SchemaRef) -> Result<RecordBatch> {
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

    pub(super) fn pg_matviews(&self, schema: &SchemaRef) -> Result<RecordBatch> {
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

/// The user relations whose catalog rows need more than the crate gives:
/// (catalog, schema, name, what they are).
pub(super) async fn user_relations(
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

pub(super) async fn scan_whole(
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

/// `pg_index` as Postgres 15 has it; the `int2vector` / `oidvector`
/// columns are arrays.
pub(super) fn pg_index_schema() -> SchemaRef {
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
pub(super) fn pg_constraint_schema() -> SchemaRef {
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
