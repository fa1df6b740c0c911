//! A cancelled autocommit write leaves nothing; one that reports success
//! committed. Through the real binary: `INSERT .. SELECT`s of distinct
//! key ranges are cancelled (the protocol's CancelRequest, tokio-postgres's
//! `cancel_token`) or time out (`statement_timeout`) at moments spread over
//! their run, over and over; afterwards every range is checked against what
//! its statement reported: all of its rows after a success, none after a
//! 57014. Before the fix, a cancel that arrived while the statement's worker
//! was committing was reported as 57014 and the rows stayed.
//!
//! The same for `COPY .. FROM STDIN`, a statement from its `COPY` to the
//! client's CopyDone: COPYs of about 10 MB (past the chunk a COPY writes
//! mid-stream) are stopped by CancelRequest, `statement_timeout` or the
//! client going away, at moments spread over their run.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::WeirProcess;
use futures::SinkExt;

const ROWS: i64 = 20_000;
const ROUNDS: i64 = 40;

fn code(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map(|e| e.code().code().to_string())
        .unwrap_or_else(|| err.to_string())
}

/// Run `sql`, again if a cancel meant for the statement before reaches it
/// (a CancelRequest is asynchronous: one sent as a statement ends may stop
/// the next, in Postgres too).
async fn settle(client: &tokio_postgres::Client, sql: &str) {
    for _ in 0..10 {
        match client.batch_execute(sql).await {
            Ok(()) => return,
            Err(err) if code(&err) == "57014" => continue,
            Err(err) => panic!("{sql}: {}", code(&err)),
        }
    }
    panic!("{sql}: cancelled ten times");
}

/// The rows of `table` in round `round`'s range of ids (`per_round` ids
/// a round).
async fn count(client: &tokio_postgres::Client, table: &str, per_round: i64, round: i64) -> i64 {
    client
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE id > $1 AND id <= $2"),
            &[&(round * per_round), &((round + 1) * per_round)],
        )
        .await
        .expect("count a range")
        .get(0)
}

/// A server with an empty table `table` of ids and padding, a client
/// that checks it and one that writes.
async fn writing_to(
    table: &str,
) -> (
    tempfile::TempDir,
    WeirProcess,
    tokio_postgres::Client,
    tokio_postgres::Client,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(&dir.path().join("data"));
    let admin = common::connect(&server).await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, pad TEXT)"
        ))
        .await
        .expect("create");
    let writer = common::connect(&server).await;
    (dir, server, admin, writer)
}

/// When round `round` of `rounds` stops its statement: spread over 0..2x
/// `took`, how long one statement takes here.
fn stop_at(took: Duration, round: i64, rounds: i64) -> Duration {
    took.mul_f64(2.0 * (round as f64) / (rounds as f64))
}

