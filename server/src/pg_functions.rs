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
        Constant::new("pg_collation_is_visible", ScalarValue::Boolean(Some(true))),
        Constant::new("pg_type_is_visible", ScalarValue::Boolean(Some(true))),
        Constant::new("pg_function_is_visible", ScalarValue::Boolean(Some(true))),
        Constant::new("pg_postmaster_start_time", ScalarValue::Utf8(None)),
        Constant::new("txid_current", ScalarValue::Int64(Some(1))),
    ];
    for f in functions {
        ctx.register_udf(ScalarUDF::new_from_impl(f));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(ToRegtype::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject::new()));
}

/// `json_build_object(key, value, ...)`: a JSON object as text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{Array, StringArray};
        use datafusion::arrow::compute::cast;
        if !args.args.len().is_multiple_of(2) {
            return datafusion::common::plan_err!(
                "json_build_object() needs an even number of arguments"
            );
        }
        let rows = args.number_rows;
        let columns = args
            .args
            .iter()
            .map(|a| {
                let array = a.to_array(rows)?;
                let numeric =
                    array.data_type().is_numeric() || *array.data_type() == DataType::Boolean;
                let text = cast(&array, &DataType::Utf8)?;
                Ok((text, numeric))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in columns.chunks(2) {
                let key = pair[0].0.as_any().downcast_ref::<StringArray>();
                let value = pair[1].0.as_any().downcast_ref::<StringArray>();
                let (Some(key), Some(value)) = (key, value) else {
                    continue;
                };
                let k = if key.is_null(row) {
                    "null".to_string()
                } else {
                    key.value(row).to_string()
                };
                let v = if value.is_null(row) {
                    serde_json::Value::Null
                } else if pair[1].1 {
                    serde_json::from_str(value.value(row))
                        .unwrap_or_else(|_| serde_json::Value::String(value.value(row).to_string()))
                } else {
                    serde_json::Value::String(value.value(row).to_string())
                };
                object.insert(k, v);
            }
            out.push(Some(serde_json::Value::Object(object).to_string()));
        }
        Ok(ColumnarValue::Array(std::sync::Arc::new(
            StringArray::from(out),
        )))
    }
}

/// `to_regtype(name)`: the OID of a built-in type, NULL for an unknown name
/// (drivers probe for extension types such as `hstore` this way).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToRegtype {
    signature: Signature,
}

impl ToRegtype {
    fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Stable),
        }
    }
}

/// Built-in type names (and their SQL spellings) and OIDs.
const TYPE_OIDS: &[(&str, i32)] = &[
    ("bool", 16),
    ("boolean", 16),
    ("bytea", 17),
    ("char", 18),
    ("name", 19),
    ("int8", 20),
    ("bigint", 20),
    ("int2", 21),
    ("smallint", 21),
    ("int4", 23),
    ("integer", 23),
    ("int", 23),
    ("text", 25),
    ("oid", 26),
    ("json", 114),
    ("float4", 700),
    ("real", 700),
    ("float8", 701),
    ("double precision", 701),
    ("varchar", 1043),
    ("character varying", 1043),
    ("date", 1082),
    ("time", 1083),
    ("time without time zone", 1083),
    ("timestamp", 1114),
    ("timestamp without time zone", 1114),
    ("timestamptz", 1184),
    ("timestamp with time zone", 1184),
    ("interval", 1186),
    ("numeric", 1700),
    ("decimal", 1700),
    ("uuid", 2950),
    ("jsonb", 3802),
];

impl ScalarUDFImpl for ToRegtype {
    fn name(&self) -> &str {
        "to_regtype"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let lookup = |name: Option<&str>| {
            let name = name?
                .trim()
                .trim_start_matches("pg_catalog.")
                .trim_matches('"')
                .to_lowercase();
            TYPE_OIDS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, oid)| *oid)
        };
        let input = args.args[0].to_array(args.number_rows)?;
        let input = datafusion::arrow::compute::cast(&input, &DataType::Utf8)?;
        let strings = input
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal("to_regtype: not a string".into())
            })?;
        let oids: datafusion::arrow::array::Int32Array = strings.iter().map(lookup).collect();
        Ok(ColumnarValue::Array(std::sync::Arc::new(oids)))
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
