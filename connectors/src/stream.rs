//! Streams: a connector's rows as a continuous source, and (when bounded) as
//! a table for ad-hoc queries.
//!
//! Every stream is first a DataFusion `TableProvider` (files: a listing
//! table; generators: a streaming table of partition streams). The streaming
//! source scans that provider once and reads each output partition as one
//! source partition, so batch and stream read rows the same way.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{Session, TableProvider};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use futures::StreamExt;
use weir_runtime::source::{Source, SourcePosition, SourceReader};

use crate::datagen::Datagen;
use crate::error::{ConnectorError, Result};
use crate::file::{self, FileSpec};
use crate::nexmark::{self, Nexmark};
use crate::options::ConnectorOptions;

/// A stream's connector, opened.
#[derive(Debug, Clone)]
pub struct StreamConnector {
    name: String,
    table: Arc<dyn TableProvider>,
    bounded: bool,
    /// The event-time column a connector knows by itself (Nexmark's
    /// `date_time`), used when the stream declares no watermark.
    default_time_column: Option<String>,
    description: String,
    /// A generator's partitions, which start at any row (a file's are
    /// reopened and skipped instead).
    generator: Option<Vec<Arc<dyn SeekablePartition>>>,
    /// A Kafka topic's settings (its partitions are asked for per job).
    kafka: Option<Arc<crate::kafka::source::KafkaStream>>,
}

/// A generator's partition that can start at any row: rows are a pure
/// function of their number, so a restored job seeks instead of replaying.
pub trait SeekablePartition: PartitionStream {
    /// The partition's rows from row `from` on.
    fn execute_from(&self, from: u64) -> SendableRecordBatchStream;
}

impl StreamConnector {
    /// Open the connector named in `options` (consumed) for a stream with the
    /// `declared` columns (`None`: the connector's own or the files').
    pub async fn open(
        state: &dyn Session,
        options: &mut ConnectorOptions,
        declared: Option<SchemaRef>,
    ) -> Result<Self> {
        let connector = options
            .take("connector")
            .ok_or_else(|| ConnectorError::MissingOption {
                connector: "stream".to_string(),
                option: "connector",
            })?;
        let opened = match connector.to_ascii_lowercase().as_str() {
            file::CONNECTOR => {
                let spec = FileSpec::from_options(options)?;
                let description = format!("file {} ({})", spec.path, spec.format.name());
                let table = spec.open_table(state, declared, true).await?;
                Self {
                    name: connector,
                    table,
                    bounded: true,
                    default_time_column: None,
                    description,
                    generator: None,
                    kafka: None,
                }
            }
            nexmark::CONNECTOR => {
                let generator = Nexmark::from_options(options)?;
                let partitions = generator.partitions();
                let table = generator_table(generator.schema(), &partitions, generator.bounded())?;
                Self {
                    name: connector,
                    table,
                    bounded: generator.bounded(),
                    default_time_column: Some(generator.time_column().to_string()),
                    description: "nexmark generator".to_string(),
                    generator: Some(partitions),
                    kafka: None,
                }
            }
            crate::datagen::CONNECTOR => {
                let schema = declared.ok_or_else(|| ConnectorError::InvalidOption {
                    option: "columns".into(),
                    value: String::new(),
                    reason: "a datagen stream needs a column list".into(),
                })?;
                let generator = Datagen::from_options(schema, options)?;
                let partitions = generator.partitions();
                let table = generator_table(generator.schema(), &partitions, generator.bounded())?;
                Self {
                    name: connector,
                    table,
                    bounded: generator.bounded(),
                    default_time_column: None,
                    description: "datagen generator".to_string(),
                    generator: Some(partitions),
                    kafka: None,
                }
            }
            crate::kafka::CONNECTOR => {
                let kafka = crate::kafka::source::KafkaStream::from_options(options, declared)?;
                // Unbounded: no table for ad-hoc scans (views read it).
                let table = Arc::new(
                    StreamingTable::try_new(kafka.schema(), Vec::new())?.with_infinite_table(true),
                );
                Self {
                    name: connector,
                    table,
                    bounded: false,
                    default_time_column: None,
                    description: kafka.describe(),
                    generator: None,
                    kafka: Some(Arc::new(kafka)),
                }
            }
            other => return Err(ConnectorError::UnknownConnector(other.to_string())),
        };
        options.clone().finish(&opened.name)?;
        Ok(opened)
    }

    /// Report the stream's metrics as `stream` into the server's: its
    /// undecodable records (`weir_bad_rows_total`) and, for Kafka, each
    /// partition's lag (`weir_source_lag`). Call before the first job.
    pub fn observe(&mut self, stream: &str, metrics: &weir_runtime::metrics::RuntimeMetrics) {
        if let Some(kafka) = self.kafka.as_mut().and_then(Arc::get_mut) {
            kafka.bad_rows = metrics.bad(stream);
            kafka.lag = Some((stream.to_string(), metrics.source_lag.clone()));
        }
    }

    /// The stream's columns.
    pub fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    /// Does it end?
    pub fn bounded(&self) -> bool {
        self.bounded
    }

    /// The rows as a table (for `SELECT`; only meaningful when bounded).
    pub fn table(&self) -> Arc<dyn TableProvider> {
        self.table.clone()
    }

    /// The event-time column the connector knows by itself.
    pub fn default_time_column(&self) -> Option<&str> {
        self.default_time_column.as_deref()
    }

