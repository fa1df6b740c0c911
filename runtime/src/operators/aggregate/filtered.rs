//! `FILTER (WHERE ..)` on one aggregate: the condition is evaluated with the
//! aggregate's arguments (`shared::Base::evaluate` adds it as their last
//! column, a boolean mask), and only the rows where it holds reach the
//! accumulator, for updates and retractions alike.
//!
//! A wrapper rather than a change in each operator: the three aggregate
//! operators pick rows per group and hand each accumulator its columns, so
//! a mask that travels with those columns is filtered with them, whatever
//! rows were picked. The vectorized accumulators of the window aggregate
//! take the mask as their own `opt_filter` instead (see `window.rs`). Its
//! state is the inner accumulator's: the mask is not kept, so a checkpoint's
//! layout does not change.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::filter;
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::Accumulator;

/// An accumulator that sees only the rows its mask (the last input column)
/// keeps. A NULL condition keeps no row, as in SQL.
#[derive(Debug)]
pub(super) struct Filtered {
    inner: Box<dyn Accumulator>,
}

impl Filtered {
    /// `inner`, behind its aggregate's FILTER.
    pub(super) fn new(inner: Box<dyn Accumulator>) -> Self {
        Self { inner }
    }
}

/// The argument columns and the mask, split.
pub(super) fn split_mask(values: &[ArrayRef]) -> Result<(&[ArrayRef], &BooleanArray)> {
    let Some((mask, arguments)) = values.split_last() else {
        return internal_err!("a filtered aggregate got no mask column");
    };
    let Some(mask) = mask.as_boolean_opt() else {
        return internal_err!(
            "a filtered aggregate's mask is {}, not boolean",
            mask.data_type()
        );
    };
    Ok((arguments, mask))
}

/// The rows of `values` (arguments then mask) that the mask keeps, or
/// `None` when it keeps none.
fn kept(values: &[ArrayRef]) -> Result<Option<Vec<ArrayRef>>> {
    let (arguments, mask) = split_mask(values)?;
    if mask.true_count() == 0 {
        return Ok(None);
    }
    if mask.true_count() == mask.len() && mask.null_count() == 0 {
        return Ok(Some(arguments.to_vec()));
    }
    Ok(Some(
        arguments
            .iter()
            .map(|a| Ok(filter(a, mask)?))
            .collect::<Result<_>>()?,
    ))
}

impl Accumulator for Filtered {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match kept(values)? {
            Some(kept) => self.inner.update_batch(&kept),
            None => Ok(()),
        }
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match kept(values)? {
            Some(kept) => self.inner.retract_batch(&kept),
            None => Ok(()),
        }
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.inner.evaluate()
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.inner.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::Column;

    use super::*;

    fn sum() -> Box<dyn Accumulator> {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        AggregateExprBuilder::new(sum_udaf(), vec![Arc::new(Column::new("v", 0))])
            .schema(schema)
            .alias("s")
            .build()
            .expect("a sum")
            .create_accumulator()
            .expect("a sum accumulator")
    }

    #[test]
    fn only_rows_the_mask_keeps_are_added_and_retracted() {
        let mut acc = Filtered::new(sum());
        let values: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 4, 8]));
        let mask: ArrayRef = Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
        ]));
        acc.update_batch(&[values, mask]).expect("update");
        assert_eq!(acc.evaluate().expect("sum"), ScalarValue::Int64(Some(9)));
        let none: ArrayRef = Arc::new(BooleanArray::from(vec![false]));
        acc.update_batch(&[Arc::new(Int64Array::from(vec![100])), none])
            .expect("an update that keeps nothing");
        assert_eq!(acc.evaluate().expect("sum"), ScalarValue::Int64(Some(9)));
    }
}
