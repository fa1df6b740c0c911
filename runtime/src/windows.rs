//! Window math, one implementation for batch and stream.
//!
//! A `SELECT` over a table and a materialized view over a stream must put
//! every row into the same windows. Both call these functions: the batch path
//! through the scalar UDFs registered here (`weir_hop_starts`,
//! `weir_cumulate_ends`), the streaming operators directly.
//!
//! Times are nanoseconds since the epoch; windows are aligned to the epoch
//! (as Flink and `date_bin` with its default origin align them).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, ListArray, PrimitiveArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, TimeUnit, TimestampNanosecondType};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The start of the tumbling window of `size` that holds `t`.
pub fn tumble_start(t: i64, size: i64) -> i64 {
    t - t.rem_euclid(size)
}

/// The starts of the hopping windows (`slide`, `size`) that hold `t`, oldest first.
pub fn hop_starts(t: i64, slide: i64, size: i64, out: &mut Vec<i64>) {
    out.clear();
    let last = tumble_start(t, slide);
    let mut start = last - ((size - 1) / slide) * slide;
    while start <= last {
        if start + size > t {
            out.push(start);
        }
        start += slide;
    }
}

/// The ends of the cumulating windows (`step`, `size`) that hold `t`: every
/// step end after `t` up to the end of its `size` window.
pub fn cumulate_ends(t: i64, step: i64, size: i64, out: &mut Vec<i64>) {
    out.clear();
    let start = tumble_start(t, size);
    let mut end = tumble_start(t, step) + step;
    while end <= start + size {
        out.push(end);
        end += step;
    }
}

