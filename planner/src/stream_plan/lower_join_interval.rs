//! Finding an interval join: an inner equi-join of two append-only streams
//! whose condition also bounds the distance of their event times,
//! `b.ts BETWEEN a.ts - INTERVAL 'x' AND a.ts + INTERVAL 'y'` (or the same
//! with `>=` / `<=` / `>` / `<`, either side first). Such a join keeps each
//! row only until the watermark makes it unmatchable, and forwards a
//! watermark (`operators::interval_join`).
//!
//! A window join (both inputs windowed by the same TUMBLE, HOP or
//! CUMULATE, joined on the window) is one too: its equal window ends are a
//! zero-wide interval on them, so each side's rows are dropped once the
//! other side's watermark passes their window's end.
//!
//! Only the inputs' event-time columns and window ends over them (TUMBLE,
//! HOP, CUMULATE) count ([`time_columns`]): a bound on another column says
//! nothing about what the watermark has made late. A join without both
//! bounds stays a regular join.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchemaRef, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use datafusion::physical_expr::utils::collect_columns;
use weir_runtime::plan::{IntervalBounds, Side};

use super::nodes::{StreamFilter, StreamNode, StreamProject, StreamUnnest};

/// The time bounds that `predicate` (over the join's output, left columns
/// first; the filter right above the join, if any) and the join's equal
/// keys `on` put on a time column of each input, if they bound one pair of
/// them on both sides. `times` are each input's time columns
/// ([`time_columns`]).
pub(super) fn interval_bounds(
    predicate: Option<&Expr>,
    on: &[(Expr, Expr)],
    schemas: &[DFSchemaRef; 2],
    output: &DFSchemaRef,
    times: &[Vec<usize>; 2],
) -> Option<IntervalBounds> {
    let left_width = schemas[0].fields().len();
    for &left_time in &times[0] {
        for &right_time in &times[1] {
            let time_of = TimeOf {
                output,
                left_width,
                times: [left_time, right_time],
            };
            let mut found: Vec<(bool, i64)> = predicate
                .map(|p| {
                    split_conjunction(p)
                        .into_iter()
                        .flat_map(|c| time_of.bounds(c))
                        .collect()
                })
                .unwrap_or_default();
            // Equal time columns (a window join's window ends): a zero-wide
            // interval.
            let is_time = |expr: &Expr, side: usize, time: usize| matches!(expr, Expr::Column(c) if schemas[side].index_of_column(c).ok() == Some(time));
            if on
                .iter()
                .any(|(l, r)| is_time(l, 0, left_time) && is_time(r, 1, right_time))
            {
                found.extend([(true, 0), (false, 0)]);
            }
            let lower = found
                .iter()
                .filter(|(at_least, _)| *at_least)
                .map(|b| b.1)
                .max();
            let upper = found
                .iter()
                .filter(|(at_least, _)| !*at_least)
                .map(|b| b.1)
                .min();
            if let (Some(lower), Some(upper)) = (lower, upper) {
                return Some(IntervalBounds {
                    time: [left_time, right_time],
                    lower,
                    upper,
                });
            }
        }
    }
    None
}

/// The conjuncts of `predicate` (over the join's output, left columns
/// first) that are not bounds on `bounds`' two time columns: what an outer
/// interval join could not enforce (its operator applies the bounds alone).
pub(super) fn beyond_bounds(
    predicate: &Expr,
    schemas: &[DFSchemaRef; 2],
    output: &DFSchemaRef,
    bounds: &IntervalBounds,
) -> Vec<Expr> {
    let time_of = TimeOf {
        output,
        left_width: schemas[0].fields().len(),
        times: bounds.time,
    };
    split_conjunction(predicate)
        .into_iter()
        .filter(|c| {
            let parts = match c {
                Expr::Between(Between { negated: false, .. }) => 2,
                Expr::BinaryExpr(_) => 1,
                _ => return true,
            };
            time_of.bounds(c).len() != parts
        })
        .cloned()
        .collect()
}

/// Resolves columns of the join's output to the inputs' time columns.
struct TimeOf<'a> {
    output: &'a DFSchemaRef,
    left_width: usize,
    times: [usize; 2],
}

