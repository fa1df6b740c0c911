//! Stopping queries through the real binary, every way a Postgres user can:
//! psql's Ctrl-C, psycopg's `cancel()`, tokio-postgres's `cancel_token()`
//! (all three the protocol's CancelRequest), `pg_cancel_backend(pid)` from
//! another session, `statement_timeout` (simple and extended protocol) and
//! a client that goes away. Each ends a 1e6 x 1e6 cross join with 57014 (or
//! its connection) and the server's CPU falls back to idle: the work stops,
//! not only the answer. Another client's `SELECT 1` answers while the cross
//! join runs. `pg_stat_activity` lists the sessions; `max_connections`
//! refuses one more with 53300. `query_memory_limit` bounds a query's
//! memory: a DISTINCT over millions of keys spills and answers while weir's
//! RSS stays bounded, a hash join's build side (which cannot spill) fails
//! with 53200, and the server goes on.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::WeirProcess;

/// Runs far longer than any test: a 1e6 x 1e6 cross join, aggregated.
const ENDLESS: &str = "SELECT count(*) FROM generate_series(1, 1000000) AS a(x) \
                       CROSS JOIN generate_series(1, 1000000) AS b(y)";

async fn connect(server: &WeirProcess, application: &str) -> tokio_postgres::Client {
    let (client, connection) = server
        .pg_config()
        .application_name(application)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn first(messages: &[tokio_postgres::SimpleQueryMessage]) -> String {
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a row")
}

fn code(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map(|e| format!("{} {}", e.code().code(), e.message()))
        .unwrap_or_else(|| err.to_string())
}

/// Poll `check` until it holds, for up to a minute.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pid of the backend whose application_name is `application`, once it
/// is running a statement.
async fn active_pid(observer: &tokio_postgres::Client, application: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = observer
            .query(
                "SELECT pid, state FROM pg_catalog.pg_stat_activity WHERE application_name = $1",
                &[&application],
            )
            .await
            .expect("pg_stat_activity");
        if let Some(row) = rows.first()
            && row.get::<_, &str>(1) == "active"
        {
            return row.get(0);
        }
        assert!(
            Instant::now() < deadline,
            "{application} never showed as active"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The weir process serving `data_dir` (found by its command line: the
/// helper that started it keeps the child to itself).
fn weir_pid(data_dir: &Path) -> u32 {
    let wanted = data_dir.as_os_str().as_encoded_bytes();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.iter().any(|a| a.ends_with(b"weir"))
            && args.contains(&b"serve".as_slice())
            && args.contains(&wanted)
        {
            return pid;
        }
    }
    panic!("no weir process serves {}", data_dir.display());
}

/// CPU seconds `pid` has used so far (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name (which may hold spaces) in parentheses:
    // state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 1..]
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf CLK_TCK");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a number of ticks")
}

/// Cores `pid` kept busy over the next second.
async fn cores_busy(pid: u32) -> f64 {
    let (before, started) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    (cpu_seconds(pid) - before) / started.elapsed().as_secs_f64()
}

/// A second in which weir used less than a twentieth of a core (an idle
/// weir measures 0.00): the stopped query's work is gone. Polled, with a
/// generous deadline; returns what it measured.
async fn settles(pid: u32, what: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cores = cores_busy(pid).await;
        if cores < 0.05 {
            return cores;
        }
        assert!(
            Instant::now() < deadline,
            "after {what}, weir still keeps {cores:.2} cores busy"
        );
    }
}

/// A second in which weir used more than a tenth of a core: the query runs.
/// (Alone it keeps up to two cores busy; on a machine shared with builds and
/// other tests it gets what the scheduler leaves it, hence the low bar.)
async fn busy(pid: u32) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cores = cores_busy(pid).await;
        if cores > 0.1 {
            return cores;
        }
        assert!(
            Instant::now() < deadline,
            "the cross join never kept weir busy"
        );
    }
}

