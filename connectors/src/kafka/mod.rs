//! Kafka: topics read as partitioned streams, and views written to topics.
//!
//! ```text
//!   topic partition p ──BaseConsumer (assigned, no group rebalancing)──> messages
//!        │  format::Decoder (json | csv | raw | debezium-json)         bad ones: on_error
//!        v
//!   RecordBatch (+ _partition, _offset, _key, _kafka_timestamp; + op for debezium)
//!        │  position = the next offset: recorded in checkpoints, restored on recovery
//!        v
//!   the job ──> sink::KafkaSink ──(transactional producer, committed with the checkpoint)──> topic
//! ```
//!
//! # Layout
//! - [`KafkaConnector`] (here): the connector's entry in the registry, with
//!   every option it accepts as a stream and as a sink.
//! - [`KafkaOptions`] (here): the `WITH (...)` options shared by the source
//!   and the sink, and the librdkafka client settings they make.
//! - [`format`]: message bytes to Arrow rows and back.
//! - [`source`]: one source partition per topic partition.
//! - [`sink`]: a view's changes as messages, at least or exactly once.
//!
//! Partitions are assigned explicitly rather than through a consumer group:
//! a job's checkpoint, not the group, decides where each partition resumes,
//! and a rebalance inside a running job would break that.

pub mod avro;
mod batch;
mod consumer;
pub mod encode;
pub mod format;
pub mod sink;
pub mod source;
mod upsert;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::catalog::streaming::StreamingTable;
use rdkafka::ClientConfig;
use weir_runtime::source::Source;

use crate::error::{ConnectorError, Result};
use crate::opened_stream::{OpenedStream, SourceFactory};
use crate::options::ConnectorOptions;
use crate::registry::{Connector, OptionSpec, Role};

/// The name of the connector in `WITH (connector = 'kafka')`.
pub const CONNECTOR: &str = "kafka";

/// How long a call to the broker (metadata, offsets, commits) may take.
pub(crate) const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Options every Kafka client of a stream or sink shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// The topic read or written.
    pub topic: String,
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `properties.*` options, passed to librdkafka as they are (security
    /// settings, timeouts), without the prefix.
    pub properties: BTreeMap<String, String>,
}

impl KafkaOptions {
    /// Take `topic`, `brokers` and every `properties.*` option.
    pub fn from_options(options: &mut ConnectorOptions) -> Result<Self> {
        let topic = options.require(CONNECTOR, "topic")?;
        let brokers = options.require(CONNECTOR, "brokers")?;
        let keys: Vec<String> = options
            .as_map()
            .keys()
            .filter(|k| k.starts_with("properties."))
            .cloned()
            .collect();
        let mut properties = BTreeMap::new();
        for key in keys {
            let value = options.take(&key).unwrap_or_default();
            properties.insert(key["properties.".len()..].to_string(), value);
        }
        Ok(Self {
            topic,
            brokers,
            properties,
        })
    }

