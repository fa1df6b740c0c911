//! The barrier aligner: one task's view of its upstreams (the channels that
//! feed it), turned into one ordered sequence of batches, watermarks and
//! barriers.
//!
//! Every task with several upstreams (a join or aggregate worker, the sink
//! task) runs its messages through an [`Aligner`]. It is the subtlest piece of
//! a job, so it lives alone and is tested alone.
//!
//! # Correctness
//! - Watermark: the minimum over the upstreams that have event time; an
//!   upstream without event time (a table) sends none and does not hold the
//!   others back. An upstream that ended counts as `+inf`; the aligned
//!   watermark is `+inf` (the end) only once every upstream ended. A
//!   watermark is passed on only when it rises.
//! - Side watermarks (a join worker's, [`Aligner::with_sides`]): the same
//!   minimum over one side's upstreams, passed on in order with that side's
//!   batches (before the aligned watermark it may raise), so that whether a
//!   row is behind its own side's watermark depends only on the messages of
//!   that side, never on how the two sides interleave.
//! - Barriers: every upstream delivers the same epochs in order (sources send
//!   every epoch, none skipped). Once an upstream delivered the barrier of
//!   the epoch in progress, its later messages are held back until every
//!   upstream delivered it (an ended upstream counts as delivered); then the
//!   barrier is passed on once, and the held messages are replayed in order.
//!   So everything before the barrier on every upstream comes out before it,
//!   and nothing after it does.
//! - Snapshot ends (a lookup join worker's, [`Message::SnapshotEnd`]): one
//!   side's snapshot has ended once every upstream of that side sent its
//!   mark; that is passed on once, in order with that side's batches (the
//!   last mark comes after every snapshot row of the side). Without sides
//!   the mark means nothing and is dropped.

use std::collections::VecDeque;

use datafusion::arrow::array::RecordBatch;

use crate::message::{Barrier, Message};
use crate::plan::Side;

/// What an upstream had sent when a checkpoint was taken, and whether it
/// sends watermarks at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UpstreamClock {
    /// Does it send watermarks? An upstream without event time (a table)
    /// never does, and does not hold back the others'.
    pub(crate) timed: bool,
    /// The last watermark it sent (`i64::MAX`: it ended).
    pub(crate) watermark: i64,
}

impl UpstreamClock {
    /// An upstream with event time that has sent nothing yet.
    pub(crate) const FRESH: UpstreamClock = UpstreamClock {
        timed: true,
        watermark: i64::MIN,
    };
}

/// What the aligner lets through, in order.
#[derive(Debug)]
pub(crate) enum Aligned {
    /// A batch from upstream `.0`.
    Batch(usize, RecordBatch),
    /// The aligned watermark rose to this.
    Watermark(i64),
    /// The minimum over one join side's upstreams rose to this (only from
    /// an aligner [`Aligner::with_sides`]).
    SideWatermark(Side, i64),
    /// Every upstream delivered the barrier of this epoch.
    Barrier(u64),
    /// Every upstream of this join side sent the end of its snapshot (only
    /// from an aligner [`Aligner::with_sides`]).
    SnapshotEnd(Side),
}

/// One upstream's state in the aligner.
#[derive(Debug)]
struct Upstream {
    clock: UpstreamClock,
    ended: bool,
    /// It delivered the barrier in progress.
    delivered: bool,
    /// Its messages after that barrier, waiting for the others.
    held: VecDeque<Message>,
    /// It sent the end of its snapshot.
    snapshot_ended: bool,
}

/// Watermark and barrier alignment over a task's upstreams.
#[derive(Debug)]
pub(crate) struct Aligner {
    upstreams: Vec<Upstream>,
    /// The last watermark passed on.
    watermark: i64,
    /// The epoch of the barrier in progress.
    barrier: Option<u64>,
    /// Each upstream's join side (empty: side watermarks are not wanted).
    sides: Vec<Option<Side>>,
    /// The last watermark passed on per side (left, right).
    side_watermarks: [i64; 2],
    /// Whether each side's snapshot end was passed on (left, right).
    side_snapshots_ended: [bool; 2],
}

impl Aligner {
    /// `n` upstreams with event time that have sent nothing yet.
    pub(crate) fn new(n: usize) -> Self {
        Self::restored(vec![UpstreamClock::FRESH; n])
    }

