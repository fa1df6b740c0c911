//! SUBSCRIBE through every protocol a client may use, checked for
//! exactness: a subscriber's changelog, applied in order, must equal
//! `SELECT * FROM v` after each write, whether the writes come one change
//! per statement or in batches, move rows between groups or delete them,
//! and for aggregates, joins and windows alike.
//!
//! Each check runs three subscribers side by side: `COPY (SUBSCRIBE TO v)
//! TO STDOUT` (psql's way), `SUBSCRIBE TO v` in the simple protocol, and in
//! the extended protocol (tokio-postgres `query_raw`: Execute without a row
//! limit). The rows must arrive while the subscription runs, not when it
//! ends: the views here read tables, so their subscriptions never end.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use tokio::sync::mpsc;
use tokio_postgres::types::Type;

use common::WeirProcess;

/// How long a subscriber may take to show a change that FLUSH made
/// visible: a bound for a broken server, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

/// One change a subscriber received: the row (cells joined by `|`) and +1
/// or -1.
type Change = (String, i64);

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Copy,
    Simple,
    Extended,
}

/// A subscriber on its own connection, and the multiset its changes add up to.
struct Subscriber {
    protocol: Protocol,
    changes: mpsc::UnboundedReceiver<Result<Change, String>>,
    replayed: BTreeMap<String, i64>,
}

impl Subscriber {
    async fn start(server: &WeirProcess, view: &str, protocol: Protocol) -> Self {
        let client = common::connect(server).await;
        let (tx, changes) = mpsc::unbounded_channel();
        let view = view.to_string();
        tokio::spawn(async move {
            let sent = match protocol {
                Protocol::Copy => copy_subscriber(&client, &view, &tx).await,
                Protocol::Simple => simple_subscriber(&client, &view, &tx).await,
                Protocol::Extended => extended_subscriber(&client, &view, &tx).await,
            };
            if let Err(err) = sent {
                let _ = tx.send(Err(err));
            }
        });
        Self {
            protocol,
            changes,
            replayed: BTreeMap::new(),
        }
    }

    /// Apply changes until the replay equals `expected`; panic with both if
    /// it does not within [`PATIENCE`].
    async fn wait_for(&mut self, expected: &[String], step: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if self.rows() == expected {
                return;
            }
            match tokio::time::timeout_at(deadline, self.changes.recv()).await {
                Ok(Some(Ok((row, delta)))) => {
                    let count = self.replayed.entry(row).or_default();
                    *count += delta;
                    if *count == 0 {
                        self.replayed.retain(|_, c| *c != 0);
                    }
                }
                Ok(Some(Err(err))) => {
                    panic!("{:?} subscriber failed at {step}: {err}", self.protocol)
                }
                Ok(None) => panic!("{:?} subscriber ended at {step}", self.protocol),
                Err(_) => panic!(
                    "after {step}, the {:?} subscriber's changelog replays to\n{:#?}\nbut SELECT gives\n{expected:#?}",
                    self.protocol, self.replayed
                ),
            }
        }
    }

    /// The replayed multiset as sorted rows (a negative count shows as is,
    /// so it can never match).
    fn rows(&self) -> Vec<String> {
        let mut rows = Vec::new();
        for (row, count) in &self.replayed {
            if *count < 0 {
                rows.push(format!("{row} (x{count})"));
            }
            for _ in 0..(*count).max(0) {
                rows.push(row.clone());
            }
        }
        rows.sort();
        rows
    }
}

fn op_delta(op: &str) -> Result<i64, String> {
    match op {
        "insert" => Ok(1),
        "delete" => Ok(-1),
        other => Err(format!("unexpected op {other:?}")),
    }
}

