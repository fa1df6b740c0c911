//! Stream operators. Each works on whole `RecordBatch`es.
//!
//! - [`stateless`]: filter, project, unnest.
//! - [`aggregate`]: keyed aggregates over windows (tumble, hop, cumulate,
//!   session) or plain groups, emitting on window close or as a changelog.
//! - [`join`]: equi-joins of two inputs, either of them updating; what
//!   each side keeps, and when a state TTL drops it, is `join_state.rs`.
//! - [`interval_join`]: joins of two streams on keys and close event times,
//!   their state bounded by the watermark (interval and window joins).
//! - [`lookup_join`]: a stream's rows joined with a table's rows as they
//!   are when each row arrives (`FOR SYSTEM_TIME AS OF`), only the table
//!   side kept.
//! - [`top_n`]: the first N rows per key in an order (TopN, dedup).
//! - [`over_window`]: aggregates over a frame of rows in event time
//!   (`OVER (.. ROWS BETWEEN n PRECEDING AND CURRENT ROW)`).
//! - [`exchange`]: hash-partitioning rows to the join and aggregate workers.
//! - [`changes`]: the op column, and what "changelog" means.
//!
//! Every stateful operator implements [`StreamOperator`]; a job's worker
//! runs one through it and knows nothing else about it.

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;

use crate::checkpoint::StateWrite;
pub use crate::plan::Side;

pub mod aggregate;
pub mod changes;
pub(crate) mod counted_rows;
pub mod exchange;
pub mod interval_join;
pub mod join;
pub(crate) mod join_keys;
pub(crate) mod join_state;
pub mod lookup_join;
pub mod over_window;
pub mod stateless;
pub mod top_n;

pub use changes::{OP_COLUMN, StreamBatch};

/// What a stateful operator keeps, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSummary {
    /// The operator's name ("window aggregate", "join").
    pub operator: &'static str,
    /// How many keyed entries it holds now (groups, windows' groups,
    /// sessions, stored rows): the figure that grows with its memory.
    pub entries: usize,
}

/// One stateful operator of a job, run by one worker over the keys the
/// exchange sends that worker.
///
/// The worker owns the order of events: batches as they come, a watermark
/// once it rose on every upstream, a barrier once every upstream delivered
/// it (see `job::aligner`). The operator owns its state, what it emits, and
/// how its state is written to and read from a checkpoint; the runtime owns
/// where that state is stored.
///
/// # Adding an operator
/// Write one file under `operators/` with a struct implementing this trait
/// (its state, its checkpoint chunks, its unit tests), and add one arm where
/// a worker's operator is built from the plan (`job::worker::operator`).
///
/// # Correctness
/// - `on_watermark` returns what the watermark completes *before* the worker
///   forwards the watermark, so nothing downstream sees a watermark ahead of
///   rows it covers.
/// - `snapshot` is called at a barrier, after every batch before it and
///   before any batch after it; what it returns, written and then restored
///   (with the chunks of every old worker), must give the same state for
///   the keys of the restoring worker.
/// - A batch, chunk or plan the operator's state does not fit (a plan/state
///   mismatch) is an internal error, never an empty result.
pub trait StreamOperator: Send {
    /// Its state's name and size, for logs and metrics.
    fn state(&self) -> StateSummary;

    /// Before any input, on the job's first worker of this stage only: rows
    /// the output has before any input (a global aggregate's one row).
    fn on_start(&mut self) -> Result<Vec<StreamBatch>> {
        Ok(Vec::new())
    }

    /// Rows arrive, from `side` for a join (`None` for a one-input
    /// operator): returns what they change downstream.
    fn on_batch(&mut self, side: Option<Side>, batch: &RecordBatch) -> Result<Vec<StreamBatch>>;

    /// The watermark rose to `watermark`: returns what it completes.
    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<StreamBatch>>;

    /// The watermark of one join side rose to `watermark` (join workers
    /// only; before the aligned watermark it may raise, in order with that
    /// side's batches): returns what it completes. Ignored by default.
    fn on_side_watermark(&mut self, side: Side, watermark: i64) -> Result<Vec<StreamBatch>> {
        let _ = (side, watermark);
        Ok(Vec::new())
    }

    /// Every upstream of join side `side` sent the end of its snapshot
    /// ([`crate::message::Message::SnapshotEnd`]: a lookup join's table
    /// side read the rows its table held when the job started): returns
    /// what that completes. The worker then forwards [`Self::watermark`].
    /// Ignored by default.
    fn on_snapshot_end(&mut self, side: Side) -> Result<Vec<StreamBatch>> {
        let _ = side;
        Ok(Vec::new())
    }

    /// The watermark to forward downstream once the input's rose to
    /// `watermark` (after what [`Self::on_watermark`] returned): the same by
    /// default; less for an operator whose output can be older than its
    /// input's watermark (an interval join's pairs).
    ///
    /// # Correctness
    /// No row the operator emits later may be behind what it returns.
    fn output_watermark(&self, watermark: i64) -> i64 {
        watermark
    }

    /// The highest watermark it has forwarded (kept with its checkpoint):
    /// the one it restores with, and the one the stage it feeds restores
    /// its clock of it to. The highest it has seen, unless
    /// [`Self::output_watermark`] holds it back.
    fn watermark(&self) -> i64;

    /// The job checkpoints: track what changes from now on, for deltas.
    fn enable_checkpoints(&mut self) {}

    /// At the barrier of `epoch`: what changed since the last snapshot, as
    /// chunks to write.
    fn snapshot(&mut self, epoch: u64) -> Result<StateWrite>;

    /// Rebuild state from a checkpoint: the chunks of every old worker of
    /// this stage (each worker's in order) and their highest watermark,
    /// keeping the keys that hash to `worker` of `workers`.
    fn restore(
        &mut self,
        watermark: i64,
        chunks: &[(String, RecordBatch)],
        worker: usize,
        workers: usize,
    ) -> Result<()>;
}

/// Cast columns to the declared output types (an accumulator may return,
/// say, a dictionary or a view type where the plan promised plain).
pub(crate) fn conform(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<Vec<ArrayRef>> {
    columns
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                Ok(cast(&c, f.data_type())?)
            }
        })
        .collect()
}

/// The row formats of an operator that keeps rows per key in an order
/// (TopN, OVER windows): its partition key, its sort key (with each
/// column's direction), and whole input rows.
pub(crate) fn keyed_row_formats(
    partition: &[std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>],
    order: &[(
        std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        datafusion::arrow::compute::SortOptions,
    )],
    schema: &datafusion::arrow::datatypes::Schema,
) -> Result<[datafusion::arrow::row::RowConverter; 3]> {
    use datafusion::arrow::row::{RowConverter, SortField};
    let partition_types = partition
        .iter()
        .map(|e| Ok(SortField::new(e.data_type(schema)?)))
        .collect::<Result<Vec<_>>>()?;
    let order_types = order
        .iter()
        .map(|(e, options)| Ok(SortField::new_with_options(e.data_type(schema)?, *options)))
        .collect::<Result<Vec<_>>>()?;
    let row_types = schema
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    Ok([
        RowConverter::new(partition_types)?,
        RowConverter::new(order_types)?,
        RowConverter::new(row_types)?,
    ])
}
