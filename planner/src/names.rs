//! Output column names the way Postgres picks them.
//!
//! DataFusion names an unaliased expression after its full text
//! (`Int64(7) / Int64(2)`, `count(*)`); Postgres names it after what it is:
//! `?column?` for an operator or a literal, the function's name for a call
//! (`count`), the type's name for a cast of a literal (`int4`), `case`, `array`.
//! Clients show these names and ORMs map rows by them, so Weir gives the
//! outermost `SELECT`'s unaliased expressions an explicit Postgres-style alias.

use std::collections::HashMap;

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Ident, Query, SelectItem, SetExpr, Statement, Value,
};

use crate::error::{PlanError, Result};

/// Separates a repeated column name from the suffix that makes it unique
/// for DataFusion; clients see the name before it.
pub const DUPLICATE_MARK: char = '\u{1}';

/// The name a client sees for an output column.
pub fn client_name(name: &str) -> &str {
    name.split(DUPLICATE_MARK).next().unwrap_or(name)
}

/// Postgres refuses a longer select list (its `MaxTupleAttributeNumber`);
/// so does Weir, before planning a list nobody can read.
pub const MAX_COLUMNS: usize = 1664;

/// Name the output columns of a query statement (and of a view's query).
pub fn name_output_columns(statement: &mut Statement) -> Result<()> {
    match statement {
        Statement::Query(query) => name_query(query),
        Statement::CreateView(view) => name_query(&mut view.query),
        Statement::Explain { statement, .. } => name_output_columns(statement),
        _ => Ok(()),
    }
}

fn name_query(query: &mut Query) -> Result<()> {
    name_set_expr(&mut query.body)
}

fn name_set_expr(body: &mut SetExpr) -> Result<()> {
    match body {
        SetExpr::Select(select) => {
            if select.projection.len() > MAX_COLUMNS {
                return Err(PlanError::TooManyColumns { max: MAX_COLUMNS });
            }
            // How often each output name was seen so far: one pass, so a
            // list of thousands of `1`s costs as little as a short one.
            let mut seen: HashMap<String, usize> = HashMap::new();
            for item in select.projection.iter_mut() {
                let (name, given) = match &*item {
                    SelectItem::ExprWithAlias { alias, .. } => (normalized(alias), Given::Alias),
                    SelectItem::UnnamedExpr(Expr::Identifier(ident)) => {
                        (normalized(ident), Given::Column)
                    }
                    SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                        match parts.last() {
                            Some(last) => (normalized(last), Given::Column),
                            None => continue,
                        }
                    }
                    SelectItem::UnnamedExpr(expr) => (figure_name(expr).0, Given::Nothing),
                    _ => continue,
                };
                let count = seen.entry(name.clone()).or_insert(0);
                *count += 1;
                // DataFusion refuses two output columns of one name, which
                // Postgres allows: a repeat gets a hidden suffix that the
                // wire encoder strips (see `DUPLICATE_MARK`).
                let alias = match (*count, given) {
                    (1, Given::Alias | Given::Column) => continue,
                    (1, Given::Nothing) => name,
                    (n, _) => format!("{name}{DUPLICATE_MARK}{n}"),
                };
                let (SelectItem::ExprWithAlias { expr, .. } | SelectItem::UnnamedExpr(expr)) = item
                else {
                    continue;
                };
                *item = SelectItem::ExprWithAlias {
                    expr: std::mem::replace(expr, Expr::value(Value::Null)),
                    alias: Ident::with_quote('"', alias),
                };
            }
            Ok(())
        }
        SetExpr::SetOperation { left, .. } => name_set_expr(left),
        SetExpr::Query(query) => name_query(query),
        _ => Ok(()),
    }
}

/// Where an output column's name came from.
#[derive(Clone, Copy)]
enum Given {
    /// `expr AS name`.
    Alias,
    /// A column reference, named after the column.
    Column,
    /// Neither: Postgres's rules name it.
    Nothing,
}

