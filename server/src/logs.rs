//! Each job's recent log lines, kept in memory for the API and the console
//! (`GET /api/v1/jobs/{name}/logs`), and its recent checkpoints as the
//! coordinator reported them.
//!
//! A `tracing` [`Layer`] ([`JobLogLayer`]) sees every event beside the
//! formatter that writes the process's log: an event that names a job (a
//! `job` field on it, or on a span it happens in: the runtime's `worker`
//! and `job task` spans carry `job` and `operator`) goes into that job's
//! ring of the last [`LINES_PER_JOB`] lines. The checkpoint coordinator's
//! "checkpoint complete" event (epoch, duration, sizes) also goes into the
//! job's checkpoint history: the manifests in the store do not say how long
//! a checkpoint took, and retention keeps only the last few.
//!
//! One process-wide buffer ([`global`]), as the subscriber it is fed by is
//! process-wide. Bounded: lines and checkpoints per job, and jobs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;
use std::sync::OnceLock;

use parking_lot::Mutex;
use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;
use utoipa::ToSchema;

/// Lines kept per job.
pub const LINES_PER_JOB: usize = 500;
/// Checkpoints kept per job.
pub const CHECKPOINTS_PER_JOB: usize = 200;
/// Jobs kept; past it, the one quiet for longest is forgotten (dropped
/// jobs are never told to this buffer).
pub const JOBS: usize = 1024;

/// One log line of a job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogLine {
    /// When (milliseconds since the Unix epoch).
    pub at_ms: u64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The message.
    pub message: String,
    /// The operator it came from, when one did.
    pub operator: Option<String>,
    /// The event's other fields.
    pub fields: BTreeMap<String, String>,
}

/// A checkpoint as its coordinator reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRecord {
    /// Its epoch.
    pub epoch: u64,
    /// When it completed (milliseconds since the Unix epoch).
    pub at_ms: u64,
    /// Barrier injected to manifest written.
    pub duration_ms: f64,
    /// Bytes of state its manifest names.
    pub size_bytes: Option<u64>,
    /// Bytes it wrote.
    pub written_bytes: Option<u64>,
}

#[derive(Default)]
struct JobRecord {
    lines: VecDeque<LogLine>,
    checkpoints: VecDeque<CheckpointRecord>,
    last_ms: u64,
}

/// Every job's recent lines and checkpoints.
#[derive(Default)]
pub struct JobLogs {
    jobs: Mutex<HashMap<String, JobRecord>>,
}

/// The process's buffer.
pub fn global() -> &'static JobLogs {
    static LOGS: OnceLock<JobLogs> = OnceLock::new();
    LOGS.get_or_init(JobLogs::default)
}

impl JobLogs {
    /// The newest `limit` lines of `job`, oldest first.
    pub fn lines(&self, job: &str, limit: usize) -> Vec<LogLine> {
        let jobs = self.jobs.lock();
        let Some(record) = jobs.get(job) else {
            return Vec::new();
        };
        let skip = record.lines.len().saturating_sub(limit);
        record.lines.iter().skip(skip).cloned().collect()
    }

