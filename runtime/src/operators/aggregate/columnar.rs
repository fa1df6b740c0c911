//! The updating aggregate over an append-only input, vectorised: DataFusion's
//! `GroupsAccumulator`s run over the groups a batch touches, and the groups'
//! state between batches is columnar ([`GroupStore`]).
//!
//! Per batch: the touched groups get local numbers; fresh accumulators
//! merge those groups' stored states (one `interleave` per column) and take
//! the batch's rows (`update_batch`); their state is drained (`state`), and
//! stored as the groups' new rows, and a second set of fresh accumulators
//! merges it to give the values (`evaluate` drains too, and the state must
//! outlive it). Groups whose values changed retract their old row and
//! insert the new one; groups whose values did not change emit nothing.
//! The work is per row and per touched group, never per group held.
//!
//! Over a changelog (an updating input) the aggregate retracts, which
//! `GroupsAccumulator` cannot: `updating.rs` keeps an `Accumulator` per
//! group there ([`super::retract`]).
//!
//! Checkpoint chunks have the keyed-state layout ([`super::keyed_state`]),
//! the same as the per-group path writes: a `GroupsAccumulator`'s state
//! has its aggregate's `state_fields`, as an `Accumulator`'s does (DataFusion
//! merges one into the other between its partial and final stages), so
//! checkpoints written before this path existed restore into it.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int8Array, Int64Array, RecordBatch, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::kernels::cmp::not_distinct;
use datafusion::arrow::compute::{and, cast, concat, interleave, take};
use datafusion::arrow::datatypes::FieldRef;
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::EmitTo;

use super::filtered::split_mask;
use super::group_store::GroupStore;
use super::keyed_state::{Layout, chunk, state_write};
use super::shared::Base;
use super::window::groups_accumulators;
use crate::checkpoint::StateWrite;
use crate::operators::changes::changelog_schema;
use crate::operators::{StreamBatch, conform};

/// The groups of one worker's updating aggregate, vectorised.
pub(super) struct ColumnarGroups {
    store: GroupStore,
    /// Close time -> groups, to drop windowed groups once the watermark
    /// passes (a group's close never changes, so no entry goes stale).
    by_close: BTreeMap<i64, Vec<u32>>,
    /// Per aggregate, its state's fields.
    state_fields: Vec<Vec<FieldRef>>,
    /// Scratch: a slot's local number in the batch being added (`u32::MAX`
    /// for none), kept between batches to avoid a map per batch.
    local: Vec<u32>,
    /// Rows in the last full checkpoint, and in the deltas since (when to
    /// write a full one instead of a delta).
    base_rows: usize,
    delta_rows: usize,
}

/// Column ranges of a stored group row: keys, states, values.
struct Widths {
    keys: usize,
    states: usize,
    values: usize,
}

impl ColumnarGroups {
    pub(super) fn new(base: &Base) -> Result<Self> {
        let state_fields = (0..base.spec.aggregates.len())
            .map(|i| base.state_fields(i))
            .collect::<Result<Vec<_>>>()?;
        let spec = &base.spec;
        let mut types = base.group_types.clone();
        types.extend(state_fields.iter().flatten().map(|f| f.data_type().clone()));
        types.extend((0..spec.aggregates.len()).map(|i| {
            spec.output_schema
                .field(spec.group.len() + i)
                .data_type()
                .clone()
        }));
        Ok(Self {
            store: GroupStore::new(types),
            by_close: BTreeMap::new(),
            state_fields,
            local: Vec::new(),
            base_rows: 0,
            delta_rows: 0,
        })
    }

    fn widths(&self, base: &Base) -> Widths {
        Widths {
            keys: base.spec.group.len(),
            states: self.state_fields.iter().map(Vec::len).sum(),
            values: base.spec.aggregates.len(),
        }
    }

    /// Live groups.
    pub(super) fn len(&self) -> usize {
        self.store.len()
    }

