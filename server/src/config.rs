//! Configuration: flags win over `WEIR_*` environment variables, which win
//! over the TOML config file, which wins over the embedded defaults.
//!
//! clap resolves flag-over-env for each setting; what neither set is taken
//! from the file, then from the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;

/// Defaults: everything on one machine, no other service.
pub const DEFAULT_PG_ADDR: &str = "127.0.0.1:5488";
/// The HTTP endpoint's default address.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8488";
/// The data directory's default path.
pub const DEFAULT_DATA_DIR: &str = "./weir-data";
/// How often jobs checkpoint by default.
pub const DEFAULT_CHECKPOINT_INTERVAL: &str = "10s";
/// Complete checkpoints kept per job by default.
pub const DEFAULT_CHECKPOINT_RETAIN: usize = 3;

/// `weir serve` flags (each also read from its `WEIR_*` variable).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "WEIR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the catalog and checkpoints live [default: ./weir-data].
    #[arg(long, env = "WEIR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Postgres wire protocol address [default: 127.0.0.1:5488].
    #[arg(long, env = "WEIR_PG_ADDR")]
    pub pg_addr: Option<SocketAddr>,
    /// HTTP address for /healthz and /metrics [default: 127.0.0.1:8488].
    #[arg(long, env = "WEIR_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Worker threads for query work [default: the number of cores].
    #[arg(long, env = "WEIR_WORKERS")]
    pub workers: Option<usize>,
    /// Log filter, e.g. `info` or `weir_server=debug` [default: info].
    #[arg(long, env = "WEIR_LOG")]
    pub log: Option<String>,
    /// How often jobs checkpoint, e.g. `5s`, `500ms`; `off` or `0s` turns
    /// checkpoints off [default: 10s].
    #[arg(long, env = "WEIR_CHECKPOINT_INTERVAL")]
    pub checkpoint_interval: Option<String>,
    /// Complete checkpoints kept per job [default: 3].
    #[arg(long, env = "WEIR_CHECKPOINT_RETAIN")]
    pub checkpoint_retain: Option<usize>,
    /// Where checkpoints go: a folder, or an object store URL such as
    /// `s3://bucket/prefix` [default: <data dir>/checkpoints].
    #[arg(long, env = "WEIR_CHECKPOINT_URL")]
    pub checkpoint_url: Option<String>,
    /// Log lines as `text` (for people) or `json` (one JSON object a
    /// line, for log collectors) [default: text].
    #[arg(long, env = "WEIR_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Print the bound addresses as one JSON line on stdout once listening
    /// (for scripts and tests that bind port 0).
    #[arg(long, env = "WEIR_PRINT_ADDRS")]
    pub print_addrs: bool,

    // ---- security: who may connect, and over what ----
    /// `trust` (any user, loopback only) or `scram-sha-256` (passwords)
    /// [default: trust]. The first user, `weir`, takes its password from the
    /// `WEIR_PASSWORD` variable or from `--password-file`, never from a flag.
    #[arg(long, env = "WEIR_AUTH_METHOD")]
    pub auth_method: Option<String>,
    /// A file whose first line is the password of the user `weir`.
    #[arg(long, env = "WEIR_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// PEM certificate chain for TLS on the Postgres and HTTP ports.
    #[arg(long, env = "WEIR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "WEIR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Refuse Postgres connections that do not use TLS.
    #[arg(long, env = "WEIR_TLS_REQUIRED")]
    pub tls_required: bool,
    /// Folders SQL may read and write files in, comma-separated
    /// [default: the working directory and the data directory].
    #[arg(long, env = "WEIR_ALLOWED_PATHS", value_delimiter = ',')]
    pub allowed_paths: Option<Vec<PathBuf>>,
    /// Default `statement_timeout` of every session, e.g. `30s` [default: none].
    #[arg(long, env = "WEIR_STATEMENT_TIMEOUT")]
    pub statement_timeout: Option<String>,
    /// Connections served at once; past it, 53300 [default: 100].
    #[arg(long, env = "WEIR_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// The most memory one query may use, e.g. `512MB`; past it the query
    /// spills to disk where it can, else fails with 53200; `0` for no limit
    /// [default: 1GB].
    #[arg(long, env = "WEIR_QUERY_MEMORY_LIMIT")]
    pub query_memory_limit: Option<String>,
    /// What a SUBSCRIBE does with a client that stops reading, for every
    /// session (a session's `SET subscribe_slow_client` wins): `disconnect`
    /// (53200 once far behind) or `block` (the view's job waits for it)
    /// [default: disconnect].
    #[arg(long, env = "WEIR_SUBSCRIBE_SLOW_CLIENT")]
    pub subscribe_slow_client: Option<String>,
}

