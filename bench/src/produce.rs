//! `weir-bench produce`: messages into a Kafka topic, for the Kafka
//! benchmark (`bench/kafka.sh`).
//!
//! Either every line of a file (JSON lines from `gen-bids --format json`),
//! spread round-robin over the topic's partitions as fast as the broker
//! takes them; or, with `--live N`, `N` bids made now and stamped with the
//! wall clock as their `date_time`, at a steady `--rate` per second, so a
//! subscriber can measure produce-to-arrival latency from the rows alone.

use std::io::BufRead;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

/// What to produce where.
pub struct ProduceArgs {
    brokers: String,
    topic: String,
    partitions: i32,
    input: Option<String>,
    live: u64,
    rate: u64,
}

/// Parse `produce`'s flags (after the subcommand).
pub fn parse(mut args: impl Iterator<Item = String>) -> Result<ProduceArgs, String> {
    let mut parsed = ProduceArgs {
        brokers: String::new(),
        topic: String::new(),
        partitions: 1,
        input: None,
        live: 0,
        rate: 100_000,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--brokers" => parsed.brokers = value,
            "--topic" => parsed.topic = value,
            "--partitions" => parsed.partitions = number()?.max(1) as i32,
            "--in" => parsed.input = Some(value),
            "--live" => parsed.live = number()?,
            "--rate" => parsed.rate = number()?.max(1),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if parsed.brokers.is_empty() || parsed.topic.is_empty() {
        return Err("produce needs --brokers and --topic".into());
    }
    if parsed.input.is_none() == (parsed.live == 0) {
        return Err("produce needs either --in FILE or --live N".into());
    }
    Ok(parsed)
}

/// Create the topic with `--partitions` partitions unless it exists.
fn create_topic(args: &ProduceArgs) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .create()
        .map_err(|e| format!("creating the admin client: {e}"))?;
    let topic = NewTopic::new(&args.topic, args.partitions, TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .map_err(|e| format!("creating topic {}: {e}", args.topic))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("creating topic {topic}: {code}")),
        }
    }
    Ok(())
}

/// Send everything, wait until the broker acknowledged it, and report the
/// rate on stderr.
pub fn run(args: &ProduceArgs) -> Result<(), String> {
    create_topic(args)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| format!("creating the producer: {e}"))?;
    let started = Instant::now();
    let mut sent = 0u64;
    let send = |payload: &[u8], partition: i32| -> Result<(), String> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&args.topic)
            .partition(partition)
            .payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((err, back)) => {
                    if !matches!(err.rdkafka_error_code(), Some(RDKafkaErrorCode::QueueFull)) {
                        return Err(format!("producing: {err}"));
                    }
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        producer.poll(Duration::ZERO);
        Ok(())
    };
    if let Some(path) = &args.input {
        let file = std::fs::File::open(path).map_err(|e| format!("opening {path}: {e}"))?;
        for line in std::io::BufReader::with_capacity(1 << 20, file).split(b'\n') {
            let line = line.map_err(|e| format!("reading {path}: {e}"))?;
            if line.is_empty() {
                continue;
            }
            send(&line, (sent % args.partitions as u64) as i32)?;
            sent += 1;
        }
    } else {
        let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
        for n in 0..args.live {
            // Steady pacing: wait for this message's slot.
            let due = started + interval.mul_f64(n as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let message = format!(
                r#"{{"auction": {}, "price": {}, "date_time": "{}"}}"#,
                1000 + n % 1000,
                100 + (n * 7919) % 10_000,
                super::timestamp(ms)
            );
            send(message.as_bytes(), (n % args.partitions as u64) as i32)?;
            sent += 1;
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| format!("flushing: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {sent} messages in {seconds:.2} s ({:.0}/s)",
        sent as f64 / seconds
    );
    Ok(())
}
