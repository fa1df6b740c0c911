//! Postgres system functions that clients call and that neither DataFusion
//! nor `datafusion-pg-catalog` provide (or provide with a value that breaks
//! clients, like DataFusion's own `version()`).
//!
//! Each answers with a constant: Weir has no comments on objects, no
//! replication, no indexes; the answer a Postgres server with none of those
//! would give is the right one.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

/// What `version()` says: Postgres-shaped, so drivers that parse it
/// (SQLAlchemy, JDBC) read a version they support.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {} (Weir {}) on {}-linux, compiled by rustc",
        crate::PG_SERVER_VERSION,
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

/// Register the functions on `ctx`, replacing same-named ones.
pub fn register(ctx: &SessionContext) {
    let text =
        |name: &'static str, value: Option<String>| Constant::new(name, ScalarValue::Utf8(value));
    let functions = [
        text("version", Some(version_string())),
        text("obj_description", None),
        text("col_description", None),
        text("shobj_description", None),
        text("pg_get_viewdef", None),
        text("pg_get_indexdef", None),
        text("pg_get_triggerdef", None),
        text("pg_get_function_identity_arguments", None),
        text("pg_get_serial_sequence", None),
        text("inet_server_addr", Some("127.0.0.1".to_string())),
        Constant::new("pg_is_in_recovery", ScalarValue::Boolean(Some(false))),
        Constant::new("pg_postmaster_start_time", ScalarValue::Utf8(None)),
        Constant::new("txid_current", ScalarValue::Int64(Some(1))),
    ];
    for f in functions {
        ctx.register_udf(ScalarUDF::new_from_impl(f));
    }
}

/// A function of any arguments that returns one constant.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: &'static str,
    value: ScalarValue,
    signature: Signature,
}

impl Constant {
    fn new(name: &'static str, value: ScalarValue) -> Self {
        Self {
            name,
            value,
            signature: Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
                Volatility::Stable,
            ),
        }
    }
}

impl ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}
