//! Rewrites that let DataFusion run the catalog queries Postgres clients send.
//!
//! Applied only to statements that read the system catalog (drivers' and BI
//! tools' metadata queries), never to users' own queries, whose meaning must
//! stay exactly theirs.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, SelectItem, SetExpr,
    Statement, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

const AGGREGATES: &[&str] = &[
    "count",
    "max",
    "min",
    "sum",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "first_value",
    "last_value",
    "json_agg",
];

/// Postgres runs a correlated scalar subquery row by row and fails only if it
/// returns two rows; DataFusion decorrelates it into a join and insists that
/// it is aggregated. Catalog lookups (`SELECT pg_get_expr(...) FROM
/// pg_attrdef WHERE adrelid = outer.oid`) return at most one row, so wrapping
/// the selected expression in `max()` keeps their result and satisfies
/// DataFusion.
pub fn aggregate_scalar_subqueries(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        // DataFusion cannot run a scalar subquery inside CASE at all. In
        // catalog queries these branches look up what Weir's catalog never
        // has (identity columns, sequences, custom collations), so they are
        // answered with the NULL that lookup would give.
        if let Expr::Case {
            conditions,
            else_result,
            ..
        } = expr
        {
            for case_when in conditions.iter_mut() {
                if matches!(case_when.result, Expr::Subquery(_)) {
                    case_when.result = Expr::value(datafusion::sql::sqlparser::ast::Value::Null);
                }
            }
            if let Some(else_result) = else_result
                && matches!(**else_result, Expr::Subquery(_))
            {
                **else_result = Expr::value(datafusion::sql::sqlparser::ast::Value::Null);
            }
        }
        if let Expr::Subquery(query) = expr
            && let SetExpr::Select(select) = query.body.as_mut()
            && matches!(&select.group_by, GroupByExpr::Expressions(keys, _) if keys.is_empty())
            && select.projection.len() == 1
        {
            match &mut select.projection[0] {
                SelectItem::UnnamedExpr(inner) | SelectItem::ExprWithAlias { expr: inner, .. }
                    if !is_aggregate(inner) =>
                {
                    let taken = std::mem::replace(
                        inner,
                        Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
                    );
                    *inner = wrap_in_max(taken);
                }
                _ => {}
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn is_aggregate(expr: &Expr) -> bool {
    match expr {
        Expr::Function(function) => function
            .name
            .0
            .last()
            .is_some_and(|n| AGGREGATES.contains(&n.to_string().to_lowercase().as_str())),
        Expr::Nested(inner) => is_aggregate(inner),
        _ => false,
    }
}

fn wrap_in_max(expr: Expr) -> Expr {
    let Ok(mut template) = Parser::new(&PostgreSqlDialect {})
        .try_with_sql("max(NULL)")
        .and_then(|mut p| p.parse_expr())
    else {
        return expr;
    };
    if let Expr::Function(function) = &mut template
        && let FunctionArguments::List(list) = &mut function.args
        && let Some(arg) = list.args.first_mut()
    {
        *arg = FunctionArg::Unnamed(FunctionArgExpr::Expr(expr));
        return template;
    }
    expr
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    #[test]
    fn scalar_subqueries_get_an_aggregate() {
        let mut statement = parse(
            "SELECT a.x, (SELECT d.y FROM d WHERE d.k = a.k) AS y, (SELECT count(*) FROM e) FROM a",
        )
        .expect("parse")
        .remove(0);
        aggregate_scalar_subqueries(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT a.x, (SELECT max(d.y) FROM d WHERE d.k = a.k) AS y, (SELECT count(*) FROM e) FROM a"
        );
    }
}
