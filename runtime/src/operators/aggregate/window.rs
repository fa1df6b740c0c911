//! The window aggregate: tumbling, hopping and cumulating windows with
//! `EMIT ON WINDOW CLOSE`.
//!
//! One table of groups per close time, aggregated with DataFusion's
//! vectorized `GroupsAccumulator`s. When the watermark passes a close time,
//! that table is evaluated in one go, emitted, and dropped. A row whose
//! window already closed is late: dropped and counted.
//!
//! # Checkpoint chunks
//! One chunk per window that took rows since the last barrier, `c<close>`
//! ([`WindowChunk`]): the group-key columns in group order (the types the
//! group expressions give, so a restore hashes them to the same worker as
//! the exchange), then each aggregate's state columns. Closed windows'
//! chunks are removed.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::RowConverter;
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;

use super::filtered::split_mask;
use super::key_index::KeyIndex;
use super::keyed_state::chunk;
use super::shared::{Base, rows_of_worker, take_all};
use crate::checkpoint::StateWrite;
use crate::operators::{Side, StateSummary, StreamBatch, StreamOperator, conform};
use crate::plan::{AggregateSpec, WindowKind};

/// One worker's window aggregate.
pub struct WindowAggregate {
    base: Base,
    /// The group key that gives a row's close time, with `plus` added.
    key: usize,
    plus: i64,
    /// Open windows by close time.
    windows: BTreeMap<i64, WindowTable>,
    /// Windows written by earlier snapshots.
    saved: BTreeSet<i64>,
}

/// The groups of one closing window, aggregated column-wise. The window's
/// own key columns (its bounds) are the same for every group of a window, so
/// they are kept once; groups are told apart by the partition keys alone.
struct WindowTable {
    index: KeyIndex,
    /// The window key values, by group-key position (`None`: a partition key).
    window_values: Vec<Option<ScalarValue>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// Took rows since the last checkpoint.
    dirty: bool,
}

/// Column positions of a window's chunk.
struct WindowChunk<'a> {
    spec: &'a AggregateSpec,
}

impl WindowChunk<'_> {
    /// The group-key columns come first, in group order.
    fn keys(&self) -> usize {
        self.spec.group.len()
    }

    /// The chunk id of the window closing at `close`.
    fn id(close: i64) -> String {
        format!("c{close}")
    }

    /// The close time in a chunk id.
    fn close(id: &str) -> Result<i64> {
        match id.strip_prefix('c').and_then(|c| c.parse::<i64>().ok()) {
            Some(close) => Ok(close),
            None => internal_err!("a window chunk without its close time: {id}"),
        }
    }
}

impl WindowAggregate {
    /// A new, empty window aggregate.
    pub fn new(spec: Arc<AggregateSpec>, input_schema: &SchemaRef, late: Counter) -> Result<Self> {
        let WindowKind::Fixed { key, plus } = spec.window else {
            return internal_err!("a window aggregate planned without a fixed window");
        };
        Ok(Self {
            base: Base::new(spec, input_schema, late)?,
            key,
            plus,
            windows: BTreeMap::new(),
            saved: BTreeSet::new(),
        })
    }

    /// Row-encoded partition keys, when the key index needs them.
    fn partition_rows(
        &self,
        partition: &[ArrayRef],
    ) -> Result<Option<datafusion::arrow::row::Rows>> {
        Ok(match self.base.partition_types.as_slice() {
            [] | [DataType::Int64] => None,
            _ => Some(self.base.partition_converter.convert_columns(partition)?),
        })
    }

