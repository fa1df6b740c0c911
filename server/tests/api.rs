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
        let (status, result) = api
            .call("POST", "/api/v1/sql", "", Some(json!({ "sql": sql })))
            .await;
        assert_eq!(status, 200, "{sql}: {result}");
    }
    assert_eq!(rows(&client, "SHOW MATERIALIZED VIEWS").await.len(), 1);
    assert_eq!(sql_status(&client, "per_second").await, "running");

    // Statements: rows with types, a limit, and errors with positions.
    let (status, result) = api
        .call(
            "POST",
            "/api/v1/sql",
            "",
            Some(json!({ "sql": "SELECT x, x * 2 AS y, 'a' AS t FROM (VALUES (1), (2), (3), (4)) AS v(x) ORDER BY x", "limit": 3 })),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        result["rows"],
        json!([[1, 2, "a"], [2, 4, "a"], [3, 6, "a"]])
    );
    assert_eq!(result["truncated"], json!(true));
    assert_eq!(result["columns"][0]["type"], json!("bigint"));
    assert_eq!(result["columns"][2]["type"], json!("text"));
    let (status, err) = api
        .call(
            "POST",
            "/api/v1/sql",
            "",
            Some(json!({ "sql": "SELECT 1 FORM bid" })),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("42601")),
        "{err}"
    );
    assert!(err["position"].as_u64().is_some(), "{err}");
    let (status, err) = api
        .call(
            "POST",
            "/api/v1/sql",
            "",
            Some(json!({ "sql": "SELECT * FROM nowhere" })),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("42P01")),
        "{err}"
    );
    assert_eq!(err["position"], json!(15), "{err}");
    let (status, err) = api
        .call(
            "POST",
            "/api/v1/sql",
            "",
            Some(json!({ "sql": "SELECT 1; SELECT 2" })),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = api
        .call(
            "POST",
            "/api/v1/sql",
            "",
            Some(json!({ "sql": "SUBSCRIBE TO per_second" })),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("0A000")),
        "{err}"
    );
    let (status, _) = http(
        port,
        "POST",
        "/api/v1/sql",
        Some(TOKEN),
        Some(&json!({"nope": 1})),
    )
    .await;
    assert_eq!(status, 400);

    // Jobs: the same rows as SHOW JOBS.
    let (status, jobs) = api.call("GET", "/api/v1/jobs", "", None).await;
    assert_eq!(status, 200);
    let job = &jobs.as_array().expect("a list")[0];
    assert_eq!(
        (job["name"].as_str(), job["status"].as_str()),
        (Some("per_second"), Some("running"))
    );
    assert_eq!(job["kind"], json!("view"));
    let (status, detail) = api
        .call("GET", "/api/v1/jobs/{name}", "per_second", None)
        .await;
    assert_eq!(status, 200, "{detail}");
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
    let (status, err) = api.call("GET", "/api/v1/jobs/{name}", "nope", None).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("42704")),
        "{err}"
    );

    // Checkpoints, with their duration, as the job takes them.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, checkpoints) = api
            .call("GET", "/api/v1/jobs/{name}/checkpoints", "per_second", None)
            .await;
        assert_eq!(status, 200);
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
    let (status, savepoint) = api
        .call(
            "POST",
            "/api/v1/jobs/{name}/savepoints",
            "per_second",
            Some(json!({ "name": "early" })),
        )
        .await;
    assert_eq!(status, 201, "{savepoint}");
    assert_eq!(
        (savepoint["job"].as_str(), savepoint["origin"].as_str()),
        (Some("per_second"), Some("user"))
    );
    assert!(
        rows(&client, "SHOW SAVEPOINTS")
            .await
            .iter()
            .any(|r| r.get("name") == Some("early"))
    );
    let (status, err) = api
        .call(
            "POST",
            "/api/v1/jobs/{name}/savepoints",
            "per_second",
            Some(json!({ "name": "early" })),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("42710")),
        "{err}"
    );
    let (status, err) = api
        .call(
            "POST",
            "/api/v1/jobs/{name}/savepoints",
            "per_second",
            Some(json!({ "name": "../x" })),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("22023")),
        "{err}"
    );
    client
        .batch_execute("CREATE SAVEPOINT sql_side FOR JOB per_second")
        .await
        .expect("CREATE SAVEPOINT");
    let (status, savepoint) = api
        .call("GET", "/api/v1/savepoints/{name}", "sql_side", None)
        .await;
    assert_eq!(
        (status, savepoint["name"].as_str()),
        (200, Some("sql_side"))
    );

    // Actions: suspend through the API, seen by SQL; resume through SQL,
    // seen by the API; actions that do not fit are 409 with 55000.
    let (status, err) = api
        .call("POST", "/api/v1/jobs/{name}/resume", "per_second", None)
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("55000")),
        "{err}"
    );
    let (status, job) = api
        .call("POST", "/api/v1/jobs/{name}/suspend", "per_second", None)
        .await;
    assert_eq!(
        (status, job["status"].as_str()),
        (200, Some("suspended")),
        "{job}"
    );
    assert_eq!(sql_status(&client, "per_second").await, "suspended");
    let (status, err) = api
        .call("POST", "/api/v1/jobs/{name}/suspend", "per_second", None)
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("55000")),
        "{err}"
    );
    client
        .batch_execute("ALTER JOB per_second RESUME")
        .await
        .expect("RESUME");
    let (_, job) = api
        .call("GET", "/api/v1/jobs/{name}", "per_second", None)
        .await;
    assert_eq!(job["status"], json!("running"));
    // Suspend and resume from the API's savepoint, both through the API.
    let (status, _) = api
        .call("POST", "/api/v1/jobs/{name}/suspend", "per_second", None)
        .await;
    assert_eq!(status, 200);
    let (status, job) = api
        .call(
            "POST",
            "/api/v1/jobs/{name}/resume",
            "per_second",
            Some(json!({ "savepoint": "early" })),
        )
        .await;
    assert_eq!(
        (status, job["status"].as_str()),
        (200, Some("running")),
        "{job}"
    );

    // Settings and restart.
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/jobs/{name}/settings",
            "per_second",
            Some(json!({ "settings": { "restart_strategy": "fixed_delay" } })),
        )
        .await;
    assert_eq!(status, 200);
    let (_, detail) = api
        .call("GET", "/api/v1/jobs/{name}", "per_second", None)
        .await;
    assert_eq!(
        detail["settings"]["restart_strategy"],
        json!("fixed_delay"),
        "{detail}"
    );
    let (status, err) = api
        .call(
            "POST",
            "/api/v1/jobs/{name}/settings",
            "per_second",
            Some(json!({ "settings": { "restart_strategy": "often" } })),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("22023")),
        "{err}"
    );
    let (status, job) = api
        .call("POST", "/api/v1/jobs/{name}/restart", "per_second", None)
        .await;
    assert_eq!(
        (status, job["status"].as_str()),
        (200, Some("running")),
        "{job}"
    );

    // Events: the same as SHOW JOB EVENTS, which saw every action above.
    let (status, events) = api
        .call("GET", "/api/v1/jobs/{name}/events", "per_second", None)
        .await;
    assert_eq!(status, 200);
    let events = events.as_array().expect("a list").clone();
    let sql_events = rows(&client, "SHOW JOB EVENTS per_second").await;
    assert_eq!(events.len(), sql_events.len());
    assert!(
        events.iter().any(|e| e["to_status"] == json!("suspended")),
        "{events:?}"
    );

    // Logs: the job's own lines.
    let (status, logs) = api
        .call(
            "GET",
            "/api/v1/jobs/{name}/logs?limit=50",
            "per_second",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        logs.as_array().is_some_and(|l| l
            .iter()
            .any(|l| l["message"] == json!("job status changed"))),
        "{logs}"
    );

    // Savepoints: listed per job, deleted, gone for SQL too.
    let (status, listed) = api
        .call("GET", "/api/v1/savepoints?job=per_second", "", None)
        .await;
    assert_eq!(status, 200);
    assert!(listed.as_array().is_some_and(|l| l.len() >= 3), "{listed}");
    let (status, _) = api
        .call("DELETE", "/api/v1/savepoints/{name}", "early", None)
        .await;
    assert_eq!(status, 204);
    assert!(
        !rows(&client, "SHOW SAVEPOINTS")
            .await
            .iter()
            .any(|r| r.get("name") == Some("early"))
    );
    let (status, err) = api
        .call("DELETE", "/api/v1/savepoints/{name}", "early", None)
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("42704")),
        "{err}"
    );

    // The catalog, with columns.
    let (status, catalog) = api.call("GET", "/api/v1/catalog", "", None).await;
    assert_eq!(status, 200);
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
