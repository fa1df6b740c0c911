//! A topic as a streaming source: one source partition per topic partition.
//!
//! A job's readers share one consumer (`consumer.rs`), each assigned its
//! partition at an explicit offset (no consumer group decides anything)
//! and polling that partition's own queue. The position a
//! checkpoint records is the next offset to read, so recovery reopens each
//! partition exactly where the checkpoint's barrier was.
//!
//! # Correctness
//! - A reader returns the messages it polled in one batch, and only then
//!   moves its position past them; it awaits only while it holds nothing,
//!   so the job's task may drop `next_batch` at a barrier without losing a
//!   message (cancel safety).
//! - The start offset is resolved when a partition is opened (earliest,
//!   latest or by timestamp), so even a partition that has read nothing yet
//!   reports a real offset, and a restart does not jump to "latest" again.
//! - A bad message is failed, skipped or sent to the dead-letter topic
//!   before the batch after it is returned: the dead-letter producer is
//!   flushed first, so a checkpoint past it never loses it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DataFusionError;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;
use weir_runtime::metrics::PartitionLabels;
use weir_runtime::source::{Source, SourcePosition, SourceReader};

use super::consumer::{PartitionLease, SharedConsumers};
use super::format::{BadRecord, Decoder, Format, Record};
use super::upsert::Upserts;
use super::{BROKER_TIMEOUT, CONNECTOR, KafkaOptions, kafka_error};
use crate::error::{ConnectorError, Result};
use crate::options::ConnectorOptions;

/// Messages decoded together at most.
const MESSAGES_PER_BATCH: usize = 8192;

/// How long a reader with nothing to read waits before polling again.
const IDLE_POLL: Duration = Duration::from_millis(5);

/// How often librdkafka reports a partition's offsets (for the lag gauge).
const STATISTICS_EVERY_MS: &str = "1000";

/// How often a partition's position is committed to the consumer group.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// How often a running job asks whether its topic gained partitions
/// (`partition_discovery_interval`; `0` never asks).
const DISCOVER_EVERY: Duration = Duration::from_secs(30);

/// Where a partition starts when no checkpoint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// Its oldest message.
    Earliest,
    /// After its newest message (when the job starts).
    Latest,
    /// Its first message at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// What a message that cannot be decoded does: fail, skip, or go to the
/// dead-letter topic (the same option every decoding source takes).
pub use crate::options::OnError;

/// A Kafka stream's settings, checked at `CREATE STREAM`.
#[derive(Debug)]
pub struct KafkaStream {
    kafka: KafkaOptions,
    format: Format,
    /// The declared columns.
    schema: SchemaRef,
    startup: Startup,
    on_error: OnError,
    /// After how long without messages a partition stops holding back the
    /// watermark (`idle_timeout`; `None`: never).
    idle_timeout: Option<Duration>,
    /// How often the topic's partitions are counted again (`None`: never).
    discovery: Option<Duration>,
    /// Messages that could not be decoded (skipped or dead-lettered):
    /// `weir_bad_rows_total` once the server hands in its counter.
    pub(crate) bad_rows: Counter,
    /// `weir_source_lag` and the stream's name there, once the server hands
    /// them in.
    pub(crate) lag: Option<(String, Family<PartitionLabels, Gauge>)>,
}

