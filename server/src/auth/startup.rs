//! The startup handler: one per connection, since pgwire's SASL handler
//! keeps the exchange's state in itself.
//!
//! It refuses a plain connection when TLS is required (28000), then lets
//! anyone in (`trust`) or runs pgwire's SCRAM-SHA-256 exchange against the
//! [`Roles`]. A failed exchange, for a wrong password or an unknown user
//! alike, ends with 28P01 and Postgres's one message for both.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::{DefaultServerParameterProvider, ServerParameterProvider, StartupHandler};
use pgwire::api::{
    ClientInfo, ConnectionManager, METADATA_APPLICATION_NAME, METADATA_USER, PgWireConnectionState,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::{Auth, Roles};
use crate::config::AuthMethod;
use crate::pg::activity::{Activity, Backend};
use crate::session::{Login, Session};

/// What every connection's startup handler shares.
pub struct StartupSettings {
    /// Trust or SCRAM, and the roles passwords are checked against.
    pub auth: Arc<Auth>,
    /// Refuse connections without TLS.
    pub tls_required: bool,
    /// Registers each connection for CancelRequests.
    pub manager: Arc<ConnectionManager>,
    /// Hands out each connection's backend pid and secret key.
    pub pids: Arc<RandomPidSecretKeyGenerator>,
    /// The live backends and the limits.
    pub activity: Arc<Activity>,
}

/// One connection's startup handler.
pub struct WeirStartup {
    settings: Arc<StartupSettings>,
    inner: Inner,
}

enum Inner {
    Trust(Trust),
    Scram(Box<SASLAuthStartupHandler<Parameters>>),
}

impl WeirStartup {
    /// A handler for a new connection.
    pub fn new(settings: Arc<StartupSettings>) -> Self {
        let inner = match settings.auth.method {
            AuthMethod::Trust => Inner::Trust(Trust {
                manager: settings.manager.clone(),
                pids: settings.pids.clone(),
            }),
            AuthMethod::ScramSha256 => {
                let scram = ScramAuth::new(settings.auth.roles.clone());
                Inner::Scram(Box::new(
                    SASLAuthStartupHandler::new(Arc::new(Parameters {
                        roles: settings.auth.roles.clone(),
                    }))
                    .with_scram(scram)
                    .with_connection_manager(settings.manager.clone())
                    .with_pid_secret_key_generator(settings.pids.clone()),
                ))
            }
        };
        Self { settings, inner }
    }
}

#[async_trait]
impl StartupHandler for WeirStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let startup = matches!(message, PgWireFrontendMessage::Startup(_));
        if startup && self.settings.activity.over_capacity() {
            return Err(fatal(
                "53300",
                "sorry, too many clients already".to_string(),
            ));
        }
        if startup && self.settings.tls_required && !client.is_secure() {
            return Err(fatal(
                "28000",
                "connection without TLS refused: this server requires TLS (connect with sslmode=require or stricter)"
                    .to_string(),
            ));
        }
        match &self.inner {
            Inner::Trust(trust) => trust.on_startup(client, message).await?,
            Inner::Scram(scram) => match scram.on_startup(client, message).await {
                Ok(()) => {}
                // Postgres's words, for a wrong password and an unknown user
                // alike. The name is the startup message's: clients leave
                // the one in the SCRAM message empty.
                Err(PgWireError::InvalidPassword(_)) => {
                    let user = client
                        .metadata()
                        .get(METADATA_USER)
                        .cloned()
                        .unwrap_or_default();
                    return Err(fatal(
                        "28P01",
                        format!("password authentication failed for user \"{user}\""),
                    ));
                }
                Err(other) => return Err(other),
            },
        }
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            // Logged in: the session knows who, from here on.
            let user = client
                .metadata()
                .get(METADATA_USER)
                .cloned()
                .unwrap_or_default();
            let (pid, secret) = client.pid_and_secret_key();
            let (backend, guard) = self.settings.activity.register(Backend::new(
                pid,
                secret,
                user.clone(),
                client
                    .metadata()
                    .get(METADATA_APPLICATION_NAME)
                    .cloned()
                    .unwrap_or_default(),
                client.socket_addr(),
            ));
            let session = Session::for_login(Login {
                user,
                pid,
                auth: self.settings.auth.clone(),
                backend,
            });
            // The server's statement_timeout applies with no override:
            // `Session::get` falls back to it, so RESET returns to it.
            client.session_extensions().insert(session);
            // Unregistered when the connection (and its extensions) ends.
            client.session_extensions().insert(guard);
        }
        Ok(())
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        message,
    )))
}

/// `trust`: pgwire's no-authentication startup, with Weir's connection
/// manager (for CancelRequests) and pid generator.
struct Trust {
    manager: Arc<ConnectionManager>,
    pids: Arc<RandomPidSecretKeyGenerator>,
}

impl NoopStartupHandler for Trust {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.manager.clone())
    }

    fn pid_secret_key_generator(&self) -> &dyn PidSecretKeyGenerator {
        self.pids.as_ref()
    }
}

/// The parameters sent after authentication: pgwire's defaults, with
/// `is_superuser` telling the truth about the user.
struct Parameters {
    roles: Arc<Roles>,
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut parameters = DefaultServerParameterProvider::default().server_parameters(client)?;
        let superuser = client
            .metadata()
            .get(METADATA_USER)
            .and_then(|user| self.roles.get(user))
            .is_some_and(|role| role.superuser);
        parameters.insert(
            "is_superuser".to_string(),
            if superuser { "on" } else { "off" }.to_string(),
        );
        Some(parameters)
    }
}
