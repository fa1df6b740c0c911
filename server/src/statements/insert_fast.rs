//! `INSERT INTO t [(columns)] VALUES (...), ...` of plain values into a
//! table Weir owns, without DataFusion.
//!
//! Planning and optimizing a statement in DataFusion costs far more than
//! inserting one row: single-row INSERTs from many clients spent most of
//! their CPU there. A VALUES list of literals and `$n` parameters needs no
//! planner: each column's values become one Arrow array, cast to the
//! column's type with arrow's cast (as DataFusion's plan would cast them),
//! and the batch goes to the table's insert, which checks NOT NULL and the
//! primary key and logs the rows as before.
//!
//! Anything else returns `None` and takes the DataFusion path unchanged:
//! expressions, `INSERT ... SELECT`, `ON CONFLICT`, `RETURNING`, `DEFAULT`,
//! an unknown or repeated column, rows of the wrong length, a value whose
//! conversion to the column type DataFusion and Postgres might see
//! differently (a number into a text column, `1.5` into an integer one,
//! text into `timestamptz`, which depends on the session's time zone). So
//! errors about the statement itself keep DataFusion's messages and
//! positions; only errors about the values (22P02, 22003, 23502, 23505)
//! are reported here.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options, concat};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::ast::{
    self, CastKind, Expr, Insert, ObjectName, SetExpr, Statement, TimezoneInfo, UnaryOperator,
    Value,
};
use weir_connectors::copy_format::pg_type_name;
use weir_connectors::table_store::OwnedTable;
use weir_connectors::table_store::txn::SharedTransaction;
use weir_planner::WeirStatement;
use weir_planner::dml::{Dml, DmlKind};
use weir_planner::normalize::normalize_ident;

use crate::error::{Result, ServerError};
use crate::output::{Described, Output};
use crate::registry::{Registry, WriteTarget};

/// Statements of at most this many rows are inserted by the task that runs
/// the statement.
const INLINE_ROWS: usize = 1024;

/// Run `dml` here if it is an INSERT of plain values into a table Weir
/// owns; `None` when it must take the DataFusion path.
pub async fn execute(
    registry: &Registry,
    dml: &Dml,
    params: Option<&ParamValues>,
    txn: &SharedTransaction,
) -> Result<Option<Output>> {
    let Some((table, insert)) = target(registry, dml) else {
        return Ok(None);
    };
    let schema = table.schema();
    let Some(values) = Values::of(insert, &schema)? else {
        return Ok(None);
    };
    let Some(batch) = values.batch(&schema, params)? else {
        return Ok(None);
    };
    // A few rows cost less to insert here than to hand to a worker (the
    // insert mostly waits for the log); a long VALUES list is CPU work
    // (encoding, indexing) to keep off the connection threads.
    let rows = if batch.num_rows() <= INLINE_ROWS {
        table.insert_in(Some(txn), vec![batch]).await?
    } else {
        let txn = txn.clone();
        registry
            .run(async move { table.insert_in(Some(&txn), vec![batch]).await })
            .await??
    };
    Ok(Some(Output::Command {
        tag: DmlKind::Insert.tag(),
        rows: Some(rows as usize),
    }))
}

/// What Describe says about a prepared INSERT that [`execute`] will run:
/// no result columns, and each `$n` has the type of the column it fills
/// (as DataFusion would infer it). `None` when DataFusion must describe it.
pub fn describe(registry: &Registry, statement: &WeirStatement) -> Option<Described> {
    let WeirStatement::Dml(dml) = statement else {
        return None;
    };
    let (table, insert) = target(registry, dml)?;
    let schema = table.schema();
    let values = Values::of(insert, &schema).ok()??;
    let mut params: Vec<Option<DataType>> = Vec::new();
    for row in &values.rows {
        for (value, &column) in row.iter().zip(&values.columns) {
            if let Literal::Param(n) = value {
                if params.len() < *n {
                    params.resize(*n, None);
                }
                let data_type = schema.field(column).data_type();
                match &params[n - 1] {
                    None => params[n - 1] = Some(data_type.clone()),
                    Some(other) if other == data_type => {}
                    // One parameter for columns of two types: DataFusion
                    // decides what that means.
                    Some(_) => return None,
                }
            }
        }
    }
    if params.iter().any(Option::is_none) {
        return None;
    }
    Some(Described {
        schema: None,
        params,
    })
}

