//! Batch jobs through the real binary: a view over a file stream shows its
//! progress in bytes and files read of the total (CSV), or in rows of the
//! total its footers give (Parquet), is suspended midway and
//! resumed, and goes to `finished` with its sink holding every row of the
//! batch answer exactly once.
//!
//! "Midway" is made deterministic with the `source-batch/<job>@2:pause`
//! failpoint: the source partition that sends the job's second batch reads
//! no more (taking barriers still) until its run ends, so the job cannot
//! finish before it is suspended. The resumed run passes that point again
//! without stopping: the failpoint holds still once per process.

mod common;
#[path = "common/jobs.rs"]
mod jobs;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::WeirProcess;
use jobs::DEADLINE;

/// Rows per input file: several batches each (DataFusion's 8192 rows).
const ROWS_PER_FILE: i64 = 60_000;

/// Write `files` CSV files of `ROWS_PER_FILE` rows each into `folder`.
fn write_inputs(folder: &Path, files: i64) {
    std::fs::create_dir_all(folder).expect("input folder");
    for f in 0..files {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(folder.join(format!("part-{f}.csv"))).expect("input file"),
        );
        writeln!(out, "id,k").expect("header");
        for id in f * ROWS_PER_FILE + 1..=(f + 1) * ROWS_PER_FILE {
            writeln!(out, "{id},{}", id % 13).expect("row");
        }
        out.flush().expect("flush");
    }
}

/// The rows the JSON files of `folder` hold, `id|k`. Panics on a row
/// written twice.
fn written(folder: &Path) -> Vec<String> {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(entry.path()).expect("read a sink file");
            for line in text.lines() {
                let row: serde_json::Value = serde_json::from_str(line).expect("a json line");
                *counts
                    .entry(format!("{}|{}", row["id"], row["k"]))
                    .or_default() += 1;
            }
        }
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "rows written more than once: {twice:?}");
    counts.into_keys().collect()
}

/// The figures of a progress text: `(read, total)` of its part ending in
/// `unit` (`files`, `MB`, `kB`).
fn figures(progress: &str, unit: &str) -> (f64, f64) {
    let part = progress
        .split(", ")
        .find(|p| p.ends_with(&format!(" {unit}")))
        .unwrap_or_else(|| panic!("no {unit} in progress {progress:?}"));
    let (read, total) = part
        .trim_end_matches(unit)
        .trim()
        .split_once('/')
        .unwrap_or_else(|| panic!("{part:?} is read/total"));
    (
        read.parse().expect("a number read"),
        total.parse().expect("a total"),
    )
}

