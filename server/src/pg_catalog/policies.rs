//! Row security policies: Weir has none (there is no `CREATE POLICY`), so
//! `pg_policy` is empty, and what clients ask of it is answered as an
//! empty `pg_policy` answers in Postgres.
//!
//! psql asks in two places. `\d t` reads `pg_policy` with
//! `polroles = '{0}'`: Postgres types the untyped literal as the
//! column's `oid[]`, DataFusion cannot compare a list with text, so the
//! literal becomes the array it spells. `\dp` (and `\z`) builds each
//! relation's list of policies with `ARRAY(SELECT .. FROM pg_policy ..)`,
//! whose body holds a scalar subquery inside a CASE, which DataFusion
//! cannot run; over an empty table that list is the empty array, so it is
//! written as one.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Array as SqlArray, BinaryOperator, Expr as SqlExpr, FunctionArguments, SelectItem, SetExpr,
    Statement, TableFactor, Value, visit_expressions_mut,
};

use super::*;

/// `pg_policy` as Postgres 15 has it (`polroles` an `oid[]`), with no rows.
pub(super) fn pg_policy(schema: &SchemaRef) -> Result<RecordBatch> {
    Ok(RecordBatch::new_empty(schema.clone()))
}

/// Rewrite what a client asks of `pg_policy` (see the module docs). Other
/// expressions are left as they are.
pub fn policy_queries(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::BinaryOp { left, op, right } = expr
            && matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq)
        {
            if names_polroles(left) {
                literal_to_array(right);
            } else if names_polroles(right) {
                literal_to_array(left);
            }
        }
        if let SqlExpr::Subquery(query) = expr
            && lists_policies(query)
        {
            *expr = SqlExpr::Array(SqlArray {
                elem: Vec::new(),
                named: false,
            });
        }
        ControlFlow::<()>::Continue(())
    });
}

fn names_polroles(expr: &SqlExpr) -> bool {
    match expr {
        SqlExpr::Identifier(ident) => ident.value.eq_ignore_ascii_case("polroles"),
        SqlExpr::CompoundIdentifier(parts) => parts
            .last()
            .is_some_and(|ident| ident.value.eq_ignore_ascii_case("polroles")),
        _ => false,
    }
}

/// `'{0}'`, `'{1, 2}'` as `[0]`, `[1, 2]`; anything else stays.
fn literal_to_array(expr: &mut SqlExpr) {
    let SqlExpr::Value(value) = expr else {
        return;
    };
    let Value::SingleQuotedString(text) = &value.value else {
        return;
    };
    let Some(inner) = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
    else {
        return;
    };
    let items: Option<Vec<SqlExpr>> = inner
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<i64>()
                .ok()
                .map(|_| SqlExpr::value(Value::Number(item.to_string(), false)))
        })
        .collect();
    if let Some(elem) = items {
        *expr = SqlExpr::Array(SqlArray { elem, named: true });
    }
}

/// Is `query` an array of something about policies: one `array_agg(..)`
/// (what `ARRAY(SELECT ..)` became, `weir_planner::compat`) over
/// `pg_policy` alone?
fn lists_policies(query: &datafusion::sql::sqlparser::ast::Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let aggregates = match select.projection.as_slice() {
        [SelectItem::UnnamedExpr(SqlExpr::Function(f))]
        | [
            SelectItem::ExprWithAlias {
                expr: SqlExpr::Function(f),
                ..
            },
        ] => {
            f.name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .is_some_and(|ident| ident.value.eq_ignore_ascii_case("array_agg"))
                && !matches!(f.args, FunctionArguments::None)
        }
        _ => false,
    };
    let from_policies = match select.from.as_slice() {
        [from] if from.joins.is_empty() => match &from.relation {
            TableFactor::Table { name, .. } => name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .is_some_and(|ident| ident.value.eq_ignore_ascii_case("pg_policy")),
            _ => false,
        },
        _ => false,
    };
    aggregates && from_policies
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0);
        policy_queries(&mut statement);
        statement.to_string()
    }

    #[test]
    fn untyped_array_literals_compared_with_polroles_become_arrays() {
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN pol.polroles <> '{0}' THEN 1 END, polroles = '{1, 2}', \
                 relname = '{0}' FROM pg_policy pol"
            ),
            "SELECT CASE WHEN pol.polroles <> ARRAY[0] THEN 1 END, polroles = ARRAY[1, 2], \
             relname = '{0}' FROM pg_policy pol"
        );
    }

    #[test]
    fn a_list_of_policies_is_the_empty_array() {
        assert_eq!(
            rewritten(
                "SELECT array_to_string((SELECT array_agg(polname) FROM pg_catalog.pg_policy pol \
                 WHERE polrelid = c.oid), ','), (SELECT max(polname) FROM pg_policy), \
                 (SELECT array_agg(attname) FROM pg_attribute) FROM pg_class c"
            ),
            "SELECT array_to_string([], ','), (SELECT max(polname) FROM pg_policy), \
             (SELECT array_agg(attname) FROM pg_attribute) FROM pg_class c"
        );
    }
}
