//! `/api/v1/catalog`: the streams, tables, views, materialized views and
//! sinks, with their columns as queries see them (the schema DataFusion
//! plans against, with `information_schema`'s Postgres type names).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use datafusion::common::TableReference;
use serde::Serialize;
use utoipa::ToSchema;
use weir_planner::catalog::CatalogEntry;

use super::Api;
use super::errors::{ApiError, ApiResult};

/// A column.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its Postgres type name (`bigint`, `timestamp without time zone`).
    #[serde(rename = "type")]
    pub data_type: String,
    /// May it hold NULL?
    pub nullable: bool,
}

/// A stream, table, view, materialized view or sink.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Relation {
    /// Its name.
    pub name: String,
    /// Its columns (a sink's: its view's).
    pub columns: Vec<Column>,
    /// Its `WITH (...)` options (secrets masked).
    pub options: BTreeMap<String, String>,
    /// A view's or materialized view's query; the view a sink writes out.
    pub definition: Option<String>,
}

/// Everything in the catalog, by kind, each sorted by name.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Catalog {
    /// `CREATE STREAM`s.
    pub streams: Vec<Relation>,
    /// Tables: Weir's own and over files.
    pub tables: Vec<Relation>,
    /// Plain views.
    pub views: Vec<Relation>,
    /// Materialized views (each a job).
    pub materialized_views: Vec<Relation>,
    /// Sinks.
    pub sinks: Vec<Relation>,
}

/// Option values that are secrets are not shown.
fn masked(options: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    options
        .iter()
        .map(|(k, v)| {
            let key = k.to_ascii_lowercase();
            let secret = ["password", "secret", "token", "credential", "sasl"]
                .iter()
                .any(|s| key.contains(s));
            (
                k.clone(),
                if secret { "********".into() } else { v.clone() },
            )
        })
        .collect()
}

/// The columns the catalog stored for an object (Arrow type names), when
/// the live catalog has no table of that name.
fn stored(columns: &[weir_planner::catalog::ColumnDef]) -> Vec<Column> {
    columns
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            data_type: c
                .data_type
                .parse::<datafusion::arrow::datatypes::DataType>()
                .map(|t| crate::information_schema::sql_type_name(&t).to_string())
                .unwrap_or_else(|_| c.data_type.clone()),
            nullable: c.nullable,
        })
        .collect()
}

/// The columns of the relation `name` as queries see it.
async fn columns(api: &Api, name: &str) -> Vec<Column> {
    let state = api.registry.state();
    let reference = TableReference::bare(name);
    let Ok(schema) = state.schema_for_ref(reference) else {
        return Vec::new();
    };
    match schema.table(name).await {
        Ok(Some(table)) => table
            .schema()
            .fields()
            .iter()
            .map(|f| Column {
                name: weir_planner::names::client_name(f.name()).to_string(),
                data_type: crate::information_schema::sql_type_name(f.data_type()).to_string(),
                nullable: f.is_nullable(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The catalog.
#[utoipa::path(get, operation_id = "get_catalog", path = "/api/v1/catalog", tag = "catalog",
    responses((status = 200, description = "Every object, by kind", body = Catalog),
        (status = 401, description = "No or a wrong bearer token", body = ApiError)))]
pub async fn get(State(api): State<Arc<Api>>) -> ApiResult<Json<Catalog>> {
    let mut catalog = Catalog::default();
    let mut entries = api.registry.catalog().entries;
    entries.sort_by(|a, b| a.name().cmp(b.name()));
    for entry in entries {
        let name = entry.name().to_string();
        match entry {
            CatalogEntry::Stream(def) => catalog.streams.push(Relation {
                columns: match columns(&api, &name).await {
                    live if live.is_empty() => stored(&def.columns),
                    live => live,
                },
                options: masked(&def.options),
                definition: None,
                name,
            }),
            CatalogEntry::Table(def) => catalog.tables.push(Relation {
                columns: match columns(&api, &name).await {
                    live if live.is_empty() => stored(&def.columns),
                    live => live,
                },
                options: masked(&def.options),
                definition: None,
                name,
            }),
            CatalogEntry::View(def) => catalog.views.push(Relation {
                columns: columns(&api, &name).await,
                options: BTreeMap::new(),
                definition: Some(def.definition),
                name,
            }),
            CatalogEntry::MaterializedView(def) => catalog.materialized_views.push(Relation {
                columns: columns(&api, &name).await,
                options: def.job.settings.clone(),
                definition: Some(def.query),
                name,
            }),
            CatalogEntry::Sink(def) => catalog.sinks.push(Relation {
                columns: columns(&api, &def.from).await,
                options: masked(&def.options),
                definition: Some(def.from),
                name,
            }),
        }
    }
    Ok(Json(catalog))
}
