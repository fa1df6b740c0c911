//! The live backends, one per connection: what `pg_stat_activity` lists,
//! what a CancelRequest, `pg_cancel_backend(pid)` and `statement_timeout`
//! stop, and the cap on connections (`max_connections`, 53300 past it).
//!
//! ```text
//!   startup ok ──> Activity::register ──> Backend (pid, secret, user, ...)
//!   statement  ──> Backend::begin ──> Running: stops with 57014 when
//!                    cancel() is called (CancelRequest, pg_cancel_backend)
//!                    or the session's statement_timeout passes
//!   connection gone ──> BackendGuard dropped ──> unregistered
//! ```
//!
//! A cancel stops what the client waits for: the statement's future is
//! dropped and its result stream ends with the error, which drops the
//! stream and with it the query's work (the worker task that drives it is
//! aborted when its stream is dropped: `weir_runtime::Executor::execute`).
//!
//! A client that goes away while its statement runs is noticed too, as
//! Postgres's `client_connection_check_interval` does: a query that sends
//! nothing for a long time (an aggregate) never writes to the socket, so
//! it would never find out. Each connection's socket is kept as a probe
//! (a duplicate of its descriptor, from accept); while a statement runs,
//! the probe is peeked every [`CLIENT_CHECK_INTERVAL`]: end of file or an
//! error means the client is gone, and the statement stops.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::Stream;
use parking_lot::Mutex;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::sync::watch;

use crate::error::{Result, ServerError};
use crate::output::Output;
use crate::session::gate::StatementGate;

/// Limits every session shares.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The default `statement_timeout` (`None`: none).
    pub statement_timeout: Option<Duration>,
    /// Connections served at once; one more is refused with 53300.
    pub max_connections: usize,
    /// The default `query_memory_limit` in bytes (`None`: none).
    pub query_memory_limit: Option<usize>,
    /// The default `subscribe_slow_client`.
    pub subscribe_slow_client: crate::config::SlowClient,
}

/// How often a running statement checks that its client is still there.
pub const CLIENT_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// The server's live backends.
#[derive(Debug)]
pub struct Activity {
    backends: Mutex<BTreeMap<i32, Arc<Backend>>>,
    /// Each open connection's socket probe, by the client's address (unique
    /// among open connections: the server's end of the pair is fixed).
    probes: Mutex<HashMap<SocketAddr, Arc<std::net::TcpStream>>>,
    connections: AtomicUsize,
    /// The limits.
    pub limits: Limits,
}

static CURRENT: OnceLock<Arc<Activity>> = OnceLock::new();

impl Activity {
    /// The activity of this process's server, made once at start-up
    /// (`pg_stat_activity` reads it from the shared DataFusion context,
    /// which knows no session).
    pub fn install(limits: Limits) -> Arc<Self> {
        CURRENT
            .get_or_init(|| {
                Arc::new(Self {
                    backends: Mutex::default(),
                    probes: Mutex::default(),
                    connections: AtomicUsize::new(0),
                    limits,
                })
            })
            .clone()
    }

    /// The installed activity, if a server runs in this process.
    pub fn current() -> Option<Arc<Self>> {
        CURRENT.get().cloned()
    }

    /// A connection from `peer` was accepted on `socket`; the guard counts
    /// it (and keeps its probe) until dropped.
    pub fn connection_opened(
        self: &Arc<Self>,
        socket: &tokio::net::TcpStream,
        peer: SocketAddr,
    ) -> ConnectionCount {
        self.connections.fetch_add(1, Ordering::Relaxed);
        // A duplicate of the descriptor, only ever peeked: it reads nothing
        // that pgwire would miss. Without one (out of descriptors) the
        // connection works, its disconnects are noticed at the next write.
        use std::os::fd::AsFd;
        match socket.as_fd().try_clone_to_owned() {
            Ok(fd) => {
                let probe = std::net::TcpStream::from(fd);
                self.probes.lock().insert(peer, Arc::new(probe));
            }
            Err(err) => tracing::warn!(%peer, %err, "no probe for the connection's socket"),
        }
        ConnectionCount {
            activity: self.clone(),
            peer,
        }
    }

