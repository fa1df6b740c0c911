//! `datagen`: rows made up from the declared columns, deterministic by seed.
//!
//! `WITH (connector = 'datagen', rows = 1000, 'fields.id.kind' = 'sequence',
//! 'fields.v.min' = '0', 'fields.v.max' = '99')`. Integer columns count up
//! from `min` (`sequence`, the default) or are random in `[min, max]`;
//! floats are random in `[min, max]`; text is `<column>-<n>` or random
//! digits; timestamps start at 2024-01-01 and step `fields.<c>.step_ms`
//! (default 1000) per row; booleans alternate. Without `rows` it runs forever
//! at `rate` rows per second (default 1000); with `rows` it ends there, as
//! fast as it can unless a `rate` is set (as Flink's datagen).

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
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
pub const CONNECTOR: &str = "datagen";
const BATCH_ROWS: u64 = 4096;

/// Rows per second of an unbounded generator without a `rate`.
const DEFAULT_RATE: u64 = 1000;
const START_NS: i64 = 1_704_067_200_000_000_000;

#[derive(Debug, Clone)]
struct FieldSpec {
    random: bool,
    min: f64,
    max: f64,
    step_ns: i64,
}

/// A configured generator.
#[derive(Debug, Clone)]
pub struct Datagen {
    schema: SchemaRef,
    fields: Vec<FieldSpec>,
    rows: Option<u64>,
    rate: Option<u64>,
    seed: u64,
}

impl Datagen {
    /// Read the options for the declared `schema`.
    pub fn from_options(schema: SchemaRef, options: &mut ConnectorOptions) -> Result<Self> {
        if schema.fields().is_empty() {
            return Err(ConnectorError::InvalidOption {
                option: "columns".into(),
                value: String::new(),
                reason: "a datagen stream needs a column list".into(),
            });
        }
        let mut fields = Vec::new();
        for field in schema.fields() {
            let prefix = format!("fields.{}.", field.name().to_ascii_lowercase());
            let kind = options.take(&format!("{prefix}kind"));
            let random = match kind.as_deref() {
                None | Some("sequence") => false,
                Some("random") => true,
                Some(other) => {
                    return Err(ConnectorError::InvalidOption {
                        option: format!("{prefix}kind"),
                        value: other.into(),
                        reason: "expected sequence or random".into(),
                    });
                }
            };
            let num = |options: &mut ConnectorOptions, key: &str, default: f64| -> Result<f64> {
                match options.take(&format!("{prefix}{key}")) {
                    None => Ok(default),
                    Some(v) => v.parse().map_err(|_| ConnectorError::InvalidOption {
                        option: format!("{prefix}{key}"),
                        value: v,
                        reason: "expected a number".into(),
                    }),
                }
            };
            let min = num(options, "min", 0.0)?;
            let max = num(options, "max", 1000.0)?;
            let step_ns = (num(options, "step_ms", 1000.0)? * 1_000_000.0) as i64;
            fields.push(FieldSpec {
                random,
                min,
                max,
                step_ns,
            });
        }
        let int = |options: &mut ConnectorOptions, key: &str| -> Result<Option<u64>> {
            options
                .take(key)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| ConnectorError::InvalidOption {
                        option: key.into(),
                        value: v,
                        reason: "expected a non-negative integer".into(),
                    })
                })
                .transpose()
        };
        Ok(Self {
            schema,
            fields,
            rows: int(options, "rows")?,
            rate: int(options, "rate")?.map(|r| r.max(1)),
            seed: int(options, "seed")?.unwrap_or(42),
        })
    }

    /// The columns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Does it end?
    pub fn bounded(&self) -> bool {
        self.rows.is_some()
    }

    /// One partition.
    pub fn partitions(&self) -> Vec<Arc<dyn SeekablePartition>> {
        vec![Arc::new(self.clone())]
    }

    fn batch(&self, first: u64, count: u64) -> datafusion::common::Result<RecordBatch> {
        let mut columns = Vec::with_capacity(self.fields.len());
        for (i, (field, spec)) in self.schema.fields().iter().zip(&self.fields).enumerate() {
            let rand01 = |n: u64| {
                (splitmix(self.seed ^ (i as u64) << 32 ^ n) >> 11) as f64 / (1u64 << 53) as f64
            };
            let ids = first..first + count;
            let column: ArrayRef = match field.data_type() {
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
                | DataType::Decimal128(..) => {
                    let values: Vec<i64> = ids
                        .map(|n| {
                            if spec.random {
                                (spec.min + rand01(n) * (spec.max - spec.min + 1.0)).floor() as i64
                            } else {
                                spec.min as i64 + n as i64
                            }
                        })
                        .collect();
                    cast(
                        &(Arc::new(Int64Array::from(values)) as ArrayRef),
                        field.data_type(),
                    )?
                }
                DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                    let values: Vec<f64> = ids
                        .map(|n| spec.min + rand01(n) * (spec.max - spec.min))
                        .collect();
                    cast(
                        &(Arc::new(Float64Array::from(values)) as ArrayRef),
                        field.data_type(),
                    )?
                }
                DataType::Boolean => Arc::new(BooleanArray::from(
                    ids.map(|n| n % 2 == 0).collect::<Vec<_>>(),
                )),
                DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
                    let values: Vec<i64> =
                        ids.map(|n| START_NS + n as i64 * spec.step_ns).collect();
                    let ns: ArrayRef = Arc::new(
                        datafusion::arrow::array::TimestampNanosecondArray::from(values),
                    );
                    cast(&ns, field.data_type())?
                }
                _ => {
                    let values: Vec<String> = ids
                        .map(|n| {
                            if spec.random {
                                format!("{}", (rand01(n) * 1e9) as u64)
                            } else {
                                format!("{}-{n}", field.name())
                            }
                        })
                        .collect();
                    cast(
                        &(Arc::new(StringArray::from(values)) as ArrayRef),
                        field.data_type(),
                    )?
                }
            };
            columns.push(column);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl PartitionStream for Datagen {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        self.execute_from(0)
    }
}

