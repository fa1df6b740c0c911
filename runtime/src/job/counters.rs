//! What each source partition has read and the watermark it sent, kept in
//! atomics the source tasks bump and [`super::JobHandle::progress`] reads:
//! a count per batch costs one relaxed add, not a wake-up of everyone
//! watching the job's progress.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::progress::Progress;
use crate::source::{ReadProgress, Source};

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
}

impl SourceCounters {
    /// Counters for partitions whose event time is `timed`, of `sources`.
    pub(crate) fn new(timed: Vec<bool>, sources: Vec<Arc<dyn Source>>) -> Self {
        Self {
            rows: timed.iter().map(|_| AtomicU64::new(0)).collect(),
            watermarks: timed.iter().map(|_| AtomicI64::new(i64::MIN)).collect(),
            timed,
            sources,
        }
    }

    /// Partition `partition` read `rows` more rows.
    pub(crate) fn read(&self, partition: usize, rows: u64) {
        self.rows[partition].fetch_add(rows, Ordering::Relaxed);
    }

    /// Partition `partition` sent watermark `t` (`i64::MAX`: it ended).
    pub(crate) fn watermark(&self, partition: usize, t: i64) {
        self.watermarks[partition].fetch_max(t, Ordering::Relaxed);
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
            .reduce(|a, b| ReadProgress {
                bytes_read: a.bytes_read + b.bytes_read,
                bytes_total: a.bytes_total + b.bytes_total,
                files_read: a.files_read + b.files_read,
                files_total: a.files_total + b.files_total,
            });
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
    use super::*;

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
