//! The `.slt` suite: every `sql-tests/**/*.slt` file runs against the real
//! `weir` binary over pgwire, once with the simple and once with the extended
//! query protocol, each run on a fresh server and data directory.
//!
//! `WEIR_SLT=part` runs only the files whose path under `sql-tests/`
//! contains `part`.
//!
//! A line `# weir: restart` in a file kills the server with SIGKILL and starts
//! it again on the same data directory: what follows tests durability.

mod common;

use std::path::{Path, PathBuf};

use common::WeirProcess;
use sqllogictest::{DefaultColumnType, Runner};
use sqllogictest_engines::postgres::{PostgresExtended, PostgresSimple};

const RESTART_MARKER: &str = "# weir: restart";

fn slt_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read sql-tests")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "slt") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    let root = common::sql_tests_dir();
    walk(&root, &mut files);
    // `WEIR_SLT=tables` runs only the files whose path under sql-tests/
    // contains "tables".
    if let Ok(only) = std::env::var("WEIR_SLT") {
        files.retain(|f| {
            f.strip_prefix(&root)
                .is_ok_and(|p| p.display().to_string().contains(&only))
        });
    }
    assert!(!files.is_empty(), "no .slt files found");
    files
}

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Simple,
    Extended,
}

async fn run_segment(
    server: &WeirProcess,
    protocol: Protocol,
    name: &str,
    script: &str,
) -> Result<(), String> {
    let config = server.pg_config();
    let result = match protocol {
        Protocol::Simple => {
            let mut runner = Runner::new(move || {
                let config = config.clone();
                async move { PostgresSimple::connect(config).await }
            });
            runner.with_column_validator(
                |_: &Vec<DefaultColumnType>, _: &Vec<DefaultColumnType>| true,
            );
            let r = runner.run_script_with_name_async(script, name).await;
            runner.shutdown_async().await;
            r
        }
        Protocol::Extended => {
            let mut runner = Runner::new(move || {
                let config = config.clone();
                async move { PostgresExtended::connect(config).await }
            });
            let r = runner.run_script_with_name_async(script, name).await;
            runner.shutdown_async().await;
            r
        }
    };
    result.map_err(|e| e.display(false).to_string())
}

async fn run_file(path: &Path, protocol: Protocol) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let data_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let name = path.display().to_string();
    let mut server = WeirProcess::start(data_dir.path());
    let segments: Vec<&str> = text.split(RESTART_MARKER).collect();
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            server.kill();
            server = WeirProcess::start(data_dir.path());
        }
        // `__DATA_DIR__`: this run's data directory (sinks write there).
        let segment = segment.replace("__DATA_DIR__", &data_dir.path().to_string_lossy());
        run_segment(&server, protocol, &name, &segment).await?;
    }
    Ok(())
}

async fn run_all(protocol: Protocol) {
    let mut failures = Vec::new();
    let files = slt_files();
    for path in &files {
        match run_file(path, protocol).await {
            Ok(()) => eprintln!("ok   {protocol:?} {}", path.display()),
            Err(e) => {
                eprintln!("FAIL {protocol:?} {}\n{e}", path.display());
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} .slt files failed ({protocol:?} protocol): {failures:#?}",
        failures.len(),
        files.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_simple_protocol() {
    run_all(Protocol::Simple).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_extended_protocol() {
    run_all(Protocol::Extended).await;
}
