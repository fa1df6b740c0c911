//! `CREATE TABLE ... WITH (connector = ...)`, `CREATE VIEW`, `DROP`.
//!
//! # Correctness
//! Each statement first builds what it registers (which may fail on bad
//! options or missing files), then writes the durable catalog, and only then
//! changes the live DataFusion catalog. A failure before the write changes
//! nothing; the write is atomic; the live change cannot fail. So the durable
//! and the live catalog never disagree about an acknowledged statement.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use tracing::info;
use weir_connectors::ConnectorOptions;
use weir_connectors::registry::{self, Opening};
use weir_planner::catalog::{Catalog, CatalogEntry, TableDef, ViewDef};
use weir_planner::statement::{CreateTable, CreateView, ObjectKind};

use crate::engine::{Engine, Output};
use crate::error::{Result, ServerError};

/// `CREATE TABLE name [(columns)] WITH (connector = 'file', ...)`.
pub async fn create_table(engine: &Arc<Engine>, create: CreateTable) -> Result<Output> {
    let _ddl = engine.ddl_lock.lock().await;
    if engine.catalog.lock().get(&create.name).is_some()
        || engine
            .ctx
            .table_exist(TableReference::bare(create.name.as_str()))
            .unwrap_or(false)
    {
        if create.if_not_exists {
            return Ok(Output::Command {
                tag: "CREATE TABLE",
                rows: None,
            });
        }
        return Err(ServerError::DuplicateTable { name: create.name });
    }
    if create.options.is_empty() {
        return super::dml::create_table(engine, create).await;
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
        Some(declared_schema(engine, &create.columns).await?)
    };
    let state = engine.ctx.state();
    let table = engine
        .executor
        .run(async move { registry::open_table(&state, options, declared, Opening::Create).await })
        .await??;
    let def = TableDef {
        name: create.name.clone(),
        columns: TableDef::columns_of(&table.schema()),
        options: stored_options,
        owned: None,
    };
    persist(engine, |catalog| {
        catalog.insert(CatalogEntry::Table(def)).map_err(Into::into)
    })?;
    engine
        .ctx
        .register_table(TableReference::bare(create.name.as_str()), table)
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    info!(table = %create.name, "table created");
    Ok(Output::Command {
        tag: "CREATE TABLE",
        rows: None,
    })
}

