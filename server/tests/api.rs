//! The REST API through the real binary: every route its OpenAPI
//! description documents is called, the description is checked by a real
//! validator (`openapi-spec-validator` from PyPI), and what the API changes
//! SQL sees (over pgwire) and the other way round.
//!
//! The job is a tumbling count over the `nexmark` generator, as in
//! `savepoints.rs`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::WeirProcess;
use serde_json::{Value, json};
use tokio_postgres::{Client, SimpleQueryMessage};

const DEADLINE: Duration = Duration::from_secs(120);
const TOKEN: &str = "api-test-token";

/// A plain HTTP/1.1 request (no client library: one connection per call).
async fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect http");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8(response).expect("utf-8");
    let (head, rest) = text.split_once("\r\n\r\n").expect("a response head");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    let value = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(Value::String(body))
    };
    (status, value)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// Calls the test made, by method and documented path, to check every
/// documented route was called.
struct Api {
    port: u16,
    called: BTreeSet<(String, String)>,
}

impl Api {
    /// `method` on `template` (as documented) with `{name}` filled in.
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        name: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let path = template.replace("{name}", name);
        self.called.insert((
            method.to_ascii_lowercase(),
            template.split('?').next().unwrap_or("").to_string(),
        ));
        http(self.port, method, &path, Some(TOKEN), body.as_ref()).await
    }

    /// `call`, which must answer `status`; its body.
    async fn expect(
        &mut self,
        method: &str,
        template: &str,
        name: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let (got, value) = self.call(method, template, name, body).await;
        assert_eq!(got, status, "{method} {template} ({name}): {value}");
        value
    }

    /// `call`, which must fail with `status` and SQLSTATE `code`; the error.
    async fn fails(
        &mut self,
        method: &str,
        template: &str,
        name: &str,
        body: Option<Value>,
        (status, code): (u16, &str),
    ) -> Value {
        let err = self.expect(method, template, name, body, status).await;
        assert_eq!(
            err["code"].as_str(),
            Some(code),
            "{method} {template}: {err}"
        );
        err
    }

    /// `POST /api/v1/sql` of `sql`.
    async fn sql(&mut self, sql: &str) -> (u16, Value) {
        self.call("POST", "/api/v1/sql", "", Some(json!({ "sql": sql })))
            .await
    }

    /// A job action (`suspend`, `resume`, `restart`) that must leave the
    /// job `status`.
    async fn act(&mut self, job: &str, action: &str, body: Option<Value>, status: &str) {
        let template = format!("/api/v1/jobs/{{name}}/{action}");
        let after = self.expect("POST", &template, job, body, 200).await;
        assert_eq!(after["status"].as_str(), Some(status), "{action}: {after}");
    }

    /// Whether SHOW SAVEPOINTS lists `name`.
    async fn sql_lists_savepoint(client: &Client, name: &str) -> bool {
        rows(client, "SHOW SAVEPOINTS")
            .await
            .iter()
            .any(|r| r.get("name") == Some(name))
    }
}

async fn rows(client: &Client, sql: &str) -> Vec<tokio_postgres::SimpleQueryRow> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

async fn sql_status(client: &Client, job: &str) -> String {
    rows(client, "SHOW JOBS")
        .await
        .iter()
        .find(|r| r.get("name") == Some(job))
        .and_then(|r| r.get("status").map(str::to_string))
        .expect("the job in SHOW JOBS")
}

