//! Start-up and shutdown: bind the listeners, start the engine, serve until
//! told to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::pg::WeirHandlers;

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

/// Run a server with `config` until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let started = Instant::now();
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

    let metrics = Arc::new(Metrics::new());
    let engine = Engine::start(&config, metrics.clone())
        .await
        .with_context(|| {
            format!(
                "could not open data directory {}",
                config.data_dir.display()
            )
        })?;
    let handlers = Arc::new(WeirHandlers::new(engine.clone()));

    let http_server = axum::serve(http, crate::http::router(metrics.clone()));
    let http_task = tokio::spawn(async move {
        if let Err(err) = http_server.await {
            warn!(%err, "HTTP server stopped");
        }
    });

    info!(
        pg = %pg_addr,
        http = %http_addr,
        data_dir = %config.data_dir.display(),
        workers = config.workers,
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
                    metrics.connections.inc();
                    metrics.open_connections.inc();
                    tokio::spawn(async move {
                        let _ = socket.set_nodelay(true);
                        if let Err(err) = pgwire::tokio::process_socket(socket, None, handlers).await {
                            info!(%peer, %err, "connection closed with an error");
                        }
                        metrics.open_connections.dec();
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