    /// Upstreams whose clocks were these at a checkpoint.
    pub(crate) fn restored(clocks: Vec<UpstreamClock>) -> Self {
        let mut aligner = Self {
            upstreams: clocks
                .into_iter()
                .map(|clock| Upstream {
                    clock,
                    ended: clock.watermark == i64::MAX,
                    delivered: false,
                    held: VecDeque::new(),
                    snapshot_ended: false,
                })
                .collect(),
            watermark: i64::MIN,
            barrier: None,
            sides: Vec::new(),
            side_watermarks: [i64::MIN; 2],
            side_snapshots_ended: [false; 2],
        };
        aligner.watermark = aligner.current();
        aligner
    }

    /// Pass on each side's watermark too (a join worker's), upstream `i`
    /// being of side `sides[i]`; they start where the restored clocks are
    /// ([`Self::side_watermarks`]).
    pub(crate) fn with_sides(mut self, sides: Vec<Option<Side>>) -> Self {
        self.sides = sides;
        self.side_watermarks = Side::BOTH.map(|side| self.side_current(side));
        self
    }

    /// Each side's watermark as last passed on (`i64::MIN`: none yet, or
    /// no side watermarks wanted).
    pub(crate) fn side_watermarks(&self) -> [i64; 2] {
        self.side_watermarks
    }

    /// The minimum over `side`'s upstreams with event time (an ended one's
    /// is `+inf`); `i64::MIN` if it has none.
    fn side_current(&self, side: Side) -> i64 {
        self.upstreams
            .iter()
            .zip(&self.sides)
            .filter(|(u, s)| u.clock.timed && **s == Some(side))
            .map(|(u, _)| u.clock.watermark)
            .min()
            .unwrap_or(i64::MIN)
    }

    /// Every upstream ended.
    pub(crate) fn finished(&self) -> bool {
        self.upstreams.iter().all(|u| u.ended)
    }

    /// The minimum over the upstreams with event time; `+inf` only once every
    /// upstream ended (it means the end, downstream).
    fn current(&self) -> i64 {
        if self.finished() {
            return i64::MAX;
        }
        self.upstreams
            .iter()
            .filter(|u| u.clock.timed)
            .map(|u| u.clock.watermark)
            .min()
            .map_or(i64::MIN, |m| m.min(i64::MAX - 1))
    }

    /// Take `message` from `upstream`; what it lets through goes to `out`.
    pub(crate) fn offer(&mut self, upstream: usize, message: Message, out: &mut Vec<Aligned>) {
        let from = &mut self.upstreams[upstream];
        if self.barrier.is_some() && from.delivered {
            from.held.push_back(message);
            return;
        }
        match message {
            Message::Batch(batch) => out.push(Aligned::Batch(upstream, batch)),
            Message::Watermark(t) => {
                from.clock.watermark = from.clock.watermark.max(t);
                if t == i64::MAX {
                    from.ended = true;
                }
                if let Some(&Some(side)) = self.sides.get(upstream) {
                    let now = self.side_current(side);
                    if now > self.side_watermarks[side.index()] {
                        self.side_watermarks[side.index()] = now;
                        out.push(Aligned::SideWatermark(side, now));
                    }
                }
                let now = self.current();
                if now > self.watermark {
                    self.watermark = now;
                    out.push(Aligned::Watermark(now));
                }
                self.try_release(out);
            }
            Message::Barrier(Barrier { epoch }) => {
                if self.barrier.is_none() {
                    self.barrier = Some(epoch);
                }
                from.delivered = true;
                self.try_release(out);
            }
            Message::SnapshotEnd => {
                from.snapshot_ended = true;
                let Some(&Some(side)) = self.sides.get(upstream) else {
                    return;
                };
                let all = self
                    .upstreams
                    .iter()
                    .zip(&self.sides)
                    .filter(|(_, s)| **s == Some(side))
                    .all(|(u, _)| u.snapshot_ended);
                if all && !self.side_snapshots_ended[side.index()] {
                    self.side_snapshots_ended[side.index()] = true;
                    out.push(Aligned::SnapshotEnd(side));
                }
            }
        }
    }

