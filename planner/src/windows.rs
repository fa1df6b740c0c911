//! Window table functions: `TUMBLE`, `HOP`, `CUMULATE`, `SESSION`.
//!
//! ```sql
//! FROM TUMBLE(bids, date_time, INTERVAL '10 seconds')
//! FROM HOP(bids, date_time, INTERVAL '5 seconds', INTERVAL '10 seconds')      -- slide, size
//! FROM CUMULATE(bids, date_time, INTERVAL '2 seconds', INTERVAL '10 seconds') -- step, size
//! FROM SESSION(bids, date_time, INTERVAL '30 seconds')                        -- gap
//! ```
//! Each adds `window_start` and `window_end`. They are rewritten into plain
//! SQL before DataFusion plans the query: tumbling windows are `weir_window_start` / `weir_window_end`,
//! hopping and cumulating windows `unnest` a list of window bounds computed
//! by `weir_runtime::windows` (the same functions the stream operators use).
//! Sessions differ by mode: a batch query computes them with window
//! functions over the `GROUP BY` keys; a streaming query leaves the bounds to
//! the session operator, which merges sessions as rows arrive.
//!
//! # NULL times
//! A row whose time is NULL is in no window, in a batch query as in a
//! materialized view, for every window function and emission mode. The
//! stream's window aggregates skip such rows themselves; a batch query
//! filters them out before the windows are computed (`WHERE time IS NOT
//! NULL` on the window function's source), where `TUMBLE` and `SESSION`
//! would otherwise put them in a group whose `window_start` and
//! `window_end` are NULL. Why, what other systems do, and what is left:
//! docs/design/0002-streaming-engine.md, "NULL event times".
//!
//! # Processing time
//! `PROCTIME()` as the time argument (`TUMBLE(bid, PROCTIME(), INTERVAL
//! '10 seconds')`) windows rows by when the view's job read them. Only a
//! materialized view's query may: its rows are first stamped, `SELECT *,
//! weir_proctime() AS proctime FROM bid`, in the source's own operators
//! (`weir_runtime::proctime`), and the windows are computed over that
//! `proctime` column, which the window function's rows carry as Flink's
//! carry their time attribute. The stream plan then watermarks the source
//! by the clock (`WindowUse::processing_time`). Anywhere else `PROCTIME()`
//! is refused with 0A000: a batch query has no processing time to window
//! by, and a stamp outside a window would be a value no watermark covers.

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectName, Query,
    SetExpr, Statement, TableAlias, TableFactor, Value,
};
use weir_runtime::windows::interval_nanos;

use crate::error::{PlanError, Result};

/// Which window, with its sizes in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowTvf {
    /// Fixed, non-overlapping windows.
    Tumble {
        /// The window size in microseconds.
        size: i64,
    },
    /// Overlapping windows of `size` every `slide`.
    Hop {
        /// How far each window starts after the last, in microseconds.
        slide: i64,
        /// The window size in microseconds.
        size: i64,
    },
    /// Windows growing by `step` up to `size`, then starting over.
    Cumulate {
        /// How much each window grows by, in microseconds.
        step: i64,
        /// The window size in microseconds.
        size: i64,
    },
    /// Activity with no pause longer than `gap`: rows exactly `gap` apart
    /// are one session, as in Flink (touching session windows merge).
    Session {
        /// The session gap in microseconds.
        gap: i64,
    },
}

impl WindowTvf {
    /// A short description for EXPLAIN.
    pub fn describe(&self) -> String {
        let d = |ns: i64| format_duration(ns);
        match self {
            WindowTvf::Tumble { size } => format!("tumble(size={})", d(*size)),
            WindowTvf::Hop { slide, size } => {
                format!("hop(slide={}, size={})", d(*slide), d(*size))
            }
            WindowTvf::Cumulate { step, size } => {
                format!("cumulate(step={}, size={})", d(*step), d(*size))
            }
            WindowTvf::Session { gap } => format!("session(gap={})", d(*gap)),
        }
    }
}