impl TimeOf<'_> {
    /// The bounds one conjunct puts on `right.time - left.time`: `(true, c)`
    /// for "at least c", `(false, c)` for "at most c".
    fn bounds(&self, conjunct: &Expr) -> Vec<(bool, i64)> {
        match conjunct {
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => [
                self.compare(expr, Operator::GtEq, low),
                self.compare(expr, Operator::LtEq, high),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                self.compare(left, *op, right).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// `x op y` as a bound on `right.time - left.time`, when `x` and `y` are
    /// each one side's time plus a constant, one of each side.
    fn compare(&self, x: &Expr, op: Operator, y: &Expr) -> Option<(bool, i64)> {
        let (sx, cx) = self.shifted_time(x)?;
        let (sy, cy) = self.shifted_time(y)?;
        // x >= y with x = Tx + cx, y = Ty + cy: Tx - Ty >= cy - cx.
        let (at_least, strict) = match op {
            Operator::GtEq => (true, false),
            Operator::Gt => (true, true),
            Operator::LtEq => (false, false),
            Operator::Lt => (false, true),
            _ => return None,
        };
        let c = cy.checked_sub(cx)?;
        // Times are whole nanoseconds: a strict bound is the next one.
        let c = match (strict, at_least) {
            (false, _) => c,
            (true, true) => c.checked_add(1)?,
            (true, false) => c.checked_sub(1)?,
        };
        match (sx, sy) {
            // right - left against c.
            (1, 0) => Some((at_least, c)),
            // left - right against c: right - left against -c, reversed.
            (0, 1) => Some((!at_least, c.checked_neg()?)),
            _ => None,
        }
    }

    /// `expr` as (side, constant) when it is that side's time column plus
    /// or minus a constant interval.
    fn shifted_time(&self, expr: &Expr) -> Option<(usize, i64)> {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                match (op, self.time(left), self.time(right)) {
                    (Operator::Plus, Some(side), None) => Some((side, nanos(right)?)),
                    (Operator::Plus, None, Some(side)) => Some((side, nanos(left)?)),
                    (Operator::Minus, Some(side), None) => {
                        Some((side, nanos(right)?.checked_neg()?))
                    }
                    _ => None,
                }
            }
            other => Some((self.time(other)?, 0)),
        }
    }

    /// The side whose time column `expr` is, if it is one.
    fn time(&self, expr: &Expr) -> Option<usize> {
        let column = match expr {
            Expr::Column(column) => column,
            Expr::Cast(cast) if matches!(cast.field.data_type(), DataType::Timestamp(..)) => {
                return self.time(&cast.expr);
            }
            _ => return None,
        };
        let index = self.output.index_of_column(column).ok()?;
        let (side, at) = if index < self.left_width {
            (0, index)
        } else {
            (1, index - self.left_width)
        };
        (self.times[side] == at).then_some(side)
    }
}

/// A constant interval or duration in nanoseconds (none for months, which
/// have no fixed length).
fn nanos(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    const DAY: i64 = 86_400_000_000_000;
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => i64::from(v.days)
            .checked_mul(DAY)?
            .checked_add(v.nanoseconds),
        ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days)
            .checked_mul(DAY)?
            .checked_add(i64::from(v.milliseconds).checked_mul(1_000_000)?),
        ScalarValue::DurationNanosecond(Some(v)) => Some(*v),
        ScalarValue::DurationMicrosecond(Some(v)) => v.checked_mul(1_000),
        ScalarValue::DurationMillisecond(Some(v)) => v.checked_mul(1_000_000),
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

/// The columns of `node`'s rows that an interval join may take as its
/// time: its source's event-time column (the one its watermark is over),
/// passed through the stateless operators under the join, and a window's
/// end over it: a tumbling window's (`weir_window_end`), a cumulating
/// one's (the element of `weir_cumulate_ends`), or a hopping one's (its
/// start, the element of `weir_hop_starts`, plus the same size). All are
/// at or after the row's event time, which is what the join's cleanup
/// needs (`operators::interval_join`): a row on time is never judged late
/// by them, and once a side's watermark passes one, no later row of that
/// side carries it. A hopping window's start is not one: it is before
/// the row's time.
pub(super) fn time_columns(node: &StreamNode) -> Vec<usize> {
    timed_columns(node)
        .into_iter()
        .filter(|(_, timing)| *timing == Timing::Time)
        .map(|(i, _)| i)
        .collect()
}