    /// A streaming source over the stream's rows.
    pub async fn source(&self, state: &dyn Session) -> Result<Arc<dyn Source>> {
        if let Some(kafka) = &self.kafka {
            // Asks the broker for the partitions: blocking.
            let kafka = kafka.clone();
            let source = tokio::task::spawn_blocking(move || kafka.source())
                .await
                .map_err(|e| ConnectorError::External {
                    system: "kafka",
                    message: e.to_string(),
                })??;
            return Ok(Arc::new(source));
        }
        if let Some(partitions) = &self.generator {
            return Ok(Arc::new(GeneratorSource {
                schema: self.schema(),
                partitions: partitions.clone(),
                bounded: self.bounded,
                description: self.description.clone(),
            }));
        }
        let plan = self.table.scan(state, None, &[], None).await?;
        Ok(Arc::new(PlanSource {
            schema: self.schema(),
            partitions: plan.output_partitioning().partition_count(),
            plan,
            task: state.task_ctx(),
            bounded: self.bounded,
            description: self.description.clone(),
        }))
    }
}

/// A generator's partitions as a table (unbounded ones flagged infinite).
fn generator_table(
    schema: SchemaRef,
    partitions: &[Arc<dyn SeekablePartition>],
    bounded: bool,
) -> Result<Arc<dyn TableProvider>> {
    let partitions = partitions
        .iter()
        .map(|p| p.clone() as Arc<dyn PartitionStream>)
        .collect();
    Ok(Arc::new(
        StreamingTable::try_new(schema, partitions)?.with_infinite_table(!bounded),
    ))
}

/// A generator as a source: each partition starts where it is asked to.
#[derive(Debug)]
struct GeneratorSource {
    schema: SchemaRef,
    partitions: Vec<Arc<dyn SeekablePartition>>,
    bounded: bool,
    description: String,
}

impl Source for GeneratorSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn partitions(&self) -> usize {
        self.partitions.len()
    }

    fn bounded(&self) -> bool {
        self.bounded
    }

    fn open(
        &self,
        partition: usize,
        from: Option<SourcePosition>,
    ) -> datafusion::common::Result<Box<dyn SourceReader>> {
        let from = from.map_or(0, |p| p.0);
        Ok(Box::new(PlanReader {
            stream: self.partitions[partition].execute_from(from),
            skip: 0,
            read: from,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "{}, {} partition(s)",
            self.description,
            self.partitions.len()
        )
    }
}

/// How much wall-clock time an unbounded generator gathers into one batch.
/// Short, so that results move while data trickles in (at 1,000 rows per
/// second, a batch of 8,192 rows would show a change every 8 s); long
/// enough that a fast generator still makes batches of thousands of rows.
pub(crate) const BATCH_INTERVAL_MS: u64 = 50;

/// Rows per batch of an unbounded generator (or one partition of it)
/// making `rate` rows per second: what [`BATCH_INTERVAL_MS`] brings, at
/// least one row and at most `max`.
pub(crate) fn paced_batch_rows(rate: u64, max: u64) -> u64 {
    (rate.saturating_mul(BATCH_INTERVAL_MS) / 1000).clamp(1, max.max(1))
}

/// Keep an unbounded generator to `rate` rows per wall-clock second: wait
/// until row `emitted` is due, counted from `started`.
pub(crate) async fn pace(started: std::time::Instant, emitted: u64, rate: u64) {
    let due =
        std::time::Duration::from_nanos(((emitted as u128 * 1_000_000_000) / rate as u128) as u64);
    let elapsed = started.elapsed();
    if due > elapsed {
        tokio::time::sleep(due - elapsed).await;
    }
}

/// A source that reads the partitions of a DataFusion scan.
#[derive(Debug)]
struct PlanSource {
    schema: SchemaRef,
    plan: Arc<dyn ExecutionPlan>,
    partitions: usize,
    task: Arc<TaskContext>,
    bounded: bool,
    description: String,
}

impl Source for PlanSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn partitions(&self) -> usize {
        self.partitions
    }

    fn bounded(&self) -> bool {
        self.bounded
    }

    fn open(
        &self,
        partition: usize,
        from: Option<SourcePosition>,
    ) -> datafusion::common::Result<Box<dyn SourceReader>> {
        let stream = self.plan.execute(partition, self.task.clone())?;
        Ok(Box::new(PlanReader {
            stream,
            skip: from.map_or(0, |p| p.0),
            read: 0,
        }))
    }

    fn describe(&self) -> String {
        format!("{}, {} partition(s)", self.description, self.partitions)
    }
}

/// Position = rows read: reopening skips that many rows.
struct PlanReader {
    stream: SendableRecordBatchStream,
    skip: u64,
    read: u64,
}

#[async_trait]
impl SourceReader for PlanReader {
    async fn next_batch(&mut self) -> Option<datafusion::common::Result<RecordBatch>> {
        loop {
            let batch = match self.stream.next().await? {
                Ok(batch) => batch,
                Err(e) => return Some(Err(e)),
            };
            let rows = batch.num_rows() as u64;
            if self.skip >= rows {
                self.skip -= rows;
                self.read += rows;
                continue;
            }
            let batch = batch.slice(self.skip as usize, (rows - self.skip) as usize);
            self.read += rows;
            self.skip = 0;
            return Some(Ok(batch));
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition(self.read)
    }
}
