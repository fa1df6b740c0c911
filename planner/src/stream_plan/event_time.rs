//! Which column of a view's rows its watermark is over: what a view read
//! as a stream by another view offers as that stream's event time
//! (`StreamPlan::event_time`, `weir_runtime::view_source`).
//!
//! # The rule
//! A view's rows have a watermark when its plan's output is watermarked
//! ([`StreamNode::watermarked`]) and one of its output columns is known to
//! be bounded by that watermark: every output row still to come, insert or
//! retraction, is at or after the watermark in that column
//! ([`watermarked_columns`]). Such a column is
//! - a source's event-time column (the one its `WATERMARK FOR` is over, or
//!   a view's own), through filters, unnests and projections that keep it
//!   as a plain column;
//! - over processing time, the stamp `weir_proctime()` computed in the
//!   source's partitions (`PROCTIME()`'s `proctime` column), then kept as
//!   a plain column as above;
//! - a window's end computed over such a column without an aggregate
//!   (`window_end` of `TUMBLE`, `HOP` or `CUMULATE`: after the time);
//! - a windowed aggregate's `window_end` (its groups of a window change
//!   only until the watermark passes that end), or a session's;
//! - a TopN's per-window key when it is the window's end;
//! - an OVER window's event-time column (rows come out as the watermark
//!   passes them);
//! - a lookup join's stream-side columns of that kind; either time column
//!   of an inner interval join (its pairs are at or after the watermark it
//!   forwards, which is its inputs' less its reach), the preserved side's
//!   of a LEFT or RIGHT one (the other side's is NULL in padded rows), and
//!   neither of a FULL one.
//!
//! The first such output column is the view's event-time column. A
//! projection that computes a new time (`ts + INTERVAL ..`), a window's
//! start, or a column taken out of a struct is not known to be bounded: if
//! no column is left, the view has no watermark, and what needs one over it
//! is refused (0A000).

use datafusion::arrow::datatypes::DataType;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::PhysicalExpr;
use weir_runtime::plan::{Side, WindowKind};

use super::nodes::{
    StreamAggregate, StreamFilter, StreamMaterialize, StreamNode, StreamProject, StreamUnnest,
};

/// The column of `plan`'s output rows that its watermark is over, if any
/// (see the module's rule).
pub(super) fn output_event_time(plan: &StreamMaterialize) -> Option<usize> {
    watermarked_columns(&plan.input).into_iter().find(|&c| {
        plan.schema
            .fields()
            .get(c)
            .is_some_and(|f| matches!(f.data_type(), DataType::Timestamp(..)))
    })
}

/// The columns of `node`'s rows that the watermark it forwards bounds:
/// every row still to come is at or after it in each of them.
pub(super) fn watermarked_columns(node: &StreamNode) -> Vec<usize> {
    if !node.watermarked() {
        return Vec::new();
    }
    match node {
        StreamNode::Source(source) => source.event_time_columns(),
        StreamNode::Filter(StreamFilter { input, .. }) => watermarked_columns(input),
        StreamNode::Unnest(StreamUnnest { input, column, .. }) => with_window_ends(
            node,
            watermarked_columns(input)
                .into_iter()
                .filter(|time| time != column)
                .collect(),
        ),
        StreamNode::Project(StreamProject {
            input, physical, ..
        }) => {
            let times = watermarked_columns(input);
            let stamps = input.stamps_processing_time();
            let kept = physical
                .iter()
                .enumerate()
                .filter(|(_, e)| bounded_by(e.as_ref(), &times) || (stamps && is_stamp(e.as_ref())))
                .map(|(i, _)| i)
                .collect();
            with_window_ends(node, kept)
        }
        StreamNode::Aggregate(StreamAggregate { spec, .. }) => match spec.window {
            // Group columns come first in the output, in group order.
            WindowKind::Fixed { key, plus: 0 } => vec![key],
            WindowKind::Session { end_key, .. } => vec![end_key],
            WindowKind::Fixed { .. } | WindowKind::None => Vec::new(),
        },
        StreamNode::TopN(top_n) => match top_n.spec.window {
            // The input's columns come first in the output.
            Some(window) if window.plus == 0 => top_n
                .spec
                .partition
                .get(window.key)
                .and_then(|k| column_index(k.as_ref()))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        },
        StreamNode::OverWindow(over) => vec![over.spec.time],
        StreamNode::HashJoin(join) => match &join.interval {
            Some(interval) => {
                let left_width = join.spec.inputs[0].fields().len();
                let times = [
                    interval.bounds.time[0],
                    left_width + interval.bounds.time[1],
                ];
                // A padded row has NULL in the other side's time: only a
                // column no padded row leaves empty is bounded.
                let kind = join.spec.kind;
                Side::BOTH
                    .into_iter()
                    .filter(|side| !kind.preserves(side.other()))
                    .map(|side| times[side.index()])
                    .collect()
            }
            // A lookup join: its left (stream) columns come first and
            // carry the stream's watermark.
            None => watermarked_columns(&join.left),
        },
    }
}

