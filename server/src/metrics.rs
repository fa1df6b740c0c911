//! Prometheus metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a failed statement: its SQLSTATE.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The SQLSTATE sent to the client.
    pub sqlstate: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// Connections accepted since start.
    pub connections: Counter,
    /// Connections open now.
    pub open_connections: Gauge,
    /// Statements run since start.
    pub statements: Counter,
    /// Statements that failed, by SQLSTATE.
    pub errors: Family<ErrorLabels, Counter>,
    /// The running jobs' counters.
    pub runtime: weir_runtime::metrics::RuntimeMetrics,
}

impl Metrics {
    /// Register every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weir");
        let connections = Counter::default();
        let open_connections = Gauge::default();
        let statements = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "connections",
            "Postgres connections accepted",
            connections.clone(),
        );
        registry.register(
            "open_connections",
            "Postgres connections open now",
            open_connections.clone(),
        );
        registry.register("statements", "Statements executed", statements.clone());
        registry.register(
            "statement_errors",
            "Statements that failed, by SQLSTATE",
            errors.clone(),
        );
        let runtime = weir_runtime::metrics::RuntimeMetrics::default();
        runtime.register(&mut registry);
        Self {
            registry,
            connections,
            open_connections,
            statements,
            errors,
            runtime,
        }
    }

    /// Count a failed statement.
    pub fn record_error(&self, sqlstate: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                sqlstate: sqlstate.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
