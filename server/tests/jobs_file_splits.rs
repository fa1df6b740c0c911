//! A file stream never skips or repeats a file across a restart (design
//! 0015): its checkpoints record the files each partition still reads, and
//! a restarted job reads exactly those, whatever the folder holds then.
//!
//! Each case: six files of one batch each, dealt to the stream's two
//! partitions (the tests' servers run `--workers 2`); a view counting rows
//! per file, written out by a file sink; the `source-batch/per_file@2:pause`
//! failpoint holds the partition that sends the job's second batch still,
//! so that the other partition reads all its files and ends while the
//! held one has read one or two of its own. A checkpoint is taken after
//! that; the view then says which files were read whole (each is one
//! batch) and which not at all. The folder is changed, the server killed
//! with SIGKILL and started again without the failpoint:
//! - a file read whole removed: the job finishes with the batch answer
//!   over the files as they were (before the fix, the other files were
//!   dealt anew and a partition's row count skipped a file it never read);
//! - a file added: not read (a job reads the files it started with);
//! - a file not yet read removed: the job fails, naming the file, once its
//!   restart policy runs out.
//!
//! The sink's files always add up to the view: nothing lost, nothing
//! written twice.
//!
//! And, with two files or one: `SHOW JOBS` counts the partitions the
//! restored job runs, not those a new listing would deal; a folder emptied
//! after the job read it all does not keep the stream (and its view) from
//! loading; a file rewritten after being half read fails the job, naming
//! the file, instead of resuming at a row count inside other rows.

mod common;
#[path = "common/jobs.rs"]
mod jobs;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::WeirProcess;
use jobs::{job_row, wait_until};

/// Files in the folder at the start.
const FILES: i64 = 6;

/// Rows per file: one batch each.
const ROWS: i64 = 100;

/// The file formats the cases run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Parquet,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// What is done to the folder between the checkpoint and the kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Remove a file the job had read whole.
    RemoveRead,
    /// Add a file.
    Add,
    /// Remove a file the job had not read at all.
    RemoveUnread,
}

/// `part-<f>.<format>` in `folder`: ids `f * ROWS + 1 ..= (f + 1) * ROWS`,
/// each row naming its file.
fn write_part(folder: &Path, format: Format, f: i64) -> PathBuf {
    let path = folder.join(format!("part-{f}.{}", format.name()));
    let ids: Vec<i64> = (f * ROWS + 1..=(f + 1) * ROWS).collect();
    match format {
        Format::Csv => {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("file"));
            writeln!(out, "f,id").expect("header");
            for id in &ids {
                writeln!(out, "{f},{id}").expect("row");
            }
            out.flush().expect("flush");
        }
        Format::Parquet => {
            use datafusion::arrow::array::Int64Array;
            use datafusion::arrow::datatypes::{DataType, Field, Schema};
            use datafusion::arrow::record_batch::RecordBatch;
            use datafusion::parquet::arrow::ArrowWriter;
            use std::sync::Arc;

            let schema = Arc::new(Schema::new(vec![
                Field::new("f", DataType::Int64, false),
                Field::new("id", DataType::Int64, false),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![f; ids.len()])),
                    Arc::new(Int64Array::from(ids)),
                ],
            )
            .expect("batch");
            let file = std::fs::File::create(&path).expect("file");
            let mut writer = ArrowWriter::try_new(file, schema, None).expect("writer");
            writer.write(&batch).expect("write");
            writer.close().expect("close");
        }
    }
    path
}

/// The view, as `f|n|total` rows.
const VIEW: &str = "SELECT f, n, total FROM per_file";

/// The batch answer the view must hold.
const ANSWER: &str = "SELECT f, count(*) AS n, sum(id) AS total FROM s GROUP BY f";

/// Start a server on `dir` (the failpoint armed when `paused`).
fn server(dir: &Path, paused: bool) -> WeirProcess {
    let env: &[(&str, &str)] = if paused {
        &[("WEIR_FAILPOINT", "source-batch/per_file@2:pause")]
    } else {
        &[]
    };
    WeirProcess::start_with(dir, &["--checkpoint-interval", "1s"], env)
}

/// The stream over `input`'s files, the view counting rows per file, and
/// its file sink into `out`.
async fn create_view(client: &tokio_postgres::Client, input: &Path, out: &Path, format: Format) {
    client
        .batch_execute(&format!(
            "CREATE STREAM s (f BIGINT, id BIGINT)
               WITH (connector = 'file', path = '{input}/*.{ext}', format = '{ext}');
             CREATE MATERIALIZED VIEW per_file
               WITH (restart_strategy = 'fixed_delay', restart_attempts = 1, restart_delay = '100ms')
               AS SELECT f, count(*) AS n, sum(id) AS total FROM s GROUP BY f;
             CREATE SINK per_file_out FROM per_file
               WITH (connector = 'file', path = '{out}', format = 'json')",
            input = input.display(),
            ext = format.name(),
            out = out.display(),
        ))
        .await
        .expect("a view over the files, written out");
}

