//! Bad input in files is counted, never silently dropped: tables and streams
//! over CSV and JSON files with ragged rows, wrong types, invalid UTF-8,
//! blank lines and lines longer than any buffer, under each `on_error`
//! policy, through the real binary. Every record read is either a row kept
//! or a bad record counted (and, for `dead_letter`, written down).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::WeirProcess;

/// Good rows in the CSV file besides the long one.
const GOOD: i64 = 1000;

/// A CSV file with `GOOD` good rows, one good row longer than any read
/// buffer, and seven bad records of every kind, plus blank lines. Returns
/// the lines (1-based) of the bad records.
fn write_csv(path: &Path) -> Vec<u64> {
    let mut out: Vec<u8> = b"id,name,price,at\n".to_vec();
    let mut line = 1u64;
    let mut bad = Vec::new();
    let mut push = |out: &mut Vec<u8>, bytes: &[u8], is_bad: bool, line: &mut u64| {
        *line += 1;
        if is_bad {
            bad.push(*line);
        }
        out.extend_from_slice(bytes);
        out.push(b'\n');
    };
    for i in 1..=GOOD {
        let row = format!("{i},name{i},{},2024-01-01 00:00:{:02}", i * 10, i % 60);
        push(&mut out, row.as_bytes(), false, &mut line);
        match i {
            100 => push(&mut out, b"2001,short", true, &mut line),
            200 => push(
                &mut out,
                b"2002,x,1,2024-01-01 00:00:00,extra",
                true,
                &mut line,
            ),
            300 => push(&mut out, b"abc,x,1,2024-01-01 00:00:00", true, &mut line),
            400 => push(
                &mut out,
                b"2003,x,notanumber,2024-01-01 00:00:00",
                true,
                &mut line,
            ),
            500 => push(
                &mut out,
                b"2004,\xff\xfe,1,2024-01-01 00:00:00",
                true,
                &mut line,
            ),
            600 => push(&mut out, b"2005,x,1,yesterday", true, &mut line),
            // A blank line is no record: nothing to keep, nothing lost.
            700 => push(&mut out, b"", false, &mut line),
            800 => {
                // Longer than any buffer on the way (object store chunks,
                // decode blocks), and valid: kept whole.
                let long = format!("{},{},1,2024-01-01 00:00:00", GOOD + 1, "y".repeat(300_000));
                push(&mut out, long.as_bytes(), false, &mut line);
            }
            900 => {
                // Longer than the 16 MiB a record may have: bad, and the
                // server holds no more than its first bytes.
                let huge = vec![b'z'; 17 << 20];
                push(&mut out, &huge, true, &mut line);
            }
            _ => {}
        }
    }
    std::fs::write(path, out).expect("write csv");
    bad
}

fn start() -> (tempfile::TempDir, WeirProcess) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(&dir.path().join("data"));
    (dir, server)
}