impl KafkaStream {
    /// Take the stream's options; `declared` are its columns.
    pub fn from_options(
        options: &mut ConnectorOptions,
        declared: Option<SchemaRef>,
    ) -> Result<Self> {
        let kafka = KafkaOptions::from_options(options)?;
        let format = Format::from_options(options)?;
        let schema = declared.ok_or_else(|| ConnectorError::InvalidOption {
            option: "columns".into(),
            value: String::new(),
            reason: "a kafka stream needs a column list".into(),
        })?;
        let start_timestamp = options.take("start_timestamp");
        let startup = match options.take("scan_startup").map(|s| s.to_ascii_lowercase()) {
            None => Startup::Earliest,
            Some(s) if s == "earliest" => Startup::Earliest,
            Some(s) if s == "latest" => Startup::Latest,
            Some(s) if s == "timestamp" => {
                let value = start_timestamp
                    .clone()
                    .ok_or(ConnectorError::MissingOption {
                        connector: CONNECTOR.into(),
                        option: "start_timestamp",
                    })?;
                Startup::Timestamp(parse_timestamp_ms(&value)?)
            }
            Some(other) => {
                return Err(ConnectorError::InvalidOption {
                    option: "scan_startup".into(),
                    value: other,
                    reason: "expected earliest, latest or timestamp".into(),
                });
            }
        };
        if let (Some(value), false) = (&start_timestamp, matches!(startup, Startup::Timestamp(_))) {
            return Err(ConnectorError::InvalidOption {
                option: "start_timestamp".into(),
                value: value.clone(),
                reason: "only used with scan_startup = 'timestamp'".into(),
            });
        }
        if matches!(format, Format::UpsertJson { .. }) && startup != Startup::Earliest {
            return Err(ConnectorError::InvalidOption {
                option: "scan_startup".into(),
                value: options_startup_name(startup).into(),
                reason: "an upsert-json stream reads its topic from the earliest offset: a key's latest value may be anywhere in it".into(),
            });
        }
        let on_error = options.take_on_error(CONNECTOR, "dead_letter_topic")?;
        let idle_timeout = options
            .take("idle_timeout")
            .map(|v| super::parse_duration("idle_timeout", &v))
            .transpose()?;
        let discovery = match options.take("partition_discovery_interval") {
            None => Some(DISCOVER_EVERY),
            Some(v) => Some(super::parse_duration("partition_discovery_interval", &v)?)
                .filter(|d| !d.is_zero()),
        };
        // Checked now, so that a bad column list fails at CREATE STREAM.
        Decoder::new(format.clone(), schema.clone())?;
        Ok(Self {
            kafka,
            format,
            schema,
            startup,
            on_error,
            idle_timeout,
            discovery,
            bad_rows: Counter::default(),
            lag: None,
        })
    }

    /// The stream's columns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// One line for EXPLAIN.
    pub fn describe(&self) -> String {
        format!("kafka topic {} ({})", self.kafka.topic, self.format.name())
    }

    /// Messages skipped or dead-lettered so far.
    pub fn bad_rows(&self) -> u64 {
        self.bad_rows.get()
    }

    /// A source over the topic's partitions as they are now (asks the
    /// broker: blocking, so run it off the async workers).
    pub fn source(&self) -> Result<KafkaSource> {
        let consumer: BaseConsumer = self
            .consumer_config()
            .create()
            .map_err(|e| kafka_error("creating a consumer", e))?;
        let metadata = consumer
            .fetch_metadata(Some(&self.kafka.topic), BROKER_TIMEOUT)
            .map_err(|e| {
                kafka_error(
                    &format!("reading the metadata of topic \"{}\"", self.kafka.topic),
                    e,
                )
            })?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.kafka.topic)
            .filter(|t| t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if partitions == 0 {
            return Err(kafka_error(
                "opening the stream",
                format!("topic \"{}\" does not exist", self.kafka.topic),
            ));
        }
        let decoder = Arc::new(Decoder::new(self.format.clone(), self.schema.clone())?);
        let dead_letter = match &self.on_error {
            OnError::DeadLetter(_) => Some(Arc::new(
                self.kafka
                    .client_config(&[("enable.idempotence", "true")])
                    .create::<ThreadedProducer<DefaultProducerContext>>()
                    .map_err(|e| kafka_error("creating the dead-letter producer", e))?,
            )),
            _ => None,
        };
        Ok(KafkaSource {
            settings: KafkaStream {
                kafka: self.kafka.clone(),
                format: self.format.clone(),
                schema: self.schema.clone(),
                startup: self.startup,
                on_error: self.on_error.clone(),
                idle_timeout: self.idle_timeout,
                discovery: self.discovery,
                bad_rows: self.bad_rows.clone(),
                lag: self.lag.clone(),
            },
            partitions,
            consumers: SharedConsumers::default(),
            metadata: Arc::new(consumer),
            decoder,
            dead_letter,
        })
    }

