//! A view's feed to the jobs that read it as a stream
//! (`crate::view_source`): every batch the view applies and, when a
//! watermark bounds the view's rows, the view's watermark, in one order.
//!
//! `SUBSCRIBE` has a channel of its own (batches only): a psql client has no
//! use for watermarks, and its lag must not count against a follower's.
//!
//! # Correctness
//! - Everything is sent under the view's state lock, where the contents a
//!   new follower starts from are taken: contents and the first change meet
//!   exactly, and the watermark a follower gets after the contents covers
//!   exactly them.
//! - A watermark comes after the rows it covers: the job's sink task hands
//!   it to the view in order with the batches (`job::sink_task`).
//! - A follower that starts late (or after a restart) gets the contents
//!   first, then the current watermark: a row in them is never behind a
//!   watermark it had not been behind. The other way round needs care: an
//!   append-only view may hold rows that were behind the watermark when
//!   they were applied (a filter drops nothing as late), which a follower
//!   that saw them live judged late. So the view remembers, for each batch
//!   holding such a row, the watermark then ([`Marks::late`], by row
//!   offset, so that it survives the merged chunks of a checkpoint), and a
//!   late follower gets that watermark right before those rows: every row
//!   is judged against the watermark it met live, or (on time rows) against
//!   an earlier one, which never makes an on-time row late.
//! - The marks and the current watermark are part of the view's
//!   checkpoint (`view-watermarks`): a restored view hands on the same.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::Result;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::checkpoint::StateWrite;
use crate::windows::timestamps_as_nanos;

/// The name of a view's watermark part of its job's sink state.
pub const VIEW_WATERMARKS: &str = "view-watermarks";

/// How many changes a follower may fall behind before it fails (and starts
/// again from the view's contents when its job is restarted).
const FOLLOWER_BUFFER: usize = 4096;

/// One change of a view, as a job reading it gets it.
#[derive(Debug, Clone)]
pub enum ViewChange {
    /// A batch the view applied (with the op column when it is updating).
    Rows(RecordBatch),
    /// The view's watermark rose to this: every row still to come is at or
    /// after it in the view's event-time column.
    Watermark(i64),
}

/// A view's contents and every change after them, for a job that reads the
/// view as its input (see `crate::view_source`).
pub struct Following {
    /// The contents when the follower started, with the watermarks they
    /// need (see the module's `# Correctness`).
    pub contents: Vec<ViewChange>,
    /// Every change after them, in order.
    pub changes: broadcast::Receiver<ViewChange>,
    /// The changes sent before the contents were taken: what the follower
    /// has seen once it took them all.
    pub base: u64,
    /// Changes the follower has taken: set it to `base` once it handed on
    /// the contents, and add one per change it handed on.
    pub taken: Arc<AtomicU64>,
}

/// What a view remembers of its watermark.
#[derive(Debug)]
struct Marks {
    /// The last watermark sent (`i64::MIN`: none yet).
    watermark: i64,
    /// Rows an append-only view holds.
    rows: u64,
    /// Before which row (offset among the view's rows) the watermark was
    /// this, for each batch that held a row behind it (an append-only view).
    late: Vec<(u64, i64)>,
    /// Changed since the last checkpoint.
    dirty: bool,
}

/// What a view sends to the jobs that follow it.
pub(super) struct Feed {
    /// The column of the view's rows its watermark is over; `None`: the
    /// view's rows have no watermark, and it sends none.
    event_time: Option<usize>,
    sender: broadcast::Sender<ViewChange>,
    /// Changes sent so far: how far a follower must have read to be
    /// caught up.
    sent: AtomicU64,
    marks: Mutex<Marks>,
    /// How many changes each follower has taken, for [`Feed::catch_up`].
    followers: Mutex<Vec<Weak<AtomicU64>>>,
}

impl Feed {
    /// The feed of a view whose watermark is over `event_time`, if any.
    pub(super) fn new(event_time: Option<usize>) -> Self {
        let (sender, _) = broadcast::channel(FOLLOWER_BUFFER);
        Self {
            event_time,
            sender,
            sent: AtomicU64::new(0),
            marks: Mutex::new(Marks {
                watermark: i64::MIN,
                rows: 0,
                late: Vec::new(),
                dirty: false,
            }),
            followers: Mutex::new(Vec::new()),
        }
    }

    /// The column the view's watermark is over, if it has one.
    pub(super) fn event_time(&self) -> Option<usize> {
        self.event_time
    }

