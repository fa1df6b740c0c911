//! `GRANT` and `REVOKE`, as Postgres spells them: privileges on relations
//! (`SELECT` on tables, views, streams and materialized views; `INSERT`,
//! `UPDATE`, `DELETE` on tables Weir owns) and `CREATE ON SCHEMA public`.
//!
//! The owner of an object (or a superuser) grants on it; only a superuser
//! grants on the schema. Grants are written to `roles.json` before the
//! statement answers, so they survive a restart.

use std::collections::BTreeSet;

use tracing::info;
use weir_planner::statement::{Grant, GrantTarget, Grantee, Privilege};

use super::acl::{PUBLIC, TablePrivilege};
use super::privileges::{self, Checker};
use crate::datafusion_context::SCHEMA;
use crate::error::{Result, ServerError};
use crate::output::Output;
use crate::registry::Registry;
use crate::session::Session;

/// Run a `GRANT` or `REVOKE` for `session`.
pub fn execute(registry: &Registry, session: &Session, grant: Grant) -> Result<Output> {
    let may = Checker::new(registry, session);
    let Some(auth) = session.auth() else {
        return Err(ServerError::Internal {
            message: "a GRANT ran outside a connection".to_string(),
        });
    };
    let tag = if grant.revoke { "REVOKE" } else { "GRANT" };
    let grantees = grantee_keys(&grant.grantees, |name| auth.roles.get(name).is_some())?;
    match &grant.target {
        GrantTarget::Schemas(schemas) => {
            for schema in schemas {
                check_schema(schema)?;
            }
            let create = match &grant.privileges {
                None => true,
                Some(privileges) => {
                    if let Some(p) = privileges
                        .iter()
                        .find(|p| !matches!(p, Privilege::Create | Privilege::Usage))
                    {
                        return Err(invalid_privilege(*p, "schema"));
                    }
                    privileges.contains(&Privilege::Create)
                }
            };
            if !may.is_superuser() {
                return Err(ServerError::InsufficientPrivilege {
                    message: "permission denied for schema public".to_string(),
                });
            }
            if create {
                auth.roles.change_acl(|acl| {
                    for grantee in &grantees {
                        if grant.revoke {
                            acl.create.remove(grantee);
                        } else {
                            acl.create.insert(grantee.clone());
                        }
                    }
                    Ok(())
                })?;
            }
        }
        GrantTarget::Relations(_) | GrantTarget::AllInSchemas(_) => {
            let objects = objects(registry, &grant.target)?;
            may.own(&objects.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>())?;
            let mut changes = Vec::new();
            for (name, writable) in objects {
                let privileges = table_privileges(registry, &name, writable, &grant.privileges)?;
                changes.push((name, privileges));
            }
            auth.roles.change_acl(|acl| {
                for (name, privileges) in &changes {
                    let entry = acl.entry(name);
                    for grantee in &grantees {
                        let held = entry.grants.entry(grantee.clone()).or_default();
                        if grant.revoke {
                            held.retain(|p| !privileges.contains(p));
                        } else {
                            held.extend(privileges.iter().copied());
                        }
                        if held.is_empty() {
                            entry.grants.remove(grantee);
                        }
                    }
                }
                Ok(())
            })?;
        }
    }
    info!(user = %session.user(), statement = tag, "privileges changed");
    Ok(Output::command(tag))
}

/// The grantees as the ACL keys them; each named role must exist.
fn grantee_keys(grantees: &[Grantee], exists: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    grantees
        .iter()
        .map(|grantee| match grantee {
            Grantee::Public => Ok(PUBLIC.to_string()),
            Grantee::Role(name) if exists(name) => Ok(name.clone()),
            Grantee::Role(name) => Err(ServerError::UndefinedObject {
                message: format!("role \"{name}\" does not exist"),
            }),
        })
        .collect()
}

/// The relations a GRANT names, each with whether it takes writes.
fn objects(registry: &Registry, target: &GrantTarget) -> Result<Vec<(String, bool)>> {
    match target {
        GrantTarget::Relations(names) => names
            .iter()
            .map(|name| match registry.kind_of(name) {
                Some(weir_planner::statement::ObjectKind::Sink) | None => {
                    Err(ServerError::UndefinedTable {
                        kind: "relation",
                        name: name.clone(),
                        position: None,
                    })
                }
                Some(_) => Ok((name.clone(), privileges::writable(registry, name))),
            })
            .collect(),
        GrantTarget::AllInSchemas(schemas) => {
            for schema in schemas {
                check_schema(schema)?;
            }
            Ok(privileges::relations_of(registry))
        }
        GrantTarget::Schemas(_) => Ok(Vec::new()),
    }
}

/// The privileges a GRANT names on `name`, checked against what it can
/// carry: `ALL` is every one it can.
fn table_privileges(
    registry: &Registry,
    name: &str,
    writable: bool,
    named: &Option<Vec<Privilege>>,
) -> Result<BTreeSet<TablePrivilege>> {
    let applicable = TablePrivilege::applicable(writable);
    let Some(named) = named else {
        return Ok(applicable.iter().copied().collect());
    };
    named
        .iter()
        .map(|p| match TablePrivilege::from_granted(*p) {
            Some(privilege) if applicable.contains(&privilege) => Ok(privilege),
            _ => {
                let kind = registry
                    .kind_of(name)
                    .map_or("relation", |kind| kind.name());
                Err(invalid_privilege(*p, kind))
            }
        })
        .collect()
}

fn check_schema(schema: &str) -> Result<()> {
    if schema == SCHEMA {
        Ok(())
    } else {
        Err(ServerError::UndefinedObject {
            message: format!("schema \"{schema}\" does not exist"),
        })
    }
}

/// `invalid privilege type INSERT for stream`: as Postgres says of a
/// sequence; only tables Weir owns take writes.
fn invalid_privilege(privilege: Privilege, kind: &str) -> ServerError {
    ServerError::WrongObjectType {
        message: format!("invalid privilege type {} for {kind}", privilege.keyword()),
    }
}