impl SeekablePartition for Datagen {
    fn execute_from(&self, from: u64) -> SendableRecordBatchStream {
        let generator = self.clone();
        let started = Instant::now();
        let stream = futures::stream::unfold(from, move |first| {
            let generator = generator.clone();
            async move {
                // Unbounded: `rate` rows per second (1000 unless set).
                // Bounded: as fast as it goes, unless a `rate` is set.
                let count = match (generator.rows, generator.rate) {
                    (Some(rows), _) if first >= rows => return None,
                    (Some(rows), None) => BATCH_ROWS.min(rows - first),
                    (rows, rate) => {
                        let rate = rate.unwrap_or(DEFAULT_RATE);
                        crate::generator::pace(started, first - from, rate).await;
                        let left = rows.map_or(u64::MAX, |rows| rows - first);
                        crate::generator::paced_batch_rows(rate, BATCH_ROWS).min(left)
                    }
                };
                Some((generator.batch(first, count), first + count))
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// `WITH (connector = 'datagen', ...)` over declared columns: a stream only.
#[derive(Debug, Clone, Copy)]
pub struct DatagenConnector;

#[async_trait::async_trait]
impl Connector for DatagenConnector {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    fn can_be(&self) -> &'static [Role] {
        &[Role::Stream]
    }

    fn options(&self) -> &'static [OptionSpec] {
        const OPTIONS: &[OptionSpec] = &[
            OptionSpec::new(
                "rows",
                "how many rows before the stream ends (none: it never ends)",
            ),
            OptionSpec::new(
                "rate",
                "rows per wall-clock second (default 1000 when unbounded)",
            ),
            OptionSpec::new("seed", "the random seed: the same seed makes the same rows"),
            OptionSpec::new("fields.<column>.kind", "sequence (the default) or random"),
            OptionSpec::new("fields.<column>.min", "the smallest value (default 0)"),
            OptionSpec::new(
                "fields.<column>.max",
                "the largest random value (default 1000)",
            ),
            OptionSpec::new(
                "fields.<column>.step_ms",
                "a timestamp's step per row in milliseconds (default 1000)",
            ),
        ];
        OPTIONS
    }

    async fn open_stream(
        &self,
        _state: &dyn Session,
        options: &mut ConnectorOptions,
        declared: Option<SchemaRef>,
    ) -> Result<OpenedStream> {
        let schema = declared.ok_or_else(|| ConnectorError::InvalidOption {
            option: "columns".into(),
            value: String::new(),
            reason: "a datagen stream needs a column list".into(),
        })?;
        let generator = Datagen::from_options(schema, options)?;
        crate::generator::opened(
            generator.schema(),
            generator.partitions(),
            generator.bounded(),
            "datagen generator",
        )
    }
}