    /// Is the number of open connections past the cap?
    pub fn over_capacity(&self) -> bool {
        self.connections.load(Ordering::Relaxed) > self.limits.max_connections
    }

    /// Register a logged-in backend; it is listed until the guard drops.
    pub fn register(self: &Arc<Self>, mut backend: Backend) -> (Arc<Backend>, BackendGuard) {
        backend.probe = self.probes.lock().get(&backend.client_addr).cloned();
        let backend = Arc::new(backend);
        self.backends.lock().insert(backend.pid, backend.clone());
        (
            backend.clone(),
            BackendGuard {
                activity: self.clone(),
                pid: backend.pid,
            },
        )
    }

    /// The backend with `pid`.
    pub fn get(&self, pid: i32) -> Option<Arc<Backend>> {
        self.backends.lock().get(&pid).cloned()
    }

    /// Every backend, by pid.
    pub fn all(&self) -> Vec<Arc<Backend>> {
        self.backends.lock().values().cloned().collect()
    }
}

/// Counts one open connection (and keeps its probe) until dropped.
pub struct ConnectionCount {
    activity: Arc<Activity>,
    peer: SocketAddr,
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.activity.probes.lock().remove(&self.peer);
        self.activity.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Unregisters a backend when its connection ends.
#[derive(Debug)]
pub struct BackendGuard {
    activity: Arc<Activity>,
    pid: i32,
}

impl Drop for BackendGuard {
    fn drop(&mut self) {
        self.activity.backends.lock().remove(&self.pid);
    }
}

/// One connection's backend.
#[derive(Debug)]
pub struct Backend {
    /// Its pid (`pg_backend_pid()`).
    pub pid: i32,
    secret: SecretKey,
    /// The user it logged in as.
    pub user: String,
    /// The client's `application_name`.
    pub application_name: String,
    /// The client's address.
    pub client_addr: SocketAddr,
    /// When it connected.
    pub backend_start: DateTime<Utc>,
    now: Mutex<Now>,
    cancel: watch::Sender<u64>,
    /// The gate of its current (or last) statement.
    gate: Mutex<Arc<StatementGate>>,
    /// The connection's socket, peeked to notice a client gone mid-statement.
    probe: Option<Arc<std::net::TcpStream>>,
}

/// What a backend is doing.
#[derive(Debug, Clone)]
pub struct Now {
    /// `active` or `idle`.
    pub state: &'static str,
    /// The statement running or last run.
    pub query: String,
    /// When it started.
    pub query_start: Option<DateTime<Utc>>,
}

impl Backend {
    /// A backend that has done nothing yet.
    pub fn new(
        pid: i32,
        secret: SecretKey,
        user: String,
        application_name: String,
        client_addr: SocketAddr,
    ) -> Self {
        Self {
            pid,
            secret,
            user,
            application_name,
            client_addr,
            backend_start: Utc::now(),
            now: Mutex::new(Now {
                state: "idle",
                query: String::new(),
                query_start: None,
            }),
            cancel: watch::channel(0).0,
            gate: Mutex::default(),
            probe: None,
        }
    }

    /// What it is doing now.
    pub fn now(&self) -> Now {
        self.now.lock().clone()
    }

    /// Stop its running statement (if any) with 57014. `false`: the
    /// statement is committing, too late to stop (it reports its success).
    pub fn cancel(&self) -> bool {
        let stopped = self.gate.lock().stop();
        if stopped {
            self.cancel.send_modify(|n| *n += 1);
        }
        stopped
    }

    /// The gate of its current (or last) statement: the worker that runs
    /// it asks the gate before it commits.
    pub fn statement_gate(&self) -> Arc<StatementGate> {
        self.gate.lock().clone()
    }

    /// Does `secret` match this backend's key (a CancelRequest's check)?
    /// By value: the CancelRequest comes on a connection of its own, which
    /// decodes the same four bytes as `Bytes` where the login had `I32`, so
    /// `==` never matched and no CancelRequest stopped anything.
    fn secret_matches(&self, secret: &SecretKey) -> bool {
        self.secret.eq_value(secret)
    }

