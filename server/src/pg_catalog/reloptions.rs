//! Storage options: Weir's relations have none (`pg_class.reloptions` is
//! always NULL, and there are no TOAST tables), and what psql asks of them
//! is answered as Postgres answers for a relation without options.
//!
//! psql's `\d+` (of a table, a view, any relation) lists a relation's
//! options with its TOAST table's appended:
//! `c.reloptions || ARRAY(SELECT 'toast.' || x FROM pg_catalog.unnest(tc.reloptions) x)`.
//! DataFusion has no `pg_catalog.unnest` table function (and the array
//! became an `array_agg` subquery, `weir_planner::compat`), so `\d+`
//! failed with "table function 'unnest' not found". Unnesting NULL yields
//! no row, so the subquery is the empty array, which it is written as.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Array as SqlArray, Expr as SqlExpr, SetExpr, Statement, visit_expressions_mut,
};

/// Rewrite a subquery that unnests `reloptions` into the empty array (see
/// the module docs). Other expressions are left as they are.
pub fn reloption_queries(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::Subquery(query) = expr
            && unnests_reloptions(query)
        {
            *expr = SqlExpr::Array(SqlArray {
                elem: Vec::new(),
                named: false,
            });
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Is `query` read from `unnest(<relation>.reloptions)` alone?
fn unnests_reloptions(query: &datafusion::sql::sqlparser::ast::Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    match select.from.as_slice() {
        [from] if from.joins.is_empty() => {
            let relation = from.relation.to_string().to_ascii_lowercase();
            relation.contains("unnest(") && relation.contains("reloptions")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn the_toast_options_of_psqls_describe_are_the_empty_array() {
        let mut statement = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT array_to_string(c.reloptions || (SELECT array_agg('toast.' || x) \
             FROM pg_catalog.unnest(tc.reloptions) x), ', '), \
             (SELECT max(x) FROM unnest(ARRAY[1]) x) FROM pg_class c",
        )
        .expect("parse")
        .remove(0);
        reloption_queries(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT array_to_string(c.reloptions || [], ', '), \
             (SELECT max(x) FROM UNNEST(ARRAY[1]) x) FROM pg_class c"
        );
    }
}