    /// Does the group with row-format key `key` exist?
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        self.store.get(key).is_some()
    }

    /// A global aggregate's one row before any input, from empty
    /// accumulators (count 0, sum NULL): stored as emitted, and returned.
    pub(super) fn start_global(&mut self, base: &Base) -> Result<Vec<StreamBatch>> {
        let id = self.store.insert(&[], None);
        self.grow_scratch();
        // Row accumulators, not vectorised ones: a `GroupsAccumulator` given
        // a group but no rows takes it as having seen a value (sum 0, min
        // i64::MAX rather than NULL).
        let mut states = Vec::new();
        for mut acc in base.accumulators()? {
            for state in acc.state()? {
                states.push(state.to_array()?);
            }
        }
        let states = conform_states(&self.state_fields, states)?;
        let values = evaluate(base, &self.state_fields, &states, 1)?;
        let mut columns = states;
        columns.extend(values.iter().cloned());
        self.store.append(&[id], &[true], columns);
        let schema = &base.spec.output_schema;
        let mut out = conform(schema, values)?;
        out.push(Arc::new(Int8Array::from(vec![1i8])));
        Ok(vec![StreamBatch::Changes(RecordBatch::try_new(
            changelog_schema(schema),
            out,
        )?)])
    }

    fn grow_scratch(&mut self) {
        let capacity = self.store.capacity();
        if self.local.len() < capacity {
            self.local.resize(capacity, u32::MAX);
        }
    }

    /// Add `n` rows (their group keys, aggregate inputs and, for windowed
    /// groups, close times): the changes they make.
    pub(super) fn add(
        &mut self,
        base: &Base,
        n: usize,
        keys: &[ArrayRef],
        inputs: &[Vec<ArrayRef>],
        closes: Option<&[i64]>,
    ) -> Result<Vec<StreamBatch>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let spec = &base.spec;
        let w = self.widths(base);
        // Local group numbers, in first-seen order.
        let rows = if keys.is_empty() {
            None
        } else {
            Some(base.converter.convert_columns(keys)?)
        };
        let mut touched: Vec<u32> = Vec::new();
        let mut first_rows: Vec<u32> = Vec::new();
        let mut group_of_row: Vec<usize> = Vec::with_capacity(n);
        for row in 0..n {
            let key: &[u8] = rows.as_ref().map_or(&[], |r| r.row(row).data());
            let id = match self.store.get(key) {
                Some(id) => id,
                None => {
                    let close = closes.map(|c| c[row]);
                    let id = self.store.insert(key, close);
                    if let Some(close) = close {
                        self.by_close.entry(close).or_default().push(id);
                    }
                    self.grow_scratch();
                    id
                }
            };
            let local = &mut self.local[id as usize];
            if *local == u32::MAX {
                *local = touched.len() as u32;
                touched.push(id);
                first_rows.push(row as u32);
            }
            group_of_row.push(*local as usize);
        }
        for &id in &touched {
            self.local[id as usize] = u32::MAX;
        }
        let t = touched.len();
        // Accumulator group numbers: the groups that existed before this
        // batch first, then the new ones (each in first-seen order), so the
        // old ones are exactly `0..k` when their state is merged. DataFusion's
        // accumulators take every group below `total_num_groups` as having
        // seen a value when the input has no NULLs: true of a merge of
        // `0..k`, and of a batch with rows of every group in `0..t`, not of a
        // merge of some groups with a total that counts the new ones.
        let mut position = vec![0usize; t];
        let mut ids: Vec<u32> = Vec::with_capacity(t);
        let mut firsts: Vec<u32> = Vec::with_capacity(t);
        for old_pass in [true, false] {
            for l in 0..t {
                if self.store.stored(touched[l]) == old_pass {
                    position[l] = ids.len();
                    ids.push(touched[l]);
                    firsts.push(first_rows[l]);
                }
            }
        }
        let k = (0..t).filter(|&l| self.store.stored(touched[l])).count();
        for group in group_of_row.iter_mut() {
            *group = position[*group];
        }
        let old_emitted: Vec<bool> = ids[..k].iter().map(|&id| self.store.emitted(id)).collect();
        let old_rows = self
            .store
            .gather(&ids[..k], w.keys..w.keys + w.states + w.values)?;
        let (old_states, old_values) = old_rows.split_at(w.states);
        let old: Vec<usize> = (0..k).collect();

        let mut accumulators = groups_accumulators(spec)?;
        let mut column = 0;
        for (((acc, values), filter), fields) in accumulators
            .iter_mut()
            .zip(inputs)
            .zip(&spec.filters)
            .zip(&self.state_fields)
        {
            if k > 0 {
                let states = &old_states[column..column + fields.len()];
                acc.merge_batch(states, &old, k)?;
            }
            column += fields.len();
            match filter {
                Some(_) => {
                    let (arguments, mask) = split_mask(values)?;
                    acc.update_batch(arguments, &group_of_row, Some(mask), t)?;
                }
                None => acc.update_batch(values, &group_of_row, None, t)?,
            }
        }
        let mut states = Vec::with_capacity(w.states);
        for acc in accumulators.iter_mut() {
            states.extend(acc.state(EmitTo::All)?);
        }
        let states = conform_states(&self.state_fields, states)?;
        let values = evaluate(base, &self.state_fields, &states, t)?;
        let firsts = UInt32Array::from(firsts);
        let group_keys = keys
            .iter()
            .map(|k| Ok(take(k.as_ref(), &firsts, None)?))
            .collect::<Result<Vec<ArrayRef>>>()?;

        // Which old groups' values changed (all of them, unless equal).
        let new_of_old: Vec<ArrayRef> = values.iter().map(|v| v.slice(0, k)).collect();
        let same = unchanged(old_values, &new_of_old, k)?;
        let out = changes(
            base,
            &group_keys,
            &position,
            (&old_emitted, old_values),
            &values,
            &same,
        )?;
        let mut columns = group_keys;
        columns.extend(states);
        columns.extend(values);
        self.store.append(&ids, &vec![true; t], columns);
        self.store.compact_if_needed()?;
        Ok(out)
    }

    /// Drop the windowed groups whose window closed at or before `watermark`.
    pub(super) fn close_windows(&mut self, watermark: i64) {
        let open = self.by_close.split_off(&watermark.saturating_add(1));
        for (_, ids) in std::mem::replace(&mut self.by_close, open) {
            for id in ids {
                self.store.remove(id);
            }
        }
    }

    /// Record changes from now on.
    pub(super) fn enable_checkpoints(&mut self) {
        self.store.enable_tracking();
    }

    /// A full chunk (every group) once the deltas outgrow it, a delta (the
    /// groups that changed, and rows with op -1 for the dropped) otherwise.
    pub(super) fn snapshot(&mut self, base: &Base, epoch: u64) -> Result<StateWrite> {
        let full = self.base_rows == 0 || self.delta_rows + self.store.changes() > self.base_rows;
        let (changed, dropped) = self.store.take_changes();
        let live = if full { self.store.live() } else { changed };
        let w = self.widths(base);
        let layout = Layout { keys: w.keys };
        let stored = self.store.gather(&live, 0..w.keys + w.states + w.values)?;
        let (keys, rest) = stored.split_at(w.keys);
        let closes: Vec<Option<i64>> = live.iter().map(|&id| self.store.close(id)).collect();
        let emitted: Vec<bool> = live.iter().map(|&id| self.store.emitted(id)).collect();
        let n = live.len();
        let mut columns: Vec<ArrayRef> = keys.to_vec();
        columns.push(Arc::new(Int8Array::from(vec![1i8; n])));
        columns.push(Arc::new(Int64Array::from(closes)));
        // `b` counts input rows for retracting groups only.
        columns.push(Arc::new(Int64Array::from(vec![Some(0i64); n])));
        columns.push(Arc::new(BooleanArray::from(emitted)));
        columns.extend(rest.iter().cloned());
        let mut batch = chunk(columns)?;
        if !full && !dropped.is_empty() {
            let gone = dropped_rows(base, layout, &batch, &dropped)?;
            let columns = (0..batch.num_columns())
                .map(|c| {
                    Ok(concat(&[
                        gone.column(c).as_ref(),
                        batch.column(c).as_ref(),
                    ])?)
                })
                .collect::<Result<Vec<_>>>()?;
            batch = chunk(columns)?;
        }
        let rows = batch.num_rows();
        if full {
            self.base_rows = rows.max(1);
            self.delta_rows = 0;
        } else {
            self.delta_rows += rows;
        }
        Ok(state_write(batch, full, epoch))
    }

    /// Apply one old worker's chunk (its rows for this worker): a row
    /// replaces its group, a row with op -1 drops it.
    pub(super) fn restore_chunk(&mut self, base: &Base, mine: &RecordBatch) -> Result<()> {
        let w = self.widths(base);
        let layout = Layout { keys: w.keys };
        let view = super::keyed_state::StateChunk::new(mine, w.keys)?;
        let keys = super::shared::key_rows(&base.converter, view.keys(), view.rows())?;
        let mut ids = Vec::with_capacity(view.rows());
        let mut emitted = Vec::with_capacity(view.rows());
        let mut rows = Vec::with_capacity(view.rows());
        for (row, key) in keys.iter().enumerate() {
            let existing = self.store.get(key);
            if view.dropped(row) {
                if let Some(id) = existing {
                    self.store.remove(id);
                }
                continue;
            }
            let id = match existing {
                Some(id) => id,
                None => {
                    let close = view.a(row);
                    let id = self.store.insert(key, close);
                    if let Some(close) = close {
                        self.by_close.entry(close).or_default().push(id);
                    }
                    id
                }
            };
            ids.push(id);
            emitted.push(view.emitted(row));
            rows.push(row as u32);
        }
        self.grow_scratch();
        let rows = UInt32Array::from(rows);
        let mut columns = Vec::with_capacity(w.keys + w.states + w.values);
        let stored = mine.columns()[..w.keys]
            .iter()
            .chain(&mine.columns()[layout.states()..]);
        for (column, data_type) in stored.zip(self.store.types()) {
            let column = take(column.as_ref(), &rows, None)?;
            columns.push(if column.data_type() == data_type {
                column
            } else {
                cast(&column, data_type)?
            });
        }
        if columns.len() != w.keys + w.states + w.values {
            return internal_err!(
                "an updating aggregate's checkpoint chunk has {} state and value columns, not {}",
                columns.len() - w.keys,
                w.states + w.values
            );
        }
        self.store.append(&ids, &emitted, columns);
        self.store.compact_if_needed()
    }

    /// A restore is complete: its groups are the base of the next delta.
    pub(super) fn restored(&mut self) {
        self.store.clear_changes();
        self.base_rows = self.store.len().max(1);
        self.delta_rows = 0;
    }
}