/// The table Weir owns that `dml` inserts into, and the INSERT.
fn target<'a>(registry: &Registry, dml: &'a Dml) -> Option<(OwnedTable, &'a Insert)> {
    if dml.kind != DmlKind::Insert {
        return None;
    }
    let Statement::Insert(insert) = dml.statement.as_ref() else {
        return None;
    };
    match registry.write_target(&dml.table) {
        WriteTarget::Owned(table) => Some((table?, insert)),
        WriteTarget::Other(_) | WriteTarget::Missing => None,
    }
}

/// One value of a VALUES row.
#[derive(Debug, Clone, PartialEq)]
enum Literal<'a> {
    Null,
    /// A quoted string (or a typed one, `'...'::date`): the column type's
    /// input syntax applies.
    Text(&'a str),
    /// A number as written, with its sign.
    Number(String),
    Bool(bool),
    /// `$n` (1-based).
    Param(usize),
}

/// A VALUES list lined up with the table's columns.
#[derive(Debug)]
struct Values<'a> {
    /// For each position in a row, the table column it fills.
    columns: Vec<usize>,
    rows: Vec<Vec<Literal<'a>>>,
}

impl<'a> Values<'a> {
    /// The values of `insert`, if it is a plain `INSERT INTO t [(cols)]
    /// VALUES ...` of literals and parameters.
    fn of(insert: &'a Insert, schema: &SchemaRef) -> Result<Option<Self>> {
        let Some(values) = values_list(insert) else {
            return Ok(None);
        };
        let columns = if insert.columns.is_empty() {
            let all = schema.fields().len();
            (0..implied_width(values).filter(|&w| w <= all).unwrap_or(all)).collect()
        } else {
            let mut columns = Vec::with_capacity(insert.columns.len());
            for name in &insert.columns {
                let Some(index) = column_name(name).and_then(|name| schema.index_of(&name).ok())
                else {
                    return Ok(None);
                };
                if columns.contains(&index) {
                    return Ok(None);
                }
                columns.push(index);
            }
            columns
        };
        let mut rows = Vec::with_capacity(values.rows.len());
        for row in &values.rows {
            if row.content.len() != columns.len() {
                return Ok(None);
            }
            let mut literals = Vec::with_capacity(columns.len());
            for (expr, &column) in row.content.iter().zip(&columns) {
                let Some(literal) = literal(expr) else {
                    return Ok(None);
                };
                let field = schema.field(column);
                if matches!(literal, Literal::Bool(_)) && field.data_type() != &DataType::Boolean {
                    // Postgres has no assignment cast from boolean to
                    // anything else; DataFusion's plan would store 1 or 0.
                    return Err(ServerError::DatatypeMismatch {
                        message: format!(
                            "column \"{}\" is of type {} but expression is of type boolean",
                            field.name(),
                            pg_type_name(field.data_type())
                        ),
                        position: None,
                    });
                }
                if !accepts(field.data_type(), &literal) {
                    return Ok(None);
                }
                literals.push(literal);
            }
            rows.push(literals);
        }
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self { columns, rows }))
    }

    /// The rows as a batch of the table's schema; `None` when a parameter
    /// is missing (DataFusion reports that).
    fn batch(
        &self,
        schema: &SchemaRef,
        params: Option<&ParamValues>,
    ) -> Result<Option<RecordBatch>> {
        let rows = self.rows.len();
        let mut arrays: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), rows))
            .collect();
        for (position, &column) in self.columns.iter().enumerate() {
            let values: Vec<&Literal> = self.rows.iter().map(|row| &row[position]).collect();
            let data_type = schema.field(column).data_type();
            let array = if values.iter().any(|v| matches!(v, Literal::Param(_))) {
                // Parameters come typed; a row at a time is fine for them.
                let mut parts = Vec::with_capacity(values.len());
                for value in values {
                    let Some(part) = one_value(value, data_type, params)? else {
                        return Ok(None);
                    };
                    parts.push(part);
                }
                let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                concat(&parts).map_err(arrow_error)?
            } else {
                typed(&values, data_type)?
            };
            arrays[column] = array;
        }
        RecordBatch::try_new(schema.clone(), arrays)
            .map(Some)
            .map_err(arrow_error)
    }
}

