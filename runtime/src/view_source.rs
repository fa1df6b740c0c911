//! A materialized view as a stream: the source of a view defined over
//! another view.
//!
//! [`ViewSource`] reads the upstream view's contents, then every batch the
//! upstream's job applies to it, through the view's broadcast of changes
//! ([`MaterializedView::follow`], the same feed `SUBSCRIBE` uses, counted
//! so that `FLUSH` can wait for it). An append-only upstream gives an
//! append-only stream; an updating one a changelog (its contents as
//! inserts, then its inserts and retractions as they were applied).
//!
//! # Correctness
//! The downstream job does not keep a position in the upstream: the
//! upstream's changes after a restart of its own are computed again, batched
//! and ordered differently, so no count of them names the same place twice.
//! Instead the downstream derives its state again from the upstream's
//! contents whenever it starts: [`Source::resumable`] refuses any position
//! but the start, so a restart of the downstream starts it fresh, and a
//! restart of the upstream (a new run, over a new view) fails the follower
//! with the reason, so its job starts again from the new contents. Results
//! are then those of a run without the restart (see
//! `docs/design/0012-sql-breadth.md`).
//!
//! A downstream that falls a whole broadcast buffer behind fails the same
//! way (and derives again when restarted): the upstream never waits for it.
//!
//! # Watermarks
//! A view whose rows a watermark bounds (its job's plan says which column:
//! `StreamPlan::event_time`) hands its job's aligned watermark on with its
//! batches, after the rows it covers; the reader hands it to the source
//! task ([`SourceItem::Watermark`]), which sends it on as the stream's
//! watermark (the source [declares](Source::declares_watermarks) its
//! watermarks, so none is derived from the rows). The contents come
//! followed by the view's current watermark, so a watermark never passes a
//! row not yet handed on; an append-only view's rows that were late when it
//! applied them come behind the watermark they met then, so they are late
//! here too (`materialized/feed.rs`). The contents are followed by the end
//! of the snapshot ([`SourceItem::SnapshotEnd`]), what a lookup join over
//! the view waits for. Watermarks count as positions: a
//! checkpoint that saw one is not resumed either, so a restored downstream
//! never starts at a watermark its rebuilt contents would be behind.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::error::DataFusionError;
use tokio::sync::{broadcast, watch};

use crate::materialized::{MaterializedView, ViewChange};
use crate::progress::Progress;
use crate::source::{Source, SourceItem, SourcePosition, SourceReader};

/// A materialized view read as a stream by another view's job.
pub struct ViewSource {
    /// The upstream view's name (for EXPLAIN and errors).
    name: String,
    view: Arc<MaterializedView>,
    /// The upstream job's progress: finished, failed, or gone (its run
    /// ended: it was restarted, suspended or upgraded).
    upstream: watch::Receiver<Progress>,
    /// Does the upstream's job end (all its inputs bounded)?
    bounded: bool,
}

impl std::fmt::Debug for ViewSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ViewSource {
    /// The view `name`, whose current run's job reports `upstream`, and
    /// ends when `bounded`.
    pub fn new(
        name: &str,
        view: Arc<MaterializedView>,
        upstream: watch::Receiver<Progress>,
        bounded: bool,
    ) -> Self {
        Self {
            name: name.to_string(),
            view,
            upstream,
            bounded,
        }
    }
}

impl Source for ViewSource {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    /// One: the view is one sequence of changes, applied by one sink task.
    fn partitions(&self) -> usize {
        1
    }

    fn bounded(&self) -> bool {
        self.bounded
    }

    /// A view's rows: a lookup join may look rows up in them.
    fn is_table(&self) -> bool {
        true
    }

    fn changelog(&self) -> bool {
        self.view.is_changelog()
    }

    /// When the view's rows have a watermark: the view's own.
    fn declares_watermarks(&self) -> bool {
        self.view.event_time().is_some()
    }

    /// Only from the start: see the module's `# Correctness`.
    fn resumable(&self, _partition: usize, position: SourcePosition) -> bool {
        position.0 == 0
    }

