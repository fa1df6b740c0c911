//! A cancelled autocommit write leaves nothing; one that reports success
//! committed. Through the real binary: `INSERT .. SELECT`s of distinct
//! key ranges are cancelled (the protocol's CancelRequest, tokio-postgres's
//! `cancel_token`) or time out (`statement_timeout`) at moments spread over
//! their run, over and over; afterwards every range is checked against what
//! its statement reported: all of its rows after a success, none after a
//! 57014. Before the fix, a cancel that arrived while the statement's worker
//! was committing was reported as 57014 and the rows stayed.

mod common;

use std::time::{Duration, Instant};

use common::WeirProcess;

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

async fn count(client: &tokio_postgres::Client, round: i64) -> i64 {
    let row = client
        .query_one(
            "SELECT count(*) FROM w WHERE id > $1 AND id <= $2",
            &[&(round * ROWS), &((round + 1) * ROWS)],
        )
        .await
        .expect("count a range");
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_write_leaves_nothing_and_a_reported_one_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeirProcess::start(&dir.path().join("data"));
    let admin = common::connect(&server).await;
    admin
        .batch_execute("CREATE TABLE w (id BIGINT PRIMARY KEY, pad TEXT)")
        .await
        .expect("create");
    let writer = common::connect(&server).await;

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
        let delay = took.mul_f64(2.0 * (round as f64) / (ROUNDS as f64));
        let by_timeout = round % 2 == 0;
        if by_timeout {
            settle(
                &writer,
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
        let result = writer.batch_execute(&insert(round)).await;
        let _ = canceller.await;
        if by_timeout {
            settle(&writer, "SET statement_timeout = 0").await;
        }
        let reported = match result {
            Ok(()) => "committed",
            Err(err) if code(&err) == "57014" => "cancelled",
            Err(err) => panic!("round {round}: unexpected {}", code(&err)),
        };
        outcomes.push((round, reported));
    }

    let (mut committed, mut cancelled) = (0, 0);
    for (round, reported) in outcomes {
        let rows = count(&admin, round).await;
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
