//! Postgres system functions that clients call and that neither DataFusion
//! nor `datafusion-pg-catalog` provide (or provide with a value that breaks
//! clients, like DataFusion's own `version()`).
//!
//! Most answer with a constant: Weir has no comments on objects, no
//! replication, no indexes; the answer a Postgres server with none of those
//! would give is the right one. The session's own answers (`current_user`,
//! `session_user`, `pg_backend_pid()`) are written into the statement
//! before it is planned, by [`substitute_session`]: the DataFusion context
//! is shared by every session, so a function registered there could not
//! know whose statement it runs in.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use crate::error::ServerError;

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

/// Replace `current_user`, `session_user`, `current_role`, `user` and
/// `pg_backend_pid()` in `statement` with the session's values, and run
/// `pg_cancel_backend(pid)` (its value: whether a backend was signalled).
/// `sql` is the statement's text, to skip the walk when none is named.
pub fn substitute_session(
    statement: &mut datafusion::sql::sqlparser::ast::Statement,
    session: &crate::session::Session,
    sql: &str,
) -> crate::error::Result<()> {
    use datafusion::sql::sqlparser::ast::{
        Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value, visit_expressions_mut,
    };
    let lower = sql.to_ascii_lowercase();
    if lower.contains("pg_stat_activity") {
        // In pg_catalog, which Postgres searches first: the compatibility
        // layer's list of catalog tables does not have this one.
        let _ = datafusion::sql::sqlparser::ast::visit_relations_mut(statement, |name| {
            if name.0.len() == 1
                && name.0[0]
                    .to_string()
                    .eq_ignore_ascii_case("pg_stat_activity")
            {
                name.0.insert(
                    0,
                    datafusion::sql::sqlparser::ast::ObjectNamePart::Identifier(
                        datafusion::sql::sqlparser::ast::Ident::new("pg_catalog"),
                    ),
                );
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
    if !(lower.contains("user")
        || lower.contains("current_role")
        || lower.contains("backend_pid")
        || lower.contains("cancel_backend"))
    {
        return Ok(());
    }
    let flow = visit_expressions_mut(statement, |expr| {
        if let Expr::Function(function) = expr
            && let [name] = function.name.0.as_slice()
        {
            let no_args = match &function.args {
                FunctionArguments::None => true,
                FunctionArguments::List(list) => list.args.is_empty(),
                FunctionArguments::Subquery(_) => false,
            };
            let name = name.to_string().to_ascii_lowercase();
            match name.as_str() {
                "current_user" | "session_user" | "current_role" | "user" if no_args => {
                    *expr = Expr::value(Value::SingleQuotedString(session.user().to_string()));
                }
                "pg_backend_pid" if no_args => {
                    *expr = Expr::value(Value::Number(session.pid().to_string(), false));
                }
                "pg_cancel_backend" => {
                    let pid = match &function.args {
                        FunctionArguments::List(list) => match list.args.as_slice() {
                            [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))] => {
                                match &v.value {
                                    Value::Number(n, _) => n.parse::<i32>().ok(),
                                    _ => None,
                                }
                            }
                            _ => None,
                        },
                        _ => None,
                    };
                    let Some(pid) = pid else {
                        return std::ops::ControlFlow::Break(ServerError::FeatureNotSupported {
                            message: "pg_cancel_backend takes a literal pid".to_string(),
                            hint: Some("write pg_cancel_backend(12345)".to_string()),
                        });
                    };
                    match cancel_backend(session, pid) {
                        Ok(signalled) => *expr = Expr::value(Value::Boolean(signalled)),
                        Err(err) => return std::ops::ControlFlow::Break(err),
                    }
                }
                _ => {}
            }
        }
        std::ops::ControlFlow::Continue(())
    });
    match flow {
        std::ops::ControlFlow::Break(err) => Err(err),
        std::ops::ControlFlow::Continue(()) => Ok(()),
    }
}

/// Cancel backend `pid`'s running statement, as Postgres allows: a
/// superuser any, others their own user's. Whether a backend was found.
fn cancel_backend(session: &crate::session::Session, pid: i32) -> crate::error::Result<bool> {
    let Some(backend) = crate::pg::activity::Activity::current().and_then(|a| a.get(pid)) else {
        return Ok(false);
    };
    if !session.is_superuser() && backend.user != session.user() {
        return Err(ServerError::InsufficientPrivilege {
            message: "permission denied to cancel query".to_string(),
        });
    }
    // false when the statement was already committing: too late, as in
    // Postgres, which also answers true then.
    let _ = backend.cancel();
    Ok(true)
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
        // Weir does not keep a table's size apart from the others' (they
        // share one log), so it does not know it: NULL, as Postgres answers
        // for a relation it cannot size.
        Constant::new("pg_table_size", ScalarValue::Int64(None)),
        Constant::new("pg_indexes_size", ScalarValue::Int64(None)),
    ];
    for f in functions {
        ctx.register_udf(ScalarUDF::new_from_impl(f));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(ToRegtype::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(SizePretty::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(ExpandArray::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(CurrentSetting::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(LikeEscape::new()));
}

/// `like_escape_backslash(pattern, escape)`: a LIKE pattern written with
/// `escape` as its escape character, rewritten to use the backslash, the
/// only one DataFusion takes (see `weir_planner::compat::like_escapes`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct LikeEscape {
    signature: Signature,
}

impl LikeEscape {
    fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// `pattern` with `escape` as escape character, in backslash escapes.
pub fn like_escape_backslash(pattern: &str, escape: Option<char>) -> String {
    let literal = |out: &mut String, c: char| {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    };
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            // The escaped character stands for itself; an escape at the
            // very end stands for itself too.
            literal(&mut out, chars.next().unwrap_or(c));
        } else if c == '\\' {
            // Not the escape character here: a plain backslash.
            literal(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

impl ScalarUDFImpl for LikeEscape {
    fn name(&self) -> &str {
        "like_escape_backslash"
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
        let rows = args.number_rows;
        let text = |i: usize| -> Result<StringArray> {
            let array = cast(&args.args[i].to_array(rows)?, &DataType::Utf8)?;
            Ok(array
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| DataFusionError::Internal("like_escape_backslash: not text".into()))?
                .clone())
        };
        let (patterns, escapes) = (text(0)?, text(1)?);
        let rewritten: StringArray = (0..rows)
            .map(|i| {
                if patterns.is_null(i) {
                    return None;
                }
                // ESCAPE '' turns escaping off.
                let escape = (!escapes.is_null(i))
                    .then(|| escapes.value(i).chars().next())
                    .flatten();
                Some(like_escape_backslash(patterns.value(i), escape))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(rewritten)))
    }
}

/// `current_setting(name [, missing_ok])` where the engine could not put
/// the session's value in first (it does for a literal name, see
/// `weir_planner::compat::substitute_settings`): when a prepared statement
/// is described, or for a name computed per row. It answers with the
/// setting's default, which a `SET` in the session does not change.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl CurrentSetting {
    fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Stable,
            ),
        }
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{Array, BooleanArray, StringArray};
        use datafusion::arrow::compute::cast;
        let rows = args.number_rows;
        let names = cast(&args.args[0].to_array(rows)?, &DataType::Utf8)?;
        let names = names
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| DataFusionError::Internal("current_setting: not text".into()))?;
        let missing_ok = match args.args.get(1) {
            Some(arg) => Some(cast(&arg.to_array(rows)?, &DataType::Boolean)?),
            None => None,
        };
        let defaults = crate::session::Session::new();
        let mut values = Vec::with_capacity(rows);
        for row in 0..rows {
            if names.is_null(row) {
                values.push(None);
                continue;
            }
            match defaults.get(names.value(row)) {
                Ok(value) => values.push(Some(value)),
                Err(e) => {
                    let ok = missing_ok
                        .as_ref()
                        .and_then(|m| m.as_any().downcast_ref::<BooleanArray>())
                        .is_some_and(|m| m.is_valid(row) && m.value(row));
                    if !ok {
                        return Err(DataFusionError::External(Box::new(e)));
                    }
                    values.push(None);
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(values))))
    }
}

/// `pg_size_pretty(bytes)`: a size in bytes, kB, MB, GB, TB or PB, rounded
/// as Postgres 15 rounds it (`src/backend/utils/adt/dbsize.c`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct SizePretty {
    signature: Signature,
}

