//! Dispatch: which handler runs a statement of each kind, and what Describe
//! says about each kind. The one place that knows every statement kind;
//! the handlers in [`crate::statements`] know only their own.
//!
//! Both matches are exhaustive, with no `_` arm: a new kind of statement
//! does not compile until it has a handler and a description.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement;
use weir_planner::WeirStatement;

use crate::auth::{self, privileges};
use crate::error::{Result, ServerError};
use crate::output::{Described, Output};
use crate::registry::Registry;
use crate::session::Session;
use crate::session::gate::StatementGate;
use crate::statements;
use weir_connectors::table_store::txn::{self, SharedTransaction};

/// Run `statement` (whose text is `sql`) for `session`, in its transaction:
/// the open block's, or one of its own that commits when the statement
/// succeeds (a COPY FROM's commits when its data is in). An autocommit
/// statement commits only if `gate` lets it: one stopped first (cancel,
/// timeout, client gone) rolls back and reports 57014.
pub async fn execute(
    registry: &Registry,
    session: &Session,
    statement: WeirStatement,
    sql: &str,
    params: Option<ParamValues>,
    gate: Option<Arc<StatementGate>>,
) -> Result<Output> {
    if let WeirStatement::Transaction(op) = statement {
        return session.transaction_control(op).await;
    }
    session.refuse_if_aborted()?;
    let writes = matches!(statement, WeirStatement::Dml(_));
    let (txn, autocommit) = match session.transaction() {
        Some(txn) => (txn, false),
        None => (SharedTransaction::new(), true),
    };
    // Boxed: the handlers' state is large, and this future is built on the
    // connection's thread before it moves to a worker.
    let output = Box::pin(txn::scope(
        Some(txn.clone()),
        run(registry, session, statement, sql, params, &txn, autocommit),
    ))
    .await?;
    // Not a COPY FROM: its data is still to come, and it commits then.
    if autocommit && !matches!(output, Output::CopyIn(_)) {
        // Only a write passes the gate: a query's rows stream after this
        // commit (of nothing), and must stay cancellable while they do.
        if writes && gate.is_some_and(|gate| !gate.commit()) {
            txn.rollback().await;
            return Err(ServerError::QueryCanceled);
        }
        txn.commit().await?;
    }
    Ok(output)
}