    /// Pass the barrier in progress on once every upstream delivered it (or
    /// ended), then replay what was held back.
    fn try_release(&mut self, out: &mut Vec<Aligned>) {
        let Some(epoch) = self.barrier else { return };
        if !self.upstreams.iter().all(|u| u.delivered || u.ended) {
            return;
        }
        out.push(Aligned::Barrier(epoch));
        self.barrier = None;
        self.upstreams.iter_mut().for_each(|u| u.delivered = false);
        for upstream in 0..self.upstreams.len() {
            while self.barrier.is_none() || !self.upstreams[upstream].delivered {
                let Some(message) = self.upstreams[upstream].held.pop_front() else {
                    break;
                };
                self.offer(upstream, message, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    /// A one-row batch holding `v`, to tell batches apart.
    fn batch(v: i64) -> Message {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        Message::Batch(
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![v]))])
                .expect("a one-row batch"),
        )
    }

    fn barrier(epoch: u64) -> Message {
        Message::Barrier(Barrier { epoch })
    }

    /// What came out, as short strings: `b<upstream>:<value>`, `w<t>`, `B<epoch>`.
    fn feed(aligner: &mut Aligner, messages: Vec<(usize, Message)>) -> Vec<String> {
        let mut out = Vec::new();
        for (upstream, message) in messages {
            aligner.offer(upstream, message, &mut out);
        }
        out.into_iter()
            .map(|a| match a {
                Aligned::Batch(u, b) => {
                    let v = b
                        .column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .expect("an Int64 column")
                        .value(0);
                    format!("b{u}:{v}")
                }
                Aligned::Watermark(t) if t == i64::MAX => "wEnd".to_string(),
                Aligned::Watermark(t) => format!("w{t}"),
                Aligned::SideWatermark(Side::Left, t) => format!("L{t}"),
                Aligned::SideWatermark(Side::Right, t) => format!("R{t}"),
                Aligned::Barrier(e) => format!("B{e}"),
                Aligned::SnapshotEnd(Side::Left) => "SL".to_string(),
                Aligned::SnapshotEnd(Side::Right) => "SR".to_string(),
            })
            .collect()
    }

    #[test]
    fn a_barrier_waits_for_every_upstream_and_later_batches_wait_with_it() {
        let mut aligner = Aligner::new(2);
        let out = feed(
            &mut aligner,
            vec![
                (0, batch(1)),
                (0, barrier(1)),
                // After upstream 0's barrier: held until upstream 1 delivers it.
                (0, batch(2)),
                (1, batch(10)),
                (1, barrier(1)),
                (1, batch(11)),
            ],
        );
        assert_eq!(out, ["b0:1", "b1:10", "B1", "b0:2", "b1:11"]);
    }

    #[test]
    fn held_messages_stop_at_the_next_barrier() {
        let mut aligner = Aligner::new(2);
        let out = feed(
            &mut aligner,
            vec![
                (0, barrier(1)),
                (0, batch(1)),
                (0, barrier(2)),
                (0, batch(2)),
                (1, barrier(1)),
            ],
        );
        // Epoch 1 is released; upstream 0's replay stops at its barrier 2.
        assert_eq!(out, ["B1", "b0:1"]);
        let out = feed(&mut aligner, vec![(1, batch(10)), (1, barrier(2))]);
        assert_eq!(out, ["b1:10", "B2", "b0:2"]);
    }

    #[test]
    fn the_watermark_is_the_minimum_over_upstreams_and_only_rises() {
        let mut aligner = Aligner::new(2);
        let out = feed(
            &mut aligner,
            vec![
                (0, Message::Watermark(10)),
                (1, Message::Watermark(5)),
                (1, Message::Watermark(20)),
                (0, Message::Watermark(15)),
                // Lower than what was sent: nothing.
                (0, Message::Watermark(12)),
            ],
        );
        assert_eq!(out, ["w5", "w10", "w15"]);
    }

    #[test]
    fn an_ended_upstream_no_longer_holds_back_watermarks_or_barriers() {
        let mut aligner = Aligner::new(2);
        let out = feed(
            &mut aligner,
            vec![
                (0, Message::Watermark(5)),
                (1, Message::END_OF_INPUT),
                (0, barrier(1)),
            ],
        );
        // Upstream 1 ended: the watermark is upstream 0's alone, not the end,
        // and the barrier needs upstream 0 only.
        assert_eq!(out, ["w5", "B1"]);
        assert!(!aligner.finished());
        let out = feed(&mut aligner, vec![(0, Message::END_OF_INPUT)]);
        assert_eq!(out, ["wEnd"]);
        assert!(aligner.finished());
    }

    #[test]
    fn an_upstream_ending_releases_a_barrier_the_others_delivered() {
        let mut aligner = Aligner::new(2);
        let out = feed(
            &mut aligner,
            vec![(0, barrier(1)), (0, batch(1)), (1, Message::END_OF_INPUT)],
        );
        assert_eq!(out, ["B1", "b0:1"]);
    }

