//! What streaming operators exchange.
//!
//! Data moves as Arrow [`RecordBatch`]es, never row by row. Watermarks and
//! barriers flow in the same channel as the data so that their order relative
//! to the batches is preserved: that order is what makes event-time results
//! and aligned checkpoints exact.

use datafusion::arrow::record_batch::RecordBatch;

/// One item on a channel between two streaming operators.
#[derive(Debug, Clone)]
pub enum Message {
    /// A batch of rows.
    Batch(RecordBatch),
    /// No row with an event time below this (nanoseconds since the epoch)
    /// will follow on this channel. `i64::MAX` closes a bounded input.
    Watermark(i64),
    /// A checkpoint barrier: every message before it belongs to the epoch.
    Barrier(Barrier),
    /// Every row a table input held when the job started (its snapshot)
    /// was sent before this on the channel; changes follow. Sent once, only
    /// by a table source that is a lookup join's table side, before its
    /// first barrier: the join holds its stream rows until every table-side
    /// upstream sent it (see `operators::lookup_join`).
    SnapshotEnd,
}

/// A checkpoint barrier, injected by sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// The checkpoint this barrier closes.
    pub epoch: u64,
}

impl Message {
    /// The final watermark of a bounded input: every window can close.
    pub const END_OF_INPUT: Message = Message::Watermark(i64::MAX);
}