impl SizePretty {
    fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// Postgres's units: a size stays in a unit while below its limit; units
/// after bytes are rounded half away from zero.
const SIZE_UNITS: &[(&str, i64, bool, u32)] = &[
    ("bytes", 10 * 1024, false, 0),
    ("kB", 20 * 1024 - 1, true, 10),
    ("MB", 20 * 1024 - 1, true, 20),
    ("GB", 20 * 1024 - 1, true, 30),
    ("TB", 20 * 1024 - 1, true, 40),
    ("PB", 20 * 1024 - 1, true, 50),
];

/// `pg_size_pretty` of one size.
pub fn size_pretty(mut size: i64) -> String {
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    for (i, &(unit, limit, round, bits)) in SIZE_UNITS.iter().enumerate() {
        let next = SIZE_UNITS.get(i + 1);
        if next.is_none() || size.unsigned_abs() < limit as u64 {
            if round {
                size = half_rounded(size);
            }
            return format!("{size} {unit}");
        }
        if let Some(&(_, _, next_round, next_bits)) = next {
            // Keep one bit more than the next unit needs when it rounds.
            let shift = next_bits - bits - u32::from(next_round) + u32::from(round);
            size /= 1 << shift;
        }
    }
    unreachable!("the last unit always answers")
}

impl ScalarUDFImpl for SizePretty {
    fn name(&self) -> &str {
        "pg_size_pretty"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{Int64Array, StringArray};
        let sizes = args.args[0].to_array(args.number_rows)?;
        let sizes = datafusion::arrow::compute::cast(&sizes, &DataType::Int64)?;
        let sizes = sizes
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| DataFusionError::Internal("pg_size_pretty: not a number".into()))?;
        let pretty: StringArray = sizes.iter().map(|s| s.map(size_pretty)).collect();
        Ok(ColumnarValue::Array(std::sync::Arc::new(pretty)))
    }
}

