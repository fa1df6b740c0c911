//! Lowering and rendering, from SQL through DataFusion's optimized plan to
//! typed nodes, their EXPLAIN and the runtime's plan. The exact EXPLAIN text
//! is pinned by `sql-tests/streaming/explain.slt`; these tests pin the
//! shapes: which node sits where, and which runtime stage it lands in.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::empty::EmptyTable;
use datafusion::prelude::SessionContext;
use weir_runtime::operators::join::JoinSpec;
use weir_runtime::plan::{
    AggregateSpec, EventTime, PlanInput, StageOperator, StreamPlan, TopNSpec,
};
use weir_runtime::source::{Source, SourcePosition, SourceReader};

use super::explain::explain;
use super::nodes::{StreamAggregate, StreamExchange, StreamMaterialize, StreamNode};
use super::runtime_plan::runtime_plan;
use super::{StreamInput, lower_stream};
use crate::error::PlanError;

/// The plan's first aggregate stage, if any.
fn aggregate_of(plan: &StreamPlan) -> Option<&AggregateSpec> {
    plan.stages.iter().find_map(|s| match &s.operator {
        StageOperator::Aggregate(spec) => Some(spec.as_ref()),
        _ => None,
    })
}

/// The plan's first join stage, if any.
fn join_of(plan: &StreamPlan) -> Option<&JoinSpec> {
    plan.stages.iter().find_map(|s| match &s.operator {
        StageOperator::Join(spec) => Some(spec.as_ref()),
        _ => None,
    })
}

/// The plan's first TopN stage, if any.
fn top_n_of(plan: &StreamPlan) -> Option<&TopNSpec> {
    plan.stages.iter().find_map(|s| match &s.operator {
        StageOperator::TopN(spec) => Some(spec.as_ref()),
        _ => None,
    })
}

/// A stream of bids that a planner test never reads: the planner needs only
/// its schema, partitions and description.
#[derive(Debug)]
pub(super) struct Bids {
    pub(super) schema: SchemaRef,
}

impl Source for Bids {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn partitions(&self) -> usize {
        1
    }
    fn bounded(&self) -> bool {
        true
    }
    fn open(
        &self,
        _partition: usize,
        _from: Option<SourcePosition>,
    ) -> datafusion::common::Result<Box<dyn SourceReader>> {
        Err(datafusion::common::DataFusionError::Internal(
            "a planner test does not run its plan".into(),
        ))
    }
    fn describe(&self) -> String {
        "bids for planner tests".into()
    }
}

pub(super) fn bids_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new(
            "date_time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
    ]))
}

/// The stream inputs of the planner tests: `bids`, whose watermark is over
/// `date_time`, two seconds behind.
pub(super) fn bids_inputs() -> HashMap<String, StreamInput> {
    let input = StreamInput {
        source: Arc::new(Bids {
            schema: bids_schema(),
        }),
        event_time: Some(EventTime {
            column: 3,
            delay: 2_000_000_000,
        }),
        time_column: Some("date_time".into()),
    };
    HashMap::from([("bids".to_string(), input)])
}

/// The optimized logical plan of `sql` over an empty `bids`, with the
/// window functions registered.
pub(super) async fn bids_plan(sql: &str) -> datafusion::logical_expr::LogicalPlan {
    let ctx = SessionContext::new();
    weir_runtime::windows::register(&ctx);
    ctx.register_table("bids", Arc::new(EmptyTable::new(bids_schema())))
        .expect("register bids");
    ctx.sql(sql)
        .await
        .expect("plan")
        .into_optimized_plan()
        .expect("optimize")
}

/// The query `sql` with its window TVFs rewritten as a view's are: the
/// windows found, and its plan over `bids` ([`bids_plan`]).
pub(super) async fn windowed_bids_plan(
    sql: &str,
) -> (
    Vec<crate::windows::WindowUse>,
    datafusion::logical_expr::LogicalPlan,
) {
    let mut statement = crate::parser::parse(sql)
        .expect("parse")
        .pop()
        .expect("a statement");
    assert!(matches!(
        statement,
        datafusion::sql::sqlparser::ast::Statement::Query(_)
    ));
    let windows = crate::windows::rewrite_windows(&mut statement, crate::windows::Mode::Stream)
        .expect("windows");
    let plan = bids_plan(&statement.to_string()).await;
    (windows, plan)
}

