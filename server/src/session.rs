//! Per-connection state: who is logged in (user, backend pid), the
//! session's settings (`SET` / `SHOW`), its open cursors, its transaction
//! block (`BEGIN` .. `COMMIT` / `ROLLBACK`, and the aborted state after a
//! failed statement in one), and its id.
//!
//! Settings are the ones Postgres clients ask for or set on connect; Weir's
//! answers are those of a Postgres 16 server in UTC with ISO dates, which is
//! what drivers and BI tools expect.

pub mod gate;

use std::collections::BTreeMap;

use parking_lot::Mutex;

use weir_connectors::table_store::txn::SharedTransaction;

use crate::error::{Result, ServerError};
use crate::output::{Notice, Output};

/// (name, default value, reported to the client in ParameterStatus on change, description)
const SETTINGS: &[(&str, &str, bool, &str)] = &[
    ("application_name", "", true, "Sets the application name"),
    (
        "client_encoding",
        "UTF8",
        true,
        "Sets the client's character set encoding",
    ),
    (
        "client_min_messages",
        "notice",
        false,
        "Sets the message levels sent to the client",
    ),
    (
        "datestyle",
        "ISO, MDY",
        true,
        "Sets the display format for date and time values",
    ),
    (
        "default_transaction_isolation",
        "read committed",
        false,
        "Sets the transaction isolation level of each new transaction",
    ),
    (
        "default_transaction_read_only",
        "off",
        true,
        "Sets the default read-only status of new transactions",
    ),
    (
        "extra_float_digits",
        "1",
        false,
        "Sets the number of digits displayed for floating-point values",
    ),
    (
        "idle_in_transaction_session_timeout",
        "0",
        false,
        "Sets the maximum allowed idle time between queries, when in a transaction",
    ),
    (
        "integer_datetimes",
        "on",
        true,
        "Shows whether datetimes are integer based",
    ),
    (
        "intervalstyle",
        "postgres",
        true,
        "Sets the display format for interval values",
    ),
    (
        "is_superuser",
        "on",
        true,
        "Shows whether the current user is a superuser",
    ),
    ("lc_collate", "C", false, "Shows the collation order locale"),
    (
        "lc_ctype",
        "C",
        false,
        "Shows the character classification and case conversion locale",
    ),
    (
        "lc_messages",
        "C",
        false,
        "Sets the language in which messages are displayed",
    ),
    (
        "lc_monetary",
        "C",
        false,
        "Sets the locale for formatting monetary amounts",
    ),
    (
        "lc_numeric",
        "C",
        false,
        "Sets the locale for formatting numbers",
    ),
    (
        "lock_timeout",
        "0",
        false,
        "Sets the maximum allowed duration of any wait for a lock",
    ),
    (
        "max_identifier_length",
        "63",
        false,
        "Shows the maximum identifier length",
    ),
    // pgjdbc reads it (from pg_settings) before describing foreign keys.
    (
        "max_index_keys",
        "32",
        false,
        "Shows the maximum number of index keys",
    ),
    // Its default is the server's (`query_memory_limit` in the config):
    // see `Session::get`.
    (
        "query_memory_limit",
        "0",
        false,
        "Sets the maximum memory one query may use before it spills or fails",
    ),
    (
        "search_path",
        "\"$user\", public",
        true,
        "Sets the schema search order for names that are not schema-qualified",
    ),
    (
        "server_encoding",
        "UTF8",
        true,
        "Shows the server (database) character set encoding",
    ),
    (
        "server_version",
        crate::PG_SERVER_VERSION,
        true,
        "Shows the server version",
    ),
    (
        "server_version_num",
        crate::PG_SERVER_VERSION_NUM,
        false,
        "Shows the server version as an integer",
    ),
    (
        "standard_conforming_strings",
        "on",
        true,
        "Causes '...' strings to treat backslashes literally",
    ),
    (
        "statement_timeout",
        "0",
        false,
        "Sets the maximum allowed duration of any statement",
    ),
    // What a SUBSCRIBE whose client stops reading does (design 0009):
    // `disconnect` (53200 once 4,096 batches behind) or `block` (the view's
    // job waits for it). Its default is the server's
    // (`subscribe_slow_client` in the config): see `Session::get`.
    (
        "subscribe_slow_client",
        "disconnect",
        false,
        "Sets what happens to a SUBSCRIBE client that stops reading: disconnect or block",
    ),
    (
        "timezone",
        "UTC",
        true,
        "Sets the time zone for displaying and interpreting time stamps",
    ),
    (
        "transaction_isolation",
        "read committed",
        false,
        "Sets the current transaction's isolation level",
    ),
    (
        "transaction_read_only",
        "off",
        false,
        "Sets the current transaction's read-only status",
    ),
    (
        "weir_version",
        env!("CARGO_PKG_VERSION"),
        false,
        "Shows the Weir version",
    ),
];

