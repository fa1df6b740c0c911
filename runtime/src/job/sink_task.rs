//! The sink task: aligns the last stage's outputs, applies batches to the
//! job's [`Sink`] (the view, and the sinks created on it), and at every
//! barrier snapshots it in order with the data; the snapshots are written
//! one after the other by a helper task, so the coordinator gets the sink's
//! reports in barrier order (the final one last).

use std::sync::Arc;

use datafusion::common::Result;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch};

use super::aligner::{Aligned, Aligner};
use super::channel::Tagged;
use crate::checkpoint::{JobStore, Report, StateWrite, Written};
use crate::progress::Progress;
use crate::sink::Sink;

/// A snapshot of the sink, on its way to the store.
type SinkSnapshot = (Option<u64>, u64, Result<Vec<(String, StateWrite)>>);

/// Writes the sink's snapshots one after the other, so the coordinator gets
/// the sink's reports in barrier order (the final one last).
async fn write_sink_snapshots(
    mut snapshots: mpsc::UnboundedReceiver<SinkSnapshot>,
    store: Option<JobStore>,
    reports: mpsc::UnboundedSender<Report>,
) {
    while let Some((epoch, label, parts)) = snapshots.recv().await {
        let written = async {
            let mut written = Vec::new();
            for (name, write) in parts? {
                written.push((
                    name.clone(),
                    match &store {
                        Some(store) => store.write(label, &format!("s-{name}"), write).await?,
                        None => Written {
                            pending: write.pending,
                            ..Default::default()
                        },
                    },
                ));
            }
            Ok(written)
        }
        .await;
        let _ = reports.send(Report::Sink { epoch, written });
    }
}

/// The sink task, ready to run.
pub(crate) struct SinkTask {
    /// How many tasks send to it.
    pub(crate) upstreams: usize,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) store: Option<JobStore>,
    pub(crate) reports: mpsc::UnboundedSender<Report>,
    pub(crate) progress: Arc<watch::Sender<Progress>>,
    /// `weir_job_rows_out_total` of the job.
    pub(crate) rows_out: Counter,
    /// The epoch of the checkpoint the job restored (0: none): the epochs
    /// of this run come after it.
    pub(crate) restored_epoch: u64,
}

/// Run the sink task until every upstream ended or the job stops.
///
/// # Correctness
/// The final snapshot (every input ended) is labelled with the epoch after
/// the last barrier this run saw, or after the restored checkpoint's when
/// it saw none: a label at or below the restored epoch would name chunks
/// the restored checkpoint already holds (a view's append chunk `a1-0`),
/// and the final write would replace them in place, losing their rows.
pub(crate) async fn run_sink(mut rx: mpsc::Receiver<Tagged>, task: SinkTask) -> Result<()> {
    let SinkTask {
        upstreams,
        sink,
        store,
        reports,
        progress,
        rows_out,
        restored_epoch,
    } = task;
    let mut align = Aligner::new(upstreams);
    let mut events = Vec::new();
    let mut last_epoch = restored_epoch;
    let (snapshots, snapshots_rx) = mpsc::unbounded_channel();
    tokio::spawn(write_sink_snapshots(snapshots_rx, store.clone(), reports));
    while let Some(Tagged { upstream, message }) = rx.recv().await {
        align.offer(upstream, message, &mut events);
        for event in events.drain(..) {
            match event {
                Aligned::Batch(_, batch) => {
                    rows_out.inc_by(batch.num_rows() as u64);
                    sink.ready().await;
                    sink.apply(batch)?;
                }
                // In order with the batches: a view hands it on to its
                // readers after the rows it covers. The end is not passed:
                // readers see the job finish instead.
                Aligned::Watermark(watermark) if watermark < i64::MAX => {
                    sink.watermark(watermark);
                }
                Aligned::Watermark(_) | Aligned::SideWatermark(..) | Aligned::SnapshotEnd(_) => {}
                Aligned::Barrier(epoch) => {
                    last_epoch = epoch;
                    // The snapshot is taken here, in order with the data;
                    // only the writing happens elsewhere.
                    let _ = snapshots.send((Some(epoch), epoch, sink.snapshot(epoch)));
                    progress.send_modify(|p| p.flushed = p.flushed.max(epoch));
                }
            }
        }
        if align.finished() {
            break;
        }
    }
    if !align.finished() {
        // The upstreams stopped (stop-with-savepoint) after the stop's
        // barrier: the job stops, it does not end; no final state.
        return Ok(());
    }
    // Every input ended: the final state; the coordinator marks the job
    // finished once it is stored and the sink's output is committed.
    let label = last_epoch + 1;
    let parts = if store.is_none() || sink.writes_out() {
        sink.snapshot(label)
    } else {
        Ok(Vec::new())
    };
    let _ = snapshots.send((None, label, parts));
    Ok(())
}
