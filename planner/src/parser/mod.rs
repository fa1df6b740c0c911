//! Parsing SQL text with source spans, so errors can point into the text,
//! and Weir's own statements on top of the Postgres dialect.
//!
//! A request is split into statements at top-level `;`. Each statement is
//! parsed on its own, and remembers where it starts in the request, so a
//! position inside it (sqlparser's or DataFusion's) maps back to the text the
//! client sent. Weir's additions are handled before sqlparser sees them:
//!
//! - `SUBSCRIBE TO v`, `COPY (SUBSCRIBE TO v) TO STDOUT`, `FLUSH`,
//!   `CREATE SINK s FROM v WITH (...)`, `DROP SINK [IF EXISTS] s`: parsed
//!   here.
//! - `CREATE STREAM` / `DROP STREAM`: `STREAM` is read as `TABLE` (same
//!   length, so positions hold), and the `WATERMARK FOR col AS expr` clause is
//!   cut out of the column list (blanked, again keeping positions).
//! - `... EMIT ON WINDOW CLOSE` after a materialized view's query: blanked and
//!   remembered.
//! - `FOR SYSTEM_TIME AS OF s.ts` after a table (a lookup join): blanked,
//!   then put back on its table in the AST (`system_time`).
//!
//! # Layout
//! - `pieces`: what the parser hands on ([`Piece`], [`PieceKind`]).
//! - `weir_syntax` and `cursor`: Weir's statements, parsed from tokens.
//! - `rewrites`: the same-length rewrites (`STREAM`, `WATERMARK`, `EMIT`).
//! - `depth`: nesting and chaining limits, checked on tokens first.
//! - `errors`: Postgres-style syntax errors with positions.
//! - `tokens`: small token readers the others share.

mod cursor;
mod depth;
mod errors;
mod pieces;
mod rewrites;
mod system_time;
mod tokens;
mod weir_syntax;

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

pub use depth::MAX_EXPRESSION_DEPTH;
pub use errors::{location_to_position, syntax_error};
pub use pieces::{FetchCount, Piece, PieceKind, WatermarkClause};
pub use weir_syntax::{JobAction, JobStatement};

use crate::error::{PlanError, Result};
use depth::{RECURSION_LIMIT, check_depth};
use rewrites::{cut_emit_on_window_close, cut_watermark, stream_as_table};
use tokens::leading_words;
use weir_syntax::special;

/// Parse a request of one or more statements in the Postgres dialect (a
/// convenience for callers that need only sqlparser statements).
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    parse_request(sql)?
        .into_iter()
        .map(|piece| match piece.kind {
            PieceKind::Sql { statement, .. } => Ok(*statement),
            _ => Err(PlanError::Invalid(
                "SUBSCRIBE, FLUSH and sinks cannot be used here".to_string(),
            )),
        })
        .collect()
}

/// Parse a request into pieces.
pub fn parse_request(sql: &str) -> Result<Vec<Piece>> {
    let chars: Vec<char> = sql.chars().collect();
    let line_starts = line_starts(&chars);
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| syntax_error(sql, ParserError::TokenizerError(e.to_string())))?;
    let mut pieces = Vec::new();
    for range in split_statements(&tokens) {
        check_depth(&tokens[range.clone()])?;
        let significant: Vec<&TokenWithSpan> = tokens[range.clone()]
            .iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect();
        if significant.is_empty() {
            continue;
        }
        let start = char_index(&line_starts, significant[0].span.start);
        let end = char_index(&line_starts, significant[significant.len() - 1].span.end);
        let mut text: Vec<char> = chars[start..end.max(start)].to_vec();
        let local = |loc: Location| char_index(&line_starts, loc) - start;
        let kind = match special(&significant).map_err(|e| syntax_error(sql, e))? {
            Some(kind) => kind,
            None => {
                let words = leading_words(&significant, 3);
                let stream = matches!(
                    words.as_slice(),
                    [a, b, ..] if (a == "CREATE" || a == "DROP") && b == "STREAM"
                );
                if stream {
                    // `STREAM` -> `TABLE ` keeps every position in place.
                    stream_as_table(&mut text, local(significant[1].span.start));
                }
                let watermark = if stream && words[0] == "CREATE" {
                    cut_watermark(&significant, &mut text, &local)?
                } else {
                    None
                };
                let emit_on_window_close =
                    cut_emit_on_window_close(&significant, &mut text, &local);
                let lookups = system_time::cut_system_time(&significant, &mut text, &local, start)?;
                let piece_text: String = text.iter().collect();
                let mut statement = parse_one(&piece_text, start, sql)?;
                system_time::attach(&mut statement, &piece_text, lookups, start)?;
                PieceKind::Sql {
                    statement: Box::new(statement),
                    stream,
                    watermark,
                    emit_on_window_close,
                }
            }
        };
        pieces.push(Piece {
            kind,
            text: text.into_iter().collect(),
            offset: start,
        });
    }
    Ok(pieces)
}

