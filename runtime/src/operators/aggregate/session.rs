//! The session aggregate: session windows, emitted on close or as a
//! changelog.
//!
//! Per partition key, the open sessions with their accumulators; a row opens
//! `[t, t + gap)` and merges every session it overlaps or touches, as Flink
//! does (its windows intersect when `start <= other.end && end >=
//! other.start`): rows exactly `gap` apart are one session. So a session
//! ending at `e` closes once the watermark is past `e` (a row at `e` would
//! still join it), not at `e`. A row whose session would be closed already
//! is late: dropped and counted.
//!
//! Open sessions are indexed by their end (`by_end`), so a watermark visits
//! only the keys with a session it may close, not every key: an entry is
//! added whenever a session gets a new end and is never updated in place; a
//! stale one (the session since grew or merged) closes nothing when the
//! watermark reaches it and is dropped. Every open session has an entry at
//! its current end, so none is missed. Keys without open sessions are
//! dropped from state.
//!
//! Checkpoint chunks: keyed state ([`super::keyed_state`]) keyed by the
//! partition key, one row per session, `a` its start and `b` its end; a
//! delta drops a changed key's sessions (op -1) and lists the ones it has
//! now.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{HashMap, Result, ScalarValue, internal_err};
use datafusion::logical_expr::Accumulator;
use prometheus_client::metrics::counter::Counter;

use super::keyed_state::{StateChunk, StateRows, Tracking};
use super::shared::{
    Base, GroupRow, evaluate_all, key_rows, rows_of_worker, rows_to_batch, take_all,
};
use crate::checkpoint::StateWrite;
use crate::operators::{Side, StateSummary, StreamBatch, StreamOperator};
use crate::plan::{AggregateSpec, Emit, WindowKind};
use crate::windows::timestamps_as_nanos;

/// One worker's session aggregate.
pub struct SessionAggregate {
    base: Base,
    /// The group key holding the row's event time on input, the session
    /// start on output.
    start_key: usize,
    /// The group key that is the session end on output.
    end_key: usize,
    /// The inactivity gap (nanoseconds).
    gap: i64,
    /// Open sessions by partition key (row-format bytes).
    keys: HashMap<Box<[u8]>, KeySessions>,
    /// Session end -> the keys that had a session ending there (some
    /// stale: see the module docs).
    by_end: BTreeMap<i64, Vec<Box<[u8]>>>,
    tracking: Tracking,
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

impl SessionAggregate {
    /// A new, empty session aggregate.
    pub fn new(spec: Arc<AggregateSpec>, input_schema: &SchemaRef, late: Counter) -> Result<Self> {
        let WindowKind::Session {
            start_key,
            end_key,
            gap,
        } = spec.window
        else {
            return internal_err!("a session aggregate planned without session windows");
        };
        Ok(Self {
            base: Base::new(spec, input_schema, late)?,
            start_key,
            end_key,
            gap,
            keys: HashMap::default(),
            by_end: BTreeMap::new(),
            tracking: Tracking::default(),
        })
    }

    /// Does it emit a changelog (rather than each session once, on close)?
    fn updating(&self) -> bool {
        self.base.spec.emit == Emit::Updates
    }

    /// The type the session bounds are emitted as.
    fn time_type(&self) -> DataType {
        self.base
            .spec
            .output_schema
            .field(self.start_key)
            .data_type()
            .clone()
    }

