//! `CREATE TABLE ... WITH (connector = ...)`, `CREATE VIEW`, `DROP`, and
//! the role statements (`CREATE ROLE`, `ALTER ROLE`, `DROP ROLE`, run by
//! [`crate::auth::statements`], which owns passwords).
//!
//! # Correctness
//! Each statement first builds what it registers (which may fail on bad
//! options or missing files), then writes the durable catalog, and only then
//! changes the live DataFusion catalog. A failure before the write changes
//! nothing; the write is atomic; the live change cannot fail. So the durable
//! and the live catalog never disagree about an acknowledged statement.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use tracing::{info, warn};
use weir_connectors::ConnectorOptions;
use weir_connectors::registry::{self as connectors, Opening};
use weir_planner::catalog::{Catalog, CatalogEntry, TableDef, ViewDef};
use weir_planner::statement::{CreateTable, CreateView, ObjectKind};

use crate::error::{Result, ServerError};
use crate::output::{Notice, Output};
use crate::registry::Registry;

/// `CREATE TABLE name [(columns)] WITH (connector = 'file', ...)`.
pub async fn create_table(registry: &Registry, create: CreateTable) -> Result<Output> {
    let _ddl = registry.ddl_guard().await;
    if registry.name_taken(&create.name) {
        if create.if_not_exists {
            return Ok(Output::command("CREATE TABLE"));
        }
        return Err(ServerError::DuplicateTable { name: create.name });
    }
    if create.options.is_empty() {
        return super::dml::create_table(registry, create).await;
    }
    if create.has_query || create.has_constraints || !create.primary_key.is_empty() {
        return Err(ServerError::FeatureNotSupported {
            message: "constraints and AS SELECT on tables over files are not supported".to_string(),
            hint: None,
        });
    }
    let options = ConnectorOptions::new(create.options.clone());
    let stored_options = options.as_map().clone();
    let declared = if create.columns.is_empty() {
        None
    } else {
        Some(declared_schema(registry, &create.columns).await?)
    };
    let state = registry.state();
    let table = registry
        .run(
            async move { connectors::open_table(&state, options, declared, Opening::Create).await },
        )
        .await??;
    let def = TableDef {
        name: create.name.clone(),
        columns: TableDef::columns_of(&table.schema()),
        options: stored_options,
        owned: None,
    };
    registry.persist(|catalog| catalog.insert(CatalogEntry::Table(def)).map_err(Into::into))?;
    weir_connectors::file::observe_table(table.as_ref(), &create.name, registry.runtime_metrics());
    registry.register_table(&create.name, table)?;
    info!(table = %create.name, "table created");
    Ok(Output::command("CREATE TABLE"))
}

/// The schema of a column list, typed the way DataFusion types SQL columns.
pub(crate) async fn declared_schema(
    registry: &Registry,
    columns: &[datafusion::sql::sqlparser::ast::ColumnDef],
) -> Result<SchemaRef> {
    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let sql = format!("CREATE TABLE __weir_columns ({})", columns.join(", "));
    let statement = weir_planner::parser::parse(&sql)?
        .pop()
        .ok_or_else(|| ServerError::internal("column list vanished"))?;
    let plan = registry.plan_query(statement, &sql).await?;
    match plan {
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(t)) => {
            Ok(Arc::new(t.input.schema().as_arrow().clone()))
        }
        other => Err(ServerError::internal(format!(
            "unexpected plan for a column list: {other}"
        ))),
    }
}

