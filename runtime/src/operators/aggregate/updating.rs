//! The updating aggregate: plain GROUP BY, or windows without `EMIT ON
//! WINDOW CLOSE`, emitting a changelog.
//!
//! After each batch every group it touched retracts its previous row and
//! inserts its new one. Over an append-only input the groups are vectorised
//! ([`super::columnar`]: DataFusion's `GroupsAccumulator`s, columnar state).
//! Over an updating input (a changelog) the aggregates must retract, which a
//! `GroupsAccumulator` cannot: there it keeps an `Accumulator` per group that
//! retracts ([`super::retract`]), and a group whose every row was retracted
//! is gone.
//! Windowed groups are dropped from state once the watermark passes them
//! (their last rows stay in the view); a row of a window already passed is
//! late: dropped and counted.
//!
//! Checkpoint chunks: keyed state ([`super::keyed_state`]) keyed by the
//! whole group key, `a` the close time, `b` the input row count.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{Int8Type, SchemaRef};
use datafusion::common::{HashMap, Result, ScalarValue, internal_err};
use datafusion::logical_expr::Accumulator;
use prometheus_client::metrics::counter::Counter;

use super::columnar::ColumnarGroups;
use super::keyed_state::{StateChunk, StateRows, Tracking};
use super::shared::{
    Base, GroupRow, evaluate_all, key_rows, rows_of_worker, rows_to_batch, take_all,
};
use crate::checkpoint::StateWrite;
use crate::operators::{Side, StateSummary, StreamBatch, StreamOperator};
use crate::plan::{AggregateSpec, Emit, WindowKind};

/// One worker's updating aggregate.
pub struct UpdatingAggregate {
    base: Base,
    /// The groups, vectorised, over an append-only input; `None` over a
    /// changelog, where `groups` holds them.
    columnar: Option<ColumnarGroups>,
    groups: HashMap<Box<[u8]>, Group>,
    /// Close time -> keys, to drop windowed groups once the watermark passes.
    by_close: BTreeMap<i64, Vec<Box<[u8]>>>,
    tracking: Tracking,
}

struct Group {
    key: Vec<ScalarValue>,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// The aggregate values last emitted, to retract on change.
    emitted: Option<Vec<ScalarValue>>,
    close: Option<i64>,
    /// Input rows in the group (inserts minus retractions): at zero the
    /// group is gone. Kept for retracting aggregates only.
    rows: i64,
}

impl UpdatingAggregate {
    /// A new, empty updating aggregate.
    pub fn new(spec: Arc<AggregateSpec>, input_schema: &SchemaRef, late: Counter) -> Result<Self> {
        if spec.emit != Emit::Updates || matches!(spec.window, WindowKind::Session { .. }) {
            return internal_err!("an updating aggregate planned as {:?}", spec.window);
        }
        let base = Base::new(spec, input_schema, late)?;
        let columnar = match base.spec.retracting {
            None => Some(ColumnarGroups::new(&base)?),
            Some(_) => None,
        };
        Ok(Self {
            base,
            columnar,
            groups: HashMap::default(),
            by_close: BTreeMap::new(),
            tracking: Tracking::default(),
        })
    }

    /// Is it a global aggregate (no GROUP BY, no window)? As in Postgres,
    /// its result is always one row, over no input too (count 0, sum NULL).
    fn is_global(&self) -> bool {
        self.base.spec.group.is_empty() && self.base.spec.window == WindowKind::None
    }

