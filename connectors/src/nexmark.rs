//! The Nexmark generator: people, auctions and bids, deterministic by seed.
//!
//! Every field of event `n` is a pure function of `(seed, n)`, so a partition
//! can start anywhere (recovery seeks to a sequence number) and two runs give
//! the same rows. Event time advances by `1 / rate` seconds per event; a
//! generator with `rows` ends, one without runs forever at `rate` events per
//! wall-clock second.
//!
//! Skew as in Nexmark: most bids go to a few hot auctions and come from a few
//! hot bidders.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;

use datafusion::catalog::Session;

use crate::error::{ConnectorError, Result};
use crate::generator::SeekablePartition;
use crate::opened_stream::OpenedStream;
use crate::options::ConnectorOptions;
use crate::registry::{Connector, OptionSpec, Role};

/// The connector's name.
pub const CONNECTOR: &str = "nexmark";
/// Rows per generated batch.
const BATCH_ROWS: u64 = 8192;
/// 2024-01-01T00:00:00Z: the default start of event time.
const DEFAULT_START_NS: i64 = 1_704_067_200_000_000_000;

/// Which Nexmark table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `person`.
    Person,
    /// `auction`.
    Auction,
    /// `bid`.
    Bid,
}

/// A configured generator.
#[derive(Debug, Clone)]
pub struct Nexmark {
    table: Table,
    seed: u64,
    /// Events per second of event time.
    rate: u64,
    /// Total rows; `None` for an unbounded stream.
    rows: Option<u64>,
    partitions: usize,
    start_ns: i64,
    schema: SchemaRef,
}

