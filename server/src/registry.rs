//! The registry of live objects: what every session shares and every
//! statement asks for. It owns the DataFusion context (the live catalog that
//! queries plan against), the durable catalog and its file, the streams and
//! materialized views that are running (each view with its job's current
//! run), the job manager, the tables Weir owns, the checkpoint store and
//! the worker threads.
//!
//! Statements ask the registry through its methods rather than reach into
//! its fields, so that each rule about the shared state (the durable catalog
//! changes before the live one; DDL runs one statement at a time; a view is
//! registered as a table and as a job together) is kept in one place. The
//! registry knows nothing of statements: dependencies point one way, from
//! `dispatch` to `statements` to here.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Weak};

use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use parking_lot::Mutex;
use weir_connectors::table_store::{OwnedTable, TableStore};
use weir_planner::catalog::{Catalog, CatalogEntry, TableDef};
use weir_planner::statement::ObjectKind;
use weir_runtime::Executor;
use weir_runtime::job::{self, JobHandle};
use weir_runtime::materialized::{MaterializedView, ViewSink};
use weir_runtime::metrics::RuntimeMetrics;
use weir_runtime::plan::StreamPlan;

use crate::catalog_store::CatalogStore;
use crate::checkpoints::Checkpoints;
use crate::error::{Result, ServerError};
use crate::jobs::JobManager;

/// A stream as the registry keeps it.
pub struct LiveStream {
    /// Its connector.
    pub connector: weir_connectors::OpenedStream,
    /// The event-time column and watermark delay.
    pub event_time: Option<(String, i64)>,
}

/// A materialized view as the registry keeps it: its job's current run (a
/// restart replaces it whole, contents included, from the checkpoint).
pub struct LiveView {
    /// Its contents.
    pub view: Arc<MaterializedView>,
    /// Where its job's rows go: the view, and the `CREATE SINK`s that write
    /// it out (attached and detached as they are created and dropped).
    pub output: Arc<ViewSink>,
    /// Its job.
    pub job: JobHandle,
    /// Its stream plan, for EXPLAIN and SHOW.
    pub explain: String,
    /// The tables and streams it reads.
    pub inputs: Vec<String>,
    /// Its source partitions (for a bounded job's progress).
    pub partitions: usize,
}

/// What a statement that writes to `name` would reach.
pub enum WriteTarget {
    /// A table Weir owns (`None`: its rows were not recovered).
    Owned(Option<OwnedTable>),
    /// An object of another kind, which takes no writes.
    Other(ObjectKind),
    /// Nothing of that name in the catalog.
    Missing,
}

/// The live objects of a running server (see the module docs).
pub struct Registry {
    ctx: SessionContext,
    catalog: Mutex<Catalog>,
    /// DDL runs one statement at a time, so that the durable catalog and the
    /// live one change together. A tokio mutex: it is held across awaits.
    ddl_lock: tokio::sync::Mutex<()>,
    store: CatalogStore,
    executor: Executor,
    streams: Mutex<HashMap<String, Arc<LiveStream>>>,
    views: Mutex<HashMap<String, Arc<LiveView>>>,
    parallelism: usize,
    runtime_metrics: RuntimeMetrics,
    /// Where jobs checkpoint (`None`: checkpoints are off).
    checkpoints: Option<Checkpoints>,
    /// The tables Weir owns and their log.
    tables: TableStore,
    /// Every job: status, settings, events, supervisors.
    jobs: JobManager,
    /// This registry, for the tasks that outlive a statement (a job's
    /// supervisor restarts its view through it).
    me: Weak<Registry>,
}

/// What the registry is built from, on start.
pub struct Parts {
    /// The DataFusion context, with Weir's catalogs and functions set up.
    pub ctx: SessionContext,
    /// The durable catalog file.
    pub store: CatalogStore,
    /// The worker threads.
    pub executor: Executor,
    /// How many partitions a job's stages run in.
    pub parallelism: usize,
    /// The runtime's metrics (jobs, sources, checkpoints).
    pub runtime_metrics: RuntimeMetrics,
    /// The checkpoint store, if checkpoints are on.
    pub checkpoints: Option<Checkpoints>,
    /// The tables Weir owns, their log replayed.
    pub tables: TableStore,
    /// The job manager.
    pub jobs: JobManager,
}