/// The typed plan of `sql` over the stream `bids`, with two workers.
async fn lower(sql: &str) -> crate::error::Result<StreamMaterialize> {
    lower_with_ttl(sql, None).await
}

/// [`lower`], the view's `join_state_ttl` being `ttl`.
async fn lower_with_ttl(sql: &str, ttl: Option<i64>) -> crate::error::Result<StreamMaterialize> {
    let plan = bids_plan(sql).await;
    let inputs = bids_inputs();
    let uses = super::QueryUses {
        join_state_ttl: ttl,
        ..Default::default()
    };
    lower_stream(&plan, uses, false, 2, &inputs)
}

/// Each EXPLAIN line as (depth, operator name).
fn operators(explain: &str) -> Vec<(usize, String)> {
    explain
        .lines()
        .map(|line| {
            let name = line.trim_start();
            let depth = (line.len() - name.len()) / 2;
            let name = name.split(':').next().unwrap_or_default().to_string();
            (depth, name)
        })
        .collect()
}

#[tokio::test]
async fn an_aggregate_lowers_to_its_exchange_and_three_stages() {
    let plan =
        lower("SELECT auction, max(price) AS top FROM bids WHERE price > 10 GROUP BY auction")
            .await
            .expect("lower");
    let text = explain(&plan);
    let shown = operators(&text);
    assert_eq!(shown[0], (0, "StreamMaterialize".to_string()), "{text}");
    let aggregate = shown
        .iter()
        .position(|(_, name)| name == "StreamGroupAggregate")
        .unwrap_or_else(|| panic!("no aggregate in\n{text}"));
    let (depth, _) = shown[aggregate];
    assert_eq!(
        shown[aggregate + 1],
        (depth + 1, "StreamExchange".to_string()),
        "{text}"
    );
    assert!(
        text.contains("StreamExchange: hash(bids.auction) to 2 workers\n"),
        "{text}"
    );
    assert_eq!(
        shown.last(),
        Some(&(shown.len() - 1, "StreamSource".to_string())),
        "{text}"
    );
    assert!(
        text.ends_with("StreamSource: bids [bids for planner tests] watermark=date_time - 2s\n"),
        "{text}"
    );
    assert!(plan.changelog, "a group aggregate's result is updating");

    let runtime = runtime_plan(&plan).expect("runtime plan");
    let spec = aggregate_of(&runtime).expect("an aggregate");
    assert_eq!(spec.partition_keys, vec![0]);
    assert!(join_of(&runtime).is_none());
    assert!(
        !runtime.sources()[0].before.is_empty(),
        "the filter runs on the source partitions"
    );
    assert!(runtime.changelog);
    assert_eq!(runtime.parallelism, 2);
    assert_eq!(runtime.stream_name, "bids");
}

#[tokio::test]
async fn a_join_has_two_alike_inputs_under_one_exchange() {
    let plan = lower(
        "SELECT a.bidder, b.price FROM bids a JOIN bids b ON a.auction = b.auction WHERE b.price > 500",
    )
    .await
    .expect("lower");
    let mut node = &plan.input;
    let join = loop {
        match node {
            StreamNode::HashJoin(join) => break join,
            StreamNode::Filter(f) => node = &f.input,
            StreamNode::Project(p) => node = &p.input,
            other => panic!("no join above {other:?}"),
        }
    };
    // Alike: each input is a source with stateless operators on it.
    assert_eq!(join.left.first_source().name, "bids");
    assert_eq!(join.right.first_source().name, "bids");
    assert!(matches!(
        *join.left,
        StreamNode::Source(_) | StreamNode::Project(_) | StreamNode::Filter(_)
    ));
    assert!(matches!(
        *join.right,
        StreamNode::Source(_) | StreamNode::Project(_) | StreamNode::Filter(_)
    ));
    assert!(
        !plan.input.watermarked(),
        "a join's output has no watermark"
    );

    let text = explain(&plan);
    let shown = operators(&text);
    let at = shown
        .iter()
        .position(|(_, name)| name == "StreamHashJoin")
        .unwrap_or_else(|| panic!("no join in\n{text}"));
    let depth = shown[at].0;
    assert!(
        text.contains("StreamExchange: hash(a.auction) to 2 workers, from both inputs\n"),
        "{text}"
    );
    assert_eq!(shown[at + 1], (depth + 1, "StreamExchange".to_string()));
    // Both inputs are printed at the same depth, the left one first.
    assert_eq!(shown[at + 2].0, depth + 2, "{text}");
    let sources: Vec<usize> = shown
        .iter()
        .filter(|(_, name)| name == "StreamSource")
        .map(|(d, _)| *d)
        .collect();
    assert_eq!(sources.len(), 2, "{text}");

    let runtime = runtime_plan(&plan).expect("runtime plan");
    let runtime_join = join_of(&runtime).expect("a join");
    assert!(aggregate_of(&runtime).is_none());
    assert_eq!(runtime.stages.len(), 1, "the join is the only stage");
    assert!(
        !runtime.sources[1].before.is_empty(),
        "the right input's filter runs on its partitions"
    );
    assert_eq!(runtime_join.keys[0].len(), 1);
    assert!(!runtime.changelog, "an inner join of streams appends");
}