impl Nexmark {
    /// Read `table`, `rate`, `rows`, `seed`, `partitions` from the options.
    pub fn from_options(options: &mut ConnectorOptions) -> Result<Self> {
        let table = match options
            .take("table")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("bid") | Some("bids") => Table::Bid,
            Some("auction") | Some("auctions") => Table::Auction,
            Some("person") | Some("people") | Some("persons") => Table::Person,
            Some(other) => {
                return Err(ConnectorError::InvalidOption {
                    option: "table".into(),
                    value: other.into(),
                    reason: "expected bid, auction or person".into(),
                });
            }
            None => {
                return Err(ConnectorError::MissingOption {
                    connector: CONNECTOR.into(),
                    option: "table",
                });
            }
        };
        let rate = take_u64(options, "rate")?.unwrap_or(100_000).max(1);
        let rows = take_u64(options, "rows")?;
        let seed = take_u64(options, "seed")?.unwrap_or(42);
        let partitions = take_u64(options, "partitions")?.unwrap_or(1).clamp(1, 256) as usize;
        Ok(Self {
            table,
            seed,
            rate,
            rows,
            partitions,
            start_ns: DEFAULT_START_NS,
            schema: schema(table),
        })
    }

    /// The table's columns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Does it end?
    pub fn bounded(&self) -> bool {
        self.rows.is_some()
    }

    /// One partition stream per partition.
    pub fn partitions(&self) -> Vec<Arc<dyn SeekablePartition>> {
        (0..self.partitions)
            .map(|p| {
                Arc::new(NexmarkPartition {
                    generator: self.clone(),
                    partition: p as u64,
                }) as Arc<dyn SeekablePartition>
            })
            .collect()
    }

    /// The event-time column.
    pub fn time_column(&self) -> &'static str {
        "date_time"
    }

    /// Event `n`'s time.
    fn time_of(&self, n: u64) -> i64 {
        self.start_ns + (n as i128 * 1_000_000_000 / self.rate as i128) as i64
    }

    /// Build the rows for event numbers `ids`.
    fn batch(&self, ids: &[u64]) -> RecordBatch {
        let time: ArrayRef = Arc::new(TimestampNanosecondArray::from(
            ids.iter().map(|&n| self.time_of(n)).collect::<Vec<_>>(),
        ));
        let columns: Vec<ArrayRef> = match self.table {
            Table::Bid => {
                let auction = ids.iter().map(|&n| self.bid_auction(n));
                let bidder = ids.iter().map(|&n| self.bid_bidder(n));
                let price = ids
                    .iter()
                    .map(|&n| 100 + (rand(self.seed, n, 3) % 10_000) as i64);
                let channel = ids
                    .iter()
                    .map(|&n| CHANNELS[(rand(self.seed, n, 4) % CHANNELS.len() as u64) as usize]);
                let url = ids.iter().map(|&n| {
                    format!(
                        "https://nexmark.example/item/{}",
                        rand(self.seed, n, 5) % 1000
                    )
                });
                vec![
                    Arc::new(Int64Array::from_iter_values(auction)),
                    Arc::new(Int64Array::from_iter_values(bidder)),
                    Arc::new(Int64Array::from_iter_values(price)),
                    Arc::new(StringArray::from_iter_values(channel)),
                    Arc::new(StringArray::from_iter_values(url)),
                    time,
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|_| ""))),
                ]
            }
            Table::Auction => {
                let id = ids.iter().map(|&n| 1000 + n as i64);
                let initial = ids
                    .iter()
                    .map(|&n| 100 + (rand(self.seed, n, 6) % 1000) as i64);
                let reserve = ids
                    .iter()
                    .map(|&n| 1000 + (rand(self.seed, n, 7) % 5000) as i64);
                let expires = ids.iter().map(|&n| {
                    self.time_of(n)
                        + 10_000_000_000
                        + (rand(self.seed, n, 8) % 20_000_000_000) as i64
                });
                let seller = ids
                    .iter()
                    .map(|&n| 1000 + (rand(self.seed, n, 9) % (n / 3 + 1)) as i64);
                let category = ids
                    .iter()
                    .map(|&n| 10 + (rand(self.seed, n, 10) % 5) as i64);
                vec![
                    Arc::new(Int64Array::from_iter_values(id)),
                    Arc::new(StringArray::from_iter_values(
                        ids.iter()
                            .map(|&n| format!("item-{}", rand(self.seed, n, 11) % 10_000)),
                    )),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|&n| {
                        format!("description {}", rand(self.seed, n, 12) % 100)
                    }))),
                    Arc::new(Int64Array::from_iter_values(initial)),
                    Arc::new(Int64Array::from_iter_values(reserve)),
                    time,
                    Arc::new(TimestampNanosecondArray::from_iter_values(expires)),
                    Arc::new(Int64Array::from_iter_values(seller)),
                    Arc::new(Int64Array::from_iter_values(category)),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|_| ""))),
                ]
            }
            Table::Person => {
                let id = ids.iter().map(|&n| 1000 + n as i64);
                vec![
                    Arc::new(Int64Array::from_iter_values(id)),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|&n| {
                        format!(
                            "{} {}",
                            FIRST[(rand(self.seed, n, 13) % 8) as usize],
                            LAST[(rand(self.seed, n, 14) % 8) as usize]
                        )
                    }))),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|&n| {
                        format!("p{}@nexmark.example", rand(self.seed, n, 15) % 100_000)
                    }))),
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|&n| {
                        format!("{:016}", rand(self.seed, n, 16) % 10_000_000_000_000_000)
                    }))),
                    Arc::new(StringArray::from_iter_values(
                        ids.iter()
                            .map(|&n| CITIES[(rand(self.seed, n, 17) % 8) as usize]),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        ids.iter()
                            .map(|&n| STATES[(rand(self.seed, n, 18) % 6) as usize]),
                    )),
                    time,
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|_| ""))),
                ]
            }
        };
        // The schema and the columns are built together above.
        RecordBatch::try_new(self.schema.clone(), columns)
            .expect("nexmark columns match their schema")
    }

    /// Hot auctions: 90 % of bids go to 1 % of auctions (Nexmark's skew).
    fn bid_auction(&self, n: u64) -> i64 {
        let auctions = n / 10 + 10;
        let r = rand(self.seed, n, 1);
        if r % 10 < 9 {
            1000 + ((r >> 8) % (auctions / 100 + 1)) as i64
        } else {
            1000 + ((r >> 8) % auctions) as i64
        }
    }

    /// Hot bidders: 80 % of bids come from 1 % of people.
    fn bid_bidder(&self, n: u64) -> i64 {
        let people = n / 20 + 10;
        let r = rand(self.seed, n, 2);
        if r % 10 < 8 {
            1000 + ((r >> 8) % (people / 100 + 1)) as i64
        } else {
            1000 + ((r >> 8) % people) as i64
        }
    }
}

fn take_u64(options: &mut ConnectorOptions, key: &str) -> Result<Option<u64>> {
    options
        .take(key)
        .map(|v| {
            v.trim()
                .replace('_', "")
                .parse::<u64>()
                .map_err(|_| ConnectorError::InvalidOption {
                    option: key.to_string(),
                    value: v,
                    reason: "expected a non-negative integer".to_string(),
                })
        })
        .transpose()
}

const CHANNELS: &[&str] = &["apple", "google", "facebook", "baidu"];
const FIRST: &[&str] = &[
    "peter", "paul", "luke", "john", "saul", "vicky", "kate", "julie",
];
const LAST: &[&str] = &[
    "shultz", "abrams", "spencer", "white", "bartels", "walton", "smith", "jones",
];
const CITIES: &[&str] = &[
    "phoenix",
    "los angeles",
    "san francisco",
    "boise",
    "portland",
    "bend",
    "redmond",
    "seattle",
];
const STATES: &[&str] = &["az", "ca", "id", "or", "wa", "wy"];

