//! Session windows at a growing number of keys: what one watermark costs
//! once the operator holds many open sessions.
//!
//! Every key gets one event every `keys` events (event time advances 1 ms a
//! row), and the gap is half that, so each event opens a session and each
//! session closes `keys / 2` rows later: about `keys / 2` sessions are open
//! at any time, and a batch of `BATCH` rows followed by its watermark
//! closes about `BATCH` of them. If a watermark's cost depends only on what
//! it closes, the time per batch stays flat as `keys` grows.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput};
use datafusion::arrow::array::{ArrayRef, Int64Array, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::PhysicalExpr;
use prometheus_client::metrics::counter::Counter;
use weir_runtime::operators::{StreamOperator, aggregate};
use weir_runtime::plan::{AggregateSpec, Emit, WindowKind};

const BATCH: u64 = 8192;
const MS: i64 = 1_000_000;

fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("bidder", DataType::Int64, false),
        Field::new(
            "date_time",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        ),
        Field::new("price", DataType::Int64, false),
    ]))
}

/// `SESSION(bids, date_time, gap)` grouped by bidder, `count(*), sum(price)`,
/// emitted on close.
fn spec(gap: i64) -> Arc<AggregateSpec> {
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
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
    Arc::new(AggregateSpec {
        // The end key's input value is never read: the operator computes it.
        group: vec![col("bidder", 0), col("date_time", 1), col("date_time", 1)],
        partition_keys: vec![0],
        aggregates: vec![
            aggregate(count_udaf(), "bids"),
            aggregate(sum_udaf(), "total"),
        ],
        filters: vec![None, None],
        window: WindowKind::Session {
            start_key: 1,
            end_key: 2,
            gap,
        },
        emit: Emit::OnWindowClose,
        output_schema: Arc::new(Schema::new(vec![
            Field::new("bidder", DataType::Int64, false),
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
            Field::new("bids", DataType::Int64, true),
            Field::new("total", DataType::Int64, true),
        ])),
        retracting: None,
    })
}

/// The stream at a given number of keys: rows `first..first + BATCH`.
struct Stream {
    keys: u64,
    next: u64,
}

impl Stream {
    fn batch(&mut self) -> (RecordBatch, i64) {
        let rows = self.next..self.next + BATCH;
        self.next += BATCH;
        // 7919 is prime, so over `keys` consecutive rows every key comes once.
        let bidder = rows.clone().map(|n| ((n * 7919) % self.keys) as i64);
        let time = rows.clone().map(|n| n as i64 * MS);
        let price = rows.clone().map(|n| 100 + (n % 1000) as i64);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(bidder)),
            Arc::new(TimestampNanosecondArray::from_iter_values(time)),
            Arc::new(Int64Array::from_iter_values(price)),
        ];
        let batch = RecordBatch::try_new(input_schema(), columns).expect("a bids batch");
        (batch, (self.next as i64 - 1) * MS)
    }

    /// Feed one batch and the watermark at its last row: rows emitted.
    fn feed(&mut self, op: &mut dyn StreamOperator) -> usize {
        let (batch, watermark) = self.batch();
        let mut out = op.on_batch(None, &batch).expect("on_batch").len();
        out += op.on_watermark(watermark).expect("on_watermark").len();
        out
    }
}

/// One batch and its watermark, at 10K, 100K and 1M keys in steady state.
pub fn session_watermarks(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_watermarks");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    for keys in [10_000u64, 100_000, 1_000_000] {
        let spec = spec(keys as i64 / 2 * MS);
        let mut op =
            aggregate::new(spec, &input_schema(), Counter::default()).expect("a session aggregate");
        let mut stream = Stream { keys, next: 0 };
        // Fill: every key has had an event, half of them an open session.
        while stream.next < 2 * keys {
            stream.feed(op.as_mut());
        }
        group.bench_function(format!("batch_and_watermark_at_{keys}_keys"), |b| {
            b.iter(|| black_box(stream.feed(op.as_mut())))
        });
    }
    group.finish();
}