/// Is `statement` an INSERT the fast path may take, as far as its text
/// tells (the table and its columns aside)? Such a statement needs none of
/// the compatibility rewrites that adapt clients' queries to DataFusion
/// (they touch expressions, identifiers and catalog names, and it has only
/// literals), and for a single-row INSERT those rewrites cost more than
/// running it: [`crate::engine::Engine::parse`] skips them.
pub fn takes_no_rewrite(statement: &Statement) -> bool {
    let Statement::Insert(insert) = statement else {
        return false;
    };
    values_list(insert).is_some_and(|values| {
        values
            .rows
            .iter()
            .all(|row| row.content.iter().all(|expr| literal(expr).is_some()))
    })
}

/// May `statement` (whose text is `text`) run on the connection's task
/// rather than a worker's? A short INSERT of plain values: it is cheaper
/// than the hand-off to a worker and back (it mostly waits for the log),
/// and too short to nest deep or take long. Whether its table is one
/// Weir owns is found out when it runs; if not, DataFusion plans it here,
/// which for so short a statement is still little work.
pub fn runs_in_place(statement: &WeirStatement, text: &str) -> bool {
    text.len() <= crate::engine::IN_PLACE_BYTES
        && matches!(statement, WeirStatement::Dml(dml) if takes_no_rewrite(&dml.statement))
}

/// How many columns an INSERT without a column list fills: Postgres fills
/// the first k when every row of its VALUES has k values, and the rest
/// with their defaults (NULL here). `None` when the rows differ in length
/// (an error, which DataFusion reports).
fn implied_width(values: &ast::Values) -> Option<usize> {
    let width = values.rows.first()?.content.len();
    values
        .rows
        .iter()
        .all(|row| row.content.len() == width)
        .then_some(width)
}

/// Name the columns an INSERT of VALUES without a column list fills when
/// its rows are shorter than the table (see [`implied_width`]), so the
/// DataFusion path inserts it as Postgres does rather than refusing a row
/// of fewer values than columns; and refuse rows of different lengths, or
/// more values than columns, with Postgres's 42601 and words.
pub fn name_implied_columns(registry: &Registry, dml: &mut Dml) -> Result<()> {
    if dml.kind != DmlKind::Insert {
        return Ok(());
    }
    let WriteTarget::Owned(Some(table)) = registry.write_target(&dml.table) else {
        return Ok(());
    };
    let Statement::Insert(insert) = dml.statement.as_mut() else {
        return Ok(());
    };
    let Some(values) = values_list(insert) else {
        return Ok(());
    };
    let syntax = |message: &str| ServerError::Syntax {
        message: message.into(),
        detail: None,
        position: None,
    };
    let Some(width) = implied_width(values) else {
        return Err(syntax("VALUES lists must all be the same length"));
    };
    let targets = match insert.columns.len() {
        0 => table.schema().fields().len(),
        listed => listed,
    };
    if width > targets {
        return Err(syntax("INSERT has more expressions than target columns"));
    }
    if width < targets && !insert.columns.is_empty() {
        return Err(syntax("INSERT has more target columns than expressions"));
    }
    if width < targets {
        insert.columns = table.schema().fields()[..width]
            .iter()
            .map(|f| ObjectName::from(vec![ast::Ident::with_quote('"', f.name())]))
            .collect();
    }
    Ok(())
}

/// The VALUES of a plain `INSERT INTO t [(cols)] VALUES ...`.
fn values_list(insert: &Insert) -> Option<&ast::Values> {
    if !plain(insert) {
        return None;
    }
    let query = insert.source.as_deref()?;
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
        || !query.locks.is_empty()
        || query.for_clause.is_some()
        || query.settings.is_some()
        || query.format_clause.is_some()
        || !query.pipe_operators.is_empty()
    {
        return None;
    }
    match query.body.as_ref() {
        SetExpr::Values(values) => Some(values),
        _ => None,
    }
}

/// An INSERT without the clauses the fast path does not handle.
fn plain(insert: &Insert) -> bool {
    let Insert {
        insert_token: _,
        optimizer_hints,
        or,
        ignore,
        into: _,
        table: _,
        table_alias,
        columns: _,
        overwrite,
        source: _,
        assignments,
        partitioned,
        after_columns,
        has_table_keyword,
        on,
        returning,
        output,
        replace_into,
        priority,
        insert_alias,
        settings,
        format_clause,
        multi_table_insert_type,
        multi_table_into_clauses,
        multi_table_when_clauses,
        multi_table_else_clause,
    } = insert;
    optimizer_hints.is_empty()
        && or.is_none()
        && !ignore
        && table_alias.is_none()
        && !overwrite
        && assignments.is_empty()
        && partitioned.is_none()
        && after_columns.is_empty()
        && !has_table_keyword
        && on.is_none()
        && returning.is_none()
        && output.is_none()
        && !replace_into
        && priority.is_none()
        && insert_alias.is_none()
        && settings.is_none()
        && format_clause.is_none()
        && multi_table_insert_type.is_none()
        && multi_table_into_clauses.is_empty()
        && multi_table_when_clauses.is_empty()
        && multi_table_else_clause.is_none()
}

