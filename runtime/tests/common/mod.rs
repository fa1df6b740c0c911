//! What the runtime's job tests share: real queries planned by Weir's
//! planner over real sources (the `datagen` generator, CSV files), run by
//! `job::start` into a materialized view, with checkpoints in a real object
//! store (a local folder).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::object_store::ObjectStore;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path as ObjectPath;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use weir_connectors::OpenedStream;
use weir_connectors::options::ConnectorOptions;
use weir_planner::stream_plan::{StreamInput, plan_stream};
use weir_planner::windows::{Mode, rewrite_windows};
use weir_runtime::Executor;
use weir_runtime::checkpoint::{CheckpointConfig, CheckpointStore, Restored};
use weir_runtime::job::{self, Checkpointing, JobHandle};
use weir_runtime::materialized::{MaterializedView, ViewSink};
use weir_runtime::metrics::{JobLabels, RuntimeMetrics};
use weir_runtime::plan::{EventTime, StreamPlan};

/// An event-time column and its watermark delay (nanoseconds).
pub type TimeColumn = (&'static str, i64);

/// A stream to declare: its name, columns, connector options and event
/// time (column, watermark delay in nanoseconds).
pub struct StreamDecl {
    pub name: &'static str,
    pub columns: Vec<(&'static str, DataType)>,
    pub options: Vec<(String, String)>,
    pub event_time: Option<TimeColumn>,
}

/// `id` (sequence), `k` (random in 0..keys), `v` (random 0..999) and `ts`
/// (10 ms of event time per row) from `datagen`: `rows` of them (`None`:
/// forever) at `rate` rows per second.
pub fn datagen(
    name: &'static str,
    rows: Option<u64>,
    rate: Option<u64>,
    keys: u64,
    seed: u64,
) -> StreamDecl {
    let mut options = vec![
        ("connector", "datagen".to_string()),
        ("fields.k.kind", "random".into()),
        ("fields.k.min", "0".into()),
        ("fields.k.max", (keys - 1).to_string()),
        ("fields.v.kind", "random".into()),
        ("fields.v.min", "0".into()),
        ("fields.v.max", "999".into()),
        ("fields.ts.step_ms", "10".into()),
        ("seed", seed.to_string()),
    ];
    if let Some(rows) = rows {
        options.push(("rows", rows.to_string()));
    }
    if let Some(rate) = rate {
        options.push(("rate", rate.to_string()));
    }
    StreamDecl {
        name,
        columns: vec![
            ("id", DataType::Int64),
            ("k", DataType::Int64),
            ("v", DataType::Int64),
            ("ts", DataType::Timestamp(TimeUnit::Nanosecond, None)),
        ],
        options: options
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        event_time: Some(("ts", 0)),
    }
}

/// CSV files matching `glob` with the columns `k`, `v`.
pub fn csv_files(name: &'static str, glob: &str) -> StreamDecl {
    StreamDecl {
        name,
        columns: vec![("k", DataType::Int64), ("v", DataType::Int64)],
        options: vec![
            ("connector".into(), "file".into()),
            ("path".into(), glob.to_string()),
            ("format".into(), "csv".into()),
        ],
        event_time: None,
    }
}

/// Streams, a planner, workers and a checkpoint store in a temporary folder.
pub struct Env {
    pub ctx: SessionContext,
    /// Each stream, opened, and its event time.
    pub streams: Vec<(String, OpenedStream, Option<TimeColumn>)>,
    pub executor: Executor,
    pub metrics: RuntimeMetrics,
    pub store: CheckpointStore,
    pub object_store: Arc<dyn ObjectStore>,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// Declare `streams`; checkpoints (on request only: no interval) keep
    /// `retain` manifests.
    pub async fn new(streams: Vec<StreamDecl>, retain: usize) -> Env {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let checkpoints = dir.path().join("checkpoints");
        std::fs::create_dir_all(&checkpoints).expect("the checkpoint folder");
        let object_store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(&checkpoints).expect("a local object store"));
        Self::with_store(streams, object_store, ObjectPath::from(""), retain, dir).await
    }

    /// Declare `streams`, checkpointing into `object_store` under `root`.
    pub async fn with_store(
        streams: Vec<StreamDecl>,
        object_store: Arc<dyn ObjectStore>,
        root: ObjectPath,
        retain: usize,
        dir: tempfile::TempDir,
    ) -> Env {
        let ctx = SessionContext::new();
        weir_runtime::windows::register(&ctx);
        let mut opened_streams = Vec::new();
        for decl in streams {
            let schema: SchemaRef = Arc::new(Schema::new(
                decl.columns
                    .iter()
                    .map(|(n, t)| Field::new(*n, t.clone(), true))
                    .collect::<Vec<_>>(),
            ));
            let opened = weir_connectors::registry::open_stream(
                &ctx.state(),
                ConnectorOptions::new(decl.options.clone()),
                Some(schema),
            )
            .await
            .expect("open the stream");
            ctx.register_table(decl.name, opened.table())
                .expect("register the stream");
            opened_streams.push((decl.name.to_string(), opened, decl.event_time));
        }
        let store = CheckpointStore::new(
            object_store.clone(),
            root,
            CheckpointConfig {
                interval: None,
                retain,
            },
        );
        Env {
            ctx,
            streams: opened_streams,
            executor: Executor::new(2).expect("worker threads"),
            metrics: RuntimeMetrics::default(),
            store,
            object_store,
            dir,
        }
    }

    /// Plan `sql` as a materialized view would be (`eowc`: EMIT ON WINDOW
    /// CLOSE), with `parallelism` workers per stage, over new sources (as
    /// the server makes for each job: a scan's files are read once).
    pub async fn plan(&self, sql: &str, eowc: bool, parallelism: usize) -> StreamPlan {
        let mut inputs = HashMap::new();
        for (name, opened, time) in &self.streams {
            let source = opened
                .source(&self.ctx.state())
                .await
                .expect("the stream's source");
            let event_time = time.map(|(column, delay)| EventTime {
                column: source.schema().index_of(column).expect("the time column"),
                delay,
            });
            inputs.insert(
                name.clone(),
                StreamInput {
                    source,
                    event_time,
                    time_column: time.map(|(c, _)| c.to_string()),
                },
            );
        }
        let mut statements = DFParser::parse_sql(sql).expect("parse");
        let DFStatement::Statement(statement) = statements.pop_front().expect("one statement")
        else {
            panic!("not a query: {sql}")
        };
        let mut statement = *statement;
        let windows = rewrite_windows(&mut statement, Mode::Stream).expect("rewrite windows");
        let state = self.ctx.state();
        let logical = state
            .statement_to_plan(DFStatement::Statement(Box::new(statement)))
            .await
            .expect("plan");
        let optimized = state.optimize(&logical).expect("optimize");
        let uses = weir_planner::stream_plan::QueryUses {
            windows: &windows,
            lookups: &[],
            join_state_ttl: None,
        };
        plan_stream(&optimized, uses, eowc, parallelism, &inputs)
            .expect("stream plan")
            .0
    }

    /// Start job `name` running `plan` into a new view, checkpointing (or
    /// not) and starting from `restored`.
    pub fn start(
        &self,
        name: &str,
        plan: StreamPlan,
        checkpoints: bool,
        restored: Option<Restored>,
    ) -> (JobHandle, Arc<MaterializedView>) {
        let view =
            MaterializedView::new(plan.output_schema.clone(), plan.changelog, plan.event_time)
                .expect("a view");
        let manifest_plan = weir_runtime::checkpoint::ManifestPlan::of("test", &plan);
        let handle = job::start(
            name,
            plan,
            ViewSink::new(view.clone()),
            &self.executor,
            &self.metrics,
            Checkpointing {
                store: checkpoints.then(|| self.store.job(name)),
                restored,
                plan: manifest_plan,
                metrics: Default::default(),
                state_limit: None,
            },
        )
        .expect("start the job");
        (handle, view)
    }

    /// Rows job `name`'s sources read so far.
    pub fn rows_in(&self, name: &str) -> u64 {
        self.metrics
            .rows_in
            .get_or_create(&JobLabels {
                job: name.to_string(),
            })
            .get()
    }

    /// Wait (up to a generous deadline) until job `name` read `rows` rows.
    pub async fn wait_rows_in(&self, name: &str, rows: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while self.rows_in(name) < rows {
            assert!(
                std::time::Instant::now() < deadline,
                "job {name} read only {} rows of {rows}",
                self.rows_in(name)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A view's rows as sorted lines of text: equal contents, equal lines.
pub fn rows(view: &MaterializedView) -> Vec<String> {
    let batches = view.snapshot().expect("the view's contents");
    lines(&batches)
}

/// Batches' rows as sorted lines of text.
pub fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("a formatter"))
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out.sort();
    out
}

/// Run `handle`'s job to its end (generous deadline).
pub async fn finish(handle: &JobHandle) {
    tokio::time::timeout(Duration::from_secs(300), handle.finished())
        .await
        .expect("the job ends within 5 minutes")
        .expect("the job ends without failing");
}
