//! Keyed aggregates over event-time windows, or over plain groups.
//!
//! One instance runs per aggregate worker and owns the state of the keys the
//! exchange sends it. Three kinds of state:
//!
//! - **Closing windows** (tumble, hop, cumulate with `EMIT ON WINDOW CLOSE`):
//!   one table of groups per close time, aggregated with DataFusion's
//!   vectorized `GroupsAccumulator`s. When the watermark passes a close time,
//!   that table is evaluated in one go, emitted, and dropped.
//! - **Updating groups** (no window, or windows without `EMIT ON WINDOW
//!   CLOSE`): a DataFusion `Accumulator` per group; after each batch every
//!   group it touched retracts its previous row and inserts its new one.
//!   Windowed groups are dropped from state once the watermark passes them
//!   (their last rows stay in the view).
//! - **Sessions**: per partition key, the open sessions with their
//!   accumulators; a row opens `[t, t + gap)` and merges every session it
//!   overlaps or touches, as Flink does (its windows intersect when
//!   `start <= other.end && end >= other.start`): rows exactly `gap` apart
//!   are one session. So a session ending at `e` closes once the watermark
//!   is past `e` (a row at `e` would still join it), not at `e`.
//!
//! A row whose window already closed (its close time is at or before the
//! watermark) is late: it is dropped and counted, never silently lost.
//!
//! # Correctness
//! Output for a closed window is emitted before the watermark that closed it
//! is forwarded (the caller forwards watermarks after `on_watermark`
//! returns), so downstream operators never see a watermark ahead of data it
//! covers.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int8Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{HashMap, Result, ScalarValue, exec_err};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use prometheus_client::metrics::counter::Counter;

mod checkpoint;
pub mod retract;

use crate::operators::OP_COLUMN;
use crate::plan::{AggregateSpec, Emit, WindowKind};
use crate::windows::timestamps_as_nanos;

/// The schema of a changelog: the rows' columns plus the op column.
pub fn changelog_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(OP_COLUMN, DataType::Int8, false)));
    Arc::new(Schema::new(fields))
}

/// `batch` as a changelog whose every row has op `op` (1 insert, -1 delete).
pub fn with_op(batch: &RecordBatch, op: i8) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int8Array::from(vec![op; batch.num_rows()])));
    Ok(RecordBatch::try_new(
        changelog_schema(&batch.schema()),
        columns,
    )?)
}

/// One worker's aggregate.
pub struct AggregateOperator {
    spec: Arc<AggregateSpec>,
    watermark: i64,
    late: Counter,
    converter: RowConverter,
    /// Row format of the partition keys alone.
    partition_converter: RowConverter,
    partition_types: Vec<DataType>,
    /// The group keys' types, as the group expressions give them.
    group_types: Vec<DataType>,
    state: State,
    tracking: checkpoint::Tracking,
}