/// Settings that cannot be changed with `SET`.
const READ_ONLY: &[&str] = &[
    "server_version",
    "server_version_num",
    "server_encoding",
    "integer_datetimes",
    "max_identifier_length",
    "max_index_keys",
    "lc_collate",
    "lc_ctype",
    "is_superuser",
    "weir_version",
    "session_authorization",
];

/// One connection's session.
#[derive(Debug)]
pub struct Session {
    /// Names the session in the log (each statement's span carries it).
    id: u64,
    overrides: Mutex<BTreeMap<String, String>>,
    /// The transaction block the session is in, if any.
    block: Mutex<Block>,
    /// Open cursors (`DECLARE ... CURSOR FOR SUBSCRIBE`).
    cursors: crate::cursors::Cursors,
    /// Who is connected; `None` for a session with no connection (defaults
    /// for catalog tables).
    login: Option<Login>,
}

/// Who a connection logged in as, and how its privileges are decided.
#[derive(Debug, Clone)]
pub struct Login {
    /// The user name the client authenticated as.
    pub user: String,
    /// The connection's backend pid (`pg_backend_pid()`, CancelRequest).
    pub pid: i32,
    /// How the server authenticates, and its roles.
    pub auth: std::sync::Arc<crate::auth::Auth>,
    /// The connection's backend (cancel, `pg_stat_activity`).
    pub backend: std::sync::Arc<crate::pg::activity::Backend>,
}

/// Where a session is with respect to transaction blocks.
#[derive(Debug)]
enum Block {
    /// Outside a block: each statement is a transaction of its own.
    Idle,
    /// Inside `BEGIN` ..: statements run in this transaction.
    Open(SharedTransaction),
    /// A statement in the block failed: its transaction was rolled back,
    /// and statements other than COMMIT / ROLLBACK are refused (25P02)
    /// until one ends the block, as in Postgres.
    Failed,
}

/// A change a client should hear about (a ParameterStatus message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedChange {
    /// The parameter's name as Postgres reports it (`TimeZone`, `DateStyle`).
    pub name: String,
    /// Its new value.
    pub value: String,
}

/// The next session's id.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Default for Session {
    fn default() -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            overrides: Mutex::default(),
            block: Mutex::new(Block::Idle),
            cursors: crate::cursors::Cursors::default(),
            login: None,
        }
    }
}

impl Session {
    /// A session with every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// The session of a connection that logged in as `login`.
    pub fn for_login(login: Login) -> Self {
        Self {
            login: Some(login),
            ..Self::default()
        }
    }

    /// The connected user (`current_user`, `session_user`); `weir` for a
    /// session with no connection.
    pub fn user(&self) -> &str {
        self.login
            .as_ref()
            .map_or(crate::auth::BOOTSTRAP_USER, |l| l.user.as_str())
    }

    /// The connection's backend pid (0 for a session with no connection).
    pub fn pid(&self) -> i32 {
        self.login.as_ref().map_or(0, |l| l.pid)
    }

    /// May this session do anything? Under `trust` every session may (any
    /// user name connects, from loopback only); under passwords, a role
    /// marked SUPERUSER.
    pub fn is_superuser(&self) -> bool {
        match &self.login {
            None => true,
            Some(login) => login.auth.is_superuser(&login.user),
        }
    }

    /// A statement (whose text is `query`) starts: it stops with 57014 when
    /// cancelled or past `statement_timeout`. `None` for a session with no
    /// connection.
    pub fn begin(&self, query: &str) -> Option<crate::pg::activity::Running> {
        let login = self.login.as_ref()?;
        let timeout = self
            .get("statement_timeout")
            .ok()
            .and_then(|t| crate::pg::activity::parse_timeout(&t));
        Some(login.backend.begin(query, timeout))
    }

