//! The one privilege check: what a statement needs on the objects it names,
//! asked of the owners and grants in [`super::acl`].
//!
//! `dispatch.rs` calls one method here per statement kind, before the
//! statement's handler runs:
//!
//! - a query needs SELECT on every relation it names, however deep (joins,
//!   subqueries, CTE bodies); a view needs SELECT on the view only, since
//!   whoever created it needed SELECT on what it reads;
//! - INSERT / UPDATE / DELETE and COPY FROM need that privilege on their
//!   table, and SELECT on any other relation they read; as in Postgres, a
//!   write that reads its own table's columns (a WHERE, a RETURNING, a SET
//!   expression that names a column) needs SELECT on it too, so that
//!   `UPDATE t SET a = 1` takes UPDATE alone but `DELETE .. WHERE` cannot
//!   probe rows one may not read;
//! - CREATE of any object needs `CREATE ON SCHEMA public`, and a view,
//!   materialized view or sink also SELECT on what it reads: otherwise a
//!   view of one's own would read a table one may not;
//! - DROP, ALTER JOB, `CREATE OR REPLACE` and GRANT need ownership.
//!
//! Superusers pass every check, and under `trust` every session is one
//! (its listeners are loopback only). A refusal is the user's fault:
//! 42501 naming the privilege's object as Postgres words it
//! (`permission denied for table t`, `must be owner of view v`).
//!
//! Design note: `docs/design/0009-security.md` (Privileges).

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{Query, Statement};
use weir_planner::catalog::CatalogEntry;
use weir_planner::dml::{Copy, Dml, DmlKind};
use weir_planner::parser::JobStatement;
use weir_planner::statement::ObjectKind;

use super::BOOTSTRAP_USER;
use super::acl::{ObjectAcl, TablePrivilege};
use super::store::Roles;
use crate::error::{Result, ServerError};
use crate::output::Output;
use crate::registry::{Registry, WriteTarget};
use crate::session::Session;

/// Checks one session's statements against the privileges.
pub struct Checker<'a> {
    registry: &'a Registry,
    session: &'a Session,
    /// `None`: the session may do anything (a superuser, `trust`, or no
    /// connection at all).
    roles: Option<&'a Arc<Roles>>,
}

impl<'a> Checker<'a> {
    /// The checker of `session`'s statements.
    pub fn new(registry: &'a Registry, session: &'a Session) -> Self {
        let roles = if session.is_superuser() {
            None
        } else {
            session.auth().map(|auth| &auth.roles)
        };
        Self {
            registry,
            session,
            roles,
        }
    }

    /// A query (`SELECT`, `EXPLAIN`, `VALUES`): SELECT on every relation
    /// it names.
    pub fn query(&self, statement: &Statement) -> Result<()> {
        self.select_all(&relations(statement)?, None)
    }

    /// `INSERT`, `UPDATE`, `DELETE`: the privilege on the target, SELECT
    /// on every other relation it reads.
    pub fn dml(&self, dml: &Dml) -> Result<()> {
        let privilege = match dml.kind {
            DmlKind::Insert => TablePrivilege::Insert,
            DmlKind::Update => TablePrivilege::Update,
            DmlKind::Delete => TablePrivilege::Delete,
        };
        self.require(&dml.table, privilege)?;
        if reads_own_columns(&dml.statement) {
            self.require(&dml.table, TablePrivilege::Select)?;
        }
        self.select_all(&relations(&dml.statement)?, Some(&dml.table))
    }

    /// `COPY t FROM STDIN`: INSERT on `t`; `COPY t | (query) TO STDOUT`:
    /// SELECT on what it reads.
    pub fn copy(&self, copy: &Copy) -> Result<()> {
        if let Some(table) = &copy.table {
            let privilege = if copy.to {
                TablePrivilege::Select
            } else {
                TablePrivilege::Insert
            };
            self.require(table, privilege)?;
        }
        match &copy.query {
            Some(query) => self.reads(query),
            None => Ok(()),
        }
    }

    /// `SUBSCRIBE TO v`, `DECLARE c CURSOR FOR SUBSCRIBE TO v`: SELECT on `v`.
    pub fn subscribe(&self, view: &str) -> Result<()> {
        self.require(view, TablePrivilege::Select)
    }

    /// SELECT on every relation `query` names (the body of a view or a
    /// materialized view, `COPY (query) TO`).
    pub fn reads(&self, query: &Query) -> Result<()> {
        self.query(&Statement::Query(Box::new(query.clone())))
    }

