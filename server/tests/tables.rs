//! Tables Weir owns through real clients: COPY in and out with
//! tokio-postgres, psql's `\copy` and command tags, and a crash test: many
//! concurrent INSERTs, `kill -9` mid-way, and after the restart every
//! acknowledged row is there and no statement is half there.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::WeirProcess;
use futures::{SinkExt, StreamExt};

fn sqlstate(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map(|e| e.code().code().to_string())
        .unwrap_or_else(|| format!("not a server error: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_with_tokio_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    client
        .batch_execute("CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT, price DOUBLE PRECISION, added TIMESTAMP)")
        .await
        .expect("create");

    // 100k rows of csv, sent in pieces that cut rows in half.
    let mut data = String::new();
    for i in 0..100_000 {
        let name = if i % 10 == 0 {
            String::new()
        } else {
            format!("\"item, \"\"{i}\"\"\"")
        };
        data.push_str(&format!(
            "{i},{name},{}.5,2024-01-01 00:00:{:02}\n",
            i % 100,
            i % 60
        ));
    }
    let sink = client
        .copy_in("COPY items FROM STDIN WITH (FORMAT csv)")
        .await
        .expect("copy in");
    let mut sink = Box::pin(sink);
    for piece in data.as_bytes().chunks(7919) {
        sink.send(Bytes::copy_from_slice(piece))
            .await
            .expect("send");
    }
    let rows = sink.as_mut().finish().await.expect("finish");
    assert_eq!(rows, 100_000);

    let row = client
        .query_one(
            "SELECT count(*), count(name), sum(id), min(added)::TEXT FROM items",
            &[],
        )
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 100_000);
    assert_eq!(row.get::<_, i64>(1), 90_000, "unquoted empty is NULL");
    assert_eq!(row.get::<_, i64>(2), 4_999_950_000);
    let name: String = client
        .query_one("SELECT name FROM items WHERE id = 7", &[])
        .await
        .expect("name")
        .get(0);
    assert_eq!(name, "item, \"7\"");

    // Text format with a column list; the other columns are NULL.
    let sink = client
        .copy_in("COPY items (name, id) FROM STDIN")
        .await
        .expect("copy in text");
    let mut sink = Box::pin(sink);
    sink.send(Bytes::from_static(b"tab\\there\t200000\n\\N\t200001\n"))
        .await
        .expect("send");
    assert_eq!(sink.as_mut().finish().await.expect("finish"), 2);
    let row = client
        .query_one(
            "SELECT name, price IS NULL FROM items WHERE id = 200000",
            &[],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), "tab\there");
    assert!(row.get::<_, bool>(1));

    // A bad value fails the whole COPY with 22P02, and nothing is added;
    // so does a duplicate key (23505).
    for (data, code) in [
        (
            &b"300000,a,1,2024-01-01 00:00:00\nxyz,b,2,2024-01-01 00:00:00\n"[..],
            "22P02",
        ),
        (
            &b"300000,a,1,2024-01-01 00:00:00\n7,b,2,2024-01-01 00:00:00\n"[..],
            "23505",
        ),
        (&b"300000,a\n"[..], "22P04"),
    ] {
        let sink = client
            .copy_in("COPY items FROM STDIN WITH (FORMAT csv)")
            .await
            .expect("copy in");
        let mut sink = Box::pin(sink);
        sink.send(Bytes::from_static(data)).await.expect("send");
        let err = sink.as_mut().finish().await.expect_err("bad data");
        assert_eq!(sqlstate(&err), code, "{err:?}");
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 100_002);

    // COPY out, the table and a query, both formats.
    let out = client
        .copy_out(
            "COPY (SELECT id, name FROM items WHERE id IN (1, 10, 200001) ORDER BY id) TO STDOUT",
        )
        .await
        .expect("copy out");
    let bytes: Vec<Bytes> = out.map(|b| b.expect("data")).collect().await;
    let text: String = bytes
        .iter()
        .map(|b| String::from_utf8_lossy(b).to_string())
        .collect();
    assert_eq!(text, "1\titem, \"1\"\n10\t\\N\n200001\t\\N\n");
    let out = client
        .copy_out("COPY (SELECT id, name FROM items WHERE id IN (1, 10) ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)")
        .await
        .expect("copy out csv");
    let bytes: Vec<Bytes> = out.map(|b| b.expect("data")).collect().await;
    let text: String = bytes
        .iter()
        .map(|b| String::from_utf8_lossy(b).to_string())
        .collect();
    assert_eq!(text, "id,name\n1,\"item, \"\"1\"\"\"\n10,\n");
    let out = client
        .copy_out("COPY items TO STDOUT")
        .await
        .expect("copy table out");
    let lines: usize = out
        .map(|b| b.expect("data").iter().filter(|&&c| c == b'\n').count())
        .fold(0, |a, b| async move { a + b })
        .await;
    assert_eq!(lines, 100_002);

    // The session works on after COPY errors.
    client
        .simple_query("SELECT 1")
        .await
        .expect("still serving");
}