    fn closing_batch(
        &mut self,
        keys: &[ArrayRef],
        inputs: &[Vec<ArrayRef>],
        closes: &[i64],
    ) -> Result<()> {
        if closes.is_empty() {
            return Ok(());
        }
        // Most batches fall in one or two windows: group the rows by close time.
        let mut by_close: Vec<(i64, Vec<u32>)> = Vec::new();
        for (row, close) in closes.iter().enumerate() {
            match by_close.iter_mut().find(|(c, _)| c == close) {
                Some((_, rows)) => rows.push(row as u32),
                None => by_close.push((*close, vec![row as u32])),
            }
        }
        let spec = self.base.spec.clone();
        let partition: Vec<ArrayRef> = spec
            .partition_keys
            .iter()
            .map(|&k| keys[k].clone())
            .collect();
        let rows = self.partition_rows(&partition)?;
        for (close, selected) in by_close {
            let table = match self.windows.entry(close) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let first = selected[0] as usize;
                    let window_values = (0..keys.len())
                        .map(|k| {
                            if spec.partition_keys.contains(&k) {
                                Ok(None)
                            } else {
                                ScalarValue::try_from_array(&keys[k], first).map(Some)
                            }
                        })
                        .collect::<Result<Vec<_>>>()?;
                    e.insert(WindowTable::new(&self.base, window_values)?)
                }
            };
            table.dirty = true;
            let group_indices = table.index.indices(&partition, rows.as_ref(), &selected)?;
            let total = table.index.len();
            let all = selected.len() == closes.len();
            let take_rows = UInt32Array::from(selected);
            for ((acc, values), filter) in
                table.accumulators.iter_mut().zip(inputs).zip(&spec.filters)
            {
                let values = if all {
                    values.clone()
                } else {
                    take_all(values, &take_rows)?
                };
                // A FILTER's mask is the last column: the vectorized
                // accumulator takes it as its own filter.
                match filter {
                    Some(_) => {
                        let (arguments, mask) = split_mask(&values)?;
                        acc.update_batch(arguments, &group_indices, Some(mask), total)?;
                    }
                    None => acc.update_batch(&values, &group_indices, None, total)?,
                }
            }
        }
        Ok(())
    }

    /// Merge one old worker's chunk of the window closing at `close`.
    fn restore_chunk(&mut self, close: i64, mine: &RecordBatch) -> Result<()> {
        let spec = self.base.spec.clone();
        let layout = WindowChunk { spec: &spec };
        let table = match self.windows.entry(close) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let window_values = (0..layout.keys())
                    .map(|k| {
                        if spec.partition_keys.contains(&k) {
                            Ok(None)
                        } else {
                            ScalarValue::try_from_array(mine.column(k), 0).map(Some)
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                e.insert(WindowTable::new(&self.base, window_values)?)
            }
        };
        let partition: Vec<ArrayRef> = spec
            .partition_keys
            .iter()
            .map(|&k| mine.column(k).clone())
            .collect();
        let rows = match self.base.partition_types.as_slice() {
            [] | [DataType::Int64] => None,
            _ => Some(self.base.partition_converter.convert_columns(&partition)?),
        };
        let all: Vec<u32> = (0..mine.num_rows() as u32).collect();
        let indices = table.index.indices(&partition, rows.as_ref(), &all)?;
        let total = table.index.len();
        let mut column = layout.keys();
        for (acc, aggregate) in table.accumulators.iter_mut().zip(&spec.aggregates) {
            let width = aggregate.state_fields()?.len();
            let states = mine.columns()[column..column + width].to_vec();
            column += width;
            acc.merge_batch(&states, &indices, total)?;
        }
        Ok(())
    }
}

impl StreamOperator for WindowAggregate {
    fn state(&self) -> StateSummary {
        StateSummary {
            operator: "window aggregate",
            entries: self.windows.values().map(|t| t.index.len()).sum(),
        }
    }

    fn on_batch(&mut self, _side: Option<Side>, batch: &RecordBatch) -> Result<Vec<StreamBatch>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let evaluated = self.base.evaluate(batch)?;
        let (live, closes) = self.base.live_windows(evaluated, self.key, self.plus)?;
        self.closing_batch(&live.keys, &live.inputs, &closes)?;
        Ok(Vec::new())
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<StreamBatch>> {
        if !self.base.advance(watermark) {
            return Ok(Vec::new());
        }
        let open = self.windows.split_off(&watermark.saturating_add(1));
        let closed = std::mem::replace(&mut self.windows, open);
        let mut out = Vec::with_capacity(closed.len());
        for (_, table) in closed {
            out.push(StreamBatch::Rows(table.emit(&self.base)?));
        }
        Ok(out)
    }

