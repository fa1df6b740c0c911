//! A job's operator graph, for the console to draw: the operators and
//! edges of its stream plan, with what the runtime reports about each.
//!
//! The graph is read from the plan's EXPLAIN (`planner::stream_plan::explain`),
//! whose format is a tree: one line per operator, `Kind: detail`, each
//! indented two spaces under the operator it feeds. Reading it back rather
//! than walking the typed plan nodes keeps the graph identical to what
//! `EXPLAIN CREATE MATERIALIZED VIEW` shows, and needs nothing kept beside
//! the running view but the text the registry already holds.
//!
//! Figures come from `/metrics` (the same exposition Prometheus reads), by
//! label: every family with the job's `job` label, and, for a stateful
//! operator, its `operator` label summed over workers. Reading labels rather
//! than named fields keeps the console showing what the runtime reports as
//! its metric families are renamed or added.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

pub use super::figures::Figures;

/// One operator of a job's stream plan.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Operator {
    /// Its position in the EXPLAIN (0: the view's rows).
    pub id: usize,
    /// Its kind: `StreamSource`, `StreamWindowAggregate`, ...
    pub kind: String,
    /// The rest of its EXPLAIN line.
    pub detail: String,
    /// The name the runtime's metrics give it (`operator` label), for
    /// the operators the runtime runs as tasks of their own: sources and
    /// stateful operators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_name: Option<String>,
    /// The operator whose task runs this one, for those that are not a
    /// task of their own (stateless operators and exchanges run in the
    /// task that feeds them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_in: Option<usize>,
    /// What the runtime reports about it now (sources, stateful operators
    /// and the view): rows per second, watermark, state, backpressure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figures: Option<Figures>,
    /// Workers it runs in (an exchange's), where the plan says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// What the runtime reports about it: metric family (without the
    /// `weir_` prefix) to value, summed over its workers.
    pub metrics: BTreeMap<String, f64>,
}

/// Rows flow from `from` into `to`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Edge {
    /// The operator the rows leave.
    pub from: usize,
    /// The operator they enter.
    pub to: usize,
}

/// A job's operators and the edges between them.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Graph {
    /// The operators, the view's rows first.
    pub operators: Vec<Operator>,
    /// Rows flow along these.
    pub edges: Vec<Edge>,
}

/// The runtime's name (its metrics' `operator` label) for a plan node.
fn runtime_name(kind: &str, detail: &str) -> Option<&'static str> {
    match kind {
        "StreamHashJoin" => Some("join"),
        "StreamGroupAggregate" => Some("updating aggregate"),
        "StreamWindowAggregate" if detail.starts_with("window=SESSION") => {
            Some("session aggregate")
        }
        "StreamWindowAggregate" => Some("window aggregate"),
        _ => None,
    }
}

/// The graph of an EXPLAIN text.
pub fn from_explain(explain: &str) -> Graph {
    let mut graph = Graph::default();
    // The operator at each depth on the path to the current line.
    let mut path: Vec<usize> = Vec::new();
    for line in explain.lines() {
        let text = line.trim_start();
        if text.is_empty() {
            continue;
        }
        let depth = (line.len() - text.len()) / 2;
        let (kind, detail) = text.split_once(": ").unwrap_or((text, ""));
        let id = graph.operators.len();
        let workers = detail
            .split_once(" to ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .filter(|_| kind == "StreamExchange");
        graph.operators.push(Operator {
            id,
            kind: kind.to_string(),
            detail: detail.to_string(),
            runtime_name: runtime_name(kind, detail).map(str::to_string),
            runs_in: None,
            workers,
            metrics: BTreeMap::new(),
            figures: None,
        });
        path.truncate(depth);
        if let Some(&parent) = path.last() {
            graph.edges.push(Edge {
                from: id,
                to: parent,
            });
        }
        path.push(id);
    }
    // Sources are named as the runtime labels their partitions: a join's
    // two inputs are printed left first.
    let sources: Vec<usize> = graph
        .operators
        .iter()
        .filter(|o| o.kind == "StreamSource")
        .map(|o| o.id)
        .collect();
    let names: &[&str] = match sources.len() {
        1 => &["source"],
        _ => &["left source", "right source"],
    };
    for (id, name) in sources.into_iter().zip(names) {
        graph.operators[id].runtime_name = Some(name.to_string());
    }
    graph
}

/// One sample of the Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The family's sample name (`weir_job_rows_in_total`).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// The samples of a text exposition (Prometheus or OpenMetrics). Written
/// here rather than taken from a crate: the tree has no parser for it, and
/// this reads only Weir's own output, whose lines are `name{labels} value`.
pub fn samples(exposition: &str) -> Vec<Sample> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(sample)
        .collect()
}