/// The config file's contents; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    pg_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    workers: Option<usize>,
    log: Option<String>,
    checkpoint_interval: Option<String>,
    checkpoint_retain: Option<usize>,
    checkpoint_url: Option<String>,
    // ---- the REST API and the log (issue 23) ----
    /// The REST API's bearer token (or `WEIR_API_TOKEN`; never a flag).
    api_token: Option<String>,
    /// `text` or `json`.
    log_format: Option<String>,
    /// `[jobs]`: the default job settings (`restart_strategy = "fixed_delay"`, ...).
    #[serde(default)]
    jobs: std::collections::BTreeMap<String, toml::Value>,
    // security
    auth_method: Option<String>,
    password_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_required: Option<bool>,
    allowed_paths: Option<Vec<PathBuf>>,
    statement_timeout: Option<String>,
    max_connections: Option<usize>,
    query_memory_limit: Option<String>,
    subscribe_slow_client: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// pgwire address.
    pub pg_addr: SocketAddr,
    /// HTTP address.
    pub http_addr: SocketAddr,
    /// Worker threads.
    pub workers: usize,
    /// Log filter.
    pub log: String,
    /// Print bound addresses on stdout.
    pub print_addrs: bool,
    /// Between two checkpoints of a job; `None`: checkpoints are off.
    pub checkpoint_interval: Option<std::time::Duration>,
    /// Complete checkpoints kept per job.
    pub checkpoint_retain: usize,
    /// Where checkpoints go (`None`: `<data dir>/checkpoints`).
    pub checkpoint_url: Option<String>,
    /// The config file's `[jobs]` table: default job settings (checked),
    /// which a job's own `WITH (...)` and `ALTER JOB SET` override.
    pub job_defaults: std::collections::BTreeMap<String, String>,
    /// Who may connect, and over what.
    pub security: Security,
    /// The bearer token every `/api` request must carry, when set.
    pub api_token: Option<Secret>,
    /// How log lines are written.
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For people: one line per event, fields as `key=value`.
    #[default]
    Text,
    /// One JSON object per line, with the event's and its spans' fields
    /// (`job`, `operator`), for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" | "human" | "pretty" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => anyhow::bail!("invalid log_format \"{other}\" (write text or json)"),
        }
    }
}

/// The REST API's token: `WEIR_API_TOKEN`, else the file's `api_token`;
/// never a flag, which `ps` would show.
fn api_token(file: &FileConfig) -> Option<Secret> {
    match std::env::var("WEIR_API_TOKEN") {
        Ok(token) if !token.trim().is_empty() => Some(Secret(token.trim().to_string())),
        _ => file
            .api_token
            .as_ref()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(Secret),
    }
}

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// Any user name connects without a password (loopback only).
    Trust,
    /// SCRAM-SHA-256 passwords, checked against the roles' verifiers.
    ScramSha256,
}

impl std::str::FromStr for AuthMethod {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "trust" => Ok(AuthMethod::Trust),
            "scram-sha-256" | "scram_sha_256" | "scram" => Ok(AuthMethod::ScramSha256),
            other => {
                anyhow::bail!("invalid auth_method \"{other}\" (write trust or scram-sha-256)")
            }
        }
    }
}

/// A password read from the environment or a file. Its `Debug` does not
/// show it, so a logged `Config` never carries it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The password itself: hash it, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(password: String) -> Self {
        Self(password)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The security settings: authentication and TLS.
#[derive(Debug, Clone)]
pub struct Security {
    /// How clients authenticate.
    pub auth_method: AuthMethod,
    /// The password of the user `weir`, when one was given.
    pub password: Option<Secret>,
    /// PEM certificate chain and key for TLS, when configured.
    pub tls: Option<TlsFiles>,
    /// Refuse Postgres connections without TLS (28000).
    pub tls_required: bool,
    /// Folders SQL may name files in (`None`: the working directory and
    /// the data directory).
    pub allowed_paths: Option<Vec<PathBuf>>,
    /// Every session's default `statement_timeout`.
    pub statement_timeout: Option<std::time::Duration>,
    /// Connections served at once.
    pub max_connections: usize,
    /// Every session's default `query_memory_limit` in bytes (`None`: none).
    pub query_memory_limit: Option<usize>,
    /// Every session's default `subscribe_slow_client`.
    pub subscribe_slow_client: SlowClient,
}

/// What a `SUBSCRIBE` does with a client that stops reading (design 0009).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowClient {
    /// Disconnect it with 53200 once it is far behind; the job goes on.
    #[default]
    Disconnect,
    /// Hold the view's job until the client reads again.
    Block,
}