async fn copy_subscriber(
    client: &tokio_postgres::Client,
    view: &str,
    tx: &mpsc::UnboundedSender<Result<Change, String>>,
) -> Result<(), String> {
    let stream = client
        .copy_out(&format!("COPY (SUBSCRIBE TO {view}) TO STDOUT"))
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = std::pin::pin!(stream);
    let mut partial = String::new();
    while let Some(chunk) = stream.try_next().await.map_err(|e| e.to_string())? {
        partial.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = partial.find('\n') {
            let line: String = partial.drain(..=end).collect();
            let mut cells: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
            let op = cells.pop().ok_or("an empty line")?;
            let row = cells
                .iter()
                .map(|c| if *c == "\\N" { "NULL" } else { c })
                .collect::<Vec<_>>()
                .join("|");
            if tx.send(Ok((row, op_delta(op)?))).is_err() {
                return Ok(());
            }
        }
    }
    Err("the COPY ended".into())
}

async fn simple_subscriber(
    client: &tokio_postgres::Client,
    view: &str,
    tx: &mpsc::UnboundedSender<Result<Change, String>>,
) -> Result<(), String> {
    let stream = client
        .simple_query_raw(&format!("SUBSCRIBE TO {view}"))
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = std::pin::pin!(stream);
    while let Some(message) = stream.try_next().await.map_err(|e| e.to_string())? {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            let n = row.len();
            let cells: Vec<&str> = (0..n - 1).map(|i| row.get(i).unwrap_or("NULL")).collect();
            let op = row.get(n - 1).ok_or("a NULL op")?;
            if tx.send(Ok((cells.join("|"), op_delta(op)?))).is_err() {
                return Ok(());
            }
        }
    }
    Err("the simple-protocol subscription ended".into())
}

/// A binary-format cell as Postgres would print it in text.
fn cell_text(row: &tokio_postgres::Row, i: usize) -> Result<String, String> {
    let column = &row.columns()[i];
    let text = match *column.type_() {
        Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
        Type::TEXT | Type::VARCHAR => row.get::<_, Option<String>>(i),
        Type::TIMESTAMP => row
            .get::<_, Option<chrono::NaiveDateTime>>(i)
            .map(|v| v.format("%Y-%m-%d %H:%M:%S").to_string()),
        ref other => return Err(format!("no text form for {other} in this test")),
    };
    Ok(text.unwrap_or_else(|| "NULL".into()))
}

async fn extended_subscriber(
    client: &tokio_postgres::Client,
    view: &str,
    tx: &mpsc::UnboundedSender<Result<Change, String>>,
) -> Result<(), String> {
    let stream = client
        .query_raw(&format!("SUBSCRIBE TO {view}"), Vec::<String>::new())
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = std::pin::pin!(stream);
    while let Some(row) = stream.try_next().await.map_err(|e| e.to_string())? {
        let n = row.len();
        let cells = (0..n - 1)
            .map(|i| cell_text(&row, i))
            .collect::<Result<Vec<_>, _>>()?;
        let op: String = row.get(n - 1);
        if tx.send(Ok((cells.join("|"), op_delta(&op)?))).is_err() {
            return Ok(());
        }
    }
    Err("the extended-protocol subscription ended".into())
}

/// A server, a writer connection, and subscribers to `view` in every
/// protocol, started after `setup` ran.
struct Harness {
    _server: WeirProcess,
    _dir: tempfile::TempDir,
    writer: tokio_postgres::Client,
    view: String,
    subscribers: Vec<Subscriber>,
}

impl Harness {
    async fn start(setup: &str, view: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = WeirProcess::start(dir.path());
        let writer = common::connect(&server).await;
        writer
            .batch_execute(setup)
            .await
            .unwrap_or_else(|e| panic!("{setup}: {e}"));
        let mut subscribers = Vec::new();
        for protocol in [Protocol::Copy, Protocol::Simple, Protocol::Extended] {
            subscribers.push(Subscriber::start(&server, view, protocol).await);
        }
        let mut harness = Self {
            _server: server,
            _dir: dir,
            writer,
            view: view.to_string(),
            subscribers,
        };
        harness.check("the start").await;
        harness
    }

    /// Run `sql`, then check every subscriber against the view.
    async fn step(&mut self, sql: &str) {
        self.writer
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        self.check(sql).await;
    }