async fn scalar(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

async fn bad_rows_metric(server: &WeirProcess, stream: &str) -> Option<u64> {
    let metrics = common::http_get(server.http_port, "/metrics").await;
    let prefix = format!("weir_bad_rows_total{{stream=\"{stream}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().expect("a count"))
}

fn table(name: &str, path: &Path, policy: &str) -> String {
    format!(
        "CREATE TABLE {name} (id BIGINT, name TEXT, price BIGINT, at TIMESTAMP) \
         WITH (connector = 'file', path = '{}', format = 'csv'{policy})",
        path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_bad_records_are_skipped_or_dead_lettered_and_counted() {
    let (dir, server) = start();
    let csv = dir.path().join("in.csv");
    let bad_lines = write_csv(&csv);
    let bad = bad_lines.len() as u64;
    let dead = dir.path().join("dead.jsonl");
    let client = common::connect(&server).await;
    client
        .batch_execute(&table("skipping", &csv, ", on_error = 'skip'"))
        .await
        .expect("skipping table");
    client
        .batch_execute(&table(
            "lettering",
            &csv,
            &format!(
                ", on_error = 'dead_letter', dead_letter_path = '{}'",
                dead.display()
            ),
        ))
        .await
        .expect("dead-lettering table");

    // Every good row kept, the long one whole.
    let expected_sum: i64 = (1..=GOOD).sum::<i64>() + GOOD + 1;
    for t in ["skipping", "lettering"] {
        let kept = scalar(
            &client,
            &format!("SELECT count(*) || '|' || sum(id) || '|' || max(length(name)) FROM {t}"),
        )
        .await;
        assert_eq!(kept, format!("{}|{expected_sum}|300000", GOOD + 1), "{t}");
        assert_eq!(bad_rows_metric(&server, t).await, Some(bad), "{t}");
    }

    // The dead letters: each bad record's raw text, error and place.
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .expect("dead letters")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a json line"))
        .collect();
    assert_eq!(letters.len() as u64, bad, "{letters:#?}");
    let lines: Vec<u64> = letters
        .iter()
        .map(|l| l["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, bad_lines);
    for letter in &letters {
        assert!(
            letter["file"].as_str().expect("file").ends_with("in.csv"),
            "{letter}"
        );
        assert!(!letter["error"].as_str().expect("error").is_empty());
    }
    let by_line = |n: usize| &letters[n];
    assert_eq!(by_line(0)["raw"], "2001,short");
    assert_eq!(by_line(0)["error"], "missing data for column \"price\"");
    assert_eq!(by_line(0)["sqlstate"], "22P04");
    assert_eq!(
        by_line(3)["error"],
        "invalid input syntax for type bigint: \"notanumber\""
    );
    assert_eq!(by_line(3)["column"], "price");
    assert_eq!(by_line(3)["sqlstate"], "22P02");
    assert_eq!(
        by_line(4)["raw_hex"].as_str().map(|h| &h[..14]),
        Some("323030342cfffe")
    );
    assert_eq!(by_line(6)["truncated"], true);

    // Nothing lost: rows kept + bad records = the records of the file.
    let records = std::fs::read(&csv)
        .expect("csv")
        .split(|b| *b == b'\n')
        .skip(1)
        .filter(|l| !l.is_empty())
        .count() as u64;
    assert_eq!(GOOD as u64 + 1 + bad, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_fails_naming_the_file_line_and_column() {
    let (dir, server) = start();
    let client = common::connect(&server).await;
    let cases: [(&[u8], &str, &str, &str); 4] = [
        (
            b"1,a,10\n2,b\n",
            "22P04",
            "line 3",
            "missing data for column \"price\"",
        ),
        (
            b"1,a,10\n2,b,lots\n",
            "22P02",
            "line 3, column \"price\"",
            "type bigint: \"lots\"",
        ),
        (
            b"1,a,10\n2,\xc3\x28,1\n",
            "22P04",
            "line 3, column \"name\"",
            "invalid byte sequence",
        ),
        (
            b"1,a,10\n\n\n2,b,1,2\n",
            "22P04",
            "line 5",
            "extra data after last expected column",
        ),
    ];
    for (i, (text, code, place, what)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("f{i}.csv"));
        std::fs::write(&path, [b"id,name,price\n".as_slice(), text].concat()).expect("write");
        client
            .batch_execute(&format!(
                "CREATE TABLE f{i} (id BIGINT, name TEXT, price BIGINT) \
                 WITH (connector = 'file', path = '{}', format = 'csv')",
                path.display()
            ))
            .await
            .expect("table");
        let err = client
            .simple_query(&format!("SELECT * FROM f{i}"))
            .await
            .expect_err("bad input fails by default");
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), *code, "{db:?}");
        let message = db.message();
        for part in [&format!("f{i}.csv"), *place, *what] {
            assert!(message.contains(part), "{part:?} not in {message:?}");
        }
        assert!(db.where_().is_some_and(|c| c.contains("line")), "{db:?}");
    }
    // The server is still there.
    assert_eq!(scalar(&client, "SELECT 1").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_stream_counts_its_bad_lines_and_a_failing_one_names_them() {
    let (dir, server) = start();
    let json = dir.path().join("events.json");
    let mut text = Vec::new();
    let mut good = 0i64;
    let mut bad = 0u64;
    for i in 1..=500i64 {
        text.extend_from_slice(format!("{{\"id\": {i}, \"kind\": \"k{}\"}}\n", i % 3).as_bytes());
        good += 1;
        if i % 100 == 0 {
            // Not JSON, a wrong type, not UTF-8, not an object; blank lines.
            text.extend_from_slice(b"{\"id\": 1,\n");
            text.extend_from_slice(b"{\"id\": \"seven\", \"kind\": \"x\"}\n");
            text.extend_from_slice(b"{\"id\": 3, \"kind\": \"\xff\"}\n");
            text.extend_from_slice(b"[1, 2]\n\n   \n");
            bad += 4;
        }
    }
    std::fs::write(&json, &text).expect("write json");
    let dead = dir.path().join("events-dead.jsonl");
    let client = common::connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE STREAM events (id BIGINT, kind TEXT) WITH (connector = 'file', \
             path = '{}', format = 'json', on_error = 'dead_letter', dead_letter_path = '{}');
             CREATE MATERIALIZED VIEW per_kind AS SELECT kind, count(*) AS n FROM events GROUP BY kind;",
            json.display(),
            dead.display()
        ))
        .await
        .expect("stream and view");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total = scalar(&client, "SELECT coalesce(sum(n), 0) FROM per_kind").await;
        if total == good.to_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the view has {total} of {good} rows"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(bad_rows_metric(&server, "events").await, Some(bad));
    let letters = std::fs::read_to_string(&dead).expect("dead letters");
    assert_eq!(letters.lines().count() as u64, bad);

    // The default: the job fails, naming the file and line.
    client
        .batch_execute(&format!(
            "CREATE STREAM strict_events (id BIGINT, kind TEXT) WITH (connector = 'file', \
             path = '{}', format = 'json');
             CREATE MATERIALIZED VIEW strict_kinds AS SELECT kind, count(*) AS n FROM strict_events GROUP BY kind;",
            json.display()
        ))
        .await
        .expect("strict stream and view");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let views = common::sorted_rows(&client, "SHOW MATERIALIZED VIEWS").await;
        let row = views.iter().find(|r| r.contains("strict_kinds"));
        if row.is_some_and(|r| r.contains("events.json") && r.contains("line 101")) {
            break;
        }
        assert!(Instant::now() < deadline, "the job did not fail: {row:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_options_are_checked() {
    let (dir, server) = start();
    let csv = dir.path().join("ok.csv");
    std::fs::write(&csv, "a\n1\n").expect("write");
    let client = common::connect(&server).await;
    let refused = [
        ("on_error = 'ignore'", "22023"),
        ("on_error = 'dead_letter'", "22023"),
        ("dead_letter_path = 'x.jsonl'", "22023"),
        // Dead letters are files Weir writes: confined like any path.
        (
            "on_error = 'dead_letter', dead_letter_path = '/etc/weir-dead.jsonl'",
            "42501",
        ),
    ];
    for (options, code) in refused {
        let err = client
            .batch_execute(&format!(
                "CREATE TABLE t (a BIGINT) WITH (connector = 'file', path = '{}', {options})",
                csv.display()
            ))
            .await
            .expect_err(options);
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), code, "{options}: {db:?}");
    }
}