    /// The view applied `batch`, appended when `append` (called under its
    /// state lock).
    pub(super) fn rows(&self, batch: &RecordBatch, append: bool) -> Result<()> {
        if let (Some(column), true) = (self.event_time, append) {
            let mut marks = self.marks.lock();
            let watermark = marks.watermark;
            if watermark > i64::MIN
                && marks.late.last().is_none_or(|(_, w)| *w < watermark)
                && datafusion::arrow::compute::min(&timestamps_as_nanos(batch.column(column))?)
                    .is_some_and(|t| t < watermark)
            {
                let at = marks.rows;
                marks.late.push((at, watermark));
                marks.dirty = true;
            }
            marks.rows += batch.num_rows() as u64;
        }
        self.sent.fetch_add(1, Ordering::AcqRel);
        // No follower is fine; a slow one notices it lagged.
        let _ = self.sender.send(ViewChange::Rows(batch.clone()));
        Ok(())
    }

    /// The view's job's watermark rose to `watermark`, after the batches it
    /// covers (called under the view's state lock). Sent on only when the
    /// view's rows have a watermark, and only when it rises.
    pub(super) fn watermark(&self, watermark: i64) {
        if self.event_time.is_none() {
            return;
        }
        {
            let mut marks = self.marks.lock();
            if watermark <= marks.watermark {
                return;
            }
            marks.watermark = watermark;
            marks.dirty = true;
        }
        self.sent.fetch_add(1, Ordering::AcqRel);
        let _ = self.sender.send(ViewChange::Watermark(watermark));
    }

    /// A new follower of a view whose contents are `batches` (called under
    /// its state lock); `append`: the view is append-only, and `batches`
    /// are its rows in the order they were appended.
    pub(super) fn follow(&self, batches: Vec<RecordBatch>, append: bool) -> Following {
        let taken = Arc::new(AtomicU64::new(0));
        self.followers.lock().push(Arc::downgrade(&taken));
        let marks = self.marks.lock();
        let mut contents = Vec::with_capacity(batches.len() + 1);
        let mut late = marks.late.iter().filter(|_| append).peekable();
        let mut offset = 0u64;
        for batch in batches {
            let end = offset + batch.num_rows() as u64;
            let mut from = offset;
            // A mark inside a batch (a checkpoint's chunks merge batches):
            // the rows before it, then the watermark.
            while let Some(&(at, watermark)) = late.next_if(|(at, _)| *at < end) {
                if at > from {
                    contents.push(ViewChange::Rows(
                        batch.slice((from - offset) as usize, (at - from) as usize),
                    ));
                    from = at;
                }
                contents.push(ViewChange::Watermark(watermark));
            }
            contents.push(ViewChange::Rows(if from == offset {
                batch
            } else {
                batch.slice((from - offset) as usize, (end - from) as usize)
            }));
            offset = end;
        }
        if marks.watermark > i64::MIN {
            contents.push(ViewChange::Watermark(marks.watermark));
        }
        Following {
            contents,
            changes: self.sender.subscribe(),
            base: self.sent.load(Ordering::Acquire),
            taken,
        }
    }