    fn updating_batch(
        &mut self,
        n: usize,
        keys: &[ArrayRef],
        inputs: &[Vec<ArrayRef>],
        closes: Option<&[i64]>,
    ) -> Result<Vec<StreamBatch>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if let Some(columnar) = self.columnar.as_mut() {
            return columnar.add(&self.base, n, keys, inputs, closes);
        }
        let global = self.is_global();
        let (inputs, ops) = match (&self.base.spec.retracting, inputs.split_last()) {
            (Some(_), Some((ops, inputs))) => (inputs, Some(ops[0].as_primitive::<Int8Type>())),
            _ => (inputs, None),
        };
        let rows = key_rows(&self.base.converter, keys, n)?;
        // Rows per group, in first-seen order.
        let mut order: Vec<Box<[u8]>> = Vec::new();
        let mut members: HashMap<Box<[u8]>, Vec<u32>> = HashMap::default();
        for (row, bytes) in rows.into_iter().enumerate() {
            match members.get_mut(&bytes) {
                Some(list) => list.push(row as u32),
                None => {
                    order.push(bytes.clone());
                    members.insert(bytes, vec![row as u32]);
                }
            }
        }
        let mut changes: Vec<GroupRow> = Vec::new();
        for key in order {
            let selected = &members[&key];
            let first = selected[0] as usize;
            if !self.groups.contains_key(&key) {
                let group = Group {
                    key: keys
                        .iter()
                        .map(|k| ScalarValue::try_from_array(k, first))
                        .collect::<Result<_>>()?,
                    accumulators: self.base.accumulators()?,
                    emitted: None,
                    close: closes.map(|c| c[first]),
                    rows: 0,
                };
                if let Some(close) = group.close {
                    self.by_close.entry(close).or_default().push(key.clone());
                }
                self.groups.insert(key.clone(), group);
            }
            self.tracking.touch(&key);
            let Some(group) = self.groups.get_mut(&key) else {
                return internal_err!("a group vanished while its rows were added");
            };
            match &ops {
                None => {
                    let take_rows = UInt32Array::from(selected.clone());
                    for (acc, values) in group.accumulators.iter_mut().zip(inputs) {
                        acc.update_batch(&take_all(values, &take_rows)?)?;
                    }
                }
                Some(ops) => {
                    let (plus, minus): (Vec<u32>, Vec<u32>) =
                        selected.iter().partition(|&&r| ops.value(r as usize) > 0);
                    group.rows += plus.len() as i64 - minus.len() as i64;
                    let (plus, minus) = (UInt32Array::from(plus), UInt32Array::from(minus));
                    for (acc, values) in group.accumulators.iter_mut().zip(inputs) {
                        if !plus.is_empty() {
                            acc.update_batch(&take_all(values, &plus)?)?;
                        }
                        if !minus.is_empty() {
                            acc.retract_batch(&take_all(values, &minus)?)?;
                        }
                    }
                    if group.rows <= 0 && !global {
                        // Every row of the group was retracted: it is gone.
                        // (A global aggregate's one row stays, with count 0.)
                        if let Some(old) = group.emitted.take() {
                            changes.push((group.key.clone(), old, -1i8));
                        }
                        self.groups.remove(&key);
                        continue;
                    }
                }
            }
            let values = evaluate_all(&mut group.accumulators)?;
            if group.emitted.as_ref() == Some(&values) {
                continue;
            }
            if let Some(old) = group.emitted.take() {
                changes.push((group.key.clone(), old, -1i8));
            }
            changes.push((group.key.clone(), values.clone(), 1i8));
            group.emitted = Some(values);
        }
        rows_to_batch(&self.base.spec, None, changes, true)
    }

    /// Apply one old worker's chunk.
    fn restore_chunk(&mut self, mine: &RecordBatch) -> Result<()> {
        let groups = self.base.spec.group.len();
        let chunk = StateChunk::new(mine, groups)?;
        let rows = key_rows(&self.base.converter, chunk.keys(), chunk.rows())?;
        for (row, key) in rows.into_iter().enumerate() {
            if chunk.dropped(row) {
                self.groups.remove(&key);
                continue;
            }
            let (accumulators, emitted) = chunk.entry(&self.base, row)?;
            let close = chunk.a(row);
            if let Some(close) = close {
                self.by_close.entry(close).or_default().push(key.clone());
            }
            self.groups.insert(
                key,
                Group {
                    key: (0..groups)
                        .map(|k| chunk.key(k, row))
                        .collect::<Result<_>>()?,
                    accumulators,
                    emitted,
                    close,
                    rows: chunk.b(row).unwrap_or(0),
                },
            );
        }
        self.tracking.restored(self.groups.len());
        Ok(())
    }
}

impl StreamOperator for UpdatingAggregate {
    fn state(&self) -> StateSummary {
        StateSummary {
            operator: "updating aggregate",
            entries: match &self.columnar {
                Some(columnar) => columnar.len(),
                None => self.groups.len(),
            },
        }
    }

