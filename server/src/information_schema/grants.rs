//! `information_schema.role_table_grants` and `table_privileges`: one row
//! per privilege held on each relation, the owner's own first, then every
//! grant, from the owners and grants in `roles.json` (`auth::acl`).
//!
//! Postgres narrows `role_table_grants` to the rows whose grantor or
//! grantee is the current user; the DataFusion context that serves this
//! view is shared by every session and does not know the user, so both
//! views list every row. That is what `pg_class.relacl` shows any user
//! anyway, in Postgres too.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProviderList, Session};
use datafusion::error::Result;

use crate::auth::Roles;
use crate::auth::acl::Acl;
use crate::datafusion_context::{DATABASE, SCHEMA};

use super::computed::ComputedView;

/// The views this module serves.
pub const GRANT_VIEWS: [&str; 2] = ["role_table_grants", "table_privileges"];

/// `role_table_grants` or `table_privileges` (the same rows).
#[derive(Debug)]
pub struct GrantsView {
    catalogs: Arc<dyn CatalogProviderList>,
}

impl GrantsView {
    /// Over the relations of `catalogs`.
    pub fn new(catalogs: Arc<dyn CatalogProviderList>) -> Self {
        Self { catalogs }
    }
}

const COLUMNS: [&str; 8] = [
    "grantor",
    "grantee",
    "table_catalog",
    "table_schema",
    "table_name",
    "privilege_type",
    "is_grantable",
    "with_hierarchy",
];

fn schema() -> SchemaRef {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|name| Field::new(*name, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// The relations of Weir's one schema, by name.
pub async fn relations(catalogs: &dyn CatalogProviderList) -> Result<Vec<String>> {
    let Some(schema) = catalogs
        .catalog(DATABASE)
        .and_then(|catalog| catalog.schema(SCHEMA))
    else {
        return Ok(Vec::new());
    };
    let mut names = schema.table_names();
    names.sort();
    Ok(names)
}

#[async_trait]
impl ComputedView for GrantsView {
    fn columns(&self) -> SchemaRef {
        schema()
    }

    async fn compute(&self, _state: &dyn Session) -> Result<RecordBatch> {
        let acl = Roles::published().map(|r| r.acl()).unwrap_or_default();
        let rows = rows(&acl, &relations(self.catalogs.as_ref()).await?);
        let column = |f: &dyn Fn(&Row) -> String| -> ArrayRef {
            Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
        };
        let columns = vec![
            column(&|r| r.grantor.clone()),
            column(&|r| r.grantee.clone()),
            column(&|_| DATABASE.to_string()),
            column(&|_| SCHEMA.to_string()),
            column(&|r| r.table.clone()),
            column(&|r| r.privilege.to_string()),
            // The owner may grant what it holds; nobody else (no grant
            // options in Weir).
            column(&|r| if r.grantor == r.grantee { "YES" } else { "NO" }.to_string()),
            column(&|r| if r.privilege == "SELECT" { "YES" } else { "NO" }.to_string()),
        ];
        Ok(RecordBatch::try_new(schema(), columns)?)
    }
}

struct Row {
    grantor: String,
    grantee: String,
    table: String,
    privilege: &'static str,
}

fn rows(acl: &Acl, relations: &[String]) -> Vec<Row> {
    relations
        .iter()
        .flat_map(|table| {
            acl.grants_on(table)
                .into_iter()
                .map(|(grantor, grantee, privilege)| Row {
                    grantor,
                    grantee,
                    table: table.clone(),
                    privilege,
                })
        })
        .collect()
}
