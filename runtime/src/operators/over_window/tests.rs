//! The OVER window's unit tests: frames against a brute-force answer,
//! late rows, state bounds, and checkpoints split over other workers.

use std::sync::Arc;

use datafusion::arrow::array::{
    AsArray, Float64Array, Int64Array, RecordBatch, TimestampNanosecondArray,
};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, UInt64Type,
};
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::min_max::max_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_plan::PhysicalExpr;
use prometheus_client::metrics::counter::Counter;

use super::{OverFrame, OverFunction, OverWindow, OverWindowSpec};
use crate::operators::{StreamBatch, StreamOperator};

fn input() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        Field::new("v", DataType::Int64, false),
    ]))
}

fn col(name: &str, i: usize) -> Arc<dyn PhysicalExpr> {
    Arc::new(Column::new(name, i))
}

/// `count(v), sum(v), max(v), avg(v), row_number() OVER (PARTITION BY k
/// ORDER BY ts, v <frame>)`.
fn spec(frame: OverFrame) -> Arc<OverWindowSpec> {
    let of = |udaf, arg: Arc<dyn PhysicalExpr>, alias: &str| {
        OverFunction::Aggregate(Arc::new(
            AggregateExprBuilder::new(udaf, vec![arg])
                .schema(input())
                .alias(alias)
                .build()
                .expect("an aggregate"),
        ))
    };
    let mut fields: Vec<Field> = input()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("n", DataType::Int64, true));
    fields.push(Field::new("total", DataType::Int64, true));
    fields.push(Field::new("top", DataType::Int64, true));
    fields.push(Field::new("mean", DataType::Float64, true));
    fields.push(Field::new("rn", DataType::UInt64, false));
    Arc::new(OverWindowSpec {
        partition: vec![col("k", 0)],
        order: vec![
            (col("ts", 1), SortOptions::default()),
            (col("v", 2), SortOptions::default()),
        ],
        time: 1,
        frame,
        functions: vec![
            of(count_udaf(), col("v", 2), "n"),
            of(sum_udaf(), col("v", 2), "total"),
            of(max_udaf(), col("v", 2), "top"),
            // As DataFusion's type coercion gives avg its argument.
            of(
                avg_udaf(),
                Arc::new(CastExpr::new(col("v", 2), DataType::Float64, None)),
                "mean",
            ),
            OverFunction::RowNumber,
        ],
        input_schema: input(),
        output_schema: Arc::new(Schema::new(fields)),
    })
}