    /// A statement (whose text is `query`) starts, with `timeout`.
    pub fn begin(self: &Arc<Self>, query: &str, timeout: Option<Duration>) -> Running {
        {
            let mut now = self.now.lock();
            now.state = "active";
            // A statement's text may hold a password: never show it.
            now.query = if query.to_ascii_lowercase().contains("password") {
                "<hidden: the statement may hold a password>".to_string()
            } else {
                query.to_string()
            };
            now.query_start = Some(Utc::now());
        }
        let gate = Arc::new(StatementGate::default());
        *self.gate.lock() = gate.clone();
        let mut cancelled = self.cancel.subscribe();
        cancelled.borrow_and_update();
        let probe = self.probe.clone();
        let stop_gate = gate.clone();
        let stop = async move {
            let cancel = async {
                if cancelled.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let timeout = async {
                match timeout {
                    Some(timeout) => tokio::time::sleep(timeout).await,
                    None => std::future::pending().await,
                }
            };
            let reason = tokio::select! {
                () = cancel => ServerError::QueryCanceled,
                () = timeout => ServerError::StatementTimeout,
                () = client_gone(probe) => ServerError::ClientGone,
            };
            // A statement that began to commit is past stopping: its
            // outcome is what it reports.
            if !stop_gate.stop() {
                std::future::pending::<()>().await;
            }
            reason
        };
        Running {
            stop: Box::pin(stop),
            backend: self.clone(),
            gate,
        }
    }
}

/// Resolves once the client of `probe`'s connection has gone: its end of
/// the socket is closed (a read would see end of file) or reset. Data the
/// client sent meanwhile (a pipelined request, a TLS record) is left unread.
async fn client_gone(probe: Option<Arc<std::net::TcpStream>>) {
    let Some(probe) = probe else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(CLIENT_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The descriptor shares tokio's non-blocking mode: peek never waits.
        match probe.peek(&mut [0u8; 1]) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// A running statement: stops with 57014 when cancelled or timed out (and
/// with 08006 when its client is gone).
pub struct Running {
    stop: Pin<Box<dyn Future<Output = ServerError> + Send>>,
    backend: Arc<Backend>,
    /// Shared with the statement's worker (see `session::gate`).
    gate: Arc<StatementGate>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.backend.now.lock().state = "idle";
        // Nobody waits for the statement any more (it ended, or pgwire
        // dropped it on a cancel, or the client left): a worker that has
        // not committed yet must not.
        self.gate.stop();
    }
}

impl Running {
    /// Run `work`, unless the statement is stopped first. A stop already
    /// decided (a CancelRequest between two COPY messages) wins over work
    /// that could go on.
    pub async fn run<T>(&mut self, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            biased;
            err = &mut self.stop => Err(err),
            result = work => result,
        }
    }

    /// The statement's gate, which its worker asks before committing.
    pub fn gate(&self) -> Arc<StatementGate> {
        self.gate.clone()
    }

    /// The statement's output, its rows ending with 57014 if it is stopped
    /// while they stream.
    pub fn guard(self, output: Output) -> Output {
        match output {
            Output::Rows(batches) => Output::Rows(Box::pin(Guarded {
                schema: batches.schema(),
                inner: batches,
                running: Some(self),
            })),
            Output::CopyOut { batches, options } => Output::CopyOut {
                batches: Box::pin(Guarded {
                    schema: batches.schema(),
                    inner: batches,
                    running: Some(self),
                }),
                options,
            },
            Output::Noticed { notice, output } => Output::Noticed {
                notice,
                output: Box::new(self.guard(*output)),
            },
            // The COPY goes on while its data arrives, and stops as the
            // statement it is (`copy_in`).
            Output::CopyIn(mut copy) => {
                copy.stopped_by(self);
                Output::CopyIn(copy)
            }
            other => other,
        }
    }
}

struct Guarded {
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    /// `None` once stopped or done: the stream has ended.
    running: Option<Running>,
}

impl Stream for Guarded {
    type Item = std::result::Result<RecordBatch, DataFusionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(running) = self.running.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(err) = running.stop.as_mut().poll(cx) {
            self.running = None;
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(err)))));
        }
        let next = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(None) = next {
            self.running = None;
        }
        next
    }
}