/// `work`, a statement of `writer`'s, stopped `delay` after it starts by a
/// CancelRequest or, `by_timeout`, by `statement_timeout` (off again after).
async fn stopped_after<T>(
    writer: &tokio_postgres::Client,
    by_timeout: bool,
    delay: Duration,
    work: impl std::future::Future<Output = T>,
) -> T {
    if by_timeout {
        settle(
            writer,
            &format!("SET statement_timeout = '{}ms'", delay.as_millis().max(1)),
        )
        .await;
    }
    let token = writer.cancel_token();
    let canceller = tokio::spawn(async move {
        if !by_timeout {
            tokio::time::sleep(delay).await;
            let _ = token.cancel_query(tokio_postgres::NoTls).await;
        }
    });
    let result = work.await;
    let _ = canceller.await;
    if by_timeout {
        settle(writer, "SET statement_timeout = 0").await;
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_write_leaves_nothing_and_a_reported_one_stays() {
    let (_dir, _server, admin, writer) = writing_to("w").await;

    // How long one insert takes here: cancels are spread over 0..2x that.
    let started = Instant::now();
    let insert = |round: i64| {
        format!(
            "INSERT INTO w SELECT x, repeat('p', 64) FROM generate_series({}, {}) AS g(x)",
            round * ROWS + 1,
            (round + 1) * ROWS
        )
    };
    writer
        .batch_execute(&insert(0))
        .await
        .expect("first insert");
    let took = started.elapsed().max(Duration::from_millis(5));

    let mut outcomes = Vec::new();
    for round in 1..ROUNDS {
        let delay = stop_at(took, round, ROUNDS);
        let by_timeout = round % 2 == 0;
        let result = stopped_after(
            &writer,
            by_timeout,
            delay,
            writer.batch_execute(&insert(round)),
        )
        .await;
        let reported = match result {
            Ok(()) => "committed",
            Err(err) if code(&err) == "57014" => "cancelled",
            Err(err) => panic!("round {round}: unexpected {}", code(&err)),
        };
        outcomes.push((round, reported));
    }

    let (mut committed, mut cancelled) = (0, 0);
    for (round, reported) in outcomes {
        let rows = count(&admin, "w", ROWS, round).await;
        match reported {
            "committed" => {
                committed += 1;
                assert_eq!(rows, ROWS, "round {round} reported success: all rows");
            }
            _ => {
                cancelled += 1;
                assert_eq!(rows, 0, "round {round} reported 57014: nothing");
            }
        }
    }
    eprintln!("cancel_writes: {committed} committed, {cancelled} cancelled, insert took {took:?}");
    // A later statement still writes and commits.
    settle(&writer, "INSERT INTO w VALUES (-1, 'after')").await;
    assert_eq!(
        admin
            .query_one("SELECT count(*) FROM w WHERE id = -1", &[])
            .await
            .expect("count")
            .get::<_, i64>(0),
        1
    );
}

const COPY_ROWS: i64 = 10_000;
const COPY_ROUNDS: i64 = 30;

/// Round `round`'s rows in COPY's text format (1,000-byte rows: about
/// 10 MB, more than the 8 MB of rows a COPY gathers before it writes), as
/// the 64 KiB pieces a client sends.
fn copy_data(round: i64) -> Vec<Bytes> {
    let pad = "p".repeat(1_000);
    let mut text = String::with_capacity(COPY_ROWS as usize * 1_010);
    for id in round * COPY_ROWS + 1..=(round + 1) * COPY_ROWS {
        text.push_str(&format!("{id}\t{pad}\n"));
    }
    text.as_bytes()
        .chunks(64 << 10)
        .map(Bytes::copy_from_slice)
        .collect()
}

/// One COPY of `data` into `c`; `finishing` is set once CopyDone is about
/// to be sent (before it the server cannot have committed).
async fn copy(
    client: &tokio_postgres::Client,
    data: Vec<Bytes>,
    finishing: &AtomicBool,
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in("COPY c FROM STDIN").await?;
    let mut sink = Box::pin(sink);
    for piece in data {
        sink.send(piece).await?;
    }
    finishing.store(true, Ordering::SeqCst);
    sink.as_mut().finish().await
}

/// What a round's client was told.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Told {
    /// COPY n: every row must be there.
    Committed,
    /// 57014: none may be.
    Cancelled,
    /// Nothing: the client went away before sending CopyDone (none may be
    /// there), or after (all or none).
    Gone { after_copy_done: bool },
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_copy_leaves_nothing_and_a_reported_one_stays() {
    let (_dir, server, admin, writer) = writing_to("c").await;

    // How long one COPY takes here: stops are spread over 0..2x that.
    let started = Instant::now();
    let rows = copy(&writer, copy_data(0), &AtomicBool::new(false))
        .await
        .expect("first copy");
    assert_eq!(rows, COPY_ROWS as u64);
    let took = started.elapsed().max(Duration::from_millis(5));

    let mut outcomes = Vec::new();
    for round in 1..COPY_ROUNDS {
        let delay = stop_at(took, round, COPY_ROUNDS);
        let data = copy_data(round);
        let finishing = Arc::new(AtomicBool::new(false));
        let told = match round % 3 {
            // The client goes away: its connection is dropped mid-COPY,
            // without a word (no CopyFail, no Terminate).
            2 => {
                let (client, connection) = server
                    .pg_config()
                    .connect(tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                let connection = tokio::spawn(connection);
                let work = copy(&client, data, &finishing);
                tokio::pin!(work);
                tokio::select! {
                    result = &mut work => match result {
                        Ok(rows) => {
                            assert_eq!(rows, COPY_ROWS as u64);
                            Told::Committed
                        }
                        Err(err) => panic!("round {round}: unexpected {}", code(&err)),
                    },
                    () = tokio::time::sleep(delay) => {
                        connection.abort();
                        let _ = connection.await;
                        Told::Gone { after_copy_done: finishing.load(Ordering::SeqCst) }
                    }
                }
            }
            by => {
                let result =
                    stopped_after(&writer, by == 1, delay, copy(&writer, data, &finishing)).await;
                match result {
                    Ok(rows) => {
                        assert_eq!(rows, COPY_ROWS as u64, "round {round}: COPY's count");
                        Told::Committed
                    }
                    Err(err) if code(&err) == "57014" => Told::Cancelled,
                    Err(err) => panic!("round {round}: unexpected {}", code(&err)),
                }
            }
        };
        let by = ["CancelRequest", "statement_timeout", "client gone"][(round % 3) as usize];
        outcomes.push((round, by, told));
    }

    // The gone clients' sessions have ended (and with them their COPYs)
    // once only the admin's and the writer's are left.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let sessions: i64 = admin
            .query_one("SELECT count(*) FROM pg_catalog.pg_stat_activity", &[])
            .await
            .expect("sessions")
            .get(0);
        if sessions == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{sessions} sessions still open two minutes after their clients left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for &(round, by, told) in &outcomes {
        let rows = count(&admin, "c", COPY_ROWS, round).await;
        match told {
            Told::Committed => assert_eq!(rows, COPY_ROWS, "round {round} reported COPY: all rows"),
            Told::Cancelled => assert_eq!(rows, 0, "round {round} reported 57014: nothing"),
            Told::Gone {
                after_copy_done: false,
            } => assert_eq!(rows, 0, "round {round} left before CopyDone: nothing"),
            Told::Gone {
                after_copy_done: true,
            } => assert!(
                rows == 0 || rows == COPY_ROWS,
                "round {round} left after CopyDone: all or nothing, not {rows}"
            ),
        }
        *tally
            .entry(format!("{by}: {told:?} with {rows} rows"))
            .or_default() += 1;
    }
    eprintln!("cancel_writes (COPY): {tally:?}, one COPY took {took:?}");
    // The stops did stop COPYs (before the gate, a COPY ignored them and
    // always committed): the earliest moments fall well inside the COPY.
    for by in ["CancelRequest", "statement_timeout"] {
        assert!(
            outcomes
                .iter()
                .any(|&(_, stopped_by, told)| stopped_by == by && told == Told::Cancelled),
            "no COPY was stopped by {by}: {tally:?}"
        );
    }
    // The writer still copies and commits.
    let rows = copy(&writer, copy_data(COPY_ROUNDS), &AtomicBool::new(false))
        .await
        .expect("a COPY after the stopped ones");
    assert_eq!(rows, COPY_ROWS as u64);
    assert_eq!(count(&admin, "c", COPY_ROWS, COPY_ROUNDS).await, COPY_ROWS);
}