/// A stateless random number: splitmix64 over (seed, event, field).
fn rand(seed: u64, n: u64, field: u64) -> u64 {
    let mut z =
        seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ field.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The columns of each table.
pub fn schema(table: Table) -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Nanosecond, None);
    let fields = match table {
        Table::Bid => vec![
            Field::new("auction", DataType::Int64, false),
            Field::new("bidder", DataType::Int64, false),
            Field::new("price", DataType::Int64, false),
            Field::new("channel", DataType::Utf8, false),
            Field::new("url", DataType::Utf8, false),
            Field::new("date_time", ts(), false),
            Field::new("extra", DataType::Utf8, false),
        ],
        Table::Auction => vec![
            Field::new("id", DataType::Int64, false),
            Field::new("item_name", DataType::Utf8, false),
            Field::new("description", DataType::Utf8, false),
            Field::new("initial_bid", DataType::Int64, false),
            Field::new("reserve", DataType::Int64, false),
            Field::new("date_time", ts(), false),
            Field::new("expires", ts(), false),
            Field::new("seller", DataType::Int64, false),
            Field::new("category", DataType::Int64, false),
            Field::new("extra", DataType::Utf8, false),
        ],
        Table::Person => vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("email_address", DataType::Utf8, false),
            Field::new("credit_card", DataType::Utf8, false),
            Field::new("city", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("date_time", ts(), false),
            Field::new("extra", DataType::Utf8, false),
        ],
    };
    Arc::new(Schema::new(fields))
}

#[derive(Debug)]
struct NexmarkPartition {
    generator: Nexmark,
    partition: u64,
}

impl PartitionStream for NexmarkPartition {
    fn schema(&self) -> &SchemaRef {
        &self.generator.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        self.execute_from(0)
    }
}

impl SeekablePartition for NexmarkPartition {
    fn execute_from(&self, from: u64) -> SendableRecordBatchStream {
        let generator = self.generator.clone();
        let parts = generator.partitions as u64;
        let partition = self.partition;
        let started = Instant::now();
        // Events due since the (re)start, for pacing.
        let skipped = from * parts;
        // Partition p generates events p, p + P, p + 2P, ...; the k-th of
        // them is its row k, so starting at row `from` is a seek.
        let stream = futures::stream::unfold(from, move |k| {
            let generator = generator.clone();
            async move {
                let first = partition + k * parts;
                if let Some(rows) = generator.rows
                    && first >= rows
                {
                    return None;
                }
                // Paced, a batch holds what the partition makes in a short
                // interval, so that results move while events trickle in.
                let batch_rows = match generator.rows {
                    Some(_) => BATCH_ROWS,
                    None => crate::generator::paced_batch_rows(generator.rate / parts, BATCH_ROWS),
                };
                let ids: Vec<u64> = (0..batch_rows)
                    .map(|i| first + i * parts)
                    .take_while(|n| generator.rows.is_none_or(|rows| *n < rows))
                    .collect();
                if generator.rows.is_none() {
                    crate::generator::pace(started, first.saturating_sub(skipped), generator.rate)
                        .await;
                }
                let batch = generator.batch(&ids);
                Some((Ok(batch), k + ids.len() as u64))
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(
            self.generator.schema.clone(),
            stream,
        ))
    }
}

/// `WITH (connector = 'nexmark', table = 'bid', ...)`: a stream only.
#[derive(Debug, Clone, Copy)]
pub struct NexmarkConnector;

#[async_trait::async_trait]
impl Connector for NexmarkConnector {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    fn can_be(&self) -> &'static [Role] {
        &[Role::Stream]
    }

    fn options(&self) -> &'static [OptionSpec] {
        const OPTIONS: &[OptionSpec] = &[
            OptionSpec::new("table", "bid, auction or person").required(),
            OptionSpec::new(
                "rate",
                "events per second of event time (and of wall-clock time when unbounded)",
            ),
            OptionSpec::new(
                "rows",
                "how many events before the stream ends (none: it never ends)",
            ),
            OptionSpec::new("seed", "the random seed: the same seed makes the same rows"),
            OptionSpec::new(
                "partitions",
                "how many source partitions generate events (1 to 256)",
            ),
        ];
        OPTIONS
    }

    async fn open_stream(
        &self,
        _state: &dyn Session,
        options: &mut ConnectorOptions,
        _declared: Option<SchemaRef>,
    ) -> Result<OpenedStream> {
        let generator = Nexmark::from_options(options)?;
        let opened = crate::generator::opened(
            generator.schema(),
            generator.partitions(),
            generator.bounded(),
            "nexmark generator",
        )?;
        Ok(opened.with_time_column(generator.time_column()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_rows() {
        let mut options =
            ConnectorOptions::new([("table", "bid"), ("rows", "100"), ("rate", "10")]);
        let generator = Nexmark::from_options(&mut options).expect("options");
        let a = generator.batch(&[0, 1, 2, 99]);
        let b = generator.batch(&[0, 1, 2, 99]);
        assert_eq!(a, b);
        let times = a
            .column(5)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .expect("ts");
        assert_eq!(times.value(1) - times.value(0), 100_000_000);
    }
}
