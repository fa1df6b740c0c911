//! A view's rows (or changes) written to a topic, at least or exactly once.
//!
//! ```text
//!  at-least-once:  batches ──send──> topic;  barrier ──> flush (every row acked)
//!  exactly-once:   batches ──send in transaction T(slot)──> topic
//!                  barrier ──> marker (slot, epoch) into T, flush: T is pre-committed,
//!                              its messages kept in the checkpoint; the next rows go to
//!                              a transaction on another slot
//!                  checkpoint complete ──> commit T; its slot is free again
//! ```
//!
//! # Correctness (exactly-once)
//! - Transactional ids are `<prefix>-<slot>`, the same across restarts, so
//!   initialising them on recovery fences a zombie of an earlier run and
//!   aborts whatever it left open (an open transaction would also hold back
//!   every `read_committed` reader of the topic).
//! - A checkpoint lists the transactions its barrier pre-committed, and
//!   holds their messages. The checkpoint's manifest is written before they
//!   commit, so after a crash such a transaction is in doubt: it committed,
//!   or recovery's initialisation aborted it. Each transaction also wrote a
//!   marker `(transactional id, epoch)` to the commit topic, committed with
//!   it; recovery reads those markers and sends again, in a new transaction,
//!   exactly the messages of the transactions that did not commit.
//! - Manifests complete in epoch order and each commit runs before the next
//!   manifest is written, so only the latest checkpoint's transactions can
//!   be in doubt.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray, BinaryArray, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::common::{DataFusionError, Result as DfResult};
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::warn;
use weir_runtime::checkpoint::StateWrite;
use weir_runtime::job::Sink;

use super::encode::{Encoder, Message};
use super::format::Format;
use super::{BROKER_TIMEOUT, CONNECTOR, KafkaOptions, kafka_error};
use crate::error::{ConnectorError, Result};
use crate::options::ConnectorOptions;

/// The topic where exactly-once sinks record which transactions committed.
pub const DEFAULT_COMMIT_TOPIC: &str = "weir_sink_commits";

/// Slots initialised on recovery beyond those a checkpoint knows: a run may
/// have opened transactions on slots no checkpoint recorded yet.
const SPARE_SLOTS: u32 = 2;

/// How a sink delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every row at least once: after a crash, rows since the last
    /// checkpoint are sent again.
    AtLeastOnce,
    /// Every row exactly once to `read_committed` readers.
    ExactlyOnce,
}

/// Remembers the first failed delivery, so the next barrier fails rather
/// than checkpoint past a lost message.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((err, _)) = result {
            self.failed.lock().get_or_insert_with(|| err.to_string());
        }
    }
}

type Producer = ThreadedProducer<Deliveries>;

/// One producer: a transactional id's slot (exactly-once), or the sink's
/// only producer (at-least-once).
struct Slot {
    slot: u32,
    producer: Arc<Producer>,
    /// The messages of the open transaction (exactly-once only).
    sent: Vec<Message>,
}

#[derive(Default)]
struct Writing {
    /// The slot taking rows now.
    current: Option<Slot>,
    /// Pre-committed transactions by their pending name.
    awaiting: BTreeMap<String, Slot>,
    /// Initialised slots with no open transaction.
    free: Vec<Slot>,
    /// Slots made so far.
    slots: u32,
}

/// A Kafka sink.
pub struct KafkaSink {
    kafka: KafkaOptions,
    encoder: Encoder,
    delivery: Delivery,
    transactional_prefix: String,
    commit_topic: String,
    writing: Mutex<Writing>,
}

impl KafkaSink {
    /// Sink `name` of a view with `schema` (updating when `changelog`).
    pub fn new(
        name: &str,
        schema: SchemaRef,
        changelog: bool,
        options: &mut ConnectorOptions,
    ) -> Result<Self> {
        let kafka = KafkaOptions::from_options(options)?;
        let format = Format::from_options(options)?;
        let key: Vec<String> = options
            .take("key")
            .map(|k| k.split(',').map(|c| c.trim().to_string()).collect())
            .unwrap_or_default();
        let delivery = match options
            .take("delivery")
            .map(|d| d.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("exactly-once") | Some("exactly_once") => Delivery::ExactlyOnce,
            Some("at-least-once") | Some("at_least_once") => Delivery::AtLeastOnce,
            Some(other) => {
                return Err(ConnectorError::InvalidOption {
                    option: "delivery".into(),
                    value: other.into(),
                    reason: "expected exactly-once or at-least-once".into(),
                });
            }
        };
        let transactional_prefix = options
            .take("transactional_id_prefix")
            .unwrap_or_else(|| format!("weir-sink-{name}"));
        let commit_topic = options
            .take("commit_topic")
            .unwrap_or_else(|| DEFAULT_COMMIT_TOPIC.to_string());
        let encoder = Encoder::new(format, schema, &key, changelog)?;
        Ok(Self {
            kafka,
            encoder,
            delivery,
            transactional_prefix,
            commit_topic,
            writing: Mutex::new(Writing::default()),
        })
    }

