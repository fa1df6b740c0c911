//! `CREATE ROLE`, `ALTER ROLE`, `DROP ROLE`, as Postgres spells them.
//!
//! A password given here is turned into a SCRAM verifier at once and is
//! never stored, logged or echoed: no log line records a statement's text,
//! and errors about a role statement never quote its options.
//!
//! Managing roles takes a superuser; any user may change its own password.

use datafusion::sql::sqlparser::ast::{
    AlterRoleOperation, CreateRole, Expr, ObjectType, Password, RoleOption, Statement, Value,
};
use tracing::info;
use weir_planner::normalize::{normalize_ident, object_name};

use super::verifier::Verifier;
use super::{BOOTSTRAP_USER, Role};
use crate::error::{Result, ServerError};
use crate::output::Output;
use crate::session::Session;

/// Run a role statement for `session`.
pub fn execute(session: &Session, statement: Statement) -> Result<Output> {
    let Some(auth) = session.auth() else {
        return Err(ServerError::Internal {
            message: "a role statement ran outside a connection".to_string(),
        });
    };
    let roles = &auth.roles;
    match statement {
        Statement::CreateRole(create) => {
            require_superuser(session, "create role")?;
            let new = new_roles(&create)?;
            for role in &new {
                reserved(&role.name)?;
            }
            let if_not_exists = create.if_not_exists;
            roles.change(|all| {
                for role in new {
                    if all.contains_key(&role.name) {
                        if if_not_exists {
                            continue;
                        }
                        return Err(ServerError::DuplicateObject {
                            message: format!("role \"{}\" already exists", role.name),
                        });
                    }
                    info!(role = %role.name, "role created");
                    all.insert(role.name.clone(), role);
                }
                Ok(())
            })?;
            Ok(Output::command("CREATE ROLE"))
        }
        Statement::AlterRole { name, operation } => {
            let name = normalize_ident(&name);
            let own = name == session.user();
            roles.change_all(|all, acl| {
                let Some(role) = all.get_mut(&name) else {
                    return Err(undefined(&name));
                };
                match operation {
                    AlterRoleOperation::WithOptions { options } => {
                        let only_password =
                            options.iter().all(|o| matches!(o, RoleOption::Password(_)));
                        if !(own && only_password) {
                            require_superuser(session, "alter role")?;
                        }
                        for option in &options {
                            apply(role, option)?;
                        }
                    }
                    AlterRoleOperation::RenameRole { role_name } => {
                        require_superuser(session, "rename role")?;
                        let new_name = normalize_ident(&role_name);
                        if name == BOOTSTRAP_USER || own {
                            return Err(ServerError::ObjectInUse {
                                message: format!("role \"{name}\" cannot be renamed now"),
                            });
                        }
                        let mut renamed = all.remove(&name).expect("looked up above");
                        if all.contains_key(&new_name) {
                            return Err(ServerError::DuplicateObject {
                                message: format!("role \"{new_name}\" already exists"),
                            });
                        }
                        reserved(&new_name)?;
                        renamed.name = new_name.clone();
                        acl.rename_role(&name, &new_name);
                        all.insert(new_name, renamed);
                    }
                    other => {
                        return Err(ServerError::FeatureNotSupported {
                            message: format!("ALTER ROLE ... {}", operation_kind(&other)),
                            hint: None,
                        });
                    }
                }
                info!(role = %name, "role altered");
                Ok(())
            })?;
            Ok(Output::command("ALTER ROLE"))
        }
        Statement::Drop {
            object_type: ObjectType::Role | ObjectType::User,
            names,
            if_exists,
            ..
        } => {
            require_superuser(session, "drop role")?;
            roles.change_all(|all, acl| {
                for name in names.iter().map(object_name) {
                    if name == BOOTSTRAP_USER {
                        return Err(ServerError::ObjectInUse {
                            message: format!(
                                "cannot drop role {name} because it is required by the database system"
                            ),
                        });
                    }
                    if name == session.user() {
                        return Err(ServerError::ObjectInUse {
                            message: "current user cannot be dropped".to_string(),
                        });
                    }
                    let dependents = acl.dependents_of(&name);
                    if !dependents.is_empty() && all.contains_key(&name) {
                        // As Postgres: owned objects and grants are given
                        // away or revoked first, never dropped with it.
                        return Err(ServerError::DependentObjects {
                            message: format!(
                                "role \"{name}\" cannot be dropped because some objects depend on it"
                            ),
                            detail: Some(dependents.join("\n")),
                            hint: None,
                        });
                    }
                    if all.remove(&name).is_none() && !if_exists {
                        return Err(undefined(&name));
                    }
                    info!(role = %name, "role dropped");
                }
                Ok(())
            })?;
            Ok(Output::command("DROP ROLE"))
        }
        other => Err(ServerError::Internal {
            message: format!("not a role statement: {}", statement_name(&other)),
        }),
    }
}