/// Cast drained states to their declared fields' types where an
/// accumulator gives another (a view or dictionary type).
fn conform_states(fields: &[Vec<FieldRef>], states: Vec<ArrayRef>) -> Result<Vec<ArrayRef>> {
    states
        .into_iter()
        .zip(fields.iter().flatten())
        .map(|(s, f)| {
            if s.data_type() == f.data_type() {
                Ok(s)
            } else {
                Ok(cast(&s, f.data_type())?)
            }
        })
        .collect()
}

/// The values of `groups` groups whose states are `states`, as the
/// output's types.
fn evaluate(
    base: &Base,
    fields: &[Vec<FieldRef>],
    states: &[ArrayRef],
    groups: usize,
) -> Result<Vec<ArrayRef>> {
    let spec = &base.spec;
    let all: Vec<usize> = (0..groups).collect();
    let mut column = 0;
    let mut values = Vec::with_capacity(spec.aggregates.len());
    for (i, (mut acc, fields)) in groups_accumulators(spec)?
        .into_iter()
        .zip(fields)
        .enumerate()
    {
        acc.merge_batch(&states[column..column + fields.len()], &all, groups)?;
        column += fields.len();
        let value = acc.evaluate(EmitTo::All)?;
        let field = spec.output_schema.field(spec.group.len() + i);
        values.push(if value.data_type() == field.data_type() {
            value
        } else {
            cast(&value, field.data_type())?
        });
    }
    Ok(values)
}