/// What a column of a join input's rows says about the row's event time
/// ([`timed_columns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timing {
    /// At or after it: a time the join may clean by.
    Time,
    /// The starts of the hopping windows `size` nanoseconds wide that hold
    /// it (`weir_hop_starts`), a list.
    HopStarts { size: i64 },
    /// One of those starts, unnested: before the time, but the start plus
    /// `size` (its window's end) is after it.
    HopStart { size: i64 },
    /// The ends of the cumulating windows that hold it
    /// (`weir_cumulate_ends`), a list, each after the time.
    CumulateEnds,
}

/// The columns of `node`'s rows that [`Timing`] describes, with what they
/// are, in column order: [`time_columns`] keeps the times; the others are
/// the steps on the way to a HOP or CUMULATE window's end (a projection
/// computes the list, an unnest its element, a projection the end).
fn timed_columns(node: &StreamNode) -> Vec<(usize, Timing)> {
    match node {
        StreamNode::Source(source) => source
            .event_time_columns()
            .into_iter()
            .map(|c| (c, Timing::Time))
            .collect(),
        StreamNode::Filter(StreamFilter { input, .. }) => timed_columns(input),
        // The output has the input's columns, the list replaced by its
        // element in place.
        StreamNode::Unnest(StreamUnnest { input, column, .. }) => timed_columns(input)
            .into_iter()
            .filter_map(|(c, timing)| {
                if c != *column {
                    return Some((c, timing));
                }
                match timing {
                    Timing::HopStarts { size } => Some((c, Timing::HopStart { size })),
                    Timing::CumulateEnds => Some((c, Timing::Time)),
                    Timing::Time | Timing::HopStart { .. } => None,
                }
            })
            .collect(),
        StreamNode::Project(StreamProject { input, exprs, .. }) => {
            let Some(schema) = schema_of(input) else {
                return Vec::new();
            };
            let timed = timed_columns(input);
            // By name: the input's rows are an Arrow schema, without the
            // qualifiers a column reference carries.
            let timing_of = |e: &Expr| match e {
                Expr::Column(c) => {
                    let index = schema.index_of(&c.name).ok()?;
                    timed.iter().find(|(i, _)| *i == index).map(|(_, t)| *t)
                }
                _ => None,
            };
            exprs
                .iter()
                .enumerate()
                .filter_map(|(i, e)| {
                    let timing = match Expr::clone(e).unalias() {
                        column @ Expr::Column(_) => timing_of(&column),
                        Expr::ScalarFunction(f) => window_bound(f.func.name(), &f.args, &timing_of),
                        _ => None,
                    };
                    timing.map(|t| (i, t))
                })
                .collect()
        }
        StreamNode::HashJoin(_)
        | StreamNode::Aggregate(_)
        | StreamNode::TopN(_)
        | StreamNode::OverWindow(_) => Vec::new(),
    }
}

/// What the window function `name` over `args` computes, when it is one
/// of the window rewrite's (`crate::windows`) over a time column (or, for
/// `weir_add_nanos`, a hopping window's start plus its own size).
fn window_bound(
    name: &str,
    args: &[Expr],
    timing_of: &dyn Fn(&Expr) -> Option<Timing>,
) -> Option<Timing> {
    let over_time = || args.first().and_then(timing_of) == Some(Timing::Time);
    match name {
        "weir_window_end" if over_time() => Some(Timing::Time),
        "weir_cumulate_ends" if over_time() => Some(Timing::CumulateEnds),
        "weir_hop_starts" if over_time() => Some(Timing::HopStarts {
            size: constant(args.get(2)?)?,
        }),
        // Only the size the starts were computed with makes an end: a
        // start plus less could be before the row's time.
        "weir_add_nanos" => match args.first().and_then(timing_of)? {
            Timing::HopStart { size } if constant(args.get(1)?) == Some(size) => Some(Timing::Time),
            _ => None,
        },
        _ => None,
    }
}