    /// Check `options` for a Kafka sink without connecting.
    pub fn check_options(
        name: &str,
        schema: SchemaRef,
        changelog: bool,
        options: &ConnectorOptions,
    ) -> Result<()> {
        let mut options = options.clone();
        Self::new(name, schema, changelog, &mut options)?;
        options.finish(CONNECTOR)
    }

    fn transactional_id(&self, slot: u32) -> String {
        format!("{}-{slot}", self.transactional_prefix)
    }

    /// A producer for `slot`, initialised (exactly-once: fences earlier
    /// producers of its id and aborts what they left open).
    fn make_slot(&self, slot: u32) -> DfResult<Slot> {
        let producer: Producer = match self.delivery {
            Delivery::AtLeastOnce => self
                .kafka
                .client_config(&[("enable.idempotence", "true")])
                .create_with_context(Deliveries::default()),
            Delivery::ExactlyOnce => self
                .kafka
                .client_config(&[
                    ("enable.idempotence", "true"),
                    ("transactional.id", &self.transactional_id(slot)),
                ])
                .create_with_context(Deliveries::default()),
        }
        .map_err(|e| failed("creating a producer", e))?;
        if self.delivery == Delivery::ExactlyOnce {
            producer
                .init_transactions(BROKER_TIMEOUT)
                .map_err(|e| failed("initialising transactions", e))?;
        }
        Ok(Slot {
            slot,
            producer: Arc::new(producer),
            sent: Vec::new(),
        })
    }

    /// The slot taking rows, its transaction begun.
    fn current<'a>(&self, writing: &'a mut Writing) -> DfResult<&'a mut Slot> {
        if writing.current.is_none() {
            let slot = match writing.free.pop() {
                Some(slot) => slot,
                None => {
                    writing.slots += 1;
                    self.make_slot(writing.slots - 1)?
                }
            };
            if self.delivery == Delivery::ExactlyOnce {
                slot.producer
                    .begin_transaction()
                    .map_err(|e| failed("beginning a transaction", e))?;
            }
            writing.current = Some(slot);
        }
        writing
            .current
            .as_mut()
            .ok_or_else(|| DataFusionError::Internal("no kafka producer".into()))
    }

    /// Read the commit topic: the last committed epoch per transactional id.
    fn committed_epochs(&self) -> DfResult<HashMap<String, u64>> {
        let consumer: BaseConsumer = self
            .kafka
            .client_config(&[
                ("group.id", "weir-sink-recovery"),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
            ])
            .create()
            .map_err(|e| failed("creating a consumer", e))?;
        let topic = &self.commit_topic;
        let (low, high) = consumer
            .fetch_watermarks(topic, 0, BROKER_TIMEOUT)
            .map_err(|e| failed("reading the commit topic's offsets", e))?;
        let mut epochs = HashMap::new();
        if high <= low {
            return Ok(epochs);
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Offset(low))
            .and_then(|()| consumer.assign(&assignment))
            .map_err(|e| failed("reading the commit topic", e))?;
        let deadline = Instant::now() + BROKER_TIMEOUT * 3;
        loop {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    if let (Some(key), Some(value)) = (m.key(), m.payload())
                        && let Ok(epoch) = String::from_utf8_lossy(value).parse::<u64>()
                    {
                        let id = String::from_utf8_lossy(key).into_owned();
                        let e = epochs.entry(id).or_insert(0);
                        *e = (*e).max(epoch);
                    }
                    if m.offset() + 1 >= high {
                        break;
                    }
                }
                Some(Err(err)) => return Err(failed("reading the commit topic", err)),
                None => {}
            }
            // Transaction markers take offsets but are not messages: the
            // position, not the last message, says when the end is read.
            let at_end = consumer
                .position()
                .ok()
                .and_then(|p| p.find_partition(topic, 0).map(|p| p.offset()))
                .is_some_and(|o| matches!(o, Offset::Offset(o) if o >= high));
            if at_end {
                break;
            }
            if Instant::now() > deadline {
                return Err(failed("reading the commit topic", "timed out"));
            }
        }
        Ok(epochs)
    }

    /// Create the commit topic if it is missing (compacted: one marker per
    /// transactional id is all recovery needs).
    fn ensure_commit_topic(&self) -> DfResult<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .kafka
            .client_config(&[])
            .create()
            .map_err(|e| failed("creating an admin client", e))?;
        let topic = NewTopic::new(&self.commit_topic, 1, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact");
        let created = futures::executor::block_on(admin.create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT)),
        ))
        .map_err(|e| failed("creating the commit topic", e))?;
        for result in created {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(failed("creating the commit topic", code)),
            }
        }
        Ok(())
    }

    /// Send `messages` through `slot`'s producer (the topic's partitioner
    /// places them by key).
    fn send(&self, producer: &Producer, messages: &[Message]) -> DfResult<()> {
        for (key, value) in messages {
            self.send_one(producer, &self.kafka.topic, key.as_deref(), value)?;
        }
        Ok(())
    }

    fn send_one(
        &self,
        producer: &Producer,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> DfResult<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                // The local queue is full: wait for deliveries to drain it.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((err, _)) => return Err(failed("sending a message", err)),
            }
        }
    }

    /// Everything sent so far is acknowledged, or the first failure.
    fn flush(&self, producer: &Producer) -> DfResult<()> {
        producer
            .flush(BROKER_TIMEOUT)
            .map_err(|e| failed("flushing", e))?;
        match producer.context().failed.lock().take() {
            Some(err) => Err(failed("delivering a message", err)),
            None => Ok(()),
        }
    }
}

