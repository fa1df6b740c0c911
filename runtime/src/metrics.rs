//! The runtime's metrics, registered into the server's Prometheus registry.
//!
//! Per-operator figures ([`OperatorMetrics`]) are handles into the
//! `weir_operator_*` families taken once when a task starts: a task updates
//! them with a relaxed atomic add or store per batch or watermark, never per
//! row, so metering costs the hot loop nothing it would notice.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels naming a stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// The stream's name.
    pub stream: String,
}

/// Labels naming one partition of a stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// The stream's name.
    pub stream: String,
    /// The partition (a Kafka partition's number).
    pub partition: i64,
}

/// Labels naming one worker of a job's stateful operator.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperatorLabels {
    /// The job's (materialized view's) name.
    pub job: String,
    /// The operator ("window aggregate", "join", ...).
    pub operator: String,
    /// Which of the plan's stages it is: two stages of one kind in one job
    /// (an aggregate over an aggregate) are told apart by it. Stateful
    /// stages are numbered from the sources up, a stage's inputs before it;
    /// a source partition's is its source's number. Both follow from the
    /// query, so a restarted job's series go on where they were.
    pub stage: i64,
    /// The worker's number in its stage.
    pub worker: i64,
}

/// Labels naming a job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// The job's (materialized view's) name.
    pub job: String,
}

/// Counters kept by running jobs.
#[derive(Debug, Default, Clone)]
pub struct RuntimeMetrics {
    /// Rows that arrived after the watermark had passed their window:
    /// dropped from window state, counted here.
    pub late_rows: Family<StreamLabels, Counter>,
    /// Input records that could not be decoded and were skipped or sent to
    /// a dead-letter topic, per stream.
    pub bad_rows: Family<StreamLabels, Counter>,
    /// Records a source partition has not read yet (Kafka: the partition's
    /// high watermark minus the stream's position), per stream and partition.
    pub source_lag: Family<PartitionLabels, Gauge>,
    /// Keyed entries a stateful operator's worker holds (groups, windows'
    /// groups, sessions, stored join rows), as of its last barrier (a
    /// checkpoint or a FLUSH).
    pub state_entries: Family<OperatorLabels, Gauge>,
    /// The state's size in bytes per stateful operator's worker: the Arrow
    /// bytes of the checkpoint chunks that hold it, as of its last barrier.
    pub state_bytes: Family<OperatorLabels, Gauge>,
    /// Rows into an operator's worker.
    pub operator_rows_in: Family<OperatorLabels, Counter>,
    /// Rows out of an operator's worker (a source partition: rows read).
    pub operator_rows_out: Family<OperatorLabels, Counter>,
    /// An operator worker's event-time watermark, in seconds since the
    /// Unix epoch; NaN before its first.
    pub operator_watermark: Family<OperatorLabels, Gauge<f64, AtomicU64>>,
    /// Seconds an operator's worker waited to send on a full channel: its
    /// rate is the fraction of time it was backpressured (Flink's
    /// `backPressuredTimeMsPerSecond`, in base units).
    pub operator_backpressured: Family<OperatorLabels, Counter<f64, AtomicU64>>,
    /// Rows read by sources.
    pub rows_in: Family<JobLabels, Counter>,
    /// Rows written to sinks (materialized views).
    pub rows_out: Family<JobLabels, Counter>,
    /// Jobs that failed (0 or 1 per job: a failed job stays failed).
    pub job_failures: Family<JobLabels, Counter>,
    /// Checkpoints, per job.
    pub checkpoints: crate::checkpoint::CheckpointMetrics,
}