/// The schema of a column list, typed the way DataFusion types SQL columns.
pub(crate) async fn declared_schema(
    engine: &Arc<Engine>,
    columns: &[datafusion::sql::sqlparser::ast::ColumnDef],
) -> Result<SchemaRef> {
    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let sql = format!("CREATE TABLE __weir_columns ({})", columns.join(", "));
    let statement = weir_planner::parser::parse(&sql)?
        .pop()
        .ok_or_else(|| ServerError::internal("column list vanished"))?;
    let plan = engine.plan_query(statement, &sql).await?;
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
pub async fn create_view(engine: &Arc<Engine>, view: CreateView, sql: &str) -> Result<Output> {
    let _ddl = engine.ddl_lock.lock().await;
    let existing = engine.catalog.lock().get(&view.name).map(|e| e.kind());
    match existing {
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
    let plan = engine.plan_query((*view.statement).clone(), sql).await?;
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
    persist(engine, |catalog| {
        catalog.upsert(CatalogEntry::View(def));
        Ok(())
    })?;
    run_plan(engine, plan).await?;
    info!(view = %view.name, "view created");
    Ok(Output::Command {
        tag: "CREATE VIEW",
        rows: None,
    })
}

/// `DROP TABLE | VIEW [IF EXISTS] names [CASCADE]`.
pub async fn drop(
    engine: &Arc<Engine>,
    kind: ObjectKind,
    names: Vec<String>,
    if_exists: bool,
    cascade: bool,
) -> Result<Output> {
    let _ddl = engine.ddl_lock.lock().await;
    let tag = match kind {
        ObjectKind::Table => "DROP TABLE",
        ObjectKind::View => "DROP VIEW",
        ObjectKind::Stream => "DROP STREAM",
        ObjectKind::MaterializedView => "DROP MATERIALIZED VIEW",
        ObjectKind::Sink => "DROP SINK",
    };
    // Check all names before dropping any, as Postgres does.
    let mut to_drop = Vec::new();
    {
        let catalog = engine.catalog.lock();
        for name in names {
            match catalog.get(&name).map(|e| e.kind()) {
                Some(k) if k == kind => to_drop.push(name),
                Some(_) => {
                    return Err(ServerError::WrongObjectType {
                        message: format!("\"{name}\" is not a {}", kind.name()),
                    });
                }
                None if if_exists => {}
                None => {
                    return Err(ServerError::UndefinedTable {
                        name,
                        position: None,
                    });
                }
            }
        }
    }
    // A stream or table that a running view reads cannot go (Postgres: 2BP01).
    if matches!(kind, ObjectKind::Stream | ObjectKind::Table) {
        let views = engine.views.lock();
        for name in &to_drop {
            if let Some((view, _)) = views.iter().find(|(_, v)| v.inputs.contains(name)) {
                return Err(ServerError::DependentObjects {
                    message: format!(
                        "cannot drop {} \"{name}\" because materialized view \"{view}\" depends on it",
                        kind.name()
                    ),
                    detail: None,
                    hint: None,
                });
            }
        }
    }
    // A view that a sink writes out cannot go either.
    if kind == ObjectKind::MaterializedView {
        let catalog = engine.catalog.lock();
        for name in &to_drop {
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
        dependent_views(&engine.catalog.lock(), &to_drop)
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
    let sinks_of: Vec<(String, String)> = engine
        .catalog
        .lock()
        .of_kind(ObjectKind::Sink)
        .filter_map(|e| match e {
            CatalogEntry::Sink(s) if to_drop.contains(&s.name) => {
                Some((s.name.clone(), s.from.clone()))
            }
            _ => None,
        })
        .collect();
    persist(engine, |catalog| {
        for name in &cascaded {
            catalog.remove(ObjectKind::View, name)?;
        }
        for name in &to_drop {
            catalog.remove(kind, name)?;
        }
        Ok(())
    })?;
    for name in &cascaded {
        engine
            .ctx
            .deregister_table(TableReference::bare(name.as_str()))
            .map_err(|e| ServerError::from_datafusion(e, None))?;
        info!(object = %name, kind = ObjectKind::View.name(), "dropped (cascade)");
    }
    for (sink, view) in &sinks_of {
        if let Some(live) = engine.views.lock().get(view) {
            live.sink.detach(sink);
        }
    }
    for name in &to_drop {
        if kind == ObjectKind::Sink {
            info!(object = %name, kind = kind.name(), "dropped");
            continue;
        }
        engine
            .ctx
            .deregister_table(TableReference::bare(name.as_str()))
            .map_err(|e| ServerError::from_datafusion(e, None))?;
        match kind {
            // Dropping the live view stops its job.
            ObjectKind::MaterializedView => {
                std::mem::drop(engine.views.lock().remove(name));
                crate::checkpoints::drop_job(engine, name).await;
            }
            ObjectKind::Stream => std::mem::drop(engine.streams.lock().remove(name)),
            ObjectKind::Table => super::dml::dropped(engine, name),
            ObjectKind::View | ObjectKind::Sink => {}
        }
        info!(object = %name, kind = kind.name(), "dropped");
    }
    Ok(Output::Command { tag, rows: None })
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

/// Apply `change` to a copy of the catalog, write it durably, then keep it.
pub(crate) fn persist(
    engine: &Engine,
    change: impl FnOnce(&mut Catalog) -> Result<()>,
) -> Result<()> {
    let mut next = engine.catalog.lock().clone();
    change(&mut next)?;
    engine.store.save(&next)?;
    *engine.catalog.lock() = next;
    Ok(())
}

async fn run_plan(engine: &Arc<Engine>, plan: LogicalPlan) -> Result<()> {
    let ctx = engine.ctx.clone();
    engine
        .executor
        .run(async move { ctx.execute_logical_plan(plan).await.map(|_| ()) })
        .await?
        .map_err(|e| ServerError::from_datafusion(e, None))
}

/// Rebuild the live catalog from the durable one, in creation order. An
/// object that cannot be rebuilt (its files are gone, say) is logged and kept
/// in the catalog, never silently deleted.
pub async fn restore(engine: &Arc<Engine>, catalog: Catalog) {
    // Views look up their sinks while they are rebuilt.
    *engine.catalog.lock() = catalog.clone();
    for entry in &catalog.entries {
        let result = match entry {
            CatalogEntry::Table(def) => restore_table(engine, def).await,
            CatalogEntry::View(def) => restore_view(engine, def).await,
            CatalogEntry::Stream(def) => super::stream::restore_stream(engine, def).await,
            CatalogEntry::MaterializedView(def) => super::stream::restore_view(engine, def).await,
            // Attached by their view's restore.
            CatalogEntry::Sink(_) => Ok(()),
        };
        if let Err(err) = result {
            engine.warn_restore(entry.name(), &err);
        }
    }
    // Every view resumed where its checkpoint was: tables may now forget
    // the changes their readers have read.
    engine.tables.readers_started();
    info!(objects = catalog.entries.len(), "catalog restored");
    *engine.catalog.lock() = catalog;
}

async fn restore_table(engine: &Arc<Engine>, def: &TableDef) -> Result<()> {
    if let Some(owned) = &def.owned {
        return super::dml::restore_table(engine, def, owned);
    }
    let options = ConnectorOptions::new(def.options.clone());
    let schema = def.schema()?;
    let state = engine.ctx.state();
    // Files may be missing right now (a mount not up yet): the table is
    // still registered, and queries fail with a clear error until they return.
    let table =
        engine
            .executor
            .run(async move {
                registry::open_table(&state, options, Some(schema), Opening::Restore).await
            })
            .await??;
    engine
        .ctx
        .register_table(TableReference::bare(def.name.as_str()), table)
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    Ok(())
}

async fn restore_view(engine: &Arc<Engine>, def: &ViewDef) -> Result<()> {
    let statement = weir_planner::parser::parse(&def.sql)?
        .pop()
        .ok_or_else(|| ServerError::internal("empty view definition"))?;
    let plan = engine.plan_query(statement, &def.sql).await?;
    run_plan(engine, plan).await
}
