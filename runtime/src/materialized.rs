//! Materialized views: the sink of a job, queryable at any time and
//! subscribable.
//!
//! An append-only view keeps its batches. An updating view keeps a multiset
//! of rows (row bytes -> count): an insert adds one, a delete removes one, so
//! applying a changelog in order leaves exactly the current result.
//! Subscribers get every applied batch through a broadcast channel, after a
//! snapshot taken under the same lock, so they miss and repeat nothing.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int8Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{HashMap, Result};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::job::Sink;

/// How many batches a subscriber may fall behind before it is dropped.
const SUBSCRIBER_BUFFER: usize = 4096;

/// A materialized view's current contents.
pub struct MaterializedView {
    schema: SchemaRef,
    changelog: bool,
    state: Mutex<ViewState>,
    changes: broadcast::Sender<RecordBatch>,
}

enum ViewState {
    Append(Vec<RecordBatch>),
    Multiset {
        converter: RowConverter,
        counts: HashMap<Box<[u8]>, i64>,
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
    /// An empty view of `schema`; `changelog` when the job retracts rows.
    pub fn new(schema: SchemaRef, changelog: bool) -> Result<Arc<Self>> {
        let state = if changelog {
            let fields = schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            ViewState::Multiset {
                converter: RowConverter::new(fields)?,
                counts: HashMap::default(),
            }
        } else {
            ViewState::Append(Vec::new())
        };
        let (changes, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        Ok(Arc::new(Self {
            schema,
            changelog,
            state: Mutex::new(state),
            changes,
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

    /// The current contents.
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        snapshot(&self.state.lock(), &self.schema)
    }

    /// The current contents, and every change after them.
    pub fn subscribe(&self) -> Result<(Vec<RecordBatch>, broadcast::Receiver<RecordBatch>)> {
        let state = self.state.lock();
        Ok((snapshot(&state, &self.schema)?, self.changes.subscribe()))
    }
}

fn snapshot(state: &ViewState, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    match state {
        ViewState::Append(batches) => Ok(batches.clone()),
        ViewState::Multiset { converter, counts } => {
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
    fn apply(&self, batch: RecordBatch) -> Result<()> {
        let mut state = self.state.lock();
        match &mut *state {
            ViewState::Append(batches) => batches.push(batch.clone()),
            ViewState::Multiset { converter, counts } => {
                let n = self.schema.fields().len();
                let ops = batch.column(n).as_primitive::<Int8Type>();
                let rows = converter.convert_columns(&batch.columns()[..n])?;
                for i in 0..batch.num_rows() {
                    let key = rows.row(i);
                    let delta = i64::from(ops.value(i));
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
        // No subscriber is fine; a slow one notices it lagged.
        let _ = self.changes.send(batch);
        Ok(())
    }
}

/// A view as a DataFusion table: scans read a snapshot.
#[derive(Debug)]
pub struct ViewTable {
    view: Arc<MaterializedView>,
}

impl ViewTable {
    /// The table over `view`.
    pub fn new(view: Arc<MaterializedView>) -> Self {
        Self { view }
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
        let batches = self.view.snapshot()?;
        MemTable::try_new(self.view.schema(), vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}
