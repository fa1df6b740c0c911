//! Accumulators that take retractions in any order, for aggregates over an
//! updating input (a table with a primary key: its UPDATEs and DELETEs
//! arrive as rows with op -1).
//!
//! DataFusion's own `retract_batch` exists for sliding window frames, which
//! retract the oldest rows first: its MIN and MAX keep a monotonic queue
//! that is wrong for any other order, and its SUM's state has a column its
//! `state_fields` do not declare, so a checkpoint could not hold it. These
//! keep exact state (sums with their non-null counts, a multiset of values
//! for MIN, MAX and COUNT(DISTINCT)) and declare the fields of that state.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, ListArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Field, FieldRef, Float64Type, Int64Type,
};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

/// The aggregates that can retract, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
}

/// How a sum is kept: exactly for integers and decimals, as f64 for floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    Int,
    Decimal { scale: i8 },
    Float,
}

/// Why `aggregate` cannot run over an updating input, if it cannot.
pub fn unsupported(aggregate: &AggregateFunctionExpr) -> Option<String> {
    kind(aggregate).err()
}

fn kind(aggregate: &AggregateFunctionExpr) -> std::result::Result<Kind, String> {
    let name = aggregate.fun().name().to_ascii_lowercase();
    let args = aggregate.expressions();
    if args.len() != 1 {
        return Err(format!("{name} with {} arguments", args.len()));
    }
    let kind = match (name.as_str(), aggregate.is_distinct()) {
        ("count", false) => Kind::Count,
        ("count", true) => Kind::CountDistinct,
        ("sum", false) => Kind::Sum,
        ("avg" | "mean", false) => Kind::Avg,
        ("min", _) => Kind::Min,
        ("max", _) => Kind::Max,
        (other, true) => return Err(format!("{other}(DISTINCT ...)")),
        (other, false) => return Err(other.to_string()),
    };
    Ok(kind)
}

fn number(data_type: &DataType) -> Option<Number> {
    match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => Some(Number::Int),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => Some(Number::Float),
        DataType::Decimal128(_, scale) => Some(Number::Decimal { scale: *scale }),
        _ => None,
    }
}

/// A retracting accumulator for `aggregate`, whose argument has type
/// `input`.
pub fn accumulator(
    aggregate: &AggregateFunctionExpr,
    input: &DataType,
) -> Result<Box<dyn Accumulator>> {
    let kind = match kind(aggregate) {
        Ok(k) => k,
        Err(why) => return exec_err!("{why} cannot retract rows"),
    };
    let number = match kind {
        Kind::Sum | Kind::Avg => match number(input) {
            Some(n) => Some(n),
            None => {
                return exec_err!(
                    "{} over {input} cannot retract rows",
                    aggregate.fun().name()
                );
            }
        },
        _ => None,
    };
    Ok(Box::new(Retracting {
        kind,
        number,
        input: input.clone(),
        output: aggregate.field().data_type().clone(),
        nonnull: 0,
        int_sum: 0,
        float_sum: 0.0,
        values: BTreeMap::new(),
    }))
}

/// The fields of a retracting accumulator's state.
pub fn state_fields(aggregate: &AggregateFunctionExpr, input: &DataType) -> Result<Vec<FieldRef>> {
    let kind = match kind(aggregate) {
        Ok(k) => k,
        Err(why) => return exec_err!("{why} cannot retract rows"),
    };
    let name = aggregate.name();
    let field =
        |suffix: &str, t: DataType| Arc::new(Field::new(format!("{name}[{suffix}]"), t, true));
    Ok(match kind {
        Kind::Count => vec![field("count", DataType::Int64)],
        Kind::Sum | Kind::Avg => vec![
            field("count", DataType::Int64),
            field("int_sum", DataType::Decimal128(38, 0)),
            field("float_sum", DataType::Float64),
        ],
        Kind::CountDistinct | Kind::Min | Kind::Max => vec![
            field("values", DataType::new_list(input.clone(), true)),
            field("counts", DataType::new_list(DataType::Int64, true)),
        ],
    })
}