    fn open(
        &self,
        _partition: usize,
        _from: Option<SourcePosition>,
    ) -> Result<Box<dyn SourceReader>> {
        let following = self.view.follow()?;
        // Read after the contents were taken: once finished, nothing more
        // is applied, so what the changes hold then is all there is.
        let upstream_finished = self.upstream.borrow().finished;
        let changelog = self.view.is_changelog();
        let contents = following
            .contents
            .into_iter()
            .filter(|c| !matches!(c, ViewChange::Rows(b) if b.num_rows() == 0))
            .map(|c| match c {
                ViewChange::Rows(b) if changelog => Ok(ViewChange::Rows(
                    crate::operators::aggregate::with_op(&b, 1)?,
                )),
                other => Ok(other),
            })
            .collect::<Result<VecDeque<_>>>()?;
        Ok(Box::new(ViewReader {
            name: self.name.clone(),
            contents,
            changes: following.changes,
            base: following.base,
            taken: following.taken,
            upstream: self.upstream.clone(),
            upstream_finished,
            position: 0,
            snapshot_ended: false,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "materialized view {} ({}{})",
            self.name,
            if self.view.is_changelog() {
                "its rows, then its inserts and deletes"
            } else {
                "its rows, then the rows it appends"
            },
            if self.view.event_time().is_some() {
                ", with its watermark"
            } else {
                ""
            }
        )
    }
}

struct ViewReader {
    name: String,
    /// The upstream's contents, still to hand on.
    contents: VecDeque<ViewChange>,
    changes: broadcast::Receiver<ViewChange>,
    base: u64,
    taken: Arc<AtomicU64>,
    upstream: watch::Receiver<Progress>,
    /// The upstream job finished: what is left in `changes` is all there is.
    upstream_finished: bool,
    /// Batches and watermarks handed on (only "at the start or not"
    /// matters: see `ViewSource::resumable`).
    position: u64,
    /// It handed on the end of the contents ([`SourceItem::SnapshotEnd`]).
    snapshot_ended: bool,
}

impl ViewReader {
    fn hand_on(&mut self, change: ViewChange) -> Option<Result<SourceItem>> {
        self.position += 1;
        Some(Ok(match change {
            ViewChange::Rows(batch) => SourceItem::Rows(batch),
            ViewChange::Watermark(watermark) => SourceItem::Watermark(watermark),
        }))
    }

    fn lagged(&self, missed: u64) -> DataFusionError {
        DataFusionError::Execution(format!(
            "fell {missed} batches behind the materialized view \"{}\" it reads; it starts again from that view's rows when restarted",
            self.name
        ))
    }
}

#[async_trait]
impl SourceReader for ViewReader {
    /// The rows only (the source task reads [`Self::next_item`]).
    async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            match self.next_item().await? {
                Ok(SourceItem::Rows(batch)) => return Some(Ok(batch)),
                Ok(SourceItem::Watermark(_) | SourceItem::SnapshotEnd) => continue,
                Err(err) => return Some(Err(err)),
            }
        }
    }

    async fn next_item(&mut self) -> Option<Result<SourceItem>> {
        if let Some(change) = self.contents.pop_front() {
            if self.contents.is_empty() {
                self.taken.store(self.base, Ordering::Release);
            }
            return self.hand_on(change);
        }
        self.taken.fetch_max(self.base, Ordering::AcqRel);
        if !self.snapshot_ended {
            // Not a position: a view is only resumed from its start.
            self.snapshot_ended = true;
            return Some(Ok(SourceItem::SnapshotEnd));
        }
        loop {
            if self.upstream_finished {
                // Nothing is applied after the upstream finished.
                return match self.changes.try_recv() {
                    Ok(change) => {
                        self.taken.fetch_add(1, Ordering::AcqRel);
                        self.hand_on(change)
                    }
                    Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(self.lagged(n))),
                    Err(_) => None,
                };
            }
            tokio::select! {
                biased;
                change = self.changes.recv() => match change {
                    Ok(change) => {
                        self.taken.fetch_add(1, Ordering::AcqRel);
                        return self.hand_on(change);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => return Some(Err(self.lagged(n))),
                    // The view is held here: its sender cannot go first.
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                changed = self.upstream.changed() => {
                    let progress = self.upstream.borrow().clone();
                    if progress.finished {
                        self.upstream_finished = true;
                    } else if let Some(failure) = progress.failed {
                        return Some(Err(DataFusionError::External(Box::new(
                            crate::RuntimeError::JobFailed {
                                view: self.name.clone(),
                                failure,
                            },
                        ))));
                    } else if changed.is_err() || progress.stopped.is_some() {
                        return Some(Err(DataFusionError::Execution(format!(
                            "the materialized view \"{}\" it reads was stopped or restarted; it starts again from that view's rows when restarted",
                            self.name
                        ))));
                    }
                }
            }
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition(self.position)
    }
}
