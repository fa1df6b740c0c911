//! Start-up and shutdown: check that the configuration is safe to serve
//! (no `trust` beyond loopback), bind the listeners (with TLS when
//! configured), open the roles and start the engine, serve until told to
//! stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::auth::{Auth, Roles};
use crate::config::{AuthMethod, Config};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::pg::WeirHandlers;
use crate::pg::activity::{Activity, Limits};
use crate::tls::{Tls, TlsListener};

/// The lock file in a data directory.
const LOCK_FILE: &str = "weir.lock";

/// Take an exclusive OS lock (`flock`) on `<data_dir>/weir.lock`, so a second
/// `weir` on the same directory refuses to start instead of replaying the
/// table log and running the same jobs beside the first. The OS drops the
/// lock when the process exits, however it exits (kill -9 included), so a
/// crash never leaves a stale lock behind.
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("could not create data directory {}", data_dir.display()))?;
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("could not open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "data directory {} is in use by another weir process (it holds the lock on {}); stop it or choose another --data-dir",
            data_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("could not lock {}", path.display()))
        }
    }
}

/// `trust` lets anyone in without a password: refuse it on any listener
/// that is reachable from other machines.
fn check_exposure(config: &Config) -> anyhow::Result<()> {
    if config.security.auth_method != AuthMethod::Trust {
        return Ok(());
    }
    for (what, addr) in [("Postgres", config.pg_addr), ("HTTP", config.http_addr)] {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "refusing to start: auth_method is trust (no passwords) but the {what} listener would bind {addr}, \
             which other machines can reach; set auth_method = \"scram-sha-256\" (--auth-method or WEIR_AUTH_METHOD) \
             with a password for the user weir (WEIR_PASSWORD or password_file), or bind to 127.0.0.1"
        );
    }
    Ok(())
}

/// Confine the files SQL may name to `allowed_paths` (by default the
/// working directory and the data directory), never Weir's own files.
fn confine_files(config: &Config) -> anyhow::Result<()> {
    let roots = match &config.security.allowed_paths {
        Some(roots) => roots.clone(),
        None => vec![
            std::env::current_dir().context("could not read the working directory")?,
            config.data_dir.clone(),
        ],
    };
    let data = &config.data_dir;
    let mut own: Vec<std::path::PathBuf> = [
        "catalog.json",
        "catalog.json.tmp",
        "roles.json",
        "roles.json.tmp",
        LOCK_FILE,
        "tables",
        "checkpoints",
    ]
    .iter()
    .map(|name| data.join(name))
    .collect();
    if let Some(url) = &config.checkpoint_url
        && !url.contains("://")
    {
        own.push(url.into());
    }
    let allowed = weir_connectors::paths::AllowedPaths::new(&roots, &own);
    info!(allowed = ?allowed.roots(), "SQL may name files under these folders");
    weir_connectors::paths::configure(allowed);
    Ok(())
}

/// Run a server with `config` until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let started = Instant::now();
    check_exposure(&config)?;
    let tls = config.security.tls.as_ref().map(Tls::load).transpose()?;
    // Bind first: a taken port is the most common start-up failure and
    // should be reported before any other work.
    let pg = TcpListener::bind(config.pg_addr).await.with_context(|| {
        format!(
            "could not listen for Postgres clients on {}",
            config.pg_addr
        )
    })?;
    let http = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("could not listen for HTTP on {}", config.http_addr))?;
    let pg_addr = pg.local_addr()?;
    let http_addr = http.local_addr()?;
    // Held until this function returns: the process owns the directory.
    let _lock = lock_data_dir(&config.data_dir)?;
    let roles = Arc::new(
        Roles::open(&config.data_dir, config.security.password.as_ref())
            .context("could not open the roles")?,
    );
    anyhow::ensure!(
        config.security.auth_method == AuthMethod::Trust || roles.any_password(),
        "refusing to start: auth_method is scram-sha-256 but no role has a password; \
         set one for the user weir with WEIR_PASSWORD or password_file"
    );
    roles.publish();
    let auth = Arc::new(Auth {
        method: config.security.auth_method,
        roles,
    });

    confine_files(&config)?;
    let metrics = Arc::new(Metrics::new());
    let engine = Engine::start(&config, metrics.clone())
        .await
        .with_context(|| {
            format!(
                "could not open data directory {}",
                config.data_dir.display()
            )
        })?;
    let activity = Activity::install(Limits {
        statement_timeout: config.security.statement_timeout,
        max_connections: config.security.max_connections,
        query_memory_limit: config.security.query_memory_limit,
        subscribe_slow_client: config.security.subscribe_slow_client,
    });
    let handlers = Arc::new(WeirHandlers::new(
        engine.clone(),
        auth,
        config.security.tls_required,
        activity.clone(),
    ));

    let router = crate::http::router(Arc::new(crate::http::Api {
        registry: engine.registry().clone(),
        engine: engine.clone(),
        metrics: metrics.clone(),
        access: crate::http::auth::Access::new(config.api_token.clone(), http_addr),
        statement_timeout: config.security.statement_timeout,
        rates: Default::default(),
    }));
    let http_task = match &tls {
        Some(tls) => {
            let listener = TlsListener::new(http, tls.http.clone())?;
            tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, router).await {
                    warn!(%err, "HTTPS server stopped");
                }
            })
        }
        None => tokio::spawn(async move {
            if let Err(err) = axum::serve(http, router).await {
                warn!(%err, "HTTP server stopped");
            }
        }),
    };
    let pg_tls = tls.as_ref().map(|tls| tls.pg.clone());

    info!(
        pg = %pg_addr,
        http = %http_addr,
        data_dir = %config.data_dir.display(),
        workers = config.workers,
        auth = ?config.security.auth_method,
        tls = tls.is_some(),
        api_token = config.api_token.is_some(),
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "weir is ready"
    );
    if config.print_addrs {
        println!("{{\"pg_addr\":\"{pg_addr}\",\"http_addr\":\"{http_addr}\"}}");
    }

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = pg.accept() => match accepted {
                Ok((socket, peer)) => {
                    let handlers = handlers.clone();
                    let metrics = metrics.clone();
                    let pg_tls = pg_tls.clone();
                    // Counted from accept, so a client past the cap is
                    // told 53300 at its startup message.
                    let counted = activity.connection_opened(&socket, peer);
                    metrics.connections.inc();
                    metrics.open_connections.inc();
                    tokio::spawn(async move {
                        let _ = socket.set_nodelay(true);
                        if let Err(err) = crate::pg::frame_guard::process_socket(socket, pg_tls, handlers).await {
                            info!(%peer, %err, "connection closed with an error");
                        }
                        metrics.open_connections.dec();
                        drop(counted);
                    });
                }
                // Running out of file descriptors and the like: keep serving
                // the connections we have.
                Err(err) => warn!(%err, "could not accept a connection"),
            },
            () = &mut shutdown => break,
        }
    }
    info!("shutting down");
    http_task.abort();
    engine.shutdown();
    Ok(())
}