/// Nanoseconds of a timestamp array's unit.
pub fn nanos_per_unit(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// A timestamp column as nanoseconds (`None` for NULL).
pub fn timestamps_as_nanos(array: &ArrayRef) -> Result<PrimitiveArray<TimestampNanosecondType>> {
    match array.data_type() {
        DataType::Timestamp(_, _) => {
            let nanos = cast(array, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
            Ok(nanos.as_primitive::<TimestampNanosecondType>().clone())
        }
        other => exec_err!("an event-time column must be a TIMESTAMP, not {other}"),
    }
}

/// Register the window UDFs on a DataFusion context, and the processing
/// time a window over `PROCTIME()` is computed from (`crate::proctime`).
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    crate::proctime::register(ctx);
    ctx.register_udf(ScalarUDF::new_from_impl(WindowList::hop()));
    ctx.register_udf(ScalarUDF::new_from_impl(WindowList::cumulate()));
    ctx.register_udf(ScalarUDF::new_from_impl(EpochNanos::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(WindowBound::new(
        "weir_window_start",
        0,
    )));
    ctx.register_udf(ScalarUDF::new_from_impl(WindowBound::new(
        "weir_window_end",
        1,
    )));
    ctx.register_udf(ScalarUDF::new_from_impl(WindowBound::new(
        "weir_add_nanos",
        2,
    )));
}

/// `weir_window_start(ts, size_ns)`, `weir_window_end(ts, size_ns)`: the
/// tumbling window bounds of `ts`; `weir_add_nanos(ts, n)`: `ts + n` ns. All
/// integer arithmetic on the timestamp's own unit, with no calendar
/// involved (an interval with months would need one; windows never have
/// months).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowBound {
    name: &'static str,
    /// 0: start, 1: end, 2: plain addition.
    kind: u8,
    signature: Signature,
}

impl WindowBound {
    fn new(name: &'static str, kind: u8) -> Self {
        Self {
            name,
            kind,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for WindowBound {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            ts @ DataType::Timestamp(_, _) => Ok(ts.clone()),
            other => plan_err!(
                "{}: the time column must be a TIMESTAMP, not {other}",
                self.name
            ),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let size = constant_i64(&args.args[1], "the window size")?;
        let input = args.args[0].to_array(args.number_rows)?;
        let DataType::Timestamp(unit, tz) = input.data_type().clone() else {
            return exec_err!("{}: the time column must be a TIMESTAMP", self.name);
        };
        let per = nanos_per_unit(unit);
        if size % per != 0 {
            return exec_err!(
                "{}: the size is finer than the column's time unit",
                self.name
            );
        }
        let size = size / per;
        // Same bits, viewed as plain integers in the column's unit.
        let raw = cast(&input, &DataType::Int64)?;
        let raw = raw.as_primitive::<Int64Type>();
        let out: Int64Array = match self.kind {
            0 => raw.unary(|t| tumble_start(t, size)),
            1 => raw.unary(|t| tumble_start(t, size) + size),
            _ => raw.unary(|t| t + size),
        };
        let out: ArrayRef = Arc::new(out);
        Ok(ColumnarValue::Array(cast(
            &out,
            &DataType::Timestamp(unit, tz),
        )?))
    }
}

/// `weir_epoch_nanos(ts)`: a timestamp of any unit as nanoseconds since the
/// epoch (BIGINT), so session gaps compare exactly whatever the column's unit.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct EpochNanos {
    signature: Signature,
}

impl EpochNanos {
    fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for EpochNanos {
    fn name(&self) -> &str {
        "weir_epoch_nanos"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let nanos = timestamps_as_nanos(&input)?;
        let values: Int64Array = nanos.iter().collect();
        Ok(ColumnarValue::Array(Arc::new(values)))
    }
}

/// `weir_hop_starts(ts, slide_ns, size_ns)` and
/// `weir_cumulate_ends(ts, step_ns, size_ns)`: the list of window bounds a
/// row falls in, as timestamps of the input's type (for `unnest`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowList {
    name: &'static str,
    hop: bool,
    signature: Signature,
}

impl WindowList {
    fn hop() -> Self {
        Self {
            name: "weir_hop_starts",
            hop: true,
            signature: Signature::any(3, Volatility::Immutable),
        }
    }

    fn cumulate() -> Self {
        Self {
            name: "weir_cumulate_ends",
            hop: false,
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

fn constant_i64(value: &ColumnarValue, what: &str) -> Result<i64> {
    match value {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(v))) if *v > 0 => Ok(*v),
        _ => exec_err!("{what} must be a positive constant"),
    }
}

impl ScalarUDFImpl for WindowList {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            ts @ DataType::Timestamp(_, _) => Ok(DataType::new_list(ts.clone(), true)),
            other => plan_err!(
                "{}: the time column must be a TIMESTAMP, not {other}",
                self.name
            ),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let step = constant_i64(&args.args[1], "the window slide or step")?;
        let size = constant_i64(&args.args[2], "the window size")?;
        if size % step != 0 {
            return exec_err!("the window size must be a multiple of its slide or step");
        }
        let input = args.args[0].to_array(args.number_rows)?;
        let DataType::Timestamp(unit, tz) = input.data_type().clone() else {
            return exec_err!("{}: the time column must be a TIMESTAMP", self.name);
        };
        let per = nanos_per_unit(unit);
        let nanos = timestamps_as_nanos(&input)?;
        let mut offsets = vec![0i32];
        let mut values: Vec<i64> = Vec::with_capacity(nanos.len() * (size / step) as usize);
        let mut bounds = Vec::new();
        for i in 0..nanos.len() {
            if nanos.is_valid(i) {
                if self.hop {
                    hop_starts(nanos.value(i), step, size, &mut bounds);
                } else {
                    cumulate_ends(nanos.value(i), step, size, &mut bounds);
                }
                values.extend(bounds.iter().map(|b| b / per));
            }
            offsets.push(values.len() as i32);
        }
        let values: ArrayRef = Arc::new(Int64Array::from(values));
        let values = cast(&values, &DataType::Timestamp(unit, tz.clone()))?;
        let field = Arc::new(Field::new_list_field(DataType::Timestamp(unit, tz), true));
        let list = ListArray::try_new(field, OffsetBuffer::new(offsets.into()), values, None)?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

/// Parse an interval literal's text (`'10 seconds'`, `'1 minute'`) into
/// nanoseconds. Months and years have no fixed length and are refused.
pub fn interval_nanos(text: &str) -> Result<i64> {
    use datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano;
    let interval = parse_interval_month_day_nano(text)?;
    if interval.months != 0 {
        return plan_err!("a window or watermark interval cannot use months or years: '{text}'");
    }
    let nanos = i64::from(interval.days) * 86_400_000_000_000 + interval.nanoseconds;
    if nanos <= 0 {
        return plan_err!("an interval here must be positive: '{text}'");
    }
    Ok(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_hold_their_rows() {
        assert_eq!(tumble_start(25, 10), 20);
        assert_eq!(tumble_start(-5, 10), -10);
        let mut out = Vec::new();
        hop_starts(25, 5, 15, &mut out);
        assert_eq!(out, vec![15, 20, 25]);
        hop_starts(20, 5, 15, &mut out);
        assert_eq!(out, vec![10, 15, 20]);
        cumulate_ends(25, 10, 30, &mut out);
        assert_eq!(out, vec![30]);
        cumulate_ends(5, 10, 30, &mut out);
        assert_eq!(out, vec![10, 20, 30]);
    }

    #[test]
    fn intervals_in_nanoseconds() {
        assert_eq!(interval_nanos("10 seconds").expect("parse"), 10_000_000_000);
        assert_eq!(interval_nanos("1 minute").expect("parse"), 60_000_000_000);
        assert!(interval_nanos("1 month").is_err());
    }
}
