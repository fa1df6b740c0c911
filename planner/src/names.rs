//! Output column names the way Postgres picks them.
//!
//! DataFusion names an unaliased expression after its full text
//! (`Int64(7) / Int64(2)`, `count(*)`); Postgres names it after what it is:
//! `?column?` for an operator or a literal, the function's name for a call
//! (`count`), the type's name for a cast of a literal (`int4`), `case`, `array`.
//! Clients show these names and ORMs map rows by them, so Weir gives the
//! outermost `SELECT`'s unaliased expressions an explicit Postgres-style alias.

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Ident, Query, SelectItem, SetExpr, Statement,
};

/// Separates a repeated column name from the suffix that makes it unique
/// for DataFusion; clients see the name before it.
pub const DUPLICATE_MARK: char = '\u{1}';

/// The name a client sees for an output column.
pub fn client_name(name: &str) -> &str {
    name.split(DUPLICATE_MARK).next().unwrap_or(name)
}

/// Name the output columns of a query statement (and of a view's query).
pub fn name_output_columns(statement: &mut Statement) {
    match statement {
        Statement::Query(query) => name_query(query),
        Statement::CreateView(view) => name_query(&mut view.query),
        Statement::Explain { statement, .. } => name_output_columns(statement),
        _ => {}
    }
}

fn name_query(query: &mut Query) {
    name_set_expr(&mut query.body);
}

fn name_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            let taken: Vec<String> = select
                .projection
                .iter()
                .filter_map(|item| match item {
                    SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
                    SelectItem::UnnamedExpr(Expr::Identifier(ident)) => {
                        Some(ident.value.to_lowercase())
                    }
                    SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                        parts.last().map(|i| i.value.to_lowercase())
                    }
                    _ => None,
                })
                .collect();
            let mut used = taken;
            for item in select.projection.iter_mut() {
                let SelectItem::UnnamedExpr(expr) = item else {
                    continue;
                };
                if matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                    continue;
                }
                let (mut name, _) = figure_name(expr);
                // DataFusion refuses two output columns of one name, which
                // Postgres allows: a repeat gets a hidden suffix that the
                // wire encoder strips (see `DUPLICATE_MARK`).
                if used.contains(&name) {
                    let mut n = 2;
                    while used.contains(&format!("{name}{DUPLICATE_MARK}{n}")) {
                        n += 1;
                    }
                    name = format!("{name}{DUPLICATE_MARK}{n}");
                }
                used.push(name.clone());
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: Ident::with_quote('"', name),
                };
            }
        }
        SetExpr::SetOperation { left, .. } => name_set_expr(left),
        SetExpr::Query(query) => name_query(query),
        _ => {}
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
        name_output_columns(&mut statement);
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
    }
}
