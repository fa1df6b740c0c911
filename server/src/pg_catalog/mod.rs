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
//! - `pg_matviews`: one row per materialized view;
//! - `pg_stat_activity`: one row per connected backend;
//! - `pg_attribute.attacl` and `pg_policy.polroles` as the arrays Postgres
//!   has (`arrays`), which psql's `\dp` reads;
//! - `pg_policy`: empty, Weir has no row security policies (`policies`).
//! - `reloptions`: always NULL; psql's `\d+` asks for TOAST options too (`reloptions`).
//! - `pg_database`: collation `C`, as `SHOW lc_collate` says (`database`).
//!
//! `pg_get_indexdef` and `pg_get_constraintdef` describe those keys.

mod activity;
mod arrays;
mod columns;
mod database;
mod functions;
mod objects;
mod policies;
mod reloptions;

use columns::*;
pub use functions::register_functions;
use objects::*;
pub use objects::{KeyDefinition, KeyDefinitions};
pub(crate) use objects::{PrimaryKey, primary_keys};
pub use policies::policy_queries;
pub use reloptions::reloption_queries;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int16Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, new_null_array,
};
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Int16Type, Int32Type, Schema, SchemaRef};
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;
use weir_connectors::table_store::OwnedTable;
use weir_runtime::materialized::ViewTable;

use crate::information_schema::computed::{Computed, ComputedView};

/// Key indexes and constraints are not DataFusion objects, so the crate's
/// OID counter never numbers them. Each takes its table's OID plus one of
/// these offsets: stable as long as the table's OID is, and far above the
/// counter's range (it starts at 16384 and counts objects).
pub(super) const INDEX_OID_OFFSET: i32 = 1 << 30;
pub(super) const CONSTRAINT_OID_OFFSET: i32 = 1 << 29;

/// Postgres's OID of the btree access method (`pg_am`), which every
/// primary key index uses.
pub(super) const BTREE_AM_OID: i32 = 403;

/// Who owns every object (Weir has one user).
pub(super) const OWNER: &str = "weir";

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
pub(super) struct Shared {
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
            "pg_stat_activity" => Derived::StatActivity,
            "pg_attribute" => Derived::Arrays("pg_attribute"),
            "pg_policy" => Derived::Policy,
            "pg_database" => Derived::Database,
            _ => return self.shared.inner.table(name).await,
        };
        let schema = match derived {
            Derived::Database => match self.shared.inner.table(name).await? {
                Some(inner) => inner.schema(),
                None => return Ok(None),
            },
            Derived::Class | Derived::MatViews | Derived::Settings => {
                match self.shared.inner.table(name).await? {
                    Some(inner) => with_reloptions(inner.schema()),
                    None => return Ok(None),
                }
            }
            Derived::Index => pg_index_schema(),
            Derived::Constraint => pg_constraint_schema(),
            Derived::StatActivity => activity::pg_stat_activity_schema(),
            Derived::Policy => match self.shared.inner.table("pg_policy").await? {
                Some(inner) => arrays::with_array_columns("pg_policy", inner.schema()),
                None => return Ok(None),
            },
            Derived::Arrays(table) => match self.shared.inner.table(table).await? {
                Some(inner) => arrays::with_array_columns(table, inner.schema()),
                None => return Ok(None),
            },
        };
        Ok(Some(Arc::new(Computed(DerivedTable {
            derived,
            schema,
            shared: self.shared.clone(),
        }))))
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("pg_stat_activity") || self.shared.inner.table_exist(name)
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Derived {
    Class,
    Index,
    Constraint,
    MatViews,
    Settings,
    StatActivity,
    /// A table of the crate's whose text array columns become lists.
    Arrays(&'static str),
    Policy,
    Database,
}

/// A catalog table computed when scanned (catalogs are small: a row per
/// object), then served from memory.
#[derive(Debug)]
pub(super) struct DerivedTable {
    derived: Derived,
    schema: SchemaRef,
    shared: Arc<Shared>,
}

#[async_trait]
impl ComputedView for DerivedTable {
    fn columns(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn compute(&self, state: &dyn Session) -> Result<RecordBatch> {
        let objects = || Objects::read(&self.shared, state);
        let batch = match self.derived {
            Derived::Class => {
                // Owners and grants of Weir's relations (`auth::acl`).
                let acl = crate::auth::Roles::published()
                    .map(|r| r.acl())
                    .unwrap_or_default();
                let relations: HashSet<String> =
                    crate::information_schema::grants::relations(self.shared.catalogs.as_ref())
                        .await?
                        .into_iter()
                        .collect();
                let relacl = |schema: &str, name: &str| {
                    (schema == crate::datafusion_context::SCHEMA && relations.contains(name))
                        .then(|| acl.aclitems(name))
                        .flatten()
                };
                objects().await?.pg_class(&self.schema, &relacl)?
            }
            Derived::Index => objects().await?.pg_index(&self.schema)?,
            Derived::Constraint => objects().await?.pg_constraint(&self.schema)?,
            Derived::MatViews => objects().await?.pg_matviews(&self.schema)?,
            Derived::Settings => pg_settings(&self.schema)?,
            Derived::StatActivity => activity::pg_stat_activity(&self.schema)?,
            Derived::Policy => policies::pg_policy(&self.schema)?,
            Derived::Database => database::pg_database(
                scan_whole(self.shared.inner.as_ref(), "pg_database", state).await?,
            )?,
            Derived::Arrays(table) => {
                let rows = scan_whole(self.shared.inner.as_ref(), table, state).await?;
                arrays::array_rows(table, &rows, &self.schema)?
            }
        };
        Ok(batch)
    }
}

/// A user relation that the crate's rows say too little about.
#[derive(Debug, Clone)]
pub(super) enum UserRelation {
    /// A table Weir owns with a primary key: its key columns' names and
    /// attribute numbers (1-based, as `pg_attribute.attnum`), in key order.
    Keyed {
        columns: Vec<(String, i16)>,
    },
    MaterializedView,
}

/// `pg_class` with `reloptions` (storage options, a `text[]`; SQLAlchemy's
/// `get_indexes` reads them), which the crate lacks: always NULL, as for a
/// relation created without options. Other schemas pass unchanged.
pub(super) fn with_reloptions(schema: SchemaRef) -> SchemaRef {
    if schema.index_of("relkind").is_err() || schema.index_of("reloptions").is_ok() {
        return schema;
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(
        "reloptions",
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        true,
    ));
    // `pg_class` only: its access privileges, `aclitem[]` as text (`\dp`).
    if schema.index_of("relname").is_ok() {
        fields.push(Field::new(
            "relacl",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            true,
        ));
    }
    Arc::new(Schema::new(fields))
}

/// `pg_settings`: Weir's settings as `SHOW ALL` lists them, with their
/// defaults (a catalog table does not see the session, so a `SET` does
/// not show here; `SHOW` and `current_setting` see it). The crate's
/// view had one row.
pub(super) fn pg_settings(schema: &SchemaRef) -> Result<RecordBatch> {
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