/// The handler of each kind of statement, each after its privilege check
/// ([`privileges::Checker`]: one line per kind).
async fn run(
    registry: &Registry,
    session: &Session,
    statement: WeirStatement,
    sql: &str,
    params: Option<ParamValues>,
    txn: &SharedTransaction,
    autocommit: bool,
) -> Result<Output> {
    let may = privileges::Checker::new(registry, session);
    match statement {
        WeirStatement::Query(mut statement) => {
            may.query(&statement)?;
            crate::pg_functions::substitute_session(&mut statement, session, sql)?;
            if sql.to_ascii_lowercase().contains("pg_policy") {
                crate::pg_catalog::policy_queries(&mut statement);
            }
            if sql.to_ascii_lowercase().contains("reloptions") {
                crate::pg_catalog::reloption_queries(&mut statement);
            }
            if sql.to_ascii_lowercase().contains("current_setting") {
                weir_planner::compat::substitute_settings(&mut statement, |name| {
                    session.get(name)
                })?;
            }
            let explain = matches!(*statement, Statement::Explain { .. });
            let rows = registry.run_query(*statement, sql, params).await?;
            if explain {
                Ok(Output::Rows(statements::explain::reshape(rows).await?))
            } else {
                Ok(Output::Rows(rows))
            }
        }
        WeirStatement::CreateTable(create) => {
            let creating = may.create(&create.name)?;
            creating.record(statements::ddl::create_table(registry, create).await)
        }
        WeirStatement::CreateView(view) => {
            let creating = may.create_or_replace(&view.name)?;
            may.query(&view.statement)?;
            creating.record(statements::ddl::create_view(registry, view, sql).await)
        }
        WeirStatement::Drop {
            kind,
            names,
            if_exists,
            cascade,
        } => {
            may.own(&names)?;
            let dropped = statements::ddl::drop(registry, kind, names, if_exists, cascade).await;
            privileges::forget_dropped(registry, session, dropped)
        }
        WeirStatement::SetVariable { name, value } => Ok(Output::Set {
            tag: "SET",
            changes: session.set(&name, value)?.into_iter().collect(),
        }),
        WeirStatement::Reset { name } => Ok(Output::Set {
            tag: "RESET",
            changes: match name {
                Some(name) => session.set(&name, None)?.into_iter().collect(),
                None => session.reset_all(),
            },
        }),
        WeirStatement::ShowVariable { name } => statements::show::variable(session, &name),
        WeirStatement::ShowAll => statements::show::all(session),
        WeirStatement::ShowObjects(kind) => statements::show::objects(registry, kind),
        WeirStatement::Transaction(op) => session.transaction_control(op).await,
        WeirStatement::Discard { all: false, tag } | WeirStatement::NoEffect(tag) => {
            Ok(Output::command(tag))
        }
        // Postgres's DISCARD ALL: RESET ALL and CLOSE ALL (prepared
        // statements belong to the protocol layer, which keeps them), and
        // never inside a block, where it could not be undone.
        WeirStatement::Discard { all: true, tag } => {
            if session.transaction().is_some() {
                return Err(ServerError::ActiveTransaction {
                    message: "DISCARD ALL cannot run inside a transaction block".into(),
                });
            }
            session.cursors().close_all();
            Ok(Output::Set {
                tag,
                changes: session.reset_all(),
            })
        }
        // Role statements check their own: a superuser, or one's own password.
        WeirStatement::Role(statement) => statements::ddl::role(session, *statement),
        WeirStatement::Grant(grant) => auth::grant::execute(registry, session, grant),
        WeirStatement::Savepoint(tag) => Ok(Output::command(tag)),
        WeirStatement::CreateStream(create) => {
            let creating = may.create(&create.name)?;
            creating.record(statements::streams::create_stream(registry, create).await)
        }
        WeirStatement::CreateMaterializedView(create) if create.or_replace => {
            let creating = may.create_or_replace(&create.name)?;
            may.reads(&create.query)?;
            creating.record(statements::replace::replace_view(registry, create).await)
        }
        WeirStatement::CreateMaterializedView(create) => {
            let creating = may.create(&create.name)?;
            may.reads(&create.query)?;
            creating.record(
                statements::materialized_views::create_materialized_view(registry, create, true)
                    .await,
            )
        }
        WeirStatement::ExplainMaterializedView(create) if create.or_replace => {
            may.reads(&create.query)?;
            statements::replace::explain_replace(registry, create).await
        }
        WeirStatement::ExplainMaterializedView(create) => {
            may.reads(&create.query)?;
            statements::materialized_views::explain_materialized_view(registry, create).await
        }
        WeirStatement::Subscribe { name, copy } => {
            may.subscribe(&name)?;
            statements::subscribe::subscribe_with(registry, &name, copy, session.subscribe_blocks())
        }
        WeirStatement::Flush { view } => statements::flush::flush(registry, view.as_deref()).await,
        WeirStatement::DeclareCursor { name, view } => {
            may.subscribe(&view)?;
            statements::cursor::declare(registry, session, &name, &view)
        }
        WeirStatement::Fetch {
            cursor,
            count,
            timeout,
        } => statements::cursor::fetch(session, &cursor, count, timeout.as_deref()).await,
        WeirStatement::CloseCursor(name) => statements::cursor::close(session, name.as_deref()),
        WeirStatement::CreateSink(create) => {
            let creating = match create.or_replace {
                true => may.create_or_replace(&create.name)?,
                false => may.create(&create.name)?,
            };
            may.subscribe(&create.from)?;
            creating.record(statements::sink::create(registry, create).await)
        }
        WeirStatement::Job(job) => {
            may.job(&job)?;
            statements::jobs::execute(registry, job).await
        }
        WeirStatement::Dml(mut dml) => {
            may.dml(&dml)?;
            statements::insert_fast::name_implied_columns(registry, &mut dml)?;
            match statements::insert_fast::execute(registry, &dml, params.as_ref(), txn).await? {
                Some(output) => Ok(output),
                None => statements::dml::execute(registry, dml, sql, params).await,
            }
        }
        WeirStatement::Copy(copy) => {
            may.copy(&copy)?;
            if copy.to {
                statements::dml::copy_to(registry, copy).await
            } else {
                statements::dml::copy_from(registry, copy, txn, autocommit)
            }
        }
    }
}