#[tokio::test]
async fn a_plan_without_state_runs_on_the_source_partitions() {
    let plan = lower("SELECT auction, price * 2 AS double FROM bids")
        .await
        .expect("lower");
    let text = explain(&plan);
    assert!(
        text.starts_with("StreamMaterialize: append-only columns=[auction, double]\n"),
        "{text}"
    );
    assert!(!text.contains("StreamExchange"), "{text}");
    let runtime = runtime_plan(&plan).expect("runtime plan");
    assert!(runtime.stages.is_empty());
    assert!(!runtime.sources()[0].before.is_empty());
    assert!(!runtime.changelog);
}

#[tokio::test]
async fn an_aggregate_over_an_aggregate_runs_as_two_stages() {
    let plan = lower("SELECT auction, count(*) AS n FROM bids GROUP BY auction")
        .await
        .expect("lower");
    let mut node = plan.input;
    // Find the aggregate and stack a second one on it: lowering refuses
    // that, so only a planner bug could build it.
    let inner = loop {
        match node {
            StreamNode::Aggregate(aggregate) => break aggregate,
            StreamNode::Project(p) => node = *p.input,
            StreamNode::Filter(f) => node = *f.input,
            other => panic!("no aggregate in {other:?}"),
        }
    };
    let spec = inner.spec.clone();
    let outer = StreamAggregate {
        input: Box::new(StreamNode::Aggregate(inner)),
        exchange: StreamExchange {
            keys: Vec::new(),
            workers: 2,
        },
        group: Vec::new(),
        aggregates: Vec::new(),
        window: None,
        spec,
    };
    let broken = StreamMaterialize {
        input: StreamNode::Aggregate(outer),
        changelog: true,
        schema: plan.schema,
        parallelism: 2,
    };
    let runtime = runtime_plan(&broken).expect("an aggregate over an aggregate");
    let inputs: Vec<_> = runtime.stages.iter().map(|s| s.inputs.clone()).collect();
    assert_eq!(
        inputs,
        [vec![PlanInput::Source(0)], vec![PlanInput::Stage(0)]],
        "the inner aggregate is the first stage, feeding the outer"
    );
    assert_eq!(runtime.output, PlanInput::Stage(1));
}

#[tokio::test]
async fn what_cannot_be_maintained_is_refused_with_the_reason() {
    let err = lower("SELECT auction FROM bids ORDER BY price")
        .await
        .expect_err("ORDER BY");
    assert!(
        matches!(&err, PlanError::Unsupported { what, .. } if what == "ORDER BY in a materialized view"),
        "{err:?}"
    );
    let err = lower("SELECT a.bidder FROM bids a JOIN bids b ON a.auction < b.auction")
        .await
        .expect_err("no equal keys");
    assert!(matches!(err, PlanError::Unsupported { .. }), "{err:?}");
}

