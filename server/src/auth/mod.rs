//! Who may connect: the roles Weir knows, their SCRAM verifiers, and the
//! startup handler that checks a client's password against them.
//!
//! ```text
//!   client ──Startup──> startup::WeirStartup ──(tls_required? plain: 28000)
//!                          │ trust: any user name, loopback only
//!                          │ scram-sha-256: pgwire's SCRAM exchange
//!                          v
//!                       store::Roles (AuthSource) ──> <data dir>/roles.json
//!                                                     (salt, iterations, SaltedPassword;
//!                                                      never the password)
//! ```
//!
//! - [`verifier`]: a password turned into what is stored, and checked.
//! - [`store`]: the roles and their durable file; the `AuthSource` pgwire's
//!   SCRAM asks for a user's verifier.
//! - [`startup`]: the per-connection startup handler (trust or SCRAM, TLS
//!   required or not).
//! - [`statements`]: `CREATE ROLE`, `ALTER ROLE`, `DROP ROLE`.
//! - [`acl`]: who owns each object and what was granted on it (kept in
//!   `roles.json` with the roles).
//! - [`privileges`]: the one check of what a statement needs, called from
//!   `dispatch.rs` for every statement kind.
//! - [`grant`]: `GRANT` and `REVOKE`.
//!
//! Design note: `docs/design/0009-security.md`.

pub mod acl;
pub mod grant;
pub mod privileges;
pub mod startup;
pub mod statements;
pub mod store;
pub mod verifier;

pub use store::{Role, Roles};

/// The first user, created with the data directory; a superuser.
pub const BOOTSTRAP_USER: &str = "weir";

/// How the server authenticates, and the roles it knows: shared by every
/// session.
#[derive(Debug)]
pub struct Auth {
    /// Trust or SCRAM.
    pub method: crate::config::AuthMethod,
    /// The roles.
    pub roles: std::sync::Arc<Roles>,
}

impl Auth {
    /// May `user` do anything? Under `trust` anyone connected may (the
    /// listeners are loopback only); under passwords, a SUPERUSER role.
    pub fn is_superuser(&self, user: &str) -> bool {
        match self.method {
            crate::config::AuthMethod::Trust => true,
            crate::config::AuthMethod::ScramSha256 => {
                self.roles.get(user).is_some_and(|r| r.superuser)
            }
        }
    }
}
