//! Rewrites that let DataFusion run the catalog queries Postgres clients send.
//!
//! Applied only to statements that read the system catalog (drivers' and BI
//! tools' metadata queries), never to users' own queries, whose meaning must
//! stay exactly theirs.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, GroupByExpr, Ident, ObjectName, OrderBy, OrderByKind, Query, SelectItem,
    SetExpr, Statement, Value, visit_expressions_mut,
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

/// `information_schema._pg_expandarray(a)` returns a set of rows `(x, n)`
/// in Postgres; Weir's function (server `pg_functions`) returns them as a
/// list of structs, and `unnest` turns that list into the rows. pgjdbc's
/// key queries (`getPrimaryKeys`, `getIndexInfo`) call it in the select
/// list and read `(keys).x`, `(keys).n`.
pub fn expand_arrays(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Function(function) = expr
            && function
                .name
                .0
                .last()
                .is_some_and(|n| n.to_string().eq_ignore_ascii_case("_pg_expandarray"))
        {
            function.name = ObjectName::from(vec![Ident::new("_pg_expandarray")]);
            let call = std::mem::replace(expr, Expr::value(Value::Null));
            *expr = call_function("unnest", vec![call]);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `ARRAY(SELECT e FROM ... ORDER BY o)` (psql's `\d+`, `\du`) is, in
/// DataFusion's terms, the scalar subquery `(SELECT array_agg(e ORDER BY o)
/// FROM ...)`. One difference stays: over no rows it is NULL, not `{}`.
pub fn array_subqueries(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Function(function) = expr
            && function.name.to_string().eq_ignore_ascii_case("array")
            && let FunctionArguments::Subquery(query) = &function.args
            && let Some(rewritten) = array_agg_subquery(query)
        {
            *expr = rewritten;
        }
        ControlFlow::<()>::Continue(())
    });
}

fn array_agg_subquery(query: &Query) -> Option<Expr> {
    let mut query = query.clone();
    let order = query.order_by.take();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let [SelectItem::UnnamedExpr(element) | SelectItem::ExprWithAlias { expr: element, .. }] =
        select.projection.as_mut_slice()
    else {
        return None;
    };
    let mut order_text = Vec::new();
    if let Some(OrderBy {
        kind: OrderByKind::Expressions(exprs),
        ..
    }) = &order
    {
        for o in exprs {
            // `ORDER BY 1` names the one selected column.
            let key = match &o.expr {
                Expr::Value(v) if v.value == Value::Number("1".into(), false) => {
                    element.to_string()
                }
                other => other.to_string(),
            };
            order_text.push(format!("{key}{}", o.options));
        }
    }
    let order_clause = if order_text.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", order_text.join(", "))
    };
    let aggregate = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("array_agg({element}{order_clause})"))
        .and_then(|mut p| p.parse_expr())
        .ok()?;
    *element = aggregate;
    Some(Expr::Subquery(Box::new(query)))
}