enum State {
    Closing(BTreeMap<i64, WindowTable>),
    Updating(UpdatingGroups),
    Sessions(HashMap<Box<[u8]>, KeySessions>),
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

/// Group numbers for partition keys: a plain hash map for the common single
/// BIGINT key, Arrow's row format for anything else.
enum KeyIndex {
    /// No partition key: one group.
    Single { exists: bool },
    /// One Int64 key.
    Int64 {
        map: HashMap<i64, usize>,
        null: Option<usize>,
        keys: Vec<Option<i64>>,
    },
    /// Any keys, row-encoded.
    Rows {
        map: HashMap<Box<[u8]>, usize>,
        rows: Rows,
    },
}

impl KeyIndex {
    fn new(types: &[DataType], converter: &RowConverter) -> Self {
        match types {
            [] => KeyIndex::Single { exists: false },
            [DataType::Int64] => KeyIndex::Int64 {
                map: HashMap::default(),
                null: None,
                keys: Vec::new(),
            },
            _ => KeyIndex::Rows {
                map: HashMap::default(),
                rows: converter.empty_rows(0, 0),
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            KeyIndex::Single { exists } => usize::from(*exists),
            KeyIndex::Int64 { keys, .. } => keys.len(),
            KeyIndex::Rows { map, .. } => map.len(),
        }
    }

    /// The group number of each selected row, adding new groups.
    fn indices(&mut self, keys: &[ArrayRef], rows: Option<&Rows>, selected: &[u32]) -> Vec<usize> {
        match self {
            KeyIndex::Single { exists } => {
                *exists = true;
                vec![0; selected.len()]
            }
            KeyIndex::Int64 {
                map,
                null,
                keys: stored,
            } => {
                let array = keys[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                selected
                    .iter()
                    .map(|&row| {
                        let row = row as usize;
                        if array.is_null(row) {
                            *null.get_or_insert_with(|| {
                                stored.push(None);
                                stored.len() - 1
                            })
                        } else {
                            let key = array.value(row);
                            *map.entry(key).or_insert_with(|| {
                                stored.push(Some(key));
                                stored.len() - 1
                            })
                        }
                    })
                    .collect()
            }
            KeyIndex::Rows { map, rows: stored } => {
                let rows = rows.expect("row-encoded keys for a row index");
                selected
                    .iter()
                    .map(|&row| {
                        let bytes = rows.row(row as usize);
                        match map.get(bytes.as_ref()) {
                            Some(index) => *index,
                            None => {
                                let next = map.len();
                                map.insert(bytes.as_ref().into(), next);
                                stored.push(bytes);
                                next
                            }
                        }
                    })
                    .collect()
            }
        }
    }

    /// The key columns, in group order.
    fn columns(&self, converter: &RowConverter) -> Result<Vec<ArrayRef>> {
        Ok(match self {
            KeyIndex::Single { .. } => Vec::new(),
            KeyIndex::Int64 { keys, .. } => {
                vec![Arc::new(datafusion::arrow::array::Int64Array::from(keys.clone())) as ArrayRef]
            }
            KeyIndex::Rows { rows, .. } => converter.convert_rows(rows)?,
        })
    }
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

#[derive(Default)]
struct UpdatingGroups {
    groups: HashMap<Box<[u8]>, Group>,
    /// Close time -> keys, to drop windowed groups once the watermark passes.
    by_close: BTreeMap<i64, Vec<Box<[u8]>>>,
}

struct Session {
    start: i64,
    end: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
    emitted: Option<Vec<ScalarValue>>,
}

struct KeySessions {
    /// The partition key's values (the group keys that are not window bounds).
    key: Vec<ScalarValue>,
    sessions: Vec<Session>,
}

impl AggregateOperator {
    /// A new, empty aggregate.
    pub fn new(spec: Arc<AggregateSpec>, input_schema: &SchemaRef, late: Counter) -> Result<Self> {
        let group_types = spec
            .group
            .iter()
            .map(|g| g.data_type(input_schema))
            .collect::<Result<Vec<_>>>()?;
        let converter = RowConverter::new(
            group_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )?;
        let partition_types = spec
            .partition_keys
            .iter()
            .map(|&k| spec.group[k].data_type(input_schema))
            .collect::<Result<Vec<_>>>()?;
        let partition_converter = RowConverter::new(
            partition_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )?;
        let state = match (spec.window, spec.emit) {
            (WindowKind::Session { .. }, _) => State::Sessions(HashMap::default()),
            (WindowKind::Fixed { .. }, Emit::OnWindowClose) => State::Closing(BTreeMap::new()),
            (WindowKind::None, Emit::OnWindowClose) => {
                return exec_err!("EMIT ON WINDOW CLOSE needs a windowed aggregate");
            }
            (_, Emit::Updates) => State::Updating(UpdatingGroups::default()),
        };
        Ok(Self {
            spec,
            watermark: i64::MIN,
            late,
            converter,
            partition_converter,
            partition_types,
            group_types,
            state,
            tracking: checkpoint::Tracking::default(),
        })
    }

    /// The schema of what this operator emits (with the op column for an
    /// updating result).
    pub fn output_schema(&self) -> SchemaRef {
        match self.spec.emit {
            Emit::OnWindowClose => self.spec.output_schema.clone(),
            Emit::Updates => changelog_schema(&self.spec.output_schema),
        }
    }

    /// Does this operator emit a changelog (with the op column)?
    pub fn is_changelog(&self) -> bool {
        self.spec.emit == Emit::Updates
    }

    /// Is it a global aggregate (no GROUP BY, no window)? As in Postgres,
    /// its result is always one row, over no input too (count 0, sum NULL).
    fn is_global(&self) -> bool {
        self.spec.group.is_empty() && self.spec.window == WindowKind::None
    }

    /// Before any input: a global aggregate's one row, from empty
    /// accumulators, so the view has it as a batch query would (every row
    /// of a global aggregate goes to the first worker; only it calls this).
    /// Nothing when a checkpoint restored the group, whose row the view
    /// already holds.
    pub fn on_start(&mut self) -> Result<Vec<RecordBatch>> {
        if !self.is_global() {
            return Ok(Vec::new());
        }
        let State::Updating(state) = &mut self.state else {
            return Ok(Vec::new());
        };
        let key: Box<[u8]> = Box::default();
        if state.groups.contains_key(&key) {
            return Ok(Vec::new());
        }
        let mut accumulators = self.spec.accumulators()?;
        let values = evaluate_all(&mut accumulators)?;
        state.groups.insert(
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
        Ok(
            rows_to_batch(&self.spec, None, vec![(Vec::new(), values, 1i8)], true)?
                .into_iter()
                .collect(),
        )
    }

    /// Add a batch; returns what changed (updating results only).
    pub fn on_batch(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let keys = self
            .spec
            .group
            .iter()
            .map(|g| g.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<Result<Vec<_>>>()?;
        let mut inputs = self
            .spec
            .aggregates
            .iter()
            .map(|a| {
                a.expressions()
                    .iter()
                    .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        if self.spec.retracting.is_some() {
            // The op column rides along as one more input, so that the rows
            // picked below keep their ops.
            inputs.push(vec![batch.column(batch.num_columns() - 1).clone()]);
        }
        match self.spec.window {
            WindowKind::Session { start_key, gap, .. } => {
                self.sessions_batch(&keys, &inputs, start_key, gap)
            }
            WindowKind::Fixed { key, plus } => {
                let close = timestamps_as_nanos(&keys[key])?;
                let mut live = Vec::with_capacity(batch.num_rows());
                let mut closes = Vec::with_capacity(batch.num_rows());
                let mut late = 0u64;
                for row in 0..batch.num_rows() {
                    if close.is_null(row) {
                        continue;
                    }
                    let c = close.value(row) + plus;
                    if c <= self.watermark {
                        late += 1;
                    } else {
                        live.push(row as u32);
                        closes.push(c);
                    }
                }
                self.late.inc_by(late);
                let (keys, inputs) = select_rows(&keys, &inputs, &live, batch.num_rows())?;
                if matches!(self.state, State::Closing(_)) {
                    self.closing_batch(&keys, &inputs, &closes)?;
                    Ok(Vec::new())
                } else {
                    self.updating_batch(closes.len(), &keys, &inputs, Some(&closes))
                }
            }
            WindowKind::None => self.updating_batch(batch.num_rows(), &keys, &inputs, None),
        }
    }

    /// The watermark advanced to `watermark`: emit closed windows, drop state.
    pub fn on_watermark(&mut self, watermark: i64) -> Result<Vec<RecordBatch>> {
        if watermark <= self.watermark {
            return Ok(Vec::new());
        }
        self.watermark = watermark;
        let spec = self.spec.clone();
        match &mut self.state {
            State::Closing(windows) => {
                let open = windows.split_off(&watermark.saturating_add(1));
                let closed = std::mem::replace(windows, open);
                let mut out = Vec::with_capacity(closed.len());
                for (_, table) in closed {
                    out.push(table.emit(&spec, &self.partition_converter)?);
                }
                Ok(out)
            }
            State::Updating(groups) => {
                let open = groups.by_close.split_off(&watermark.saturating_add(1));
                for (_, keys) in std::mem::replace(&mut groups.by_close, open) {
                    for key in keys {
                        self.tracking.touch(&key);
                        groups.groups.remove(&key);
                    }
                }
                Ok(Vec::new())
            }
            State::Sessions(keys) => {
                let WindowKind::Session {
                    start_key, end_key, ..
                } = spec.window
                else {
                    return Ok(Vec::new());
                };
                let mut rows = Vec::new();
                for (bytes, key) in keys.iter_mut() {
                    let (closed, open): (Vec<Session>, Vec<Session>) =
                        std::mem::take(&mut key.sessions)
                            .into_iter()
                            .partition(|s| s.end < watermark);
                    key.sessions = open;
                    if !closed.is_empty() {
                        self.tracking.touch(bytes);
                    }
                    if spec.emit == Emit::OnWindowClose {
                        for mut session in closed {
                            let values = evaluate_all(&mut session.accumulators)?;
                            rows.push((
                                session_key(
                                    &key.key,
                                    &spec,
                                    session.start,
                                    session.end,
                                    start_key,
                                    end_key,
                                ),
                                values,
                                1i8,
                            ));
                        }
                    }
                }
                keys.retain(|_, k| !k.sessions.is_empty());
                let op = spec.emit == Emit::Updates;
                Ok(rows_to_batch(&spec, self.time_type(), rows, op)?
                    .into_iter()
                    .collect())
            }
        }
    }

    fn time_type(&self) -> Option<DataType> {
        match self.spec.window {
            WindowKind::Session { start_key, .. } => {
                Some(self.spec.output_schema.field(start_key).data_type().clone())
            }
            _ => None,
        }
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
        let State::Closing(windows) = &mut self.state else {
            return Ok(());
        };
        // Most batches fall in one or two windows: group the rows by close time.
        let mut by_close: Vec<(i64, Vec<u32>)> = Vec::new();
        for (row, close) in closes.iter().enumerate() {
            match by_close.iter_mut().find(|(c, _)| c == close) {
                Some((_, rows)) => rows.push(row as u32),
                None => by_close.push((*close, vec![row as u32])),
            }
        }
        let partition: Vec<ArrayRef> = self
            .spec
            .partition_keys
            .iter()
            .map(|&k| keys[k].clone())
            .collect();
        let rows = match self.partition_types.as_slice() {
            [] | [DataType::Int64] => None,
            _ => Some(self.partition_converter.convert_columns(&partition)?),
        };
        for (close, selected) in by_close {
            let table = match windows.entry(close) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let first = selected[0] as usize;
                    let window_values = (0..keys.len())
                        .map(|k| {
                            if self.spec.partition_keys.contains(&k) {
                                Ok(None)
                            } else {
                                ScalarValue::try_from_array(&keys[k], first).map(Some)
                            }
                        })
                        .collect::<Result<Vec<_>>>()?;
                    e.insert(WindowTable::new(
                        &self.spec,
                        &self.partition_types,
                        &self.partition_converter,
                        window_values,
                    )?)
                }
            };
            table.dirty = true;
            let group_indices = table.index.indices(&partition, rows.as_ref(), &selected);
            let total = table.index.len();
            let all = selected.len() == closes.len();
            let take_rows = UInt32Array::from(selected);
            for (acc, values) in table.accumulators.iter_mut().zip(inputs) {
                let values = if all {
                    values.clone()
                } else {
                    take_all(values, &take_rows)?
                };
                acc.update_batch(&values, &group_indices, None, total)?;
            }
        }
        Ok(())
    }

    fn updating_batch(
        &mut self,
        n: usize,
        keys: &[ArrayRef],
        inputs: &[Vec<ArrayRef>],
        closes: Option<&[i64]>,
    ) -> Result<Vec<RecordBatch>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let global = self.is_global();
        let State::Updating(state) = &mut self.state else {
            return Ok(Vec::new());
        };
        let (inputs, ops) = match (&self.spec.retracting, inputs.split_last()) {
            (Some(_), Some((ops, inputs))) => (inputs, Some(ops[0].as_primitive::<Int8Type>())),
            _ => (inputs, None),
        };
        let rows = key_rows(&self.converter, keys, n)?;
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
        let mut changes = Vec::new();
        for key in order {
            let selected = &members[&key];
            let first = selected[0] as usize;
            if !state.groups.contains_key(&key) {
                let group = Group {
                    key: keys
                        .iter()
                        .map(|k| ScalarValue::try_from_array(k, first))
                        .collect::<Result<_>>()?,
                    accumulators: self.spec.accumulators()?,
                    emitted: None,
                    close: closes.map(|c| c[first]),
                    rows: 0,
                };
                if let Some(close) = group.close {
                    state.by_close.entry(close).or_default().push(key.clone());
                }
                state.groups.insert(key.clone(), group);
            }
            self.tracking.touch(&key);
            let Some(group) = state.groups.get_mut(&key) else {
                continue;
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
                        state.groups.remove(&key);
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
        Ok(rows_to_batch(&self.spec, None, changes, true)?
            .into_iter()
            .collect())
    }

    fn sessions_batch(
        &mut self,
        keys: &[ArrayRef],
        inputs: &[Vec<ArrayRef>],
        start_key: usize,
        gap: i64,
    ) -> Result<Vec<RecordBatch>> {
        let spec = self.spec.clone();
        let WindowKind::Session { end_key, .. } = spec.window else {
            return Ok(Vec::new());
        };
        let times = timestamps_as_nanos(&keys[start_key])?;
        let partition: Vec<ArrayRef> = spec
            .partition_keys
            .iter()
            .map(|&k| keys[k].clone())
            .collect();
        let converter = RowConverter::new(
            partition
                .iter()
                .map(|p| SortField::new(p.data_type().clone()))
                .collect(),
        )?;
        let rows = converter.convert_columns(&partition)?;
        // Rows per partition key, sorted by time, cut into runs at most the gap apart.
        let mut members: HashMap<Box<[u8]>, Vec<(i64, u32)>> = HashMap::default();
        let mut late = 0;
        for row in 0..times.len() {
            if times.is_null(row) {
                continue;
            }
            let t = times.value(row);
            // Its session would be closed already (see `on_watermark`).
            if t.saturating_add(gap) < self.watermark {
                late += 1;
                continue;
            }
            members
                .entry(rows.row(row).as_ref().into())
                .or_default()
                .push((t, row as u32));
        }
        self.late.inc_by(late);
        let State::Sessions(state) = &mut self.state else {
            return Ok(Vec::new());
        };
        let mut changes = Vec::new();
        for (key_bytes, mut list) in members {
            self.tracking.touch(&key_bytes);
            list.sort_unstable();
            let first = list[0].1 as usize;
            let entry = match state.entry(key_bytes) {
                datafusion::common::hash_map::Entry::Occupied(e) => e.into_mut(),
                datafusion::common::hash_map::Entry::Vacant(e) => e.insert(KeySessions {
                    key: partition
                        .iter()
                        .map(|p| ScalarValue::try_from_array(p, first))
                        .collect::<Result<_>>()?,
                    sessions: Vec::new(),
                }),
            };
            let mut run_start = 0;
            while run_start < list.len() {
                let mut run_end = run_start + 1;
                while run_end < list.len() && list[run_end].0 - list[run_end - 1].0 <= gap {
                    run_end += 1;
                }
                let run = &list[run_start..run_end];
                let (start, end) = (run[0].0, run[run.len() - 1].0 + gap);
                let mut accumulators = spec.accumulators()?;
                let take_rows = UInt32Array::from(run.iter().map(|(_, r)| *r).collect::<Vec<_>>());
                for (acc, values) in accumulators.iter_mut().zip(inputs) {
                    acc.update_batch(&take_all(values, &take_rows)?)?;
                }
                let mut merged = Session {
                    start,
                    end,
                    accumulators,
                    emitted: None,
                };
                // Merge every open session this run overlaps or touches.
                let (overlapping, rest): (Vec<Session>, Vec<Session>) =
                    std::mem::take(&mut entry.sessions)
                        .into_iter()
                        .partition(|s| s.start <= merged.end && merged.start <= s.end);
                entry.sessions = rest;
                for mut old in overlapping {
                    merged.start = merged.start.min(old.start);
                    merged.end = merged.end.max(old.end);
                    for (into, from) in merged
                        .accumulators
                        .iter_mut()
                        .zip(old.accumulators.iter_mut())
                    {
                        let state = from
                            .state()?
                            .into_iter()
                            .map(|s| s.to_array())
                            .collect::<Result<Vec<_>>>()?;
                        into.merge_batch(&state)?;
                    }
                    if spec.emit == Emit::Updates
                        && let Some(values) = old.emitted.take()
                    {
                        changes.push((
                            session_key(&entry.key, &spec, old.start, old.end, start_key, end_key),
                            values,
                            -1i8,
                        ));
                    }
                }
                if spec.emit == Emit::Updates {
                    let values = evaluate_all(&mut merged.accumulators)?;
                    changes.push((
                        session_key(
                            &entry.key,
                            &spec,
                            merged.start,
                            merged.end,
                            start_key,
                            end_key,
                        ),
                        values.clone(),
                        1i8,
                    ));
                    merged.emitted = Some(values);
                }
                entry.sessions.push(merged);
                run_start = run_end;
            }
        }
        let time_type = spec.output_schema.field(start_key).data_type().clone();
        Ok(rows_to_batch(&spec, Some(time_type), changes, true)?
            .into_iter()
            .collect())
    }
}

impl WindowTable {
    fn new(
        spec: &AggregateSpec,
        partition_types: &[DataType],
        converter: &RowConverter,
        window_values: Vec<Option<ScalarValue>>,
    ) -> Result<Self> {
        let accumulators = spec
            .aggregates
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
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            index: KeyIndex::new(partition_types, converter),
            window_values,
            accumulators,
            dirty: true,
        })
    }

    fn emit(mut self, spec: &AggregateSpec, converter: &RowConverter) -> Result<RecordBatch> {
        let groups = self.index.len();
        let mut partition = self.index.columns(converter)?.into_iter();
        let mut columns = Vec::with_capacity(spec.output_schema.fields().len());
        for value in &self.window_values {
            columns.push(match value {
                Some(value) => value.to_array_of_size(groups)?,
                None => partition.next().ok_or_else(|| {
                    datafusion::common::DataFusionError::Internal(
                        "a partition key is missing".into(),
                    )
                })?,
            });
        }
        for acc in self.accumulators.iter_mut() {
            columns.push(acc.evaluate(EmitTo::All)?);
        }
        let columns = conform(&spec.output_schema, columns)?;
        Ok(RecordBatch::try_new(spec.output_schema.clone(), columns)?)
    }
}

/// Each row's group key in the row format; a GROUP BY without keys (one
/// global group) has the empty key, which the row format cannot express.
fn key_rows(converter: &RowConverter, keys: &[ArrayRef], n: usize) -> Result<Vec<Box<[u8]>>> {
    if keys.is_empty() {
        return Ok(vec![Box::default(); n]);
    }
    let rows = converter.convert_columns(keys)?;
    Ok((0..n).map(|r| rows.row(r).as_ref().into()).collect())
}

/// Cast columns to the declared output types (an accumulator may return,
/// say, a dictionary or a view type where the plan promised plain).
pub(crate) fn conform(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<Vec<ArrayRef>> {
    columns
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                Ok(cast(&c, f.data_type())?)
            }
        })
        .collect()
}

fn evaluate_all(accumulators: &mut [Box<dyn Accumulator>]) -> Result<Vec<ScalarValue>> {
    accumulators.iter_mut().map(|a| a.evaluate()).collect()
}

fn take_all(values: &[ArrayRef], rows: &UInt32Array) -> Result<Vec<ArrayRef>> {
    values
        .iter()
        .map(|v| Ok(take(v.as_ref(), rows, None)?))
        .collect()
}

fn select_rows(
    keys: &[ArrayRef],
    inputs: &[Vec<ArrayRef>],
    live: &[u32],
    total: usize,
) -> Result<(Vec<ArrayRef>, Vec<Vec<ArrayRef>>)> {
    if live.len() == total {
        return Ok((keys.to_vec(), inputs.to_vec()));
    }
    let rows = UInt32Array::from(live.to_vec());
    Ok((
        take_all(keys, &rows)?,
        inputs
            .iter()
            .map(|i| take_all(i, &rows))
            .collect::<Result<_>>()?,
    ))
}

/// The full group key of a session: the partition key values with the
/// session bounds put in the window columns.
fn session_key(
    partition: &[ScalarValue],
    spec: &AggregateSpec,
    start: i64,
    end: i64,
    start_key: usize,
    end_key: usize,
) -> Vec<ScalarValue> {
    let mut key = Vec::with_capacity(spec.group.len());
    let mut rest = partition.iter();
    for i in 0..spec.group.len() {
        if i == start_key {
            key.push(ScalarValue::TimestampNanosecond(Some(start), None));
        } else if i == end_key {
            key.push(ScalarValue::TimestampNanosecond(Some(end), None));
        } else {
            key.push(rest.next().cloned().unwrap_or(ScalarValue::Null));
        }
    }
    key
}

/// Build a batch from (group key, aggregate values, op) rows.
fn rows_to_batch(
    spec: &AggregateSpec,
    time_type: Option<DataType>,
    rows: Vec<(Vec<ScalarValue>, Vec<ScalarValue>, i8)>,
    with_op: bool,
) -> Result<Option<RecordBatch>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let schema = &spec.output_schema;
    let mut columns = Vec::with_capacity(schema.fields().len() + 1);
    for (i, field) in schema.fields().iter().enumerate() {
        let values = rows.iter().map(|(k, v, _)| {
            if i < k.len() {
                k[i].clone()
            } else {
                v[i - k.len()].clone()
            }
        });
        let array = ScalarValue::iter_to_array(values)?;
        let array = match (&time_type, array.data_type()) {
            (Some(t), DataType::Timestamp(_, _)) if array.data_type() != t => cast(&array, t)?,
            _ => array,
        };
        columns.push(if array.data_type() == field.data_type() {
            array
        } else {
            cast(&array, field.data_type())?
        });
    }
    let schema = if with_op {
        columns.push(Arc::new(Int8Array::from(
            rows.iter().map(|(_, _, op)| *op).collect::<Vec<_>>(),
        )));
        changelog_schema(schema)
    } else {
        schema.clone()
    };
    Ok(Some(RecordBatch::try_new(schema, columns)?))
}