/// A duration in the largest unit that divides it.
pub fn format_duration(ns: i64) -> String {
    for (unit, per) in [
        ("h", 3_600_000_000_000i64),
        ("min", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if ns % per == 0 {
            return format!("{}{unit}", ns / per);
        }
    }
    format!("{ns}ns")
}

/// A window function used in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowUse {
    /// The window.
    pub tvf: WindowTvf,
    /// The table or stream it reads.
    pub source: String,
    /// The event-time column (`proctime` over processing time).
    pub time_column: String,
    /// Over processing time (`PROCTIME()`): the rows are stamped as they
    /// enter the job and the stream's watermark is the clock.
    pub processing_time: bool,
}

/// The column a window over `PROCTIME()` stamps its rows with, and which its
/// rows carry beside `window_start` and `window_end`.
pub const PROCTIME_COLUMN: &str = "proctime";

/// How the query will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A bounded query (`SELECT`).
    Batch,
    /// A materialized view's continuous query.
    Stream,
}

/// Rewrite every window function in `statement`, in subqueries too;
/// returns what was found.
pub fn rewrite_windows(statement: &mut Statement, mode: Mode) -> Result<Vec<WindowUse>> {
    let mut rewriter = Rewriter {
        mode,
        found: Vec::new(),
    };
    match datafusion::sql::sqlparser::ast::VisitMut::visit(statement, &mut rewriter) {
        std::ops::ControlFlow::Break(err) => Err(err),
        std::ops::ControlFlow::Continue(()) => Ok(rewriter.found),
    }
}

struct Rewriter {
    mode: Mode,
    found: Vec<WindowUse>,
}

impl datafusion::sql::sqlparser::ast::VisitorMut for Rewriter {
    type Break = PlanError;

    // Each query rewrites the window functions in its own FROM clauses; the
    // visitor then walks into every nested query (FROM, WHERE, SELECT list).
    fn pre_visit_query(&mut self, query: &mut Query) -> std::ops::ControlFlow<PlanError> {
        match rewrite_set_expr(&mut query.body, self.mode, &mut self.found) {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(err) => std::ops::ControlFlow::Break(err),
        }
    }