/// A window rewrite's size argument: a BIGINT of nanoseconds.
fn constant(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(ScalarValue::Int64(Some(v)), _) => Some(*v),
        _ => None,
    }
}

/// The columns of `node`'s rows that an outer interval join under it
/// leaves NULL in its padded rows (the side it pads, and what is computed
/// from it). A window over one of them would put every padded row in a
/// window with no bounds, which a window aggregate drops and the batch
/// answer keeps (as a group of NULL bounds): [`refuse_padded_window`].
pub(super) fn padded_columns(node: &StreamNode) -> Vec<usize> {
    match node {
        StreamNode::HashJoin(join) if join.interval.is_some() => {
            let left_width = join.spec.inputs[0].fields().len();
            let right_width = join.spec.inputs[1].fields().len();
            let kind = join.spec.kind;
            let mut padded = Vec::new();
            if kind.preserves(Side::Right) {
                padded.extend(0..left_width);
            }
            if kind.preserves(Side::Left) {
                padded.extend(left_width..left_width + right_width);
            }
            padded
        }
        StreamNode::Filter(StreamFilter { input, .. })
        | StreamNode::Unnest(StreamUnnest { input, .. }) => padded_columns(input),
        StreamNode::Project(StreamProject {
            input, physical, ..
        }) => {
            let padded = padded_columns(input);
            if padded.is_empty() {
                return padded;
            }
            physical
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    collect_columns(e)
                        .iter()
                        .any(|c| padded.contains(&c.index()))
                })
                .map(|(i, _)| i)
                .collect()
        }
        StreamNode::Source(_)
        | StreamNode::HashJoin(_)
        | StreamNode::Aggregate(_)
        | StreamNode::TopN(_)
        | StreamNode::OverWindow(_) => Vec::new(),
    }
}

/// Refuse a window whose bounds are `window_columns` of `node`'s rows when
/// an outer interval join under it pads them with NULLs.
pub(super) fn refuse_padded_window(
    node: &StreamNode,
    window_columns: &[Option<usize>],
) -> crate::error::Result<()> {
    let padded = padded_columns(node);
    if window_columns.iter().flatten().any(|c| padded.contains(c)) {
        return Err(super::lowering::unsupported(
            "a window over the columns an outer join pads with NULLs",
            "a row the join pads has no time on that side, so it belongs to no window; window the time of the side whose rows are kept (the left input of a LEFT join, the right of a RIGHT join), or use an inner join",
        ));
    }
    Ok(())
}