/// An identifier as DataFusion names it: folded to lowercase unless quoted.
fn normalized(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// Postgres's FigureColname: a name and how strongly it was determined
/// (2: from a column or function, 1: from a type, 0: the `?column?` default).
fn figure_name(expr: &Expr) -> (String, u8) {
    match expr {
        Expr::Identifier(ident) => (ident.value.to_lowercase(), 2),
        Expr::CompoundIdentifier(parts) => (
            parts
                .last()
                .map_or_else(|| "?column?".to_string(), |i| i.value.to_lowercase()),
            2,
        ),
        Expr::Function(function) => (
            function.name.0.last().map_or_else(
                || "?column?".to_string(),
                |p| p.to_string().trim_matches('"').to_lowercase(),
            ),
            2,
        ),
        Expr::Cast {
            expr, data_type, ..
        } => {
            let inner = figure_name(expr);
            if inner.1 >= 2 {
                inner
            } else {
                (type_name(data_type), 1)
            }
        }
        Expr::TypedString(typed) => (type_name(&typed.data_type), 1),
        Expr::Interval(_) => ("interval".to_string(), 1),
        Expr::Nested(inner) => figure_name(inner),
        Expr::Case { .. } => ("case".to_string(), 2),
        Expr::Array(_) => ("array".to_string(), 2),
        Expr::Exists { .. } => ("exists".to_string(), 2),
        Expr::Extract { .. } => ("extract".to_string(), 2),
        Expr::Substring { .. } => ("substring".to_string(), 2),
        Expr::Position { .. } => ("position".to_string(), 2),
        Expr::Trim { .. } => ("btrim".to_string(), 2),
        Expr::Ceil { .. } => ("ceil".to_string(), 2),
        Expr::Floor { .. } => ("floor".to_string(), 2),
        _ => ("?column?".to_string(), 0),
    }
}

/// The name Postgres gives a type in a column heading.
fn type_name(data_type: &DataType) -> String {
    let text = data_type.to_string().to_lowercase();
    let base = text.split('(').next().unwrap_or(&text).trim();
    match base {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "double precision" | "double" | "float8" => "float8",
        "real" | "float4" => "float4",
        "float" => "float8",
        "boolean" | "bool" => "bool",
        "decimal" | "numeric" => "numeric",
        "character varying" | "varchar" => "varchar",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "time" | "time without time zone" => "time",
        other => return other.to_string(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn names(sql: &str) -> String {
        let mut statement = parse(sql).expect("parse").remove(0);
        name_output_columns(&mut statement).expect("name");
        statement.to_string()
    }

    #[test]
    fn unaliased_expressions_get_postgres_names() {
        assert_eq!(
            names(
                "SELECT a, t.b, 1 + 2, count(*), CAST('1' AS INT), x::text, CASE WHEN a THEN 1 END FROM t"
            ),
            "SELECT a, t.b, 1 + 2 AS \"?column?\", count(*) AS \"count\", CAST('1' AS INT) AS \"int4\", \
             x::TEXT AS \"x\", CASE WHEN a THEN 1 END AS \"case\" FROM t"
        );
    }

    #[test]
    fn repeated_names_get_a_hidden_suffix() {
        assert_eq!(
            names("SELECT 1, 2 AS b, 3"),
            "SELECT 1 AS \"?column?\", 2 AS b, 3 AS \"?column?\u{1}2\""
        );
        assert_eq!(client_name("?column?\u{1}2"), "?column?");
        assert_eq!(
            names("SELECT id, id, t.id, 1 AS a, 2 AS A, 3 AS \"A\" FROM t"),
            "SELECT id, id AS \"id\u{1}2\", t.id AS \"id\u{1}3\", 1 AS a, 2 AS \"a\u{1}2\", 3 AS \"A\" FROM t"
        );
    }

    #[test]
    fn a_select_list_longer_than_postgres_allows_is_refused() {
        let sql = format!("SELECT {}", vec!["1"; MAX_COLUMNS + 1].join(", "));
        let mut statement = parse(&sql).expect("parse").remove(0);
        assert_eq!(
            name_output_columns(&mut statement),
            Err(PlanError::TooManyColumns { max: MAX_COLUMNS })
        );
    }
}