    fn sessions_batch(
        &mut self,
        keys: &[ArrayRef],
        inputs: &[Vec<ArrayRef>],
    ) -> Result<Vec<StreamBatch>> {
        let spec = self.base.spec.clone();
        let (start_key, gap) = (self.start_key, self.gap);
        let times = timestamps_as_nanos(&keys[start_key])?;
        let partition: Vec<ArrayRef> = spec
            .partition_keys
            .iter()
            .map(|&k| keys[k].clone())
            .collect();
        // Sessions without partition keys (one global key) have the empty
        // key, which the row format cannot express.
        let rows = key_rows(&self.base.partition_converter, &partition, times.len())?;
        // Rows per partition key, sorted by time, cut into runs at most the gap apart.
        let mut members: HashMap<Box<[u8]>, Vec<(i64, u32)>> = HashMap::default();
        let mut late = 0;
        for (row, key) in rows.into_iter().enumerate() {
            if times.is_null(row) {
                continue;
            }
            let t = times.value(row);
            // Its session would be closed already (see `on_watermark`).
            if t.saturating_add(gap) < self.base.watermark {
                late += 1;
                continue;
            }
            members.entry(key).or_default().push((t, row as u32));
        }
        self.base.late.inc_by(late);
        let updating = self.updating();
        let mut changes: Vec<GroupRow> = Vec::new();
        for (key_bytes, mut list) in members {
            self.tracking.touch(&key_bytes);
            list.sort_unstable();
            let first = list[0].1 as usize;
            let entry = match self.keys.entry(key_bytes.clone()) {
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
                let mut accumulators = self.base.accumulators()?;
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
                    if updating && let Some(values) = old.emitted.take() {
                        changes.push((
                            session_key(
                                &entry.key,
                                &spec,
                                old.start,
                                old.end,
                                self.start_key,
                                self.end_key,
                            ),
                            values,
                            -1i8,
                        ));
                    }
                }
                if updating {
                    let values = evaluate_all(&mut merged.accumulators)?;
                    changes.push((
                        session_key(
                            &entry.key,
                            &spec,
                            merged.start,
                            merged.end,
                            self.start_key,
                            self.end_key,
                        ),
                        values.clone(),
                        1i8,
                    ));
                    merged.emitted = Some(values);
                }
                self.by_end
                    .entry(merged.end)
                    .or_default()
                    .push(key_bytes.clone());
                entry.sessions.push(merged);
                run_start = run_end;
            }
        }
        rows_to_batch(&spec, Some(self.time_type()), changes, true)
    }

    /// Apply one old worker's chunk.
    fn restore_chunk(&mut self, mine: &RecordBatch) -> Result<()> {
        let p = self.base.spec.partition_keys.len();
        let chunk = StateChunk::new(mine, p)?;
        let keys = key_rows(&self.base.partition_converter, chunk.keys(), chunk.rows())?;
        for (row, key) in keys.into_iter().enumerate() {
            if chunk.dropped(row) {
                self.keys.remove(&key);
                continue;
            }
            let (Some(start), Some(end)) = (chunk.a(row), chunk.b(row)) else {
                return internal_err!("a session in a checkpoint without its bounds");
            };
            let (accumulators, emitted) = chunk.entry(&self.base, row)?;
            self.by_end.entry(end).or_default().push(key.clone());
            let entry = match self.keys.entry(key) {
                datafusion::common::hash_map::Entry::Occupied(e) => e.into_mut(),
                datafusion::common::hash_map::Entry::Vacant(e) => e.insert(KeySessions {
                    key: (0..p).map(|k| chunk.key(k, row)).collect::<Result<_>>()?,
                    sessions: Vec::new(),
                }),
            };
            entry.sessions.push(Session {
                start,
                end,
                accumulators,
                emitted,
            });
        }
        self.tracking.restored(self.keys.len());
        Ok(())
    }
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

/// Write one key's sessions into a chunk.
fn push_sessions(rows: &mut StateRows, entry: &mut KeySessions) -> Result<()> {
    for session in entry.sessions.iter_mut() {
        rows.push(
            &entry.key,
            Some(session.start),
            Some(session.end),
            &mut session.accumulators,
            session.emitted.as_ref(),
        )?;
    }
    Ok(())
}

impl StreamOperator for SessionAggregate {
    fn state(&self) -> StateSummary {
        StateSummary {
            operator: "session aggregate",
            entries: self.keys.values().map(|k| k.sessions.len()).sum(),
        }
    }