fn new_roles(create: &CreateRole) -> Result<Vec<Role>> {
    let unsupported = create.connection_limit.is_some()
        || create.valid_until.is_some()
        || !create.in_role.is_empty()
        || !create.in_group.is_empty()
        || !create.role.is_empty()
        || !create.user.is_empty()
        || !create.admin.is_empty()
        || create.authorization_owner.is_some()
        || [
            create.create_db,
            create.create_role,
            create.replication,
            create.bypassrls,
        ]
        .contains(&Some(true));
    if unsupported {
        return Err(ServerError::FeatureNotSupported {
            message: "CREATE ROLE takes LOGIN, PASSWORD and SUPERUSER in Weir; other role options are not supported".to_string(),
            hint: None,
        });
    }
    let verifier = match &create.password {
        Some(password) => password_verifier(password)?,
        None => None,
    };
    Ok(create
        .names
        .iter()
        .map(|name| Role {
            name: object_name(name),
            superuser: create.superuser.unwrap_or(false),
            // As in Postgres, CREATE ROLE defaults to NOLOGIN.
            login: create.login.unwrap_or(false),
            verifier: verifier.clone(),
        })
        .collect())
}

fn apply(role: &mut Role, option: &RoleOption) -> Result<()> {
    match option {
        RoleOption::Password(password) => role.verifier = password_verifier(password)?,
        RoleOption::Login(login) => role.login = *login,
        RoleOption::SuperUser(superuser) => {
            if role.name == BOOTSTRAP_USER && !superuser {
                return Err(ServerError::ObjectInUse {
                    message: format!("role \"{BOOTSTRAP_USER}\" must stay a superuser"),
                });
            }
            role.superuser = *superuser;
        }
        RoleOption::Inherit(_) => {}
        _ => {
            return Err(ServerError::FeatureNotSupported {
                message: "ALTER ROLE takes LOGIN, PASSWORD and SUPERUSER in Weir; other role options are not supported".to_string(),
                hint: None,
            });
        }
    }
    Ok(())
}

/// The verifier for `PASSWORD '...'`; `PASSWORD NULL` removes it.
fn password_verifier(password: &Password) -> Result<Option<Verifier>> {
    match password {
        Password::NullPassword => Ok(None),
        Password::Password(Expr::Value(value)) => match &value.value {
            Value::SingleQuotedString(text) if !text.is_empty() => Ok(Some(Verifier::new(text))),
            Value::SingleQuotedString(_) => Err(ServerError::InvalidParameterValue {
                message: "empty password".to_string(),
                hint: Some("write PASSWORD NULL for no password".to_string()),
            }),
            Value::Null => Ok(None),
            // Never echo what was written: it may be the password.
            _ => Err(not_a_literal()),
        },
        Password::Password(_) => Err(not_a_literal()),
    }
}

fn not_a_literal() -> ServerError {
    ServerError::InvalidParameterValue {
        message: "a password must be a string literal".to_string(),
        hint: Some("write PASSWORD 'secret'".to_string()),
    }
}

fn require_superuser(session: &Session, what: &str) -> Result<()> {
    if session.is_superuser() {
        Ok(())
    } else {
        Err(ServerError::InsufficientPrivilege {
            message: format!("permission denied to {what}"),
        })
    }
}

/// `public` names every role in a GRANT, so no role may take it, as in
/// Postgres.
fn reserved(name: &str) -> Result<()> {
    if name == "public" || name.is_empty() {
        Err(ServerError::InvalidParameterValue {
            message: format!("role name \"{name}\" is reserved"),
            hint: None,
        })
    } else {
        Ok(())
    }
}

fn undefined(name: &str) -> ServerError {
    ServerError::UndefinedObject {
        message: format!("role \"{name}\" does not exist"),
    }
}

fn operation_kind(operation: &AlterRoleOperation) -> &'static str {
    match operation {
        AlterRoleOperation::Set { .. } => "SET",
        AlterRoleOperation::Reset { .. } => "RESET",
        AlterRoleOperation::AddMember { .. } => "ADD MEMBER",
        AlterRoleOperation::DropMember { .. } => "DROP MEMBER",
        AlterRoleOperation::RenameRole { .. } => "RENAME",
        AlterRoleOperation::WithOptions { .. } => "WITH",
    }
}

fn statement_name(statement: &Statement) -> String {
    // The first word only: a role statement's text may hold a password.
    statement
        .to_string()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}
