//! Per-job metrics on `/metrics`, checked with Prometheus's own parser (the
//! `prometheus_client` Python package, OpenMetrics and classic text), over
//! the whole output of a server running jobs: every family has HELP and
//! TYPE, counters end in `_total`, units are base units in the name, and
//! each job has rows in and out, its watermark lag, its state size, its
//! checkpoints' duration and size, its restarts and its status.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::WeirProcess;

/// A generous deadline for what a test waits on (never a timed assertion:
/// only a broken server reaches it).
const DEADLINE: Duration = Duration::from_secs(120);

/// Parses the exposition on stdin with both of prometheus_client's parsers
/// and checks the conventions; prints `family type label=value,...` per
/// sample for the test to look at.
const CHECK: &str = r##"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic

text = sys.stdin.read()
families = list(openmetrics(text))
classic_text = "\n".join(l for l in text.splitlines() if l != "# EOF") + "\n"
# The classic text parser (what older Prometheus servers use) reads it too.
list(classic(classic_text))
problems = []
for f in families:
    if not f.documentation:
        problems.append(f"{f.name}: no HELP")
    if f.type not in ("counter", "gauge", "histogram", "summary", "info", "stateset"):
        problems.append(f"{f.name}: TYPE {f.type}")
    for unit, words in (("seconds", ("second", "duration", "_ms", "millis", "latency")), ("bytes", ("byte", "size"))):
        if any(w in f.name for w in words) and not f.name.endswith("_" + unit):
            problems.append(f"{f.name}: not in base unit {unit}")
    if f.type == "gauge" and f.name.endswith("_total"):
        problems.append(f"{f.name}: a gauge named like a counter")
    for s in f.samples:
        if f.type == "counter" and not s.name.endswith(("_total", "_created")):
            problems.append(f"{s.name}: a counter sample without _total")
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{f.name} {f.type} {labels} {s.value}")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
"##;

/// The parsed samples of `/metrics` as `family type labels value` lines.
fn parsed(python: &str, exposition: &str) -> Vec<String> {
    let mut child = Command::new(python)
        .args(["-c", CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write the exposition");
    let output = child.wait_with_output().expect("python");
    assert!(
        output.status.success(),
        "/metrics does not follow Prometheus's conventions:\n{}\n{exposition}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The body of a `/metrics` response.
async fn metrics(server: &WeirProcess) -> String {
    let response = common::http_get(server.http_port, "/metrics").await;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .expect("an HTTP response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_job_metrics_follow_prometheus_conventions_and_cover_every_job() {
    let python = std::env::var("WEIR_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let probe = Command::new(&python)
        .args(["-c", "import prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !probe {
        assert!(
            !common::required(),
            "prometheus_client is required under CI"
        );
        eprintln!("skipped: prometheus_client is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(dir.path(), &["--checkpoint-interval", "200ms"], &[]);
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE STREAM clicks (page TEXT, at TIMESTAMP, WATERMARK FOR at AS at - INTERVAL '1 second');
             CREATE MATERIALIZED VIEW per_page AS
               SELECT page, window_start, count(*) AS n
               FROM TUMBLE(clicks, at, INTERVAL '1 minute') GROUP BY page, window_start, window_end
               EMIT ON WINDOW CLOSE;
             CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT);
             CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n FROM t GROUP BY k;
             INSERT INTO t SELECT v, v % 5 FROM generate_series(1, 100) AS s(v);
             INSERT INTO clicks VALUES ('a', now()::timestamp - INTERVAL '1 hour'),
                                       ('b', now()::timestamp - INTERVAL '1 hour');
             ALTER JOB per_k RESTART;
             FLUSH",
        )
        .await
        .expect("two jobs, one restarted");
    // Poll until every job family has its series (checkpoints and the lag
    // gauge are written in the background).
    let wanted = [
        ("weir_job_rows_in", "per_k"),
        ("weir_job_rows_out", "per_k"),
        ("weir_job_rows_in", "per_page"),
        ("weir_job_watermark_lag_seconds", "per_page"),
        ("weir_job_state_bytes", "per_k"),
        ("weir_checkpoint_duration_seconds", "per_k"),
        ("weir_checkpoint_size_bytes", "per_k"),
        ("weir_checkpoints_completed", "per_page"),
        ("weir_job_restarts", "per_k"),
        ("weir_job_status", "per_page"),
    ];
    let deadline = Instant::now() + DEADLINE;
    let samples = loop {
        let samples = parsed(&python, &metrics(&server).await);
        let missing: Vec<_> = wanted
            .iter()
            .filter(|(family, job)| {
                !samples.iter().any(|s| {
                    s.starts_with(&format!("{family} "))
                        && s.split(' ')
                            .nth(2)
                            .is_some_and(|l| l.split(',').any(|kv| kv == format!("job={job}")))
                })
            })
            .collect();
        if missing.is_empty() {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "missing series: {missing:?}\n{}",
            samples.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let value = |family: &str, labels: &str| -> f64 {
        samples
            .iter()
            .find(|s| s.starts_with(&format!("{family} ")) && s.split(' ').nth(2) == Some(labels))
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {family} {{{labels}}}"))
    };
    assert_eq!(value("weir_job_rows_in", "job=per_page"), 2.0);
    assert_eq!(value("weir_job_restarts", "job=per_k"), 1.0);
    assert_eq!(value("weir_job_status", "job=per_k,status=running"), 1.0);
    assert_eq!(value("weir_job_status", "job=per_k,status=failed"), 0.0);
    assert!(value("weir_job_state_bytes", "job=per_k") > 0.0);
    // The watermark is an hour and a second behind the wall clock.
    let lag = value("weir_job_watermark_lag_seconds", "job=per_page");
    assert!(lag > 3600.0, "watermark lag {lag}");
    // Per operator where it applies.
    assert!(
        samples
            .iter()
            .any(|s| s.starts_with("weir_operator_state_entries gauge job=per_k,operator=")),
        "{}",
        samples.join("\n")
    );
}