fn sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find('{') {
        Some(open) => (&line[..open], &line[open + 1..]),
        None => {
            let (name, value) = line.split_once(' ')?;
            return Some(Sample {
                name: name.to_string(),
                labels: BTreeMap::new(),
                value: value.split_whitespace().next()?.parse().ok()?,
            });
        }
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.char_indices().peekable();
    let mut end = None;
    while let Some((i, c)) = chars.next() {
        if c == '}' {
            end = Some(i);
            break;
        }
        if c == ',' || c == ' ' {
            continue;
        }
        // key="value", with \" \\ \n escapes in the value.
        let key_start = i;
        let mut key_end = i;
        for (j, c) in chars.by_ref() {
            if c == '=' {
                key_end = j;
                break;
            }
        }
        let key = rest[key_start..key_end].to_string();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return None;
        }
        let mut value = String::new();
        while let Some((_, c)) = chars.next() {
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                other => value.push(other),
            }
        }
        labels.insert(key, value);
    }
    let value = rest[end? + 1..].split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The job's own figures (samples labelled with the job and no operator),
/// by sample name without the `weir_` prefix; a status gauge per status is
/// left out (the job's status says it).
pub fn job_metrics(samples: &[Sample], job: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples {
        if s.labels.get("job").map(String::as_str) != Some(job)
            || s.labels.contains_key("operator")
            || s.labels.contains_key("status")
        {
            continue;
        }
        let name = s.name.strip_prefix("weir_").unwrap_or(&s.name);
        *out.entry(name.to_string()).or_insert(0.0) += s.value;
    }
    out
}

/// Fill each stateful operator's figures from `samples` (summed over its
/// workers), and the sources' and the view's rows from the job's.
pub fn attach_metrics(graph: &mut Graph, samples: &[Sample], job: &str) {
    let job_figures = job_metrics(samples, job);
    let sources = graph
        .operators
        .iter()
        .filter(|o| o.kind == "StreamSource")
        .count();
    for operator in &mut graph.operators {
        if let Some(name) = &operator.runtime_name {
            for s in samples {
                if s.labels.get("job").map(String::as_str) == Some(job)
                    && s.labels.get("operator") == Some(name)
                {
                    let family = s.name.strip_prefix("weir_").unwrap_or(&s.name);
                    *operator.metrics.entry(family.to_string()).or_insert(0.0) += s.value;
                }
            }
        }
        // What enters the job is what its sources read (a single source's
        // own count; two sources of a join share the job's); what leaves it
        // is what reaches the view.
        let pick = |pattern: &str| {
            job_figures
                .iter()
                .find(|(k, _)| k.contains(pattern))
                .map(|(k, v)| (k.clone(), *v))
        };
        if operator.kind == "StreamSource" && sources == 1 {
            operator.metrics.extend(pick("rows_in"));
        }
        if operator.kind == "StreamMaterialize" {
            operator.metrics.extend(pick("rows_out"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPLAIN: &str = "StreamMaterialize: append-only columns=[auction, n]
  StreamWindowAggregate: window=TUMBLE(date_time, 10s) key=[auction] aggregates=[count(*)] emit=on window close state: ...
    StreamExchange: hash(auction) to 2 workers
      StreamProject: auction, date_time
        StreamSource: bid [nexmark bid] watermark=date_time - 2s
";

    #[test]
    fn explain_becomes_a_tree_from_sources_to_the_view() {
        let graph = from_explain(EXPLAIN);
        let kinds: Vec<&str> = graph.operators.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "StreamMaterialize",
                "StreamWindowAggregate",
                "StreamExchange",
                "StreamProject",
                "StreamSource"
            ]
        );
        let edges: Vec<(usize, usize)> = graph.edges.iter().map(|e| (e.from, e.to)).collect();
        assert_eq!(edges, [(1, 0), (2, 1), (3, 2), (4, 3)]);
        assert_eq!(graph.operators[2].workers, Some(2));
        assert_eq!(
            graph.operators[1].runtime_name.as_deref(),
            Some("window aggregate")
        );
    }

    #[test]
    fn a_joins_two_inputs_both_feed_it() {
        let graph = from_explain(
            "StreamMaterialize: x\n  StreamHashJoin: inner\n    StreamExchange: hash(a) to 1 workers\n      StreamSource: l\n      StreamSource: r\n",
        );
        let edges: Vec<(usize, usize)> = graph.edges.iter().map(|e| (e.from, e.to)).collect();
        assert_eq!(edges, [(1, 0), (2, 1), (3, 2), (4, 2)]);
    }

    #[test]
    fn samples_read_labels_and_values() {
        let text = "# HELP weir_x help\n# TYPE weir_x gauge\nweir_operator_state_entries{job=\"v\",operator=\"window aggregate\",worker=\"0\"} 3\nweir_operator_state_entries{job=\"v\",operator=\"window aggregate\",worker=\"1\"} 4\nweir_job_rows_in_total{job=\"v\"} 10\nweir_statements_total 7\nweir_x{job=\"a\\\"b\"} 1.5\n# EOF\n";
        let samples = samples(text);
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[4].labels["job"], "a\"b");
        let mut graph = from_explain(EXPLAIN);
        attach_metrics(&mut graph, &samples, "v");
        assert_eq!(graph.operators[1].metrics["operator_state_entries"], 7.0);
        assert_eq!(graph.operators[4].metrics["job_rows_in_total"], 10.0);
        assert_eq!(job_metrics(&samples, "v")["job_rows_in_total"], 10.0);
    }
}
