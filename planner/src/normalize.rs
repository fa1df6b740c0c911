//! Names and option values read out of the sqlparser AST the way Postgres
//! reads them: unquoted identifiers folded to lower case, `public.` dropped,
//! option values unquoted. The parser, the statement classifier and the
//! DML classifier all name objects this way, so it lives here, below all
//! three.

use datafusion::sql::sqlparser::ast::{Expr, Ident, ObjectName, ObjectNamePart, SqlOption, Value};

use crate::error::{PlanError, Result};

/// The text of a `SET` value or a `WITH` option value, the way Postgres
/// reads it: strings unquoted, identifiers and numbers as written.
pub fn expr_text(expr: &Expr) -> String {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::DoubleQuotedString(s)
            | Value::EscapedStringLiteral(s) => s.clone(),
            Value::Boolean(b) => b.to_string(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    }
}

/// `WITH (key = 'value', ...)` options as (lower-cased key, value text).
pub fn sql_options(options: Vec<SqlOption>) -> Result<Vec<(String, String)>> {
    options
        .into_iter()
        .map(|option| match option {
            SqlOption::KeyValue { key, value } => {
                Ok((key.value.to_ascii_lowercase(), expr_text(&value)))
            }
            other => Err(PlanError::Invalid(format!(
                "option \"{other}\" must be of the form key = 'value'"
            ))),
        })
        .collect()
}

/// A name as Postgres resolves it: unquoted parts folded to lower case;
/// `public.` is the only schema and is dropped.
pub fn object_name(name: &ObjectName) -> String {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => normalize_ident(ident),
            other => other.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [schema, table] if schema == "public" => table.clone(),
        _ => parts.join("."),
    }
}

/// One identifier as Postgres folds it.
pub fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}