    fn watermark(&self) -> i64 {
        self.base.watermark
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<StateWrite> {
        let mut write = StateWrite::default();
        let gone: Vec<i64> = self
            .saved
            .iter()
            .copied()
            .filter(|c| !self.windows.contains_key(c))
            .collect();
        for close in gone {
            self.saved.remove(&close);
            write.remove.push(WindowChunk::id(close));
        }
        for (close, table) in self.windows.iter_mut() {
            if !table.dirty {
                continue;
            }
            table.dirty = false;
            write
                .put
                .push((WindowChunk::id(*close), table.checkpoint(&self.base)?));
            self.saved.insert(*close);
        }
        Ok(write)
    }

    fn restore(
        &mut self,
        watermark: i64,
        chunks: &[(String, RecordBatch)],
        worker: usize,
        workers: usize,
    ) -> Result<()> {
        self.base.watermark = self.base.watermark.max(watermark);
        let partition_keys = self.base.spec.partition_keys.clone();
        for (id, chunk) in chunks {
            let Some(mine) = rows_of_worker(chunk, &partition_keys, worker, workers)? else {
                continue;
            };
            self.restore_chunk(WindowChunk::close(id)?, &mine)?;
        }
        // Restored windows are already in the checkpoint: clean.
        for (close, table) in self.windows.iter_mut() {
            table.dirty = false;
            self.saved.insert(*close);
        }
        Ok(())
    }
}

impl WindowTable {
    fn new(base: &Base, window_values: Vec<Option<ScalarValue>>) -> Result<Self> {
        Ok(Self {
            index: KeyIndex::new(&base.partition_types, &base.partition_converter),
            window_values,
            accumulators: groups_accumulators(&base.spec)?,
            dirty: true,
        })
    }

    /// The window's rows, once it closed.
    fn emit(mut self, base: &Base) -> Result<RecordBatch> {
        let spec = &base.spec;
        let mut columns = self.key_columns(&base.partition_converter)?;
        for acc in self.accumulators.iter_mut() {
            columns.push(acc.evaluate(EmitTo::All)?);
        }
        let columns = conform(&spec.output_schema, columns)?;
        Ok(RecordBatch::try_new(spec.output_schema.clone(), columns)?)
    }

    /// The group-key columns, in group order.
    fn key_columns(&self, converter: &RowConverter) -> Result<Vec<ArrayRef>> {
        let groups = self.index.len();
        let mut partition = self.index.columns(converter)?.into_iter();
        let mut columns = Vec::with_capacity(self.window_values.len());
        for value in &self.window_values {
            columns.push(match value {
                Some(value) => value.to_array_of_size(groups)?,
                None => match partition.next() {
                    Some(column) => column,
                    None => return internal_err!("a window's partition key is missing"),
                },
            });
        }
        Ok(columns)
    }

    /// The table as a chunk ([`WindowChunk`]). Reading a
    /// `GroupsAccumulator`'s state drains it, so the state is merged back
    /// into fresh accumulators (one pass over the groups).
    fn checkpoint(&mut self, base: &Base) -> Result<RecordBatch> {
        let groups = self.index.len();
        let mut columns = self.key_columns(&base.partition_converter)?;
        let indices: Vec<usize> = (0..groups).collect();
        let fresh = groups_accumulators(&base.spec)?;
        for (acc, mut new) in self.accumulators.iter_mut().zip(fresh) {
            let state = acc.state(EmitTo::All)?;
            new.merge_batch(&state, &indices, groups)?;
            *acc = new;
            columns.extend(state);
        }
        chunk(columns)
    }
}

/// One vectorized accumulator per aggregate (DataFusion's adapter for the
/// aggregates that have no vectorized one).
pub(super) fn groups_accumulators(spec: &AggregateSpec) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
    spec.aggregates
        .iter()
        .map(|a| {
            if a.groups_accumulator_supported() {
                a.create_groups_accumulator()
            } else {
                let a = a.clone();
                Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                    a.create_accumulator()
                })) as Box<dyn GroupsAccumulator>)
            }
        })
        .collect()
}