    /// The feed's part of a checkpoint, when it changed: the current
    /// watermark (at row -1) and the marks, whole (they are few: one per
    /// batch that held late rows).
    pub(super) fn snapshot(&self, epoch: u64) -> Result<Option<(String, StateWrite)>> {
        let mut marks = self.marks.lock();
        if !marks.dirty {
            return Ok(None);
        }
        marks.dirty = false;
        let entries: Vec<(i64, i64)> = std::iter::once((-1, marks.watermark))
            .chain(marks.late.iter().map(|&(at, w)| (at as i64, w)))
            .collect();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("row", DataType::Int64, false),
                Field::new("watermark", DataType::Int64, false),
            ])),
            vec![
                Arc::new(Int64Array::from_iter_values(entries.iter().map(|e| e.0))),
                Arc::new(Int64Array::from_iter_values(entries.iter().map(|e| e.1))),
            ],
        )?;
        Ok(Some((
            VIEW_WATERMARKS.to_string(),
            StateWrite {
                reset: true,
                put: vec![(format!("w{epoch}"), batch)],
                ..Default::default()
            },
        )))
    }

    /// Restore the feed's part of a checkpoint (`chunks`, the last one
    /// whole) over restored contents of `rows` rows (an append-only view's).
    pub(super) fn restore(&self, chunks: &[(String, RecordBatch)], rows: u64) -> Result<()> {
        let mut marks = self.marks.lock();
        marks.rows = rows;
        let Some((_, batch)) = chunks.last() else {
            return Ok(());
        };
        let column = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal(
                        "a view's watermark chunk is not two Int64 columns".into(),
                    )
                })
        };
        let (at, watermark) = (column(0)?, column(1)?);
        for (at, watermark) in at.values().iter().zip(watermark.values()) {
            if *at < 0 {
                marks.watermark = *watermark;
            } else {
                marks.late.push((*at as u64, *watermark));
            }
        }
        Ok(())
    }

    /// Wait until every follower has taken every change sent so far (gives
    /// up after `timeout`, returning false).
    pub(super) async fn catch_up(&self, timeout: std::time::Duration) -> bool {
        let target = self.sent.load(Ordering::Acquire);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let behind = {
                let mut followers = self.followers.lock();
                followers.retain(|f| f.strong_count() > 0);
                followers
                    .iter()
                    .filter_map(Weak::upgrade)
                    .any(|f| f.load(Ordering::Acquire) < target)
            };
            if !behind {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::TimestampNanosecondArray;
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    /// A batch of rows at these times.
    fn batch(times: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        )]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(TimestampNanosecondArray::from(times.to_vec()))],
        )
        .expect("batch")
    }

    /// The contents as `t1,t2` for rows and `w5` for watermarks.
    fn shape(contents: &[ViewChange]) -> Vec<String> {
        contents
            .iter()
            .map(|c| match c {
                ViewChange::Rows(b) => b
                    .column(0)
                    .as_any()
                    .downcast_ref::<TimestampNanosecondArray>()
                    .expect("times")
                    .values()
                    .iter()
                    .map(|t| format!("t{t}"))
                    .collect::<Vec<_>>()
                    .join(","),
                ViewChange::Watermark(w) => format!("w{w}"),
            })
            .collect()
    }

    #[test]
    fn a_late_follower_meets_each_late_row_behind_the_watermark_it_met_live() {
        let feed = Feed::new(Some(0));
        feed.rows(&batch(&[1, 8]), true).expect("rows");
        feed.watermark(5);
        // On time: no mark.
        feed.rows(&batch(&[6]), true).expect("rows");
        feed.watermark(7);
        // Behind 7: marked.
        feed.rows(&batch(&[3]), true).expect("rows");
        // Behind 7 again: the mark before it still stands.
        feed.rows(&batch(&[2, 9]), true).expect("rows");
        feed.watermark(9);
        let following = feed.follow(
            vec![batch(&[1, 8]), batch(&[6]), batch(&[3]), batch(&[2, 9])],
            true,
        );
        assert_eq!(
            shape(&following.contents),
            ["t1,t8", "t6", "w7", "t3", "t2,t9", "w9"]
        );
        assert_eq!(following.base, 7);
    }

    #[test]
    fn the_marks_survive_a_checkpoint_whose_chunks_merged_the_batches() {
        let feed = Feed::new(Some(0));
        feed.rows(&batch(&[1, 8]), true).expect("rows");
        feed.watermark(7);
        feed.rows(&batch(&[3, 10]), true).expect("rows");
        let (part, write) = feed.snapshot(1).expect("snapshot").expect("changed");
        assert_eq!(part, VIEW_WATERMARKS);
        assert!(feed.snapshot(2).expect("snapshot").is_none(), "unchanged");
        let restored = Feed::new(Some(0));
        restored.restore(&write.put, 4).expect("restore");
        let following = restored.follow(vec![batch(&[1, 8, 3, 10])], true);
        assert_eq!(shape(&following.contents), ["t1,t8", "w7", "t3,t10", "w7"]);
    }

    #[test]
    fn an_updating_view_hands_its_watermark_after_its_contents() {
        let feed = Feed::new(Some(0));
        feed.watermark(5);
        let following = feed.follow(vec![batch(&[1]), batch(&[2])], false);
        assert_eq!(shape(&following.contents), ["t1", "t2", "w5"]);
    }

    #[test]
    fn a_view_without_event_time_sends_no_watermark() {
        let feed = Feed::new(None);
        feed.rows(&batch(&[1]), true).expect("rows");
        feed.watermark(5);
        let following = feed.follow(vec![batch(&[1])], true);
        assert_eq!(shape(&following.contents), ["t1"]);
        assert_eq!(following.base, 1);
        assert!(feed.snapshot(1).expect("snapshot").is_none());
    }
}
