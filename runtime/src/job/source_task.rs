//! A source partition's task: reads its partition, runs the source's
//! stateless operators, sends the rows on (exchanged to a stage's workers,
//! or to the sink), and paces watermarks and barriers.
//!
//! # Correctness
//! - The watermark advances row by row, as if punctuated (see
//!   [`late_cuts`]), and is sent after the rows that raised it. A reader
//!   that declares its input's watermark (a view's) is followed instead:
//!   each watermark it hands on is sent where it stands among the rows.
//! - Over processing time, the watermark is the clock
//!   ([`crate::proctime::now`]), sent after each chunk and every
//!   [`PROCTIME_TICK`] with rows or none; the rows were stamped by the same
//!   clock in the source's operators before it was read, so none is behind
//!   it.
//! - A barrier is sent for every epoch, in order, between two batches,
//!   after the partition reported its position for that epoch (and, for a
//!   source that deals splits, the splits it still reads).
//! - A lookup join's table side ([`Route::snapshot_end`]) sends
//!   [`Message::SnapshotEnd`] once its reader handed on the rows its table
//!   held when it was opened ([`SourceItem::SnapshotEnd`]; at its end if
//!   the reader ends first), and no barrier before it: so every barrier the
//!   join aligns comes after it, and no checkpoint is taken while the join
//!   still holds stream rows (see `operators::lookup_join`).
//! - At the end it reports its final position and sends the end of input
//!   (a watermark of `+inf`).
//! - Stopped (stop-with-savepoint), it ends right after the stop epoch's
//!   barrier, with no end of input: no window closes, and downstream tasks
//!   end when their channels close.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::Result;
use datafusion::physical_plan::PhysicalExpr;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::channel::{Tagged, exchange_out, send, send_all};
use super::counters::SourceCounters;
use crate::checkpoint::{Report, SourceState};
use crate::message::{Barrier, Message};
use crate::operators::{StreamBatch, stateless};
use crate::plan::{EventTime, StatelessOp};
use crate::progress::Progress;
use crate::source::{SourceItem, SourceReader};
use crate::windows::timestamps_as_nanos;

/// What a source partition does with its rows: its input's stateless
/// operators, then either a hash exchange to the next stage's workers or
/// the `after` operators and the sink.
pub(crate) struct Route {
    /// The source's event time, if it has a watermark.
    pub(crate) event_time: Option<EventTime>,
    /// Its watermark is processing time (`SourcePlan::processing_time`):
    /// the clock, whatever the rows hold.
    pub(crate) processing_time: bool,
    /// Its readers hand on their input's watermarks
    /// (`Source::declares_watermarks`): those are sent on, and none is
    /// derived from the rows.
    pub(crate) declared: bool,
    /// Are its batches a changelog? The source's own declaration
    /// (`Source::changelog`); from here on its batches carry it in their type.
    pub(crate) changelog: bool,
    /// The source's stateless operators.
    pub(crate) before: Vec<StatelessOp>,
    /// Exchange by these keys (`None`: straight to the sink).
    pub(crate) exchange: Option<Vec<Arc<dyn PhysicalExpr>>>,
    /// The plan's `after` operators, when it goes straight to the sink.
    pub(crate) after: Vec<StatelessOp>,
    /// It is a lookup join's table side: it sends the end of its snapshot,
    /// and holds its barriers back until then.
    pub(crate) snapshot_end: bool,
}

impl Route {
    /// The event time the source task derives the watermark from, row by
    /// row: none when the readers declare the watermark themselves.
    fn derived(&self) -> Option<EventTime> {
        self.event_time.filter(|_| !self.declared)
    }
}

