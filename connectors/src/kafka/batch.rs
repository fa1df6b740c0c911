//! A partition's messages taken from librdkafka a batch at a time.
//!
//! The rdkafka crate hands out one message per poll: each poll reads the
//! clock (in Rust and again in librdkafka), takes the queue's lock, and
//! allocates an event holder. Reading a 4-partition JSON topic, that was
//! about a quarter of the server's CPU (`__vdso_clock_gettime` alone 13 %),
//! more than librdkafka's own fetching. librdkafka's
//! `rd_kafka_consume_batch_queue` takes up to N messages under one lock and
//! one clock read; the crate does not wrap it, so this module calls it.
//!
//! This is the only module of Weir with `unsafe` code (the workspace denies
//! it everywhere else). It is kept to the calls below, each with the
//! contract it relies on.
//!
//! # Correctness
//! - The queue is the partition's own (`rd_kafka_queue_get_partition`) with
//!   its forwarding to the consumer's queue removed, exactly what the crate's
//!   `split_partition_queue` does, and before the partition is assigned (see
//!   `consumer.rs`), so every message of the partition arrives here.
//! - Messages borrow librdkafka's fetch buffers; [`Messages`] owns them and
//!   destroys each exactly once when dropped, and the slices it hands out
//!   borrow it, so none outlives its message.
//! - The queue handle is destroyed before the consumer it belongs to: it
//!   holds the consumer.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;

/// One partition's queue of a consumer.
pub(super) struct PartitionQueue<C: ConsumerContext + 'static> {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// Keeps the consumer (and so the queue's owner) alive.
    _consumer: Arc<BaseConsumer<C>>,
}

// SAFETY: librdkafka's queues are safe to use from any thread (their
// operations lock), and the handle is only a pointer to one.
unsafe impl<C: ConsumerContext> Send for PartitionQueue<C> {}
// SAFETY: as above; `take` may run from several threads at once.
unsafe impl<C: ConsumerContext> Sync for PartitionQueue<C> {}

impl<C: ConsumerContext> PartitionQueue<C> {
    /// Split `partition` of `topic` off `consumer`'s queue, as the crate's
    /// `split_partition_queue` does; `None` if librdkafka has no such queue
    /// (or the topic's name holds a NUL).
    pub(super) fn split(
        consumer: &Arc<BaseConsumer<C>>,
        topic: &str,
        partition: i32,
    ) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is valid while `consumer` lives, and
        // `topic` is a NUL-terminated string that outlives the call.
        let queue = unsafe {
            rd::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            )
        };
        let queue = NonNull::new(queue)?;
        // SAFETY: `queue` is a live queue handle; a null destination
        // removes its forwarding.
        unsafe { rd::rd_kafka_queue_forward(queue.as_ptr(), ptr::null_mut()) };
        Some(Self {
            queue,
            _consumer: consumer.clone(),
        })
    }

    /// Up to `max` messages that are there now, without waiting.
    pub(super) fn take(&self, max: usize) -> KafkaResult<Messages<'_>> {
        let mut taken: Vec<*mut rd::rd_kafka_message_t> = Vec::with_capacity(max);
        // SAFETY: `taken` has room for `max` pointers, which librdkafka
        // fills from the front and counts in its return value.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, taken.as_mut_ptr(), max)
        };
        let Ok(n) = usize::try_from(n) else {
            // SAFETY: reads the calling thread's last librdkafka error.
            let code = unsafe { rd::rd_kafka_last_error() };
            return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::from(code)));
        };
        // SAFETY: librdkafka wrote `n <= max` valid message pointers.
        unsafe { taken.set_len(n.min(max)) };
        Ok(Messages {
            taken,
            _queue: PhantomData,
        })
    }
}

impl<C: ConsumerContext> Drop for PartitionQueue<C> {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_queue_get_partition` and
        // is destroyed once, here, while the consumer still lives.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// Messages taken from a queue, destroyed when this is dropped.
pub(super) struct Messages<'q> {
    taken: Vec<*mut rd::rd_kafka_message_t>,
    _queue: PhantomData<&'q ()>,
}

/// One message, or the error librdkafka delivered in its place.
pub(super) struct Message<'m> {
    /// The value (`None`: a tombstone).
    pub payload: Option<&'m [u8]>,
    /// The key.
    pub key: Option<&'m [u8]>,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, in milliseconds since the epoch, when it has one.
    pub timestamp_ms: Option<i64>,
}

impl Messages<'_> {
    /// How many were taken (errors included).
    pub(super) fn len(&self) -> usize {
        self.taken.len()
    }

    /// Each message in order, or the error that came in its place.
    pub(super) fn iter(&self) -> impl Iterator<Item = KafkaResult<Message<'_>>> {
        self.taken.iter().map(|&m| {
            // SAFETY: every pointer is a live message until `drop`, and the
            // returned slices borrow `self`.
            let m = unsafe { &*m };
            if m.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::from(
                    m.err,
                )));
            }
            let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
            // SAFETY: `m` is a live message; `kind` is written.
            let timestamp = unsafe { rd::rd_kafka_message_timestamp(m, &mut kind) };
            Ok(Message {
                // SAFETY: librdkafka's payload and key are `len` bytes long
                // (or null) and live as long as the message.
                payload: unsafe { bytes(m.payload, m.len) },
                key: unsafe { bytes(m.key, m.key_len) },
                partition: m.partition,
                offset: m.offset,
                timestamp_ms: (kind
                    != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
                    .then_some(timestamp),
            })
        })
    }
}

/// `len` bytes at `data`, or `None` when it is null.
///
/// # Safety
/// `data` is null or points at `len` readable bytes that live for `'a`.
unsafe fn bytes<'a>(data: *mut std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

impl Drop for Messages<'_> {
    fn drop(&mut self) {
        for &m in &self.taken {
            // SAFETY: each message is destroyed once, here.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
}