    // A window function's `PROCTIME()` was rewritten before the visitor
    // gets to its expressions: one still here is somewhere else.
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> std::ops::ControlFlow<PlanError> {
        if is_proctime(expr) {
            return std::ops::ControlFlow::Break(PlanError::Unsupported {
                what: "PROCTIME() outside a window function's time argument".into(),
                hint: Some(PROCTIME_HINT.into()),
            });
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// How `PROCTIME()` is used, for the refusals of its other uses.
pub const PROCTIME_HINT: &str = "processing time windows a materialized view's rows by when its job reads them: use it as a window function's time argument in CREATE MATERIALIZED VIEW, as in TUMBLE(stream, PROCTIME(), INTERVAL '10 seconds')";

/// Is `expr` a call of `PROCTIME()` (any case, no arguments)?
pub fn is_proctime(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(f)
    if f.name.to_string().eq_ignore_ascii_case("proctime")
        && match &f.args {
            FunctionArguments::None => true,
            FunctionArguments::List(list) => list.args.is_empty(),
            FunctionArguments::Subquery(_) => false,
        })
}

fn rewrite_set_expr(body: &mut SetExpr, mode: Mode, found: &mut Vec<WindowUse>) -> Result<()> {
    match body {
        SetExpr::Select(select) => {
            let keys = group_keys(&select.group_by);
            for table in &mut select.from {
                rewrite_factor(&mut table.relation, &keys, mode, found)?;
                for join in &mut table.joins {
                    rewrite_factor(&mut join.relation, &keys, mode, found)?;
                }
            }
            Ok(())
        }
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expr(left, mode, found)?;
            rewrite_set_expr(right, mode, found)
        }
        // A parenthesized query is a query of its own: the visitor gets there.
        _ => Ok(()),
    }
}

/// The plain column names in a GROUP BY, less the window bounds: a session's
/// partition keys.
fn group_keys(group_by: &GroupByExpr) -> Vec<String> {
    let GroupByExpr::Expressions(exprs, _) = group_by else {
        return Vec::new();
    };
    exprs
        .iter()
        .filter_map(|e| match e {
            Expr::Identifier(i) => Some(i.clone()),
            Expr::CompoundIdentifier(parts) => parts.last().cloned(),
            _ => None,
        })
        .filter(|i| {
            let name = i.value.to_lowercase();
            name != "window_start" && name != "window_end"
        })
        .map(|i| i.to_string())
        .collect()
}

fn rewrite_factor(
    factor: &mut TableFactor,
    keys: &[String],
    mode: Mode,
    found: &mut Vec<WindowUse>,
) -> Result<()> {
    match factor {
        TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } => {
            let function = name.to_string().to_uppercase();
            if !matches!(function.as_str(), "TUMBLE" | "HOP" | "CUMULATE" | "SESSION") {
                return Ok(());
            }
            let args: Vec<&Expr> = args
                .args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                    other => Err(PlanError::Invalid(format!(
                        "{function}: unexpected argument {other}"
                    ))),
                })
                .collect::<Result<_>>()?;
            let (window, source, time) = window_of(&function, &args)?;
            let processing_time = time.is_none();
            // Over processing time the rows are stamped first, and the
            // windows computed over the stamp.
            let (from, time) = match time {
                Some(time) => (source.clone(), time),
                None if mode == Mode::Batch => {
                    return Err(PlanError::Unsupported {
                        what: format!(
                            "{function} over PROCTIME() in a query that is not a materialized view's"
                        ),
                        hint: Some(format!(
                            "a bounded query has no processing time to window by; {PROCTIME_HINT}, or window by an event-time column"
                        )),
                    });
                }
                None => (
                    format!(
                        "(SELECT *, {}() AS {PROCTIME_COLUMN} FROM {source})",
                        weir_runtime::proctime::FUNCTION
                    ),
                    PROCTIME_COLUMN.to_string(),
                ),
            };
            let source_name = source.clone();
            // A row whose time is NULL is in no window (module docs, "NULL
            // times"). A stream's operators skip such rows themselves; a
            // batch query drops them here, before any window is computed.
            let source = match mode {
                Mode::Batch => format!("{from} WHERE {time} IS NOT NULL"),
                Mode::Stream => from,
            };
            let sql = match (window, mode) {
                (WindowTvf::Tumble { size }, _) => format!(
                    "SELECT *, weir_window_start({time}, {size}) AS window_start, weir_window_end({time}, {size}) AS window_end FROM {source}"
                ),
                (WindowTvf::Hop { slide, size }, _) => format!(
                    "SELECT *, weir_add_nanos(window_start, {size}) AS window_end \
                     FROM (SELECT *, unnest(weir_hop_starts({time}, {slide}, {size})) AS window_start FROM {source})"
                ),
                (WindowTvf::Cumulate { step, size }, _) => format!(
                    "SELECT * EXCLUDE (window_end), weir_window_start({time}, {size}) AS window_start, window_end \
                     FROM (SELECT *, unnest(weir_cumulate_ends({time}, {step}, {size})) AS window_end FROM {source})"
                ),
                (WindowTvf::Session { .. }, Mode::Stream) => {
                    format!("SELECT *, {time} AS window_start, {time} AS window_end FROM {source}")
                }
                (WindowTvf::Session { gap }, Mode::Batch) => {
                    let partition = if keys.is_empty() {
                        String::new()
                    } else {
                        format!("PARTITION BY {}", keys.join(", "))
                    };
                    let with_sid = if keys.is_empty() {
                        "PARTITION BY __weir_sid".to_string()
                    } else {
                        format!("{partition}, __weir_sid")
                    };
                    format!(
                        "SELECT * EXCLUDE (__weir_sid), \
                           min({time}) OVER ({with_sid}) AS window_start, \
                           max({time}) OVER ({with_sid}) + INTERVAL '{gap} nanoseconds' AS window_end \
                         FROM (SELECT * EXCLUDE (__weir_new), \
                                 sum(__weir_new) OVER ({partition} ORDER BY {time} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __weir_sid \
                               FROM (SELECT *, CASE WHEN weir_epoch_nanos({time}) - lag(weir_epoch_nanos({time})) OVER ({partition} ORDER BY {time}) <= {gap} \
                                                 THEN 0 ELSE 1 END AS __weir_new \
                                     FROM {source}))"
                    )
                }
            };
            // Every node of the generated query points at the window
            // function in the user's text, so an error inside it (a missing
            // stream or column) is reported there.
            let span = datafusion::sql::sqlparser::ast::Spanned::span(&*name);
            let Some(Statement::Query(subquery)) = parse_with_span(&sql, span)? else {
                return Err(PlanError::Invalid(format!("could not rewrite {function}")));
            };
            let source = source_name;
            let alias = alias.clone().unwrap_or_else(|| TableAlias {
                explicit: true,
                name: Ident::new(
                    source
                        .rsplit('.')
                        .next()
                        .unwrap_or(&source)
                        .trim_matches('"'),
                ),
                columns: Vec::new(),
                at: None,
            });
            found.push(WindowUse {
                tvf: window,
                source: source.clone(),
                time_column: time.trim_matches('"').to_string(),
                processing_time,
            });
            *factor = TableFactor::Derived {
                lateral: false,
                subquery,
                alias: Some(alias),
                sample: None,
            };
            Ok(())
        }
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            rewrite_factor(&mut table_with_joins.relation, keys, mode, found)?;
            for join in &mut table_with_joins.joins {
                rewrite_factor(&mut join.relation, keys, mode, found)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn parse_with_span(
    sql: &str,
    span: datafusion::sql::sqlparser::tokenizer::Span,
) -> Result<Option<Statement>> {
    // The generated SQL uses `SELECT * EXCLUDE (...)`, which the generic
    // dialect has and the Postgres one lacks.
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use datafusion::sql::sqlparser::tokenizer::{TokenWithSpan, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| PlanError::Invalid(format!("could not rewrite a window function: {e}")))?
        .into_iter()
        .map(|token| TokenWithSpan { token, span })
        .collect();
    let mut statements = Parser::new(&GenericDialect {})
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| PlanError::Invalid(format!("could not rewrite a window function: {e}")))?;
    Ok(statements.pop())
}

