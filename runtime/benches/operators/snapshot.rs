//! A checkpoint of an updating GROUP BY over 1M keys: the operator's
//! `snapshot` and the Arrow IPC encoding of its chunks (what
//! `JobStore::write_chunk` does before the store's `put`), after a round
//! of input that changed 100K of the keys, and after one that changed all
//! of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::PhysicalExpr;
use prometheus_client::metrics::counter::Counter;
use weir_runtime::operators::{StreamOperator, aggregate};
use weir_runtime::plan::{AggregateSpec, Emit, WindowKind};

const KEYS: u64 = 1_000_000;
const BATCH: u64 = 8192;

fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

/// `SELECT k, count(*), sum(v) FROM s GROUP BY k`, as bench/checkpoint.sh.
fn spec() -> Arc<AggregateSpec> {
    let schema = input_schema();
    let col = |name: &str, i: usize| -> Arc<dyn PhysicalExpr> { Arc::new(Column::new(name, i)) };
    let aggregate = |udaf, alias: &str| {
        Arc::new(
            AggregateExprBuilder::new(udaf, vec![col("v", 1)])
                .schema(schema.clone())
                .alias(alias)
                .build()
                .expect("an aggregate expression"),
        )
    };
    Arc::new(AggregateSpec {
        group: vec![col("k", 0)],
        partition_keys: vec![0],
        aggregates: vec![aggregate(count_udaf(), "n"), aggregate(sum_udaf(), "total")],
        filters: vec![None, None],
        window: WindowKind::None,
        emit: Emit::Updates,
        output_schema: Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("n", DataType::Int64, true),
            Field::new("total", DataType::Int64, true),
        ])),
        retracting: None,
    })
}

/// Rows `first..first + count`, keys spread over every `KEYS`.
fn feed(op: &mut dyn StreamOperator, first: u64, count: u64) {
    for start in (first..first + count).step_by(BATCH as usize) {
        let rows = start..(start + BATCH).min(first + count);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                rows.clone().map(|n| ((n * 7919) % KEYS) as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.map(|n| (n % 1000) as i64),
            )),
        ];
        let batch = RecordBatch::try_new(input_schema(), columns).expect("a batch");
        op.on_batch(None, &batch).expect("on_batch");
    }
}

/// Snapshot and encode every chunk as `write_chunk` does: bytes written.
fn checkpoint(op: &mut dyn StreamOperator, epoch: u64) -> usize {
    let write = op.snapshot(epoch).expect("snapshot");
    let mut bytes = 0;
    for (_, batch) in &write.put {
        let mut buffer = Vec::new();
        let mut writer = StreamWriter::try_new(&mut buffer, batch.schema_ref()).expect("writer");
        writer.write(batch).expect("write");
        writer.finish().expect("finish");
        drop(writer);
        bytes += buffer.len();
    }
    bytes
}

/// The checkpoint after `changed` rows of input touched as many keys.
pub fn snapshot_updating_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkpoint_1m_updating_keys");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for changed in [100_000u64, KEYS] {
        let mut op = aggregate::new(spec(), &input_schema(), Counter::default())
            .expect("an updating aggregate");
        op.enable_checkpoints();
        feed(op.as_mut(), 0, KEYS);
        let mut epoch = 1;
        checkpoint(op.as_mut(), epoch);
        let mut next = KEYS;
        group.throughput(Throughput::Elements(changed));
        group.bench_function(format!("snapshot_after_{changed}_changed"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    feed(op.as_mut(), next, changed);
                    next += changed;
                    epoch += 1;
                    let started = Instant::now();
                    std::hint::black_box(checkpoint(op.as_mut(), epoch));
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}
