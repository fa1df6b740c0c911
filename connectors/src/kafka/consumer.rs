//! One consumer for all the partitions a job reads of a topic.
//!
//! Every librdkafka consumer runs its own threads (a main thread and one
//! per broker) and sends its own fetch requests. With a consumer per
//! partition, as Weir had, that cost was paid per partition: librdkafka's
//! threads took about 40 % of the server's CPU reading a 4-partition topic.
//! Here the readers of one source share one consumer. Each partition's
//! messages are split off into a queue of their own that only its reader
//! polls, so readers stay independent (each its own position and pace)
//! while one request per broker fetches for all of them.
//!
//! # Correctness
//! - A partition's queue is split off before the partition is assigned, so
//!   no message of it is ever delivered to the consumer's own queue, which
//!   readers poll only to serve librdkafka's events (statistics, errors).
//! - A partition is leased from a consumer at most once. A reader opened
//!   for a partition its consumer has already leased (a job restarting
//!   while its old tasks wind down) gets a new consumer, so two readers
//!   never share an assignment and no old fetch reaches a new reader.
//! - A lease dropped unassigns its partition; the consumer (and its
//!   threads) goes when its last lease does.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tracing::warn;

use super::batch::{Messages, PartitionQueue};
use super::kafka_error;
use crate::error::Result;

/// Responses from the broker the consumer could not read, in a row with no
/// message between, before the reader gives up (see
/// [`PartitionLease::serve_events`]).
const REFUSED_LIMIT: u32 = 3;

/// The consumers a source's readers share: the one new leases come from.
#[derive(Default)]
pub(super) struct SharedConsumers {
    current: parking_lot::Mutex<Weak<TopicConsumer>>,
}

impl SharedConsumers {
    /// A lease of `partition` of `topic` (of `partitions`), read from
    /// `offset`: from the current consumer, or from a new one made with
    /// `config` when there is none or it has leased `partition` before.
    pub(super) fn lease(
        &self,
        config: &ClientConfig,
        topic: &str,
        partitions: usize,
        partition: i32,
        offset: i64,
    ) -> Result<PartitionLease> {
        let index = usize::try_from(partition).unwrap_or(usize::MAX);
        let consumer = {
            let mut current = self.current.lock();
            match current.upgrade().filter(|c| c.take(index)) {
                Some(consumer) => consumer,
                None => {
                    let consumer = Arc::new(TopicConsumer::new(config, topic, partitions)?);
                    consumer.take(index);
                    *current = Arc::downgrade(&consumer);
                    consumer
                }
            }
        };
        // Split first, then assign: see the module's correctness notes.
        let queue =
            PartitionQueue::split(&consumer.consumer, topic, partition).ok_or_else(|| {
                kafka_error(
                    "splitting off a partition's queue",
                    format!("topic \"{topic}\" partition {partition}"),
                )
            })?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .and_then(|()| consumer.consumer.incremental_assign(&assignment))
            .map_err(|e| kafka_error("assigning a partition", e))?;
        Ok(PartitionLease {
            queue,
            consumer,
            partition,
        })
    }
}

/// One consumer and which partitions it has leased.
struct TopicConsumer {
    consumer: Arc<BaseConsumer<TopicContext>>,
    topic: String,
    /// Partitions leased from it, ever (by partition number).
    leased: parking_lot::Mutex<Vec<bool>>,
    /// Broker responses it could not read since the last message came.
    refused: AtomicU32,
}

impl TopicConsumer {
    fn new(config: &ClientConfig, topic: &str, partitions: usize) -> Result<Self> {
        let context = TopicContext {
            topic: topic.to_string(),
            stable: (0..partitions).map(|_| AtomicI64::new(-1)).collect(),
        };
        let consumer = config
            .create_with_context(context)
            .map_err(|e| kafka_error("creating a consumer", e))?;
        Ok(TopicConsumer {
            consumer: Arc::new(consumer),
            topic: topic.to_string(),
            leased: parking_lot::Mutex::new(vec![false; partitions]),
            refused: AtomicU32::new(0),
        })
    }

    /// Take `partition` if this consumer has never leased it.
    fn take(&self, partition: usize) -> bool {
        let mut leased = self.leased.lock();
        match leased.get_mut(partition) {
            Some(taken) if !*taken => {
                *taken = true;
                true
            }
            _ => false,
        }
    }
}

