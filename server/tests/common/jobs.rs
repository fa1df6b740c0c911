//! Reading jobs as a user does: `SHOW JOBS` rows by column name, polling
//! until a job reaches a status, and `SHOW JOB EVENTS`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

/// A generous deadline for what a test waits on (never a timed assertion:
/// only a broken server reaches it).
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The `SHOW JOBS` row of `job`, column by name (`NULL` for a null).
pub async fn job_row(client: &Client, job: &str) -> HashMap<String, String> {
    let rows = client.simple_query("SHOW JOBS").await.expect("SHOW JOBS");
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) if r.get("name") == Some(job) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), r.get(i).unwrap_or("NULL").to_string()))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_else(|| panic!("SHOW JOBS has no {job}"))
}

/// Poll `SHOW JOBS` until `job`'s row satisfies `done` (described as
/// `what` if it never does); its row then.
pub async fn wait_until(
    client: &Client,
    job: &str,
    what: &str,
    done: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let row = job_row(client, job).await;
        if done(&row) {
            return row;
        }
        assert!(Instant::now() < deadline, "job {job} never {what}: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll `SHOW JOBS` until `job` has `status`; its row then.
pub async fn wait_for_status(client: &Client, job: &str, status: &str) -> HashMap<String, String> {
    wait_until(client, job, &format!("reached {status}"), |r| {
        r["status"] == status
    })
    .await
}

/// `SHOW JOB EVENTS job` as (from, to, reason).
pub async fn events(client: &Client, job: &str) -> Vec<(String, String, String)> {
    client
        .simple_query(&format!("SHOW JOB EVENTS {job}"))
        .await
        .expect("SHOW JOB EVENTS")
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((
                r.get("from_status").unwrap_or("NULL").to_string(),
                r.get("to_status").unwrap_or_default().to_string(),
                r.get("reason").unwrap_or_default().to_string(),
            )),
            _ => None,
        })
        .collect()
}