fn parse_one(text: &str, offset: usize, request: &str) -> Result<Statement> {
    let mut statements = Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|err| shift(syntax_error(text, err), offset))?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        _ => Err(PlanError::Syntax {
            message: "syntax error".to_string(),
            detail: Some(format!("could not split \"{request}\" into statements")),
            position: Some(offset + 1),
        }),
    }
}

fn shift(err: PlanError, offset: usize) -> PlanError {
    match err {
        PlanError::Syntax {
            message,
            detail,
            position,
        } => PlanError::Syntax {
            message,
            detail,
            position: position.map(|p| p + offset),
        },
        other => other,
    }
}

/// Token ranges of the statements, split at `;` outside parentheses.
fn split_statements(tokens: &[TokenWithSpan]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut depth) = (0usize, 0i32);
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => {
                ranges.push(start..i);
                start = i + 1;
            }
            _ => {}
        }
    }
    ranges.push(start..tokens.len());
    ranges
}

fn line_starts(chars: &[char]) -> Vec<usize> {
    let mut starts = vec![0];
    for (i, c) in chars.iter().enumerate() {
        if *c == '\n' {
            starts.push(i + 1);
        }
    }
    starts
}

/// A 1-based line/column as a 0-based character index.
fn char_index(line_starts: &[usize], loc: Location) -> usize {
    let line = (loc.line.max(1) - 1) as usize;
    line_starts.get(line).copied().unwrap_or(0) + (loc.column.max(1) - 1) as usize
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

    #[test]
    fn create_stream_with_watermark() {
        let sql = "CREATE STREAM bids (auction BIGINT, ts TIMESTAMP,\n  WATERMARK FOR ts AS ts - INTERVAL '2 seconds') WITH (connector = 'nexmark')";
        let pieces = parse_request(sql).expect("parse");
        let PieceKind::Sql {
            statement,
            stream,
            watermark,
            ..
        } = &pieces[0].kind
        else {
            panic!("not sql")
        };
        assert!(stream);
        assert_eq!(
            watermark.as_ref().expect("watermark"),
            &WatermarkClause {
                column: "ts".into(),
                expr: "ts - INTERVAL '2 seconds'".into()
            }
        );
        assert!(
            statement
                .to_string()
                .starts_with("CREATE TABLE bids (auction BIGINT, ts TIMESTAMP)"),
            "{statement}"
        );
        assert_eq!(pieces[0].text.chars().count(), sql.chars().count());
    }

    #[test]
    fn weir_statements_and_positions_per_piece() {
        let pieces = parse_request(
            "SUBSCRIBE TO v; COPY (SUBSCRIBE v) TO STDOUT;FLUSH; CREATE MATERIALIZED VIEW m AS SELECT 1 EMIT ON WINDOW CLOSE",
        )
        .expect("parse");
        assert!(
            matches!(&pieces[0].kind, PieceKind::Subscribe { name, copy: false } if name == "v")
        );
        assert!(
            matches!(&pieces[1].kind, PieceKind::Subscribe { name, copy: true } if name == "v")
        );
        assert!(matches!(pieces[2].kind, PieceKind::Flush { view: None }));
        assert!(matches!(
            pieces[3].kind,
            PieceKind::Sql {
                emit_on_window_close: true,
                ..
            }
        ));
        assert_eq!(pieces[3].offset, 52);

        let err = parse_request("SELECT 1; SELECT * FORM t WHERE").expect_err("syntax");
        assert!(
            matches!(err, PlanError::Syntax { position: Some(p), .. } if p > 10),
            "{err:?}"
        );
    }
}
