//! Shared test helpers: start the real `weir` binary on free ports.

#![allow(dead_code)]

pub mod crash;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The repository's `sql-tests/` folder: the server runs there, so test
/// files name their data as `data/...`.
pub fn sql_tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql-tests")
}

/// A running `weir serve` process.
pub struct WeirProcess {
    child: Child,
    /// The Postgres port.
    pub pg_port: u16,
    /// The HTTP port.
    pub http_port: u16,
}

impl WeirProcess {
    /// Start `weir serve` on ports chosen by the OS, with `data_dir`.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[], &[])
    }

    /// Start `weir serve` with extra flags and environment variables.
    pub fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::try_start_with(data_dir, args, env).expect("weir exited before listening")
    }

    /// Start `weir serve`; `None` if it exited before listening (a crash
    /// during start-up, e.g. at a failpoint).
    pub fn try_start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Option<Self> {
        Self::try_start_in(&sql_tests_dir(), data_dir, args, env)
    }

    /// Start `weir serve` in `cwd` (relative paths in SQL are read from
    /// there); `None` if it exited before listening.
    pub fn try_start_in(
        cwd: &Path,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Option<Self> {
        Self::try_start_logging(cwd, data_dir, args, env, Stdio::inherit())
    }

    /// Start `weir serve` with its log (stderr) written to `log`, for a
    /// test that reads what the server said.
    pub fn start_logging(data_dir: &Path, log: &Path, args: &[&str]) -> Self {
        let file = std::fs::File::create(log).expect("create the log file");
        Self::try_start_logging(&sql_tests_dir(), data_dir, args, &[], file.into())
            .expect("weir exited before listening")
    }

    fn try_start_logging(
        cwd: &Path,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Option<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("serve")
            .args(["--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--workers", "2", "--print-addrs", "--log", "warn"])
            // Tests keep their files in temporary folders: allow those and
            // the working directory (a test's own flag or variable wins).
            .env(
                "WEIR_ALLOWED_PATHS",
                format!("{},{}", std::env::temp_dir().display(), cwd.display()),
            )
            .args(args)
            .envs(env.iter().copied())
            .current_dir(cwd)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the weir binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the address line");
        if line.is_empty() {
            let _ = child.wait();
            return None;
        }
        let addrs: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("weir printed {line:?} instead of its addresses: {e}"));
        let port = |key: &str| -> u16 {
            let addr = addrs[key].as_str().expect("address");
            addr.rsplit(':')
                .next()
                .expect("port")
                .parse()
                .expect("port number")
        };
        Some(Self {
            pg_port: port("pg_addr"),
            http_port: port("http_addr"),
            child,
        })
    }

    /// A tokio-postgres config for this server.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.pg_port)
            .user("weir")
            .dbname("weir");
        config
    }

    /// A connection string for other clients.
    pub fn url(&self) -> String {
        format!("postgresql://weir@127.0.0.1:{}/weir", self.pg_port)
    }

    /// Has the process exited by itself (e.g. at a failpoint)?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// `kill -9`: no chance to clean up, as in a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for a clean exit; returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait for weir")
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connect with tokio-postgres and drive the connection in the background.
pub async fn connect(server: &WeirProcess) -> tokio_postgres::Client {
    let (client, connection) = server
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to weir");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A plain HTTP GET on 127.0.0.1 (no client library needed for two routes).
pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect http");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

/// Under CI (`CI=true`) every client the tests use must be installed.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Is `program` installed (does `program probe...` succeed)? Missing is a
/// skip locally and a failure under CI.
pub fn have(program: &str, probe: &[&str]) -> bool {
    let found = Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !required(),
            "{program} is required under CI but is not installed"
        );
        eprintln!("skipped: {program} is not installed");
    }
    found
}

