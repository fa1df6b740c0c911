//! Prometheus metrics, served on `/metrics`.
//!
//! Every family follows Prometheus's conventions: base units in the name
//! (`_seconds`, `_bytes`), counters exposed with `_total` (the encoder adds
//! it), HELP and TYPE for each; `server/tests/jobs_metrics.rs` checks the
//! whole output with Prometheus's own Python parser. Per-job families are
//! labelled `job` (and `operator`, `stage`, `worker` where they are an
//! operator's: `stage` tells apart two stages of one kind in one job).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a failed statement: its SQLSTATE.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The SQLSTATE sent to the client.
    pub sqlstate: String,
}

/// Labels of one status of one job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobStatusLabels {
    /// The job's name.
    pub job: String,
    /// The status (`running`, `failed`, ...).
    pub status: String,
}

/// The job manager's metrics: each job's status as a 0/1 gauge per status,
/// and its restarts.
#[derive(Debug, Default, Clone)]
pub struct JobMetrics {
    /// 1 for the job's status now, 0 for the others.
    pub status: Family<JobStatusLabels, Gauge>,
    /// Restarts of a job (after failures, and asked for).
    pub restarts: Family<weir_runtime::metrics::JobLabels, Counter>,
    /// Wall-clock time now minus the job's event-time watermark, in
    /// seconds; no series while the job has none (not running, no event
    /// time, before its first watermark, after its inputs ended).
    pub watermark_lag: Family<weir_runtime::metrics::JobLabels, Gauge<f64, AtomicU64>>,
}

impl JobMetrics {
    /// Job `job` is now `status`.
    pub fn set_status(&self, job: &str, status: crate::jobs::JobStatus) {
        for s in crate::jobs::JobStatus::ALL {
            self.status
                .get_or_create(&JobStatusLabels {
                    job: job.to_string(),
                    status: s.name().to_string(),
                })
                .set(i64::from(s == status));
        }
    }

    /// Job `job` restarted.
    pub fn restart(&self, job: &str) {
        self.restarts
            .get_or_create(&weir_runtime::metrics::JobLabels {
                job: job.to_string(),
            })
            .inc();
    }

    /// Job `job`'s watermark now (nanoseconds of event time, as the
    /// runtime's `Progress::watermark`); `None` (or the runtime's end of
    /// input, `i64::MAX`) removes its lag series.
    pub fn set_watermark(&self, job: &str, watermark_ns: Option<i64>) {
        let labels = weir_runtime::metrics::JobLabels {
            job: job.to_string(),
        };
        match watermark_ns.filter(|ns| *ns != i64::MAX && *ns != i64::MIN) {
            Some(ns) => {
                let now_ns = weir_runtime::checkpoint::now_ms() as f64 * 1e6;
                self.watermark_lag
                    .get_or_create(&labels)
                    .set((now_ns - ns as f64) / 1e9);
            }
            None => {
                self.watermark_lag.remove(&labels);
            }
        }
    }

    /// Job `job` was dropped: its series go.
    pub fn forget(&self, job: &str) {
        for s in crate::jobs::JobStatus::ALL {
            self.status.remove(&JobStatusLabels {
                job: job.to_string(),
                status: s.name().to_string(),
            });
        }
        self.restarts.remove(&weir_runtime::metrics::JobLabels {
            job: job.to_string(),
        });
        self.set_watermark(job, None);
    }
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// Connections accepted since start.
    pub connections: Counter,
    /// Connections open now.
    pub open_connections: Gauge,
    /// Statements run since start.
    pub statements: Counter,
    /// Statements that failed, by SQLSTATE.
    pub errors: Family<ErrorLabels, Counter>,
    /// The running jobs' counters.
    pub runtime: weir_runtime::metrics::RuntimeMetrics,
    /// The job manager's: statuses and restarts.
    pub jobs: JobMetrics,
}

impl Metrics {
    /// Register every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weir");
        let connections = Counter::default();
        let open_connections = Gauge::default();
        let statements = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "connections",
            "Postgres connections accepted",
            connections.clone(),
        );
        registry.register(
            "open_connections",
            "Postgres connections open now",
            open_connections.clone(),
        );
        registry.register("statements", "Statements executed", statements.clone());
        registry.register(
            "statement_errors",
            "Statements that failed, by SQLSTATE",
            errors.clone(),
        );
        let runtime = weir_runtime::metrics::RuntimeMetrics::default();
        runtime.register(&mut registry);
        let jobs = JobMetrics::default();
        registry.register(
            "job_status",
            "1 for a job's status now, 0 for its other statuses",
            jobs.status.clone(),
        );
        registry.register(
            "job_restarts",
            "Restarts of a job, after failures or asked for",
            jobs.restarts.clone(),
        );
        registry.register(
            "job_watermark_lag_seconds",
            "Wall-clock time minus a job's event-time watermark",
            jobs.watermark_lag.clone(),
        );
        Self {
            registry,
            connections,
            open_connections,
            statements,
            errors,
            runtime,
            jobs,
        }
    }

    /// Count a failed statement.
    pub fn record_error(&self, sqlstate: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                sqlstate: sqlstate.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