/// Per old group (`rows` of them), are its new values the same as the old
/// (NULL equal to NULL)? Types the comparison kernel does not take (lists,
/// structs) are compared value by value. The count is given, not read off
/// the first value column: a GROUP BY with no aggregate has none, and its
/// old groups are all unchanged.
fn unchanged(old: &[ArrayRef], new: &[ArrayRef], rows: usize) -> Result<BooleanArray> {
    let mut same = BooleanArray::from(vec![true; rows]);
    for (o, n) in old.iter().zip(new) {
        let equal =
            match not_distinct(o, n) {
                Ok(equal) => equal,
                Err(_) => BooleanArray::from(
                    (0..rows)
                        .map(|r| {
                            Ok(ScalarValue::try_from_array(o, r)?
                                == ScalarValue::try_from_array(n, r)?)
                        })
                        .collect::<Result<Vec<bool>>>()?,
                ),
            };
        same = and(&same, &equal)?;
    }
    Ok(same)
}

/// The old groups of a batch (the first groups of `values`): whether each
/// emitted, and the values it emitted.
type OldGroups<'a> = (&'a [bool], &'a [ArrayRef]);

/// The changelog of a batch: for each touched group in first-seen order, a
/// retraction of the row it emitted (if any) and an insert of its new one,
/// unless its values did not change.
fn changes(
    base: &Base,
    keys: &[ArrayRef],
    position: &[usize],
    (old_emitted, old_values): OldGroups,
    values: &[ArrayRef],
    same: &BooleanArray,
) -> Result<Vec<StreamBatch>> {
    let k = old_emitted.len();
    // Sources: 0 the retractions (old groups), 1 the inserts; groups in
    // first-seen order (`position` gives each one's row in `values`).
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(position.len() + k);
    let mut ops: Vec<i8> = Vec::with_capacity(position.len() + k);
    for &j in position {
        if j < k && old_emitted[j] {
            if same.value(j) {
                continue;
            }
            picks.push((0, j));
            ops.push(-1);
        }
        picks.push((1, j));
        ops.push(1);
    }
    if picks.is_empty() {
        return Ok(Vec::new());
    }
    let old_keys: Vec<ArrayRef> = keys.iter().map(|c| c.slice(0, k)).collect();
    let retract = old_keys.iter().chain(old_values);
    let insert = keys.iter().chain(values);
    let mut columns = retract
        .zip(insert)
        .map(|(r, i)| Ok(interleave(&[r.as_ref(), i.as_ref()], &picks)?))
        .collect::<Result<Vec<ArrayRef>>>()?;
    let schema = &base.spec.output_schema;
    columns = conform(schema, columns)?;
    columns.push(Arc::new(Int8Array::from(ops)));
    Ok(vec![StreamBatch::Changes(RecordBatch::try_new(
        changelog_schema(schema),
        columns,
    )?)])
}

