//! Operator-level benchmarks: the windowed aggregate (closing on the
//! watermark, and updating, which encodes its output as a changelog of
//! retractions and inserts), the hash exchange and a stream-table join, on
//! Nexmark-shaped bids.
//!
//! Also: session windows at a growing number of keys (`operators/session.rs`)
//! and the checkpoint of an updating GROUP BY over 1M keys
//! (`operators/snapshot.rs`).
//!
//! `cargo bench --workspace --bench operators [-- filter]`. They use only the
//! crate's public API: the aggregate is fed batches that already carry their
//! window start, as the planner's projection before the exchange makes them.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{ArrayRef, Int64Array, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::PhysicalExpr;
use prometheus_client::metrics::counter::Counter;
use weir_runtime::operators::{Side, aggregate, exchange};
use weir_runtime::plan::{AggregateSpec, Emit, WindowKind};

#[path = "operators/session.rs"]
mod session;
#[path = "operators/snapshot.rs"]
mod snapshot;

const ROWS: usize = 1 << 20;
const BATCH: usize = 8192;
const WINDOW_NS: i64 = 10_000_000_000;

/// The generator's mixing function (bench/src/main.rs), for the same skew.
fn mix(n: u64, field: u64) -> u64 {
    let mut z =
        42 ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ field.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new(
            "window_start",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        ),
        Field::new("price", DataType::Int64, false),
    ]))
}

/// `ROWS` bids at 10,000 events per second of event time (so ~100 windows),
/// 90 % of them on the hottest 1 % of auctions, with their window start.
fn bids() -> Vec<RecordBatch> {
    let schema = input_schema();
    (0..ROWS as u64)
        .step_by(BATCH)
        .map(|first| {
            let rows = first..first + BATCH as u64;
            let auction = rows.clone().map(|n| {
                let (auctions, r) = (n / 10 + 10, mix(n, 1));
                1000 + if r % 10 < 9 {
                    (r >> 8) % (auctions / 100 + 1)
                } else {
                    (r >> 8) % auctions
                } as i64
            });
            let start = rows
                .clone()
                .map(|n| (n as i64 * 100_000 - (mix(n, 4) % 2_000_000_000) as i64).max(0))
                .map(|t| t - t % WINDOW_NS);
            let price = rows.map(|n| 100 + (mix(n, 3) % 10_000) as i64);
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(auction)),
                Arc::new(TimestampNanosecondArray::from_iter_values(start)),
                Arc::new(Int64Array::from_iter_values(price)),
            ];
            RecordBatch::try_new(schema.clone(), columns).expect("a bids batch")
        })
        .collect()
}