impl SlowClient {
    /// The setting's value, as `SHOW subscribe_slow_client` prints it.
    pub fn name(&self) -> &'static str {
        match self {
            SlowClient::Disconnect => "disconnect",
            SlowClient::Block => "block",
        }
    }
}

impl std::str::FromStr for SlowClient {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text.trim().trim_matches('\'').to_ascii_lowercase().as_str() {
            "disconnect" => Ok(SlowClient::Disconnect),
            "block" => Ok(SlowClient::Block),
            other => anyhow::bail!(
                "invalid subscribe_slow_client \"{other}\" (write disconnect or block)"
            ),
        }
    }
}

/// Connections served at once by default (Postgres's default too).
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;

/// The most memory one query may use by default: 1 GiB. Enough for the
/// hash tables of everyday queries; a bigger one spills or fails with 53200
/// rather than taking the server's memory (a DISTINCT over 1e8 keys grew to
/// 3.4 GB without a limit).
pub const DEFAULT_QUERY_MEMORY_LIMIT: usize = 1 << 30;

/// Where the TLS certificate and key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl Security {
    fn resolve(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Self> {
        let auth_method = match args.auth_method.as_ref().or(file.auth_method.as_ref()) {
            Some(text) => text.parse()?,
            None => AuthMethod::Trust,
        };
        // The variable wins over the file, as flags win over variables
        // elsewhere; the password is never a flag (it would show in `ps`).
        let password = match std::env::var("WEIR_PASSWORD") {
            Ok(password) if !password.is_empty() => Some(Secret(password)),
            _ => match args.password_file.as_ref().or(file.password_file.as_ref()) {
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| {
                        format!("could not read password_file {}", path.display())
                    })?;
                    let line = text.lines().next().unwrap_or("").to_string();
                    anyhow::ensure!(
                        !line.is_empty(),
                        "password_file {} is empty",
                        path.display()
                    );
                    Some(Secret(line))
                }
                None => None,
            },
        };
        let cert = args.tls_cert.clone().or_else(|| file.tls_cert.clone());
        let key = args.tls_key.clone().or_else(|| file.tls_key.clone());
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => anyhow::bail!("tls_cert and tls_key must be set together"),
        };
        let tls_required = args.tls_required || file.tls_required.unwrap_or(false);
        anyhow::ensure!(
            !tls_required || tls.is_some(),
            "tls_required is set but no certificate is: set tls_cert and tls_key"
        );
        Ok(Self {
            auth_method,
            password,
            tls,
            tls_required,
            allowed_paths: args
                .allowed_paths
                .clone()
                .or_else(|| file.allowed_paths.clone()),
            statement_timeout: match args
                .statement_timeout
                .as_ref()
                .or(file.statement_timeout.as_ref())
            {
                Some(text) => match crate::pg::activity::parse_timeout_setting(text) {
                    Some(timeout) => timeout,
                    None => anyhow::bail!(
                        "invalid statement_timeout \"{text}\" (write e.g. 30s, 500ms, 0 for none)"
                    ),
                },
                None => None,
            },
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS)
                .max(1),
            query_memory_limit: match args
                .query_memory_limit
                .as_ref()
                .or(file.query_memory_limit.as_ref())
            {
                Some(text) => crate::datafusion_context::parse_memory_limit(text).with_context(
                    || {
                        format!(
                            "invalid query_memory_limit \"{text}\" (write e.g. 512MB, 2GB, 0 for none)"
                        )
                    },
                )?,
                None => Some(DEFAULT_QUERY_MEMORY_LIMIT),
            },
            subscribe_slow_client: match args
                .subscribe_slow_client
                .as_ref()
                .or(file.subscribe_slow_client.as_ref())
            {
                Some(text) => text.parse()?,
                None => SlowClient::Disconnect,
            },
        })
    }
}