fn column_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [part] => part.as_ident().map(normalize_ident),
        _ => None,
    }
}

/// A literal, a negative number, a `$n`, or a string typed as a
/// non-numeric type (`'2024-01-01'::timestamp`, `DATE '2024-01-01'`).
fn literal(expr: &Expr) -> Option<Literal<'_>> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Null => Some(Literal::Null),
            Value::Boolean(b) => Some(Literal::Bool(*b)),
            Value::Number(n, false) => Some(Literal::Number(n.clone())),
            Value::SingleQuotedString(s) => Some(Literal::Text(s)),
            Value::Placeholder(p) => {
                let n: usize = p.strip_prefix('$')?.parse().ok()?;
                (n >= 1).then_some(Literal::Param(n))
            }
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(value) => match &value.value {
                Value::Number(n, false) if !n.starts_with('-') => {
                    Some(Literal::Number(format!("-{n}")))
                }
                _ => None,
            },
            _ => None,
        },
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type,
            array: false,
            format: None,
        } => match expr.as_ref() {
            Expr::Value(value) => match &value.value {
                Value::SingleQuotedString(s) => Some(Literal::Text(typed_text(data_type, s)?)),
                _ => None,
            },
            _ => None,
        },
        Expr::TypedString(typed) => match &typed.value.value {
            Value::SingleQuotedString(s) if !typed.uses_odbc_syntax => {
                Some(Literal::Text(typed_text(&typed.data_type, s)?))
            }
            _ => None,
        },
        Expr::Nested(inner) => literal(inner),
        _ => None,
    }
}

/// The string of `'s'::data_type`, when casting it to the column's type is
/// the same as casting `s`: only for the types whose input syntax is the
/// same wherever they go. A numeric type is left to DataFusion, which casts
/// `'1.5'::float` into an integer column differently from `'1.5'`.
fn typed_text<'a>(data_type: &ast::DataType, s: &'a str) -> Option<&'a str> {
    use ast::DataType as T;
    match data_type {
        T::Timestamp(None, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone)
        | T::Date
        | T::Time(None, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone)
        | T::Text
        | T::Varchar(None)
        | T::CharacterVarying(None)
        | T::String(None)
        | T::Bool
        | T::Boolean => Some(s),
        _ => None,
    }
}

/// Does the fast path convert `literal` into a column of `data_type`
/// exactly as Postgres would (and DataFusion does)?
fn accepts(data_type: &DataType, literal: &Literal) -> bool {
    match literal {
        Literal::Null | Literal::Param(_) => true,
        Literal::Bool(_) => *data_type == DataType::Boolean,
        Literal::Number(n) => {
            if data_type.is_integer() {
                // `1.5` into an integer column: Postgres rounds (see
                // `rounded`); an exponent is left to DataFusion.
                n.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
            } else {
                data_type.is_floating() || data_type.is_decimal()
            }
        }
        Literal::Text(_) => text_input(data_type),
    }
}

/// Types whose values arrow's cast reads from text as Postgres's input
/// functions do (and as DataFusion's plan would cast a string literal).
fn text_input(data_type: &DataType) -> bool {
    data_type.is_numeric()
        || matches!(
            data_type,
            DataType::Boolean
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Date32
                | DataType::Date64
                | DataType::Time32(_)
                | DataType::Time64(_)
                | DataType::Timestamp(_, None)
                | DataType::Interval(_)
        )
}

/// A column of literals (no parameters): their text cast to `data_type`.
fn typed(values: &[&Literal], data_type: &DataType) -> Result<ArrayRef> {
    let text: StringArray = values
        .iter()
        .map(|v| match v {
            Literal::Null | Literal::Param(_) => None,
            Literal::Text(s) => Some(std::borrow::Cow::Borrowed(*s)),
            Literal::Number(n) if data_type.is_integer() => Some(rounded(n)),
            Literal::Number(n) => Some(std::borrow::Cow::Borrowed(n.as_str())),
            Literal::Bool(true) => Some("true".into()),
            Literal::Bool(false) => Some("false".into()),
        })
        .collect();
    if text.data_type() == data_type {
        return Ok(Arc::new(text));
    }
    // A safe cast turns what does not cast into NULL; the first such value
    // is the one to report.
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    let cast = cast_with_options(&text, data_type, &safe).map_err(arrow_error)?;
    if cast.null_count() != text.null_count()
        && let Some(row) = (0..text.len()).find(|&r| text.is_valid(r) && cast.is_null(r))
    {
        return Err(bad_value(values[row], text.value(row), data_type));
    }
    Ok(cast)
}