/// The rows of a join input's node.
fn schema_of(node: &StreamNode) -> Option<datafusion::arrow::datatypes::SchemaRef> {
    match node {
        StreamNode::Source(source) => Some(source.schema.clone()),
        StreamNode::Filter(StreamFilter { input, .. }) => schema_of(input),
        StreamNode::Project(project) => Some(project.schema.clone()),
        StreamNode::Unnest(unnest) => Some(unnest.schema.clone()),
        StreamNode::HashJoin(_)
        | StreamNode::Aggregate(_)
        | StreamNode::TopN(_)
        | StreamNode::OverWindow(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::common::DFSchema;
    use datafusion::logical_expr::{col, lit};
    use datafusion::scalar::ScalarValue;

    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn output() -> DFSchemaRef {
        let side = |name: &str| {
            DFSchema::try_from_qualified_schema(
                name,
                &Schema::new(vec![
                    Field::new("k", DataType::Int64, true),
                    Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
                ]),
            )
            .expect("a side")
        };
        let mut schema = side("a");
        schema.merge(&side("b"));
        Arc::new(schema)
    }

    fn seconds(s: i64) -> Expr {
        lit(ScalarValue::new_interval_mdn(0, 0, s * SECOND))
    }

    fn inputs() -> [DFSchemaRef; 2] {
        let side = |name: &str| {
            Arc::new(
                DFSchema::try_from_qualified_schema(
                    name,
                    &Schema::new(vec![
                        Field::new("k", DataType::Int64, true),
                        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
                    ]),
                )
                .expect("a side"),
            )
        };
        [side("a"), side("b")]
    }

    fn within(
        predicate: Option<Expr>,
        on: &[(Expr, Expr)],
        times: [Vec<usize>; 2],
    ) -> Option<IntervalBounds> {
        interval_bounds(predicate.as_ref(), on, &inputs(), &output(), &times)
    }

    fn bounds(predicate: Expr) -> Option<(i64, i64)> {
        within(Some(predicate), &[], [vec![1], vec![1]])
            .map(|b| (b.lower / SECOND, b.upper / SECOND))
    }

    #[test]
    fn between_and_comparisons_bound_the_distance() {
        let between = col("b.ts").between(col("a.ts") - seconds(10), col("a.ts") + seconds(5));
        assert_eq!(bounds(between), Some((-10, 5)));
        // The same, written the other way round and with >= / <=.
        let compared = col("a.ts")
            .lt_eq(col("b.ts") + seconds(10))
            .and(col("b.ts").lt_eq(col("a.ts") + seconds(5)));
        assert_eq!(bounds(compared), Some((-10, 5)));
        assert_eq!(
            bounds(col("b.ts").between(col("a.ts"), col("a.ts") + seconds(3))),
            Some((0, 3))
        );
    }

    #[test]
    fn a_strict_bound_is_one_nanosecond_inside() {
        let predicate = col("b.ts")
            .gt(col("a.ts"))
            .and(col("b.ts").lt(col("a.ts") + seconds(1)));
        let b = within(Some(predicate), &[], [vec![1], vec![1]]).expect("bounds");
        assert_eq!((b.lower, b.upper), (1, SECOND - 1));
    }

    #[test]
    fn one_bound_or_other_columns_are_no_interval() {
        assert_eq!(bounds(col("b.ts").gt_eq(col("a.ts"))), None);
        assert_eq!(
            bounds(col("b.k").between(col("a.k") - lit(1i64), col("a.k") + lit(1i64))),
            None
        );
        let no_time = within(
            Some(col("b.ts").between(col("a.ts"), col("a.ts"))),
            &[],
            [vec![1], vec![]],
        );
        assert!(no_time.is_none());
    }

    #[test]
    fn what_an_outer_join_condition_holds_beyond_the_bounds() {
        let bounds = IntervalBounds {
            time: [1, 1],
            lower: -10 * SECOND,
            upper: 5 * SECOND,
        };
        let beyond = |predicate: Expr| beyond_bounds(&predicate, &inputs(), &output(), &bounds);
        let between = col("b.ts").between(col("a.ts") - seconds(10), col("a.ts") + seconds(5));
        assert!(beyond(between.clone()).is_empty());
        let compared = col("a.ts")
            .lt_eq(col("b.ts") + seconds(10))
            .and(col("b.ts").lt(col("a.ts") + seconds(6)));
        assert!(beyond(compared).is_empty());
        let other = col("b.k").gt(lit(3i64));
        assert_eq!(beyond(between.and(other.clone())), vec![other]);
        // A bound on one side's time alone bounds no distance.
        let one_side = col("b.ts").gt(col("b.ts") - seconds(1));
        assert_eq!(beyond(one_side.clone()), vec![one_side]);
    }

    /// The join of `sql` (a query over the stream `bids`, window
    /// functions allowed) as a view lowers it.
    async fn lowered(sql: &str) -> super::super::StreamMaterialize {
        let (windows, plan) = super::super::tests::windowed_bids_plan(sql).await;
        let uses = super::super::QueryUses {
            windows: &windows,
            ..Default::default()
        };
        super::super::lower_stream(&plan, uses, false, 2, &super::super::tests::bids_inputs())
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first join under `node`.
    fn join_in(node: &StreamNode) -> &super::super::nodes::StreamHashJoin {
        match node {
            StreamNode::HashJoin(join) => join,
            other => join_in(
                other
                    .inputs()
                    .first()
                    .unwrap_or_else(|| panic!("no join in {other:?}")),
            ),
        }
    }

    /// The names of the time columns of each side of the join of `sql`,
    /// and its bounds if it is an interval join.
    async fn join_times(sql: &str) -> ([Vec<String>; 2], Option<(i64, i64)>) {
        let plan = lowered(sql).await;
        let join = join_in(&plan.input);
        let names = |side: &StreamNode| {
            let schema = schema_of(side).expect("a join input's rows");
            time_columns(side)
                .into_iter()
                .map(|c| schema.field(c).name().clone())
                .collect::<Vec<_>>()
        };
        (
            [names(&join.left), names(&join.right)],
            join.interval
                .as_ref()
                .map(|i| (i.bounds.lower, i.bounds.upper)),
        )
    }

    const HOP: &str = "HOP(bids, date_time, INTERVAL '10 seconds', INTERVAL '1 minute')";
    const CUMULATE: &str = "CUMULATE(bids, date_time, INTERVAL '10 seconds', INTERVAL '1 minute')";

    #[tokio::test]
    async fn a_hop_or_cumulate_window_end_is_a_time_and_their_window_join_an_interval_join() {
        for tvf in [HOP, CUMULATE] {
            let sql = format!(
                "SELECT x.auction, x.window_start, x.window_end, y.price FROM {tvf} AS x JOIN {tvf} AS y \
                 ON x.auction = y.auction AND x.window_start = y.window_start AND x.window_end = y.window_end"
            );
            let (times, bounds) = join_times(&sql).await;
            for side in &times {
                assert!(
                    side.iter().any(|c| c == "window_end"),
                    "{tvf}: the window end is a time column: {times:?}"
                );
                assert!(
                    !side.iter().any(|c| c == "window_start"),
                    "{tvf}: a window start is not one: {times:?}"
                );
            }
            assert_eq!(bounds, Some((0, 0)), "{tvf}: a zero-wide interval");
        }
        // Equal ends alone are enough, as for TUMBLE.
        let (_, bounds) = join_times(&format!(
            "SELECT x.auction, y.price FROM {HOP} AS x JOIN {HOP} AS y \
             ON x.auction = y.auction AND x.window_end = y.window_end"
        ))
        .await;
        assert_eq!(bounds, Some((0, 0)));
    }

    #[tokio::test]
    async fn a_hop_start_or_a_start_plus_another_size_is_no_time() {
        // Joined on the hopping window's start alone: a start is before
        // its rows' times, so nothing the watermark passes says a window
        // is over. A regular join.
        let (times, bounds) = join_times(&format!(
            "SELECT x.auction, x.window_start, y.price FROM {HOP} AS x JOIN {HOP} AS y \
             ON x.auction = y.auction AND x.window_start = y.window_start"
        ))
        .await;
        assert_eq!(bounds, None, "{times:?}");
        assert!(
            times.iter().flatten().all(|c| c != "window_start"),
            "{times:?}"
        );
        // A start plus less than the window's size can be before a row's
        // time: not an end.
        let early = "SELECT auction, price, weir_add_nanos(window_start, 1000000000) AS early FROM";
        let (times, bounds) = join_times(&format!(
            "SELECT x.auction, y.price FROM ({early} {HOP}) AS x JOIN ({early} {HOP}) AS y \
             ON x.auction = y.auction AND x.early = y.early"
        ))
        .await;
        assert_eq!(bounds, None, "{times:?}");
        assert!(times.iter().flatten().all(|c| c != "early"), "{times:?}");
        // A join on a column that is no window bound stays regular too.
        let (_, bounds) = join_times(&format!(
            "SELECT x.auction, y.price FROM {CUMULATE} AS x JOIN {CUMULATE} AS y ON x.price = y.price"
        ))
        .await;
        assert_eq!(bounds, None);
    }

    #[test]
    fn equal_time_keys_are_a_zero_wide_interval() {
        let b = within(None, &[(col("a.ts"), col("b.ts"))], [vec![1], vec![1]]).expect("bounds");
        assert_eq!((b.lower, b.upper, b.time), (0, 0, [1, 1]));
        assert!(within(None, &[(col("a.k"), col("b.k"))], [vec![1], vec![1]]).is_none());
    }
}