    /// A librdkafka configuration: the brokers, then Weir's settings, then
    /// the user's properties (which win).
    pub(crate) fn client_config(&self, settings: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in settings {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// `WITH (connector = 'kafka', topic = ..., brokers = ..., format = ...)`:
/// a stream or a sink.
#[derive(Debug, Clone, Copy)]
pub struct KafkaConnector;

#[async_trait]
impl Connector for KafkaConnector {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    fn can_be(&self) -> &'static [Role] {
        &[Role::Stream, Role::Sink]
    }

    fn options(&self) -> &'static [OptionSpec] {
        const STREAM: &[Role] = &[Role::Stream];
        const SINK: &[Role] = &[Role::Sink];
        const OPTIONS: &[OptionSpec] = &[
            OptionSpec::new("topic", "the topic read or written").required(),
            OptionSpec::new("brokers", "bootstrap servers, host:port[,host:port...]").required(),
            OptionSpec::new(
                "format",
                "json, csv, raw, debezium-json, upsert-json or avro (streams)",
            )
            .required(),
            OptionSpec::new(
                "primary_key",
                "upsert-json: the key columns (set from the stream's PRIMARY KEY)",
            )
            .only(STREAM),
            OptionSpec::new("delimiter", "csv: the field separator (default ',')"),
            OptionSpec::new("avro_schema", "avro: the writer's schema, as JSON").only(STREAM),
            OptionSpec::new(
                "avro_framing",
                "avro: none (a bare datum, the default) or confluent",
            )
            .only(STREAM),
            OptionSpec::new(
                "properties.<name>",
                "a librdkafka client setting, passed as it is",
            ),
            OptionSpec::new(
                "scan_startup",
                "where a new stream starts: earliest, latest or timestamp",
            )
            .only(STREAM),
            OptionSpec::new(
                "start_timestamp",
                "with scan_startup = 'timestamp': from when",
            )
            .only(STREAM),
            OptionSpec::new(
                "on_error",
                "an undecodable message: fail, skip or dead_letter",
            )
            .only(STREAM),
            OptionSpec::new(
                "dead_letter_topic",
                "with on_error = 'dead_letter': where they go",
            )
            .only(STREAM),
            OptionSpec::new(
                "idle_timeout",
                "after how long a silent partition stops holding back the watermark",
            )
            .only(STREAM),
            OptionSpec::new(
                "partition_discovery_interval",
                "how often a running job looks for partitions added to the topic (0: never)",
            )
            .only(STREAM),
            OptionSpec::new(
                "key",
                "the columns that make a message's key, comma-separated",
            )
            .only(SINK),
            OptionSpec::new("delivery", "exactly-once (the default) or at-least-once").only(SINK),
            OptionSpec::new(
                "transactional_id_prefix",
                "exactly-once: the producers' transactional ids",
            )
            .only(SINK),
            OptionSpec::new("commit_topic", "exactly-once: where commits are recorded").only(SINK),
        ];
        OPTIONS
    }

    async fn open_stream(
        &self,
        _state: &dyn Session,
        options: &mut ConnectorOptions,
        declared: Option<SchemaRef>,
    ) -> Result<OpenedStream> {
        let kafka = source::KafkaStream::from_options(options, declared)?;
        // Unbounded: no table for ad-hoc scans (views read it).
        let table = Arc::new(
            StreamingTable::try_new(kafka.schema(), Vec::new())?.with_infinite_table(true),
        );
        Ok(OpenedStream::new(
            table,
            false,
            Arc::new(KafkaSources(Arc::new(kafka))),
        ))
    }

    fn open_sink(
        &self,
        name: &str,
        schema: SchemaRef,
        changelog: bool,
        options: &mut ConnectorOptions,
    ) -> Result<Arc<dyn weir_runtime::job::Sink>> {
        Ok(Arc::new(sink::KafkaSink::new(
            name, schema, changelog, options,
        )?))
    }
}

/// A topic's sources: one per job, over the partitions the topic has then.
#[derive(Debug)]
struct KafkaSources(Arc<source::KafkaStream>);

#[async_trait]
impl SourceFactory for KafkaSources {
    async fn source(&self, _state: &dyn Session) -> Result<Arc<dyn Source>> {
        // Asks the broker for the partitions: blocking.
        let kafka = self.0.clone();
        let source = tokio::task::spawn_blocking(move || kafka.source())
            .await
            .map_err(|e| ConnectorError::External {
                system: "kafka",
                message: e.to_string(),
            })??;
        Ok(Arc::new(source))
    }

    fn observe(&mut self, stream: &str, metrics: &weir_runtime::metrics::RuntimeMetrics) {
        if let Some(kafka) = Arc::get_mut(&mut self.0) {
            kafka.bad_rows = metrics.bad(stream);
            kafka.lag = Some((stream.to_string(), metrics.source_lag.clone()));
        }
    }
}

/// A duration option: `500ms`, `5s`, `2m` (or `5 seconds`).
pub(crate) fn parse_duration(option: &str, value: &str) -> Result<Duration> {
    let text = value.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| ConnectorError::InvalidOption {
        option: option.to_string(),
        value: value.to_string(),
        reason: "expected a duration such as '500ms' or '5s'".into(),
    })?;
    let seconds = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => number / 1000.0,
        "" | "s" | "sec" | "second" | "seconds" => number,
        "m" | "min" | "minute" | "minutes" => number * 60.0,
        _ => {
            return Err(ConnectorError::InvalidOption {
                option: option.to_string(),
                value: value.to_string(),
                reason: "expected a duration such as '500ms' or '5s'".into(),
            });
        }
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// A Kafka client error, as an outside system's.
pub(crate) fn kafka_error(action: &str, err: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::External {
        system: "kafka",
        message: format!("{action}: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("t", "500ms").expect("ms"),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("t", "5 seconds").expect("s"),
            Duration::from_secs(5)
        );
        assert!(parse_duration("t", "soon").is_err());
    }

    #[test]
    fn properties_pass_through_without_their_prefix() {
        let mut options = ConnectorOptions::new([
            ("topic", "bids"),
            ("brokers", "127.0.0.1:9092"),
            ("properties.security.protocol", "PLAINTEXT"),
            ("format", "json"),
        ]);
        let kafka = KafkaOptions::from_options(&mut options).expect("options");
        assert_eq!(kafka.topic, "bids");
        assert_eq!(
            kafka
                .properties
                .get("security.protocol")
                .map(String::as_str),
            Some("PLAINTEXT")
        );
        // Only what Kafka itself needs is taken.
        assert_eq!(options.take("format").as_deref(), Some("json"));
        assert!(options.is_empty());
    }
}