/// `columns` and the ends of HOP and CUMULATE windows `node` computes over
/// an event time: the interval join's walk (`time_columns`) follows a
/// window's start list, its unnest and the end computed from the start,
/// which a look at one projection cannot. Each end is after the row's
/// time, so at or after the watermark as the time is.
fn with_window_ends(node: &StreamNode, mut columns: Vec<usize>) -> Vec<usize> {
    columns.extend(super::lower_join_interval::time_columns(node));
    columns.sort_unstable();
    columns.dedup();
    columns
}

/// Is `expr` one of the input's columns `times`, or a tumbling window's end
/// over one (at or after the time it is computed from)?
fn bounded_by(expr: &dyn PhysicalExpr, times: &[usize]) -> bool {
    if let Some(index) = column_index(expr) {
        return times.contains(&index);
    }
    expr.downcast_ref::<ScalarFunctionExpr>().is_some_and(|f| {
        f.name() == "weir_window_end"
            && f.args()
                .first()
                .and_then(|a| column_index(a.as_ref()))
                .is_some_and(|i| times.contains(&i))
    })
}

/// Is `expr` the processing-time stamp, `weir_proctime()`? Taken in a
/// processing-time source's partition before the clock is sent as its
/// watermark, it is at or after that watermark.
fn is_stamp(expr: &dyn PhysicalExpr) -> bool {
    expr.downcast_ref::<ScalarFunctionExpr>()
        .is_some_and(|f| f.name() == weir_runtime::proctime::FUNCTION)
}

/// The input column `expr` is, when it is a plain column.
fn column_index(expr: &dyn PhysicalExpr) -> Option<usize> {
    expr.downcast_ref::<Column>().map(Column::index)
}

#[cfg(test)]
mod tests {
    use super::super::plan_stream;
    use super::super::tests::{bids_inputs, windowed_bids_plan};

    /// The name of the output column of `sql` (over the stream `bids`,
    /// whose watermark is over `date_time`; `eowc`: EMIT ON WINDOW CLOSE)
    /// that the view's watermark is over, if any.
    async fn event_time_of(sql: &str, eowc: bool) -> Option<String> {
        let (windows, plan) = windowed_bids_plan(sql).await;
        let inputs = bids_inputs();
        let uses = super::super::QueryUses {
            windows: &windows,
            ..Default::default()
        };
        let (plan, _) = plan_stream(&plan, uses, eowc, 2, &inputs).expect("stream plan");
        plan.event_time
            .map(|c| plan.output_schema.field(c).name().clone())
    }

    #[tokio::test]
    async fn a_filter_or_projection_keeps_the_streams_event_time_column() {
        assert_eq!(
            event_time_of(
                "SELECT price, date_time AS at, auction FROM bids WHERE price > 10",
                false
            )
            .await
            .as_deref(),
            Some("at")
        );
        // A tumbling window's end over it is later still.
        assert_eq!(
            event_time_of(
                "SELECT auction, window_end FROM TUMBLE(bids, date_time, INTERVAL '1 minute')",
                false
            )
            .await
            .as_deref(),
            Some("window_end")
        );
    }