    #[test]
    fn an_upstream_without_event_time_does_not_hold_back_the_watermark() {
        let mut aligner = Aligner::restored(vec![
            UpstreamClock::FRESH,
            UpstreamClock {
                timed: false,
                watermark: i64::MIN,
            },
        ]);
        let out = feed(&mut aligner, vec![(0, Message::Watermark(7))]);
        assert_eq!(out, ["w7"]);
        // The timed one ended: every window can close, but it is not the
        // end while the other goes on.
        let out = feed(&mut aligner, vec![(0, Message::END_OF_INPUT)]);
        assert_eq!(out, [format!("w{}", i64::MAX - 1)]);
        let out = feed(&mut aligner, vec![(1, Message::END_OF_INPUT)]);
        assert_eq!(out, ["wEnd"]);
    }

    #[test]
    fn no_timed_upstream_means_no_watermark_until_the_end() {
        let untimed = UpstreamClock {
            timed: false,
            watermark: i64::MIN,
        };
        let mut aligner = Aligner::restored(vec![untimed; 2]);
        let out = feed(
            &mut aligner,
            vec![(0, Message::Watermark(7)), (0, Message::END_OF_INPUT)],
        );
        assert!(out.is_empty(), "{out:?}");
        let out = feed(&mut aligner, vec![(1, Message::END_OF_INPUT)]);
        assert_eq!(out, ["wEnd"]);
    }

    #[test]
    fn restored_clocks_set_the_starting_watermark() {
        let ended = UpstreamClock {
            timed: true,
            watermark: i64::MAX,
        };
        let at = |watermark| UpstreamClock {
            timed: true,
            watermark,
        };
        let mut aligner = Aligner::restored(vec![at(30), ended, at(20)]);
        // 20 is where it starts: a watermark up to it is not news.
        let out = feed(
            &mut aligner,
            vec![(2, Message::Watermark(20)), (2, Message::Watermark(25))],
        );
        assert_eq!(out, ["w25"]);
        // The ended upstream needs no barrier.
        let out = feed(&mut aligner, vec![(0, barrier(4)), (2, barrier(4))]);
        assert_eq!(out, ["B4"]);
    }

    #[test]
    fn each_sides_watermark_comes_in_order_with_its_batches() {
        let sides = vec![Some(Side::Left), Some(Side::Right), Some(Side::Right)];
        let mut aligner = Aligner::new(3).with_sides(sides);
        let out = feed(
            &mut aligner,
            vec![
                (0, batch(1)),
                (0, Message::Watermark(10)),
                (0, batch(2)),
                // The right side is the lower of its two upstreams.
                (1, Message::Watermark(5)),
                (2, Message::Watermark(7)),
                (1, Message::Watermark(8)),
                (2, Message::END_OF_INPUT),
            ],
        );
        assert_eq!(
            out,
            ["b0:1", "L10", "b0:2", "R5", "w5", "R7", "w7", "R8", "w8"]
        );
        assert_eq!(aligner.side_watermarks(), [10, 8]);
        // Restored clocks set where each side starts.
        let at = |watermark| UpstreamClock {
            timed: true,
            watermark,
        };
        let restored = Aligner::restored(vec![at(4), at(9)])
            .with_sides(vec![Some(Side::Left), Some(Side::Right)]);
        assert_eq!(restored.side_watermarks(), [4, 9]);
    }

    #[test]
    fn a_lookup_table_sides_snapshot_ends_once_every_upstream_of_it_sent_its_mark() {
        let sides = vec![Some(Side::Left), Some(Side::Right), Some(Side::Right)];
        let mut aligner = Aligner::new(3).with_sides(sides);
        let out = feed(
            &mut aligner,
            vec![
                (1, batch(10)),
                (1, Message::SnapshotEnd),
                (0, batch(1)),
                (2, batch(20)),
                (2, Message::SnapshotEnd),
                // A second mark is not news.
                (1, Message::SnapshotEnd),
                (1, batch(11)),
            ],
        );
        assert_eq!(out, ["b1:10", "b0:1", "b2:20", "SR", "b1:11"]);
        // Without sides it means nothing.
        let mut plain = Aligner::new(1);
        assert!(feed(&mut plain, vec![(0, Message::SnapshotEnd)]).is_empty());
    }
}
