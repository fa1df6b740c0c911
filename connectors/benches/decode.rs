//! Decode benchmarks: Nexmark-shaped bids from CSV and from JSON lines,
//! through the file connector's public path (`FileSpec::open_table`, then a
//! DataFusion scan), which includes the CSV timestamp fast path.
//!
//! `cargo bench -p weir-connectors --bench decode`.

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::physical_plan::collect;
use datafusion::prelude::{SessionConfig, SessionContext};
use weir_connectors::{ConnectorOptions, FileSpec};

const ROWS: u64 = 262_144;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new(
            "date_time",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            true,
        ),
    ]))
}

/// Rows shaped like `weir-bench gen-bids` output (values need not match it).
fn write_bids(path: &std::path::Path, json: bool) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("a data file"));
    if !json {
        writeln!(out, "auction,bidder,price,date_time").expect("write");
    }
    for n in 0..ROWS {
        let (auction, bidder, price) = (1000 + n * 7 % 2003, 1000 + n * 13 % 997, 100 + n % 10_000);
        let ms = n / 10;
        let ts = format!(
            "2024-01-01 {:02}:{:02}:{:02}.{:03}",
            ms / 3_600_000 % 24,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        );
        if json {
            writeln!(
                out,
                r#"{{"auction":{auction},"bidder":{bidder},"price":{price},"date_time":"{ts}"}}"#
            )
        } else {
            writeln!(out, "{auction},{bidder},{price},{ts}")
        }
        .expect("write");
    }
    out.flush().expect("flush");
}

/// Open the file as the connector does and read every row.
async fn decode(ctx: &SessionContext, path: &str, format: &str) -> usize {
    let mut options = ConnectorOptions::new([("path", path), ("format", format)]);
    let spec = FileSpec::from_options(&mut options).expect("file options");
    let state = ctx.state();
    let table = spec
        .open_table(&state, Some(schema()), true)
        .await
        .expect("a file table");
    let plan = table.scan(&state, None, &[], None).await.expect("a scan");
    let batches = collect(plan, ctx.task_ctx()).await.expect("the rows");
    batches.iter().map(|b| b.num_rows()).sum()
}

fn file_decode(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // One partition: the decode cost per row, not the machine's core count.
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(ROWS));
    group.sample_size(10);
    for (format, json) in [("csv", false), ("json", true)] {
        let path = dir.path().join(format!("bids.{format}"));
        write_bids(&path, json);
        let path = path.to_str().expect("a utf-8 path").to_string();
        assert_eq!(
            runtime.block_on(decode(&ctx, &path, format)),
            ROWS as usize,
            "{format}: every row decoded"
        );
        group.bench_function(format!("bids_{format}"), |b| {
            b.iter(|| black_box(runtime.block_on(decode(&ctx, &path, format))))
        });
    }
    group.finish();
}

criterion_group!(benches, file_decode);
criterion_main!(benches);