/// Prepared INSERTs with `$n` parameters, as JDBC and psycopg send them:
/// Describe types each parameter as its column, and Bind's values are
/// checked like literals (NOT NULL, the key, the type).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_inserts_with_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE p (id BIGINT PRIMARY KEY, n INT NOT NULL, name TEXT, at TIMESTAMP, ok BOOLEAN, x DOUBLE PRECISION)",
        )
        .await
        .expect("create");
    let insert = client
        .prepare("INSERT INTO p (name, id, n) VALUES ($1, $2, $3)")
        .await
        .expect("prepare");
    use tokio_postgres::types::Type;
    assert_eq!(insert.params(), &[Type::TEXT, Type::INT8, Type::INT4]);
    assert!(insert.columns().is_empty());
    for i in 0..50i64 {
        let rows = client
            .execute(&insert, &[&format!("row {i}"), &i, &(i as i32 * 2)])
            .await
            .expect("insert");
        assert_eq!(rows, 1);
    }
    let none: Option<&str> = None;
    client
        .execute(&insert, &[&none, &100i64, &-1i32])
        .await
        .expect("a NULL name");

    let err = client
        .execute(&insert, &[&"dup", &7i64, &1i32])
        .await
        .expect_err("duplicate key");
    assert_eq!(sqlstate(&err), "23505");
    let err = client
        .execute(&insert, &[&"no n", &200i64, &None::<i32>])
        .await
        .expect_err("NULL n");
    assert_eq!(sqlstate(&err), "23502");

    // Several rows, literals among the parameters, every column type.
    let at = chrono::NaiveDate::from_ymd_opt(2024, 1, 2)
        .and_then(|d| d.and_hms_opt(3, 4, 5))
        .expect("date");
    let rows = client
        .execute(
            "INSERT INTO p (id, n, at, ok, x) VALUES ($1, $2, $3, $4, $5), (301, 1, '2024-01-01', NULL, -0.5)",
            &[&300i64, &3i32, &at, &true, &2.5f64],
        )
        .await
        .expect("multi-row insert");
    assert_eq!(rows, 2);

    let row = client
        .query_one(
            "SELECT count(*), sum(id), sum(n), count(name) FROM p WHERE id < 300",
            &[],
        )
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 51);
    assert_eq!(row.get::<_, i64>(1), (0..50).sum::<i64>() + 100);
    assert_eq!(
        row.get::<_, i64>(2),
        (0..50).map(|i| i * 2).sum::<i64>() - 1
    );
    assert_eq!(row.get::<_, i64>(3), 50);
    let row = client
        .query_one("SELECT at, ok, x FROM p WHERE id = 300", &[])
        .await
        .expect("row 300");
    assert_eq!(row.get::<_, chrono::NaiveDateTime>(0), at);
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, f64>(2), 2.5);

    // A long VALUES list (inserted on a worker thread), one bad row in a
    // second one: all or nothing.
    let values: Vec<String> = (0..3000)
        .map(|i| format!("({}, {i})", 10_000 + i))
        .collect();
    let rows = client
        .execute(
            &format!("INSERT INTO p (id, n) VALUES {}", values.join(", ")),
            &[],
        )
        .await
        .expect("long VALUES");
    assert_eq!(rows, 3000);
    let mut values: Vec<String> = (0..3000)
        .map(|i| format!("({}, {i})", 20_000 + i))
        .collect();
    values[2500] = "(22500, NULL)".into();
    let err = client
        .execute(
            &format!("INSERT INTO p (id, n) VALUES {}", values.join(", ")),
            &[],
        )
        .await
        .expect_err("a NULL n");
    assert_eq!(sqlstate(&err), "23502");
    let row = client
        .query_one("SELECT count(*) FROM p WHERE id >= 10000", &[])
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 3000);

    // What the fast path leaves to DataFusion still takes parameters.
    let rows = client
        .execute(
            "INSERT INTO p (id, n) SELECT id + 1000, $1::INT FROM p WHERE id < $2",
            &[&9i32, &3i64],
        )
        .await
        .expect("insert select");
    assert_eq!(rows, 3);
}