/// The cross join of `application` runs: listed active, weir busy, and
/// another client's `SELECT 1` answers meanwhile (the query still running).
async fn running(observer: &tokio_postgres::Client, weir: u32, application: &str) -> i32 {
    let pid = active_pid(observer, application).await;
    let cores = busy(weir).await;
    let asked = Instant::now();
    let one = observer.simple_query("SELECT 1").await.expect("select 1");
    eprintln!(
        "{application}: weir at {cores:.2} cores; another client's SELECT 1 answered in {:?}",
        asked.elapsed()
    );
    assert_eq!(first(&one), "1");
    assert_eq!(
        active_pid(observer, application).await,
        pid,
        "still running"
    );
    pid
}

/// After the query of `application` was stopped (`how`): its backend is
/// idle or gone, and weir's CPU falls back.
async fn stopped(observer: &tokio_postgres::Client, weir: u32, application: &str, how: &str) {
    eventually(&format!("{application} no longer active"), || async {
        let rows = observer
            .query(
                "SELECT state FROM pg_catalog.pg_stat_activity WHERE application_name = $1",
                &[&application],
            )
            .await
            .expect("pg_stat_activity");
        rows.first()
            .is_none_or(|row| row.get::<_, &str>(0) != "active")
    })
    .await;
    let cores = settles(weir, how).await;
    eprintln!("{how}: weir back at {cores:.2} cores");
}

fn psql(server: &WeirProcess, application: &str, sql: &str) -> std::process::Child {
    Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &server.pg_port.to_string()])
        .args(["-U", "weir", "-d", "weir", "-c", sql])
        .env("PGAPPNAME", application)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start psql")
}

const PSYCOPG_CANCEL: &str = r#"
import sys, threading, psycopg
port, application, method, sql = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
dsn = f"host=127.0.0.1 port={port} dbname=weir user=weir"
conn = psycopg.connect(dsn, application_name=application, autocommit=True)
def cancel_when_told():
    sys.stdin.readline()
    getattr(conn, method)()
threading.Thread(target=cancel_when_told, daemon=True).start()
try:
    conn.execute(sql)
    print("finished")
except psycopg.errors.QueryCanceled as e:
    print(e.sqlstate, str(e).strip())
"#;