/// Validate an OpenAPI document with openapi-spec-validator; `false` when
/// it is not installed (a skip, but not under CI).
fn validate_openapi(spec: &Value) -> bool {
    if !common::have("python3", &["-c", "import openapi_spec_validator"]) {
        return false;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, spec.to_string()).expect("write the description");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')",
        ])
        .arg(&path)
        .output()
        .expect("run the validator");
    assert!(
        out.status.success(),
        "openapi.json is not valid OpenAPI: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// The job's operators carry the runtime's figures: the source's and the
/// aggregate's rows per second, watermark and backpressure, the
/// aggregate's state in bytes, the view's rows, and which task runs each
/// stateless operator; `/metrics` has the same as `weir_operator_*`.
async fn per_operator_figures(api: &mut Api) {
    let deadline = Instant::now() + DEADLINE;
    let by_kind = |detail: &Value, kind: &str| -> Value {
        detail["graph"]["operators"]
            .as_array()
            .and_then(|ops| ops.iter().find(|o| o["kind"] == json!(kind)).cloned())
            .unwrap_or(Value::Null)
    };
    loop {
        // Rates need two readings at least a second apart: poll.
        let detail = api
            .expect("GET", "/api/v1/jobs/{name}", "per_second", None, 200)
            .await;
        let source = &by_kind(&detail, "StreamSource")["figures"];
        let aggregate = &by_kind(&detail, "StreamWindowAggregate")["figures"];
        let view = &by_kind(&detail, "StreamMaterialize")["figures"];
        let positive = |v: &Value| v.as_f64().is_some_and(|x| x > 0.0);
        let complete = positive(&source["rows_out_per_second"])
            && positive(&aggregate["rows_in_per_second"])
            && positive(&aggregate["state_bytes"])
            && positive(&aggregate["state_entries"])
            && aggregate["watermark"].is_string()
            && source["watermark"].is_string()
            && source["backpressure"].is_number()
            && aggregate["backpressure_level"].is_string()
            && positive(&view["rows_in"]);
        if complete {
            // The exchange runs in the source's task.
            let exchange = by_kind(&detail, "StreamExchange");
            let source_id = by_kind(&detail, "StreamSource")["id"].clone();
            assert_eq!(exchange["runs_in"], source_id, "{detail}");
            assert!(
                (0.0..=1.0).contains(&source["backpressure"].as_f64().unwrap_or(-1.0)),
                "{source}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "per-operator figures never all appeared: {}",
            detail["graph"]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let metrics = common::http_get(api.port, "/metrics").await;
    for family in [
        "weir_operator_rows_in_total",
        "weir_operator_rows_out_total",
        "weir_operator_watermark_timestamp_seconds",
        "weir_operator_state_bytes",
        "weir_operator_backpressured_seconds_total",
    ] {
        for operator in ["source", "window aggregate"] {
            let series = format!(
                "{family}{{job=\"per_second\",operator=\"{operator}\",stage=\"0\",worker=\"0\"}}"
            );
            assert!(
                metrics.contains(&series)
                    || family == "weir_operator_state_bytes" && operator == "source",
                "no {series} in /metrics:\n{metrics}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_works_and_sql_sees_what_the_api_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start_with(
        dir.path(),
        &["--checkpoint-interval", "300ms"],
        &[("WEIR_API_TOKEN", TOKEN)],
    );
    let client = common::connect(&server).await;
    let port = server.http_port;
    let mut api = Api {
        port,
        called: BTreeSet::new(),
    };

    // The probes stay open; the API needs the token.
    assert!(
        common::http_get(port, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        common::http_get(port, "/metrics")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let (status, err) = http(port, "GET", "/api/v1/jobs", None, None).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (401, Some("28000")),
        "{err}"
    );
    let (status, _) = http(port, "GET", "/api/v1/jobs", Some("wrong"), None).await;
    assert_eq!(status, 401);
    let (status, err) = api.call("GET", "/api/v1/nope", "", None).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("42704")),
        "{err}"
    );

    // The description: valid OpenAPI 3.
    let (status, spec) = http(port, "GET", "/api/v1/openapi.json", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{spec}"
    );
    let validated = validate_openapi(&spec);

    // API -> SQL: a stream and a view made through POST /api/v1/sql.
    for sql in [
        "CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 1000, seed = 3)",
        "CREATE MATERIALIZED VIEW per_second AS SELECT window_start, count(*) AS c FROM TUMBLE(bid, date_time, INTERVAL '1 second') GROUP BY window_start EMIT ON WINDOW CLOSE",
    ] {
        let (status, result) = api.sql(sql).await;
        assert_eq!(status, 200, "{sql}: {result}");
    }
    assert_eq!(rows(&client, "SHOW MATERIALIZED VIEWS").await.len(), 1);
    assert_eq!(sql_status(&client, "per_second").await, "running");

    // Statements: rows with types, a limit, and errors with positions.
    let result = api
        .expect(
            "POST",
            "/api/v1/sql",
            "",
            Some(json!({ "sql": "SELECT x, x * 2 AS y, 'a' AS t FROM (VALUES (1), (2), (3), (4)) AS v(x) ORDER BY x", "limit": 3 })),
            200,
        )
        .await;
    assert_eq!(
        result["rows"],
        json!([[1, 2, "a"], [2, 4, "a"], [3, 6, "a"]])
    );
    assert_eq!(result["truncated"], json!(true));
    assert_eq!(result["columns"][0]["type"], json!("bigint"));
    assert_eq!(result["columns"][2]["type"], json!("text"));
    let statement = |sql: &str| Some(json!({ "sql": sql }));
    let err = api
        .fails(
            "POST",
            "/api/v1/sql",
            "",
            statement("SELECT 1 FORM bid"),
            (400, "42601"),
        )
        .await;
    assert!(err["position"].as_u64().is_some(), "{err}");
    let err = api
        .fails(
            "POST",
            "/api/v1/sql",
            "",
            statement("SELECT * FROM nowhere"),
            (404, "42P01"),
        )
        .await;
    assert_eq!(err["position"], json!(15), "{err}");
    let (status, err) = api.sql("SELECT 1; SELECT 2").await;
    assert_eq!(status, 400, "{err}");
    api.fails(
        "POST",
        "/api/v1/sql",
        "",
        statement("SUBSCRIBE TO per_second"),
        (400, "0A000"),
    )
    .await;
    api.expect("POST", "/api/v1/sql", "", Some(json!({"nope": 1})), 400)
        .await;

    // Jobs: the same rows as SHOW JOBS.
    let jobs = api.expect("GET", "/api/v1/jobs", "", None, 200).await;
    let job = &jobs.as_array().expect("a list")[0];
    assert_eq!(
        (job["name"].as_str(), job["status"].as_str()),
        (Some("per_second"), Some("running"))
    );
    assert_eq!(job["kind"], json!("view"));
    let detail = api
        .expect("GET", "/api/v1/jobs/{name}", "per_second", None, 200)
        .await;
    let kinds: Vec<&str> = detail["graph"]["operators"]
        .as_array()
        .expect("operators")
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"StreamSource") && kinds.contains(&"StreamWindowAggregate"),
        "{kinds:?}"
    );
    assert_eq!(
        detail["graph"]["edges"].as_array().map(Vec::len),
        Some(kinds.len() - 1),
        "a tree: one edge into each operator but the view"
    );
    api.fails("GET", "/api/v1/jobs/{name}", "nope", None, (404, "42704"))
        .await;
    per_operator_figures(&mut api).await;

    // Checkpoints, with their duration, as the job takes them.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let checkpoints = api
            .expect(
                "GET",
                "/api/v1/jobs/{name}/checkpoints",
                "per_second",
                None,
                200,
            )
            .await;
        let listed = checkpoints.as_array().expect("a list");
        if listed.len() >= 2 {
            assert!(listed[0]["duration_ms"].as_f64().is_some(), "{checkpoints}");
            assert!(listed[0]["epoch"].as_u64() < listed[1]["epoch"].as_u64());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoints listed: {checkpoints}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Savepoints: taken by the API, seen by SQL; taken by SQL, seen by the API.
    let named = |name: &str| Some(json!({ "name": name }));
    let savepoints = "/api/v1/jobs/{name}/savepoints";
    let savepoint = api
        .expect("POST", savepoints, "per_second", named("early"), 201)
        .await;
    assert_eq!(
        (savepoint["job"].as_str(), savepoint["origin"].as_str()),
        (Some("per_second"), Some("user"))
    );
    assert!(Api::sql_lists_savepoint(&client, "early").await);
    api.fails(
        "POST",
        savepoints,
        "per_second",
        named("early"),
        (409, "42710"),
    )
    .await;
    api.fails(
        "POST",
        savepoints,
        "per_second",
        named("../x"),
        (400, "22023"),
    )
    .await;
    client
        .batch_execute("CREATE SAVEPOINT sql_side FOR JOB per_second")
        .await
        .expect("CREATE SAVEPOINT");
    let savepoint = api
        .expect("GET", "/api/v1/savepoints/{name}", "sql_side", None, 200)
        .await;
    assert_eq!(savepoint["name"].as_str(), Some("sql_side"));

    // Actions: suspend through the API, seen by SQL; resume through SQL,
    // seen by the API; actions that do not fit are 409 with 55000.
    let not_now = (409, "55000");
    api.fails(
        "POST",
        "/api/v1/jobs/{name}/resume",
        "per_second",
        None,
        not_now,
    )
    .await;
    api.act("per_second", "suspend", None, "suspended").await;
    assert_eq!(sql_status(&client, "per_second").await, "suspended");
    api.fails(
        "POST",
        "/api/v1/jobs/{name}/suspend",
        "per_second",
        None,
        not_now,
    )
    .await;
    client
        .batch_execute("ALTER JOB per_second RESUME")
        .await
        .expect("RESUME");
    let job = api
        .expect("GET", "/api/v1/jobs/{name}", "per_second", None, 200)
        .await;
    assert_eq!(job["status"], json!("running"));
    // Suspend and resume from the API's savepoint, both through the API.
    api.act("per_second", "suspend", None, "suspended").await;
    let from_early = Some(json!({ "savepoint": "early" }));
    api.act("per_second", "resume", from_early, "running").await;

    // Settings and restart.
    let settings = "/api/v1/jobs/{name}/settings";
    let set = |value: &str| Some(json!({ "settings": { "restart_strategy": value } }));
    api.expect("POST", settings, "per_second", set("fixed_delay"), 200)
        .await;
    let detail = api
        .expect("GET", "/api/v1/jobs/{name}", "per_second", None, 200)
        .await;
    assert_eq!(
        detail["settings"]["restart_strategy"],
        json!("fixed_delay"),
        "{detail}"
    );
    api.fails("POST", settings, "per_second", set("often"), (400, "22023"))
        .await;
    api.act("per_second", "restart", None, "running").await;

    // Events: the same as SHOW JOB EVENTS, which saw every action above.
    let events = api
        .expect("GET", "/api/v1/jobs/{name}/events", "per_second", None, 200)
        .await;
    let events = events.as_array().expect("a list").clone();
    let sql_events = rows(&client, "SHOW JOB EVENTS per_second").await;
    assert_eq!(events.len(), sql_events.len());
    assert!(
        events.iter().any(|e| e["to_status"] == json!("suspended")),
        "{events:?}"
    );

    // Logs: the job's own lines.
    let logs = api
        .expect(
            "GET",
            "/api/v1/jobs/{name}/logs?limit=50",
            "per_second",
            None,
            200,
        )
        .await;
    assert!(
        logs.as_array().is_some_and(|l| l
            .iter()
            .any(|l| l["message"] == json!("job status changed"))),
        "{logs}"
    );

    // Savepoints: listed per job, deleted, gone for SQL too.
    let listed = api
        .expect("GET", "/api/v1/savepoints?job=per_second", "", None, 200)
        .await;
    assert!(listed.as_array().is_some_and(|l| l.len() >= 3), "{listed}");
    let one = "/api/v1/savepoints/{name}";
    api.expect("DELETE", one, "early", None, 204).await;
    assert!(!Api::sql_lists_savepoint(&client, "early").await);
    api.fails("DELETE", one, "early", None, (404, "42704"))
        .await;

    // The catalog, with columns.
    let catalog = api.expect("GET", "/api/v1/catalog", "", None, 200).await;
    let bid = &catalog["streams"][0];
    assert_eq!(bid["name"], json!("bid"));
    assert!(
        bid["columns"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == json!("date_time"))),
        "{bid}"
    );
    assert_eq!(
        catalog["materialized_views"][0]["name"],
        json!("per_second")
    );

    // Every documented route was called.
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let missing: Vec<_> = documented.difference(&api.called).collect();
    assert!(
        missing.is_empty(),
        "documented routes this test did not call: {missing:?}"
    );
    assert!(documented.len() >= 15, "{documented:?}");
    if !validated {
        eprintln!("skipped: the OpenAPI validator (openapi-spec-validator) is not installed");
    }
}
