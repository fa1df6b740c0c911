//! Catalog views computed whole when scanned, then served from memory: the
//! catalog is small (a row per object or column), so computing it on each
//! scan is cheap and always current. `information_schema`'s key and grant
//! views and `pg_catalog`'s derived tables say only how to compute their
//! rows; [`Computed`] makes each a DataFusion table.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

/// A catalog view whose rows are computed when it is scanned.
#[async_trait]
pub(crate) trait ComputedView: std::fmt::Debug + Send + Sync + 'static {
    /// Its columns.
    fn columns(&self) -> SchemaRef;

    /// Its rows now, in [`Self::columns`]'s schema.
    async fn compute(&self, state: &dyn Session) -> Result<RecordBatch>;
}

/// A [`ComputedView`] as a DataFusion table (a view, to `information_schema`).
#[derive(Debug)]
pub(crate) struct Computed<V>(pub(crate) V);

#[async_trait]
impl<V: ComputedView> TableProvider for Computed<V> {
    fn schema(&self) -> SchemaRef {
        self.0.columns()
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
        let batch = self.0.compute(state).await?;
        MemTable::try_new(self.0.columns(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