/// One source partition's task, ready to run.
pub(crate) struct SourceTask {
    /// The job's name (for the `source-batch/<job>` failpoint).
    pub(crate) job: Arc<str>,
    /// Its number across the plan's sources.
    pub(crate) partition: usize,
    /// Its number among the upstreams of the task it sends to.
    pub(crate) upstream: usize,
    pub(crate) progress: Arc<watch::Sender<Progress>>,
    pub(crate) reader: Box<dyn SourceReader>,
    pub(crate) route: Arc<Route>,
    /// The sink, or the next stage's workers.
    pub(crate) outputs: Vec<mpsc::Sender<Tagged>>,
    /// The epoch to reach (raised by checkpoints and `FLUSH`).
    pub(crate) epochs: watch::Receiver<u64>,
    /// The epoch when `epochs` was subscribed: barriers after it are due.
    pub(crate) first_epoch: u64,
    /// The epoch after whose barrier the partition stops reading, without
    /// an end of input (stop-with-savepoint).
    pub(crate) stop: watch::Receiver<Option<u64>>,
    pub(crate) reports: mpsc::UnboundedSender<Report>,
    /// Where the partition was at the restored checkpoint.
    pub(crate) restored: Option<SourceState>,
    /// The idle timeout, and the source's highest watermark sent by any of
    /// its partitions.
    pub(crate) idle: Option<Idle>,
    /// `weir_rows_in_total` of the job.
    pub(crate) rows_in: Counter,
    /// Rows read and watermarks sent, per partition, for the job's progress.
    pub(crate) counters: Arc<SourceCounters>,
}

/// A source's idle timeout and the highest watermark any of its partitions
/// sent: what an idle partition moves to.
pub(crate) type Idle = (std::time::Duration, Arc<std::sync::atomic::AtomicI64>);