/// Read a window function's arguments: (window, source, time column; `None`
/// for `PROCTIME()`).
fn window_of(function: &str, args: &[&Expr]) -> Result<(WindowTvf, String, Option<String>)> {
    let expected = match function {
        "TUMBLE" | "SESSION" => 3,
        _ => 4,
    };
    if args.len() != expected {
        let shape = match function {
            "TUMBLE" => "TUMBLE(stream, time_column, size)",
            "HOP" => "HOP(stream, time_column, slide, size)",
            "CUMULATE" => "CUMULATE(stream, time_column, step, size)",
            _ => "SESSION(stream, time_column, gap)",
        };
        return Err(PlanError::Invalid(format!(
            "{function} takes {expected} arguments: {shape}"
        )));
    }
    let source = match unwrap_keyword(args[0]) {
        Expr::Identifier(i) => i.to_string(),
        Expr::CompoundIdentifier(parts) => ObjectName::from(parts.clone()).to_string(),
        other => {
            return Err(PlanError::Invalid(format!(
                "{function}: the first argument must name a stream or table, not {other}"
            )));
        }
    };
    let time = match unwrap_keyword(args[1]) {
        Expr::Identifier(i) => Some(i.to_string()),
        proctime if is_proctime(proctime) => None,
        other => {
            return Err(PlanError::Invalid(format!(
                "{function}: the second argument must be the time column or PROCTIME(), not {other}"
            )));
        }
    };
    let interval = |i: usize| interval_of(function, args[i]);
    let window = match function {
        "TUMBLE" => WindowTvf::Tumble { size: interval(2)? },
        "HOP" => {
            let (slide, size) = (interval(2)?, interval(3)?);
            if size % slide != 0 {
                return Err(PlanError::Invalid(
                    "HOP: the size must be a multiple of the slide".into(),
                ));
            }
            WindowTvf::Hop { slide, size }
        }
        "CUMULATE" => {
            let (step, size) = (interval(2)?, interval(3)?);
            if size % step != 0 {
                return Err(PlanError::Invalid(
                    "CUMULATE: the size must be a multiple of the step".into(),
                ));
            }
            WindowTvf::Cumulate { step, size }
        }
        _ => WindowTvf::Session { gap: interval(2)? },
    };
    Ok((window, source, time))
}

/// `DESCRIPTOR(ts)` and `TABLE t` (Flink's spelling) mean `ts` and `t`.
fn unwrap_keyword(expr: &Expr) -> &Expr {
    if let Expr::Function(f) = expr
        && f.name.to_string().eq_ignore_ascii_case("descriptor")
        && let FunctionArguments::List(list) = &f.args
        && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))] = list.args.as_slice()
    {
        return inner;
    }
    expr
}

