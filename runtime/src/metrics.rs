//! The runtime's metrics, registered into the server's Prometheus registry.

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

    /// The late-row counter of one stream.
    pub fn late(&self, stream: &str) -> Counter {
        self.late_rows
            .get_or_create(&StreamLabels {
                stream: stream.to_string(),
            })
            .clone()
    }
}
