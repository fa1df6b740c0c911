//! Materialized views: the sink of a job, queryable at any time and
//! subscribable.
//!
//! An append-only view keeps its batches. An updating view keeps a multiset
//! of rows (row bytes -> count): an insert adds one, a delete removes one, so
//! applying a changelog in order leaves exactly the current result.
//! Subscribers get every applied batch through a broadcast channel, after a
//! snapshot taken under the same lock, so they miss and repeat nothing.
//!
//! A view's contents are part of its job's checkpoints, written as deltas:
//! an append-only view writes the batches appended since the last barrier
//! (small chunks merge into bigger ones, so a view of n rows is O(log n)
//! chunks); an updating view writes the current count of every row that
//! changed (0: gone), and a full snapshot once the deltas outgrow it.
//!
//! Jobs that read a view as a stream follow its [`feed`]: its batches and,
//! when a watermark bounds its rows, its watermark, in order.

mod feed;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{HashMap, Result};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::checkpoint::StateWrite;
use crate::job::Sink;
pub use feed::{Following, VIEW_WATERMARKS, ViewChange};

/// The name of a view's part of a job's sink state.
pub const VIEW_STATE: &str = "view";

/// The count column of an updating view's state chunks.
const COUNT_COLUMN: &str = "__weir_count";

/// How many batches a subscriber may fall behind before it is dropped.
const SUBSCRIBER_BUFFER: usize = 4096;

/// How many batches a blocking subscriber may fall behind before the view's
/// job waits for it: well under [`SUBSCRIBER_BUFFER`], so that it never
/// lags, and small enough that the batches kept for it stay few.
const BLOCKING_BOUND: u64 = 256;

/// A materialized view's current contents.
pub struct MaterializedView {
    schema: SchemaRef,
    changelog: bool,
    state: Mutex<ViewState>,
    changes: broadcast::Sender<RecordBatch>,
    /// What jobs reading the view as a stream get: its batches and its
    /// watermark ([`MaterializedView::follow`]).
    feed: feed::Feed,
    /// Its job checkpoints: record what changes between barriers.
    tracking: std::sync::atomic::AtomicBool,
    /// Batches applied so far (changed under the state lock, with the
    /// broadcast): how far a blocking subscriber must have read.
    applied: AtomicU64,
    /// Subscribers the job waits for ([`MaterializedView::subscribe_blocking`]).
    blockers: Mutex<Vec<Weak<AtomicU64>>>,
    /// Woken when a blocking subscriber takes a batch or goes away.
    blocker_moved: Arc<tokio::sync::Notify>,
}

/// A subscription that holds the view's job back instead of falling
/// behind: the job waits while this subscriber is [`BLOCKING_BOUND`]
/// batches behind, so the server keeps at most that many batches for it.
pub struct Blocking {
    /// The contents when it started.
    pub contents: Vec<RecordBatch>,
    /// Every batch applied after them, in order.
    pub changes: broadcast::Receiver<RecordBatch>,
    /// What it has taken; dropping it releases the job.
    pub taken: BlockingTaken,
}

/// A blocking subscriber's count of batches taken (see [`Blocking`]).
pub struct BlockingTaken {
    count: Arc<AtomicU64>,
    moved: Arc<tokio::sync::Notify>,
}

impl BlockingTaken {
    /// One more change handed to the client.
    pub fn took_one(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.moved.notify_waiters();
    }
}

impl Drop for BlockingTaken {
    fn drop(&mut self) {
        // The subscriber is gone: a job waiting for it must look again.
        self.count.store(u64::MAX, Ordering::Release);
        self.moved.notify_waiters();
    }
}

enum ViewState {
    Append {
        batches: Vec<RecordBatch>,
        /// Checkpointed chunks: id and the batch range each holds.
        chunks: Vec<(String, std::ops::Range<usize>, usize)>,
    },
    Multiset {
        converter: RowConverter,
        counts: HashMap<Box<[u8]>, i64>,
        /// Rows whose count changed since the last snapshot.
        dirty: HashSet<Box<[u8]>>,
        /// Rows in the last full snapshot, and in the deltas since.
        base_rows: usize,
        delta_rows: usize,
    },
}

