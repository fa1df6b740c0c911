//! Per-operator figures of a running job, for its page and its JSON: rows
//! in and out per second, watermark, state size and backpressure, read
//! from the runtime's `weir_operator_*` families (labelled `job`,
//! `operator`, `worker`) in `/metrics`.
//!
//! `/metrics` holds totals, as Prometheus wants (it takes `rate()` itself);
//! a page wants "now". [`Rates`] keeps each job's previous reading of the
//! counters and answers the difference over the time between two readings
//! at least [`MIN_INTERVAL`] apart: with the console polling every two
//! seconds, the rate of the last two seconds. Backpressure is that rate of
//! `weir_operator_backpressured_seconds_total`: the fraction of the last
//! interval a worker waited to send on a full channel, as Flink's
//! `backPressuredTimeMsPerSecond`, graded as Flink grades it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use utoipa::ToSchema;

use super::graph::{Graph, Sample};

/// Two readings of the counters closer than this give no new rate: the
/// previous one stands (a rate over a few milliseconds is noise).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Jobs whose last reading is kept; past it the readings start over.
const MAX_JOBS: usize = 1024;

/// One series: its family (without `weir_operator_`), operator and worker.
type Series = (String, String, i64);

/// What the runtime reports about one operator, over its workers (a
/// source's: its partitions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Figures {
    /// Workers (source partitions) it runs in.
    pub workers: usize,
    /// Rows into it since its job started, over its workers.
    pub rows_in: Option<u64>,
    /// Rows out of it, over its workers.
    pub rows_out: Option<u64>,
    /// Rows in per second over the last interval (none on a first reading).
    pub rows_in_per_second: Option<f64>,
    /// Rows out per second over the last interval.
    pub rows_out_per_second: Option<f64>,
    /// Its event-time watermark (RFC 3339): the minimum over its workers;
    /// none until each has one.
    pub watermark: Option<String>,
    /// Bytes of its state (Arrow bytes of its checkpoint chunks, as of
    /// the last barrier), over its workers; stateful operators only.
    pub state_bytes: Option<u64>,
    /// Keyed entries of its state, over its workers; stateful operators only.
    pub state_entries: Option<u64>,
    /// The fraction (0 to 1) of the last interval its most blocked worker
    /// waited to send on a full channel.
    pub backpressure: Option<f64>,
    /// `ok` (up to 10 %), `low` (up to 50 %) or `high`: Flink's grades.
    pub backpressure_level: Option<String>,
}

/// Each job's last reading of its counters, for rates.
#[derive(Debug, Default)]
pub struct Rates {
    readings: Mutex<HashMap<String, Reading>>,
}

#[derive(Debug)]
struct Reading {
    at: Instant,
    totals: BTreeMap<Series, f64>,
    rates: BTreeMap<Series, f64>,
}

impl Rates {
    /// The per-second rates of `totals` (counters of job `job`) over the
    /// interval since the job's previous reading.
    pub fn per_second(&self, job: &str, totals: BTreeMap<Series, f64>) -> BTreeMap<Series, f64> {
        self.at(job, totals, Instant::now())
    }

    fn at(&self, job: &str, totals: BTreeMap<Series, f64>, now: Instant) -> BTreeMap<Series, f64> {
        let mut readings = self.readings.lock();
        if readings.len() >= MAX_JOBS && !readings.contains_key(job) {
            readings.clear();
        }
        let Some(last) = readings.get_mut(job) else {
            readings.insert(
                job.to_string(),
                Reading {
                    at: now,
                    totals,
                    rates: BTreeMap::new(),
                },
            );
            return BTreeMap::new();
        };
        let elapsed = now.saturating_duration_since(last.at);
        if elapsed < MIN_INTERVAL {
            return last.rates.clone();
        }
        let seconds = elapsed.as_secs_f64();
        // A counter that went down belongs to a new series (a dropped and
        // recreated job): no rate from it, rather than a negative one.
        let rates: BTreeMap<Series, f64> = totals
            .iter()
            .filter_map(|(k, v)| {
                let before = last.totals.get(k)?;
                (v >= before).then(|| (k.clone(), (v - before) / seconds))
            })
            .collect();
        *last = Reading {
            at: now,
            totals,
            rates: rates.clone(),
        };
        rates
    }
}