impl Config {
    /// Resolve flags/env (already merged by clap), then the file, then defaults.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("could not read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let parse = |s: &str| s.parse::<SocketAddr>().expect("default address parses");
        // `parallelism = 2` and `parallelism = "2"` alike.
        let job_defaults: std::collections::BTreeMap<String, String> = file
            .jobs
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.to_ascii_lowercase(), text)
            })
            .collect();
        crate::jobs::settings::defaults(&job_defaults)
            .map_err(|e| anyhow::anyhow!("invalid [jobs] in the config file: {e}"))?;
        let security = Security::resolve(&args, &file)?;
        let log_format = match args.log_format.as_ref().or(file.log_format.as_ref()) {
            Some(text) => text.parse()?,
            None => LogFormat::Text,
        };
        Ok(Self {
            security,
            api_token: api_token(&file),
            log_format,
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            pg_addr: args
                .pg_addr
                .or(file.pg_addr)
                .unwrap_or_else(|| parse(DEFAULT_PG_ADDR)),
            http_addr: args
                .http_addr
                .or(file.http_addr)
                .unwrap_or_else(|| parse(DEFAULT_HTTP_ADDR)),
            workers: args
                .workers
                .or(file.workers)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            log: args.log.or(file.log).unwrap_or_else(|| "info".to_string()),
            print_addrs: args.print_addrs,
            checkpoint_interval: parse_interval(
                &args
                    .checkpoint_interval
                    .or(file.checkpoint_interval)
                    .unwrap_or_else(|| DEFAULT_CHECKPOINT_INTERVAL.to_string()),
            )?,
            checkpoint_retain: args
                .checkpoint_retain
                .or(file.checkpoint_retain)
                .unwrap_or(DEFAULT_CHECKPOINT_RETAIN)
                .max(1),
            checkpoint_url: args.checkpoint_url.or(file.checkpoint_url),
            job_defaults,
        })
    }
}

/// `10s`, `500ms`, `1m`; `off` and zero turn checkpoints off.
fn parse_interval(text: &str) -> anyhow::Result<Option<std::time::Duration>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let interval = humantime::parse_duration(text).with_context(|| {
        format!("invalid checkpoint interval \"{text}\" (write e.g. 10s, 500ms, or off)")
    })?;
    Ok((!interval.is_zero()).then_some(interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "pg_addr = \"127.0.0.1:6000\"\nworkers = 3\n").expect("write");
        let args = ServeArgs {
            config: Some(path),
            workers: Some(5),
            ..Default::default()
        };
        let config = Config::resolve(args).expect("resolve");
        assert_eq!(config.pg_addr.port(), 6000);
        assert_eq!(config.workers, 5);
        assert_eq!(config.http_addr.port(), 8488);
        assert_eq!(config.data_dir, PathBuf::from("./weir-data"));
    }

    #[test]
    fn checkpoint_intervals_parse_or_turn_off() {
        assert_eq!(
            parse_interval("5s").expect("5s"),
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(
            parse_interval("250ms").expect("ms"),
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(parse_interval("off").expect("off"), None);
        assert_eq!(parse_interval("0s").expect("0s"), None);
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn job_defaults_come_from_the_jobs_table_and_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "[jobs]\nrestart_strategy = \"fixed_delay\"\nrestart_attempts = 5\n",
        )
        .expect("write");
        let config = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .expect("resolve");
        assert_eq!(config.job_defaults["restart_attempts"], "5");
        std::fs::write(&path, "[jobs]\nrestart_strategy = \"often\"\n").expect("write");
        let err = Config::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .expect_err("bad default");
        assert!(format!("{err:#}").contains("restart_strategy"), "{err:#}");
    }

    #[test]
    fn api_token_and_log_format_come_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "api_token = \"t0ken\"\nlog_format = \"json\"\n").expect("write");
        let config = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .expect("resolve");
        // WEIR_API_TOKEN would win; tests do not set it.
        if std::env::var("WEIR_API_TOKEN").is_err() {
            assert_eq!(config.api_token.as_ref().map(Secret::expose), Some("t0ken"));
        }
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(
            !format!("{config:?}").contains("t0ken"),
            "the token is never logged"
        );
        std::fs::write(&path, "log_format = \"xml\"\n").expect("write");
        let err = Config::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .expect_err("bad format");
        assert!(format!("{err:#}").contains("log_format"), "{err:#}");
    }

    #[test]
    fn subscribe_slow_client_comes_from_flag_or_file_and_is_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "subscribe_slow_client = \"block\"\n").expect("write");
        let from_file = |flag: Option<&str>| {
            Config::resolve(ServeArgs {
                config: Some(path.clone()),
                subscribe_slow_client: flag.map(str::to_string),
                ..Default::default()
            })
        };
        let policy = |c: Config| c.security.subscribe_slow_client;
        assert_eq!(policy(from_file(None).expect("file")), SlowClient::Block);
        assert_eq!(
            policy(from_file(Some("disconnect")).expect("flag")),
            SlowClient::Disconnect
        );
        let err = from_file(Some("wait")).expect_err("bad policy");
        assert!(
            format!("{err:#}").contains("subscribe_slow_client"),
            "{err:#}"
        );
        let default = Config::resolve(ServeArgs::default()).expect("defaults");
        assert_eq!(policy(default), SlowClient::Disconnect);
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "pg_adr = \"x\"\n").expect("write");
        let err = Config::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .expect_err("typo");
        assert!(format!("{err:#}").contains("pg_adr"), "{err:#}");
    }
}