    /// `CREATE ... name`: the right to create objects. The returned
    /// [`Creating`] records the session's role as the owner once the
    /// object exists.
    pub fn create(&self, name: &str) -> Result<Creating<'a>> {
        if let Some(roles) = self.roles
            && !roles.with_acl(|acl| acl.may_create(self.session.user()))
        {
            return Err(ServerError::InsufficientPrivilege {
                message: "permission denied for schema public".to_string(),
            });
        }
        Ok(Creating {
            registry: self.registry,
            session: self.session,
            name: name.to_string(),
            existed: self.registry.kind_of(name).is_some(),
        })
    }

    /// `CREATE OR REPLACE` of `name`: replacing one that exists takes
    /// ownership of it, making one takes the right to create.
    pub fn create_or_replace(&self, name: &str) -> Result<Creating<'a>> {
        if self.registry.kind_of(name).is_some() {
            self.own(std::slice::from_ref(&name.to_string()))?;
        }
        self.create(name)
    }

    /// DROP, ALTER and GRANT of `names`: the session's role owns each one
    /// that exists (one that does not gets its own error from the handler).
    pub fn own(&self, names: &[String]) -> Result<()> {
        let Some(roles) = self.roles else {
            return Ok(());
        };
        let user = self.session.user();
        for name in names {
            let Some(kind) = self.registry.kind_of(name) else {
                continue;
            };
            if roles.with_acl(|acl| acl.owner_of(name) != user) {
                return Err(ServerError::InsufficientPrivilege {
                    message: format!("must be owner of {} {name}", kind.name()),
                });
            }
        }
        Ok(())
    }

    /// The job statements: changing a job takes ownership of its view or
    /// sink; looking at jobs takes nothing. A savepoint is dropped by a
    /// superuser only: it outlives its job, so it has no owner to ask.
    pub fn job(&self, job: &JobStatement) -> Result<()> {
        match job {
            JobStatement::ShowJobs
            | JobStatement::ShowEvents { .. }
            | JobStatement::ShowSavepoints { .. } => Ok(()),
            JobStatement::Alter { job, .. } | JobStatement::CreateSavepoint { job, .. } => {
                self.own(std::slice::from_ref(job))
            }
            JobStatement::DropSavepoint { .. } => match self.roles {
                None => Ok(()),
                Some(_) => Err(ServerError::InsufficientPrivilege {
                    message: "must be superuser to drop a savepoint".to_string(),
                }),
            },
        }
    }

    /// The session's role, whose privileges the checks ask about.
    pub fn user(&self) -> &str {
        self.session.user()
    }

    /// Is every check passed without asking (a superuser)?
    pub fn is_superuser(&self) -> bool {
        self.roles.is_none()
    }

    /// `privilege` on `name` (if it is one of Weir's objects: others, such
    /// as `pg_catalog`'s tables, are readable by all).
    fn require(&self, name: &str, privilege: TablePrivilege) -> Result<()> {
        let Some(roles) = self.roles else {
            return Ok(());
        };
        let Some(kind) = self.registry.kind_of(name) else {
            return Ok(());
        };
        if roles.with_acl(|acl| acl.holds(self.session.user(), name, privilege)) {
            Ok(())
        } else {
            Err(denied(kind, name))
        }
    }

    fn select_all(&self, names: &[String], except: Option<&String>) -> Result<()> {
        names
            .iter()
            .filter(|name| Some(*name) != except)
            .try_for_each(|name| self.require(name, TablePrivilege::Select))
    }
}

/// A `CREATE` that passed the check: the owner is recorded when the
/// statement succeeded and made the object (not when `IF NOT EXISTS` found
/// one already there).
pub struct Creating<'a> {
    registry: &'a Registry,
    session: &'a Session,
    name: String,
    existed: bool,
}

impl Creating<'_> {
    /// Record the owner if `result` made the object; `result` passes on.
    pub fn record(self, result: Result<Output>) -> Result<Output> {
        let output = result?;
        if !self.existed
            && self.registry.kind_of(&self.name).is_some()
            && let Some(auth) = self.session.auth()
        {
            // Under `trust` any name connects; an owner is a role that
            // exists, so a name without a role leaves the bootstrap user.
            let user = self.session.user();
            let owner = if auth.roles.get(user).is_some() {
                user
            } else {
                BOOTSTRAP_USER
            };
            let name = self.name.clone();
            // A stale entry of a dropped object of the same name (left by
            // a crash between the catalog's write and this one) goes too.
            auth.roles.change_acl(|acl| {
                acl.objects.insert(
                    name,
                    ObjectAcl {
                        owner: owner.to_string(),
                        grants: Default::default(),
                    },
                );
                Ok(())
            })?;
        }
        Ok(output)
    }
}

