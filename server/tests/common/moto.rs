//! S3 for tests: moto's server (from PyPI, installed by `.ci/setup`) on a
//! free port with the bucket `weir-checkpoints`, the flags and environment
//! that point a `weir` server's checkpoints at it, and the job both S3
//! tests run: a view counting a generator's rows by key, whose counts are
//! exact when every id from 0 up is counted once.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{WeirProcess, http_get};

/// A generous deadline for what a test waits on (never a timed assertion:
/// only a broken server reaches it).
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The stream and view both S3 tests checkpoint.
pub const STREAM: &str = "CREATE STREAM ev (id BIGINT, k BIGINT) WITH (connector = 'datagen',
    rate = '5000', 'fields.k.kind' = 'random', 'fields.k.min' = '0', 'fields.k.max' = '99')";

/// The view over [`STREAM`].
pub const VIEW: &str = "CREATE MATERIALIZED VIEW per_key AS
    SELECT k, count(*) AS n, sum(id) AS s FROM ev GROUP BY k";

/// Checkpoints every 200 ms into the bucket, under `cluster-a/`.
pub const ARGS: [&str; 4] = [
    "--checkpoint-interval",
    "200ms",
    "--checkpoint-url",
    "s3://weir-checkpoints/cluster-a",
];

/// A running moto server with the bucket made; killed when dropped.
pub struct Moto {
    child: Child,
    /// Its URL.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Start moto and make the bucket; `None` (a skip, or a failure under
    /// CI) where moto is not installed.
    pub async fn start() -> Option<Self> {
        if !crate::common::have("moto_server", &["--help"]) {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let moto = Self {
            child: Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto_server"),
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        // Make the bucket (an S3 PUT on its path) once moto answers.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let status = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
                .arg(format!("{}/weir-checkpoints", moto.endpoint))
                .output();
            if status.is_ok_and(|o| o.stdout.starts_with(b"200")) {
                return Some(moto);
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not come up on {}",
                moto.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The environment that points a server's S3 client at moto.
    pub fn env(&self) -> [(&str, &str); 5] {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "weir"),
            ("AWS_SECRET_ACCESS_KEY", "weir"),
            ("AWS_REGION", "us-east-1"),
        ]
    }

    /// The keys in the bucket under `prefix`, as S3 lists them.
    pub fn listed(&self, prefix: &str) -> String {
        let listing = Command::new("curl")
            .arg("-s")
            .arg(format!(
                "{}/weir-checkpoints?list-type=2&prefix={prefix}",
                self.endpoint
            ))
            .output()
            .expect("list the bucket");
        String::from_utf8_lossy(&listing.stdout).into_owned()
    }
}

/// Rows counted by the view, once its counts are exact: every id from 0 up
/// counted once (the generator's ids count up from 0).
pub async fn exact_count(client: &tokio_postgres::Client) -> i64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        // A read may fall between two workers' outputs for one input
        // batch (the view is applied per worker message, not per barrier);
        // a lost or doubled row never becomes exact again.
        let row = client
            .query_one(
                "SELECT sum(n)::BIGINT, sum(s) = sum(n) * (sum(n) - 1) / 2 FROM per_key",
                &[],
            )
            .await
            .expect("read the view");
        let n = row.get::<_, Option<i64>>(0).unwrap_or(0);
        if row.get::<_, Option<bool>>(1).unwrap_or(true) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "the view's counts never became exact: a row was lost or counted twice"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checkpoints `per_key` completed, from `/metrics`.
pub async fn checkpoints(server: &WeirProcess) -> i64 {
    let metrics = http_get(server.http_port, "/metrics").await;
    metrics
        .lines()
        .find(|l| l.starts_with("weir_checkpoints_completed_total{job=\"per_key\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Wait until `per_key` completed `at_least` checkpoints.
pub async fn wait_checkpoints(server: &WeirProcess, at_least: i64) {
    let deadline = Instant::now() + DEADLINE;
    while checkpoints(server).await < at_least {
        assert!(Instant::now() < deadline, "checkpoints stopped coming");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