/// A reader's hold on one partition of a shared consumer.
pub(super) struct PartitionLease {
    queue: PartitionQueue<TopicContext>,
    consumer: Arc<TopicConsumer>,
    partition: i32,
}

impl PartitionLease {
    /// Up to `max` of the partition's next messages, those there now.
    pub(super) fn take(&self, max: usize) -> KafkaResult<Messages<'_>> {
        let messages = self.queue.take(max)?;
        if messages.len() > 0 {
            self.consumer.refused.store(0, Ordering::Relaxed);
        }
        Ok(messages)
    }

    /// Serve what librdkafka queued on the consumer itself (statistics,
    /// errors) without waiting. Messages never come this way (they are
    /// split off before assignment); errors are logged, as librdkafka
    /// retries them itself, but for one it cannot get past: a response it
    /// refuses to read (`BadMessage`), which it fetches again for ever.
    /// The usual cause is a response above `receive.message.max.bytes` (a
    /// broker that ignores `fetch.max.bytes` sends everything it holds):
    /// after [`REFUSED_LIMIT`] in a row with no message between, the
    /// reader fails, saying what to raise, rather than leave the job
    /// running with nothing read.
    pub(super) fn serve_events(&self) -> Result<()> {
        match self.consumer.consumer.poll(Duration::ZERO) {
            None => {}
            Some(Err(err)) => {
                warn!(topic = %self.consumer.topic, %err, "kafka consumer error");
                if matches!(
                    err,
                    KafkaError::MessageConsumption(RDKafkaErrorCode::BadMessage)
                ) && self.consumer.refused.fetch_add(1, Ordering::Relaxed) + 1 >= REFUSED_LIMIT
                {
                    return Err(kafka_error(
                        &format!(
                            "reading topic \"{}\": the consumer refused the broker's responses {REFUSED_LIMIT} times in a row",
                            self.consumer.topic
                        ),
                        format!(
                            "{err}; when the log says \"Invalid response size\", a response was larger than receive.message.max.bytes: raise it with the stream option 'properties.receive.message.max.bytes'"
                        ),
                    ));
                }
            }
            Some(Ok(message)) => {
                // Cannot happen (see above); said loudly if it does, since
                // the message is not this reader's to take.
                warn!(
                    topic = %self.consumer.topic,
                    partition = message.partition(),
                    offset = message.offset(),
                    "a message reached the shared consumer's queue"
                );
            }
        }
        Ok(())
    }

    /// The partition's last stable offset, from librdkafka's statistics
    /// (`-1` until the first).
    pub(super) fn stable(&self) -> i64 {
        usize::try_from(self.partition)
            .ok()
            .and_then(|p| self.consumer.consumer.context().stable.get(p))
            .map_or(-1, |s| s.load(Ordering::Relaxed))
    }

    /// Commit `next` as the partition's position to the consumer group,
    /// without waiting.
    pub(super) fn commit(&self, next: i64) -> KafkaResult<()> {
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(&self.consumer.topic, self.partition, Offset::Offset(next))?;
        self.consumer.consumer.commit(&offsets, CommitMode::Async)
    }
}

impl Drop for PartitionLease {
    fn drop(&mut self) {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition(&self.consumer.topic, self.partition);
        if let Err(err) = self.consumer.consumer.incremental_unassign(&assignment) {
            warn!(topic = %self.consumer.topic, partition = self.partition, %err, "unassigning a partition");
        }
    }
}

/// librdkafka's callbacks for a shared consumer: its statistics give each
/// partition's last stable offset (what a `read_committed` reader can
/// reach), for the lag gauge.
struct TopicContext {
    topic: String,
    /// By partition: the last stable offset, `-1` until the first
    /// statistics.
    stable: Vec<AtomicI64>,
}

impl ClientContext for TopicContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (&partition, at) in &topic.partitions {
            let Some(slot) = usize::try_from(partition)
                .ok()
                .and_then(|p| self.stable.get(p))
            else {
                continue;
            };
            // `ls_offset` is -1 where the broker does not report it.
            let stable = if at.ls_offset >= 0 {
                at.ls_offset
            } else {
                at.hi_offset
            };
            if stable >= 0 {
                slot.store(stable, Ordering::Relaxed);
            }
        }
    }
}

impl ConsumerContext for TopicContext {}
