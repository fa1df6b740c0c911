//! A real Kafka-protocol broker for tests: `noida-db` (installed by
//! `.ci/setup` from PyPI), started on a free loopback port with its own
//! data folder, and stopped when dropped. Plus small rdkafka helpers to
//! create topics, produce test data and read topics back.
//!
//! The binary itself is started, not the Python wrapper around it: killing
//! the wrapper would leave the broker running. `NOIDA_DB` names the binary;
//! otherwise it is found in the installed `noida_db` Python package.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Where the `noida-db` binary is.
fn broker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NOIDA_DB") {
        return PathBuf::from(path);
    }
    let found = Command::new("python3")
        .args([
            "-c",
            "import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), 'noida-db'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match found {
        Some(path) if path.exists() => path,
        _ => panic!(
            "the Kafka test broker is not installed: run .ci/setup (pip install noida-db==0.2.3) or set NOIDA_DB"
        ),
    }
}

/// A running broker.
pub struct Broker {
    child: Child,
    _data: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Broker {
    /// Start a broker on a free port with a fresh data folder, and wait
    /// until it answers.
    pub fn start() -> Self {
        let data = tempfile::tempdir().expect("broker data dir");
        let mut child = Command::new(broker_binary())
            .args([
                "start",
                "--only",
                "kafka",
                "--host",
                "127.0.0.1",
                "--kafka-port",
                "0",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .stdout(Stdio::piped())
            // Its only stderr line on this Debian is a harmless glibc
            // weak-version warning.
            .stderr(Stdio::null())
            .spawn()
            .expect("start noida-db");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            // Keep reading so the broker never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut words = line.split_whitespace();
                if !sent
                    && words.next() == Some("kafka")
                    && let Some(addr) = words.next()
                {
                    let _ = tx.send(addr.to_string());
                    sent = true;
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("noida-db printed no kafka address");
        let broker = Self {
            child,
            _data: data,
            addr,
        };
        broker.wait_ready();
        broker
    }

    fn wait_ready(&self) {
        let consumer: BaseConsumer = self.config().create().expect("client");
        let deadline = Instant::now() + Duration::from_secs(30);
        while consumer
            .fetch_metadata(None, Duration::from_secs(1))
            .is_err()
        {
            assert!(Instant::now() < deadline, "the broker does not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client configuration for this broker.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.addr);
        config
    }

    /// Create `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin");
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results =
            futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()))
                .expect("create topic");
        for result in results {
            result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }

    /// Grow `topic` to `partitions` partitions.
    pub fn add_partitions(&self, topic: &str, partitions: usize) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin");
        let grown = NewPartitions::new(topic, partitions);
        let results =
            futures::executor::block_on(admin.create_partitions([&grown], &AdminOptions::new()))
                .expect("add partitions");
        for result in results {
            result.unwrap_or_else(|(t, e)| panic!("adding partitions to {t}: {e}"));
        }
    }

    /// A producer that waits for every send to be acknowledged on flush.
    pub fn producer(&self) -> BaseProducer {
        self.config()
            .set("enable.idempotence", "true")
            .create()
            .expect("producer")
    }

    /// Produce `(partition, key, value)` messages and wait until all are
    /// acknowledged.
    pub fn produce(&self, topic: &str, messages: &[(i32, Option<&str>, Option<&str>)]) {
        let producer = self.producer();
        for (partition, key, value) in messages {
            let mut record: BaseRecord<'_, str, str> = BaseRecord::to(topic).partition(*partition);
            if let Some(key) = key {
                record = record.key(*key);
            }
            if let Some(value) = value {
                record = record.payload(*value);
            }
            let mut record = record;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// Produce binary `(partition, value)` messages and wait until all are
    /// acknowledged.
    pub fn produce_bytes(&self, topic: &str, messages: &[(i32, Vec<u8>)]) {
        let producer = self.producer();
        for (partition, value) in messages {
            let mut record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(topic).partition(*partition).payload(value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// The offsets consumer group `group` committed for `topic`'s
    /// partitions `0..partitions` (`-1` where none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .expect("committed offsets");
        (0..partitions)
            .map(
                |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                },
            )
            .collect()
    }

    /// Every message of `topic` now (all partitions), as (key, value) text,
    /// read with `read_committed` when `committed`.
    pub fn read_all(&self, topic: &str, committed: bool) -> Vec<(Option<String>, String)> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "weir-tests")
            .set("enable.auto.commit", "false")
            .set(
                "isolation.level",
                if committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            )
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions: Vec<i32> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        let mut ends = std::collections::HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, *p, Duration::from_secs(10))
                .expect("watermarks");
            if high > low {
                ends.insert(*p, high);
                assignment
                    .add_partition_offset(topic, *p, Offset::Offset(low))
                    .expect("assign");
            }
        }
        let mut out = Vec::new();
        if ends.is_empty() {
            return out;
        }
        consumer.assign(&assignment).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(message) = consumer.poll(Duration::from_millis(50)) {
                let message = message.expect("message");
                out.push((
                    message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
                ));
            }
            // Done when every partition's position reached its end
            // (transaction markers take offsets but are no messages).
            let position = consumer.position().expect("position");
            let done = ends.iter().all(|(p, high)| {
                matches!(
                    position.find_partition(topic, *p).map(|e| e.offset()),
                    Some(Offset::Offset(o)) if o >= *high
                )
            });
            if done {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "reading topic {topic} did not reach its end"
            );
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