    /// The checkpoints of `job` seen since start, oldest first.
    pub fn checkpoints(&self, job: &str) -> Vec<CheckpointRecord> {
        self.jobs
            .lock()
            .get(job)
            .map(|r| r.checkpoints.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn record(&self, job: &str, line: LogLine, checkpoint: Option<CheckpointRecord>) {
        let mut jobs = self.jobs.lock();
        if !jobs.contains_key(job) && jobs.len() >= JOBS {
            let quietest = jobs
                .iter()
                .min_by_key(|(_, r)| r.last_ms)
                .map(|(k, _)| k.clone());
            if let Some(quietest) = quietest {
                jobs.remove(&quietest);
            }
        }
        let record = jobs.entry(job.to_string()).or_default();
        record.last_ms = line.at_ms;
        if record.lines.len() == LINES_PER_JOB {
            record.lines.pop_front();
        }
        record.lines.push_back(line);
        if let Some(checkpoint) = checkpoint {
            // A restarted run counts its epochs from its restored one:
            // keep the history in epoch order.
            record.checkpoints.retain(|c| c.epoch < checkpoint.epoch);
            if record.checkpoints.len() == CHECKPOINTS_PER_JOB {
                record.checkpoints.pop_front();
            }
            record.checkpoints.push_back(checkpoint);
        }
    }
}

/// The layer that feeds [`global`].
pub struct JobLogLayer;

/// The job and operator a span names.
struct SpanJob {
    job: Option<String>,
    operator: Option<String>,
}

/// An event's or a span's fields, as text.
#[derive(Default)]
struct Fields {
    message: String,
    fields: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields
                .insert(field.name().to_string(), format!("{value:?}"));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields
                .insert(field.name().to_string(), value.to_string());
        }
    }
}

impl<S> Layer<S> for JobLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let job = fields.fields.remove("job");
        let operator = fields.fields.remove("operator");
        if (job.is_some() || operator.is_some())
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(SpanJob { job, operator });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut job = fields.fields.remove("job");
        let mut operator = fields.fields.remove("operator");
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(named) = span.extensions().get::<SpanJob>() {
                    job = job.or_else(|| named.job.clone());
                    operator = operator.or_else(|| named.operator.clone());
                }
            }
        }
        let Some(job) = job else {
            return;
        };
        let at_ms = weir_runtime::checkpoint::now_ms();
        let metadata = event.metadata();
        let checkpoint = (metadata.target().starts_with("weir_runtime::checkpoint")
            && fields.message == "checkpoint complete")
            .then(|| checkpoint_of(&fields.fields, at_ms))
            .flatten();
        let line = LogLine {
            at_ms,
            level: metadata.level().to_string(),
            target: metadata.target().to_string(),
            message: fields.message,
            operator,
            fields: fields.fields,
        };
        global().record(&job, line, checkpoint);
    }
}

/// The coordinator's "checkpoint complete" fields: `epoch`, `ms`, `size`
/// (state bytes named), `bytes` (written).
fn checkpoint_of(fields: &BTreeMap<String, String>, at_ms: u64) -> Option<CheckpointRecord> {
    let number = |key: &str| fields.get(key).and_then(|v| v.parse::<u64>().ok());
    Some(CheckpointRecord {
        epoch: number("epoch")?,
        at_ms,
        duration_ms: fields.get("ms")?.parse().ok()?,
        size_bytes: number("size"),
        written_bytes: number("bytes"),
    })
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn events_of_a_job_and_its_spans_are_kept_per_job() {
        let subscriber = tracing_subscriber::registry().with(JobLogLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(job = "logs_test_a", "job status changed");
            let span = tracing::info_span!("worker", job = "logs_test_b", operator = "join");
            let _entered = span.enter();
            tracing::warn!(rows = 3, "late rows");
            tracing::debug!(
                target: "weir_runtime::checkpoint::coordinator",
                job = "logs_test_b",
                epoch = 4u64,
                ms = 12u64,
                bytes = 100u64,
                size = 900u64,
                "checkpoint complete"
            );
        });
        let a = global().lines("logs_test_a", 10);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].message, "job status changed");
        let b = global().lines("logs_test_b", 10);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].operator.as_deref(), Some("join"));
        assert_eq!(b[0].fields["rows"], "3");
        let checkpoints = global().checkpoints("logs_test_b");
        assert_eq!(checkpoints.len(), 1);
        assert_eq!(checkpoints[0].epoch, 4);
        assert_eq!(checkpoints[0].duration_ms, 12.0);
        assert_eq!(checkpoints[0].size_bytes, Some(900));
        assert_eq!(global().lines("logs_test_b", 1).len(), 1);
    }
}