/// A numeric literal (`-?digits[.digits]`) rounded to an integer as
/// Postgres assigns a numeric to an integer column: half away from zero
/// (`1000.5` -> `1001`, `-2.5` -> `-3`).
fn rounded(number: &str) -> std::borrow::Cow<'_, str> {
    let Some((whole, fraction)) = number.split_once('.') else {
        return std::borrow::Cow::Borrowed(number);
    };
    let (sign, digits) = match whole.strip_prefix('-') {
        Some(digits) => ("-", digits),
        None => ("", whole),
    };
    let digits = if digits.is_empty() { "0" } else { digits };
    if !fraction.starts_with(['5', '6', '7', '8', '9']) {
        return std::borrow::Cow::Owned(format!("{sign}{digits}"));
    }
    // Add one to the decimal digits, carrying as far as needed.
    let mut up: Vec<u8> = digits.bytes().collect();
    let mut at = up.len();
    loop {
        if at == 0 {
            up.insert(0, b'1');
            break;
        }
        at -= 1;
        if up[at] == b'9' {
            up[at] = b'0';
        } else {
            up[at] += 1;
            break;
        }
    }
    std::borrow::Cow::Owned(format!("{sign}{}", String::from_utf8_lossy(&up)))
}

/// Why `value` (as text: `text`) does not fit a column of `data_type`, in
/// Postgres's words.
fn bad_value(value: &Literal, text: &str, data_type: &DataType) -> ServerError {
    let name = pg_type_name(data_type);
    // Text that is a number of the column's kind, only too big for it.
    let number = if data_type.is_integer() {
        text.trim().parse::<i128>().is_ok()
    } else {
        data_type.is_numeric() && text.trim().parse::<f64>().is_ok()
    };
    match value {
        // A number literal that does not fit: `integer out of range`.
        Literal::Number(_) if data_type.is_decimal() => ServerError::NumericOutOfRange {
            message: "numeric field overflow".into(),
        },
        Literal::Number(_) => ServerError::NumericOutOfRange {
            message: format!("{name} out of range"),
        },
        // A string that is a number, but too big for the column.
        Literal::Text(_) if number => ServerError::NumericOutOfRange {
            message: format!("value \"{text}\" is out of range for type {name}"),
        },
        _ => ServerError::InvalidTextRepresentation {
            message: format!("invalid input syntax for type {name}: \"{text}\""),
        },
    }
}

/// One value as a one-row array of `data_type`; `None` for a parameter
/// without a value.
fn one_value(
    value: &Literal,
    data_type: &DataType,
    params: Option<&ParamValues>,
) -> Result<Option<ArrayRef>> {
    let Literal::Param(n) = value else {
        return typed(&[value], data_type).map(Some);
    };
    let Some(scalar) = params.and_then(|p| p.get_placeholders_with_values(&format!("${n}")).ok())
    else {
        return Ok(None);
    };
    let scalar = scalar.value;
    if scalar.is_null() {
        return Ok(Some(new_null_array(data_type, 1)));
    }
    if let ScalarValue::Utf8(Some(s))
    | ScalarValue::LargeUtf8(Some(s))
    | ScalarValue::Utf8View(Some(s)) = &scalar
        && !matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
    {
        // Sent as text: the column type's input syntax applies.
        if !text_input(data_type) {
            return Ok(None);
        }
        return typed(&[&Literal::Text(s)], data_type).map(Some);
    }
    let array = scalar
        .to_array()
        .map_err(|e| ServerError::from_datafusion(e, None))?;
    if array.data_type() == data_type {
        return Ok(Some(array));
    }
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(&array, data_type, &strict)
        .map(Some)
        .map_err(arrow_error)
}

