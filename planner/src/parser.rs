//! Parsing SQL text with source spans, so errors can point into the text.

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Location;

use crate::error::{PlanError, Result};

/// Deep nesting is refused with an error instead of recursing without bound.
const RECURSION_LIMIT: usize = 64;

/// Parse `sql` (one or more `;`-separated statements) in the Postgres dialect.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|err| syntax_error(sql, err))
}

/// Turn a sqlparser error into a Postgres-style syntax error with a position.
pub fn syntax_error(sql: &str, err: ParserError) -> PlanError {
    let raw = match err {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => {
            return PlanError::Syntax {
                message: "statement is nested too deeply".to_string(),
                detail: None,
                position: None,
            };
        }
    };
    let (text, location) = split_location(&raw);
    let position = location.map(|loc| location_to_position(sql, loc));
    let message = match text.rsplit_once(", found: ") {
        Some((_, "EOF")) => "syntax error at end of input".to_string(),
        Some((_, found)) => format!("syntax error at or near \"{found}\""),
        None => lowercase_first(text),
    };
    PlanError::Syntax {
        message,
        detail: Some(text.to_string()),
        position,
    }
}

/// sqlparser appends " at Line: L, Column: C" to its messages.
fn split_location(raw: &str) -> (&str, Option<Location>) {
    let Some((text, loc)) = raw.rsplit_once(" at Line: ") else {
        return (raw.trim(), None);
    };
    let mut parts = loc.split(", Column: ");
    let line = parts.next().and_then(|l| l.trim().parse().ok());
    let column = parts.next().and_then(|c| c.trim().parse().ok());
    match (line, column) {
        (Some(line), Some(column)) => (text.trim(), Some(Location { line, column })),
        _ => (raw.trim(), None),
    }
}

/// A 1-based line/column in `sql` as the 1-based character offset that the
/// Postgres protocol's error position field carries.
pub fn location_to_position(sql: &str, loc: Location) -> usize {
    if loc.line == 0 {
        return 1;
    }
    let mut offset = 0;
    for (i, line) in sql.split('\n').enumerate() {
        if i as u64 + 1 == loc.line {
            let col = (loc.column.max(1) - 1) as usize;
            return offset + col.min(line.chars().count()) + 1;
        }
        offset += line.chars().count() + 1;
    }
    offset.max(1)
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_point_at_the_offending_token() {
        let err = parse("SELECT 1;\nSELEC x").expect_err("bad sql");
        match err {
            PlanError::Syntax {
                message, position, ..
            } => {
                assert_eq!(message, "syntax error at or near \"SELEC\"");
                assert_eq!(position, Some(11));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn truncated_statement_is_an_error_at_end_of_input() {
        let err = parse("SELECT * FROM").expect_err("bad sql");
        assert!(
            matches!(&err, PlanError::Syntax { message, .. } if message == "syntax error at end of input"),
            "{err:?}"
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let sql = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(parse(&sql).is_err());
    }
}