/// `CREATE [OR REPLACE] VIEW name AS query`.
pub async fn create_view(registry: &Registry, view: CreateView, sql: &str) -> Result<Output> {
    let _ddl = registry.ddl_guard().await;
    match registry.kind_of(&view.name) {
        Some(ObjectKind::View) if view.or_replace => {}
        Some(
            ObjectKind::Table
            | ObjectKind::Stream
            | ObjectKind::MaterializedView
            | ObjectKind::Sink,
        ) => {
            return Err(ServerError::WrongObjectType {
                message: format!("\"{}\" is not a view", view.name),
            });
        }
        Some(ObjectKind::View) => return Err(ServerError::DuplicateTable { name: view.name }),
        None => {}
    }
    // Plan first: a view over a missing table or column fails here and
    // changes nothing.
    let plan = registry.plan_query((*view.statement).clone(), sql).await?;
    let mut statement = (*view.statement).clone();
    let definition = match &mut statement {
        datafusion::sql::sqlparser::ast::Statement::CreateView(create) => {
            // Replaying must create, not replace: the catalog holds one
            // definition per name.
            create.or_replace = false;
            create.query.to_string()
        }
        other => other.to_string(),
    };
    let def = ViewDef {
        name: view.name.clone(),
        sql: statement.to_string(),
        definition,
    };
    registry.persist(|catalog| {
        catalog.upsert(CatalogEntry::View(def));
        Ok(())
    })?;
    registry.run_plan(plan).await?;
    info!(view = %view.name, "view created");
    Ok(Output::command("CREATE VIEW"))
}

