//! An equi-join of two inputs, either of which may be updating (a table
//! with a primary key) and both maintained: a symmetric hash join.
//!
//! One instance runs per join worker and owns the keys the exchange sends
//! it. Each side keeps its rows by join key, as Arrow row-format bytes with
//! a count (a multiset, so duplicates and retractions are exact). A row in
//! on one side is matched against the other side's rows of its key, and the
//! pairs are emitted with the row's op: an insert inserts its pairs, a
//! retraction retracts them. A LEFT JOIN also keeps the null-padded row of
//! a left row without matches, retracting it when the first match arrives
//! and inserting it again when the last match goes.
//!
//! # Correctness
//! - Rows of one input are applied in order and each against the state the
//!   other side had when it arrived, so every pair is emitted exactly once
//!   in whichever order the two sides' rows come (the classic symmetric
//!   hash join argument).
//! - A NULL key matches nothing, as in SQL: such rows are never stored; on
//!   the left of a LEFT JOIN they are passed through null-padded.
//! - The output carries no watermark (only the end of input): a row on one
//!   side joins the other side's rows of any age, so no event time bounds
//!   what the join may still emit. Windows after a join are therefore
//!   updating and kept (EMIT ON WINDOW CLOSE is refused); an interval join
//!   would be the way to keep a watermark.
//! - State is per key, and both inputs are exchanged by the same key
//!   expressions (cast to one type), so matching rows meet on one worker.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int8Array, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{HashMap, Result, exec_err};
use datafusion::physical_plan::PhysicalExpr;

use crate::checkpoint::StateWrite;
use crate::operators::aggregate::changelog_schema;
use crate::operators::exchange;

/// Which rows a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Pairs of matching rows.
    Inner,
    /// Pairs, and each left row without a match padded with NULLs.
    Left,
}

/// A join of two inputs on equal keys.
#[derive(Debug)]
pub struct JoinSpec {
    /// Inner or left.
    pub kind: JoinKind,
    /// Key expressions over each input's rows (left, right), of one type
    /// per key on both sides.
    pub keys: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// Each input's rows (without the op column).
    pub inputs: [SchemaRef; 2],
    /// Do an input's batches carry the op column?
    pub input_changelog: [bool; 2],
    /// Left columns then right columns.
    pub output_schema: SchemaRef,
}

impl JoinSpec {
    /// Does the output retract rows (and so carry the op column)? Only an
    /// inner join of two append-only inputs never does.
    pub fn changelog(&self) -> bool {
        self.kind != JoinKind::Inner || self.input_changelog.iter().any(|c| *c)
    }
}

/// One side's rows: key -> row -> how many times it is there.
type Rows = HashMap<Box<[u8]>, HashMap<Box<[u8]>, i64>>;

struct Side {
    keys: RowConverter,
    rows: RowConverter,
    state: Rows,
}

/// One worker's join.
pub struct JoinOperator {
    spec: Arc<JoinSpec>,
    sides: [Side; 2],
}

/// One side's row in an output row (`None`: NULLs).
type Part = Option<Box<[u8]>>;

/// An output row: the left row, the right row, the op.
type Pair = (Part, Part, i8);

impl JoinOperator {
    /// A new, empty join.
    pub fn new(spec: Arc<JoinSpec>) -> Result<Self> {
        let side = |i: usize| -> Result<Side> {
            let key_types = spec.keys[i]
                .iter()
                .map(|k| k.data_type(&spec.inputs[i]))
                .collect::<Result<Vec<_>>>()?;
            Ok(Side {
                keys: RowConverter::new(key_types.into_iter().map(SortField::new).collect())?,
                rows: RowConverter::new(
                    spec.inputs[i]
                        .fields()
                        .iter()
                        .map(|f| SortField::new(f.data_type().clone()))
                        .collect(),
                )?,
                state: HashMap::default(),
            })
        };
        let sides = [side(0)?, side(1)?];
        Ok(Self { spec, sides })
    }