/// `GROUP BY auction, window_start` with `count(price), sum(price)`.
fn spec(emit: Emit) -> Arc<AggregateSpec> {
    let schema = input_schema();
    let col = |name: &str, i: usize| -> Arc<dyn PhysicalExpr> { Arc::new(Column::new(name, i)) };
    let aggregate = |udaf, alias: &str| {
        Arc::new(
            AggregateExprBuilder::new(udaf, vec![col("price", 2)])
                .schema(schema.clone())
                .alias(alias)
                .build()
                .expect("an aggregate expression"),
        )
    };
    Arc::new(AggregateSpec {
        group: vec![col("auction", 0), col("window_start", 1)],
        partition_keys: vec![0],
        aggregates: vec![
            aggregate(count_udaf(), "bids"),
            aggregate(sum_udaf(), "total"),
        ],
        filters: vec![None, None],
        window: WindowKind::Fixed {
            key: 1,
            plus: WINDOW_NS,
        },
        emit,
        output_schema: Arc::new(Schema::new(vec![
            Field::new("auction", DataType::Int64, false),
            Field::new(
                "window_start",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
            Field::new("bids", DataType::Int64, true),
            Field::new("total", DataType::Int64, true),
        ])),
        retracting: None,
    })
}

/// `GROUP BY auction` (no window) with `count(price), sum(price)`: the
/// updating aggregate over plain groups.
fn plain_spec() -> Arc<AggregateSpec> {
    let windowed = spec(Emit::Updates);
    let fields = windowed.output_schema.fields();
    Arc::new(AggregateSpec {
        group: vec![windowed.group[0].clone()],
        partition_keys: vec![0],
        aggregates: windowed.aggregates.clone(),
        filters: vec![None, None],
        window: WindowKind::None,
        emit: Emit::Updates,
        output_schema: Arc::new(Schema::new(vec![
            fields[0].clone(),
            fields[2].clone(),
            fields[3].clone(),
        ])),
        retracting: None,
    })
}

/// Feed every batch, advancing the watermark after each (2 s behind the
/// latest window start seen), then the final watermark.
fn run(spec: &Arc<AggregateSpec>, batches: &[RecordBatch]) -> usize {
    let mut op = aggregate::new(spec.clone(), &input_schema(), Counter::default())
        .expect("an aggregate operator");
    let mut out = 0;
    for batch in batches {
        out += op.on_batch(None, batch).expect("on_batch").len();
        let starts = batch
            .column(1)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .expect("window starts");
        let latest = starts.values().iter().max().copied().unwrap_or(0);
        out += op
            .on_watermark(latest - 2_000_000_000)
            .expect("on_watermark")
            .len();
    }
    out + op.on_watermark(i64::MAX).expect("final watermark").len()
}

fn window_aggregate(c: &mut Criterion) {
    let batches = bids();
    let mut group = c.benchmark_group("window_aggregate");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    let closing = spec(Emit::OnWindowClose);
    group.bench_function("tumble_on_window_close", |b| {
        b.iter(|| black_box(run(&closing, &batches)))
    });
    // The updating aggregate emits a changelog (retract the old row, insert
    // the new) for every group a batch touches: this is the changelog encode.
    let updating = spec(Emit::Updates);
    group.bench_function("tumble_updates_changelog", |b| {
        b.iter(|| black_box(run(&updating, &batches)))
    });
    let plain = plain_spec();
    group.bench_function("group_by_updates_changelog", |b| {
        b.iter(|| black_box(run(&plain, &batches)))
    });
    group.finish();
}

fn hash_exchange(c: &mut Criterion) {
    let batches = bids();
    let mut group = c.benchmark_group("hash_exchange");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    for workers in [2, 8] {
        group.bench_function(format!("by_auction_to_{workers}_workers"), |b| {
            b.iter(|| {
                let mut parts = 0;
                for batch in &batches {
                    let keys = [batch.column(0).clone()];
                    let out = exchange::partition(batch, &keys, workers).expect("partition");
                    parts += out.iter().flatten().count();
                }
                black_box(parts)
            })
        });
    }
    group.finish();
}

/// A stream joined with a table: the bids (left) against an auctions table
/// (right, updating: it carries the op column) of 200,000 rows, the table
/// loaded first, as a view over a dimension table starts. Each bid is
/// matched and kept (a regular join keeps both sides).
fn stream_table_join(c: &mut Criterion) {
    use weir_runtime::operators::aggregate::changelog_schema;
    use weir_runtime::operators::join::{JoinKind, JoinOperator, JoinSpec};
    let batches = bids();
    let table = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("category", DataType::Int64, false),
    ]));
    let ids: Vec<i64> = (0..200_000).collect();
    let auctions = RecordBatch::try_new(
        changelog_schema(&table),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Int64Array::from(
                ids.iter().map(|i| i % 50).collect::<Vec<_>>(),
            )),
            Arc::new(datafusion::arrow::array::Int8Array::from(vec![
                1i8;
                ids.len()
            ])),
        ],
    )
    .expect("auctions");
    let mut fields: Vec<Field> = input_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(table.fields().iter().map(|f| f.as_ref().clone()));
    let spec = Arc::new(JoinSpec {
        kind: JoinKind::Inner,
        keys: [
            vec![Arc::new(Column::new("auction", 0)) as Arc<dyn PhysicalExpr>],
            vec![Arc::new(Column::new("id", 0)) as Arc<dyn PhysicalExpr>],
        ],
        inputs: [input_schema(), table],
        input_changelog: [false, true],
        output_schema: Arc::new(Schema::new(fields)),
        interval: None,
        state: Default::default(),
    });
    let mut group = c.benchmark_group("join");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.bench_function("bids_with_auctions_table", |b| {
        b.iter(|| {
            let mut join = JoinOperator::new(spec.clone()).expect("join");
            join.on_batch(Side::Right, &auctions).expect("table");
            let mut out = 0;
            for batch in &batches {
                out += join
                    .on_batch(Side::Left, batch)
                    .expect("bids")
                    .iter()
                    .map(|b| b.batch().num_rows())
                    .sum::<usize>();
            }
            black_box(out)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    window_aggregate,
    hash_exchange,
    stream_table_join,
    session::session_watermarks,
    snapshot::snapshot_updating_keys
);
criterion_main!(benches);