    fn consumer_config(&self) -> rdkafka::ClientConfig {
        // Offsets are Weir's, in its checkpoints; the readers commit their
        // positions to the group now and then for outside tools to see, and
        // never read them back. `properties.group.id` overrides the name.
        let group = format!("weir-{}", self.kafka.topic);
        self.kafka.client_config(&[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "false"),
            ("isolation.level", "read_committed"),
        ])
    }
}

/// `start_timestamp`: milliseconds since the epoch, or a timestamp text
/// (`2026-01-01 00:00:00`, UTC).
fn options_startup_name(startup: Startup) -> &'static str {
    match startup {
        Startup::Earliest => "earliest",
        Startup::Latest => "latest",
        Startup::Timestamp(_) => "timestamp",
    }
}

fn parse_timestamp_ms(value: &str) -> Result<i64> {
    if let Ok(ms) = value.trim().parse::<i64>() {
        return Ok(ms);
    }
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(value.trim())
        .map(|ns| ns.div_euclid(1_000_000))
        .map_err(|e| ConnectorError::InvalidOption {
            option: "start_timestamp".into(),
            value: value.to_string(),
            reason: format!("expected milliseconds since 1970 or a timestamp: {e}"),
        })
}

/// The topic's partitions, read through consumers their readers share.
pub struct KafkaSource {
    settings: KafkaStream,
    partitions: usize,
    /// Where readers lease their partitions from.
    consumers: SharedConsumers,
    /// For offsets and metadata (shared with the reader that watches for
    /// new partitions).
    metadata: Arc<BaseConsumer>,
    decoder: Arc<Decoder>,
    dead_letter: Option<Arc<ThreadedProducer<DefaultProducerContext>>>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.settings.kafka.topic)
            .field("partitions", &self.partitions)
            .finish()
    }
}

impl KafkaSource {
    fn topic(&self) -> &str {
        &self.settings.kafka.topic
    }

    /// Where `partition` starts by the stream's `scan_startup`.
    fn start_offset(&self, partition: i32) -> Result<i64> {
        let topic = self.topic();
        let (low, high) = self
            .metadata
            .fetch_watermarks(topic, partition, BROKER_TIMEOUT)
            .map_err(|e| kafka_error(&format!("reading the offsets of topic \"{topic}\""), e))?;
        Ok(match self.settings.startup {
            Startup::Earliest => low,
            Startup::Latest => high,
            Startup::Timestamp(ms) => {
                let mut wanted = TopicPartitionList::new();
                wanted
                    .add_partition_offset(topic, partition, Offset::Offset(ms))
                    .map_err(|e| kafka_error("looking up an offset by time", e))?;
                let found = self
                    .metadata
                    .offsets_for_times(wanted, BROKER_TIMEOUT)
                    .map_err(|e| kafka_error("looking up an offset by time", e))?;
                match found.find_partition(topic, partition).map(|p| p.offset()) {
                    Some(Offset::Offset(o)) => o,
                    // No message that late: start after the last one.
                    _ => high,
                }
            }
        })
    }
}

impl Source for KafkaSource {
    fn schema(&self) -> SchemaRef {
        self.settings.schema.clone()
    }

    fn partitions(&self) -> usize {
        self.partitions
    }

    fn bounded(&self) -> bool {
        false
    }

    fn changelog(&self) -> bool {
        self.settings.format.changelog()
    }

    fn idle_timeout(&self) -> Option<Duration> {
        self.settings.idle_timeout
    }

    fn resumable(&self, partition: usize, position: SourcePosition) -> bool {
        // Retention may have deleted what the checkpoint had not read yet.
        match self
            .metadata
            .fetch_watermarks(self.topic(), partition as i32, BROKER_TIMEOUT)
        {
            Ok((low, _)) => position.0 as i64 >= low,
            // Unknown now: try, and let reading report the problem.
            Err(_) => true,
        }
    }