    /// Does this join emit a changelog (with the op column)?
    pub fn is_changelog(&self) -> bool {
        self.spec.changelog()
    }

    /// Rows of input `side` (0 left, 1 right) arrive: apply them to that
    /// side's state and return the pairs they make or unmake.
    pub fn on_batch(&mut self, side: usize, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(Vec::new());
        }
        let width = self.spec.inputs[side].fields().len();
        let ops = if self.spec.input_changelog[side] {
            Some(
                batch
                    .column(batch.num_columns() - 1)
                    .as_primitive::<Int8Type>()
                    .clone(),
            )
        } else {
            None
        };
        let keys = self.spec.keys[side]
            .iter()
            .map(|k| k.evaluate(batch)?.into_array(n))
            .collect::<Result<Vec<_>>>()?;
        let key_rows = self.sides[side].keys.convert_columns(&keys)?;
        let rows = self.sides[side]
            .rows
            .convert_columns(&batch.columns()[..width])?;
        let left_join = self.spec.kind == JoinKind::Left;
        let other = 1 - side;
        let mut out: Vec<Pair> = Vec::new();
        let pair = |mine: &[u8], theirs: Option<&[u8]>| -> (Part, Part) {
            let mine = Some(mine.into());
            let theirs = theirs.map(Into::into);
            if side == 0 {
                (mine, theirs)
            } else {
                (theirs, mine)
            }
        };
        for i in 0..n {
            let op = ops.as_ref().map_or(1, |o| o.value(i));
            let row = rows.row(i);
            if keys.iter().any(|k| k.is_null(i)) {
                if left_join && side == 0 {
                    out.push((Some(row.as_ref().into()), None, op));
                }
                continue;
            }
            let key = key_rows.row(i);
            let matches = self.sides[other].state.get(key.as_ref());
            if side == 1 && left_join {
                // The right side of a LEFT JOIN: the null-padded left rows
                // go when the key's first right row comes, and come back
                // when its last one goes.
                let before: i64 = self.sides[1]
                    .state
                    .get(key.as_ref())
                    .map_or(0, |m| m.values().sum());
                let after = before + op as i64;
                let lefts = matches;
                if let Some(lefts) = lefts {
                    if before <= 0 && after > 0 {
                        for (l, &c) in lefts {
                            for _ in 0..c {
                                out.push((Some(l.clone()), None, -1));
                            }
                        }
                    }
                    for (l, &c) in lefts {
                        for _ in 0..c {
                            out.push((Some(l.clone()), Some(row.as_ref().into()), op));
                        }
                    }
                    if before > 0 && after <= 0 {
                        for (l, &c) in lefts {
                            for _ in 0..c {
                                out.push((Some(l.clone()), None, 1));
                            }
                        }
                    }
                }
            } else {
                let mut matched = false;
                if let Some(theirs) = matches {
                    for (t, &c) in theirs {
                        if c > 0 {
                            matched = true;
                        }
                        for _ in 0..c {
                            let (l, r) = pair(row.as_ref(), Some(t));
                            out.push((l, r, op));
                        }
                    }
                }
                if left_join && !matched {
                    out.push((Some(row.as_ref().into()), None, op));
                }
            }
            // Look up before inserting: keys and rows are copied only when new.
            let state = &mut self.sides[side].state;
            if !state.contains_key(key.as_ref()) {
                state.insert(key.as_ref().into(), HashMap::default());
            }
            let Some(per_key) = state.get_mut(key.as_ref()) else {
                continue;
            };
            let count = match per_key.get_mut(row.as_ref()) {
                Some(count) => {
                    *count += op as i64;
                    *count
                }
                None => {
                    per_key.insert(row.as_ref().into(), op as i64);
                    op as i64
                }
            };
            if count == 0 {
                per_key.remove(row.as_ref());
                if per_key.is_empty() {
                    state.remove(key.as_ref());
                }
            }
        }
        Ok(self.pairs_batch(out)?.into_iter().collect())
    }

    fn pairs_batch(&self, pairs: Vec<Pair>) -> Result<Option<RecordBatch>> {
        if pairs.is_empty() {
            return Ok(None);
        }
        let mut columns = Vec::with_capacity(self.spec.output_schema.fields().len() + 1);
        for (s, side) in self.sides.iter().enumerate() {
            let present: Vec<&[u8]> = pairs
                .iter()
                .filter_map(|p| {
                    if s == 0 {
                        p.0.as_deref()
                    } else {
                        p.1.as_deref()
                    }
                })
                .collect();
            let parser = side.rows.parser();
            let mut encoded = side.rows.empty_rows(present.len(), 0);
            for bytes in &present {
                encoded.push(parser.parse(bytes));
            }
            let arrays = side.rows.convert_rows(&encoded)?;
            let mut next = 0u32;
            let indices: UInt32Array = pairs
                .iter()
                .map(|p| {
                    let there = if s == 0 { p.0.is_some() } else { p.1.is_some() };
                    there.then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect();
            for array in arrays {
                columns.push(
                    if indices.null_count() == 0 && indices.len() == array.len() {
                        array
                    } else {
                        take(array.as_ref(), &indices, None)?
                    },
                );
            }
        }
        let schema = self.spec.output_schema.clone();
        let columns = crate::operators::aggregate::conform(&schema, columns)?;
        if self.is_changelog() {
            let mut columns = columns;
            columns.push(Arc::new(Int8Array::from(
                pairs.iter().map(|p| p.2).collect::<Vec<_>>(),
            )));
            Ok(Some(RecordBatch::try_new(
                changelog_schema(&schema),
                columns,
            )?))
        } else {
            Ok(Some(RecordBatch::try_new(schema, columns)?))
        }
    }

    /// Both sides' rows with their counts, whole (at a barrier).
    pub fn snapshot(&self) -> Result<StateWrite> {
        let mut write = StateWrite {
            reset: true,
            ..Default::default()
        };
        for (s, side) in self.sides.iter().enumerate() {
            let total: usize = side.state.values().map(|m| m.len()).sum();
            if total == 0 {
                continue;
            }
            let parser = side.rows.parser();
            let mut encoded = side.rows.empty_rows(total, 0);
            let mut counts = Vec::with_capacity(total);
            for per_key in side.state.values() {
                for (row, &count) in per_key {
                    encoded.push(parser.parse(row));
                    counts.push(count);
                }
            }
            let mut columns = side.rows.convert_rows(&encoded)?;
            columns.push(Arc::new(Int64Array::from(counts)));
            let mut fields: Vec<Arc<Field>> =
                self.spec.inputs[s].fields().iter().cloned().collect();
            fields.push(Arc::new(Field::new("__weir_count", DataType::Int64, false)));
            let schema = Arc::new(Schema::new(
                fields
                    .into_iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            ));
            write.put.push((
                SIDE_CHUNKS[s].to_string(),
                RecordBatch::try_new(schema, columns)?,
            ));
        }
        Ok(write)
    }

    /// Rebuild state from a checkpoint's chunks (of every old worker),
    /// keeping the keys that hash to `worker` of `workers`.
    pub fn restore(
        &mut self,
        chunks: &[(String, RecordBatch)],
        worker: usize,
        workers: usize,
    ) -> Result<()> {
        for (id, chunk) in chunks {
            let Some(s) = SIDE_CHUNKS.iter().position(|c| c == id) else {
                return exec_err!("a join chunk of neither side: {id}");
            };
            let n = chunk.num_rows();
            let keys = self.spec.keys[s]
                .iter()
                .map(|k| k.evaluate(chunk)?.into_array(n))
                .collect::<Result<Vec<_>>>()?;
            let Some(mine) = exchange::partition(chunk, &keys, workers)?
                .into_iter()
                .nth(worker)
                .flatten()
            else {
                continue;
            };
            let n = mine.num_rows();
            let width = self.spec.inputs[s].fields().len();
            let keys = self.spec.keys[s]
                .iter()
                .map(|k| k.evaluate(&mine)?.into_array(n))
                .collect::<Result<Vec<_>>>()?;
            let side = &mut self.sides[s];
            let key_rows = side.keys.convert_columns(&keys)?;
            let rows = side.rows.convert_columns(&mine.columns()[..width])?;
            let counts = mine.column(width).as_primitive::<Int64Type>();
            for i in 0..n {
                *side
                    .state
                    .entry(key_rows.row(i).as_ref().into())
                    .or_default()
                    .entry(rows.row(i).as_ref().into())
                    .or_insert(0) += counts.value(i);
            }
        }
        Ok(())
    }
}

/// Chunk ids of the two sides' state.
const SIDE_CHUNKS: [&str; 2] = ["left", "right"];

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::physical_expr::expressions::Column;

    fn spec(kind: JoinKind) -> Arc<JoinSpec> {
        let left = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]));
        let right = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let mut fields: Vec<Field> = left.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(right.fields().iter().map(|f| f.as_ref().clone()));
        Arc::new(JoinSpec {
            kind,
            keys: [
                vec![Arc::new(Column::new("k", 0)) as Arc<dyn PhysicalExpr>],
                vec![Arc::new(Column::new("id", 0)) as Arc<dyn PhysicalExpr>],
            ],
            inputs: [left, right],
            input_changelog: [false, true],
            output_schema: Arc::new(Schema::new(fields)),
        })
    }

    fn left(rows: &[(Option<i64>, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            spec(JoinKind::Inner).inputs[0].clone(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn right(rows: &[(i64, &str, i8)]) -> RecordBatch {
        RecordBatch::try_new(
            changelog_schema(&spec(JoinKind::Inner).inputs[1]),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int8Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn text(batches: Vec<RecordBatch>) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            for r in 0..b.num_rows() {
                let cells: Vec<String> = (0..b.num_columns())
                    .map(|c| {
                        datafusion::arrow::util::display::array_value_to_string(b.column(c), r)
                            .unwrap()
                    })
                    .collect();
                out.push(cells.join(" "));
            }
        }
        out
    }

    #[test]
    fn left_join_pads_and_unpads() {
        let mut join = JoinOperator::new(spec(JoinKind::Left)).unwrap();
        assert_eq!(
            text(
                join.on_batch(0, &left(&[(Some(1), "a"), (None, "n")]))
                    .unwrap()
            ),
            vec!["1 a   1", " n   1"]
        );
        assert_eq!(
            text(join.on_batch(1, &right(&[(1, "one", 1)])).unwrap()),
            vec!["1 a   -1", "1 a 1 one 1"]
        );
        // Through a checkpoint, then the match goes again.
        let write = join.snapshot().unwrap();
        let mut again = JoinOperator::new(spec(JoinKind::Left)).unwrap();
        again.restore(&write.put, 0, 1).unwrap();
        assert_eq!(
            text(again.on_batch(1, &right(&[(1, "one", -1)])).unwrap()),
            vec!["1 a 1 one -1", "1 a   1"]
        );
    }

    #[test]
    fn inner_join_matches_either_order() {
        let mut join = JoinOperator::new(spec(JoinKind::Inner)).unwrap();
        assert!(
            join.on_batch(1, &right(&[(2, "two", 1)]))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            text(
                join.on_batch(0, &left(&[(Some(2), "x"), (Some(3), "y")]))
                    .unwrap()
            ),
            vec!["2 x 2 two 1"]
        );
        assert_eq!(
            text(join.on_batch(1, &right(&[(3, "three", 1)])).unwrap()),
            vec!["3 y 3 three 1"]
        );
    }
}