/// The bytes figures of a progress text, in kB.
fn kilobytes(progress: &str) -> (f64, f64) {
    if progress.contains(" MB") {
        let (read, total) = figures(progress, "MB");
        (read * 1e3, total * 1e3)
    } else {
        figures(progress, "kB")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_job_shows_bytes_read_and_suspended_midway_writes_each_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    let out = dir.path().join("out");
    write_inputs(&input, 2);
    let (_server, client, expected) = start_evens(dir.path(), &input, &out, "csv").await;
    assert_eq!(expected.len() as i64, ROWS_PER_FILE);

    // Midway: rows have arrived, one partition is held at its failpoint.
    wait_for_first_rows(&client).await;
    let (status, progress) = job_row(&client, "evens").await;
    assert_eq!(status, "running", "midway: {progress}");
    let (files_read, files_total) = figures(&progress, "files");
    assert_eq!(files_total, 2.0, "{progress}");
    assert!(files_read < files_total, "midway: {progress}");
    let (bytes_read, bytes_total) = kilobytes(&progress);
    assert!(
        bytes_read > 0.0 && bytes_read < bytes_total,
        "midway: {progress}"
    );
    let input_kb = std::fs::read_dir(&input)
        .expect("inputs")
        .flatten()
        .map(|e| e.metadata().expect("size").len())
        .sum::<u64>() as f64
        / 1e3;
    assert!(
        (bytes_total - input_kb).abs() / input_kb < 0.01,
        "the total is the files' size ({input_kb} kB): {progress}"
    );

    // Suspended midway: what the sink committed is part of the answer,
    // each row once.
    client
        .simple_query("ALTER JOB evens SUSPEND")
        .await
        .expect("suspend midway");
    wait_for(&client, "evens", "suspended").await;
    let before = written(&out);
    assert!(
        !before.is_empty() && before.len() < expected.len(),
        "suspended midway: {} of {} rows committed",
        before.len(),
        expected.len()
    );
    let expected_set: std::collections::BTreeSet<&String> = expected.iter().collect();
    assert!(
        before.iter().all(|r| expected_set.contains(r)),
        "only rows of the answer"
    );

    // Resumed: it reads on from the suspend and finishes.
    client
        .simple_query("ALTER JOB evens RESUME")
        .await
        .expect("resume");
    let progress = wait_for(&client, "evens", "finished").await;
    let (files_read, files_total) = figures(&progress, "files");
    assert_eq!(files_read, files_total, "finished: {progress}");
    let (bytes_read, bytes_total) = kilobytes(&progress);
    assert_eq!(bytes_read, bytes_total, "finished: {progress}");
    assert!(
        progress.ends_with("partitions ended"),
        "finished: {progress}"
    );
    wait_for_sink(&out, &expected).await;
    assert_eq!(
        common::sorted_rows(&client, "SELECT id, k FROM evens").await,
        expected,
        "the view equals the batch answer"
    );
}

/// Write `files` Parquet files of `ROWS_PER_FILE` rows each into `folder`,
/// in row groups of 8192 rows (so a partition sends several batches).
fn write_parquet_inputs(folder: &Path, files: i64) {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    use std::sync::Arc;

    std::fs::create_dir_all(folder).expect("input folder");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("k", DataType::Int64, false),
    ]));
    for f in 0..files {
        let file = std::fs::File::create(folder.join(format!("part-{f}.parquet"))).expect("file");
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(8192))
            .build();
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).expect("writer");
        let ids: Vec<i64> = (f * ROWS_PER_FILE + 1..=(f + 1) * ROWS_PER_FILE).collect();
        let ks: Vec<i64> = ids.iter().map(|id| id % 13).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(Int64Array::from(ks)),
            ],
        )
        .expect("batch");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_job_shows_rows_of_the_footers_total_through_a_suspend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    let out = dir.path().join("out");
    write_parquet_inputs(&input, 2);
    let (_server, client, expected) = start_evens(dir.path(), &input, &out, "parquet").await;
    let total = (2 * ROWS_PER_FILE) as f64;

    // Midway: one partition is held at its failpoint, so the rows the
    // partitions are past fall short of what the footers hold.
    wait_for_first_rows(&client).await;
    let (status, progress) = job_row(&client, "evens").await;
    assert_eq!(status, "running", "midway: {progress}");
    let (rows_read, rows_total) = figures(&progress, "rows");
    assert_eq!(rows_total, total, "the footers' total: {progress}");
    assert!(
        rows_read > 0.0 && rows_read < rows_total,
        "midway: {progress}"
    );

    client
        .simple_query("ALTER JOB evens SUSPEND")
        .await
        .expect("suspend midway");
    wait_for(&client, "evens", "suspended").await;
    client
        .simple_query("ALTER JOB evens RESUME")
        .await
        .expect("resume");

    // Finished: the resumed run's partitions skipped what the first run
    // read, and the figure still reaches the total.
    let progress = wait_for(&client, "evens", "finished").await;
    assert_eq!(
        figures(&progress, "rows"),
        (total, total),
        "finished: {progress}"
    );
    wait_for_sink(&out, &expected).await;
}

/// Job `name`'s row of `SHOW JOBS`: (status, progress).
async fn job_row(client: &tokio_postgres::Client, name: &str) -> (String, String) {
    let row = jobs::job_row(client, name).await;
    (row["status"].clone(), row["progress"].clone())
}

/// Wait until job `name` is `status`; its progress then.
async fn wait_for(client: &tokio_postgres::Client, name: &str, status: &str) -> String {
    jobs::wait_for_status(client, name, status).await["progress"].clone()
}

/// Start the server with the `source-batch/evens@2:pause` failpoint, and
/// make the job: view `evens` over the `format` files in `input`, written
/// to `out` as JSON. The batch answer over the files too.
async fn start_evens(
    dir: &Path,
    input: &Path,
    out: &Path,
    format: &str,
) -> (WeirProcess, tokio_postgres::Client, Vec<String>) {
    let server = WeirProcess::start_with(
        dir,
        &["--checkpoint-interval", "200ms"],
        &[("WEIR_FAILPOINT", "source-batch/evens@2:pause")],
    );
    let client = common::connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE STREAM s (id BIGINT, k BIGINT)
               WITH (connector = 'file', path = '{}/*.{format}', format = '{format}');
             CREATE MATERIALIZED VIEW evens AS SELECT id, k FROM s WHERE id % 2 = 0;
             CREATE SINK evens_out FROM evens
               WITH (connector = 'file', path = '{}', format = 'json')",
            input.display(),
            out.display()
        ))
        .await
        .expect("a view over two files, written out");
    let expected = common::sorted_rows(&client, "SELECT id, k FROM s WHERE id % 2 = 0").await;
    (server, client, expected)
}

/// Wait until view `evens` has a row: the job is midway.
async fn wait_for_first_rows(client: &tokio_postgres::Client) {
    let deadline = Instant::now() + DEADLINE;
    while common::sorted_rows(client, "SELECT count(*) > 0 FROM evens").await != ["t"] {
        assert!(Instant::now() < deadline, "the view never got a row");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until the sink's files in `out` hold `expected`, each row once.
async fn wait_for_sink(out: &Path, expected: &[String]) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = written(out);
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sink never held the batch answer: {} of {} rows",
            now.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