    /// Before any input: a global aggregate's one row, from empty
    /// accumulators, so the view has it as a batch query would (every row
    /// of a global aggregate goes to the first worker; only it calls this).
    /// Nothing when a checkpoint restored the group, whose row the view
    /// already holds.
    fn on_start(&mut self) -> Result<Vec<StreamBatch>> {
        if !self.is_global() {
            return Ok(Vec::new());
        }
        if let Some(columnar) = self.columnar.as_mut() {
            if columnar.contains(&[]) {
                return Ok(Vec::new());
            }
            return columnar.start_global(&self.base);
        }
        let key: Box<[u8]> = Box::default();
        if self.groups.contains_key(&key) {
            return Ok(Vec::new());
        }
        let mut accumulators = self.base.accumulators()?;
        let values = evaluate_all(&mut accumulators)?;
        self.groups.insert(
            key.clone(),
            Group {
                key: Vec::new(),
                accumulators,
                emitted: Some(values.clone()),
                close: None,
                rows: 0,
            },
        );
        self.tracking.touch(&key);
        rows_to_batch(&self.base.spec, None, vec![(Vec::new(), values, 1i8)], true)
    }

    fn on_batch(&mut self, _side: Option<Side>, batch: &RecordBatch) -> Result<Vec<StreamBatch>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let evaluated = self.base.evaluate(batch)?;
        match self.base.spec.window {
            WindowKind::Fixed { key, plus } => {
                let (live, closes) = self.base.live_windows(evaluated, key, plus)?;
                self.updating_batch(closes.len(), &live.keys, &live.inputs, Some(&closes))
            }
            WindowKind::None => {
                self.updating_batch(evaluated.rows, &evaluated.keys, &evaluated.inputs, None)
            }
            WindowKind::Session { .. } => {
                internal_err!("an updating aggregate was planned over session windows")
            }
        }
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<StreamBatch>> {
        if !self.base.advance(watermark) {
            return Ok(Vec::new());
        }
        if let Some(columnar) = self.columnar.as_mut() {
            columnar.close_windows(watermark);
            return Ok(Vec::new());
        }
        let open = self.by_close.split_off(&watermark.saturating_add(1));
        for (_, keys) in std::mem::replace(&mut self.by_close, open) {
            for key in keys {
                self.tracking.touch(&key);
                self.groups.remove(&key);
            }
        }
        Ok(Vec::new())
    }

    fn watermark(&self) -> i64 {
        self.base.watermark
    }

    fn enable_checkpoints(&mut self) {
        match self.columnar.as_mut() {
            Some(columnar) => columnar.enable_checkpoints(),
            None => self.tracking.enable(),
        }
    }

    fn snapshot(&mut self, epoch: u64) -> Result<StateWrite> {
        if let Some(columnar) = self.columnar.as_mut() {
            return columnar.snapshot(&self.base, epoch);
        }
        let full = self.tracking.full();
        let mut rows = StateRows::new(&self.base, self.base.spec.group.len())?;
        if full {
            for g in self.groups.values_mut() {
                rows.push(
                    &g.key,
                    g.close,
                    Some(g.rows),
                    &mut g.accumulators,
                    g.emitted.as_ref(),
                )?;
            }
        } else {
            let mut dropped = Vec::new();
            for key in self.tracking.dirty() {
                match self.groups.get_mut(key) {
                    Some(g) => rows.push(
                        &g.key,
                        g.close,
                        Some(g.rows),
                        &mut g.accumulators,
                        g.emitted.as_ref(),
                    )?,
                    None => dropped.push(key),
                }
            }
            rows.push_dropped(&self.base.converter, &dropped)?;
        }
        self.tracking
            .write(rows, full, &self.base.group_types, epoch)
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
        for (_, chunk) in chunks {
            if let Some(mine) = rows_of_worker(chunk, &partition_keys, worker, workers)? {
                match self.columnar.as_mut() {
                    Some(columnar) => columnar.restore_chunk(&self.base, &mine)?,
                    None => self.restore_chunk(&mine)?,
                }
            }
        }
        if let Some(columnar) = self.columnar.as_mut() {
            columnar.restored();
        }
        Ok(())
    }
}