/// `DROP TABLE | VIEW [IF EXISTS] names [CASCADE]`.
pub async fn drop(
    registry: &Registry,
    kind: ObjectKind,
    names: Vec<String>,
    if_exists: bool,
    cascade: bool,
) -> Result<Output> {
    let _ddl = registry.ddl_guard().await;
    let tag = match kind {
        ObjectKind::Table => "DROP TABLE",
        ObjectKind::View => "DROP VIEW",
        ObjectKind::Stream => "DROP STREAM",
        ObjectKind::MaterializedView => "DROP MATERIALIZED VIEW",
        ObjectKind::Sink => "DROP SINK",
    };
    // Check all names before dropping any, as Postgres does. The catalog
    // cannot change meanwhile: this statement holds the DDL guard.
    let catalog = registry.catalog();
    let mut to_drop = Vec::new();
    // Postgres names the kind the statement drops: `materialized view "v"
    // does not exist`, and with IF EXISTS says so in a NOTICE.
    let mut skipped = Vec::new();
    for name in names {
        match catalog.get(&name).map(|e| e.kind()) {
            Some(k) if k == kind => to_drop.push(name),
            Some(_) => {
                return Err(ServerError::WrongObjectType {
                    message: format!("\"{name}\" is not a {}", kind.name()),
                });
            }
            None if if_exists => skipped.push(format!(
                "{} \"{name}\" does not exist, skipping",
                kind.name()
            )),
            // A sink is no relation: Postgres's undefined_object (42704).
            None if kind == ObjectKind::Sink => {
                return Err(ServerError::UndefinedObject {
                    message: format!("sink \"{name}\" does not exist"),
                });
            }
            None => {
                return Err(ServerError::UndefinedTable {
                    kind: kind.name(),
                    name,
                    position: None,
                });
            }
        }
    }
    // A stream or table that a running view reads cannot go (Postgres:
    // 2BP01); nor can a materialized view, unless CASCADE takes the views
    // that read it (and theirs) along.
    let mut cascaded_views: Vec<String> = Vec::new();
    if matches!(
        kind,
        ObjectKind::Stream | ObjectKind::Table | ObjectKind::MaterializedView
    ) {
        let views = registry.views();
        for name in &to_drop {
            let Some((view, _)) = views
                .iter()
                .find(|(v, live)| !to_drop.contains(v) && live.inputs.contains(name))
            else {
                continue;
            };
            if kind == ObjectKind::MaterializedView && cascade {
                continue;
            }
            return Err(ServerError::DependentObjects {
                message: format!(
                    "cannot drop {} \"{name}\" because materialized view \"{view}\" depends on it",
                    kind.name()
                ),
                detail: None,
                hint: (kind == ObjectKind::MaterializedView)
                    .then(|| "Use DROP ... CASCADE to drop the dependent objects too.".to_string()),
            });
        }
        if kind == ObjectKind::MaterializedView && cascade {
            cascaded_views = dependent_materialized_views(&views, &to_drop);
        }
    }
    // A view that a sink writes out cannot go either.
    if kind == ObjectKind::MaterializedView {
        for name in to_drop.iter().chain(&cascaded_views) {
            if let Some(CatalogEntry::Sink(sink)) = catalog
                .of_kind(ObjectKind::Sink)
                .find(|e| matches!(e, CatalogEntry::Sink(s) if &s.from == name))
            {
                return Err(ServerError::DependentObjects {
                    message: format!(
                        "cannot drop materialized view \"{name}\" because sink \"{}\" depends on it",
                        sink.name
                    ),
                    detail: None,
                    hint: None,
                });
            }
        }
    }
    // Plain views that read what goes (directly or through each other):
    // refused as in Postgres, or dropped too under CASCADE. Left behind,
    // such a view would be listed but fail every query and every restore.
    let dependents = if kind == ObjectKind::Sink {
        Vec::new()
    } else {
        let gone: Vec<String> = to_drop.iter().chain(&cascaded_views).cloned().collect();
        dependent_views(&catalog, &gone)
    };
    if !dependents.is_empty() && !cascade {
        let detail: Vec<String> = dependents
            .iter()
            .map(|(view, on)| {
                let on_kind = if to_drop.contains(on) {
                    kind.name()
                } else {
                    ObjectKind::View.name()
                };
                format!("view {view} depends on {on_kind} {on}")
            })
            .collect();
        let message = match to_drop.as_slice() {
            [name] => format!(
                "cannot drop {} {name} because other objects depend on it",
                kind.name()
            ),
            _ => "cannot drop desired object(s) because other objects depend on them".to_string(),
        };
        return Err(ServerError::DependentObjects {
            message,
            detail: Some(detail.join("\n")),
            hint: Some("Use DROP ... CASCADE to drop the dependent objects too.".to_string()),
        });
    }
    let cascaded: Vec<String> = dependents.into_iter().map(|(view, _)| view).collect();
    let sinks_of: Vec<(String, String)> = catalog
        .of_kind(ObjectKind::Sink)
        .filter_map(|e| match e {
            CatalogEntry::Sink(s) if to_drop.contains(&s.name) => {
                Some((s.name.clone(), s.from.clone()))
            }
            _ => None,
        })
        .collect();
    registry.persist(|catalog| {
        for name in &cascaded {
            catalog.remove(ObjectKind::View, name)?;
        }
        for name in &cascaded_views {
            catalog.remove(ObjectKind::MaterializedView, name)?;
        }
        for name in &to_drop {
            catalog.remove(kind, name)?;
        }
        Ok(())
    })?;
    for name in &cascaded {
        registry.deregister_table(name)?;
        info!(object = %name, kind = ObjectKind::View.name(), "dropped (cascade)");
    }
    // Readers first: a view's job stops before the view it reads goes.
    for name in &cascaded_views {
        registry.deregister_table(name)?;
        registry.remove_view(name).await;
        info!(object = %name, kind = ObjectKind::MaterializedView.name(), "dropped (cascade)");
    }
    for (sink, view) in &sinks_of {
        if let Ok(live) = registry.view(view) {
            live.output.detach(sink);
        }
    }
    for name in &to_drop {
        if kind == ObjectKind::Sink {
            info!(object = %name, kind = kind.name(), "dropped");
            continue;
        }
        registry.deregister_table(name)?;
        match kind {
            // Dropping the live view stops its job.
            ObjectKind::MaterializedView => registry.remove_view(name).await,
            ObjectKind::Stream => registry.remove_stream(name),
            ObjectKind::Table => super::dml::dropped(registry, name),
            ObjectKind::View | ObjectKind::Sink => {}
        }
        info!(object = %name, kind = kind.name(), "dropped");
    }
    // One NOTICE per name skipped, in the statement's order (the outermost
    // is sent first).
    Ok(skipped
        .into_iter()
        .rev()
        .fold(Output::command(tag), |output, message| {
            output.after(Notice::info(message))
        }))
}

/// The materialized views that read any of `names`, directly or through
/// each other, readers of readers first (the order their jobs stop in).
fn dependent_materialized_views(
    views: &[(String, std::sync::Arc<crate::registry::LiveView>)],
    names: &[String],
) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut at = 0;
    let mut reached: Vec<String> = names.to_vec();
    while at < reached.len() {
        let name = reached[at].clone();
        at += 1;
        for (view, live) in views {
            if live.inputs.contains(&name) && !reached.contains(view) {
                reached.push(view.clone());
                found.push(view.clone());
            }
        }
    }
    found.reverse();
    found
}