    fn open(
        &self,
        partition: usize,
        from: Option<SourcePosition>,
    ) -> datafusion::common::Result<Box<dyn SourceReader>> {
        let partition = partition as i32;
        let next = match from {
            Some(p) => p.0 as i64,
            None => self.start_offset(partition)?,
        };
        let upserts = match &self.settings.format {
            Format::UpsertJson { key } => Some(Upserts::new(key.clone())),
            _ => None,
        };
        // An upsert reader that resumes first reads again what it had read,
        // for each key's latest value (see `upsert.rs`).
        let read_from = match (&upserts, from) {
            (Some(_), Some(_)) => {
                let (low, _) = self
                    .metadata
                    .fetch_watermarks(self.topic(), partition, BROKER_TIMEOUT)
                    .map_err(|e| {
                        DataFusionError::from(kafka_error("reading the offsets of the topic", e))
                    })?;
                low.min(next)
            }
            _ => next,
        };
        let mut config = self.settings.consumer_config();
        if self.settings.lag.is_some() {
            config.set("statistics.interval.ms", STATISTICS_EVERY_MS);
        }
        let lease =
            self.consumers
                .lease(&config, self.topic(), self.partitions, partition, read_from)?;
        Ok(Box::new(KafkaReader {
            topic: self.topic().to_string(),
            partition,
            lease,
            next,
            replay_until: next,
            upserts,
            decoder: self.decoder.clone(),
            on_error: self.settings.on_error.clone(),
            dead_letter: self.dead_letter.clone(),
            bad_rows: self.settings.bad_rows.clone(),
            lag: self.settings.lag.as_ref().map(|(stream, family)| {
                family
                    .get_or_create(&PartitionLabels {
                        stream: stream.clone(),
                        partition: partition.into(),
                    })
                    .clone()
            }),
            committed: Instant::now(),
            discovery: self
                .settings
                .discovery
                .filter(|_| partition == 0)
                .map(|every| Discovery {
                    every,
                    asked: Instant::now(),
                    partitions: self.partitions,
                    metadata: self.metadata.clone(),
                }),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "{}, {} partition(s)",
            self.settings.describe(),
            self.partitions
        )
    }

    fn identity(&self) -> String {
        // Without the partition count: a topic that gains partitions is
        // still the same source, and the job keeps its state.
        self.settings.describe()
    }

    fn added_partition_start(
        &self,
        partition: usize,
    ) -> datafusion::common::Result<Option<SourcePosition>> {
        // Its first message, whatever `scan_startup` says: all of it was
        // written after the job began (as Flink reads discovered
        // partitions).
        let (low, _) = self
            .metadata
            .fetch_watermarks(self.topic(), partition as i32, BROKER_TIMEOUT)
            .map_err(|e| {
                DataFusionError::from(kafka_error("reading the offsets of the topic", e))
            })?;
        Ok(Some(SourcePosition(low.max(0) as u64)))
    }
}

/// What the reader of partition 0 keeps to notice that the topic gained
/// partitions while the job runs.
struct Discovery {
    /// How often to ask.
    every: Duration,
    /// When it last asked.
    asked: Instant,
    /// The partitions the job reads.
    partitions: usize,
    metadata: Arc<BaseConsumer>,
}

impl Discovery {
    /// The topic's partition count now, if it is time to ask (blocking:
    /// off the async workers), or `None`.
    async fn count_if_due(&mut self, topic: &str) -> Option<usize> {
        if self.asked.elapsed() < self.every {
            return None;
        }
        self.asked = Instant::now();
        let (metadata, name) = (self.metadata.clone(), topic.to_string());
        let found = tokio::task::spawn_blocking(move || {
            metadata
                .fetch_metadata(Some(&name), BROKER_TIMEOUT)
                .map(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == name && t.error().is_none())
                        .map_or(0, |t| t.partitions().len())
                })
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|counted| counted.map_err(|e| e.to_string()));
        match found {
            Ok(count) => Some(count),
            // Asked again next time; the job reads on meanwhile.
            Err(err) => {
                warn!(topic, %err, "could not count the topic's partitions");
                None
            }
        }
    }
}

/// Reads one partition.
struct KafkaReader {
    topic: String,
    partition: i32,
    /// Its partition of the job's shared consumer.
    lease: PartitionLease,
    /// The next offset to read: the position.
    next: i64,
    /// Messages before this offset were read before the reader resumed:
    /// an upsert reader reads them again for its state, emitting nothing.
    replay_until: i64,
    /// For `upsert-json`: each key's latest value.
    upserts: Option<Upserts>,
    decoder: Arc<Decoder>,
    on_error: OnError,
    dead_letter: Option<Arc<ThreadedProducer<DefaultProducerContext>>>,
    bad_rows: Counter,
    /// This partition's `weir_source_lag`.
    lag: Option<Gauge>,
    /// When the position was last committed to the consumer group.
    committed: Instant,
    /// Partition 0's reader watches the topic for new partitions.
    discovery: Option<Discovery>,
}

impl KafkaReader {
    /// Show where the partition is: its lag behind the last stable offset
    /// (from librdkafka's statistics, no broker call of ours), and, every
    /// [`COMMIT_EVERY`], the position committed to the consumer group. The
    /// group's offsets are for outside tools (`kafka-consumer-groups`, lag
    /// exporters) only: a job resumes from its checkpoint's offsets, so a
    /// commit may run ahead of the last checkpoint without harm.
    fn show_progress(&mut self) {
        let stable = self.lease.stable();
        if let Some(lag) = &self.lag
            && stable >= 0
        {
            lag.set((stable - self.next).max(0));
        }
        if self.committed.elapsed() >= COMMIT_EVERY {
            self.committed = Instant::now();
            if let Err(err) = self.lease.commit(self.next) {
                warn!(topic = %self.topic, partition = self.partition, %err, "committing the position to the consumer group");
            }
        }
    }

