//! The `weir` command.

use clap::{Parser, Subcommand};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};
use weir_server::config::{Config, LogFormat, ServeArgs};

/// Weir: a streaming SQL server that speaks Postgres.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: Postgres wire protocol on 127.0.0.1:5488, HTTP
    /// (REST API, web console, /healthz, /metrics) on 127.0.0.1:8488, data
    /// under ./weir-data.
    Serve(ServeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::resolve(args)?;
    let filter = EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // sqlparser logs every statement's text at debug, and a statement
        // may hold a password (CREATE ROLE ... PASSWORD): never let it.
        .add_directive("sqlparser=warn".parse().expect("a valid directive"));
    init_logs(filter, config.log_format);
    // The connection-serving runtime: two threads move bytes; query work runs
    // on the engine's own worker runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("weir-io")
        .enable_all()
        .build()?;
    runtime.block_on(weir_server::server::run(config, shutdown_signal()))?;
    runtime.shutdown_background();
    Ok(())
}

/// The process's log: to stderr as text or JSON lines, filtered by
/// `filter`; beside it, each job's recent lines for the API and console
/// (their own filter: INFO and up, and the checkpoint coordinator's
/// per-checkpoint DEBUG line, whatever `--log` says).
fn init_logs(filter: EnvFilter, format: LogFormat) {
    let written = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            // The spans' fields (`job`, `operator`, `session`) on each line.
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let kept = weir_server::logs::JobLogLayer.with_filter(
        Targets::new()
            .with_default(Level::INFO)
            .with_target("sqlparser", Level::WARN)
            .with_target("weir_runtime::checkpoint", Level::DEBUG),
    );
    tracing_subscriber::registry()
        .with(written)
        .with(kept)
        .init();
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