/// `current_setting('name' [, missing_ok])` (Grafana reads `search_path`
/// this way) is the session's setting as text, as `SHOW name` gives it:
/// each call on a literal name becomes that literal. `lookup` answers for
/// the session; its error (an unknown setting) is returned unless
/// `missing_ok` is true, in which case the call is NULL, as in Postgres.
pub fn substitute_settings<E>(
    statement: &mut Statement,
    lookup: impl Fn(&str) -> std::result::Result<String, E>,
) -> std::result::Result<(), E> {
    let flow = visit_expressions_mut(statement, |expr| {
        let Expr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        if !function
            .name
            .0
            .last()
            .is_some_and(|n| n.to_string().eq_ignore_ascii_case("current_setting"))
        {
            return ControlFlow::Continue(());
        }
        let FunctionArguments::List(list) = &function.args else {
            return ControlFlow::Continue(());
        };
        let literal = |arg: Option<&FunctionArg>| match arg {
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => {
                Some(v.value.clone())
            }
            _ => None,
        };
        let Some(Value::SingleQuotedString(name)) = literal(list.args.first()) else {
            return ControlFlow::Continue(());
        };
        let missing_ok = matches!(literal(list.args.get(1)), Some(Value::Boolean(true)));
        match lookup(&name) {
            Ok(value) => *expr = Expr::value(Value::SingleQuotedString(value)),
            Err(_) if missing_ok => *expr = Expr::value(Value::Null),
            Err(e) => return ControlFlow::Break(e),
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// `(row).field` on a composite value (pgjdbc reads `(keys).x` from
/// `_pg_expandarray`) is DataFusion's `get_field(row, 'field')`; its SQL
/// planner takes dot access after parentheses only for map keys.
pub fn field_accesses(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::CompoundFieldAccess { root, access_chain } = expr
            && matches!(root.as_ref(), Expr::Nested(_))
            && access_chain
                .iter()
                .all(|a| matches!(a, AccessExpr::Dot(Expr::Identifier(_))))
        {
            let mut value = std::mem::replace(root.as_mut(), Expr::value(Value::Null));
            for access in access_chain.drain(..) {
                if let AccessExpr::Dot(Expr::Identifier(field)) = access {
                    value = call_function(
                        "get_field",
                        vec![value, Expr::value(Value::SingleQuotedString(field.value))],
                    );
                }
            }
            *expr = value;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `generate_subscripts(a, 1)` in a select list (SQLAlchemy pairs it with
/// `unnest(a)` to number a key's columns) is each position of `a` in turn:
/// `unnest(range(1, array_length(a, 1) + 1))` (the length cast to BIGINT,
/// which `range` takes), which DataFusion zips with
/// the other `unnest` as Postgres does.
pub fn generate_subscripts(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Function(function) = expr
            && function
                .name
                .0
                .last()
                .is_some_and(|n| n.to_string().eq_ignore_ascii_case("generate_subscripts"))
            && let FunctionArguments::List(list) = &function.args
            && let [
                FunctionArg::Unnamed(FunctionArgExpr::Expr(array)),
                FunctionArg::Unnamed(FunctionArgExpr::Expr(dimension)),
            ] = list.args.as_slice()
            && let Ok(rewritten) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&format!(
                    "unnest(range(1, CAST(array_length({array}, {dimension}) AS BIGINT) + 1))"
                ))
                .and_then(|mut p| p.parse_expr())
        {
            *expr = rewritten;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `LIKE pattern ESCAPE 'c'` with an escape character other than the
/// backslash (SQLAlchemy's `autoescape` uses `/`), which DataFusion
/// refuses: the pattern is rewritten to backslash escapes by
/// `like_escape_backslash(pattern, 'c')` (a server function), and the
/// backslash is DataFusion's default escape. Applies to every statement:
/// the meaning of the LIKE is unchanged.
pub fn like_escapes(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Like {
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char,
            ..
        } = expr
            && let Some(escape) = escape_char.take()
        {
            let is_backslash = matches!(&escape.value, Value::SingleQuotedString(c) if c == "\\");
            if is_backslash {
                *escape_char = Some(escape);
            } else {
                let original = std::mem::replace(pattern.as_mut(), Expr::value(Value::Null));
                **pattern = call_function(
                    "like_escape_backslash",
                    vec![original, Expr::value(escape.value)],
                );
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `pg_type`'s regproc columns (`typinput`, `typoutput`, ...) hold
/// function names in `datafusion-pg-catalog`, which turns `'f'::regproc`
/// into a lookup of `f`'s OID: comparing the two made DataFusion cast every
/// name to an integer (pgjdbc `getTypeInfo`: invalid input syntax for type
/// integer: "boolin"). Compared with such a column, the cast is the bare
/// name it names.
pub fn regproc_names(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::BinaryOp { left, op, right } = expr
            && matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq)
        {
            if is_regproc_column(left)
                && let Some(name) = proc_lookup_name(right)
            {
                **right = Expr::value(Value::SingleQuotedString(name));
            } else if is_regproc_column(right)
                && let Some(name) = proc_lookup_name(left)
            {
                **left = Expr::value(Value::SingleQuotedString(name));
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

const REGPROC_COLUMNS: &[&str] = &[
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
];

fn is_regproc_column(expr: &Expr) -> bool {
    let name = match expr {
        Expr::Identifier(ident) => &ident.value,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(ident) => &ident.value,
            None => return false,
        },
        _ => return false,
    };
    REGPROC_COLUMNS.contains(&name.to_ascii_lowercase().as_str())
}

/// The function name of `(SELECT oid FROM pg_catalog.pg_proc WHERE proname
/// = 'name')`, the compatibility layer's form of `'name'::regproc`,
/// without a `pg_catalog.` qualifier.
fn proc_lookup_name(expr: &Expr) -> Option<String> {
    let Expr::Subquery(query) = expr else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let from = select
        .from
        .first()?
        .relation
        .to_string()
        .to_ascii_lowercase();
    if !from.ends_with("pg_proc") {
        return None;
    }
    let Some(Expr::BinaryOp {
        right,
        op: BinaryOperator::Eq,
        ..
    }) = &select.selection
    else {
        return None;
    };
    let Expr::Value(value) = right.as_ref() else {
        return None;
    };
    let Value::SingleQuotedString(name) = &value.value else {
        return None;
    };
    Some(name.trim_start_matches("pg_catalog.").to_string())
}

fn call_function(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
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

    #[test]
    fn expandarray_calls_are_unnested() {
        let mut statement = parse(
            "SELECT (information_schema._pg_expandarray(i.indkey)).n, \
             information_schema._pg_expandarray(i.indkey) AS keys FROM pg_index i",
        )
        .expect("parse")
        .remove(0);
        expand_arrays(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT (unnest(_pg_expandarray(i.indkey))).n, \
             unnest(_pg_expandarray(i.indkey)) AS keys FROM pg_index i"
        );
    }

    #[test]
    fn settings_become_literals() {
        let mut statement = parse(
            "SELECT current_setting('search_path'), pg_catalog.current_setting('nope', true)",
        )
        .expect("parse")
        .remove(0);
        substitute_settings(&mut statement, |name| match name {
            "search_path" => Ok("public".to_string()),
            other => Err(other.to_string()),
        })
        .expect("known settings");
        assert_eq!(statement.to_string(), "SELECT 'public', NULL");

        let mut unknown = parse("SELECT current_setting('nope')")
            .expect("parse")
            .remove(0);
        let err = substitute_settings(&mut unknown, |name| Err::<String, _>(name.to_string()));
        assert_eq!(err, Err("nope".to_string()));
    }

    #[test]
    fn field_access_and_subscripts() {
        let mut statement = parse(
            "SELECT (r.keys).x, generate_subscripts(i.indkey, 1) AS ord FROM r, i WHERE a LIKE 'x/_%' ESCAPE '/'",
        )
        .expect("parse")
        .remove(0);
        field_accesses(&mut statement);
        generate_subscripts(&mut statement);
        like_escapes(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT get_field((r.keys), 'x'), unnest(range(1, CAST(array_length(i.indkey, 1) AS BIGINT) + 1)) AS ord \
             FROM r, i WHERE a LIKE like_escape_backslash('x/_%', '/')"
        );
    }

    #[test]
    fn array_subqueries_aggregate() {
        let mut statement = parse(
            "SELECT array_to_string(array(SELECT rolname FROM pg_roles WHERE oid = 1 ORDER BY 1), ',')",
        )
        .expect("parse")
        .remove(0);
        array_subqueries(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT array_to_string((SELECT array_agg(rolname ORDER BY rolname) FROM pg_roles WHERE oid = 1), ',')"
        );
    }
}