/// Run the partition until it ends or the job stops.
pub(crate) async fn run_source(task: SourceTask) -> Result<()> {
    let SourceTask {
        job,
        partition,
        upstream,
        progress,
        mut reader,
        route,
        outputs,
        epochs: mut flush,
        first_epoch,
        stop,
        reports,
        restored,
        idle,
        rows_in,
        counters,
    } = task;
    let mut last_rows = tokio::time::Instant::now();
    let mut max_time = restored.as_ref().map_or(i64::MIN, |s| s.max_time);
    let mut sent_watermark = restored.as_ref().map_or(i64::MIN, |s| s.watermark);
    counters.watermark(partition, sent_watermark);
    // Not the epoch now: a FLUSH between the job's start and this task's
    // first poll raised it, and its barrier must still be sent (the change
    // is still unseen by `flush`, so the loop sends it at once).
    let mut sent_barrier = first_epoch;
    // Over processing time the clock is the watermark: it ticks whether or
    // not rows come, so windows close on time. A restored watermark from a
    // clock that was ahead holds this one there (no row is then late).
    let mut ticks = route.processing_time.then(|| {
        crate::proctime::at_least(sent_watermark);
        let mut ticks = tokio::time::interval(PROCTIME_TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    // Held still by the `source-batch/<job>` failpoint (tests): reads no
    // more, takes barriers still.
    let mut paused = false;
    // Until a lookup join's table side sent the end of its snapshot, it
    // sends no barrier: the epochs wait (bounded by the snapshot's size).
    let mut snapshot_pending = route.snapshot_end;
    let state = |reader: &dyn SourceReader, max_time, watermark, ended| SourceState {
        position: reader.position().0,
        max_time,
        watermark,
        ended,
        splits: reader.splits(),
    };
    loop {
        let item = tokio::select! {
            biased;
            changed = flush.changed(), if !snapshot_pending => {
                if changed.is_err() && paused {
                    // The job is gone; nothing more will come to a paused
                    // partition.
                    return Ok(());
                }
                if changed.is_ok() {
                    let epoch = *flush.borrow_and_update();
                    // Every epoch, in order: each task sees the same barriers
                    // from all its inputs.
                    while sent_barrier < epoch {
                        sent_barrier += 1;
                        let _ = reports.send(Report::Source {
                            partition,
                            epoch: sent_barrier,
                            state: state(reader.as_ref(), max_time, sent_watermark, false),
                        });
                        send_all(&outputs, upstream, Message::Barrier(Barrier { epoch: sent_barrier })).await;
                        if *stop.borrow() == Some(sent_barrier) {
                            // No end of input: that would close every
                            // window. Downstream tasks end as their
                            // channels close, after this barrier.
                            debug!(partition, epoch = sent_barrier, "source partition stopped at the barrier");
                            return Ok(());
                        }
                    }
                }
                continue;
            }
            item = reader.next_item(), if !paused => item,
            () = tick(&mut ticks) => {
                let now = crate::proctime::now();
                if now > sent_watermark {
                    sent_watermark = now;
                    send_all(&outputs, upstream, Message::Watermark(now)).await;
                    counters.watermark(partition, sent_watermark);
                }
                continue;
            }
            () = idle_check(&idle, last_rows), if idle.is_some() => {
                // Idle: the input's highest watermark, so that this partition
                // does not hold back windows that the others closed.
                if let Some((_, highest)) = &idle {
                    let highest = highest.load(std::sync::atomic::Ordering::Acquire);
                    if route.event_time.is_some() && highest > sent_watermark {
                        sent_watermark = highest;
                        send_all(&outputs, upstream, Message::Watermark(highest)).await;
                        counters.watermark(partition, sent_watermark);
                    }
                }
                continue;
            }
        };
        last_rows = tokio::time::Instant::now();
        let Some(item) = item else { break };
        let batch = match item? {
            SourceItem::Rows(batch) => batch,
            SourceItem::SnapshotEnd => {
                if snapshot_pending {
                    snapshot_pending = false;
                    send_all(&outputs, upstream, Message::SnapshotEnd).await;
                }
                continue;
            }
            SourceItem::Watermark(watermark) => {
                // The input's own watermark, after the rows it covers (a
                // view's): sent on as it is, when it rises.
                if route.event_time.is_some() && watermark > sent_watermark {
                    sent_watermark = watermark;
                    send_all(&outputs, upstream, Message::Watermark(watermark)).await;
                    if let Some((_, highest)) = &idle {
                        highest.fetch_max(sent_watermark, std::sync::atomic::Ordering::AcqRel);
                    }
                    counters.watermark(partition, sent_watermark);
                }
                continue;
            }
        };
        rows_in.inc_by(batch.num_rows() as u64);
        counters.read(partition, batch.num_rows() as u64);
        // The watermark advances row by row, as if punctuated: before a row
        // that is behind the watermark its predecessors set, the rows before
        // it are sent and that watermark is emitted, so the row is judged
        // late (or not) exactly as it would be with one watermark per row.
        // Rows in order cost nothing extra. Large batches are also cut every
        // CHUNK_ROWS rows so watermarks keep flowing.
        // Event times once per batch, in nanoseconds, for both the cuts and
        // each chunk's maximum.
        let times = match route.derived() {
            Some(event_time) => Some(timestamps_as_nanos(batch.column(event_time.column))?),
            None => None,
        };
        let cuts = match (&times, route.derived()) {
            (Some(times), Some(event_time)) => late_cuts(times, event_time.delay, max_time),
            _ => Vec::new(),
        };
        let mut offset = 0;
        for end in cuts.into_iter().chain(std::iter::once(batch.num_rows())) {
            while offset < end {
                let len = CHUNK_ROWS.min(end - offset);
                let chunk = batch.slice(offset, len);
                if let Some(max) = times
                    .as_ref()
                    .and_then(|t| datafusion::arrow::compute::max(&t.slice(offset, len)))
                {
                    max_time = max_time.max(max);
                }
                offset += len;
                let send = send_chunk(
                    upstream,
                    chunk,
                    &route,
                    &outputs,
                    max_time,
                    &mut sent_watermark,
                );
                if counters
                    .sending(partition, &outputs, send)
                    .await?
                    .is_break()
                {
                    return Ok(());
                }
                if let Some((_, highest)) = &idle {
                    highest.fetch_max(sent_watermark, std::sync::atomic::Ordering::AcqRel);
                }
                counters.watermark(partition, sent_watermark);
            }
        }
        // Not before a lookup join's table side sent its snapshot's end: a
        // paused partition would then hold every barrier back.
        if !snapshot_pending && crate::failpoint::pause_in("source-batch", &job) {
            debug!(partition, "source partition paused by its failpoint");
            paused = true;
        }
    }
    debug!(partition, "source partition ended");
    if snapshot_pending {
        // A bounded table side's end is the end of its snapshot.
        send_all(&outputs, upstream, Message::SnapshotEnd).await;
    }
    let _ = reports.send(Report::SourceEnded {
        partition,
        state: state(reader.as_ref(), max_time, sent_watermark, true),
    });
    send_all(&outputs, upstream, Message::END_OF_INPUT).await;
    counters.watermark(partition, i64::MAX);
    progress.send_modify(|p| p.sources_ended += 1);
    Ok(())
}

/// The next tick of a processing-time source's clock (never, without one).
async fn tick(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// How often a processing-time source partition sends the clock as its
/// watermark when no rows come: how late after its end a window closes, at
/// most, with no input.
const PROCTIME_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Wait until a partition that read its last rows at `last_rows` counts as
/// idle, then (while it stays idle) a tenth of the timeout between checks.
async fn idle_check(idle: &Option<Idle>, last_rows: tokio::time::Instant) {
    let Some((timeout, _)) = idle else {
        return std::future::pending().await;
    };
    let now = tokio::time::Instant::now();
    let idle_at = last_rows + *timeout;
    let at = if now < idle_at {
        idle_at
    } else {
        now + (*timeout / 10).max(std::time::Duration::from_millis(10))
    };
    tokio::time::sleep_until(at).await;
}

/// Rows between two watermarks of a source partition.
const CHUNK_ROWS: usize = 8192;

/// Row indices of `batch` before which the watermark must be brought up to
/// date: rows behind the watermark their predecessors set.
fn late_cuts(
    times: &datafusion::arrow::array::TimestampNanosecondArray,
    delay: i64,
    mut max_time: i64,
) -> Vec<usize> {
    let mut cuts = Vec::new();
    for (i, t) in times.iter().enumerate() {
        let Some(t) = t else { continue };
        if max_time > i64::MIN && t < max_time.saturating_sub(delay) && i > 0 {
            cuts.push(i);
        }
        max_time = max_time.max(t);
    }
    cuts
}

/// Send one chunk of a batch on, and the watermark it raised.
async fn send_chunk(
    upstream: usize,
    batch: RecordBatch,
    route: &Route,
    outputs: &[mpsc::Sender<Tagged>],
    max_time: i64,
    sent_watermark: &mut i64,
) -> Result<ControlFlow<()>> {
    if let Some(batch) = stateless::run(&route.before, StreamBatch::new(batch, route.changelog))? {
        match &route.exchange {
            Some(keys) => {
                if exchange_out(upstream, batch.into_batch(), keys, outputs)
                    .await?
                    .is_break()
                {
                    return Ok(ControlFlow::Break(()));
                }
            }
            None => {
                if let Some(out) = stateless::run(&route.after, batch)?
                    && send(&outputs[0], upstream, Message::Batch(out.into_batch()))
                        .await
                        .is_break()
                {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
    }
    if let Some(event_time) = route.derived() {
        let watermark = max_time.saturating_sub(event_time.delay);
        if max_time > i64::MIN && watermark > *sent_watermark {
            *sent_watermark = watermark;
            send_all(outputs, upstream, Message::Watermark(watermark)).await;
        }
    }
    if route.processing_time {
        // Read after the chunk's rows were stamped: at or after each stamp.
        let now = crate::proctime::now();
        if now > *sent_watermark {
            *sent_watermark = now;
            send_all(outputs, upstream, Message::Watermark(now)).await;
        }
    }
    Ok(ControlFlow::Continue(()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::TimestampNanosecondArray;

    use super::*;

    #[test]
    fn a_batch_is_cut_before_each_row_behind_the_watermark_its_predecessors_set() {
        let times = TimestampNanosecondArray::from(vec![
            Some(10),
            Some(20),
            Some(14),
            None,
            Some(25),
            Some(21),
        ]);
        // Delay 5: after 20 the watermark is 15, so 14 is behind it; after 25
        // it is 20, and 21 is not.
        assert_eq!(late_cuts(&times, 5, i64::MIN), [2]);
        // Resumed at a largest time of 100: the first row is never cut.
        assert_eq!(late_cuts(&times, 5, 100), [1, 2, 4, 5]);
    }
}