/// The plain views that read any of `names`, directly or through other
/// such views, each with the name it reads, in the order they must go.
fn dependent_views(catalog: &Catalog, names: &[String]) -> Vec<(String, String)> {
    let reads: Vec<(String, Vec<String>)> = catalog
        .of_kind(ObjectKind::View)
        .filter_map(|entry| match entry {
            CatalogEntry::View(def) => Some((def.name.clone(), relations_of(&def.sql))),
            _ => None,
        })
        .collect();
    let mut gone: Vec<String> = names.to_vec();
    let mut dependents: Vec<(String, String)> = Vec::new();
    let mut at = 0;
    while at < gone.len() {
        let name = gone[at].clone();
        for (view, relations) in &reads {
            if relations.contains(&name) && !gone.contains(view) {
                gone.push(view.clone());
                dependents.push((view.clone(), name.clone()));
            }
        }
        at += 1;
    }
    dependents
}

/// The names of the tables and views a view's SQL reads.
fn relations_of(sql: &str) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(statements) = weir_planner::parser::parse(sql) {
        for statement in &statements {
            let _ = datafusion::sql::sqlparser::ast::visit_relations(statement, |relation| {
                names.push(weir_planner::normalize::object_name(relation));
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
    }
    names
}

/// An object of the catalog could not be rebuilt on start: said, and the
/// object kept in the catalog, never silently deleted.
pub(crate) fn warn_restore(name: &str, err: &ServerError) {
    warn!(object = name, error = %err, "could not restore catalog object; it is kept in the catalog");
}

/// Rebuild the live catalog from the durable one, in creation order. An
/// object that cannot be rebuilt (its files are gone, say) is logged and kept
/// in the catalog, never silently deleted.
pub async fn restore(registry: &Registry, catalog: Catalog) {
    // Views look up their sinks while they are rebuilt.
    registry.set_catalog(catalog.clone());
    for entry in &catalog.entries {
        let result = match entry {
            CatalogEntry::Table(def) => restore_table(registry, def).await,
            CatalogEntry::View(def) => restore_view(registry, def).await,
            CatalogEntry::Stream(def) => super::streams::restore_stream(registry, def).await,
            CatalogEntry::MaterializedView(def) => {
                super::materialized_views::restore_view(registry, def).await
            }
            // Attached by their view's restore.
            CatalogEntry::Sink(_) => Ok(()),
        };
        if let Err(err) = result {
            warn_restore(entry.name(), &err);
        }
    }
    // Every view resumed where its checkpoint was: tables may now forget
    // the changes their readers have read.
    registry.tables().readers_started();
    info!(objects = catalog.entries.len(), "catalog restored");
    registry.set_catalog(catalog);
}

async fn restore_table(registry: &Registry, def: &TableDef) -> Result<()> {
    if let Some(owned) = &def.owned {
        return super::dml::restore_table(registry, def, owned);
    }
    let options = ConnectorOptions::new(def.options.clone());
    let schema = def.schema()?;
    let state = registry.state();
    // Files may be missing right now (a mount not up yet): the table is
    // still registered, and queries fail with a clear error until they return.
    let table = registry
        .run(async move {
            connectors::open_table(&state, options, Some(schema), Opening::Restore).await
        })
        .await??;
    weir_connectors::file::observe_table(table.as_ref(), &def.name, registry.runtime_metrics());
    registry.register_table(&def.name, table)
}

async fn restore_view(registry: &Registry, def: &ViewDef) -> Result<()> {
    let statement = weir_planner::parser::parse(&def.sql)?
        .pop()
        .ok_or_else(|| ServerError::internal("empty view definition"))?;
    let plan = registry.plan_query(statement, &def.sql).await?;
    registry.run_plan(plan).await
}

/// `CREATE ROLE`, `ALTER ROLE`, `DROP ROLE`.
pub fn role(
    session: &crate::session::Session,
    statement: datafusion::sql::sqlparser::ast::Statement,
) -> Result<Output> {
    crate::auth::statements::execute(session, statement)
}