/// The tests that measure weir's CPU and memory run one at a time: each
/// would otherwise take the other's CPU and blur its figures.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_of_stopping_a_query_stops_its_work() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let weir = weir_pid(dir.path());
    let observer = connect(&server, "observer").await;

    // Each session its own pid, listed with its user and application.
    let runner = connect(&server, "runner").await;
    let pid: i32 = runner
        .query_one("SELECT pg_backend_pid()::INT", &[])
        .await
        .expect("pid")
        .get(0);
    let observer_pid: i32 = observer
        .query_one("SELECT pg_backend_pid()::INT", &[])
        .await
        .expect("pid")
        .get(0);
    assert_ne!(pid, observer_pid);
    let row = observer
        .query_one(
            "SELECT usename, client_addr, state FROM pg_catalog.pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .expect("listed");
    assert_eq!(row.get::<_, &str>(0), "weir");
    assert_eq!(row.get::<_, &str>(1), "127.0.0.1");
    assert_eq!(row.get::<_, &str>(2), "idle");

    // 1. tokio-postgres's cancel_token(): a CancelRequest.
    let client = connect(&server, "tokio-postgres").await;
    let token = client.cancel_token();
    let query = tokio::spawn(async move { client.simple_query(ENDLESS).await.map(|_| ()) });
    running(&observer, weir, "tokio-postgres").await;
    let asked = Instant::now();
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("send the CancelRequest");
    let err = query.await.expect("join").expect_err("cancelled");
    eprintln!("cancel_token: 57014 after {:?}", asked.elapsed());
    assert_eq!(code(&err), "57014 canceling statement due to user request");
    stopped(&observer, weir, "tokio-postgres", "cancel_token").await;

    // 2. pg_cancel_backend from another session, the extended protocol.
    let client = connect(&server, "runner-1").await;
    let query = tokio::spawn(async move { client.query(ENDLESS, &[]).await.map(|_| ()) });
    let target = running(&observer, weir, "runner-1").await;
    let asked = Instant::now();
    let rows = observer
        .simple_query(&format!("SELECT pg_cancel_backend({target})"))
        .await
        .expect("pg_cancel_backend");
    assert_eq!(first(&rows), "t");
    let err = query.await.expect("join").expect_err("cancelled");
    eprintln!("pg_cancel_backend: 57014 after {:?}", asked.elapsed());
    assert_eq!(code(&err), "57014 canceling statement due to user request");
    stopped(&observer, weir, "runner-1", "pg_cancel_backend").await;

    // 3. statement_timeout, set in the session, in both protocols.
    runner
        .batch_execute("SET statement_timeout = '1s'")
        .await
        .expect("set");
    let asked = Instant::now();
    let err = runner.simple_query(ENDLESS).await.expect_err("timed out");
    eprintln!("statement_timeout 1s: 57014 after {:?}", asked.elapsed());
    assert_eq!(
        code(&err),
        "57014 canceling statement due to statement timeout"
    );
    stopped(&observer, weir, "runner", "statement_timeout (simple)").await;
    let err = runner.query(ENDLESS, &[]).await.expect_err("timed out");
    assert_eq!(
        code(&err),
        "57014 canceling statement due to statement timeout"
    );
    stopped(&observer, weir, "runner", "statement_timeout (extended)").await;
    // The session goes on.
    runner
        .batch_execute("SET statement_timeout = 0")
        .await
        .expect("reset");
    assert_eq!(
        first(&runner.simple_query("SELECT 2").await.expect("select")),
        "2"
    );

    // 4. psql's Ctrl-C: SIGINT makes psql send a CancelRequest.
    if common::have("psql", &["--version"]) {
        let child = psql(&server, "psql-cancel", ENDLESS);
        running(&observer, weir, "psql-cancel").await;
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill -INT");
        assert!(status.success());
        let out = child.wait_with_output().expect("psql ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("canceling statement due to user request"),
            "psql said: {stderr}"
        );
        stopped(&observer, weir, "psql-cancel", "psql's Ctrl-C").await;

        // 5. A client that goes away mid-query: its query stops too.
        let mut child = psql(&server, "psql-killed", ENDLESS);
        running(&observer, weir, "psql-killed").await;
        child.kill().expect("kill -9 psql");
        let _ = child.wait();
        stopped(&observer, weir, "psql-killed", "the client's disconnect").await;
        eventually("the killed client's backend to go", || async {
            observer
                .query(
                    "SELECT 1 FROM pg_catalog.pg_stat_activity WHERE application_name = 'psql-killed'",
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .is_empty()
        })
        .await;
    }

    // 6. psycopg's cancel() and cancel_safe() (libpq's old and new cancel).
    let python = std::env::var("WEIR_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    if common::have(&python, &["-c", "import psycopg"]) {
        for method in ["cancel", "cancel_safe"] {
            let application = format!("psycopg-{method}");
            let mut child = Command::new(&python)
                .args(["-c", PSYCOPG_CANCEL, &server.pg_port.to_string()])
                .args([application.as_str(), method, ENDLESS])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("python");
            running(&observer, weir, &application).await;
            // Tell the script to cancel now.
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"now\n")
                .expect("tell python");
            let out = child.wait_with_output().expect("python ends");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                stdout.trim(),
                "57014 canceling statement due to user request",
                "psycopg {method}()"
            );
            stopped(
                &observer,
                weir,
                &application,
                &format!("psycopg {method}()"),
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_from_the_config_and_max_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(
        dir.path(),
        &["--statement-timeout", "200ms", "--max-connections", "3"],
        &[],
    );
    let a = connect(&server, "a").await;
    let shown = a
        .simple_query("SHOW statement_timeout")
        .await
        .expect("show");
    assert_eq!(first(&shown), "200ms");
    let err = a.simple_query(ENDLESS).await.expect_err("timed out");
    assert_eq!(
        code(&err),
        "57014 canceling statement due to statement timeout"
    );

    let _b = connect(&server, "b").await;
    let _c = connect(&server, "c").await;
    let Err(err) = server.pg_config().connect(tokio_postgres::NoTls).await else {
        panic!("a fourth connection was accepted past max_connections = 3");
    };
    assert_eq!(code(&err), "53300 sorry, too many clients already");
    drop(_c);
    eventually("a freed slot", || async {
        server
            .pg_config()
            .connect(tokio_postgres::NoTls)
            .await
            .is_ok()
    })
    .await;
}

/// weir's resident memory now, in bytes (from /proc).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Run `sql` on `client`, sampling weir's RSS every 50 ms meanwhile;
/// the result and the highest RSS seen.
async fn with_peak_rss(
    client: &tokio_postgres::Client,
    weir: u32,
    sql: &str,
) -> (Result<String, tokio_postgres::Error>, u64) {
    let query = client.simple_query(sql);
    tokio::pin!(query);
    let mut peak = rss_bytes(weir);
    loop {
        tokio::select! {
            result = &mut query => return (result.map(|rows| first(&rows)), peak.max(rss_bytes(weir))),
            () = tokio::time::sleep(Duration::from_millis(50)) => peak = peak.max(rss_bytes(weir)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_memory_limit_spills_or_fails_with_53200() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const MB: u64 = 1 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let weir = weir_pid(dir.path());
    let client = connect(&server, "memory").await;
    let shown = client
        .simple_query("SHOW query_memory_limit")
        .await
        .expect("show");
    assert_eq!(first(&shown), "1GB", "the default");
    let err = client
        .batch_execute("SET query_memory_limit = 'lots'")
        .await
        .expect_err("not a size");
    assert!(code(&err).starts_with("22023 "), "{}", code(&err));

    // 4e6 distinct keys, in no order (so the aggregate needs a hash table):
    // about 200 MB more of RSS without a limit. With 16 MB the aggregate
    // spills and still answers; RSS stays well below that.
    client
        .batch_execute("SET query_memory_limit = '16MB'")
        .await
        .expect("set");
    let before = rss_bytes(weir);
    let (count, peak) = with_peak_rss(
        &client,
        weir,
        "SELECT count(DISTINCT (x * 7919) % 100000007) FROM generate_series(1, 4000000) AS t(x)",
    )
    .await;
    eprintln!(
        "DISTINCT over 4e6 keys at 16MB: RSS {} MB before, peak {} MB",
        before / MB,
        peak / MB
    );
    assert_eq!(count.expect("spilled and answered"), "4000000");
    assert!(
        peak < before + 150 * MB,
        "RSS grew from {} MB to {} MB under a 16 MB limit",
        before / MB,
        peak / MB
    );

    // A hash join's build side cannot spill: past the limit, 53200 naming
    // the limit, and the session and the server go on.
    client
        .batch_execute("SET query_memory_limit = '8MB'")
        .await
        .expect("set");
    let err = client
        .simple_query(
            "SELECT count(*) FROM generate_series(1, 3000000) AS a(x) \
             JOIN generate_series(1, 3000000) AS b(y) ON x = y",
        )
        .await
        .expect_err("past the limit");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53200", "{}", db.message());
    assert!(
        db.hint().is_some_and(|h| h.contains("query_memory_limit")),
        "{:?}",
        db.hint()
    );
    client
        .batch_execute("SET query_memory_limit = '1GB'")
        .await
        .expect("reset");
    let one = client.simple_query("SELECT 1").await.expect("select 1");
    assert_eq!(first(&one), "1");
}