fn failed(action: &str, err: impl std::fmt::Display) -> DataFusionError {
    kafka_error(&format!("kafka sink: {action}"), err).into()
}

/// The schema of a pre-committed transaction's messages in a checkpoint.
fn messages_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("epoch", DataType::UInt64, false),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, false),
    ]))
}

/// A pending transaction's name: `<slot>.<epoch>`.
fn pending_name(slot: u32, epoch: u64) -> String {
    format!("{slot}.{epoch}")
}

fn parse_pending(name: &str) -> Option<(u32, u64)> {
    let (slot, epoch) = name.split_once('.')?;
    Some((slot.parse().ok()?, epoch.parse().ok()?))
}

/// The checkpoint chunk holding a slot's last pre-committed messages.
fn chunk_id(slot: u32) -> String {
    format!("txn-{slot}")
}

impl Drop for KafkaSink {
    /// The sink is dropped or its job stops: abort what it left open, since
    /// an open transaction holds back every `read_committed` reader of the
    /// topic. A pre-committed one that a complete checkpoint lists is sent
    /// again by the next recovery, as after a crash.
    fn drop(&mut self) {
        if self.delivery != Delivery::ExactlyOnce {
            return;
        }
        let mut writing = self.writing.lock();
        let open = writing
            .current
            .take()
            .into_iter()
            .chain(std::mem::take(&mut writing.awaiting).into_values());
        for slot in open {
            if let Err(err) = slot.producer.abort_transaction(BROKER_TIMEOUT) {
                warn!(transaction = %self.transactional_id(slot.slot), %err, "kafka sink: abort failed");
            }
        }
    }
}

impl Sink for KafkaSink {
    fn writes_out(&self) -> bool {
        true
    }