/// A value ordered by SQL's comparison, for the multisets of MIN and MAX.
#[derive(Debug, Clone, PartialEq)]
struct Ordered(ScalarValue);

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Values of one column have one type, so they always compare; NaN
        // ties, as it would sort anywhere.
        self.0
            .partial_cmp(&other.0)
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

#[derive(Debug)]
struct Retracting {
    kind: Kind,
    number: Option<Number>,
    input: DataType,
    output: DataType,
    /// Non-null values counted (COUNT, and the row count of SUM and AVG).
    nonnull: i64,
    int_sum: i128,
    float_sum: f64,
    /// Value -> how many times it is in the group (MIN, MAX, DISTINCT).
    values: BTreeMap<Ordered, i64>,
}

impl Retracting {
    fn add(&mut self, values: &ArrayRef, sign: i64) -> Result<()> {
        let array = values;
        match self.kind {
            Kind::Count => {
                self.nonnull += sign * (array.len() - array.logical_null_count()) as i64;
            }
            Kind::Sum | Kind::Avg => {
                self.nonnull += sign * (array.len() - array.logical_null_count()) as i64;
                match self.number {
                    Some(Number::Int) => {
                        let ints = cast(array, &DataType::Int64)?;
                        for v in ints.as_primitive::<Int64Type>().iter().flatten() {
                            self.int_sum += sign as i128 * v as i128;
                        }
                    }
                    Some(Number::Decimal { .. }) => {
                        for v in array.as_primitive::<Decimal128Type>().iter().flatten() {
                            self.int_sum += sign as i128 * v;
                        }
                    }
                    _ => {
                        let floats = cast(array, &DataType::Float64)?;
                        for v in floats.as_primitive::<Float64Type>().iter().flatten() {
                            self.float_sum += sign as f64 * v;
                        }
                    }
                }
            }
            Kind::CountDistinct | Kind::Min | Kind::Max => {
                for row in 0..array.len() {
                    if array.is_null(row) {
                        continue;
                    }
                    let value = Ordered(ScalarValue::try_from_array(array, row)?);
                    let count = self.values.entry(value.clone()).or_insert(0);
                    *count += sign;
                    if *count == 0 {
                        self.values.remove(&value);
                    }
                }
            }
        }
        Ok(())
    }

    fn live(&self) -> impl DoubleEndedIterator<Item = &ScalarValue> {
        self.values
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(value, _)| &value.0)
    }
}