    fn on_batch(&mut self, _side: Option<Side>, batch: &RecordBatch) -> Result<Vec<StreamBatch>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let evaluated = self.base.evaluate(batch)?;
        self.sessions_batch(&evaluated.keys, &evaluated.inputs)
    }

    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<StreamBatch>> {
        if !self.base.advance(watermark) {
            return Ok(Vec::new());
        }
        let updating = self.updating();
        let mut rows: Vec<GroupRow> = Vec::new();
        // Sessions ending before the watermark close (one ending at it may
        // still take a row at its end).
        let open = self.by_end.split_off(&watermark);
        for (_, keys) in std::mem::replace(&mut self.by_end, open) {
            for bytes in keys {
                let Some(key) = self.keys.get_mut(&bytes) else {
                    continue; // stale: the key closed every session already
                };
                if key.sessions.iter().all(|s| s.end >= watermark) {
                    continue; // stale: that session grew or merged since
                }
                self.tracking.touch(&bytes);
                let (closed, open): (Vec<Session>, Vec<Session>) =
                    std::mem::take(&mut key.sessions)
                        .into_iter()
                        .partition(|s| s.end < watermark);
                key.sessions = open;
                if !updating {
                    for mut session in closed {
                        let values = evaluate_all(&mut session.accumulators)?;
                        rows.push((
                            session_key(
                                &key.key,
                                &self.base.spec,
                                session.start,
                                session.end,
                                self.start_key,
                                self.end_key,
                            ),
                            values,
                            1i8,
                        ));
                    }
                }
                if key.sessions.is_empty() {
                    self.keys.remove(&bytes);
                }
            }
        }
        rows_to_batch(&self.base.spec, Some(self.time_type()), rows, updating)
    }

    fn watermark(&self) -> i64 {
        self.base.watermark
    }

    fn enable_checkpoints(&mut self) {
        self.tracking.enable();
    }

    fn snapshot(&mut self, epoch: u64) -> Result<StateWrite> {
        let full = self.tracking.full();
        let mut rows = StateRows::new(&self.base, self.base.spec.partition_keys.len())?;
        if full {
            for entry in self.keys.values_mut() {
                push_sessions(&mut rows, entry)?;
            }
        } else {
            // A changed key: drop what the checkpoint had, then list its
            // sessions now.
            let dirty: Vec<&[u8]> = self.tracking.dirty().collect();
            rows.push_dropped(&self.base.partition_converter, &dirty)?;
            for key in dirty {
                if let Some(entry) = self.keys.get_mut(key) {
                    push_sessions(&mut rows, entry)?;
                }
            }
        }
        self.tracking
            .write(rows, full, &self.base.partition_types, epoch)
    }

    fn restore(
        &mut self,
        watermark: i64,
        chunks: &[(String, RecordBatch)],
        worker: usize,
        workers: usize,
    ) -> Result<()> {
        self.base.watermark = self.base.watermark.max(watermark);
        // Session chunks start with the partition key columns.
        let key_columns: Vec<usize> = (0..self.base.spec.partition_keys.len()).collect();
        for (_, chunk) in chunks {
            if let Some(mine) = rows_of_worker(chunk, &key_columns, worker, workers)? {
                self.restore_chunk(&mine)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{
        Field, Int64Type, Schema, TimeUnit, TimestampNanosecondType,
    };
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_plan::PhysicalExpr;

    use super::*;

    const S: i64 = 1_000_000_000;

    fn schema() -> SchemaRef {
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new("t", ts, false),
        ]))
    }