    /// The gate of the statement that [`Session::begin`] started last
    /// (`None` for a session with no connection): read on the connection's
    /// task before the statement moves to a worker, which asks it before
    /// committing (see [`gate`]).
    pub fn statement_gate(&self) -> Option<std::sync::Arc<gate::StatementGate>> {
        self.login.as_ref().map(|l| l.backend.statement_gate())
    }

    /// Does a `SUBSCRIBE` of this session hold its view's job back when
    /// the client stops reading (`subscribe_slow_client = 'block'`)?
    pub fn subscribe_blocks(&self) -> bool {
        self.get("subscribe_slow_client")
            .is_ok_and(|policy| policy == "block")
    }

    /// The server's roles (`None` for a session with no connection).
    pub fn auth(&self) -> Option<&crate::auth::Auth> {
        self.login.as_ref().map(|l| l.auth.as_ref())
    }

    /// The session's id, unique in this process: it names the session in
    /// the log.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The connection's open cursors.
    pub fn cursors(&self) -> &crate::cursors::Cursors {
        &self.cursors
    }

    /// The transaction of the open block; `None` outside one (each
    /// statement is then a transaction of its own).
    pub fn transaction(&self) -> Option<SharedTransaction> {
        match &*self.block.lock() {
            Block::Open(txn) => Some(txn.clone()),
            Block::Idle | Block::Failed => None,
        }
    }

    /// 25P02 when the block is aborted: only COMMIT and ROLLBACK are taken.
    pub fn refuse_if_aborted(&self) -> Result<()> {
        match &*self.block.lock() {
            Block::Failed => Err(ServerError::InFailedTransaction),
            Block::Idle | Block::Open(_) => Ok(()),
        }
    }

    /// A statement failed: inside a block, its transaction is rolled back
    /// now (dropping the last handle does it; a COPY's handle goes with the
    /// COPY) and the block is aborted.
    pub fn statement_failed(&self) {
        let mut block = self.block.lock();
        if matches!(*block, Block::Open(_)) {
            *block = Block::Failed;
        }
    }