impl std::fmt::Debug for MaterializedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaterializedView")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl MaterializedView {
    /// An empty view of `schema`; `changelog` when the job retracts rows;
    /// `event_time`: the column of its rows that its job's watermark
    /// bounds, when one does (`StreamPlan::event_time`): the view then
    /// hands its watermark on to the jobs that read it.
    pub fn new(schema: SchemaRef, changelog: bool, event_time: Option<usize>) -> Result<Arc<Self>> {
        let state = if changelog {
            let fields = schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            ViewState::Multiset {
                converter: RowConverter::new(fields)?,
                counts: HashMap::default(),
                dirty: HashSet::new(),
                base_rows: 0,
                delta_rows: 0,
            }
        } else {
            ViewState::Append {
                batches: Vec::new(),
                chunks: Vec::new(),
            }
        };
        let (changes, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        Ok(Arc::new(Self {
            schema,
            changelog,
            state: Mutex::new(state),
            changes,
            feed: feed::Feed::new(event_time),
            tracking: std::sync::atomic::AtomicBool::new(false),
            applied: AtomicU64::new(0),
            blockers: Mutex::new(Vec::new()),
            blocker_moved: Arc::new(tokio::sync::Notify::new()),
        }))
    }

    /// The view's columns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Does the view change rows it already has (an updating result)?
    pub fn is_changelog(&self) -> bool {
        self.changelog
    }

    /// The column of its rows that its watermark is over, when it has one.
    pub fn event_time(&self) -> Option<usize> {
        self.feed.event_time()
    }

    /// The current contents.
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        snapshot(&self.state.lock(), &self.schema)
    }

    /// The current contents, and every change after them.
    pub fn subscribe(&self) -> Result<(Vec<RecordBatch>, broadcast::Receiver<RecordBatch>)> {
        let state = self.state.lock();
        Ok((snapshot(&state, &self.schema)?, self.changes.subscribe()))
    }

    /// The current contents and every change after them, for a subscriber
    /// the job waits for rather than dropping it when it falls behind.
    pub fn subscribe_blocking(&self) -> Result<Blocking> {
        let state = self.state.lock();
        let count = Arc::new(AtomicU64::new(self.applied.load(Ordering::Acquire)));
        self.blockers.lock().push(Arc::downgrade(&count));
        Ok(Blocking {
            contents: snapshot(&state, &self.schema)?,
            changes: self.changes.subscribe(),
            taken: BlockingTaken {
                count,
                moved: self.blocker_moved.clone(),
            },
        })
    }

    /// Wait while a blocking subscriber is [`BLOCKING_BOUND`] batches
    /// behind what was applied.
    async fn blockers_ready(&self) {
        loop {
            // Registered before looking, so a move in between is not missed.
            let moved = self.blocker_moved.notified();
            let applied = self.applied.load(Ordering::Acquire);
            let behind = {
                let mut blockers = self.blockers.lock();
                blockers.retain(|b| b.strong_count() > 0);
                blockers
                    .iter()
                    .filter_map(Weak::upgrade)
                    .any(|b| b.load(Ordering::Acquire).saturating_add(BLOCKING_BOUND) <= applied)
            };
            if !behind {
                return;
            }
            moved.await;
        }
    }

    /// The current contents and every change after them (batches and
    /// watermarks), for a job that reads this view as its input: like
    /// [`Self::subscribe`], and counted, so that [`Self::catch_up`] can
    /// wait for the follower.
    pub fn follow(&self) -> Result<Following> {
        let state = self.state.lock();
        let contents = snapshot(&state, &self.schema)?;
        let append = matches!(*state, ViewState::Append { .. });
        Ok(self.feed.follow(contents, append))
    }

    /// Wait until every follower has taken every change sent so far
    /// (gives up after `timeout`, returning false). A `FLUSH` calls it
    /// before flushing the views that read this one, so their barrier
    /// follows those changes, as `OwnedTable::catch_up` does for tables.
    pub async fn catch_up(&self, timeout: std::time::Duration) -> bool {
        self.feed.catch_up(timeout).await
    }
}

fn snapshot(state: &ViewState, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    match state {
        ViewState::Append { batches, .. } => Ok(batches.clone()),
        ViewState::Multiset {
            converter, counts, ..
        } => {
            if counts.is_empty() {
                return Ok(Vec::new());
            }
            let parser = converter.parser();
            let mut rows = converter.empty_rows(counts.len(), 64 * counts.len());
            for (bytes, count) in counts {
                for _ in 0..*count {
                    rows.push(parser.parse(bytes));
                }
            }
            let columns = converter.convert_rows(&rows)?;
            Ok(vec![RecordBatch::try_new(schema.clone(), columns)?])
        }
    }
}