fn arrow_error(err: datafusion::arrow::error::ArrowError) -> ServerError {
    ServerError::from_datafusion(DataFusionError::ArrowError(Box::new(err), None), None)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int32Array, Int64Array};
    use datafusion::arrow::datatypes::{Field, Int64Type, Schema, TimeUnit};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("n", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("x", DataType::Float64, true),
        ]))
    }

    fn insert(sql: &str) -> Insert {
        match weir_planner::parser::parse(sql).expect("parse").pop() {
            Some(Statement::Insert(insert)) => insert,
            other => panic!("not an insert: {other:?}"),
        }
    }

    fn batch(sql: &str) -> Result<Option<RecordBatch>> {
        let insert = insert(sql);
        match Values::of(&insert, &schema())? {
            Some(values) => values.batch(&schema(), None),
            None => Ok(None),
        }
    }

    #[test]
    fn literals_become_columns_of_the_table_types() {
        let batch = batch(
            "INSERT INTO t (name, id, at, x, ok) VALUES \
             ('a', -1, '2024-01-01 10:00:00'::timestamp, 1.5, true), \
             (NULL, 2, TIMESTAMP '2024-01-02 00:00:00', -2, 't')",
        )
        .expect("no error")
        .expect("fast path");
        assert_eq!(batch.num_rows(), 2);
        let id = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(id, &Int64Array::from(vec![-1, 2]));
        assert_eq!(
            batch.column(1).as_ref(),
            &Int32Array::from(vec![None, None])
        );
        assert_eq!(batch.column(2).as_string::<i32>().value(0), "a");
        assert!(batch.column(2).is_null(1));
        assert_eq!(batch.column(3).null_count(), 0);
        assert!(batch.column(4).as_boolean().value(1));
    }

    #[test]
    fn what_datafusion_must_plan_is_left_to_it() {
        for sql in [
            "INSERT INTO t SELECT 1",
            "INSERT INTO t (id) VALUES (1 + 1)",
            "INSERT INTO t (id) VALUES (1) RETURNING id",
            "INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING",
            "INSERT INTO t (nope) VALUES (1)",
            "INSERT INTO t (id, id) VALUES (1, 2)",
            "INSERT INTO t (id, n) VALUES (1)",
            "INSERT INTO t (id) VALUES (DEFAULT)",
            "INSERT INTO t (n) VALUES (1.5e0)",
            "INSERT INTO t (name) VALUES (5)",
            "INSERT INTO t (id) VALUES ('1'::float)",
        ] {
            assert!(batch(sql).expect("no error").is_none(), "{sql}");
        }
    }

    #[test]
    fn bad_values_have_postgres_sqlstates() {
        let code = |sql: &str| batch(sql).expect_err(sql).sqlstate();
        assert_eq!(code("INSERT INTO t (id) VALUES ('abc')"), "22P02");
        assert_eq!(code("INSERT INTO t (n) VALUES (3000000000)"), "22003");
        assert_eq!(code("INSERT INTO t (n) VALUES ('3000000000')"), "22003");
        assert_eq!(
            code("INSERT INTO t (id) VALUES (99999999999999999999)"),
            "22003"
        );
        assert_eq!(code("INSERT INTO t (at) VALUES ('yesterday-ish')"), "22P02");
        // Postgres reads '1.5' as integer text, and rejects it.
        assert_eq!(code("INSERT INTO t (n) VALUES ('1.5')"), "22P02");
        let err = batch("INSERT INTO t (id) VALUES (1), ('x')").expect_err("bad");
        assert_eq!(
            err.to_string(),
            "invalid input syntax for type bigint: \"x\""
        );
        let err = batch("INSERT INTO t (n) VALUES (3000000000)").expect_err("bad");
        assert_eq!(err.to_string(), "integer out of range");
        assert_eq!(code("INSERT INTO t (id) VALUES (true)"), "42804");
    }

    #[test]
    fn a_fraction_into_an_integer_column_rounds_half_away_from_zero() {
        for (number, expected) in [
            ("1000.5", "1001"),
            ("1000.49", "1000"),
            ("-2.5", "-3"),
            ("99.9", "100"),
            ("-0.4", "-0"),
            (".5", "1"),
            ("7", "7"),
        ] {
            assert_eq!(rounded(number), expected, "{number}");
        }
        let batch = batch("INSERT INTO t (id, n) VALUES (1000.5, -2.5)")
            .expect("no error")
            .expect("fast path");
        assert_eq!(
            batch.column(0).as_primitive::<Int64Type>(),
            &Int64Array::from(vec![1001])
        );
        assert_eq!(batch.column(1).as_ref(), &Int32Array::from(vec![-3]));
    }
}