/// After a DROP (even a failed one: CASCADE may have dropped some), forget
/// the owners and grants of objects that no longer exist; `result` passes on.
pub fn forget_dropped(
    registry: &Registry,
    session: &Session,
    result: Result<Output>,
) -> Result<Output> {
    if let Some(auth) = session.auth() {
        let gone: Vec<String> = auth.roles.with_acl(|acl| {
            acl.objects
                .keys()
                .filter(|name| registry.kind_of(name).is_none())
                .cloned()
                .collect()
        });
        if !gone.is_empty() {
            auth.roles.change_acl(|acl| {
                for name in &gone {
                    acl.objects.remove(name);
                }
                Ok(())
            })?;
        }
    }
    result
}

/// Is `name` a table Weir owns (the only relations that take writes, and
/// so INSERT, UPDATE and DELETE privileges)?
pub fn writable(registry: &Registry, name: &str) -> bool {
    matches!(registry.write_target(name), WriteTarget::Owned(_))
}

/// The relations (tables, views, streams, materialized views) of the
/// catalog, each with whether it takes writes: what GRANT ON ALL TABLES
/// and the catalog views go over.
pub fn relations_of(registry: &Registry) -> Vec<(String, bool)> {
    registry
        .catalog()
        .entries
        .iter()
        .filter(|entry| !matches!(entry, CatalogEntry::Sink(_)))
        .map(|entry| {
            let name = entry.name().to_string();
            let writable = writable(registry, &name);
            (name, writable)
        })
        .collect()
}

/// `permission denied for table t`, as Postgres words it.
pub fn denied(kind: ObjectKind, name: &str) -> ServerError {
    ServerError::InsufficientPrivilege {
        message: format!("permission denied for {} {name}", kind.name()),
    }
}

/// Does a write read its own table's columns: a WHERE, a RETURNING, or
/// an UPDATE's SET expression that names a column? Postgres asks SELECT on
/// the columns read; Weir has no column privileges, so on the table. A
/// name inside a SET expression's subquery counts too (it may be the
/// target's, correlated): stricter than Postgres there, never looser.
fn reads_own_columns(statement: &Statement) -> bool {
    use datafusion::sql::sqlparser::ast::{Expr, visit_expressions};
    use std::ops::ControlFlow;
    let names_a_column = |expr: &Expr| {
        visit_expressions(expr, |e| match e {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    };
    match statement {
        Statement::Update(update) => {
            update.selection.is_some()
                || update.returning.is_some()
                || update.assignments.iter().any(|a| names_a_column(&a.value))
        }
        Statement::Delete(delete) => delete.selection.is_some() || delete.returning.is_some(),
        Statement::Insert(insert) => insert.returning.is_some(),
        _ => false,
    }
}

/// The relations `statement` names, normalized as the catalog's names are:
/// without CTE names, and without those of other schemas (`pg_catalog`,
/// `information_schema`: readable by every role, as in Postgres).
fn relations(statement: &Statement) -> Result<Vec<String>> {
    let wrapped = datafusion::sql::parser::Statement::Statement(Box::new(statement.clone()));
    let (tables, _ctes) = datafusion::sql::resolve::resolve_table_references(&wrapped, true)
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    Ok(tables
        .into_iter()
        .filter(|t| {
            t.schema()
                .is_none_or(|s| s == crate::datafusion_context::SCHEMA)
        })
        .map(|t| t.table().to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn reads(sql: &str) -> bool {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0);
        reads_own_columns(&statement)
    }

    #[test]
    fn writes_that_read_columns_are_those_that_need_select() {
        assert!(!reads("UPDATE t SET a = 1"));
        assert!(!reads("UPDATE t SET a = 1 + 2, b = 'x'"));
        assert!(!reads("DELETE FROM t"));
        assert!(!reads("INSERT INTO t VALUES (1)"));
        assert!(reads("UPDATE t SET a = a + 1"));
        assert!(reads("UPDATE t SET a = 1 WHERE b = 2"));
        assert!(reads("UPDATE t SET a = 1 RETURNING a"));
        assert!(reads(
            "UPDATE t SET a = (SELECT max(x) FROM u WHERE u.y = t.b)"
        ));
        assert!(reads("DELETE FROM t WHERE a = 3"));
        assert!(reads("DELETE FROM t RETURNING *"));
        assert!(reads("INSERT INTO t VALUES (1) RETURNING a"));
    }
}