    /// `BEGIN` / `COMMIT` / `ROLLBACK`, as Postgres answers them.
    pub async fn transaction_control(
        &self,
        op: weir_planner::statement::TransactionOp,
    ) -> Result<Output> {
        use weir_planner::statement::TransactionOp;
        // Postgres's codes: 25001 active_sql_transaction, 25P01
        // no_active_sql_transaction.
        let warned = |code: &'static str, warning: &str, output: Output| {
            output.after(Notice {
                code,
                ..Notice::warning(warning)
            })
        };
        // Taken out of the lock: COMMIT awaits the log.
        let previous = std::mem::replace(&mut *self.block.lock(), Block::Idle);
        match (op, previous) {
            (TransactionOp::Begin, Block::Idle) => {
                *self.block.lock() = Block::Open(SharedTransaction::new());
                Ok(Output::TransactionStart)
            }
            (TransactionOp::Begin, open @ Block::Open(_)) => {
                *self.block.lock() = open;
                Ok(warned(
                    "25001",
                    "there is already a transaction in progress",
                    Output::TransactionStart,
                ))
            }
            (TransactionOp::Begin, Block::Failed) => {
                *self.block.lock() = Block::Failed;
                Err(ServerError::InFailedTransaction)
            }
            (TransactionOp::Commit, Block::Open(txn)) => {
                txn.commit().await?;
                Ok(Output::TransactionEnd("COMMIT"))
            }
            // COMMIT of an aborted block rolls back, and says so.
            (TransactionOp::Commit | TransactionOp::Rollback, Block::Failed) => {
                Ok(Output::TransactionEnd("ROLLBACK"))
            }
            (TransactionOp::Rollback, Block::Open(txn)) => {
                txn.rollback().await;
                Ok(Output::TransactionEnd("ROLLBACK"))
            }
            (TransactionOp::Commit, Block::Idle) => Ok(warned(
                "25P01",
                "there is no transaction in progress",
                Output::TransactionEnd("COMMIT"),
            )),
            (TransactionOp::Rollback, Block::Idle) => Ok(warned(
                "25P01",
                "there is no transaction in progress",
                Output::TransactionEnd("ROLLBACK"),
            )),
        }
    }

    /// `SET name = value`; with `value` `None` (`SET name TO DEFAULT`,
    /// `RESET name`), back to the server's value: its config's where it has
    /// one (`statement_timeout`, `query_memory_limit`,
    /// `subscribe_slow_client`), else Postgres's built-in default.
    pub fn set(&self, name: &str, value: Option<String>) -> Result<Option<ReportedChange>> {
        let name = canonical_name(name);
        let known = SETTINGS.iter().any(|(n, ..)| *n == name);
        // Postgres accepts any "prefix.name" as a custom setting.
        if !known && !name.contains('.') {
            return Err(unrecognized(&name));
        }
        if READ_ONLY.contains(&name.as_str()) {
            return Err(ServerError::CantChangeParameter { name });
        }
        match value {
            Some(value) => {
                let value = normalize_value(&name, value)?;
                self.overrides.lock().insert(name.clone(), value);
            }
            None if known => {
                self.overrides.lock().remove(&name);
            }
            // A custom setting stays defined once set, empty after a
            // reset, as in Postgres.
            None => {
                self.overrides.lock().insert(name.clone(), String::new());
            }
        }
        Ok(self.reported(&name))
    }

    /// `RESET ALL`: every setting this session changed goes back to the
    /// server's value. Returns the changes the client must hear about.
    pub fn reset_all(&self) -> Vec<ReportedChange> {
        let changed = {
            let mut overrides = self.overrides.lock();
            let changed: Vec<String> = overrides.keys().cloned().collect();
            // Custom settings stay defined, empty (see `set`).
            overrides.retain(|name, value| {
                value.clear();
                name.contains('.')
            });
            changed
        };
        changed
            .iter()
            .filter_map(|name| self.reported(name))
            .collect()
    }

    /// The ParameterStatus a change of `name` sends, for the settings
    /// Postgres reports to its clients.
    fn reported(&self, name: &str) -> Option<ReportedChange> {
        let reported = SETTINGS.iter().any(|(n, _, r, _)| *n == name && *r);
        reported.then(|| ReportedChange {
            name: reported_name(name).to_string(),
            value: self.get(name).unwrap_or_default(),
        })
    }

    /// `SHOW name`, `current_setting('name')`: the session's value, else
    /// the server's.
    pub fn get(&self, name: &str) -> Result<String> {
        let name = canonical_name(name);
        match name.as_str() {
            "session_authorization" => return Ok(self.user().to_string()),
            "is_superuser" => return Ok(if self.is_superuser() { "on" } else { "off" }.into()),
            _ => {}
        }
        if let Some(v) = self.overrides.lock().get(&name) {
            return Ok(v.clone());
        }
        if let Some(configured) = server_default(&name) {
            return Ok(configured);
        }
        SETTINGS
            .iter()
            .find(|(n, ..)| *n == name)
            .map(|(_, v, ..)| v.to_string())
            .ok_or_else(|| unrecognized(&name))
    }

    /// `SHOW ALL`: (name, setting, description) rows.
    pub fn all(&self) -> Vec<(String, String, String)> {
        SETTINGS
            .iter()
            .map(|(name, _, _, description)| {
                let value = self.get(name).unwrap_or_default();
                (name.to_string(), value, description.to_string())
            })
            .collect()
    }

    /// The most memory one query of this session may use (`None`: no limit).
    pub fn query_memory_limit(&self) -> Option<usize> {
        self.get("query_memory_limit")
            .ok()
            .and_then(|text| crate::datafusion_context::parse_memory_limit(&text))
            .unwrap_or_else(default_query_memory_limit)
    }

    /// The session's time zone, for timestamp output.
    pub fn time_zone(&self) -> String {
        self.get("timezone").unwrap_or_else(|_| "UTC".to_string())
    }
}

/// The server's value of a setting its config sets (config file, flag or
/// environment): what every session starts with, and what `RESET` and
/// `SET .. TO DEFAULT` go back to. Where no server runs in this process
/// (unit tests), the config's own defaults.
fn server_default(name: &str) -> Option<String> {
    let limits = crate::pg::activity::Activity::current().map(|a| a.limits.clone());
    match name {
        "statement_timeout" => Some(crate::pg::activity::format_timeout(
            limits.as_ref().and_then(|l| l.statement_timeout),
        )),
        "query_memory_limit" => Some(crate::datafusion_context::format_memory_limit(
            default_query_memory_limit(),
        )),
        "subscribe_slow_client" => Some(
            limits
                .map(|l| l.subscribe_slow_client)
                .unwrap_or_default()
                .name()
                .to_string(),
        ),
        _ => None,
    }
}

