//! Processing time: the wall clock as rows enter a job.
//!
//! A processing-time window (`TUMBLE(bid, PROCTIME(), INTERVAL '10 seconds')`)
//! puts each row in the window of the moment its source partition read it.
//! The planner stamps the rows with `weir_proctime()` in the source's
//! stateless operators, so the stamp is taken in the source task, before any
//! exchange; the source task then sends the clock itself as the watermark,
//! after each batch and on a timer, so that a window closes about its size
//! after it opened even when no rows come (`job/source_task.rs`).
//!
//! # Correctness
//! Both the stamps and the watermarks come from [`now`], which never goes
//! back within the process: a stamp taken after a watermark is at or after
//! it, so no row is ever behind a processing-time watermark (none is late),
//! whatever the wall clock does (an NTP step back holds the clock still
//! until the wall clock catches up).

use std::sync::atomic::{AtomicI64, Ordering};

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The name of the stamping function the planner calls in a view's query.
pub const FUNCTION: &str = "weir_proctime";

/// The highest time [`now`] returned in this process.
static LAST: AtomicI64 = AtomicI64::new(i64::MIN);

/// The processing time now: nanoseconds since the Unix epoch (UTC), never
/// less than any earlier answer in this process.
pub fn now() -> i64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    LAST.fetch_max(wall, Ordering::AcqRel).max(wall)
}

/// Let the clock not go below `time` from now on: a job restored from a
/// checkpoint whose watermark was `time` (taken by a clock that was ahead
/// of this one) stamps its rows at or after it, so none is late.
pub fn at_least(time: i64) {
    LAST.fetch_max(time, Ordering::AcqRel);
}

/// Register `weir_proctime()` on a DataFusion context.
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(ProcTime::new()));
}

/// `weir_proctime()`: [`now`] as a `TIMESTAMP` (nanoseconds, UTC), one value
/// for the whole batch it is computed for. Volatile, so that DataFusion
/// never folds it into a constant at planning time (as it does `now()`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ProcTime {
    signature: Signature,
}

impl ProcTime {
    fn new() -> Self {
        Self {
            signature: Signature::nullary(Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for ProcTime {
    fn name(&self) -> &str {
        FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Nanosecond, None))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(
            Some(now()),
            None,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_goes_back() {
        let first = now();
        // A restored watermark ahead of the wall clock holds it there (a
        // millisecond ahead: the clock is the whole process's).
        at_least(first + 1_000_000);
        let second = now();
        assert!(
            second >= first + 1_000_000,
            "{second} behind the restored watermark"
        );
        assert!(now() >= second, "the clock went back");
    }
}