    fn apply(&self, batch: RecordBatch) -> DfResult<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let messages = self.encoder.encode(&batch)?;
        let mut writing = self.writing.lock();
        let slot = self.current(&mut writing)?;
        self.send(&slot.producer, &messages)?;
        if self.delivery == Delivery::ExactlyOnce {
            slot.sent.extend(messages);
        }
        Ok(())
    }

    fn snapshot(&self, epoch: u64) -> DfResult<Vec<(String, StateWrite)>> {
        let mut writing = self.writing.lock();
        if self.delivery == Delivery::AtLeastOnce {
            // Every row before the barrier is acknowledged: a restart from
            // this checkpoint sends only what came after.
            if let Some(slot) = &writing.current {
                self.flush(&slot.producer)?;
            }
            return Ok(Vec::new());
        }
        let Some(mut slot) = writing.current.take() else {
            return Ok(Vec::new());
        };
        let id = self.transactional_id(slot.slot);
        let marker = epoch.to_string();
        self.send_one(
            &slot.producer,
            &self.commit_topic,
            Some(id.as_bytes()),
            marker.as_bytes(),
        )?;
        self.flush(&slot.producer)?;
        let sent = std::mem::take(&mut slot.sent);
        let keys: BinaryArray = sent.iter().map(|(k, _)| k.as_deref()).collect();
        let values: BinaryArray = sent.iter().map(|(_, v)| Some(v.as_slice())).collect();
        let messages = RecordBatch::try_new(
            messages_schema(),
            vec![
                Arc::new(UInt64Array::from(vec![epoch; sent.len()])),
                Arc::new(keys),
                Arc::new(values),
            ],
        )?;
        let name = pending_name(slot.slot, epoch);
        let chunk = chunk_id(slot.slot);
        writing.awaiting.insert(name.clone(), slot);
        Ok(vec![(
            "transactions".to_string(),
            StateWrite {
                put: vec![(chunk, messages)],
                pending: vec![name],
                ..Default::default()
            },
        )])
    }

    fn restore(
        &self,
        state: &BTreeMap<String, Vec<(String, RecordBatch)>>,
        pending: &BTreeMap<String, Vec<String>>,
    ) -> DfResult<()> {
        if self.delivery == Delivery::AtLeastOnce {
            return Ok(());
        }
        self.ensure_commit_topic()?;
        let chunks: BTreeMap<&str, &RecordBatch> = state
            .values()
            .flatten()
            .map(|(id, batch)| (id.as_str(), batch))
            .collect();
        let known = chunks
            .keys()
            .filter_map(|id| id.strip_prefix("txn-")?.parse::<u32>().ok())
            .map(|s| s + 1)
            .max()
            .unwrap_or(0);
        // Initialising every slot an earlier run may have used fences its
        // producers and aborts their open transactions.
        let mut writing = self.writing.lock();
        *writing = Writing::default();
        let slots = known + SPARE_SLOTS;
        let mut free = Vec::new();
        for s in 0..slots {
            free.push(self.make_slot(s)?);
        }
        let in_doubt: Vec<(u32, u64)> = pending
            .values()
            .flatten()
            .filter_map(|p| parse_pending(p))
            .collect();
        if !in_doubt.is_empty() {
            let committed = self.committed_epochs()?;
            for (s, epoch) in in_doubt {
                let id = self.transactional_id(s);
                if committed.get(&id).is_some_and(|e| *e >= epoch) {
                    continue;
                }
                let Some(batch) = chunks.get(chunk_id(s).as_str()) else {
                    return Err(DataFusionError::Internal(format!(
                        "kafka sink: the checkpoint lists transaction {id} of epoch {epoch} without its messages"
                    )));
                };
                let epochs = batch.column(0).as_primitive::<UInt64Type>();
                if batch.num_rows() > 0 && epochs.value(0) != epoch {
                    return Err(DataFusionError::Internal(format!(
                        "kafka sink: the checkpoint holds epoch {} for transaction {id}, not {epoch}",
                        epochs.value(0)
                    )));
                }
                let keys = batch.column(1).as_binary::<i32>();
                let values = batch.column(2).as_binary::<i32>();
                let messages: Vec<Message> = (0..batch.num_rows())
                    .map(|i| {
                        (
                            (!keys.is_null(i)).then(|| keys.value(i).to_vec()),
                            values.value(i).to_vec(),
                        )
                    })
                    .collect();
                let slot = free
                    .iter()
                    .find(|f| f.slot == s)
                    .ok_or_else(|| DataFusionError::Internal("kafka sink: no such slot".into()))?;
                slot.producer
                    .begin_transaction()
                    .map_err(|e| failed("beginning a transaction", e))?;
                self.send(&slot.producer, &messages)?;
                self.send_one(
                    &slot.producer,
                    &self.commit_topic,
                    Some(id.as_bytes()),
                    epoch.to_string().as_bytes(),
                )?;
                slot.producer
                    .commit_transaction(BROKER_TIMEOUT)
                    .map_err(|e| failed("committing a transaction", e))?;
                warn!(transaction = %id, epoch, messages = messages.len(), "kafka sink: sent an uncommitted transaction again");
            }
        }
        // Lowest slots first: they are the ones a checkpoint knows.
        free.reverse();
        writing.free = free;
        writing.slots = slots;
        Ok(())
    }

    fn commit(&self, pending: &BTreeMap<String, Vec<String>>) -> DfResult<()> {
        let mut writing = self.writing.lock();
        for name in pending.values().flatten() {
            // Not ours (already resolved on recovery): nothing to do.
            let Some(slot) = writing.awaiting.remove(name) else {
                continue;
            };
            if let Err(err) = slot.producer.commit_transaction(BROKER_TIMEOUT) {
                warn!(transaction = %self.transactional_id(slot.slot), %err, "kafka sink: commit failed");
                return Err(failed("committing a transaction", err));
            }
            writing.free.push(slot);
        }
        Ok(())
    }
}