/// The server's `query_memory_limit` (the built-in default where no server
/// runs in this process).
fn default_query_memory_limit() -> Option<usize> {
    match crate::pg::activity::Activity::current() {
        Some(activity) => activity.limits.query_memory_limit,
        None => Some(crate::config::DEFAULT_QUERY_MEMORY_LIMIT),
    }
}

fn canonical_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "time_zone" | "time zone" => "timezone".to_string(),
        "transaction_isolation_level" | "transaction isolation level" => {
            "transaction_isolation".to_string()
        }
        "names" => "client_encoding".to_string(),
        _ => lower,
    }
}

fn normalize_value(name: &str, value: String) -> Result<String> {
    match name {
        "client_encoding" => {
            let upper = value.to_ascii_uppercase().replace(['-', '_'], "");
            if upper == "UTF8" || upper == "UNICODE" {
                Ok("UTF8".to_string())
            } else {
                Err(ServerError::InvalidParameterValue {
                    message: format!(
                        "invalid value for parameter \"client_encoding\": \"{value}\""
                    ),
                    hint: Some("Weir speaks UTF8 only".to_string()),
                })
            }
        }
        // Time settings, shown as Postgres shows them (`3s`, `1500ms`).
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => {
            match crate::pg::activity::parse_timeout_setting(&value) {
                Some(timeout) => Ok(crate::pg::activity::format_timeout(timeout)),
                None => Err(ServerError::InvalidParameterValue {
                    message: format!("invalid value for parameter \"{name}\": \"{value}\""),
                    hint: Some(
                        "write milliseconds or a number with a unit (ms, s, min, h, d), 0 for none"
                            .to_string(),
                    ),
                }),
            }
        }
        "query_memory_limit" => match crate::datafusion_context::parse_memory_limit(&value) {
            Some(limit) => Ok(crate::datafusion_context::format_memory_limit(limit)),
            None => Err(ServerError::InvalidParameterValue {
                message: format!("invalid value for parameter \"query_memory_limit\": \"{value}\""),
                hint: Some("write a size such as 512MB or 2GB, or 0 for no limit".to_string()),
            }),
        },
        "subscribe_slow_client" => {
            let lower = value.to_ascii_lowercase();
            if lower == "disconnect" || lower == "block" {
                Ok(lower)
            } else {
                Err(ServerError::InvalidParameterValue {
                    message: format!(
                        "invalid value for parameter \"subscribe_slow_client\": \"{value}\""
                    ),
                    hint: Some("Available values: disconnect, block.".to_string()),
                })
            }
        }
        "timezone" => {
            let valid = value.eq_ignore_ascii_case("utc")
                || value.eq_ignore_ascii_case("gmt")
                || value
                    .parse::<datafusion::arrow::array::timezone::Tz>()
                    .is_ok();
            if valid {
                Ok(value)
            } else {
                Err(ServerError::InvalidParameterValue {
                    message: format!("invalid value for parameter \"TimeZone\": \"{value}\""),
                    hint: None,
                })
            }
        }
        _ => Ok(value),
    }
}

fn reported_name(name: &str) -> &str {
    match name {
        "timezone" => "TimeZone",
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        other => other,
    }
}

fn unrecognized(name: &str) -> ServerError {
    ServerError::UndefinedObject {
        message: format!("unrecognized configuration parameter \"{name}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_show_and_reset() {
        let session = Session::new();
        assert_eq!(session.get("TimeZone").expect("tz"), "UTC");
        let change = session
            .set("timezone", Some("Europe/Berlin".into()))
            .expect("set");
        assert_eq!(
            change,
            Some(ReportedChange {
                name: "TimeZone".into(),
                value: "Europe/Berlin".into()
            })
        );
        assert_eq!(session.get("time zone").expect("tz"), "Europe/Berlin");
        session.set("timezone", None).expect("reset");
        assert_eq!(session.get("timezone").expect("tz"), "UTC");
        assert_eq!(
            session.get("nope").expect_err("unknown").sqlstate(),
            "42704"
        );
        assert_eq!(
            session
                .set("server_version", Some("1".into()))
                .expect_err("ro")
                .sqlstate(),
            "55P02"
        );
        assert!(session.set("myapp.flag", Some("x".into())).is_ok());
    }
}