    /// Take what is there now, decode it, and move past it.
    fn read_available(&mut self) -> datafusion::common::Result<Option<RecordBatch>> {
        let messages = match self.lease.take(MESSAGES_PER_BATCH) {
            Ok(messages) => messages,
            // Transient (a broker restarting): librdkafka retries.
            Err(err) => {
                warn!(topic = %self.topic, partition = self.partition, %err, "kafka consumer error");
                return Ok(None);
            }
        };
        let mut records: Vec<Record<'_>> = Vec::with_capacity(messages.len());
        for message in messages.iter() {
            match message {
                Ok(m) => records.push(Record {
                    payload: m.payload,
                    key: m.key,
                    retract: None,
                    partition: m.partition,
                    offset: m.offset,
                    timestamp_ms: m.timestamp_ms,
                }),
                // An error takes no offset: the messages after it in the
                // batch follow on, and are read (not dropped with it).
                Err(err) => {
                    warn!(topic = %self.topic, partition = self.partition, %err, "kafka consumer error");
                }
            }
        }
        let Some(last) = records.last() else {
            return Ok(None);
        };
        let next = last.offset + 1;
        let replayed = records
            .iter()
            .take_while(|r| r.offset < self.replay_until)
            .count();
        let (again, records) = records.split_at(replayed);
        if !again.is_empty() {
            // Read before (and its bad messages handled then): state only.
            decode(&self.decoder, &mut self.upserts, again)?;
            if records.is_empty() {
                return Ok(None);
            }
        }
        let (batch, bad) = decode(&self.decoder, &mut self.upserts, records)?;
        if !bad.is_empty() {
            handle_bad(
                &self.topic,
                &self.on_error,
                self.dead_letter.as_deref(),
                records,
                &bad,
            )?;
            self.bad_rows.inc_by(bad.len() as u64);
        }
        self.next = next;
        Ok(batch.filter(|b| b.num_rows() > 0))
    }
}

/// Decode `records`: the good ones as one batch, and the bad ones. An
/// upsert reader pairs each message with the value it replaces first,
/// and keeps only good values as keys' latest.
fn decode(
    decoder: &Decoder,
    upserts: &mut Option<Upserts>,
    records: &[Record<'_>],
) -> datafusion::common::Result<(Option<RecordBatch>, Vec<BadRecord>)> {
    let Some(upserts) = upserts else {
        return decoder.decode(records);
    };
    let applied = upserts.apply(records, &[]);
    let (batch, bad) = decoder.decode(&applied.records(records))?;
    if bad.is_empty() {
        return Ok((batch, applied.bad));
    }
    // Some values do not decode: apply the batch again without them.
    let mut skip = vec![false; records.len()];
    for b in &bad {
        skip[b.index] = true;
    }
    upserts.undo(applied);
    let applied = upserts.apply(records, &skip);
    let (batch, more) = decoder.decode(&applied.records(records))?;
    let mut all: Vec<BadRecord> = bad.into_iter().chain(applied.bad).chain(more).collect();
    all.sort_by_key(|b| b.index);
    Ok((batch, all))
}

fn handle_bad(
    topic: &str,
    on_error: &OnError,
    dead_letter: Option<&ThreadedProducer<DefaultProducerContext>>,
    records: &[Record<'_>],
    bad: &[BadRecord],
) -> datafusion::common::Result<()> {
    let first = &bad[0];
    let at = &records[first.index];
    match (on_error, dead_letter) {
        (OnError::DeadLetter(dlq), Some(producer)) => {
            for b in bad {
                let r = &records[b.index];
                let partition = r.partition.to_string();
                let offset = r.offset.to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "weir.error",
                        value: Some(b.error.as_bytes()),
                    })
                    .insert(Header {
                        key: "weir.topic",
                        value: Some(topic.as_bytes()),
                    })
                    .insert(Header {
                        key: "weir.partition",
                        value: Some(partition.as_bytes()),
                    })
                    .insert(Header {
                        key: "weir.offset",
                        value: Some(offset.as_bytes()),
                    });
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(dlq).headers(headers);
                if let Some(payload) = r.payload {
                    record = record.payload(payload);
                }
                if let Some(key) = r.key {
                    record = record.key(key);
                }
                producer.send(record).map_err(|(e, _)| {
                    DataFusionError::from(kafka_error("sending to the dead-letter topic", e))
                })?;
            }
            // Durable before the source moves past them.
            producer.flush(BROKER_TIMEOUT).map_err(|e| {
                DataFusionError::from(kafka_error("flushing the dead-letter topic", e))
            })
        }
        (OnError::Skip, _) => {
            warn!(topic, partition = at.partition, offset = at.offset, error = %first.error, skipped = bad.len(), "skipping bad kafka messages");
            Ok(())
        }
        _ => Err(DataFusionError::Execution(format!(
            "kafka topic \"{topic}\" partition {} offset {}: could not decode the message: {}",
            at.partition, at.offset, first.error
        ))),
    }
}

#[async_trait]
impl SourceReader for KafkaReader {
    async fn next_batch(&mut self) -> Option<datafusion::common::Result<RecordBatch>> {
        loop {
            // Only while holding no message: dropping this future at a
            // barrier loses nothing.
            if let Some(discovery) = &mut self.discovery
                && let Some(now) = discovery.count_if_due(&self.topic).await
                && now > discovery.partitions
            {
                return Some(Err(DataFusionError::External(Box::new(
                    weir_runtime::error::RuntimeError::Repartitioned(format!(
                        "kafka topic \"{}\" has {now} partitions, the job reads {}",
                        self.topic, discovery.partitions
                    )),
                ))));
            }
            if let Err(err) = self.lease.serve_events() {
                return Some(Err(DataFusionError::from(err)));
            }
            let read = self.read_available();
            self.show_progress();
            match read {
                Ok(Some(batch)) => return Some(Ok(batch)),
                Ok(None) => tokio::time::sleep(IDLE_POLL).await,
                Err(err) => return Some(Err(err)),
            }
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition(self.next as u64)
    }
}