fn interval_of(function: &str, expr: &Expr) -> Result<i64> {
    let text = match expr {
        Expr::Interval(interval) => {
            let value = match interval.value.as_ref() {
                Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                other => other.to_string(),
            };
            match &interval.leading_field {
                Some(field) => format!("{value} {field}"),
                None => value,
            }
        }
        other => {
            return Err(PlanError::Invalid(format!(
                "{function}: expected an INTERVAL, got {other}"
            )));
        }
    };
    interval_nanos(&text).map_err(|e| PlanError::Invalid(format!("{function}: {}", e.message())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn rewrite(sql: &str, mode: Mode) -> (String, Vec<WindowUse>) {
        let mut statement = parse(sql).expect("parse").remove(0);
        let found = rewrite_windows(&mut statement, mode).expect("rewrite");
        (statement.to_string(), found)
    }

    #[test]
    fn tumble_becomes_window_bounds() {
        let (sql, found) = rewrite(
            "SELECT auction, count(*) FROM TUMBLE(bids, date_time, INTERVAL '10 seconds') GROUP BY auction, window_start",
            Mode::Batch,
        );
        assert!(
            sql.contains("weir_window_start(date_time, 10000000000) AS window_start"),
            "{sql}"
        );
        assert!(sql.contains(") AS bids GROUP BY"), "{sql}");
        assert_eq!(
            found[0].tvf,
            WindowTvf::Tumble {
                size: 10_000_000_000
            }
        );
        assert_eq!(found[0].source, "bids");
    }

    #[test]
    fn proctime_stamps_the_rows_of_a_views_window_and_is_refused_elsewhere() {
        let (sql, found) = rewrite(
            "SELECT bidder, count(*) FROM TUMBLE(bid, PROCTIME(), INTERVAL '10' SECOND) GROUP BY bidder, window_start",
            Mode::Stream,
        );
        assert!(
            sql.contains("(SELECT *, weir_proctime() AS proctime FROM bid)"),
            "{sql}"
        );
        assert!(
            sql.contains("weir_window_start(proctime, 10000000000) AS window_start"),
            "{sql}"
        );
        assert!(found[0].processing_time);
        assert_eq!(found[0].time_column, "proctime");
        assert_eq!(found[0].source, "bid");
        for (text, mode) in [
            (
                "SELECT count(*) FROM TUMBLE(bid, PROCTIME(), INTERVAL '10 seconds')",
                Mode::Batch,
            ),
            ("SELECT PROCTIME()", Mode::Batch),
            ("SELECT bidder, proctime() AS t FROM bid", Mode::Stream),
            (
                "SELECT * FROM bid WHERE date_time < PROCTIME()",
                Mode::Stream,
            ),
        ] {
            let mut statement = parse(text).expect("parse").remove(0);
            let err = rewrite_windows(&mut statement, mode).expect_err(text);
            assert!(
                matches!(err, PlanError::Unsupported { .. }),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn a_batch_window_leaves_out_rows_without_a_time_and_a_streams_is_left_to_its_operators() {
        for tvf in [
            "TUMBLE(bids, date_time, INTERVAL '10 seconds')",
            "HOP(bids, date_time, INTERVAL '5 seconds', INTERVAL '10 seconds')",
            "CUMULATE(bids, date_time, INTERVAL '5 seconds', INTERVAL '10 seconds')",
            "SESSION(bids, date_time, INTERVAL '3 seconds')",
        ] {
            let text = format!(
                "SELECT bidder, window_start, count(*) FROM {tvf} GROUP BY bidder, window_start"
            );
            let (batch, _) = rewrite(&text, Mode::Batch);
            assert_eq!(
                batch
                    .matches("FROM bids WHERE date_time IS NOT NULL")
                    .count(),
                1,
                "{batch}"
            );
            let (stream, _) = rewrite(&text, Mode::Stream);
            assert!(!stream.contains("IS NOT NULL"), "{stream}");
        }
    }

    #[test]
    fn bad_window_arguments_say_what_is_expected() {
        let mut statement =
            parse("SELECT * FROM HOP(bids, ts, INTERVAL '3 seconds', INTERVAL '10 seconds')")
                .expect("parse")
                .remove(0);
        let err = rewrite_windows(&mut statement, Mode::Batch).expect_err("not a multiple");
        assert_eq!(
            err.to_string(),
            "HOP: the size must be a multiple of the slide"
        );
    }
}