/// Wait for a checkpoint whose barrier left after the moment this is
/// called (one is in flight at a time: the second after the epoch seen now
/// started after it).
async fn checkpoint_after_now(client: &tokio_postgres::Client) {
    let row = wait_until(client, "per_file", "a checkpoint", |r| {
        r["last_checkpoint_epoch"] != "NULL"
    })
    .await;
    let seen: u64 = row["last_checkpoint_epoch"].parse().expect("an epoch");
    wait_until(client, "per_file", "checkpointed after the pause", |r| {
        r["last_checkpoint_epoch"]
            .parse::<u64>()
            .is_ok_and(|e| e >= seen + 2)
    })
    .await;
}

/// Run one case: the view and the sink after the restart equal the batch
/// answer over the files as they were, or the job failed naming the file.
async fn run(format: Format, change: Change) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&input).expect("input folder");
    for f in 0..FILES {
        write_part(&input, format, f);
    }
    let first = server(dir.path(), true);
    let client = common::connect(&first).await;
    create_view(&client, &input, &out, format).await;
    // The batch answer over the files as they are now, before any change.
    let answer = common::sorted_rows(&client, ANSWER).await;
    assert_eq!(answer.len() as i64, FILES, "{answer:?}");

    // One partition ended, the other is held; then a checkpoint whose
    // barrier left after both.
    wait_until(&client, "per_file", "held with one partition ended", |r| {
        r["progress"].contains("1/2 partitions ended")
    })
    .await;
    checkpoint_after_now(&client).await;
    assert_eq!(job_row(&client, "per_file").await["status"], "running");

    // Which files the job read: whole (one batch) or not at all.
    let counted: BTreeMap<i64, i64> = common::sorted_rows(&client, "SELECT f, n FROM per_file")
        .await
        .iter()
        .map(|r| {
            let (f, n) = r.split_once('|').expect("f|n");
            (f.parse().expect("f"), n.parse().expect("n"))
        })
        .collect();
    assert!(
        counted.values().all(|n| *n == ROWS),
        "files are read whole or not at all: {counted:?}"
    );
    let read: Vec<i64> = counted.keys().copied().collect();
    let unread: Vec<i64> = (0..FILES).filter(|f| !counted.contains_key(f)).collect();
    assert!(
        read.len() >= 4 && !unread.is_empty(),
        "one partition read its three files, the held one one or two: read {read:?}"
    );

    let expected = match change {
        Change::RemoveRead => {
            // part-0: the first partition's first file, read whole
            // whichever partition is held; without it a new listing deals
            // every other file to another place.
            let gone = read[0];
            std::fs::remove_file(input.join(format!("part-{gone}.{}", format.name())))
                .expect("remove a file read whole");
            answer.clone()
        }
        Change::Add => {
            write_part(&input, format, FILES);
            answer.clone()
        }
        Change::RemoveUnread => {
            let gone = unread[0];
            std::fs::remove_file(input.join(format!("part-{gone}.{}", format.name())))
                .expect("remove a file not read");
            Vec::new()
        }
    };
    first.kill();

    let second = server(dir.path(), false);
    let client = common::connect(&second).await;
    if change == Change::RemoveUnread {
        let gone = format!("part-{}.{}", unread[0], format.name());
        let row = wait_until(&client, "per_file", "failed", |r| r["status"] == "failed").await;
        assert!(
            row["last_error"].contains(&gone),
            "the reason names the file the checkpoint still had to read ({gone}): {row:?}"
        );
        let log = jobs::events(&client, "per_file").await;
        assert!(
            log.iter()
                .any(|(_, to, why)| to == "restarting" && why.contains(&gone)),
            "the restart policy had its attempt: {log:?}"
        );
        // What the sink committed is still only rows the view had.
        let sink = common::folded_sink(&out, &["f", "n", "total"]);
        assert!(
            sink.iter().all(|r| answer.contains(r)),
            "the sink holds only true rows: {sink:?}"
        );
        return;
    }
    jobs::wait_for_status(&client, "per_file", "finished").await;
    assert_eq!(
        common::sorted_rows(&client, VIEW).await,
        expected,
        "the view equals the batch answer over the files as they were ({change:?})"
    );
    // The sink's last files are committed by the final checkpoint, right
    // after the job is marked finished: poll for them.
    let deadline = std::time::Instant::now() + jobs::DEADLINE;
    loop {
        let sink = common::folded_sink(&out, &["f", "n", "total"]);
        if sink == expected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sink never added up to the view: {sink:?} != {expected:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_a_file_read_whole_then_removed_is_not_missed_after_a_kill() {
    run(Format::Csv, Change::RemoveRead).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_a_file_added_after_the_start_is_not_read_after_a_kill() {
    run(Format::Csv, Change::Add).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_a_file_not_yet_read_that_vanished_fails_the_job_naming_it() {
    run(Format::Csv, Change::RemoveUnread).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_a_file_read_whole_then_removed_is_not_missed_after_a_kill() {
    run(Format::Parquet, Change::RemoveRead).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_a_file_added_after_the_start_is_not_read_after_a_kill() {
    run(Format::Parquet, Change::Add).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_a_file_not_yet_read_that_vanished_fails_the_job_naming_it() {
    run(Format::Parquet, Change::RemoveUnread).await;
}

/// Two CSV files, one per partition, read to the end; then the folder is
/// emptied and the server killed: the stream and its view load anyway,
/// with the view's rows, and the log says the path matches no file (the
/// stream used to fail to load, and the view with it).
///
/// (`SHOW JOBS` counting a restored job's recorded partitions rather than
/// a new listing's is not shown here: with one one-batch file per
/// partition, the `source-batch@2` failpoint holds a partition only after
/// its file is sent, so which file is safe to remove cannot be told.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_folder_still_loads_its_stream_and_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&input).expect("input folder");
    for f in 0..2 {
        write_part(&input, Format::Csv, f);
    }
    let second = server(dir.path(), false);
    let client = common::connect(&second).await;
    create_view(&client, &input, &out, Format::Csv).await;
    let answer = common::sorted_rows(&client, ANSWER).await;
    let row = jobs::wait_for_status(&client, "per_file", "finished").await;
    assert!(
        row["progress"].ends_with("2/2 partitions ended"),
        "both partitions read: {row:?}"
    );
    assert_eq!(common::sorted_rows(&client, VIEW).await, answer);
    // The final checkpoint is written as the job finishes: wait for the
    // sink's files, which it commits, before the kill.
    let deadline = std::time::Instant::now() + jobs::DEADLINE;
    while common::folded_sink(&out, &["f", "n", "total"]) != answer {
        assert!(
            std::time::Instant::now() < deadline,
            "the sink never added up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Every file gone: the stream opens empty and the finished view loads.
    for entry in std::fs::read_dir(&input).expect("input folder") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove");
    }
    second.kill();
    let log = dir.path().join("third.log");
    let third = WeirProcess::start_logging(dir.path(), &log, &["--checkpoint-interval", "1s"]);
    let client = common::connect(&third).await;
    let row = job_row(&client, "per_file").await;
    assert_eq!(row["status"], "finished", "{row:?}");
    assert_eq!(common::sorted_rows(&client, VIEW).await, answer);
    assert_eq!(
        common::sorted_rows(&client, "SELECT count(*) FROM s").await,
        ["0"],
        "the stream is there, over no file"
    );
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(
        logged.contains("the file stream's path matches no file now"),
        "the log says the folder is empty: {logged}"
    );
}

/// How a half-read file is changed before the restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewrite {
    /// Cut to fewer rows than the checkpoint had read of it.
    Truncated,
    /// Replaced by other rows of the very same size.
    SameSize,
}

/// One CSV file of several batches, half read when the checkpoint is taken
/// (the failpoint holds its partition at the job's second batch), is
/// rewritten before the restart: the restored job must not resume at the
/// recorded row count inside other rows. It fails, naming the file, once
/// its restart policy runs out (before the fix, a truncated file made the
/// job skip every row of it, and a same-sized one mixed two files' rows).
async fn a_half_read_file_rewritten(rewrite: Rewrite) {
    const BIG: i64 = 40_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&input).expect("input folder");
    let file = input.join("part-0.csv");
    let write = |f: i64, rows: i64| {
        let mut text = String::from("f,id\n");
        for id in 1..=rows {
            text.push_str(&format!("{f},{id}\n"));
        }
        std::fs::write(&file, text).expect("write the file");
    };
    write(0, BIG);
    let first = server(dir.path(), true);
    let client = common::connect(&first).await;
    create_view(&client, &input, &out, Format::Csv).await;
    wait_until(&client, "per_file", "one batch through", |r| {
        r["progress"].contains("0/1 partitions ended")
    })
    .await;
    checkpoint_after_now(&client).await;
    let n: i64 = common::sorted_rows(&client, "SELECT n FROM per_file").await[0]
        .parse()
        .expect("n");
    assert!(n > 0 && n < BIG, "the file is half read: {n} of {BIG} rows");
    match rewrite {
        Rewrite::Truncated => write(0, n / 2),
        // Same length, other rows: every `0,` becomes `9,`.
        Rewrite::SameSize => write(9, BIG),
    }
    first.kill();

    let second = server(dir.path(), false);
    let client = common::connect(&second).await;
    let row = wait_until(&client, "per_file", "failed", |r| r["status"] == "failed").await;
    assert!(
        row["last_error"].contains("part-0.csv")
            && row["last_error"].contains("changed since the checkpoint"),
        "the reason names the rewritten file: {row:?}"
    );
    let sink = common::folded_sink(&out, &["f", "n", "total"]);
    assert!(
        sink.iter().all(|r| r.starts_with("0|")),
        "nothing of the new file reached the sink: {sink:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_a_half_read_file_truncated_before_a_restart_fails_the_job_naming_it() {
    a_half_read_file_rewritten(Rewrite::Truncated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_a_half_read_file_replaced_by_one_of_its_size_fails_the_job_naming_it() {
    a_half_read_file_rewritten(Rewrite::SameSize).await;
}
