//! A table Weir owns as DataFusion sees it: its `TableProvider` (scan,
//! INSERT, UPDATE, DELETE) and the `DataSink` an INSERT plan delivers rows to.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::not_impl_err;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;

use super::table::OwnedTable;
use super::txn::{SharedTransaction, Writer};

/// Scans hand out batches of at most this many rows.
const SCAN_BATCH_ROWS: usize = 64 * 1024;

fn count_plan(rows: u64) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(UInt64Array::from(vec![rows]))],
    )?;
    Ok(MemorySourceConfig::try_new_exec(
        &[vec![batch]],
        schema,
        None,
    )?)
}

#[async_trait]
impl TableProvider for OwnedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.sink_schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        // Big chunks (a COPY) are cut so every partition gets work. Within a
        // transaction, its own changes are seen too.
        let own = super::txn::current().map(|t| t.key());
        let batches: Vec<RecordBatch> = self
            .inner
            .snapshot(own)?
            .into_iter()
            .flat_map(|b| {
                (0..b.num_rows())
                    .step_by(SCAN_BATCH_ROWS)
                    .map(move |at| b.slice(at, SCAN_BATCH_ROWS.min(b.num_rows() - at)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let n = state
            .config()
            .target_partitions()
            .max(1)
            .min(batches.len().max(1));
        let mut partitions = vec![Vec::new(); n];
        for (i, batch) in batches.into_iter().enumerate() {
            partitions[i % n].push(batch);
        }
        Ok(MemorySourceConfig::try_new_exec(
            &partitions,
            self.schema(),
            projection.cloned(),
        )?)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return not_impl_err!("{insert_op} is not supported on tables Weir owns");
        }
        Ok(Arc::new(DataSinkExec::new(
            input,
            Arc::new(TableInsert {
                table: self.clone(),
                txn: super::txn::current(),
            }),
            None,
        )))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let txn = super::txn::current();
        let mut writer = Writer::of(txn.as_ref()).await?;
        let rows = self.inner.delete(writer.txn(), state, filters).await?;
        writer.done().await?;
        count_plan(rows)
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let txn = super::txn::current();
        let mut writer = Writer::of(txn.as_ref()).await?;
        let rows = self
            .inner
            .update(writer.txn(), state, assignments, filters)
            .await?;
        writer.done().await?;
        count_plan(rows)
    }
}

/// Where DataFusion's INSERT plan delivers rows: collected, then written
/// as one statement, in the transaction the statement was planned in (or
/// one of its own).
struct TableInsert {
    table: OwnedTable,
    txn: Option<SharedTransaction>,
}

impl fmt::Debug for TableInsert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableInsert")
            .field("table", &self.table)
            .finish()
    }
}

impl DisplayAs for TableInsert {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeirTableSink: {}", self.table.name())
    }
}

#[async_trait]
impl DataSink for TableInsert {
    fn schema(&self) -> &SchemaRef {
        &self.table.inner.sink_schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> datafusion::common::Result<u64> {
        let mut batches = Vec::new();
        while let Some(batch) = data.next().await {
            batches.push(batch?);
        }
        Ok(self.table.insert_in(self.txn.as_ref(), batches).await?)
    }
}
