//! Syntax errors in Postgres style: sqlparser's messages turned into
//! "syntax error at or near ...", with the position the protocol's error
//! field carries.

use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::Location;

use super::depth::RECURSION_LIMIT;
use crate::error::PlanError;

/// Turn a sqlparser error into a Postgres-style syntax error with a position.
pub fn syntax_error(sql: &str, err: ParserError) -> PlanError {
    let raw = match err {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => {
            return PlanError::StackDepth {
                hint: format!(
                    "the statement nests more than {RECURSION_LIMIT} levels of parentheses, subqueries or function calls"
                ),
            };
        }
    };
    let (text, location) = split_location(&raw);
    let mut position = location.map(|loc| location_to_position(sql, loc));
    let message = match text.rsplit_once(", found: ") {
        Some((_, "EOF")) => {
            // sqlparser gives the end no location; PostgreSQL points just
            // past the statement's last character.
            if location.is_none_or(|loc| loc.line == 0) {
                position = Some(sql.trim_end().trim_end_matches(';').chars().count() + 1);
            }
            "syntax error at end of input".to_string()
        }
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
    fn a_statement_cut_short_points_past_its_end() {
        let sql = "SELECT 1 +";
        let err = syntax_error(
            sql,
            ParserError::ParserError("Expected: an expression, found: EOF".into()),
        );
        let PlanError::Syntax {
            message, position, ..
        } = err
        else {
            panic!("not a syntax error: {err:?}");
        };
        assert_eq!(message, "syntax error at end of input");
        assert_eq!(position, Some(sql.len() + 1));
    }
}
