//! `--log-format json` through the real binary: every line weir writes to
//! stderr is one JSON object, and a job's transitions carry its name in a
//! `job` field that outside log systems can index; the same lines reach the
//! job's log in the API.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line_with_the_job_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("serve")
        .args(["--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--print-addrs", "--log", "info", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).expect("read") == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    let addrs: serde_json::Value = serde_json::from_slice(&first).expect("the address line");
    let port = |key: &str| -> u16 {
        let addr = addrs[key].as_str().expect("an address");
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    };
    let (pg, http) = (port("pg_addr"), port("http_addr"));
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={pg} user=weir dbname=weir"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 1000, seed = 3);
             CREATE MATERIALIZED VIEW bids_seen AS SELECT count(*) AS n FROM bid;
             ALTER JOB bids_seen SUSPEND;
             ALTER JOB bids_seen RESUME;",
        )
        .await
        .expect("a job that changes status");

    // The job's log through the API holds its transitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http_get(http, "/api/v1/jobs/bids_seen/logs").await;
        if status == 200 && body.contains("job status changed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no transitions in the job's log: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    child.kill().expect("stop weir");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let _ = child.wait();

    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "weir logged nothing");
    for line in &lines {
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "a line without level or time: {line}"
        );
    }
    let transitions: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "job status changed")
        .collect();
    assert!(
        transitions
            .iter()
            .any(|l| l["fields"]["job"] == "bids_seen" && l["fields"]["to"] == "suspended"),
        "no suspend transition with its job field in {transitions:?}"
    );
}

/// GET `path` on the HTTP port: status and body.
async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the HTTP port");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}