fn rows(rows: &[(i64, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        input(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(TimestampNanosecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .expect("a batch")
}

/// One output row: k, ts, v, count, sum, max, avg, row number.
type Out = (i64, i64, i64, i64, i64, i64, f64, u64);

fn outputs(out: Vec<StreamBatch>) -> Vec<Out> {
    let mut all = Vec::new();
    for batch in out {
        let StreamBatch::Rows(b) = batch else {
            panic!("an OVER window emits plain rows");
        };
        let int = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
        let ts = b
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
        let mean: &Float64Array = b.column(6).as_primitive::<Float64Type>();
        let rn = b.column(7).as_primitive::<UInt64Type>();
        for r in 0..b.num_rows() {
            all.push((
                int(0).value(r),
                ts.value(r),
                int(2).value(r),
                int(3).value(r),
                int(4).value(r),
                int(5).value(r),
                mean.value(r),
                rn.value(r),
            ));
        }
    }
    all.sort_by_key(|a| (a.0, a.1, a.2));
    all
}

/// The batch answer: every row of `input` with its functions over `frame`.
fn brute_force(input: &[(i64, i64, i64)], frame: OverFrame) -> Vec<Out> {
    let mut sorted = input.to_vec();
    sorted.sort();
    let mut out = Vec::new();
    for (i, row) in sorted.iter().enumerate() {
        let part: Vec<(usize, &(i64, i64, i64))> = sorted
            .iter()
            .enumerate()
            .filter(|(_, r)| r.0 == row.0)
            .collect();
        let place = part.iter().position(|(j, _)| *j == i).expect("its own row");
        let in_frame: Vec<i64> = part
            .iter()
            .enumerate()
            .filter(|(p, (_, r))| match frame {
                OverFrame::Rows(n) => *p <= place && place - *p <= n,
                OverFrame::Range(d) => r.1 <= row.1 && r.1 >= row.1 - d,
                OverFrame::UnboundedRows => *p <= place,
                OverFrame::UnboundedRange => r.1 <= row.1,
            })
            .map(|(_, (_, r))| r.2)
            .collect();
        let sum: i64 = in_frame.iter().sum();
        out.push((
            row.0,
            row.1,
            row.2,
            in_frame.len() as i64,
            sum,
            *in_frame.iter().max().expect("the row itself"),
            sum as f64 / in_frame.len() as f64,
            place as u64 + 1,
        ));
    }
    out
}

/// Rows of three keys at times with ties, values distinct per key and time.
fn data() -> Vec<(i64, i64, i64)> {
    (0..60i64)
        .map(|i| (i % 3, (i * 7) % 20 / 2, (i * 13) % 31))
        .collect()
}

/// Feed `data` in batches of 7, each followed by a watermark at the least
/// time still to come, then the end; with `checkpoint_after`, snapshot
/// there and go on in two new workers that split the keys.
fn run(frame: OverFrame, checkpoint_after: Option<usize>) -> Vec<Out> {
    let data = data();
    let chunks: Vec<&[(i64, i64, i64)]> = data.chunks(7).collect();
    let watermark_after = |i: usize| {
        chunks[i + 1..]
            .iter()
            .flat_map(|c| c.iter().map(|r| r.1))
            .min()
            .unwrap_or(i64::MAX)
    };
    let new = || OverWindow::new(spec(frame), Counter::default()).expect("an OVER window");
    let mut workers = vec![new()];
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let n = workers.len();
        for (w, op) in workers.iter_mut().enumerate() {
            let mine =
                crate::operators::exchange::rows_of_worker(&rows(chunk), &[col("k", 0)], w, n)
                    .expect("an exchange");
            if let Some(mine) = mine {
                out.extend(op.on_batch(None, &mine).expect("a batch"));
            }
            out.extend(op.on_watermark(watermark_after(i)).expect("a watermark"));
        }
        if checkpoint_after == Some(i) {
            let op = &mut workers[0];
            let write = op.snapshot(1).expect("a snapshot");
            assert!(write.reset, "a full snapshot");
            assert!(
                op.snapshot(2).expect("a snapshot").put.is_empty(),
                "nothing changed"
            );
            let watermark = op.watermark();
            workers = (0..2)
                .map(|w| {
                    let mut o = new();
                    o.restore(watermark, &write.put, w, 2).expect("a restore");
                    o
                })
                .collect();
        }
    }
    for op in &mut workers {
        out.extend(op.on_watermark(i64::MAX).expect("the end"));
    }
    outputs(out)
}

const FRAMES: [OverFrame; 5] = [
    OverFrame::Rows(0),
    OverFrame::Rows(3),
    OverFrame::Range(2),
    OverFrame::UnboundedRows,
    OverFrame::UnboundedRange,
];

#[test]
fn every_frame_gives_the_batch_answer() {
    for frame in FRAMES {
        assert_eq!(run(frame, None), brute_force(&data(), frame), "{frame:?}");
    }
}

#[test]
fn every_frame_survives_a_checkpoint_split_over_two_workers() {
    for frame in FRAMES {
        for at in [0, 3, 6] {
            assert_eq!(
                run(frame, Some(at)),
                brute_force(&data(), frame),
                "{frame:?} restored after batch {at}"
            );
        }
    }
}

#[test]
fn rows_wait_for_the_watermark_and_late_ones_are_counted() {
    let late = Counter::default();
    let mut op = OverWindow::new(spec(OverFrame::Rows(1)), late.clone()).expect("an OVER window");
    assert!(
        op.on_batch(None, &rows(&[(1, 10, 1), (1, 20, 2)]))
            .expect("a batch")
            .is_empty()
    );
    // Rows at the watermark's time can still come: only older ones go.
    let out = outputs(op.on_watermark(20).expect("a watermark"));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].1, out[0].3), (10, 1));
    op.on_batch(None, &rows(&[(1, 19, 5), (1, 20, 3)]))
        .expect("a batch");
    assert_eq!(late.get(), 1, "the row at 19 is late");
    let out = outputs(op.on_watermark(i64::MAX).expect("the end"));
    // (20, 2) and (20, 3): each with the row before it.
    assert_eq!(
        out.iter().map(|o| (o.2, o.4)).collect::<Vec<_>>(),
        vec![(2, 3), (3, 5)]
    );
    // ROWS 1 PRECEDING keeps one row per key.
    assert_eq!(op.state().entries, 1);
}

#[test]
fn a_range_frame_keeps_only_rows_within_reach_of_the_watermark() {
    let mut op =
        OverWindow::new(spec(OverFrame::Range(5)), Counter::default()).expect("an OVER window");
    op.on_batch(None, &rows(&[(1, 10, 1), (2, 11, 1), (1, 12, 1)]))
        .expect("a batch");
    op.on_watermark(13).expect("a watermark");
    assert_eq!(op.state().entries, 3);
    // Nothing later can reach back past 20 - 5.
    op.on_watermark(20).expect("a watermark");
    assert_eq!(op.state().entries, 0);
    assert!(op.partitions.is_empty() || op.spec.partition_state());
}