impl Sink for MaterializedView {
    fn ready(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(self.blockers_ready())
    }

    fn apply(&self, batch: RecordBatch) -> Result<()> {
        let tracking = self.tracking.load(std::sync::atomic::Ordering::Relaxed);
        let mut state = self.state.lock();
        let append = matches!(*state, ViewState::Append { .. });
        match &mut *state {
            ViewState::Append { batches, .. } => batches.push(batch.clone()),
            ViewState::Multiset {
                converter,
                counts,
                dirty,
                ..
            } => {
                let n = self.schema.fields().len();
                let ops = batch.column(n).as_primitive::<Int8Type>();
                let rows = converter.convert_columns(&batch.columns()[..n])?;
                for i in 0..batch.num_rows() {
                    let key = rows.row(i);
                    let delta = i64::from(ops.value(i));
                    if tracking && !dirty.contains(key.as_ref()) {
                        dirty.insert(key.as_ref().into());
                    }
                    match counts.get_mut(key.as_ref()) {
                        Some(count) => {
                            *count += delta;
                            if *count <= 0 {
                                counts.remove(key.as_ref());
                            }
                        }
                        None if delta > 0 => {
                            counts.insert(key.as_ref().into(), delta);
                        }
                        None => {}
                    }
                }
            }
        }
        // Counted and sent under the state lock: a follower's contents and
        // its first change meet exactly.
        self.applied.fetch_add(1, Ordering::AcqRel);
        self.feed.rows(&batch, append)?;
        // No subscriber is fine; a slow one notices it lagged.
        let _ = self.changes.send(batch);
        Ok(())
    }

    fn watermark(&self, watermark: i64) {
        // Under the state lock, as batches are sent: followers starting
        // now get it with the contents it covers.
        let _state = self.state.lock();
        self.feed.watermark(watermark);
    }