/// `information_schema._pg_expandarray(array)`: each element `x` with its
/// position `n` (from 1), as a list of `{x, n}` structs. Postgres returns a
/// set of rows; the catalog rewrite (`weir_planner::compat::expand_arrays`)
/// wraps each call in `unnest`, which gives the same rows.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

impl ExpandArray {
    fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    fn element_fields(element: &DataType) -> Fields {
        Fields::from(vec![
            Field::new("x", element.clone(), true),
            Field::new("n", DataType::Int32, false),
        ])
    }
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "_pg_expandarray"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            DataType::List(field) => Ok(DataType::List(Arc::new(Field::new_list_field(
                DataType::Struct(Self::element_fields(field.data_type())),
                true,
            )))),
            other => datafusion::common::plan_err!("_pg_expandarray() takes an array, not {other}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, Int32Array, ListArray, StructArray};
        let input = args.args[0].to_array(args.number_rows)?;
        let lists = input.as_list::<i32>();
        let values = lists.values().clone();
        // Each value's position within its list; the lists keep their
        // offsets, so `x` is the input's values as they are.
        let mut positions = vec![0i32; values.len()];
        for window in lists.offsets().windows(2) {
            let (start, end) = (window[0] as usize, window[1] as usize);
            for (n, slot) in positions[start..end].iter_mut().enumerate() {
                *slot = n as i32 + 1;
            }
        }
        let fields = Self::element_fields(values.data_type());
        let elements = StructArray::try_new(
            fields.clone(),
            vec![values, Arc::new(Int32Array::from(positions))],
            None,
        )?;
        let expanded = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Struct(fields), true)),
            lists.offsets().clone(),
            Arc::new(elements),
            lists.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(expanded)))
    }
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

#[cfg(test)]
mod tests {
    use super::{like_escape_backslash, size_pretty};

    #[test]
    fn like_patterns_move_to_backslash_escapes() {
        assert_eq!(like_escape_backslash("a/_%", Some('/')), "a\\_%");
        assert_eq!(like_escape_backslash("a//b%", Some('/')), "a/b%");
        assert_eq!(like_escape_backslash("a\\b", Some('/')), "a\\\\b");
        assert_eq!(like_escape_backslash("50/%", Some('/')), "50\\%");
        assert_eq!(like_escape_backslash("a_b", None), "a_b");
    }

    #[test]
    fn size_pretty_rounds_as_postgres_15() {
        // Each expected text is what Postgres 15's pg_size_pretty answers.
        for (size, expected) in [
            (0, "0 bytes"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (-10240, "-10 kB"),
            (1536000, "1500 kB"),
            (20971520, "20 MB"),
            (1000000000, "954 MB"),
            (123456789012345, "112 TB"),
            (-5000000000000000000, "-4441 PB"),
        ] {
            assert_eq!(size_pretty(size), expected, "pg_size_pretty({size})");
        }
    }
}