impl Registry {
    /// An empty registry over `parts`: the catalog is filled in by the
    /// restore that follows.
    pub fn new(parts: Parts) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            ctx: parts.ctx,
            catalog: Mutex::new(Catalog::default()),
            ddl_lock: tokio::sync::Mutex::new(()),
            store: parts.store,
            executor: parts.executor,
            streams: Mutex::new(HashMap::new()),
            views: Mutex::new(HashMap::new()),
            parallelism: parts.parallelism.max(1),
            runtime_metrics: parts.runtime_metrics,
            checkpoints: parts.checkpoints,
            tables: parts.tables,
            jobs: parts.jobs,
            me: me.clone(),
        })
    }

    /// This registry, shared, for a task that outlives the statement.
    pub fn shared(&self) -> Result<Arc<Registry>> {
        self.me.upgrade().ok_or(ServerError::ShuttingDown)
    }

    /// The job manager.
    pub fn jobs(&self) -> &JobManager {
        &self.jobs
    }

    // --- the worker threads ---

    /// The worker threads, for work that outlives a call (a COPY's parse
    /// tasks, a query's batches).
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Run `work` on a worker thread and wait for it; a panic in it fails
    /// the statement, not the server.
    pub async fn run<F, T>(&self, work: F) -> Result<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        Ok(self.executor.run(work).await?)
    }

    /// Run `work` on the calling task; a panic in it fails the statement,
    /// as in [`Registry::run`].
    pub async fn run_here<F, T>(&self, work: F) -> Result<T>
    where
        F: Future<Output = T>,
    {
        Ok(self.executor.run_here(work).await?)
    }

    /// How many partitions a job's stages run in.
    pub fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// Stop the job supervisors, then the workers.
    pub fn shutdown(&self) {
        self.jobs.shutdown();
        self.executor.clone().shutdown();
    }

    // --- planning against the live catalog ---

    /// A snapshot of the DataFusion session, to plan or open a connector with.
    pub fn state(&self) -> SessionState {
        self.ctx.state()
    }

    /// Plan a query on a worker thread.
    pub async fn plan_query(&self, statement: Statement, sql: &str) -> Result<LogicalPlan> {
        let state = self.ctx.state();
        let sql_text = sql.to_string();
        self.executor
            .run(async move {
                state
                    .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                        statement,
                    )))
                    .await
            })
            .await?
            .map_err(|e| ServerError::from_datafusion(e, Some(&sql_text)))
    }

    /// Plan and start a query on the workers; `params` fill `$n` placeholders.
    pub async fn run_query(
        &self,
        statement: Statement,
        sql: &str,
        params: Option<datafusion::common::ParamValues>,
    ) -> Result<SendableRecordBatchStream> {
        let state = self.ctx.state();
        let ctx = self.ctx.clone();
        let sql_text = sql.to_string();
        // With a memory pool of the statement's own limit (read here, in
        // the statement's task, not in the one spawned below).
        let runtime = crate::datafusion_context::query_runtime(state.runtime_env());
        // The statement's transaction, for the tables it reads and writes
        // (they are planned on the worker below).
        let txn = weir_connectors::table_store::txn::current();
        let stream = self
            .executor
            .run(weir_connectors::table_store::txn::scope(txn, async move {
                let mut plan = state
                    .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                        statement,
                    )))
                    .await?;
                if let Some(params) = params {
                    plan = plan.replace_params_with_values(&params)?;
                }
                let df = ctx.execute_logical_plan(plan).await?;
                let task_ctx = Arc::new(df.task_ctx().with_runtime(runtime));
                let plan = df.create_physical_plan().await?;
                datafusion::physical_plan::execute_stream(plan, task_ctx)
            }))
            .await?
            .map_err(|e| ServerError::from_datafusion(e, Some(&sql_text)))?;
        Ok(self.executor.execute(stream))
    }

    /// Run a planned statement that returns nothing (`CREATE VIEW`'s plan).
    pub async fn run_plan(&self, plan: LogicalPlan) -> Result<()> {
        let ctx = self.ctx.clone();
        self.executor
            .run(async move { ctx.execute_logical_plan(plan).await.map(|_| ()) })
            .await?
            .map_err(|e| ServerError::from_datafusion(e, None))
    }

    /// DataFusion's optimized form of `plan`.
    pub fn optimize(&self, plan: &LogicalPlan) -> Result<LogicalPlan> {
        self.ctx
            .state()
            .optimize(plan)
            .map_err(|e| ServerError::from_datafusion(e, None))
    }

    /// Make `table` queryable as `name`.
    pub fn register_table(&self, name: &str, table: Arc<dyn TableProvider>) -> Result<()> {
        self.ctx
            .register_table(TableReference::bare(name), table)
            .map(|_| ())
            .map_err(|e| ServerError::from_datafusion(e, None))
    }

    /// Stop `name` being queryable.
    pub fn deregister_table(&self, name: &str) -> Result<()> {
        self.ctx
            .deregister_table(TableReference::bare(name))
            .map(|_| ())
            .map_err(|e| ServerError::from_datafusion(e, None))
    }

    // --- the catalog ---

    /// Hold this while a DDL statement runs: DDL runs one statement at a
    /// time, so that the durable and the live catalog change together.
    pub async fn ddl_guard(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ddl_lock.lock().await
    }

    /// Is `name` taken, in the catalog or by a table DataFusion knows
    /// (`pg_catalog`'s, say)?
    pub fn name_taken(&self, name: &str) -> bool {
        self.catalog.lock().get(name).is_some()
            || self
                .ctx
                .table_exist(TableReference::bare(name))
                .unwrap_or(false)
    }

    /// What kind of object `name` is in the catalog, if it is there.
    pub fn kind_of(&self, name: &str) -> Option<ObjectKind> {
        self.catalog.lock().get(name).map(|e| e.kind())
    }

    /// A copy of the catalog, for statements that read several entries.
    pub fn catalog(&self) -> Catalog {
        self.catalog.lock().clone()
    }

    /// The catalog's entries of `kind`, in creation order.
    pub fn entries_of(&self, kind: ObjectKind) -> Vec<CatalogEntry> {
        self.catalog.lock().of_kind(kind).cloned().collect()
    }

    /// Apply `change` to a copy of the catalog, write it durably, then keep
    /// it. The caller holds the DDL guard.
    pub fn persist(&self, change: impl FnOnce(&mut Catalog) -> Result<()>) -> Result<()> {
        let mut next = self.catalog.lock().clone();
        change(&mut next)?;
        self.store.save(&next)?;
        *self.catalog.lock() = next;
        Ok(())
    }

    /// Set the catalog without writing it (on start: it was just read).
    pub fn set_catalog(&self, catalog: Catalog) {
        *self.catalog.lock() = catalog;
    }

    /// What a write to `name` would reach. On the path of every INSERT:
    /// it looks the name up without copying the entry.
    pub fn write_target(&self, name: &str) -> WriteTarget {
        let id = match self.catalog.lock().get(name) {
            Some(CatalogEntry::Table(TableDef {
                owned: Some(owned), ..
            })) => owned.id,
            Some(entry) => return WriteTarget::Other(entry.kind()),
            None => return WriteTarget::Missing,
        };
        WriteTarget::Owned(self.tables.get(id))
    }

    // --- tables Weir owns ---

    /// The tables Weir owns: their rows, log and readers.
    pub fn tables(&self) -> &TableStore {
        &self.tables
    }

    // --- streams ---

    /// Register stream `name`: queryable as `table`, readable by views.
    pub fn add_stream(
        &self,
        name: &str,
        table: Arc<dyn TableProvider>,
        live: LiveStream,
    ) -> Result<()> {
        self.register_table(name, table)?;
        self.streams.lock().insert(name.to_string(), Arc::new(live));
        Ok(())
    }

    /// The stream called `name`, if there is one.
    pub fn stream(&self, name: &str) -> Option<Arc<LiveStream>> {
        self.streams.lock().get(name).cloned()
    }

    /// Forget a dropped stream (its table is deregistered by the caller).
    pub fn remove_stream(&self, name: &str) {
        std::mem::drop(self.streams.lock().remove(name));
    }

    /// The runtime's metrics, which streams report into.
    pub fn runtime_metrics(&self) -> &weir_runtime::metrics::RuntimeMetrics {
        &self.runtime_metrics
    }

    // --- materialized views and their jobs ---

    /// Start the job of view `name`: `query` is its definition (checkpoints
    /// record it), `restore` says whether it resumes from its latest
    /// checkpoint (on start, on a restart) or starts clean (a new view);
    /// `interval` is the job's own checkpoint interval, if it set one
    /// (`Some(None)`: off). Returns the job and the epoch it restored.
    pub async fn start_job(
        &self,
        name: &str,
        query: &str,
        plan: StreamPlan,
        output: Arc<ViewSink>,
        restore: bool,
        interval: Option<Option<std::time::Duration>>,
    ) -> Result<(JobHandle, Option<u64>)> {
        let store = self.checkpoints.as_ref().map(|c| match interval {
            Some(interval) => c.with_interval(interval),
            None => c.store().clone(),
        });
        let mut checkpointing = crate::checkpoints::for_job(
            store.as_ref(),
            &self.runtime_metrics,
            name,
            query,
            &plan,
            restore,
        )
        .await?;
        // The job's state_size_limit as it is now: a change restarts the
        // job (`ALTER JOB SET`), so each run takes the one it starts with.
        checkpointing.state_limit = self
            .jobs
            .get(name)
            .and_then(|job| job.settings().state_size_limit);
        let restored = checkpointing.restored.as_ref().map(|r| r.manifest.epoch);
        let handle = job::start(
            name,
            plan,
            output,
            &self.executor,
            &self.runtime_metrics,
            checkpointing,
        )
        .map_err(|e| ServerError::from_datafusion(e, None))?;
        Ok((handle, restored))
    }

    /// The checkpoint store as job runs use it (with the job's own
    /// `interval`, if it sets one); `None` when checkpoints are off. An
    /// upgrade (`statements::replace`) starts a job from another plan's
    /// checkpoint through it.
    pub fn checkpoint_store(
        &self,
        interval: Option<Option<std::time::Duration>>,
    ) -> Option<weir_runtime::checkpoint::CheckpointStore> {
        self.checkpoints.as_ref().map(|c| match interval {
            Some(interval) => c.with_interval(interval),
            None => c.store().clone(),
        })
    }

    /// Are checkpoints on?
    pub fn checkpoints_on(&self) -> bool {
        self.checkpoints.is_some()
    }

    /// The latest complete checkpoint of job `name`: (epoch, written at
    /// in ms since the Unix epoch).
    pub async fn latest_checkpoint(&self, name: &str) -> Option<(u64, u64)> {
        crate::checkpoints::latest(self.checkpoints.as_ref().map(|c| c.store()), name).await
    }

    /// Register view `name`: queryable as `table`, its job running.
    pub fn add_view(
        &self,
        name: &str,
        table: Arc<dyn TableProvider>,
        live: LiveView,
    ) -> Result<()> {
        self.register_table(name, table)?;
        self.views.lock().insert(name.to_string(), Arc::new(live));
        Ok(())
    }

    /// Replace the run of view `name` with a new one (a restart): the
    /// table is registered anew over the new run's contents, and the old
    /// run's job stops when its last user lets go of it.
    pub fn replace_view(
        &self,
        name: &str,
        table: Arc<dyn TableProvider>,
        live: LiveView,
    ) -> Result<()> {
        let _ = self.ctx.deregister_table(TableReference::bare(name));
        self.register_table(name, table)?;
        let old = self.views.lock().insert(name.to_string(), Arc::new(live));
        drop(old);
        Ok(())
    }

    /// The materialized view called `name`, or the error for a missing one.
    pub fn view(&self, name: &str) -> Result<Arc<LiveView>> {
        self.views
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| ServerError::UndefinedTable {
                kind: "relation",
                name: name.to_string(),
                position: None,
            })
    }

    /// Is `name` a running materialized view?
    pub fn is_view(&self, name: &str) -> bool {
        self.views.lock().contains_key(name)
    }

    /// Every running materialized view, sorted by name.
    pub fn views(&self) -> Vec<(String, Arc<LiveView>)> {
        let mut views: Vec<(String, Arc<LiveView>)> = self
            .views
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        views.sort_by(|a, b| a.0.cmp(&b.0));
        views
    }

    /// Forget a dropped view, which stops its job, and remove its
    /// checkpoints (its table is deregistered by the caller).
    pub async fn remove_view(&self, name: &str) {
        self.jobs.remove(name);
        std::mem::drop(self.views.lock().remove(name));
        crate::checkpoints::drop_job(self.checkpoints.as_ref().map(|c| c.store()), name).await;
    }
}