impl Accumulator for Retracting {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0], 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0], -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let value = match self.kind {
            Kind::Count => ScalarValue::Int64(Some(self.nonnull)),
            Kind::CountDistinct => ScalarValue::Int64(Some(self.live().count() as i64)),
            Kind::Min => self.live().next().cloned().unwrap_or(ScalarValue::Null),
            Kind::Max => self
                .live()
                .next_back()
                .cloned()
                .unwrap_or(ScalarValue::Null),
            Kind::Sum | Kind::Avg if self.nonnull <= 0 => ScalarValue::Null,
            Kind::Sum => match self.number {
                Some(Number::Int) => ScalarValue::Decimal128(Some(self.int_sum), 38, 0),
                Some(Number::Decimal { scale }) => {
                    ScalarValue::Decimal128(Some(self.int_sum), 38, scale)
                }
                _ => ScalarValue::Float64(Some(self.float_sum)),
            },
            Kind::Avg => match (self.number, &self.output) {
                (Some(Number::Decimal { scale }), DataType::Decimal128(p, s)) => {
                    let up = 10i128.pow((*s - scale).max(0) as u32);
                    let n = self.nonnull as i128;
                    let scaled = self.int_sum * up;
                    // Round half away from zero, as Postgres does.
                    let q = (scaled + scaled.signum() * n / 2) / n;
                    ScalarValue::Decimal128(Some(q), *p, *s)
                }
                (Some(Number::Int), _) => {
                    ScalarValue::Float64(Some(self.int_sum as f64 / self.nonnull as f64))
                }
                _ => ScalarValue::Float64(Some(self.float_sum / self.nonnull as f64)),
            },
        };
        if value.is_null() {
            return ScalarValue::try_from(&self.output);
        }
        if value.data_type() == self.output {
            Ok(value)
        } else {
            value.cast_to(&self.output)
        }
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(match self.kind {
            Kind::Count => vec![ScalarValue::Int64(Some(self.nonnull))],
            Kind::Sum | Kind::Avg => vec![
                ScalarValue::Int64(Some(self.nonnull)),
                ScalarValue::Decimal128(Some(self.int_sum), 38, 0),
                ScalarValue::Float64(Some(self.float_sum)),
            ],
            Kind::CountDistinct | Kind::Min | Kind::Max => {
                let values: Vec<ScalarValue> = self.values.keys().map(|v| v.0.clone()).collect();
                let counts: Vec<ScalarValue> = self
                    .values
                    .values()
                    .map(|&c| ScalarValue::Int64(Some(c)))
                    .collect();
                vec![
                    ScalarValue::List(ScalarValue::new_list_nullable(&values, &self.input)),
                    ScalarValue::List(ScalarValue::new_list_nullable(&counts, &DataType::Int64)),
                ]
            }
        })
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        match self.kind {
            Kind::Count => {
                for v in states[0].as_primitive::<Int64Type>().iter().flatten() {
                    self.nonnull += v;
                }
            }
            Kind::Sum | Kind::Avg => {
                let counts = states[0].as_primitive::<Int64Type>();
                let ints = cast(&states[1], &DataType::Decimal128(38, 0))?;
                let ints = ints.as_primitive::<Decimal128Type>();
                let floats = states[2].as_primitive::<Float64Type>();
                for row in 0..counts.len() {
                    if counts.is_null(row) {
                        continue;
                    }
                    self.nonnull += counts.value(row);
                    self.int_sum += ints.value(row);
                    self.float_sum += floats.value(row);
                }
            }
            Kind::CountDistinct | Kind::Min | Kind::Max => {
                let values: &ListArray = states[0].as_list::<i32>();
                let counts: &ListArray = states[1].as_list::<i32>();
                for row in 0..values.len() {
                    if values.is_null(row) {
                        continue;
                    }
                    let v = values.value(row);
                    let c = counts.value(row);
                    let c = c.as_any().downcast_ref::<Int64Array>().ok_or_else(|| {
                        datafusion::common::DataFusionError::Internal("counts".into())
                    })?;
                    for i in 0..v.len() {
                        let value = Ordered(ScalarValue::try_from_array(&v, i)?);
                        let count = self.values.entry(value.clone()).or_insert(0);
                        *count += c.value(i);
                        if *count == 0 {
                            self.values.remove(&value);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.len() * 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;

    fn retracting(kind: Kind, input: DataType, output: DataType) -> Retracting {
        Retracting {
            kind,
            number: number(&input),
            input,
            output,
            nonnull: 0,
            int_sum: 0,
            float_sum: 0.0,
            values: BTreeMap::new(),
        }
    }

    fn ints(v: &[i32]) -> ArrayRef {
        Arc::new(Int32Array::from(v.to_vec()))
    }

    #[test]
    fn max_retracts_in_any_order() {
        let mut max = retracting(Kind::Max, DataType::Int32, DataType::Int32);
        max.update_batch(&[ints(&[3, 9, 5, 9])]).unwrap();
        max.retract_batch(&[ints(&[9])]).unwrap();
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int32(Some(9)));
        max.retract_batch(&[ints(&[9, 3])]).unwrap();
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int32(Some(5)));
        // Through a checkpoint.
        let state: Vec<ArrayRef> = max
            .state()
            .unwrap()
            .iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        let mut again = retracting(Kind::Max, DataType::Int32, DataType::Int32);
        again.merge_batch(&state).unwrap();
        again.retract_batch(&[ints(&[5])]).unwrap();
        assert_eq!(again.evaluate().unwrap(), ScalarValue::Int32(None));
    }

    #[test]
    fn sum_is_null_once_every_value_is_retracted() {
        let mut sum = retracting(Kind::Sum, DataType::Int32, DataType::Int64);
        sum.update_batch(&[ints(&[1, 2])]).unwrap();
        assert_eq!(sum.evaluate().unwrap(), ScalarValue::Int64(Some(3)));
        sum.retract_batch(&[ints(&[1, 2])]).unwrap();
        assert_eq!(sum.evaluate().unwrap(), ScalarValue::Int64(None));
    }
}