/// What a prepared `statement` (whose text is `sql`) returns and takes.
pub async fn describe(
    registry: &Registry,
    statement: &WeirStatement,
    sql: &str,
) -> Result<Described> {
    if let Some(described) = statements::insert_fast::describe(registry, statement) {
        return Ok(described);
    }
    let schema = match statement {
        WeirStatement::Query(statement) => {
            let plan = registry.plan_query((**statement).clone(), sql).await?;
            return describe_plan(&plan, sql);
        }
        WeirStatement::Dml(dml) => {
            // As it will run: with the columns an INSERT's short rows fill.
            let mut dml = dml.clone();
            statements::insert_fast::name_implied_columns(registry, &mut dml)?;
            let plan = registry.plan_query(*dml.statement, sql).await?;
            return describe_plan(&plan, sql);
        }
        WeirStatement::ShowVariable { name } => Some(statements::show::variable_schema(name)),
        WeirStatement::ShowAll => Some(statements::show::all_schema()),
        WeirStatement::ShowObjects(kind) => Some(statements::show::objects_schema(*kind)),
        WeirStatement::CreateTable(_)
        | WeirStatement::CreateView(_)
        | WeirStatement::Drop { .. }
        | WeirStatement::SetVariable { .. }
        | WeirStatement::Reset { .. }
        | WeirStatement::Transaction(_)
        | WeirStatement::Savepoint(_)
        | WeirStatement::Discard { .. }
        | WeirStatement::NoEffect(_)
        | WeirStatement::Role(_)
        | WeirStatement::Grant(_)
        | WeirStatement::CreateStream(_)
        | WeirStatement::CreateMaterializedView(_)
        | WeirStatement::CreateSink(_)
        | WeirStatement::Copy(_)
        | WeirStatement::Flush { .. }
        | WeirStatement::DeclareCursor { .. }
        | WeirStatement::CloseCursor(_) => None,
        // The cursor's columns, which only the session knows: the
        // protocol handler fills them in.
        WeirStatement::Fetch { .. } => None,
        WeirStatement::ExplainMaterializedView(_) => Some(statements::explain::schema()),
        WeirStatement::Job(job) => statements::jobs::schema(job),
        WeirStatement::Subscribe { name, copy } => {
            if *copy {
                None
            } else {
                Some(statements::subscribe::subscribe_schema(registry, name)?)
            }
        }
    };
    Ok(Described {
        schema,
        params: Vec::new(),
    })
}

/// The columns and `$n` parameter types of a planned query or DML.
fn describe_plan(plan: &LogicalPlan, sql: &str) -> Result<Described> {
    let params = plan
        .get_parameter_types()
        .map_err(|e| ServerError::from_datafusion(e, Some(sql)))?;
    // `$1`, `$2`, ... in numeric order ($10 after $9).
    let mut params: Vec<(usize, Option<DataType>)> = params
        .into_iter()
        .filter_map(|(id, ty)| id.trim_start_matches('$').parse().ok().map(|n| (n, ty)))
        .collect();
    params.sort_by_key(|(n, _)| *n);
    let count = params.last().map_or(0, |(n, _)| *n);
    let mut types = vec![None; count];
    for (n, ty) in params {
        types[n - 1] = ty;
    }
    if types.iter().any(Option::is_none) {
        fill_from_casts(plan, &mut types);
    }
    let schema = match plan {
        LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) => None,
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => Some(statements::explain::schema()),
        plan => Some(Arc::new(plan.schema().as_arrow().clone())),
    };
    Ok(Described {
        schema,
        params: types,
    })
}

/// DataFusion types a placeholder from what it is compared with, but not
/// from a cast around it (`$1::BIGINT`); take the cast's type for those.
fn fill_from_casts(plan: &LogicalPlan, types: &mut [Option<DataType>]) {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let _ = plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            let _ = expr.apply(|e| {
                if let Expr::Cast(cast) = e
                    && let Expr::Placeholder(placeholder) = cast.expr.as_ref()
                    && let Ok(n) = placeholder.id.trim_start_matches('$').parse::<usize>()
                    && let Some(slot) = n.checked_sub(1).and_then(|i| types.get_mut(i))
                    && slot.is_none()
                {
                    *slot = Some(cast.field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
}
