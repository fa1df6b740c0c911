//! What a file table or stream does with a record it cannot decode, by its
//! `on_error` option: fail naming the file, line and column (the default),
//! skip it, or write it to a dead-letter file; skipped and dead-lettered
//! records are counted in `weir_bad_rows_total`.
//!
//! # Correctness
//! - A dead letter is written and synced before the rows after it are
//!   handed on, so a checkpoint past a bad record never loses it.
//! - A stream re-read from a checkpoint decodes its files again and writes
//!   the bad records before its position once more: dead letters are at
//!   least once (each carries its file and line, so duplicates are plain).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tracing::warn;

use super::decode::{BadRecord, ProblemKind};
use super::records::Block;
use crate::error::ConnectorError;
use crate::options::OnError;

/// The most bytes of a bad record quoted in an error's context.
const CONTEXT_BYTES: usize = 200;

/// Where skipped records are counted: the table's own counter until the
/// server hands in `weir_bad_rows_total`'s (see [`BadRowCounter::attach`]).
#[derive(Debug, Clone, Default)]
pub struct BadRowCounter(Arc<Mutex<Counter>>);

impl BadRowCounter {
    /// Count `n` more.
    pub fn inc_by(&self, n: u64) {
        self.0.lock().inc_by(n);
    }

    /// Bad records counted so far.
    pub fn get(&self) -> u64 {
        self.0.lock().get()
    }

    /// Count into `counter` from now on, with what was counted before.
    pub fn attach(&self, counter: Counter) {
        let mut slot = self.0.lock();
        counter.inc_by(slot.get());
        *slot = counter;
    }
}

/// The `on_error` policy of one table or stream, ready to apply.
#[derive(Debug, Clone)]
pub struct BadRows {
    on_error: OnError,
    dead_letters: Option<Arc<DeadLetterFile>>,
    counter: BadRowCounter,
}

impl BadRows {
    /// The policy `on_error`; a dead-letter file is opened on first use.
    pub fn new(on_error: OnError) -> Self {
        let dead_letters = match &on_error {
            OnError::DeadLetter(path) => Some(Arc::new(DeadLetterFile {
                path: PathBuf::from(path),
                file: Mutex::new(None),
            })),
            _ => None,
        };
        Self {
            on_error,
            dead_letters,
            counter: BadRowCounter::default(),
        }
    }

    /// The counter bad records go to.
    pub fn counter(&self) -> &BadRowCounter {
        &self.counter
    }

    /// Apply the policy to `bad` records of `block`, read from `file`.
    pub fn handle(
        &self,
        file: &str,
        block: &Block,
        bad: &[BadRecord],
    ) -> datafusion::common::Result<()> {
        let Some(first) = bad.first() else {
            return Ok(());
        };
        match (&self.on_error, &self.dead_letters) {
            (OnError::DeadLetter(_), Some(dead_letters)) => {
                dead_letters.write(file, block, bad)?;
            }
            (OnError::Skip, _) => {
                let line = block.records[first.index].line;
                warn!(file, line, error = %first.problem.message, skipped = bad.len(), "skipping bad records");
            }
            _ => return Err(failure(file, block, first).into()),
        }
        self.counter.inc_by(bad.len() as u64);
        Ok(())
    }
}

/// The error `on_error = 'fail'` stops with: Postgres's message, where it
/// is (file, line, column), and the record's start as context.
fn failure(file: &str, block: &Block, bad: &BadRecord) -> ConnectorError {
    let record = &block.records[bad.index];
    let column = bad
        .problem
        .column
        .as_ref()
        .map(|c| format!(", column \"{c}\""))
        .unwrap_or_default();
    let message = format!(
        "{} (file \"{file}\", line {}{column})",
        bad.problem.message, record.line
    );
    let bytes = block.bytes(bad.index);
    let quoted = String::from_utf8_lossy(&bytes[..bytes.len().min(CONTEXT_BYTES)]);
    let context = format!("file \"{file}\", line {}: \"{quoted}\"", record.line);
    let value = bad.problem.value.clone().unwrap_or_default();
    let at = format!(" (file \"{file}\", line {}{column})", record.line);
    match bad.problem.kind {
        ProblemKind::InvalidText => ConnectorError::InvalidText { message, context },
        ProblemKind::BadFormat => ConnectorError::BadCopyData { message, context },
        ProblemKind::InvalidDatetime => ConnectorError::InvalidTimestamp { value, at },
        ProblemKind::DatetimeOverflow => ConnectorError::TimestampOutOfRange { value, at },
    }
}

/// A JSON-lines file of records that could not be decoded.
#[derive(Debug)]
struct DeadLetterFile {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl DeadLetterFile {
    /// Append one line per bad record and sync it.
    fn write(&self, file: &str, block: &Block, bad: &[BadRecord]) -> Result<(), ConnectorError> {
        let mut lines = Vec::new();
        for b in bad {
            let bytes = block.bytes(b.index);
            let mut letter = serde_json::json!({
                "file": file,
                "line": block.records[b.index].line,
                "column": b.problem.column,
                "error": b.problem.message,
                "sqlstate": b.problem.kind.sqlstate(),
                "raw": String::from_utf8_lossy(bytes),
            });
            if std::str::from_utf8(bytes).is_err() {
                // The raw text is not UTF-8: its exact bytes, in hex.
                letter["raw_hex"] = bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .into();
            }
            if block.records[b.index].oversized {
                letter["truncated"] = true.into();
            }
            lines.extend_from_slice(letter.to_string().as_bytes());
            lines.push(b'\n');
        }
        let storage = |source| ConnectorError::Storage {
            action: "write dead letters to",
            path: self.path.display().to_string(),
            source,
        };
        let mut slot = self.file.lock();
        if slot.is_none() {
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(storage)?;
            *slot = Some(opened);
        }
        let Some(out) = slot.as_mut() else {
            return Ok(());
        };
        out.write_all(&lines).map_err(storage)?;
        out.sync_data().map_err(storage)
    }
}
