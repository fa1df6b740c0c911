//! What a job's tasks did, kept in atomics they bump and readers load:
//! what each source partition has read and the watermark it sent (for
//! [`super::JobHandle::progress`]), and each operator's per-operator
//! figures (`weir_operator_*`: rows, watermark, state bytes, time blocked
//! on a full channel). A count per batch costs one relaxed add, not a
//! wake-up of everyone watching the job.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use tokio::sync::mpsc;

use super::channel::Tagged;
use super::topology::SourceTasks;
use crate::checkpoint::StateWrite;
use crate::metrics::{OperatorLabels, OperatorMetrics, RuntimeMetrics};
use crate::plan::Side;
use crate::progress::Progress;
use crate::source::Source;

/// One job's source partitions, as they read.
#[derive(Debug)]
pub(crate) struct SourceCounters {
    /// Rows each partition read in this run.
    rows: Vec<AtomicU64>,
    /// The last watermark each partition sent (`i64::MIN`: none yet,
    /// `i64::MAX`: it ended).
    watermarks: Vec<AtomicI64>,
    /// Does each partition send watermarks at all?
    timed: Vec<bool>,
    /// The plan's sources, for what they know of their bytes and files.
    sources: Vec<Arc<dyn Source>>,
    /// Each partition's `weir_operator_*` figures (empty: not metered).
    operators: Vec<OperatorMetrics>,
}

impl SourceCounters {
    /// Counters for partitions whose event time is `timed`, of `sources`.
    pub(crate) fn new(timed: Vec<bool>, sources: Vec<Arc<dyn Source>>) -> Self {
        Self {
            rows: timed.iter().map(|_| AtomicU64::new(0)).collect(),
            watermarks: timed.iter().map(|_| AtomicI64::new(i64::MIN)).collect(),
            timed,
            sources,
            operators: Vec::new(),
        }
    }

    /// Also count into each partition's `weir_operator_*` series of job
    /// `job`, labelled as [`source_operator`] names its source.
    pub(crate) fn metered(
        mut self,
        job: &str,
        metrics: &RuntimeMetrics,
        sources: &[SourceTasks],
    ) -> Self {
        self.operators = sources
            .iter()
            .enumerate()
            .flat_map(|(source, s)| {
                (0..s.partitions)
                    .map(move |local| stage_labels(job, source_operator(s.side), source, local))
            })
            .map(|labels| metrics.source(&labels))
            .collect();
        self
    }

    /// Partition `partition` read `rows` more rows.
    pub(crate) fn read(&self, partition: usize, rows: u64) {
        self.rows[partition].fetch_add(rows, Ordering::Relaxed);
        // A source's rows in are what it takes from its partition, its rows
        // out what it sends on: the same rows (its stateless operators run
        // in its task, but are not it).
        if let Some(figures) = self.operators.get(partition) {
            figures.rows_in.inc_by(rows);
            figures.rows_out.inc_by(rows);
        }
    }

    /// Partition `partition` sent watermark `t` (`i64::MAX`: it ended).
    pub(crate) fn watermark(&self, partition: usize, t: i64) {
        let before = self.watermarks[partition].fetch_max(t, Ordering::Relaxed);
        if t > before
            && let Some(figures) = self.operators.get(partition)
        {
            figures.watermark_ns(t);
        }
    }

    /// Send (the future `send`) from partition `partition` to `outputs`,
    /// counting the time it waited on a full channel.
    pub(crate) async fn sending<F: Future>(
        &self,
        partition: usize,
        outputs: &[mpsc::Sender<Tagged>],
        send: F,
    ) -> F::Output {
        match self.operators.get(partition) {
            Some(figures) => blocked_send(figures, outputs, send).await,
            None => send.await,
        }
    }

    /// Fill in `progress`'s reading figures.
    pub(crate) fn fill(&self, progress: &mut Progress) {
        progress.partitions = self.rows.len();
        progress.rows_read = self.rows.iter().map(|r| r.load(Ordering::Relaxed)).sum();
        progress.watermark = watermark(
            self.watermarks
                .iter()
                .zip(&self.timed)
                .filter(|(_, timed)| **timed)
                .map(|(w, _)| w.load(Ordering::Relaxed)),
        );
        progress.read = self
            .sources
            .iter()
            .filter_map(|s| s.read_progress())
            .reduce(|a, b| a + b);
    }
}

/// The labels of worker `worker` of stage `stage` (a source partition: of
/// source `stage`) of job `job`, running `operator`.
pub(crate) fn stage_labels(
    job: &str,
    operator: &str,
    stage: usize,
    worker: usize,
) -> OperatorLabels {
    OperatorLabels {
        job: job.to_string(),
        operator: operator.to_string(),
        stage: i64::try_from(stage).unwrap_or(i64::MAX),
        worker: i64::try_from(worker).unwrap_or(i64::MAX),
    }
}

/// The `operator` label of a source's partitions: `source`, or a join's
/// `left source` and `right source` (the order EXPLAIN prints them in).
pub(crate) fn source_operator(side: Option<Side>) -> &'static str {
    match side {
        None => "source",
        Some(Side::Left) => "left source",
        Some(Side::Right) => "right source",
    }
}

