//! A job's event log: `<data dir>/jobs/<job>.events`, one JSON object per
//! line, appended and fsync'd at every transition, so that `SHOW JOB EVENTS`
//! tells what happened to a job across server restarts.
//!
//! A line cut short by a crash is the last one written; reading skips it
//! (and says so), and the next append starts a fresh line after it.
//! Appends are small and rare (a transition), so they are written with
//! plain blocking I/O from the caller's task: an fsync of one line is a
//! fraction of a millisecond on a local disk.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::status::JobStatus;
use crate::error::{Result, ServerError};

/// One transition of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// 1, 2, ... per job.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The status before (`None`: the job was just defined, or the server
    /// started).
    pub from: Option<JobStatus>,
    /// The status after.
    pub to: JobStatus,
    /// Why, in words.
    pub reason: String,
}

/// The event log of one job.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    next_seq: u64,
}

fn io_error(path: &Path, what: &str, err: std::io::Error) -> ServerError {
    ServerError::Io {
        message: format!(
            "could not {what} the job event log \"{}\": {err}",
            path.display()
        ),
    }
}

impl EventLog {
    /// The log of `job` in `dir`, continuing after what is there.
    pub fn open(dir: &Path, job: &str) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, "create the folder of", e))?;
        let path = dir.join(format!("{job}.events"));
        let next_seq = read(&path)?.last().map_or(1, |e| e.seq + 1);
        Ok(Self { path, next_seq })
    }

    /// Every event so far, oldest first.
    pub fn events(&self) -> Result<Vec<JobEvent>> {
        read(&self.path)
    }

    /// Append an event and make it durable.
    pub fn append(
        &mut self,
        at_ms: u64,
        from: Option<JobStatus>,
        to: JobStatus,
        reason: &str,
    ) -> Result<JobEvent> {
        let event = JobEvent {
            seq: self.next_seq,
            at_ms,
            from,
            to,
            reason: reason.to_string(),
        };
        let mut line = serde_json::to_vec(&event)
            .map_err(|e| ServerError::internal(format!("a job event as JSON: {e}")))?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| io_error(&self.path, "open", e))?;
        // A line a crash cut short has no newline: end it first, so this
        // event is a line of its own.
        let len = file
            .metadata()
            .map_err(|e| io_error(&self.path, "read", e))?
            .len();
        if len > 0 && !ends_with_newline(&self.path) {
            line.insert(0, b'\n');
        }
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error(&self.path, "append to", e))?;
        self.next_seq += 1;
        Ok(event)
    }

    /// Remove the log (its job was dropped).
    pub fn remove(&self) {
        if let Err(err) = fs::remove_file(&self.path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %self.path.display(), %err, "could not remove a dropped job's event log");
        }
    }
}

fn ends_with_newline(path: &Path) -> bool {
    fs::read(path).is_ok_and(|b| b.last() == Some(&b'\n'))
}

fn read(path: &Path) -> Result<Vec<JobEvent>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(path, "read", e)),
    };
    let mut events = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<JobEvent>(line) {
            Ok(event) => events.push(event),
            Err(err) => {
                warn!(path = %path.display(), %err, "a job event line that does not read was skipped (cut short by a crash?)");
            }
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_append_durably_and_continue_after_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = EventLog::open(dir.path(), "v").expect("open");
        log.append(1, None, JobStatus::Created, "defined")
            .expect("append");
        log.append(2, Some(JobStatus::Created), JobStatus::Running, "started")
            .expect("append");
        // A crash in the middle of the next line.
        let path = dir.path().join("v.events");
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"{\"seq\":3,\"at").expect("torn write");
        drop(file);
        let mut log = EventLog::open(dir.path(), "v").expect("reopen");
        let event = log
            .append(3, Some(JobStatus::Running), JobStatus::Restarting, "boom")
            .expect("append after the torn line");
        assert_eq!(event.seq, 3);
        let events = log.events().expect("read");
        assert_eq!(
            events.iter().map(|e| e.to).collect::<Vec<_>>(),
            vec![
                JobStatus::Created,
                JobStatus::Running,
                JobStatus::Restarting
            ]
        );
        log.remove();
        assert!(!path.exists());
    }
}
