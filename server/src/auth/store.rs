//! The roles and their durable file, `<data dir>/roles.json`.
//!
//! Roles are kept apart from `catalog.json`: they are read before any
//! catalog object is restored (a client cannot log in before), they change
//! under a lock of their own, and the file is created readable by its owner
//! only. Writes are atomic (temporary file, fsync, rename, directory fsync),
//! as the catalog's are.
//!
//! The store is also the [`AuthSource`] pgwire's SCRAM exchange asks for a
//! user's verifier. An unknown user, or one that may not log in, is answered
//! with a random verifier, so the exchange runs to its end and fails the
//! same way as a wrong password does: one message for both, and no hint
//! about which names exist.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use parking_lot::RwLock;
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::PgWireResult;
use serde::{Deserialize, Serialize};

use super::BOOTSTRAP_USER;
use super::acl::Acl;
use super::verifier::Verifier;
use crate::config::Secret;
use crate::error::{Result, ServerError};

const FILE_NAME: &str = "roles.json";

/// The running server's roles, for the catalog views ([`Roles::publish`]).
static PUBLISHED: RwLock<std::sync::Weak<Roles>> = RwLock::new(std::sync::Weak::new());

/// One role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Its name (case as given, after identifier normalization).
    pub name: String,
    /// May do anything, including manage roles.
    pub superuser: bool,
    /// May connect.
    pub login: bool,
    /// Its password's verifier; `None`: it cannot log in with a password.
    pub verifier: Option<Verifier>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RolesFile {
    roles: Vec<Role>,
    /// Who owns each object and what was granted on it. Absent in files
    /// written before privileges existed: every object is then the
    /// bootstrap user's.
    #[serde(default)]
    privileges: Acl,
}

/// The roles of one data directory.
#[derive(Debug)]
pub struct Roles {
    path: PathBuf,
    roles: RwLock<BTreeMap<String, Role>>,
    /// Owners and grants: kept in this file, beside the roles they name,
    /// so that a role and its privileges change together.
    acl: RwLock<Acl>,
    /// Serializes changes, so two `CREATE ROLE`s cannot write the file in
    /// the wrong order. A `parking_lot::Mutex`: nothing awaits under it.
    write: parking_lot::Mutex<()>,
}