    async fn check(&mut self, step: &str) {
        self.writer.batch_execute("FLUSH").await.expect("FLUSH");
        let expected =
            common::sorted_rows(&self.writer, &format!("SELECT * FROM {}", self.view)).await;
        for subscriber in &mut self.subscribers {
            subscriber.wait_for(&expected, step).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_changelog_replays_to_the_view_one_change_at_a_time() {
    let mut h = Harness::start(
        "CREATE TABLE c2 (id BIGINT PRIMARY KEY, country TEXT);
         CREATE MATERIALIZED VIEW pc2 AS SELECT country, count(*) AS n FROM c2 GROUP BY country;
         INSERT INTO c2 VALUES (0, 'seed');",
        "pc2",
    )
    .await;
    for id in 1..=5 {
        h.step(&format!("INSERT INTO c2 VALUES ({id}, 'c1')")).await;
    }
    // Moves between groups, in one statement and one row at a time.
    h.step("UPDATE c2 SET country = 'moved' WHERE id <= 2")
        .await;
    h.step("UPDATE c2 SET country = 'c1' WHERE id = 1").await;
    // A batch of changes in one statement.
    h.step("INSERT INTO c2 VALUES (6, 'c1'), (7, 'x'), (8, 'x'), (9, 'moved')")
        .await;
    // Deletes, emptying a group.
    h.step("DELETE FROM c2 WHERE id = 0").await;
    h.step("DELETE FROM c2 WHERE country = 'x'").await;
    h.step("UPDATE c2 SET country = NULL WHERE id = 3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_changelog_replays_to_the_view() {
    let mut h = Harness::start(
        "CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT, country TEXT);
         CREATE TABLE orders (id BIGINT PRIMARY KEY, customer BIGINT, amount BIGINT);
         INSERT INTO customers VALUES (1, 'ada', 'uk'), (2, 'bob', 'fr');
         CREATE MATERIALIZED VIEW per_country AS
           SELECT c.country, count(*) AS n, sum(o.amount) AS total
           FROM orders o JOIN customers c ON o.customer = c.id GROUP BY c.country;",
        "per_country",
    )
    .await;
    for (id, customer) in [(10, 1), (11, 2), (12, 1), (13, 3), (14, 1)] {
        h.step(&format!(
            "INSERT INTO orders VALUES ({id}, {customer}, {})",
            id * 10
        ))
        .await;
    }
    h.step("INSERT INTO customers VALUES (3, 'cy', 'fr')").await;
    h.step("UPDATE customers SET country = 'de' WHERE id = 1")
        .await;
    h.step("UPDATE orders SET amount = 1 WHERE id = 11").await;
    h.step("DELETE FROM customers WHERE id = 2").await;
    h.step("DELETE FROM orders WHERE customer = 1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_changelog_replays_to_the_view() {
    let mut h = Harness::start(
        "CREATE TABLE events (id BIGINT PRIMARY KEY, kind TEXT, at TIMESTAMP);
         CREATE MATERIALIZED VIEW per_window AS
           SELECT window_start, kind, count(*) AS n
           FROM TUMBLE(events, at, INTERVAL '10' SECOND) GROUP BY window_start, kind;",
        "per_window",
    )
    .await;
    for id in 1..=6 {
        h.step(&format!(
            "INSERT INTO events VALUES ({id}, 'k{}', '2024-01-01 10:00:{:02}')",
            id % 2,
            id * 4
        ))
        .await;
    }
    h.step("UPDATE events SET at = '2024-01-01 10:00:31' WHERE id = 1")
        .await;
    h.step("UPDATE events SET kind = 'k1' WHERE id <= 4").await;
    h.step("DELETE FROM events WHERE id = 6").await;
}

/// A small deterministic generator (no dependency for one test).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_run_of_single_changes_replays_to_the_view() {
    let seed = std::env::var("WEIR_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261130u64);
    let mut rng = Lcg(seed);
    let mut h = Harness::start(
        "CREATE TABLE r (id BIGINT PRIMARY KEY, g TEXT, v BIGINT);
         CREATE MATERIALIZED VIEW per_g AS SELECT g, count(*) AS n, sum(v) AS total, max(v) AS top FROM r GROUP BY g;",
        "per_g",
    )
    .await;
    let mut live: Vec<u64> = Vec::new();
    let mut next_id = 0;
    for step in 0..200 {
        let group = format!("g{}", rng.below(4));
        let value = rng.below(100);
        let sql = match (rng.below(3), live.is_empty()) {
            (0, _) | (_, true) => {
                next_id += 1;
                live.push(next_id);
                format!("INSERT INTO r VALUES ({next_id}, '{group}', {value})")
            }
            (1, false) => {
                let id = live[rng.below(live.len() as u64) as usize];
                format!("UPDATE r SET g = '{group}', v = {value} WHERE id = {id}")
            }
            _ => {
                let id = live.swap_remove(rng.below(live.len() as u64) as usize);
                format!("DELETE FROM r WHERE id = {id}")
            }
        };
        // Check every few steps (every step would be slow), and always in
        // the first ones, where a lost change shows soonest.
        h.writer
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        if step < 10 || step % 10 == 0 {
            h.check(&format!("step {step} (seed {seed}): {sql}")).await;
        }
    }
    h.check(&format!("the last step (seed {seed})")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_with_a_row_limit_suspends_the_portal_between_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let writer = common::connect(&server).await;
    writer
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT);
             INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');
             CREATE MATERIALIZED VIEW names AS SELECT id, name FROM t;
             FLUSH;",
        )
        .await
        .expect("setup");
    let mut reader = common::connect(&server).await;
    let transaction = reader.transaction().await.expect("begin");
    let portal = transaction
        .bind("SUBSCRIBE TO names", &[])
        .await
        .expect("bind");
    // Execute with a limit of 2: two of the three current rows.
    let first = transaction
        .query_portal(&portal, 2)
        .await
        .expect("first execute");
    assert_eq!(first.len(), 2, "the first Execute(2)");
    // The third, without waiting for a second one that is not there.
    let second = transaction
        .query_portal(&portal, 2)
        .await
        .expect("second execute");
    assert_eq!(second.len(), 1, "the second Execute(2)");
    // Nothing new: the next Execute waits for the next change.
    let next = {
        let transaction = &transaction;
        let portal = &portal;
        let waiting = async move { transaction.query_portal(portal, 10).await };
        let writing = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            writer
                .batch_execute("INSERT INTO t VALUES (4, 'd')")
                .await
                .expect("insert");
        };
        let (rows, ()) = tokio::join!(waiting, writing);
        rows.expect("third execute")
    };
    let rows: Vec<(i64, String, String)> = next
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows, vec![(4, "d".to_string(), "insert".to_string())]);
    let mut all: Vec<i64> = first.iter().chain(&second).map(|r| r.get(0)).collect();
    all.sort();
    assert_eq!(all, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_from_a_cursor_returns_what_is_there_and_waits_for_a_first_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let writer = common::connect(&server).await;
    writer
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT);
             INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');
             CREATE MATERIALIZED VIEW names AS SELECT id, name FROM t;
             FLUSH;",
        )
        .await
        .expect("setup");
    let reader = common::connect(&server).await;
    let rows = |messages: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<String> {
        messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("NULL").to_string())
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
                _ => None,
            })
            .collect()
    };
    reader
        .batch_execute("BEGIN; DECLARE c CURSOR FOR SUBSCRIBE TO names")
        .await
        .expect("declare");
    let first = rows(reader.simple_query("FETCH 2 c").await.expect("fetch 2"));
    assert_eq!(first.len(), 2, "{first:?}");
    let rest = rows(reader.simple_query("FETCH ALL c").await.expect("fetch all"));
    assert_eq!(rest.len(), 1, "{rest:?}");
    // Nothing new, and a timeout: no rows, at once.
    let none = rows(
        reader
            .simple_query("FETCH 10 c WITH (timeout = '0s')")
            .await
            .expect("fetch with a timeout"),
    );
    assert!(none.is_empty(), "{none:?}");
    // Without a timeout FETCH waits for the next change.
    let (fetched, ()) = tokio::join!(reader.simple_query("FETCH 10 c"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer
            .batch_execute("UPDATE t SET name = 'z' WHERE id = 2")
            .await
            .expect("update");
    });
    let mut fetched = rows(fetched.expect("fetch 10"));
    // Both changes of the update come in one batch; a FETCH takes what is
    // there, so it may see them in one or two FETCHes.
    if fetched.len() < 2 {
        fetched.extend(rows(
            reader.simple_query("FETCH 10 c").await.expect("fetch"),
        ));
    }
    fetched.sort();
    assert_eq!(fetched, vec!["2|b|delete", "2|z|insert"]);
    // Errors: an unknown cursor, a duplicate one; COMMIT closes cursors.
    let err = reader
        .simple_query("FETCH 1 nope")
        .await
        .expect_err("unknown cursor");
    assert_eq!(err.code().map(|c| c.code()), Some("34000"), "{err}");
    reader
        .batch_execute("ROLLBACK; BEGIN")
        .await
        .expect("begin");
    reader
        .batch_execute("DECLARE c CURSOR FOR SUBSCRIBE TO names")
        .await
        .expect("declare again");
    let err = reader
        .simple_query("DECLARE c CURSOR FOR SUBSCRIBE TO names")
        .await
        .expect_err("duplicate cursor");
    assert_eq!(err.code().map(|c| c.code()), Some("42P03"), "{err}");
    reader.batch_execute("ROLLBACK").await.expect("rollback");
    let err = reader
        .simple_query("FETCH 1 c")
        .await
        .expect_err("closed at the end of the transaction");
    assert_eq!(err.code().map(|c| c.code()), Some("34000"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_streams_and_fetches_a_subscription() {
    let python = std::env::var("WEIR_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    if !common::have(&python, &["-c", "import psycopg"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let script = common::sql_tests_dir().join("clients/python_subscribe.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(server.pg_port.to_string())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "psycopg subscribe failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_prints_a_subscription_in_both_forms() {
    if !common::have("psql", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    // A bounded stream: its job ends, and so does the subscription, so
    // psql (which prints a result once it is complete) prints it.
    client
        .batch_execute(
            "CREATE STREAM bids (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP)
               WITH (connector = 'file', path = 'data/bids.csv', format = 'csv');
             CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS n FROM bids GROUP BY auction;",
        )
        .await
        .expect("stream and view");
    let expected = common::sorted_rows(&client, "FLUSH; SELECT auction, n FROM per_auction").await;
    for (command, separator) in [
        ("SUBSCRIBE TO per_auction", "|"),
        ("COPY (SUBSCRIBE TO per_auction) TO STDOUT", "\t"),
    ] {
        let output = std::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                "weir",
                "-d",
                "weir",
            ])
            .args(["-p", &server.pg_port.to_string(), "-c", command])
            .output()
            .expect("run psql");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{command}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut replayed: BTreeMap<String, i64> = BTreeMap::new();
        for line in stdout.lines().filter(|l| !l.is_empty()) {
            let (row, op) = line.rsplit_once(separator).expect("an op column");
            *replayed.entry(row.replace(separator, "|")).or_default() +=
                op_delta(op).expect("an op");
        }
        replayed.retain(|_, c| *c != 0);
        let replayed: Vec<String> = replayed.into_keys().collect();
        assert_eq!(replayed, expected, "{command}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_generator_cuts_batches_by_time_not_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(dir.path());
    let client = common::connect(&server).await;
    // 1,000 events a second, as in the README: a batch of 8,192 rows would
    // make a subscriber wait 8 s for each change.
    client
        .batch_execute(
            "CREATE STREAM bid WITH (connector = 'nexmark', table = 'bid', rate = 1000);
             CREATE MATERIALIZED VIEW bids_so_far AS SELECT count(*) AS n FROM bid;",
        )
        .await
        .expect("stream and view");
    let mut subscriber = Subscriber::start(&server, "bids_so_far", Protocol::Copy).await;
    let (row, delta) = tokio::time::timeout(PATIENCE, subscriber.changes.recv())
        .await
        .expect("a first change")
        .expect("the subscription runs")
        .expect("a row");
    assert_eq!(delta, 1, "{row}");
    let n: u64 = row.parse().expect("a count");
    assert!(
        n < 4096,
        "the first change counts {n} rows: the generator makes batches of seconds of events"
    );
}