impl RecordBatchStream for Guarded {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// Answers CancelRequests: the backend with the request's pid, if the
/// secret key matches (else nothing happens, as in Postgres).
pub struct CancelByKey {
    /// The backends.
    pub activity: Arc<Activity>,
    /// pgwire's connections: cancelling there ends the request the
    /// connection is serving (a `SUBSCRIBE` streamed over the extended
    /// protocol, which psycopg cancels when a loop leaves `cursor.stream`
    /// early, and then waits for its end).
    pub manager: Arc<pgwire::api::ConnectionManager>,
}

#[async_trait]
impl CancelHandler for CancelByKey {
    async fn on_cancel_request(&self, request: CancelRequest) {
        if let Some(backend) = self.activity.get(request.pid)
            && backend.secret_matches(&request.secret_key)
        {
            let stopped = backend.statement_gate();
            // pgwire checks the key itself. Not when the statement is
            // committing (pgwire would answer 57014 for a statement that
            // commits), nor once it ended: pgwire's cancel would hit the
            // connection's next statement.
            if backend.cancel() && Arc::ptr_eq(&stopped, &backend.statement_gate()) {
                self.manager.cancel(request.pid, &request.secret_key).await;
            }
        }
    }
}

/// `statement_timeout` as a session sets it: a number of milliseconds, or
/// a number with a unit (`ms`, `s`, `min`, `h`, `d`); 0 is none.
pub fn parse_timeout(text: &str) -> Option<Duration> {
    parse_timeout_setting(text).flatten()
}

/// A time setting (`statement_timeout`, `lock_timeout`) as Postgres reads
/// one: a number of milliseconds, or a number with a unit (`ms`, `s`,
/// `min`, `h`, `d`), rounded to whole milliseconds. `None` when the text is
/// not one (or is negative); `Some(None)` for 0, no limit.
pub fn parse_timeout_setting(text: &str) -> Option<Option<Duration>> {
    let text = text.trim().trim_matches('\'').trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let ms = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => number,
        "s" => number * 1e3,
        "min" => number * 60e3,
        "h" => number * 3600e3,
        "d" => number * 86_400e3,
        _ => return None,
    };
    // Postgres's limit for a time setting in milliseconds (INT_MAX).
    let ms = ms.round();
    if !(0.0..=f64::from(i32::MAX)).contains(&ms) {
        return None;
    }
    Some((ms > 0.0).then(|| Duration::from_millis(ms as u64)))
}

/// A time setting as Postgres shows one: in the largest unit that divides
/// it (`1500ms`, `3s`, `2min`), `0` for none.
pub fn format_timeout(timeout: Option<Duration>) -> String {
    let ms = timeout.map_or(0, |t| t.as_millis());
    if ms == 0 {
        return "0".to_string();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_as_postgres_writes_them() {
        assert_eq!(parse_timeout("0"), None);
        assert_eq!(parse_timeout("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_timeout("3s"), Some(Duration::from_secs(3)));
        assert_eq!(parse_timeout("'250ms'"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2min"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("soon"), None);
        assert_eq!(parse_timeout_setting("0"), Some(None));
        assert_eq!(parse_timeout_setting("-1"), None);
        assert_eq!(
            parse_timeout_setting("1.5s"),
            Some(Some(Duration::from_millis(1500)))
        );
    }

    #[test]
    fn timeouts_are_shown_as_postgres_shows_them() {
        let shown = |text: &str| format_timeout(parse_timeout(text));
        assert_eq!(shown("0"), "0");
        assert_eq!(shown("1500"), "1500ms");
        assert_eq!(shown("3000"), "3s");
        assert_eq!(shown("120s"), "2min");
        assert_eq!(shown("1d"), "1d");
    }
}