#[tokio::test]
async fn offset_is_refused_by_its_name_even_after_order_by() {
    for sql in [
        "SELECT auction FROM bids ORDER BY price LIMIT 3 OFFSET 2",
        "SELECT auction FROM bids OFFSET 2",
    ] {
        let err = lower(sql).await.expect_err(sql);
        assert!(
            matches!(&err, PlanError::Unsupported { what, .. } if what == "OFFSET in a materialized view"),
            "{sql}: {err:?}"
        );
    }
    let err = lower("SELECT auction FROM bids LIMIT 3")
        .await
        .expect_err("LIMIT without ORDER BY");
    assert!(
        matches!(&err, PlanError::Unsupported { what, .. } if what == "LIMIT in a materialized view"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_global_top_n_says_every_row_goes_to_one_worker() {
    let plan = lower("SELECT auction, price FROM bids ORDER BY price DESC LIMIT 3")
        .await
        .expect("ORDER BY .. LIMIT");
    let text = explain(&plan);
    assert!(
        text.contains("StreamExchange: single (every row to one of 2 workers)\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_join_bounded_in_time_is_an_interval_join_whose_output_is_timed() {
    let plan = lower(
        "SELECT a.auction, b.price FROM bids a JOIN bids b ON a.auction = b.auction \
         AND b.date_time BETWEEN a.date_time - INTERVAL '1 second' AND a.date_time + INTERVAL '5 seconds'",
    )
    .await
    .expect("an interval join");
    let text = explain(&plan);
    assert!(
        text.contains("StreamIntervalJoin: inner on [a.auction = b.auction] time: b.date_time - a.date_time in [-1s, 5s] output=append-only, watermark less 5s"),
        "{text}"
    );
    let runtime = runtime_plan(&plan).expect("runtime plan");
    let bounds = join_of(&runtime)
        .and_then(|j| j.interval)
        .expect("the join's time bounds");
    assert_eq!(
        (bounds.time, bounds.lower, bounds.upper),
        ([1, 2], -1_000_000_000, 5_000_000_000)
    );
    assert!(
        runtime.stages[0].timed,
        "an interval join forwards a watermark"
    );
    // Without the upper bound it is a regular join: no watermark out.
    let regular = lower(
        "SELECT a.auction, b.price FROM bids a JOIN bids b ON a.auction = b.auction \
         AND b.date_time >= a.date_time",
    )
    .await
    .expect("a regular join");
    let runtime = runtime_plan(&regular).expect("runtime plan");
    assert!(join_of(&runtime).is_some_and(|j| j.interval.is_none()));
    assert!(!runtime.stages[0].timed);
}

#[tokio::test]
async fn a_bounded_row_number_lowers_to_a_top_n_in_the_aggregates_place() {
    let plan = lower(
        "SELECT auction, price, rn FROM (SELECT *, row_number() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bids) WHERE rn <= 3",
    )
    .await
    .expect("lower");
    let text = explain(&plan);
    let shown = operators(&text);
    let at = shown
        .iter()
        .position(|(_, name)| name == "StreamTopN")
        .unwrap_or_else(|| panic!("no TopN in\n{text}"));
    assert_eq!(
        shown[at + 1],
        (shown[at].0 + 1, "StreamExchange".to_string())
    );
    assert!(text.contains("limit=3 "), "{text}");
    assert!(plan.changelog, "a TopN's result is updating");
    let runtime = runtime_plan(&plan).expect("runtime plan");
    let spec = top_n_of(&runtime).expect("a TopN");
    assert_eq!((spec.limit, spec.partition.len()), (3, 1));
    assert!(spec.order[0].1.descending);
    assert!(aggregate_of(&runtime).is_none());
    assert!(
        !runtime.last_stage().expect("a stage").after.is_empty(),
        "the bound's filter stays above it"
    );

    let first = lower(
        "SELECT auction, price FROM (SELECT *, row_number() OVER (PARTITION BY auction ORDER BY date_time) AS rn FROM bids) WHERE rn = 1",
    )
    .await
    .expect("keep-first");
    assert!(explain(&first).contains("limit=1 (deduplicate)"));
}

#[tokio::test]
async fn row_numbers_without_a_bound_are_refused() {
    for sql in [
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY auction ORDER BY price) AS rn FROM bids)",
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY auction ORDER BY price) AS rn FROM bids) WHERE rn > 3",
        "SELECT * FROM (SELECT *, rank() OVER (PARTITION BY auction ORDER BY price) AS rn FROM bids) WHERE rn <= 3",
    ] {
        let err = lower(sql).await.expect_err(sql);
        assert!(
            matches!(err, PlanError::Unsupported { .. }),
            "{sql}: {err:?}"
        );
    }
}

#[tokio::test]
async fn an_aggregates_filter_is_compiled_beside_it() {
    let plan = lower(
        "SELECT auction, count(*) AS n, count(*) FILTER (WHERE price > 10) AS big, count(DISTINCT bidder) FILTER (WHERE price > 10) AS bidders FROM bids GROUP BY auction",
    )
    .await
    .expect("lower");
    let runtime = runtime_plan(&plan).expect("runtime plan");
    let spec = aggregate_of(&runtime).expect("an aggregate");
    let filtered: Vec<bool> = spec.filters.iter().map(Option::is_some).collect();
    assert_eq!(filtered, [false, true, true]);
    assert!(
        explain(&plan).contains("FILTER (WHERE"),
        "{}",
        explain(&plan)
    );
}

#[tokio::test]
async fn a_join_state_ttl_carries_an_unread_event_time_column_outside_the_output() {
    const SECOND: i64 = 1_000_000_000;
    let sql = "SELECT a.bidder, b.price FROM bids a JOIN bids b ON a.auction = b.auction WHERE b.price > 500";
    let plan = lower_with_ttl(sql, Some(SECOND)).await.expect("lower");
    let runtime = runtime_plan(&plan).expect("runtime plan");
    let spec = join_of(&runtime).expect("a join stage");
    let ttl = spec.ttl().expect("a state TTL");
    assert_eq!(ttl.ttl, SECOND);
    // The query reads neither side's date_time: each input gains it as its
    // last column, by which its rows go, and the output does not.
    assert_eq!(ttl.appended, [true, true]);
    for side in [0, 1] {
        let input = &spec.inputs[side];
        let last = input.fields().len() - 1;
        assert_eq!(input.field(last).name(), "date_time");
        assert_eq!(ttl.time[side], Some(last));
    }
    assert_eq!(
        spec.output_schema.fields().len(),
        spec.inputs[0].fields().len() + spec.inputs[1].fields().len() - 2
    );
    // Its output has no watermark, as every regular join's.
    assert!(!runtime.stages[0].timed);
    let text = explain(&plan);
    assert!(
        text.contains("kept for 1s (event time, join_state_ttl): left rows until the right side's watermark reaches a.date_time + 1s, right rows until the left side's watermark reaches b.date_time + 1s"),
        "{text}"
    );
    // Without the setting: kept forever, nothing appended.
    let plain = runtime_plan(&lower(sql).await.expect("lower")).expect("runtime plan");
    assert!(join_of(&plain).expect("a join").ttl().is_none());
}

#[tokio::test]
async fn session_rows_are_refused_unless_aggregated_per_session() {
    let lowered = |sql: &'static str| async move {
        let (windows, plan) = windowed_bids_plan(sql).await;
        let uses = super::QueryUses {
            windows: &windows,
            ..Default::default()
        };
        lower_stream(&plan, uses, false, 2, &bids_inputs()).map(|_| ())
    };
    for sql in [
        "SELECT * FROM SESSION(bids, date_time, INTERVAL '3 seconds')",
        "SELECT bidder, window_start, window_end FROM SESSION(bids, date_time, INTERVAL '3 seconds')",
    ] {
        let err = lowered(sql).await.expect_err(sql);
        assert!(
            matches!(&err, PlanError::Unsupported { what, .. }
                if what == "SESSION rows that are not aggregated per session in a materialized view"),
            "{sql}: {err:?}"
        );
    }
    lowered(
        "SELECT bidder, window_start, window_end, count(*) FROM SESSION(bids, date_time, INTERVAL '3 seconds')
         GROUP BY bidder, window_start, window_end",
    )
    .await
    .expect("a session aggregate");
    // Not reading the bounds, the sessions do not matter.
    lowered(
        "SELECT bidder, count(*) FROM SESSION(bids, date_time, INTERVAL '3 seconds') GROUP BY bidder",
    )
    .await
    .expect("an aggregate by other keys");
}
