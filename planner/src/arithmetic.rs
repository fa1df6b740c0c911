//! Arithmetic that errors where Postgres errors: integer overflow in `+`,
//! `-` and `*`, and a float divided by zero in `/` and `%`.
//!
//! DataFusion's operators wrap on integer overflow (`9223372036854775807 + 1`
//! is `-9223372036854775808`) and give `Infinity` or `NaN` for a float
//! divided by zero. Its physical `BinaryExpr` has a checked mode, but no
//! setting turns it on, and constant folding evaluates literals without it.
//! So an analyzer rule, [`CheckedArithmetic`], replaces those operators, where
//! their operands have one of those types, by calls of a function that uses
//! arrow's checked kernels (and checks divisors for zero). The calls are
//! named as the operator (`a + b`), so column names stay as they were;
//! EXPLAIN shows them as `weir_checked(+)(a, b)`.
//! Integer and decimal division by zero already fail in arrow's kernels.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Datum, Scalar};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule: checked arithmetic in every plan.
#[derive(Debug, Default)]
pub struct CheckedArithmetic;

impl AnalyzerRule for CheckedArithmetic {
    fn name(&self) -> &str {
        "weir_checked_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let schema = merge_schema(&plan.inputs());
            // A rewritten expression keeps the name its node's schema has.
            let names = NamePreserver::new(&plan);
            plan.map_expressions(|expr| {
                let saved = names.save(&expr);
                expr.transform_up(|e| checked(e, &schema))
                    .map(|t| t.update_data(|e| saved.restore(e)))
            })
        })
        .map(|t| t.data)
    }
}

/// `left op right` as a checked call, when it needs one.
fn checked(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let (Ok(left_type), Ok(right_type)) = (left.get_type(schema), right.get_type(schema)) else {
        return Ok(Transformed::no(expr));
    };
    let needed = match op {
        Operator::Plus | Operator::Minus | Operator::Multiply => {
            left_type.is_integer() && right_type.is_integer()
        }
        Operator::Divide | Operator::Modulo => left_type.is_floating() && right_type.is_floating(),
        _ => false,
    };
    if !needed || left_type != right_type {
        // Type coercion gives both sides one type; anything else (a date
        // and an interval) is not ours to check.
        return Ok(Transformed::no(expr));
    }
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        unreachable!("matched above");
    };
    let function = Arc::new(ScalarUDF::new_from_impl(CheckedOperator::new(op)));
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(function, vec![*left, *right]),
    )))
}

/// `left op right` with arrow's checked kernels.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedOperator {
    op: Operator,
    name: String,
    signature: Signature,
}

impl CheckedOperator {
    fn new(op: Operator) -> Self {
        Self {
            op,
            name: format!("weir_checked({op})"),
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CheckedOperator {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    /// Named as the operator it stands for: `a + b`.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(format!(
            "{} {} {}",
            args[0].schema_name(),
            self.op,
            args[1].schema_name()
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(format!(
                "{} takes two arguments",
                self.name
            )));
        };
        let scalar = matches!(
            (left, right),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let (left, right) = (datum(left)?, datum(right)?);
        let result = match self.op {
            Operator::Plus => numeric::add(left.as_ref(), right.as_ref()),
            Operator::Minus => numeric::sub(left.as_ref(), right.as_ref()),
            Operator::Multiply => numeric::mul(left.as_ref(), right.as_ref()),
            Operator::Divide => {
                refuse_zero(right.as_ref())?;
                numeric::div(left.as_ref(), right.as_ref())
            }
            Operator::Modulo => {
                refuse_zero(right.as_ref())?;
                numeric::rem(left.as_ref(), right.as_ref())
            }
            other => {
                return Err(DataFusionError::Internal(format!(
                    "no checked form of {other}"
                )));
            }
        }
        .map_err(|err| out_of_range(err, args.return_field.data_type()))?;
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

fn datum(value: &ColumnarValue) -> Result<Box<dyn Datum>> {
    Ok(match value {
        ColumnarValue::Array(array) => Box::new(array.clone()),
        ColumnarValue::Scalar(scalar) => Box::new(Scalar::new(scalar.to_array()?)),
    })
}

/// A float divisor of zero is an error in Postgres, not `Infinity`.
fn refuse_zero(divisor: &dyn Datum) -> Result<()> {
    let (array, _) = divisor.get();
    let floats: ArrayRef = cast(array, &DataType::Float64)?;
    if floats
        .as_primitive::<Float64Type>()
        .iter()
        .any(|v| v == Some(0.0))
    {
        return Err(DataFusionError::ArrowError(
            Box::new(ArrowError::DivideByZero),
            None,
        ));
    }
    Ok(())
}

/// Arrow says "Overflow happened on: 9223372036854775807 + 1"; Postgres
/// says "bigint out of range".
fn out_of_range(err: ArrowError, data_type: &DataType) -> DataFusionError {
    let err = match err {
        ArrowError::ArithmeticOverflow(_) => {
            let name = match data_type {
                DataType::Int16 => "smallint".to_string(),
                DataType::Int32 => "integer".to_string(),
                DataType::Int64 => "bigint".to_string(),
                other => other.to_string().to_lowercase(),
            };
            ArrowError::ArithmeticOverflow(format!("{name} out of range"))
        }
        other => other,
    };
    DataFusionError::ArrowError(Box::new(err), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn run(sql: &str) -> Result<String> {
        let ctx = SessionContext::new();
        ctx.add_analyzer_rule(Arc::new(CheckedArithmetic));
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
    }

    #[tokio::test]
    async fn integer_overflow_is_an_error() {
        for sql in [
            "SELECT 9223372036854775807 + 1",
            "SELECT -9223372036854775807 - 10",
            "SELECT 4611686018427387904 * 2",
            "SELECT a + 1 FROM (VALUES (CAST(9223372036854775807 AS BIGINT))) AS t(a)",
        ] {
            let err = run(sql).await.expect_err(sql);
            assert!(
                matches!(err.find_root(), DataFusionError::ArrowError(e, _) if matches!(**e, ArrowError::ArithmeticOverflow(_))),
                "{sql}: {err:?}"
            );
        }
        let ok = run("SELECT 9223372036854775806 + 1 AS x")
            .await
            .expect("fits");
        assert!(ok.contains("9223372036854775807"), "{ok}");
    }

    #[tokio::test]
    async fn float_division_by_zero_is_an_error() {
        for sql in [
            "SELECT 1.0 / 0",
            "SELECT 5.5 % 0.0",
            "SELECT a / 0.0 FROM (VALUES (1.0)) AS t(a)",
        ] {
            let err = run(sql).await.expect_err(sql);
            assert!(
                matches!(err.find_root(), DataFusionError::ArrowError(e, _) if matches!(**e, ArrowError::DivideByZero)),
                "{sql}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn names_are_those_of_the_operators() {
        let ctx = SessionContext::new();
        ctx.add_analyzer_rule(Arc::new(CheckedArithmetic));
        let df = ctx
            .sql("SELECT a + 1, a * a FROM (VALUES (1)) AS t(a)")
            .await
            .expect("plan");
        let batches = df.collect().await.expect("run");
        let names: Vec<String> = batches[0]
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["t.a + Int64(1)", "t.a * t.a"]);
    }
}