    /// `count(user_id)` per user in sessions with a 3 s gap, on close.
    fn sessions() -> SessionAggregate {
        let input = schema();
        let col =
            |name: &str, i: usize| -> Arc<dyn PhysicalExpr> { Arc::new(Column::new(name, i)) };
        let count = AggregateExprBuilder::new(count_udaf(), vec![col("user_id", 0)])
            .schema(input.clone())
            .alias("n")
            .build()
            .expect("count");
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let spec = Arc::new(AggregateSpec {
            group: vec![col("user_id", 0), col("t", 1), col("t", 1)],
            partition_keys: vec![0],
            aggregates: vec![Arc::new(count)],
            filters: vec![None],
            window: WindowKind::Session {
                start_key: 1,
                end_key: 2,
                gap: 3 * S,
            },
            emit: Emit::OnWindowClose,
            output_schema: Arc::new(Schema::new(vec![
                Field::new("user_id", DataType::Int64, false),
                Field::new("window_start", ts.clone(), false),
                Field::new("window_end", ts, false),
                Field::new("n", DataType::Int64, true),
            ])),
            retracting: None,
        });
        SessionAggregate::new(spec, &input, Counter::default()).expect("a session aggregate")
    }

    fn rows(users: &[i64], times: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(users.to_vec())),
                Arc::new(TimestampNanosecondArray::from(times.to_vec())),
            ],
        )
        .expect("a batch")
    }

    /// (user, start, end, count) of every row emitted, sorted.
    fn emitted(out: Vec<StreamBatch>) -> Vec<(i64, i64, i64, i64)> {
        let mut rows = Vec::new();
        for batch in out {
            let batch = batch.batch();
            for r in 0..batch.num_rows() {
                rows.push((
                    batch.column(0).as_primitive::<Int64Type>().value(r),
                    batch
                        .column(1)
                        .as_primitive::<TimestampNanosecondType>()
                        .value(r),
                    batch
                        .column(2)
                        .as_primitive::<TimestampNanosecondType>()
                        .value(r),
                    batch.column(3).as_primitive::<Int64Type>().value(r),
                ));
            }
        }
        rows.sort_unstable();
        rows
    }

    #[test]
    fn events_exactly_one_gap_apart_are_one_session() {
        let mut op = sessions();
        op.on_batch(None, &rows(&[1, 1, 1], &[0, 3 * S, 6 * S + 1000]))
            .expect("rows");
        let out = emitted(op.on_watermark(i64::MAX).expect("final watermark"));
        assert_eq!(
            out,
            vec![(1, 0, 6 * S, 2), (1, 6 * S + 1000, 9 * S + 1000, 1)]
        );
        assert_eq!(op.state().entries, 0, "closed sessions leave no state");
    }

    #[test]
    fn a_session_that_grew_is_not_closed_at_its_old_end() {
        let mut op = sessions();
        op.on_batch(None, &rows(&[1, 2], &[0, 0])).expect("rows");
        // User 1's session [0, 3 s) grows to [0, 6 s); user 2's stays.
        op.on_batch(None, &rows(&[1], &[3 * S])).expect("rows");
        let out = emitted(op.on_watermark(4 * S).expect("watermark"));
        assert_eq!(out, vec![(2, 0, 3 * S, 1)], "only user 2's session closed");
        // At its end the session may still take a row: not closed yet.
        assert!(op.on_watermark(6 * S).expect("watermark").is_empty());
        let out = emitted(op.on_watermark(6 * S + 1).expect("watermark"));
        assert_eq!(out, vec![(1, 0, 6 * S, 2)]);
        assert_eq!(op.state().entries, 0);
    }

    #[test]
    fn merged_sessions_close_once() {
        let mut op = sessions();
        // Two sessions of user 1, then a row that bridges them.
        op.on_batch(None, &rows(&[1, 1], &[0, 6 * S]))
            .expect("rows");
        op.on_batch(None, &rows(&[1], &[3 * S])).expect("rows");
        let out = emitted(op.on_watermark(i64::MAX).expect("final watermark"));
        assert_eq!(out, vec![(1, 0, 9 * S, 3)]);
    }
}