    fn enable_checkpoints(&self) {
        self.tracking
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn snapshot(&self, epoch: u64) -> Result<Vec<(String, StateWrite)>> {
        if !self.tracking.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        let mut state = self.state.lock();
        let write = match &mut *state {
            ViewState::Append { batches, chunks } => append_snapshot(batches, chunks, epoch)?,
            ViewState::Multiset {
                converter,
                counts,
                dirty,
                base_rows,
                delta_rows,
            } => {
                let full = *base_rows == 0 || *delta_rows + dirty.len() > *base_rows;
                let keys: Vec<(&[u8], i64)> = if full {
                    counts.iter().map(|(k, c)| (k.as_ref(), *c)).collect()
                } else {
                    dirty
                        .iter()
                        .map(|k| (k.as_ref(), counts.get(k).copied().unwrap_or(0)))
                        .collect()
                };
                let batch = counts_batch(converter, &self.schema, &keys)?;
                let rows = keys.len();
                drop(keys);
                dirty.clear();
                if full {
                    *base_rows = rows.max(1);
                    *delta_rows = 0;
                } else {
                    *delta_rows += rows;
                }
                let mut write = StateWrite {
                    reset: full,
                    ..Default::default()
                };
                if full || rows > 0 {
                    write
                        .put
                        .push((format!("{}{epoch}", if full { "b" } else { "d" }), batch));
                }
                write
            }
        };
        let mut parts = vec![(VIEW_STATE.to_string(), write)];
        parts.extend(self.feed.snapshot(epoch)?);
        Ok(parts)
    }

    fn restore(
        &self,
        state: &BTreeMap<String, Vec<(String, RecordBatch)>>,
        _pending: &BTreeMap<String, Vec<String>>,
    ) -> Result<()> {
        let Some(chunks) = state.get(VIEW_STATE) else {
            return Ok(());
        };
        let mut view = self.state.lock();
        let n = self.schema.fields().len();
        match &mut *view {
            ViewState::Append {
                batches,
                chunks: kept,
            } => {
                for (id, batch) in chunks {
                    let start = batches.len();
                    if batch.num_rows() > 0 {
                        batches.push(RecordBatch::try_new(
                            self.schema.clone(),
                            batch.columns()[..n].to_vec(),
                        )?);
                    }
                    kept.push((id.clone(), start..batches.len(), batch.num_rows()));
                }
            }
            ViewState::Multiset {
                converter,
                counts,
                base_rows,
                ..
            } => {
                for (_, batch) in chunks {
                    let rows = converter.convert_columns(&batch.columns()[..n])?;
                    let values = batch.column(n).as_primitive::<Int64Type>();
                    for i in 0..batch.num_rows() {
                        let count = values.value(i);
                        if count > 0 {
                            counts.insert(rows.row(i).as_ref().into(), count);
                        } else {
                            counts.remove(rows.row(i).as_ref());
                        }
                    }
                }
                *base_rows = counts.len().max(1);
            }
        }
        let rows = match &*view {
            ViewState::Append { batches, .. } => batches.iter().map(|b| b.num_rows() as u64).sum(),
            ViewState::Multiset { .. } => 0,
        };
        self.feed
            .restore(state.get(VIEW_WATERMARKS).map_or(&[], Vec::as_slice), rows)
    }
}

/// The appended batches since the last snapshot as a new chunk; then, while
/// the newest chunk is at least half the size of the one before, the two
/// merge (each row is rewritten O(log n) times over the view's life).
fn append_snapshot(
    batches: &[RecordBatch],
    chunks: &mut Vec<(String, std::ops::Range<usize>, usize)>,
    epoch: u64,
) -> Result<StateWrite> {
    let covered = chunks.last().map_or(0, |(_, r, _)| r.end);
    if covered == batches.len() {
        return Ok(StateWrite::default());
    }
    let rows = |range: &std::ops::Range<usize>| -> usize {
        batches[range.clone()].iter().map(|b| b.num_rows()).sum()
    };
    let mut write = StateWrite::default();
    let mut range = covered..batches.len();
    let mut size = rows(&range);
    let mut merged = 0;
    while let Some((id, previous, previous_rows)) = chunks.last() {
        if size * 2 < *previous_rows {
            break;
        }
        write.remove.push(id.clone());
        range = previous.start..range.end;
        size += previous_rows;
        merged += 1;
        chunks.pop();
    }
    let id = format!("a{epoch}-{merged}");
    let schema = batches[range.start].schema();
    let batch = datafusion::arrow::compute::concat_batches(&schema, &batches[range.clone()])?;
    chunks.push((id.clone(), range, size));
    write.put.push((id, batch));
    Ok(write)
}

/// Rows (as row-format keys) with their counts, as a state chunk.
fn counts_batch(
    converter: &RowConverter,
    schema: &SchemaRef,
    keys: &[(&[u8], i64)],
) -> Result<RecordBatch> {
    let parser = converter.parser();
    let mut rows = converter.empty_rows(keys.len(), 64 * keys.len());
    for (bytes, _) in keys {
        rows.push(parser.parse(bytes));
    }
    let mut columns: Vec<ArrayRef> = converter.convert_rows(&rows)?;
    columns.push(Arc::new(Int64Array::from(
        keys.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
    )));
    let mut fields: Vec<Arc<Field>> = schema
        .fields()
        .iter()
        .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
        .collect();
    fields.push(Arc::new(Field::new(COUNT_COLUMN, DataType::Int64, false)));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// A view's job's sink: the view itself, then the sinks that write it out
/// (`CREATE SINK ... FROM view`), each fed every batch the view applies.
///
/// A sink attached while the job runs first gets the view's contents, taken
/// under the same lock that applies batches, so it misses and repeats
/// nothing. Each sink's part of a checkpoint is named `sink:<name>`.
pub struct ViewSink {
    view: Arc<MaterializedView>,
    sinks: Mutex<Vec<(String, Arc<dyn Sink>)>>,
}

/// The checkpoint part of sink `name`.
pub fn sink_part(name: &str) -> String {
    format!("sink:{name}")
}

impl ViewSink {
    /// The job sink of `view`, with no sink attached yet.
    pub fn new(view: Arc<MaterializedView>) -> Arc<Self> {
        Arc::new(Self {
            view,
            sinks: Mutex::new(Vec::new()),
        })
    }

    /// The view.
    pub fn view(&self) -> &Arc<MaterializedView> {
        &self.view
    }

    /// Add sink `name`; `with_contents`: give it the view's rows so far
    /// first (a new sink, or one a checkpoint does not know yet).
    pub fn attach(&self, name: &str, sink: Arc<dyn Sink>, with_contents: bool) -> Result<()> {
        let mut sinks = self.sinks.lock();
        if with_contents {
            let contents = self.view.snapshot()?;
            let changelog = self.view.is_changelog();
            for batch in contents {
                sink.apply(if changelog {
                    crate::operators::aggregate::with_op(&batch, 1)?
                } else {
                    batch
                })?;
            }
        }
        sinks.push((name.to_string(), sink));
        Ok(())
    }

    /// Remove sink `name`.
    pub fn detach(&self, name: &str) {
        self.sinks.lock().retain(|(n, _)| n != name);
    }
}

impl Sink for ViewSink {
    fn ready(&self) -> futures::future::BoxFuture<'_, ()> {
        self.view.ready()
    }

    fn watermark(&self, watermark: i64) {
        self.view.watermark(watermark);
    }

    fn apply(&self, batch: RecordBatch) -> Result<()> {
        let sinks = self.sinks.lock();
        self.view.apply(batch.clone())?;
        for (_, sink) in sinks.iter() {
            sink.apply(batch.clone())?;
        }
        Ok(())
    }

    fn writes_out(&self) -> bool {
        self.sinks.lock().iter().any(|(_, s)| s.writes_out())
    }

    fn enable_checkpoints(&self) {
        self.view.enable_checkpoints();
        for (_, sink) in self.sinks.lock().iter() {
            sink.enable_checkpoints();
        }
    }

    fn snapshot(&self, epoch: u64) -> Result<Vec<(String, StateWrite)>> {
        let sinks = self.sinks.lock();
        let mut parts = Sink::snapshot(self.view.as_ref(), epoch)?;
        for (name, sink) in sinks.iter() {
            let mut write = StateWrite::default();
            for (_, part) in sink.snapshot(epoch)? {
                write.put.extend(part.put);
                write.pending.extend(part.pending);
            }
            parts.push((sink_part(name), write));
        }
        Ok(parts)
    }

    fn restore(
        &self,
        state: &BTreeMap<String, Vec<(String, RecordBatch)>>,
        pending: &BTreeMap<String, Vec<String>>,
    ) -> Result<()> {
        self.view.restore(state, pending)?;
        let contents = self.view.snapshot()?;
        for (name, sink) in self.sinks.lock().iter() {
            let part = sink_part(name);
            let state: BTreeMap<String, Vec<(String, RecordBatch)>> = state
                .get(&part)
                .map(|v| (part.clone(), v.clone()))
                .into_iter()
                .collect();
            let pending: BTreeMap<String, Vec<String>> = pending
                .get(&part)
                .map(|v| (part.clone(), v.clone()))
                .into_iter()
                .collect();
            sink.restore(&state, &pending)?;
            // A sink the checkpoint does not know (created after it) starts
            // with the view's contents, as it did when it was created.
            if state.is_empty() && pending.is_empty() {
                for batch in &contents {
                    sink.apply(if self.view.is_changelog() {
                        crate::operators::aggregate::with_op(batch, 1)?
                    } else {
                        batch.clone()
                    })?;
                }
            }
        }
        Ok(())
    }

    fn commit(&self, pending: &BTreeMap<String, Vec<String>>) -> Result<()> {
        for (name, sink) in self.sinks.lock().iter() {
            let part = sink_part(name);
            if let Some(files) = pending.get(&part) {
                sink.commit(&BTreeMap::from([(part, files.clone())]))?;
            }
        }
        Ok(())
    }
}

/// A view as a DataFusion table: scans read a snapshot, or fail once the
/// view's job failed.
#[derive(Debug)]
pub struct ViewTable {
    view: Arc<MaterializedView>,
    /// The view's name and its job's progress.
    job: Option<(String, tokio::sync::watch::Receiver<crate::job::Progress>)>,
}

impl ViewTable {
    /// The table over `view`.
    pub fn new(view: Arc<MaterializedView>) -> Self {
        Self { view, job: None }
    }

    /// The table over `view`, named `name`, whose job reports `progress`: a
    /// scan after the job failed is an error naming the view and the
    /// reason, not the rows the job got to before it stopped.
    pub fn of_job(
        view: Arc<MaterializedView>,
        name: &str,
        progress: tokio::sync::watch::Receiver<crate::job::Progress>,
    ) -> Self {
        Self {
            view,
            job: Some((name.to_string(), progress)),
        }
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // A run stopped because its source gained partitions is not a
        // failure: its contents stand while the next run starts.
        if let Some((name, progress)) = &self.job
            && let Some(failure) = progress.borrow().failed.clone()
            && !failure.is_repartition()
        {
            return Err(datafusion::error::DataFusionError::External(Box::new(
                crate::RuntimeError::JobFailed {
                    view: name.clone(),
                    failure,
                },
            )));
        }
        let batches = self.view.snapshot()?;
        MemTable::try_new(self.view.schema(), vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}