impl RuntimeMetrics {
    /// Register the families (names get the registry's `weir_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "late_rows",
            "Rows later than the watermark, dropped from window state",
            self.late_rows.clone(),
        );
        registry.register(
            "bad_rows",
            "Input records that could not be decoded (skipped or dead-lettered)",
            self.bad_rows.clone(),
        );
        registry.register(
            "source_lag",
            "Records a source partition has not read yet (Kafka: high watermark minus position)",
            self.source_lag.clone(),
        );
        registry.register(
            "operator_state_entries",
            "Keyed entries a stateful operator's worker holds, as of its last checkpoint or FLUSH",
            self.state_entries.clone(),
        );
        registry.register(
            "operator_state_bytes",
            "Bytes of a stateful operator worker's state (Arrow bytes of its checkpoint chunks), as of its last barrier",
            self.state_bytes.clone(),
        );
        registry.register(
            "operator_rows_in",
            "Rows into an operator's worker",
            self.operator_rows_in.clone(),
        );
        registry.register(
            "operator_rows_out",
            "Rows out of an operator's worker (a source partition's: rows read)",
            self.operator_rows_out.clone(),
        );
        registry.register(
            "operator_watermark_timestamp_seconds",
            "An operator worker's event-time watermark, seconds since the Unix epoch (NaN before its first)",
            self.operator_watermark.clone(),
        );
        registry.register(
            "operator_backpressured_seconds",
            "Time an operator's worker waited to send on a full channel; its rate is the fraction of time backpressured",
            self.operator_backpressured.clone(),
        );
        registry.register(
            "job_rows_in",
            "Rows read by a job's sources",
            self.rows_in.clone(),
        );
        registry.register(
            "job_rows_out",
            "Rows written by a job to its view",
            self.rows_out.clone(),
        );
        registry.register(
            "job_failures",
            "Jobs that failed: an error in their data, an outside system, or a bug",
            self.job_failures.clone(),
        );
        self.checkpoints.register(registry);
    }

    /// The bad-record counter of one stream.
    pub fn bad(&self, stream: &str) -> Counter {
        self.bad_rows
            .get_or_create(&StreamLabels {
                stream: stream.to_string(),
            })
            .clone()
    }

    /// The figures of one stateful operator's worker, as handles the task
    /// keeps. A watermark that was never set reads NaN.
    pub fn operator(&self, labels: &OperatorLabels) -> OperatorMetrics {
        OperatorMetrics {
            state_entries: self.state_entries.get_or_create(labels).clone(),
            state_bytes: self.state_bytes.get_or_create(labels).clone(),
            ..self.stateless(labels)
        }
    }

    /// The figures of an operator without keyed state.
    fn stateless(&self, labels: &OperatorLabels) -> OperatorMetrics {
        let watermark = self.operator_watermark.get_or_create(labels).clone();
        // A new series has no watermark yet, which 0 (1970) would misstate;
        // a series of an earlier run of the job keeps its last value.
        if watermark.get() == 0.0 {
            watermark.set(f64::NAN);
        }
        OperatorMetrics {
            rows_in: self.operator_rows_in.get_or_create(labels).clone(),
            rows_out: self.operator_rows_out.get_or_create(labels).clone(),
            watermark,
            state_entries: Gauge::default(),
            state_bytes: Gauge::default(),
            backpressured: self.operator_backpressured.get_or_create(labels).clone(),
        }
    }

    /// The figures of one source partition: as [`Self::operator`]'s, but
    /// with no state series (a source's position is not keyed state).
    pub fn source(&self, labels: &OperatorLabels) -> OperatorMetrics {
        self.stateless(labels)
    }

    /// The late-row counter of one stream.
    pub fn late(&self, stream: &str) -> Counter {
        self.late_rows
            .get_or_create(&StreamLabels {
                stream: stream.to_string(),
            })
            .clone()
    }
}

/// One operator worker's (or source partition's) figures: handles into the
/// `weir_operator_*` families, each a shared atomic.
#[derive(Debug, Clone, Default)]
pub struct OperatorMetrics {
    /// Rows in (`weir_operator_rows_in_total`).
    pub rows_in: Counter,
    /// Rows out (`weir_operator_rows_out_total`).
    pub rows_out: Counter,
    /// Its watermark (`weir_operator_watermark_timestamp_seconds`).
    pub watermark: Gauge<f64, AtomicU64>,
    /// Keyed entries of its state (`weir_operator_state_entries`).
    pub state_entries: Gauge,
    /// Bytes of its state (`weir_operator_state_bytes`).
    pub state_bytes: Gauge,
    /// Time blocked on a full output (`weir_operator_backpressured_seconds_total`).
    pub backpressured: Counter<f64, AtomicU64>,
}

impl OperatorMetrics {
    /// Its watermark rose to `ns` (nanoseconds of event time). The end of
    /// input (`i64::MAX`) and "none" (`i64::MIN`) leave the last value: a
    /// gauge of +inf would be right but is not valid in every exposition
    /// parser.
    pub fn watermark_ns(&self, ns: i64) {
        if ns != i64::MAX && ns != i64::MIN {
            self.watermark.set(ns as f64 / 1e9);
        }
    }

    /// It waited `blocked` on a full output channel.
    pub fn blocked(&self, blocked: Duration) {
        self.backpressured.inc_by(blocked.as_secs_f64());
    }
}