fn psql(server: &WeirProcess, args: &[&str]) -> (bool, String) {
    let output = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-U", "weir", "-d", "weir"])
        .args(["-p", &server.pg_port.to_string()])
        .args(args)
        .output()
        .expect("run psql");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// psql's transaction blocks: ROLLBACK undoes a write, without a warning
/// (the rules in full: `sql-tests/tables/transactions.slt`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_undoes_a_write() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let (ok, out) = psql(
        &server,
        &[
            "-c",
            "CREATE TABLE r (id BIGINT PRIMARY KEY)",
            "-c",
            "BEGIN",
            "-c",
            "INSERT INTO r VALUES (1)",
            "-c",
            "ROLLBACK",
            "-A",
            "-t",
            "-c",
            "SELECT count(*) FROM r",
        ],
    );
    assert!(ok && !out.contains("WARNING"), "{out}");
    assert_eq!(out.lines().last(), Some("0"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_and_command_tags() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let files = tempfile::tempdir().expect("tempdir");
    let csv = files.path().join("users.csv");
    std::fs::write(
        &csv,
        "id,name,country\n1,ada,DE\n2,\"b, o\"\"b\",\n3,cy,PT\n",
    )
    .expect("write csv");
    let text = files.path().join("more.txt");
    std::fs::write(&text, "4\tdee\t\\N\n5\teve\tFR\n").expect("write text");
    let out_file = files.path().join("out.csv");
    let script = format!(
        "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL, country TEXT);\n\
         \\copy users from '{}' with (format csv, header)\n\
         \\copy users from '{}'\n\
         INSERT INTO users VALUES (6, 'fay', 'DE'), (7, 'gus', 'DE');\n\
         UPDATE users SET country = 'FR' WHERE country = 'DE';\n\
         DELETE FROM users WHERE id > 5;\n\
         \\copy (SELECT * FROM users ORDER BY id) to '{}' with (format csv)\n",
        csv.display(),
        text.display(),
        out_file.display()
    );
    let script_file = files.path().join("script.sql");
    std::fs::write(&script_file, script).expect("write script");
    let script_path = script_file.display().to_string();
    let (ok, out) = psql(&server, &["-v", "ON_ERROR_STOP=1", "-f", &script_path]);
    assert!(ok, "psql failed:\n{out}");
    for tag in [
        "CREATE TABLE",
        "COPY 3",
        "COPY 2",
        "INSERT 0 2",
        "UPDATE 3",
        "DELETE 2",
        "COPY 5",
    ] {
        assert!(out.contains(tag), "expected {tag:?} in:\n{out}");
    }
    let written = std::fs::read_to_string(&out_file).expect("read out");
    assert_eq!(
        written,
        "1,ada,FR\n2,\"b, o\"\"b\",\n3,cy,PT\n4,dee,\n5,eve,FR\n"
    );
    // A bad line: the error names the line and column, as Postgres does.
    let bad = files.path().join("bad.csv");
    std::fs::write(&bad, "8,hal,DE\n9x,ivy,DE\n").expect("write bad");
    let (ok, out) = psql(
        &server,
        &[
            "-c",
            &format!("\\copy users from '{}' with (format csv)", bad.display()),
        ],
    );
    assert!(!ok);
    assert!(
        out.contains("invalid input syntax for type bigint: \"9x\"")
            && out.contains("COPY users, line 2, column id: \"9x\""),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_every_acknowledged_insert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let setup = common::connect(&server).await;
    setup
        .batch_execute("CREATE TABLE acks (id BIGINT PRIMARY KEY, writer BIGINT NOT NULL, statement BIGINT NOT NULL)")
        .await
        .expect("create");

    // Writers insert three rows per statement until the server dies; each
    // records the statements it saw acknowledged.
    let acknowledged = Arc::new(parking_lot::Mutex::new(BTreeSet::new()));
    let mut writers = Vec::new();
    for writer in 0..8i64 {
        let client = common::connect(&server).await;
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for n in 0i64.. {
                let statement = writer * 1_000_000 + n;
                let id = statement * 3;
                let sql = format!(
                    "INSERT INTO acks VALUES ({id}, {writer}, {statement}), ({}, {writer}, {statement}), ({}, {writer}, {statement})",
                    id + 1,
                    id + 2
                );
                match client.simple_query(&sql).await {
                    Ok(_) => {
                        acknowledged.lock().insert(statement);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    for writer in writers {
        writer.await.expect("writer");
    }
    let acknowledged = acknowledged.lock().clone();
    assert!(
        acknowledged.len() > 50,
        "too few inserts before the kill: {}",
        acknowledged.len()
    );

    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    let rows = client
        .query(
            "SELECT statement, count(*) FROM acks GROUP BY statement",
            &[],
        )
        .await
        .expect("read back");
    let found: BTreeMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let missing: Vec<&i64> = acknowledged
        .iter()
        .filter(|s| !found.contains_key(s))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let partial: Vec<(&i64, &i64)> = found.iter().filter(|(_, c)| **c != 3).collect();
    assert!(partial.is_empty(), "statements half applied: {partial:?}");
    // At most one statement per writer was in flight when the server died.
    assert!(found.len() <= acknowledged.len() + 8);
    // And the table takes writes again, keys still enforced.
    let first = *acknowledged.iter().next().expect("one");
    let err = client
        .simple_query(&format!("INSERT INTO acks VALUES ({}, 0, 0)", first * 3))
        .await
        .expect_err("duplicate");
    assert_eq!(sqlstate(&err), "23505");
}

/// Views over a table with a primary key take its changes exactly once:
/// writers insert, update and delete while the server checkpoints every
/// 100 ms and is killed with SIGKILL; after each restart every view equals
/// its query run over the table (a change applied twice, or lost, would
/// show as a difference).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_a_keyed_table_survive_kill_9() {
    const VIEWS: [(&str, &str); 5] = [
        (
            "per_group",
            "SELECT grp, count(*) AS n, sum(amount) AS total, max(amount) AS high, min(amount) AS low FROM accounts GROUP BY grp",
        ),
        (
            "evens",
            "SELECT id, grp, amount FROM accounts WHERE amount % 2 = 0",
        ),
        (
            "overall",
            "SELECT count(*) AS n, sum(amount) AS total, avg(amount) AS mean FROM accounts",
        ),
        (
            "per_label",
            "SELECT g.label, count(*) AS n, sum(a.amount) AS total FROM accounts a JOIN groups g ON a.grp = g.grp GROUP BY g.label",
        ),
        (
            "labelled",
            "SELECT a.id, a.amount, g.label FROM accounts a LEFT JOIN groups g ON a.grp = g.grp",
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--checkpoint-interval", "100ms"];
    let mut server = WeirProcess::start_with(dir.path(), &args, &[]);
    let setup = common::connect(&server).await;
    setup
        .batch_execute(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, grp BIGINT NOT NULL, amount BIGINT)",
        )
        .await
        .expect("create");
    setup
        .batch_execute("INSERT INTO accounts VALUES (0, 0, 10), (1, 1, 11), (2, 2, 12)")
        .await
        .expect("seed");
    setup
        .batch_execute(
            "CREATE TABLE groups (grp BIGINT PRIMARY KEY, label TEXT); \
             INSERT INTO groups VALUES (0, 'zero'), (1, 'one'), (2, 'two')",
        )
        .await
        .expect("groups");
    for (name, query) in VIEWS {
        setup
            .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .expect("create view");
    }
    for round in 0..3u64 {
        // Each writer owns the ids congruent to it modulo 4.
        let mut writers = Vec::new();
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        for writer in 0..4u64 {
            let client = common::connect(&server).await;
            let done = done.clone();
            writers.push(tokio::spawn(async move {
                for n in 0u64.. {
                    let id = (n * 7 + round * 13) % 60 * 4 + writer;
                    let sql = match n % 4 {
                        // Labels come and go, so the joins retract and re-add.
                        3 if writer == 0 => format!(
                            "DELETE FROM groups WHERE grp = {0}; INSERT INTO groups VALUES ({0}, 'label{1}')",
                            n % 5,
                            n % 3
                        ),
                        0 => format!(
                            "INSERT INTO accounts VALUES ({id}, {}, {})",
                            id % 5,
                            n % 100
                        ),
                        1 | 3 => format!(
                            "UPDATE accounts SET amount = amount + {}, grp = {} WHERE id = {id}",
                            n % 7,
                            n % 5
                        ),
                        _ => format!("DELETE FROM accounts WHERE id = {}", (id + 8) % 240),
                    };
                    // Duplicate keys are expected; a dead server ends the writer.
                    match client.simple_query(&sql).await {
                        Ok(_) => {
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(err) if err.code().is_none() => return,
                        Err(_) => {}
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        server.kill();
        for writer in writers {
            writer.await.expect("writer");
        }
        let done = done.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            done > 30,
            "round {round}: only {done} writes before the kill"
        );
        server = WeirProcess::start_with(dir.path(), &args, &[]);
        let client = common::connect(&server).await;
        client.batch_execute("FLUSH").await.expect("flush");
        for (name, query) in VIEWS {
            let view = common::sorted_rows(&client, &format!("SELECT * FROM {name}")).await;
            let table = common::sorted_rows(&client, query).await;
            assert_eq!(
                view, table,
                "round {round}: view {name} differs from its query"
            );
        }
    }
}
