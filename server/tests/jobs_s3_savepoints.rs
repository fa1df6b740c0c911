//! Savepoints in an S3-compatible object store (moto's server stands in for
//! S3, as in `s3.rs`): a savepoint is self-contained in the bucket, outlives
//! checkpoint retention and the `DROP` of its job, and starts a new job of
//! the same query, whose rows are then each counted exactly once.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{WeirProcess, connect, have, http_get};

/// A generous deadline for what a test waits on (never a timed assertion:
/// only a broken server reaches it).
const DEADLINE: Duration = Duration::from_secs(120);

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

/// The keys in the bucket under `prefix`.
fn listed(endpoint: &str, prefix: &str) -> String {
    let listing = Command::new("curl")
        .arg("-s")
        .arg(format!(
            "{endpoint}/weir-checkpoints?list-type=2&prefix={prefix}"
        ))
        .output()
        .expect("list the bucket");
    String::from_utf8_lossy(&listing.stdout).into_owned()
}

/// Rows counted by the view, once its counts are exact: every id from 0 up
/// counted once (the generator's ids count up from 0).
async fn exact_count(client: &tokio_postgres::Client) -> i64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        // A read may fall between two workers' outputs for one input
        // batch; a lost or doubled row never becomes exact again.
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

async fn checkpoints(server: &WeirProcess) -> i64 {
    let metrics = http_get(server.http_port, "/metrics").await;
    metrics
        .lines()
        .find(|l| l.starts_with("weir_checkpoints_completed_total{job=\"per_key\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn wait_checkpoints(server: &WeirProcess, at_least: i64) {
    let deadline = Instant::now() + DEADLINE;
    while checkpoints(server).await < at_least {
        assert!(Instant::now() < deadline, "checkpoints stopped coming");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const VIEW: &str = "CREATE MATERIALIZED VIEW per_key AS
    SELECT k, count(*) AS n, sum(id) AS s FROM ev GROUP BY k";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_in_s3_outlives_retention_and_its_job_and_starts_a_new_one() {
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
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
            .arg(format!("{endpoint}/weir-checkpoints"))
            .output();
        if status.is_ok_and(|o| o.stdout.starts_with(b"200")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not come up on {endpoint}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
        .batch_execute(&format!(
            "CREATE STREAM ev (id BIGINT, k BIGINT) WITH (connector = 'datagen', rate = '5000',
               'fields.k.kind' = 'random', 'fields.k.min' = '0', 'fields.k.max' = '99');
             {VIEW}"
        ))
        .await
        .expect("create the job");
    wait_checkpoints(&server, 2).await;
    client
        .batch_execute("CREATE SAVEPOINT sp FOR JOB per_key")
        .await
        .expect("a savepoint");
    let saved = listed(&endpoint, "cluster-a/savepoints/sp/");
    assert!(saved.contains("savepoint.json"), "{saved}");
    assert!(
        saved.contains(".arrow"),
        "the savepoint holds its chunks: {saved}"
    );

    // Retention moves on past the savepoint's checkpoint, then the job is
    // dropped: the savepoint is untouched.
    let now = checkpoints(&server).await;
    wait_checkpoints(&server, now + 10).await;
    client
        .batch_execute("DROP MATERIALIZED VIEW per_key")
        .await
        .expect("drop the job");
    assert_eq!(
        listed(&endpoint, "cluster-a/savepoints/sp/"),
        saved,
        "retention and DROP left the savepoint as it was"
    );

    // A new job of the same query starts from it: its counts are the
    // savepoint's, then it reads on from the savepoint's positions, each
    // row exactly once.
    client.batch_execute(VIEW).await.expect("a new job");
    client
        .batch_execute("ALTER JOB per_key SUSPEND")
        .await
        .expect("suspend the new job");
    client
        .batch_execute("ALTER JOB per_key RESUME FROM SAVEPOINT sp")
        .await
        .expect("resume the new job from the savepoint");
    let restored = exact_count(&client).await;
    assert!(restored > 0, "the new job has the savepoint's state");
    let deadline = Instant::now() + DEADLINE;
    loop {
        client.batch_execute("FLUSH").await.expect("flush");
        let after = exact_count(&client).await;
        if after > restored {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed job read nothing after the savepoint"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events: Vec<String> = client
        .simple_query("SHOW JOB EVENTS per_key")
        .await
        .expect("events")
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get("reason").map(str::to_string),
            _ => None,
        })
        .collect();
    // The job's folder was made to start at the savepoint: it resumed
    // from the savepoint's epoch.
    let epoch = client
        .simple_query("SHOW SAVEPOINTS FOR JOB per_key")
        .await
        .expect("savepoints")
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get("name") == Some("sp") => {
                r.get("epoch").map(str::to_string)
            }
            _ => None,
        })
        .expect("savepoint sp listed");
    assert!(
        events
            .iter()
            .any(|e| e == &format!("resumed from checkpoint {epoch}")),
        "the job resumed from the savepoint's epoch {epoch}: {events:?}"
    );
}