/// psql running `script` from its standard input (`-f -`, no psqlrc), as a
/// user at a terminal would: (stdout, stderr). Errors and notices go to
/// stderr, prefixed `psql:<stdin>:LINE:`.
pub fn psql_script(server: &WeirProcess, args: &[&str], script: &str) -> (String, String) {
    use std::io::Write;
    let output = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-U", "weir", "-d", "weir"])
        .args(["-p", &server.pg_port.to_string(), "-f", "-"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run psql");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The rows of `sql` as sorted text lines (cells joined by `|`), to compare
/// two results as multisets.
pub async fn sorted_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let mut rows: Vec<String> = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect();
    rows.sort();
    rows
}

/// What a sink's committed files in `folder` add up to (see
/// [`folded_sinks`]).
pub fn folded_sink(folder: &Path, columns: &[&str]) -> Vec<String> {
    folded_sinks(&[folder.to_path_buf()], columns)
}

/// What the committed files (JSON lines or CSV) of `folders` add up to,
/// taken together: `columns` joined by `|` per row, inserts counting +1
/// and deletes -1. Panics if a row ends up counted twice or deleted more
/// often than inserted: a sink then wrote something twice (or a change
/// reached two sinks).
pub fn folded_sinks(folders: &[PathBuf], columns: &[&str]) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(folder) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.path().is_file() {
                continue;
            }
            for row in rows_of(&entry.path()) {
                let key = columns
                    .iter()
                    .map(|c| row.get(*c).cloned().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("|");
                let op = row.get("op").map(String::as_str);
                *counts.entry(key).or_default() += if op == Some("delete") { -1 } else { 1 };
            }
        }
    }
    assert!(
        counts.values().all(|c| *c == 0 || *c == 1),
        "a row written twice or deleted twice across {folders:?}: {:?}",
        counts
            .iter()
            .filter(|(_, c)| **c != 0 && **c != 1)
            .collect::<Vec<_>>()
    );
    counts
        .into_iter()
        .filter(|(_, c)| *c == 1)
        .map(|(k, _)| k)
        .collect()
}

/// Write ids `from..from+n` into the tables `t (id BIGINT PRIMARY KEY, k
/// BIGINT)` and `a (id BIGINT, k BIGINT)`, and update and delete some of
/// `t`'s rows: the changes views over owned tables are tested with.
pub async fn write_t_and_a(client: &tokio_postgres::Client, from: i64, n: i64) {
    let to = from + n - 1;
    client
        .batch_execute(&format!(
            "INSERT INTO t SELECT v, v % 11 FROM generate_series({from}, {to}) AS s(v);
             INSERT INTO a SELECT v, v % 7 FROM generate_series({from}, {to}) AS s(v);
             UPDATE t SET k = k + 1 WHERE id BETWEEN {from} AND {from} + 9;
             DELETE FROM t WHERE id BETWEEN {from} + 10 AND {from} + 14"
        ))
        .await
        .expect("write");
}

/// Wait (FLUSH, then poll) until what `folders` committed adds up to
/// `query`'s batch answer.
pub async fn wait_for_sinks(
    client: &tokio_postgres::Client,
    query: &str,
    folders: &[PathBuf],
    columns: &[&str],
) {
    client.simple_query("FLUSH").await.expect("FLUSH");
    let expected = sorted_rows(client, query).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let written = folded_sinks(folders, columns);
        if written == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sinks in {folders:?} never equalled the batch answer: {} rows written, {} expected",
            written.len(),
            expected.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The rows of one committed sink file, as maps of column to text.
pub fn rows_of(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).expect("read a sink file");
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => text
            .lines()
            .map(|line| {
                let row: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(line).expect("a json line");
                row.into_iter()
                    .map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (k, v)
                    })
                    .collect()
            })
            .collect(),
        Some("csv") => {
            let mut lines = text.lines();
            let Some(header) = lines.next() else {
                return Vec::new();
            };
            let names: Vec<&str> = header.split(',').collect();
            lines
                .map(|line| {
                    names
                        .iter()
                        .zip(line.split(','))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .collect()
        }
        _ => Vec::new(),
    }
}