/// Rows with op -1 for dropped keys, in the columns of `like`.
fn dropped_rows(
    base: &Base,
    layout: Layout,
    like: &RecordBatch,
    dropped: &[Arc<[u8]>],
) -> Result<RecordBatch> {
    let n = dropped.len();
    let keys = if layout.keys == 0 {
        Vec::new()
    } else {
        let converter = &base.converter;
        let parser = converter.parser();
        let mut encoded = converter.empty_rows(n, 0);
        for key in dropped {
            encoded.push(parser.parse(key));
        }
        converter.convert_rows(&encoded)?
    };
    let mut columns: Vec<ArrayRef> = keys;
    for (c, field) in like.schema().fields().iter().enumerate().skip(layout.keys) {
        columns.push(if c == layout.op() {
            Arc::new(Int8Array::from(vec![-1i8; n]))
        } else if c == layout.emitted() {
            Arc::new(BooleanArray::from(vec![false; n]))
        } else {
            new_null_array(field.data_type(), n)
        });
    }
    chunk(columns)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema, SchemaRef};
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::min_max::max_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_plan::PhysicalExpr;
    use prometheus_client::metrics::counter::Counter;

    use crate::operators::StreamOperator;
    use crate::operators::aggregate::UpdatingAggregate;
    use crate::plan::{AggregateSpec, Emit, WindowKind};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    /// `SELECT k, count(v), sum(v), max(v) FROM t GROUP BY k`, or the same
    /// without `k` (a global aggregate) when `global`.
    fn aggregate(global: bool) -> UpdatingAggregate {
        let input = schema();
        let col =
            |name: &str, i: usize| -> Arc<dyn PhysicalExpr> { Arc::new(Column::new(name, i)) };
        let of_v = |udaf, alias: &str| {
            Arc::new(
                AggregateExprBuilder::new(udaf, vec![col("v", 1)])
                    .schema(input.clone())
                    .alias(alias)
                    .build()
                    .expect("an aggregate"),
            )
        };
        let mut fields = vec![
            Field::new("n", DataType::Int64, true),
            Field::new("total", DataType::Int64, true),
            Field::new("top", DataType::Int64, true),
        ];
        if !global {
            fields.insert(0, Field::new("k", DataType::Int64, true));
        }
        let spec = Arc::new(AggregateSpec {
            group: if global { vec![] } else { vec![col("k", 0)] },
            partition_keys: if global { vec![] } else { vec![0] },
            aggregates: vec![
                of_v(count_udaf(), "n"),
                of_v(sum_udaf(), "total"),
                of_v(max_udaf(), "top"),
            ],
            filters: vec![None, None, None],
            window: WindowKind::None,
            emit: Emit::Updates,
            output_schema: Arc::new(Schema::new(fields)),
            retracting: None,
        });
        UpdatingAggregate::new(spec, &input, Counter::default()).expect("an updating aggregate")
    }

    /// A deterministic batch: keys in 0..keys (some NULL), values some NULL.
    fn batch(seed: u64, rows: usize, keys: u64) -> RecordBatch {
        let mix = |n: u64| n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ seed;
        let k: Vec<Option<i64>> = (0..rows as u64)
            .map(|n| (mix(n) % 13 != 0).then(|| (mix(n) % keys) as i64))
            .collect();
        let v: Vec<Option<i64>> = (0..rows as u64)
            .map(|n| (mix(n + 7) % 11 != 0).then(|| (mix(n + 7) % 100) as i64 - 50))
            .collect();
        RecordBatch::try_new(
            schema(),
            vec![Arc::new(Int64Array::from(k)), Arc::new(Int64Array::from(v))],
        )
        .expect("a batch")
    }

    type Row = Vec<Option<i64>>;

    /// Apply a changelog to a multiset of rows; a retraction must find its row.
    fn apply(view: &mut BTreeMap<Row, i64>, out: Vec<StreamBatch>) {
        for batch in out {
            let batch = batch.batch();
            let ops = batch
                .column(batch.num_columns() - 1)
                .as_primitive::<Int8Type>();
            for r in 0..batch.num_rows() {
                let row: Row = (0..batch.num_columns() - 1)
                    .map(|c| {
                        let col = batch.column(c).as_primitive::<Int64Type>();
                        (!col.is_null(r)).then(|| col.value(r))
                    })
                    .collect();
                let count = view.entry(row.clone()).or_insert(0);
                *count += i64::from(ops.value(r));
                assert!(*count >= 0, "{row:?} retracted but not in the view");
                if *count == 0 {
                    view.remove(&row);
                }
            }
        }
    }

    /// What the view must hold after `batches`, computed row by row.
    fn expected(batches: &[RecordBatch], global: bool) -> BTreeMap<Row, i64> {
        let mut groups: BTreeMap<Option<i64>, (i64, Option<i64>, Option<i64>)> = BTreeMap::new();
        if global {
            groups.insert(None, (0, None, None));
        }
        for batch in batches {
            let k = batch.column(0).as_primitive::<Int64Type>();
            let v = batch.column(1).as_primitive::<Int64Type>();
            for r in 0..batch.num_rows() {
                let key = if global {
                    None
                } else {
                    (!k.is_null(r)).then(|| k.value(r))
                };
                let g = groups.entry(key).or_insert((0, None, None));
                if !v.is_null(r) {
                    g.0 += 1;
                    g.1 = Some(g.1.unwrap_or(0) + v.value(r));
                    g.2 = Some(g.2.map_or(v.value(r), |m: i64| m.max(v.value(r))));
                }
            }
        }
        groups
            .into_iter()
            .map(|(k, (n, s, m))| {
                let mut row = vec![Some(n), s, m];
                if !global {
                    row.insert(0, k);
                }
                (row, 1)
            })
            .collect()
    }

    fn run(global: bool) {
        let batches: Vec<RecordBatch> = (0..40).map(|s| batch(s, 500, 300)).collect();
        let mut op = aggregate(global);
        op.enable_checkpoints();
        let mut view = BTreeMap::new();
        apply(&mut view, op.on_start().expect("start"));
        let mut chunks = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            apply(&mut view, op.on_batch(None, b).expect("batch"));
            if i % 7 == 3 {
                let write = op.snapshot(i as u64).expect("snapshot");
                if write.reset {
                    chunks.clear();
                }
                chunks.extend(write.put);
            }
            if i == 20 {
                // Restore what the checkpoints hold into a new operator,
                // and go on with it: state is what the old one had.
                let write = op.snapshot(100).expect("snapshot");
                if write.reset {
                    chunks.clear();
                }
                chunks.extend(write.put);
                op = aggregate(global);
                op.restore(i64::MIN, &chunks, 0, 1).expect("restore");
                op.enable_checkpoints();
                assert!(op.on_start().expect("start").is_empty(), "restored");
            }
        }
        assert_eq!(view, expected(&batches, global));
    }

    #[test]
    fn the_changelog_gives_the_groups_through_a_checkpoint() {
        run(false);
    }

    #[test]
    fn a_global_aggregate_has_one_row_through_a_checkpoint() {
        run(true);
    }

    #[test]
    fn a_global_aggregate_over_no_rows_is_count_0_and_nulls() {
        let mut op = aggregate(true);
        let mut view = BTreeMap::new();
        apply(&mut view, op.on_start().expect("start"));
        assert_eq!(view, BTreeMap::from([(vec![Some(0), None, None], 1)]));
        // A new group whose values are all NULL, beside one that has some.
        let mut op = aggregate(false);
        let mut view = BTreeMap::new();
        let k = Int64Array::from(vec![1, 2]);
        let v = Int64Array::from(vec![Some(5), None]);
        let rows = RecordBatch::try_new(schema(), vec![Arc::new(k), Arc::new(v)]).expect("rows");
        apply(&mut view, op.on_batch(None, &rows).expect("batch"));
        let k = Int64Array::from(vec![1, 3]);
        let v = Int64Array::from(vec![Some(6), None]);
        let rows = RecordBatch::try_new(schema(), vec![Arc::new(k), Arc::new(v)]).expect("rows");
        apply(&mut view, op.on_batch(None, &rows).expect("batch"));
        let expected = BTreeMap::from([
            (vec![Some(1), Some(2), Some(11), Some(6)], 1),
            (vec![Some(2), Some(0), None, None], 1),
            (vec![Some(3), Some(0), None, None], 1),
        ]);
        assert_eq!(view, expected);
    }
}