/// Counter families whose rates the page shows.
const RATED: [&str; 3] = [
    "rows_in_total",
    "rows_out_total",
    "backpressured_seconds_total",
];

/// Fill in the figures of `graph`'s operators that the runtime runs as
/// tasks (sources, stateful operators, the view) from `samples`, with rates
/// from `rates`; and say which task runs each of the others.
pub fn attach(graph: &mut Graph, samples: &[Sample], job: &str, rates: &Rates) {
    // Per operator label and worker: family -> value.
    let mut series: BTreeMap<Series, f64> = BTreeMap::new();
    let mut view_rows = None;
    for s in samples {
        if s.labels.get("job").map(String::as_str) != Some(job) {
            continue;
        }
        if s.name == "weir_job_rows_out_total" {
            view_rows = Some(s.value);
        }
        let (Some(family), Some(operator)) = (
            s.name.strip_prefix("weir_operator_"),
            s.labels.get("operator"),
        ) else {
            continue;
        };
        let worker = s.labels.get("worker").and_then(|w| w.parse().ok());
        series.insert(
            (family.to_string(), operator.clone(), worker.unwrap_or(0)),
            s.value,
        );
    }
    let mut totals: BTreeMap<Series, f64> = series
        .iter()
        .filter(|((family, _, _), _)| RATED.contains(&family.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let view_key: Series = ("rows_in_total".into(), "view".into(), 0);
    if let Some(rows) = view_rows {
        totals.insert(view_key.clone(), rows);
    }
    let rates = rates.per_second(job, totals);
    for operator in &mut graph.operators {
        if let Some(name) = &operator.runtime_name {
            operator.figures = of_operator(&series, &rates, name);
        }
    }
    // The view: what reaches it, at the watermark of the task feeding it.
    let feeding = runs_in(graph);
    for (id, task) in feeding.iter().enumerate() {
        graph.operators[id].runs_in = *task;
    }
    if let Some(view) = graph
        .operators
        .iter()
        .position(|o| o.kind == "StreamMaterialize")
    {
        let below = graph
            .edges
            .iter()
            .find(|e| e.to == view)
            .map(|e| feeding[e.from].unwrap_or(e.from));
        let watermark = below
            .and_then(|b| graph.operators[b].figures.as_ref())
            .and_then(|f| f.watermark.clone());
        graph.operators[view].figures = view_rows.map(|rows| Figures {
            workers: 1,
            rows_in: Some(rows as u64),
            rows_in_per_second: rates.get(&view_key).copied(),
            watermark,
            ..Default::default()
        });
    }
}

/// The figures of the operator whose `operator` label is `name`.
fn of_operator(
    series: &BTreeMap<Series, f64>,
    rates: &BTreeMap<Series, f64>,
    name: &str,
) -> Option<Figures> {
    let of = |family: &str| -> Vec<(i64, f64)> {
        series
            .iter()
            .filter(|((f, o, _), _)| f == family && o == name)
            .map(|((_, _, w), v)| (*w, *v))
            .collect()
    };
    let rate_of = |family: &str| -> Vec<f64> {
        rates
            .iter()
            .filter(|((f, o, _), _)| f == family && o == name)
            .map(|(_, v)| *v)
            .collect()
    };
    let sum = |values: Vec<(i64, f64)>| -> Option<u64> {
        (!values.is_empty()).then(|| values.iter().map(|(_, v)| *v).sum::<f64>() as u64)
    };
    let sum_rate = |values: Vec<f64>| (!values.is_empty()).then(|| values.iter().sum::<f64>());
    let rows_in = of("rows_in_total");
    let workers = rows_in.len().max(of("state_entries").len());
    if workers == 0 {
        return None;
    }
    let watermarks = of("watermark_timestamp_seconds");
    // Every worker must have one: the operator's watermark is the minimum.
    let watermark = (!watermarks.is_empty() && watermarks.iter().all(|(_, v)| v.is_finite()))
        .then(|| {
            watermarks
                .iter()
                .map(|(_, v)| *v)
                .fold(f64::INFINITY, f64::min)
        })
        .map(rfc3339);
    let backpressure = rate_of("backpressured_seconds_total")
        .into_iter()
        .reduce(f64::max)
        .map(|f| f.clamp(0.0, 1.0));
    let stateful = !of("state_entries").is_empty();
    Some(Figures {
        workers,
        rows_in: sum(rows_in),
        rows_out: sum(of("rows_out_total")),
        rows_in_per_second: sum_rate(rate_of("rows_in_total")),
        rows_out_per_second: sum_rate(rate_of("rows_out_total")),
        watermark,
        state_bytes: sum(of("state_bytes")).filter(|_| stateful),
        state_entries: sum(of("state_entries")).filter(|_| stateful),
        backpressure,
        backpressure_level: backpressure.map(|f| level(f).to_string()),
    })
}

/// Flink's grades of backpressure.
fn level(fraction: f64) -> &'static str {
    if fraction <= 0.1 {
        "ok"
    } else if fraction <= 0.5 {
        "low"
    } else {
        "high"
    }
}

fn rfc3339(seconds: f64) -> String {
    chrono::DateTime::from_timestamp_millis((seconds * 1000.0).round() as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{seconds} s"))
}

/// For each operator, the operator whose task runs it, when it is not a
/// task of its own: a stateless operator or an exchange runs in the task
/// below it (the source, or the stateful operator whose output it takes);
/// an exchange fed by both inputs of a join runs in both, and says none.
fn runs_in(graph: &Graph) -> Vec<Option<usize>> {
    let inputs = |id: usize| -> Vec<usize> {
        graph
            .edges
            .iter()
            .filter(|e| e.to == id)
            .map(|e| e.from)
            .collect()
    };
    let is_task = |id: usize| {
        let o = &graph.operators[id];
        o.runtime_name.is_some() || o.kind == "StreamMaterialize"
    };
    (0..graph.operators.len())
        .map(|id| {
            if is_task(id) {
                return None;
            }
            let mut at = id;
            loop {
                match inputs(at).as_slice() {
                    [one] if is_task(*one) => return Some(*one),
                    [one] => at = *one,
                    _ => return None,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::graph::{from_explain, samples};

    const EXPLAIN: &str = "StreamMaterialize: append-only columns=[auction, n]
  StreamProject: auction, n
    StreamWindowAggregate: window=TUMBLE(date_time, 10s) key=[auction] aggregates=[count(*)] emit=on window close state: ...
      StreamExchange: hash(auction) to 2 workers
        StreamProject: auction, date_time
          StreamSource: bid [nexmark bid] watermark=date_time - 2s
";

    fn exposition(rows: u64, blocked: f64) -> String {
        let mut text = String::new();
        for w in 0..2 {
            let agg = format!("job=\"v\",operator=\"window aggregate\",worker=\"{w}\"");
            text += &format!("weir_operator_rows_in_total{{{agg}}} {rows}\n");
            text += &format!("weir_operator_rows_out_total{{{agg}}} 1\n");
            text += &format!("weir_operator_state_entries{{{agg}}} 5\n");
            text += &format!("weir_operator_state_bytes{{{agg}}} 1000\n");
            text += &format!(
                "weir_operator_watermark_timestamp_seconds{{{agg}}} {}\n",
                100 + w
            );
            text += &format!("weir_operator_backpressured_seconds_total{{{agg}}} 0\n");
        }
        let source = "job=\"v\",operator=\"source\",worker=\"0\"";
        text += &format!("weir_operator_rows_in_total{{{source}}} {}\n", 2 * rows);
        text += &format!("weir_operator_rows_out_total{{{source}}} {}\n", 2 * rows);
        text += &format!("weir_operator_watermark_timestamp_seconds{{{source}}} NaN\n");
        text += "weir_operator_state_entries{job=\"other\",operator=\"window aggregate\",worker=\"0\"} 9\n";
        text += &format!("weir_operator_backpressured_seconds_total{{{source}}} {blocked}\n");
        text += &format!("weir_job_rows_out_total{{job=\"v\"}} {}\n", rows / 10);
        text
    }

    #[test]
    fn figures_sum_over_workers_and_rates_come_from_two_readings() {
        let rates = Rates::default();
        let t0 = Instant::now();
        let first = rates.at(
            "v",
            BTreeMap::from([(("rows_in_total".into(), "source".into(), 0), 10.0)]),
            t0,
        );
        assert!(first.is_empty(), "a first reading has no rate");
        // Too soon: the last rates stand.
        let soon = rates.at(
            "v",
            BTreeMap::from([(("rows_in_total".into(), "source".into(), 0), 11.0)]),
            t0 + Duration::from_millis(10),
        );
        assert!(soon.is_empty());
        let later = rates.at(
            "v",
            BTreeMap::from([(("rows_in_total".into(), "source".into(), 0), 30.0)]),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(later.values().copied().collect::<Vec<_>>(), [10.0]);

        let rates = Rates::default();
        let mut graph = from_explain(EXPLAIN);
        attach(&mut graph, &samples(&exposition(100, 0.0)), "v", &rates);
        let aggregate = graph.operators[2]
            .figures
            .clone()
            .expect("the aggregate's figures");
        assert_eq!(aggregate.workers, 2);
        assert_eq!(aggregate.rows_in, Some(200));
        assert_eq!(aggregate.state_entries, Some(10));
        assert_eq!(aggregate.state_bytes, Some(2000));
        // The slower worker's watermark.
        assert_eq!(
            aggregate.watermark.as_deref(),
            Some("1970-01-01T00:01:40.000Z")
        );
        assert_eq!(aggregate.rows_in_per_second, None);
        let source = graph.operators[5]
            .figures
            .clone()
            .expect("the source's figures");
        assert_eq!(
            (source.rows_out, source.watermark, source.state_bytes),
            (Some(200), None, None)
        );
        // Stateless operators and the exchange say which task runs them.
        let runs: Vec<Option<usize>> = graph.operators.iter().map(|o| o.runs_in).collect();
        assert_eq!(runs, [None, Some(2), None, Some(5), Some(5), None]);
        let view = graph.operators[0]
            .figures
            .clone()
            .expect("the view's figures");
        assert_eq!(view.rows_in, Some(10));
        assert_eq!(view.watermark, aggregate.watermark);

        // A second reading: rates, and the source blocked 3 s of the last 4.
        let later = samples(&exposition(500, 3.0));
        let mut graph = from_explain(EXPLAIN);
        attach_at(&mut graph, &later, "v", &rates);
        let source = graph.operators[5]
            .figures
            .clone()
            .expect("the source's figures");
        assert!(source.rows_out_per_second.is_some_and(|r| r > 0.0));
        assert!(source.backpressure.is_some_and(|b| b > 0.5));
        assert_eq!(source.backpressure_level.as_deref(), Some("high"));
        let aggregate = graph.operators[2]
            .figures
            .clone()
            .expect("the aggregate's figures");
        assert_eq!(aggregate.backpressure_level.as_deref(), Some("ok"));
    }

    /// `attach` as if its previous reading were four seconds old.
    fn attach_at(graph: &mut Graph, samples: &[Sample], job: &str, rates: &Rates) {
        for reading in rates.readings.lock().values_mut() {
            reading.at -= Duration::from_secs(4);
        }
        attach(graph, samples, job, rates);
    }

    #[test]
    fn backpressure_is_graded_as_flink_grades_it() {
        assert_eq!(
            [level(0.0), level(0.1), level(0.3), level(0.9)],
            ["ok", "ok", "low", "high"]
        );
    }
}