impl Roles {
    /// Load `<data_dir>/roles.json`, creating the bootstrap user `weir`
    /// (a superuser) if it is missing, and setting its password when one is
    /// configured and differs from the stored one.
    pub fn open(data_dir: &Path, bootstrap_password: Option<&Secret>) -> Result<Self> {
        let path = data_dir.join(FILE_NAME);
        let loaded: RolesFile = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ServerError::Config {
                message: format!("could not read roles file \"{}\": {e}", path.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RolesFile::default(),
            Err(e) => return Err(io_error(&path, "read", e)),
        };
        let roles = loaded
            .roles
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect::<BTreeMap<_, _>>();
        let store = Self {
            path,
            roles: RwLock::new(roles),
            acl: RwLock::new(loaded.privileges),
            write: parking_lot::Mutex::new(()),
        };
        let bootstrap = store.get(BOOTSTRAP_USER);
        let needs_write = match (&bootstrap, bootstrap_password) {
            (None, _) => true,
            (Some(role), Some(password)) => !role
                .verifier
                .as_ref()
                .is_some_and(|v| v.matches(password.expose())),
            (Some(_), None) => false,
        };
        if needs_write {
            let role = Role {
                name: BOOTSTRAP_USER.to_string(),
                superuser: true,
                login: true,
                verifier: bootstrap_password
                    .map(|p| Verifier::new(p.expose()))
                    .or_else(|| bootstrap.and_then(|b| b.verifier)),
            };
            store.change(|roles| {
                roles.insert(role.name.clone(), role);
                Ok(())
            })?;
        }
        Ok(store)
    }

    /// Make these the roles the catalog views read
    /// (`information_schema.role_table_grants`, `pg_class.relacl`): they
    /// are served by the DataFusion context, which is built before the
    /// roles are opened and is shared by every session, so they find the
    /// server's roles here. One server runs per process.
    pub fn publish(self: &std::sync::Arc<Self>) {
        *PUBLISHED.write() = std::sync::Arc::downgrade(self);
    }

    /// The roles [`Roles::publish`] made current, if a server runs.
    pub fn published() -> Option<std::sync::Arc<Self>> {
        PUBLISHED.read().upgrade()
    }

    /// The role named `name`.
    pub fn get(&self, name: &str) -> Option<Role> {
        self.roles.read().get(name).cloned()
    }

    /// Every role, by name.
    pub fn all(&self) -> Vec<Role> {
        self.roles.read().values().cloned().collect()
    }

    /// Does any role have a password? (SCRAM with none cannot let anyone in.)
    pub fn any_password(&self) -> bool {
        self.roles
            .read()
            .values()
            .any(|r| r.login && r.verifier.is_some())
    }

    /// Apply `edit` to a copy of the roles, write the copy durably, then
    /// make it the live set: a failed write changes nothing.
    pub fn change(
        &self,
        edit: impl FnOnce(&mut BTreeMap<String, Role>) -> Result<()>,
    ) -> Result<()> {
        self.change_all(|roles, _| edit(roles))
    }

    /// The owners and grants, as they are now.
    pub fn acl(&self) -> Acl {
        self.acl.read().clone()
    }

    /// Look at the owners and grants without copying them.
    pub fn with_acl<T>(&self, read: impl FnOnce(&Acl) -> T) -> T {
        read(&self.acl.read())
    }

    /// Apply `edit` to a copy of the owners and grants, durably, as
    /// [`Roles::change`] does for roles.
    pub fn change_acl(&self, edit: impl FnOnce(&mut Acl) -> Result<()>) -> Result<()> {
        self.change_all(|_, acl| edit(acl))
    }

    /// Change roles and privileges together (a role renamed takes its
    /// objects and grants with it), in one durable write.
    pub fn change_all(
        &self,
        edit: impl FnOnce(&mut BTreeMap<String, Role>, &mut Acl) -> Result<()>,
    ) -> Result<()> {
        let _write = self.write.lock();
        let mut roles = self.roles.read().clone();
        let mut acl = self.acl.read().clone();
        edit(&mut roles, &mut acl)?;
        self.save(&roles, &acl)?;
        *self.roles.write() = roles;
        *self.acl.write() = acl;
        Ok(())
    }

    fn save(&self, roles: &BTreeMap<String, Role>, acl: &Acl) -> Result<()> {
        let file = RolesFile {
            roles: roles.values().cloned().collect(),
            privileges: acl.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| ServerError::Internal {
            message: format!("could not encode roles: {e}"),
        })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("json.tmp");
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            // Verifiers are password-equivalent for SCRAM: owner only.
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut out = options
            .open(&tmp)
            .map_err(|e| io_error(&tmp, "create", e))?;
        out.write_all(&bytes)
            .and_then(|()| out.sync_all())
            .map_err(|e| io_error(&tmp, "write", e))?;
        drop(out);
        fs::rename(&tmp, &self.path).map_err(|e| io_error(&self.path, "rename into", e))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, "sync", e))?;
        Ok(())
    }
}

#[async_trait]
impl AuthSource for Roles {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let stored = login
            .user()
            .and_then(|user| self.get(user))
            .filter(|role| role.login)
            .and_then(|role| role.verifier)
            .and_then(|v| v.decoded());
        Ok(match stored {
            Some((salt, salted_password)) => Password::new(Some(salt), salted_password),
            // No such user, or no password: a verifier nobody knows the
            // password of, so the proof fails as a wrong password does.
            None => {
                let salt: [u8; 16] = rand::random();
                let salted: [u8; 32] = rand::random();
                Password::new(Some(salt.to_vec()), salted.to_vec())
            }
        })
    }
}

fn io_error(path: &Path, what: &str, err: std::io::Error) -> ServerError {
    ServerError::Io {
        message: format!("could not {what} \"{}\": {err}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_user_is_created_and_survives_a_reopen_without_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = Secret::from("pw1".to_string());
        let roles = Roles::open(dir.path(), Some(&secret)).expect("open");
        let weir = roles.get("weir").expect("weir");
        assert!(weir.superuser && weir.login);
        assert!(weir.verifier.as_ref().expect("verifier").matches("pw1"));
        drop(roles);
        let text = std::fs::read_to_string(dir.path().join("roles.json")).expect("file");
        assert!(!text.contains("pw1"), "{text}");
        let roles = Roles::open(dir.path(), None).expect("reopen");
        assert!(
            roles
                .get("weir")
                .expect("weir")
                .verifier
                .expect("kept")
                .matches("pw1")
        );
    }
}
