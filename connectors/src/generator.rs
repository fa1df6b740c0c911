//! What the generators (`nexmark`, `datagen`) share: partitions that start
//! at any row, their table and sources, and pacing to a rate.
//!
//! A generator's rows are a pure function of their number, so a restored
//! job seeks a partition to its checkpointed row instead of replaying it.
//! The generators depend on this module, never the other way round.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{Session, TableProvider};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::streaming::PartitionStream;
use weir_runtime::source::{Source, SourcePosition, SourceReader};

use crate::error::Result;
use crate::opened_stream::{OpenedStream, RowCountReader, SourceFactory};

/// A generator's partition that can start at any row: rows are a pure
/// function of their number, so a restored job seeks instead of replaying.
pub trait SeekablePartition: PartitionStream {
    /// The partition's rows from row `from` on.
    fn execute_from(&self, from: u64) -> SendableRecordBatchStream;
}

/// A generator's `partitions` of rows with `schema` as an opened stream
/// (ending when `bounded`), described as `description` in EXPLAIN.
pub(crate) fn opened(
    schema: SchemaRef,
    partitions: Vec<Arc<dyn SeekablePartition>>,
    bounded: bool,
    description: &str,
) -> Result<OpenedStream> {
    let streams = partitions
        .iter()
        .map(|p| p.clone() as Arc<dyn PartitionStream>)
        .collect();
    let table: Arc<dyn TableProvider> =
        Arc::new(StreamingTable::try_new(schema.clone(), streams)?.with_infinite_table(!bounded));
    let sources = Arc::new(GeneratorSource {
        schema,
        partitions,
        bounded,
        description: description.to_string(),
    });
    Ok(OpenedStream::new(table, bounded, sources))
}

/// A generator as a source: each partition starts where it is asked to.
#[derive(Debug, Clone)]
struct GeneratorSource {
    schema: SchemaRef,
    partitions: Vec<Arc<dyn SeekablePartition>>,
    bounded: bool,
    description: String,
}

#[async_trait]
impl SourceFactory for GeneratorSource {
    async fn source(&self, _state: &dyn Session) -> Result<Arc<dyn Source>> {
        Ok(Arc::new(self.clone()))
    }
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
        Ok(Box::new(RowCountReader::starting_at(
            self.partitions[partition].execute_from(from),
            from,
        )))
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
