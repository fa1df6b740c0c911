//! Checkpoints in an S3-compatible object store: moto's server (from PyPI,
//! installed by `.ci/setup`) stands in for S3. A job checkpoints into a
//! bucket, the server is killed with SIGKILL, and the restarted job resumes
//! from the bucket's latest checkpoint with every row counted exactly once.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{WeirProcess, connect, have, http_get};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// (rows counted, the sum of their ids is the sum 0..rows: each exactly once)
async fn counted(server: &WeirProcess) -> (i64, bool) {
    // The view's rows come from two aggregate workers, and a read can fall
    // between their outputs for one input batch (the view is applied per
    // worker message, not per barrier). A lost or doubled row never becomes
    // exact again, so reading until exact (a few times) keeps the check's
    // power while tolerating that window.
    let client = connect(server).await;
    let mut last = (0, false);
    for _ in 0..20 {
        let row = client
            .query_one(
                "SELECT sum(n)::BIGINT, sum(s) = sum(n) * (sum(n) - 1) / 2 FROM per_key",
                &[],
            )
            .await
            .expect("read the view");
        last = (
            row.get::<_, Option<i64>>(0).unwrap_or(0),
            row.get::<_, Option<bool>>(1).unwrap_or(true),
        );
        if last.1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last
}

async fn checkpoints(server: &WeirProcess) -> i64 {
    let metrics = http_get(server.http_port, "/metrics").await;
    metrics
        .lines()
        .find(|l| l.starts_with("weir_checkpoints_completed_total{job=\"per_key\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_in_s3_survive_a_crash() {
    if !have("moto_server", &["--help"]) {
        return;
    }
    let port = free_port();
    let _moto = Moto(
        Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server"),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    // Create the bucket (an S3 PUT on the bucket's path).
    let mut created = false;
    for _ in 0..100 {
        let status = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
            .arg(format!("{endpoint}/weir-checkpoints"))
            .output();
        if status.is_ok_and(|o| o.stdout.starts_with(b"200")) {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created, "moto_server did not come up on {endpoint}");

    let env = [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "weir"),
        ("AWS_SECRET_ACCESS_KEY", "weir"),
        ("AWS_REGION", "us-east-1"),
    ];
    let args = [
        "--checkpoint-interval",
        "200ms",
        "--checkpoint-url",
        "s3://weir-checkpoints/cluster-a",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &args, &env);
    let client = connect(&server).await;
    client
        .batch_execute(
            "CREATE STREAM ev (id BIGINT, k BIGINT) WITH (connector = 'datagen', rate = '5000',
               'fields.k.kind' = 'random', 'fields.k.min' = '0', 'fields.k.max' = '99');
             CREATE MATERIALIZED VIEW per_key AS
               SELECT k, count(*) AS n, sum(id) AS s FROM ev GROUP BY k",
        )
        .await
        .expect("create the job");
    let mut waited = 0;
    while checkpoints(&server).await < 3 {
        waited += 1;
        assert!(waited < 200, "no checkpoint reached the bucket");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (before, exact) = counted(&server).await;
    assert!(exact && before > 0, "{before} rows, exact: {exact}");
    server.kill();

    // The bucket holds the manifests and chunks.
    let listing = Command::new("curl")
        .arg("-s")
        .arg(format!(
            "{endpoint}/weir-checkpoints?list-type=2&prefix=cluster-a/per_key/"
        ))
        .output()
        .expect("list the bucket");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("manifest-"), "{listing}");
    assert!(listing.contains(".arrow"), "{listing}");

    let server = WeirProcess::start_with(dir.path(), &args, &env);
    // Resumed, not restarted: the restored counts are there at once, and
    // rows keep coming, each exactly once.
    let (restored, exact) = counted(&server).await;
    assert!(exact, "after the restart a row was lost or counted twice");
    assert!(restored > 0, "the view was not restored from the bucket");
    // The generator paces itself (5000 rows/s in batches of 4096): wait for
    // the next batch after the restored position.
    let client = connect(&server).await;
    let mut after = restored;
    let mut exact = true;
    for _ in 0..100 {
        client.batch_execute("FLUSH").await.expect("flush");
        (after, exact) = counted(&server).await;
        if after > restored || !exact {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        exact && after > restored,
        "{restored} -> {after}, exact: {exact}"
    );
}