/// Run `send`, a send of one batch (or watermark, or barrier) to
/// `outputs`, adding to `figures`' backpressure the time it waited.
///
/// Waiting is counted from the send's first `Pending` to its end, and
/// only when some output was full as the send began: a `Pending` with room
/// in every channel is tokio's cooperative yield, not backpressure. Costs a
/// check of each output's free capacity per send, and a clock read only
/// when it waits.
pub(crate) async fn blocked_send<F: Future>(
    figures: &OperatorMetrics,
    outputs: &[mpsc::Sender<Tagged>],
    send: F,
) -> F::Output {
    if outputs.iter().all(|o| o.capacity() > 0) {
        return send.await;
    }
    let mut send = std::pin::pin!(send);
    let mut waiting_since = None;
    let out = std::future::poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(out),
        Poll::Pending => {
            waiting_since.get_or_insert_with(Instant::now);
            Poll::Pending
        }
    })
    .await;
    if let Some(since) = waiting_since {
        figures.blocked(since.elapsed());
    }
    out
}

/// The bytes of an operator worker's state, as its checkpoint names it:
/// each chunk's Arrow bytes by chunk id, kept up to date with every
/// snapshot's write in barrier order (the writes themselves finish in any
/// order, in the background).
#[derive(Debug, Default)]
pub(crate) struct StateBytes {
    chunks: BTreeMap<String, u64>,
}

impl StateBytes {
    /// A worker restored from `chunks`, the chunks of every old worker of
    /// its stage, of which it keeps the keys that hash to it: an estimate
    /// (its share of their bytes) until its next full snapshot replaces it.
    pub(crate) fn restored(chunks: &[(String, RecordBatch)], workers: usize) -> Self {
        let total: usize = chunks.iter().map(|(_, b)| b.get_array_memory_size()).sum();
        let mut bytes = Self::default();
        if total > 0 {
            bytes
                .chunks
                .insert(String::new(), (total / workers.max(1)) as u64);
        }
        bytes
    }

    /// Apply one snapshot's write; the state's bytes after it.
    pub(crate) fn apply(&mut self, write: &StateWrite) -> u64 {
        if write.reset {
            self.chunks.clear();
        }
        for id in &write.remove {
            self.chunks.remove(id);
        }
        for (id, batch) in &write.put {
            self.chunks
                .insert(id.clone(), batch.get_array_memory_size() as u64);
        }
        self.chunks.values().sum()
    }
}

/// The job's watermark from its timed partitions': the minimum over those
/// still reading (an ended one holds nothing back), `i64::MAX` once all
/// ended, `None` before every one sent one (or without event time).
fn watermark(partitions: impl Iterator<Item = i64>) -> Option<i64> {
    let mut any = false;
    let mut min = i64::MAX;
    for w in partitions {
        any = true;
        if w == i64::MIN {
            return None;
        }
        min = min.min(w);
    }
    any.then_some(min)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;

    use super::*;

    fn chunk(rows: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("c0", Arc::new(Int64Array::from_iter_values(0..rows)) as _)])
            .expect("a batch")
    }

    #[test]
    fn state_bytes_follow_full_snapshots_deltas_and_removals() {
        let mut bytes = StateBytes::default();
        let one = chunk(1000).get_array_memory_size() as u64;
        let full = StateWrite {
            reset: true,
            put: vec![("b1".into(), chunk(1000))],
            ..Default::default()
        };
        assert_eq!(bytes.apply(&full), one);
        let delta = StateWrite {
            put: vec![("d2".into(), chunk(1000))],
            ..Default::default()
        };
        assert_eq!(bytes.apply(&delta), 2 * one);
        // A chunk replaced under its id counts once; a removed one not at all.
        let replace = StateWrite {
            remove: vec!["b1".into()],
            put: vec![("d2".into(), chunk(1000))],
            ..Default::default()
        };
        assert_eq!(bytes.apply(&replace), one);
        // A full snapshot forgets what came before, the restored share too.
        let mut restored = StateBytes::restored(&[("b1".into(), chunk(1000))], 2);
        assert_eq!(restored.apply(&StateWrite::default()), one / 2);
        assert_eq!(restored.apply(&full), one);
    }

    #[tokio::test]
    async fn a_send_that_waits_on_a_full_channel_counts_as_backpressure() {
        let figures = OperatorMetrics::default();
        let (tx, mut rx) = mpsc::channel(1);
        let outputs = [tx.clone()];
        let message = || Tagged {
            upstream: 0,
            message: crate::message::Message::Watermark(1),
        };
        // Room in the channel: not blocked, nothing counted.
        blocked_send(&figures, &outputs, tx.send(message()))
            .await
            .expect("sent");
        assert_eq!(figures.backpressured.get(), 0.0);
        // Full: the send waits until the reader (which runs only once the
        // send waits, on this one-thread runtime) takes one.
        let reader = tokio::spawn(async move {
            rx.recv().await;
            rx
        });
        blocked_send(&figures, &outputs, tx.send(message()))
            .await
            .expect("sent");
        assert!(figures.backpressured.get() > 0.0);
        drop(reader.await);
    }

    #[test]
    fn the_watermark_is_the_slowest_reading_partitions() {
        assert_eq!(watermark([10, 5, i64::MAX].into_iter()), Some(5));
        assert_eq!(watermark([i64::MAX, i64::MAX].into_iter()), Some(i64::MAX));
        // One partition has sent nothing: no watermark yet.
        assert_eq!(watermark([10, i64::MIN].into_iter()), None);
        // No event time.
        assert_eq!(watermark(std::iter::empty()), None);
    }

    #[test]
    fn rows_add_up_over_partitions() {
        let counters = SourceCounters::new(vec![true, false], Vec::new());
        counters.read(0, 10);
        counters.read(1, 5);
        counters.read(0, 1);
        counters.watermark(0, 7);
        counters.watermark(1, 1);
        let mut progress = Progress::default();
        counters.fill(&mut progress);
        assert_eq!((progress.rows_read, progress.partitions), (16, 2));
        // The untimed partition's watermark does not count.
        assert_eq!(progress.watermark, Some(7));
        assert_eq!(progress.read, None);
    }
}