    #[tokio::test]
    async fn a_hopping_or_cumulating_windows_end_is_watermarked_and_its_start_is_not() {
        for sql in [
            "SELECT auction, window_end FROM HOP(bids, date_time, INTERVAL '10 seconds', INTERVAL '1 minute')",
            "SELECT window_start, auction, window_end AS closes FROM HOP(bids, date_time, INTERVAL '10 seconds', INTERVAL '1 minute')",
            "SELECT auction, window_end FROM CUMULATE(bids, date_time, INTERVAL '10 seconds', INTERVAL '1 minute')",
        ] {
            let column = event_time_of(sql, false).await;
            assert!(
                matches!(column.as_deref(), Some("window_end" | "closes")),
                "{sql}: {column:?}"
            );
        }
        assert_eq!(
            event_time_of(
                "SELECT auction, window_start FROM HOP(bids, date_time, INTERVAL '10 seconds', INTERVAL '1 minute')",
                false
            )
            .await,
            None
        );
    }

    #[tokio::test]
    async fn a_computed_time_or_a_dropped_one_gives_no_watermark() {
        for sql in [
            "SELECT auction, date_time + INTERVAL '1 second' AS later FROM bids",
            "SELECT auction, price FROM bids",
            "SELECT auction, window_start FROM TUMBLE(bids, date_time, INTERVAL '1 minute')",
        ] {
            assert_eq!(event_time_of(sql, false).await, None, "{sql}");
        }
    }

    #[tokio::test]
    async fn a_windowed_aggregates_window_end_is_its_event_time() {
        let sql = "SELECT window_start, window_end AS closes, count(*) AS n \
                   FROM TUMBLE(bids, date_time, INTERVAL '1 minute') GROUP BY window_start, window_end";
        assert_eq!(event_time_of(sql, true).await.as_deref(), Some("closes"));
        // Updating (not EOWC): its rows of a window change only until the
        // watermark passes the window's end, so it still has one.
        assert_eq!(event_time_of(sql, false).await.as_deref(), Some("closes"));
        let sessions = "SELECT bidder, window_start, window_end, count(*) AS n \
                        FROM SESSION(bids, date_time, INTERVAL '10 seconds') GROUP BY bidder, window_start, window_end";
        assert_eq!(
            event_time_of(sessions, true).await.as_deref(),
            Some("window_end")
        );
    }

    #[tokio::test]
    async fn over_processing_time_the_stamp_and_a_windows_end_are_watermarked() {
        // The stamp is taken before the clock is sent as the watermark.
        assert_eq!(
            event_time_of(
                "SELECT auction, proctime FROM TUMBLE(bids, PROCTIME(), INTERVAL '1 minute')",
                false
            )
            .await
            .as_deref(),
            Some("proctime")
        );
        // The stream's own event time has no watermark in such a view.
        assert_eq!(
            event_time_of(
                "SELECT date_time, proctime FROM TUMBLE(bids, PROCTIME(), INTERVAL '1 minute')",
                false
            )
            .await
            .as_deref(),
            Some("proctime")
        );
        let sql = "SELECT window_start, window_end AS closes, count(*) AS n \
                   FROM TUMBLE(bids, PROCTIME(), INTERVAL '1 minute') GROUP BY window_start, window_end";
        assert_eq!(event_time_of(sql, true).await.as_deref(), Some("closes"));
    }

    #[tokio::test]
    async fn a_window_start_a_plain_group_by_and_a_join_give_none() {
        for sql in [
            "SELECT window_start, count(*) AS n FROM TUMBLE(bids, date_time, INTERVAL '1 minute') GROUP BY window_start",
            "SELECT auction, max(date_time) AS last_at FROM bids GROUP BY auction",
            "SELECT a.auction, a.date_time FROM bids a JOIN bids b ON a.auction = b.auction",
        ] {
            assert_eq!(event_time_of(sql, false).await, None, "{sql}");
        }
    }

    #[tokio::test]
    async fn an_outer_interval_join_offers_only_the_time_its_padded_rows_keep() {
        let within = "ON a.auction = b.auction AND b.date_time BETWEEN a.date_time - INTERVAL '1 second' AND a.date_time + INTERVAL '1 second'";
        let select = "SELECT a.date_time AS a_at, b.date_time AS b_at FROM bids a";
        for (join, expected) in [
            ("JOIN", Some("a_at")),
            ("LEFT JOIN", Some("a_at")),
            ("RIGHT JOIN", Some("b_at")),
            ("FULL JOIN", None),
        ] {
            let sql = format!("{select} {join} bids b {within}");
            assert_eq!(
                event_time_of(&sql, false).await.as_deref(),
                expected,
                "{sql}"
            );
        }
    }
}
