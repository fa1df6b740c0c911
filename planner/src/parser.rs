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

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::error::{PlanError, Result};

/// Deep nesting is refused with an error instead of recursing without bound.
const RECURSION_LIMIT: usize = 64;

/// How many operators may chain into one expression (`1 + 1 + ...`,
/// `a OR b OR ...`, `x::int8::int8...`, `SELECT 1 UNION ALL SELECT 1 ...`).
/// sqlparser builds such a chain in a loop, without the recursion limit
/// noticing, as a tree as deep as the chain is long; everything after it
/// (rewriting, planning, cloning, dropping) recurses down that tree. This
/// bound keeps every such recursion well inside a thread's stack, even the
/// 2 MiB of a connection thread that drops a prepared statement. It is also
/// low because DataFusion's optimizer costs more than linear time in a
/// chain's length (a 1,000-term `+` chain took minutes in a debug build).
pub const MAX_EXPRESSION_DEPTH: usize = 500;

/// One statement of a request, with where it came from.
#[derive(Debug, Clone)]
pub struct Piece {
    /// What was parsed.
    pub kind: PieceKind,
    /// The statement's text (after Weir's same-length rewrites).
    pub text: String,
    /// Characters in the request before `text` starts.
    pub offset: usize,
}

/// What a piece of a request is.
#[derive(Debug, Clone)]
pub enum PieceKind {
    /// A statement sqlparser parsed, with what Weir's syntax added to it.
    Sql {
        /// The statement.
        statement: Box<Statement>,
        /// `CREATE STREAM` / `DROP STREAM` (parsed as `TABLE`).
        stream: bool,
        /// `WATERMARK FOR column AS expression`, when declared.
        watermark: Option<WatermarkClause>,
        /// `EMIT ON WINDOW CLOSE` was given.
        emit_on_window_close: bool,
    },
    /// `SUBSCRIBE TO name`, or its `COPY (...) TO STDOUT` form.
    Subscribe {
        /// The view subscribed to (normalized).
        name: String,
        /// The COPY form: rows stream as COPY data.
        copy: bool,
    },
    /// `FLUSH [view]`: wait until everything written so far is visible in
    /// views (in that one view).
    Flush {
        /// The view named, normalized.
        view: Option<String>,
    },
    /// `CREATE SINK [IF NOT EXISTS] name FROM view WITH (key = 'value', ...)`.
    CreateSink {
        /// The sink (normalized).
        name: String,
        /// `IF NOT EXISTS` given.
        if_not_exists: bool,
        /// The view it writes out (normalized).
        from: String,
        /// The connector options, keys lowercased.
        options: Vec<(String, String)>,
    },
    /// `DROP SINK [IF EXISTS] names`.
    DropSink {
        /// Normalized names.
        names: Vec<String>,
        /// `IF EXISTS` given.
        if_exists: bool,
    },
    /// `DECLARE name CURSOR FOR SUBSCRIBE TO view`.
    DeclareCursor {
        /// The cursor (normalized).
        name: String,
        /// The view subscribed to (normalized).
        view: String,
    },
    /// `FETCH [n | ALL] [FROM] cursor [WITH (timeout = '...')]`.
    Fetch {
        /// The cursor (normalized).
        cursor: String,
        /// How many rows.
        count: crate::cursor::FetchCount,
        /// How long to wait for a first row, as written (`None`: as long
        /// as it takes).
        timeout: Option<String>,
    },
    /// `CLOSE cursor`, or `CLOSE ALL` (`None`).
    CloseCursor {
        /// The cursor (normalized).
        name: Option<String>,
    },
}

/// A stream's declared watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkClause {
    /// The event-time column (normalized).
    pub column: String,
    /// The watermark expression as written, e.g. `ts - INTERVAL '2 seconds'`.
    pub expr: String,
}

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
                    let at = local(significant[1].span.start);
                    for (i, c) in "TABLE ".chars().enumerate() {
                        text[at + i] = c;
                    }
                }
                let watermark = if stream && words[0] == "CREATE" {
                    cut_watermark(&significant, &mut text, &local)?
                } else {
                    None
                };
                let emit_on_window_close =
                    cut_emit_on_window_close(&significant, &mut text, &local);
                let piece_text: String = text.iter().collect();
                let statement = parse_one(&piece_text, start, sql)?;
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

/// Refuse a statement whose operators could chain deeper than
/// [`MAX_EXPRESSION_DEPTH`], before sqlparser builds the tree.
///
/// An upper bound from tokens alone: every operator since the last comma at
/// each open bracket may add a level, and so may every open bracket. It
/// over-counts (`a = 1 AND b = 2` counts three) but never under-counts a
/// chain, and a wide list (`SELECT 1, 1, ...`, `IN (1, 2, ...)`) counts one
/// item at a time.
fn check_depth(tokens: &[TokenWithSpan]) -> Result<()> {
    // Operators since the last comma, per open bracket (the first entry is
    // the statement's top level).
    let mut open: Vec<usize> = vec![0];
    let mut chained = 0usize;
    for t in tokens {
        match &t.token {
            Token::LParen | Token::LBracket => open.push(0),
            Token::RParen | Token::RBracket if open.len() > 1 => {
                chained -= open.pop().unwrap_or(0);
            }
            Token::Comma => {
                if let Some(last) = open.last_mut() {
                    chained -= *last;
                    *last = 0;
                }
            }
            token if chains(token) => {
                if let Some(last) = open.last_mut() {
                    *last += 1;
                }
                chained += 1;
                if chained + open.len() > MAX_EXPRESSION_DEPTH {
                    return Err(PlanError::StackDepth {
                        hint: format!(
                            "the statement chains or nests more than {MAX_EXPRESSION_DEPTH} operators into one expression"
                        ),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Tokens that join what is before and after them into one deeper node: the
/// binary and postfix operators, and the keywords that act as them.
fn chains(token: &Token) -> bool {
    use datafusion::sql::sqlparser::keywords::Keyword;
    match token {
        Token::Word(w) => {
            w.quote_style.is_none()
                && matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::NOT
                        | Keyword::XOR
                        | Keyword::UNION
                        | Keyword::EXCEPT
                        | Keyword::INTERSECT
                        | Keyword::MINUS
                        | Keyword::IS
                        | Keyword::LIKE
                        | Keyword::ILIKE
                        | Keyword::SIMILAR
                        | Keyword::BETWEEN
                        | Keyword::IN
                        | Keyword::COLLATE
                        | Keyword::AT
                        | Keyword::OVERLAPS
                )
        }
        Token::DoubleEq
        | Token::Eq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Spaceship
        | Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::DuckIntDiv
        | Token::Mod
        | Token::StringConcat
        | Token::DoubleColon
        | Token::Colon
        | Token::Ampersand
        | Token::Pipe
        | Token::Caret
        | Token::Sharp
        | Token::DoubleSharp
        | Token::Tilde
        | Token::TildeAsterisk
        | Token::ExclamationMarkTilde
        | Token::ExclamationMarkTildeAsterisk
        | Token::DoubleTilde
        | Token::DoubleTildeAsterisk
        | Token::ExclamationMarkDoubleTilde
        | Token::ExclamationMarkDoubleTildeAsterisk
        | Token::ShiftLeft
        | Token::ShiftRight
        | Token::Arrow
        | Token::LongArrow
        | Token::HashArrow
        | Token::HashLongArrow
        | Token::HashMinus
        | Token::AtArrow
        | Token::ArrowAt
        | Token::AtQuestion
        | Token::AtAt
        | Token::Question
        | Token::QuestionAnd
        | Token::QuestionPipe
        | Token::ExclamationMark
        | Token::CustomBinaryOperator(_) => true,
        _ => false,
    }
}

pub(crate) fn word(t: &TokenWithSpan) -> Option<String> {
    match &t.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_uppercase()),
        _ => None,
    }
}

fn leading_words(tokens: &[&TokenWithSpan], n: usize) -> Vec<String> {
    tokens
        .iter()
        .take(n)
        .map(|t| word(t).unwrap_or_default())
        .collect()
}

pub(crate) fn ident(t: &TokenWithSpan) -> Option<String> {
    match &t.token {
        Token::Word(w) if w.quote_style.is_some() => Some(w.value.clone()),
        Token::Word(w) => Some(w.value.to_lowercase()),
        _ => None,
    }
}

/// SUBSCRIBE / COPY (SUBSCRIBE ...) TO STDOUT / FLUSH / CREATE and DROP SINK.
fn special(tokens: &[&TokenWithSpan]) -> std::result::Result<Option<PieceKind>, ParserError> {
    let words = leading_words(tokens, 8);
    if words.len() >= 2 && words[1] == "SINK" {
        match words[0].as_str() {
            "CREATE" => return create_sink(tokens).map(Some),
            "DROP" => return drop_sink(tokens).map(Some),
            _ => {}
        }
    }
    if let Some(cursor) = crate::cursor::parse(tokens)? {
        return Ok(Some(cursor));
    }
    Ok(subscribe_or_flush(tokens, &words))
}

pub(crate) fn expected(what: &str, found: Option<&&TokenWithSpan>) -> ParserError {
    ParserError::ParserError(match found {
        Some(t) => format!(
            "Expected: {what}, found: {} at Line: {}, Column: {}",
            t.token, t.span.start.line, t.span.start.column
        ),
        None => format!("Expected: {what}, found: EOF"),
    })
}

/// `CREATE SINK [IF NOT EXISTS] name FROM view WITH (options)`.
fn create_sink(tokens: &[&TokenWithSpan]) -> std::result::Result<PieceKind, ParserError> {
    let mut at = 2;
    let if_not_exists = leading_words(&tokens[at..], 3) == ["IF", "NOT", "EXISTS"];
    if if_not_exists {
        at += 3;
    }
    let name = tokens
        .get(at)
        .and_then(|t| ident(t))
        .ok_or_else(|| expected("a sink name", tokens.get(at)))?;
    at += 1;
    if tokens.get(at).and_then(|t| word(t)).as_deref() != Some("FROM") {
        return Err(expected("FROM", tokens.get(at)));
    }
    at += 1;
    let from = tokens
        .get(at)
        .and_then(|t| ident(t))
        .ok_or_else(|| expected("the name of a materialized view", tokens.get(at)))?;
    at += 1;
    if tokens.get(at).and_then(|t| word(t)).as_deref() != Some("WITH") {
        return Err(expected("WITH (connector = ...)", tokens.get(at)));
    }
    // The options are sqlparser's `WITH (key = value, ...)`.
    let rest: Vec<String> = tokens[at..].iter().map(|t| t.token.to_string()).collect();
    let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(&rest.join(" "))?;
    let options = parser.parse_options(datafusion::sql::sqlparser::keywords::Keyword::WITH)?;
    if parser.peek_token().token != Token::EOF {
        return Err(ParserError::ParserError(format!(
            "Expected: end of statement, found: {}",
            parser.peek_token().token
        )));
    }
    let options = crate::statement::sql_options(options)
        .map_err(|e| ParserError::ParserError(e.to_string()))?;
    Ok(PieceKind::CreateSink {
        name,
        if_not_exists,
        from,
        options,
    })
}

/// `DROP SINK [IF EXISTS] name, ...`.
fn drop_sink(tokens: &[&TokenWithSpan]) -> std::result::Result<PieceKind, ParserError> {
    let mut at = 2;
    let if_exists = leading_words(&tokens[at..], 2) == ["IF", "EXISTS"];
    if if_exists {
        at += 2;
    }
    let mut names = Vec::new();
    loop {
        names.push(
            tokens
                .get(at)
                .and_then(|t| ident(t))
                .ok_or_else(|| expected("a sink name", tokens.get(at)))?,
        );
        at += 1;
        match tokens.get(at).map(|t| &t.token) {
            None => break,
            Some(Token::Comma) => at += 1,
            Some(_) => return Err(expected("a comma or the end", tokens.get(at))),
        }
    }
    Ok(PieceKind::DropSink { names, if_exists })
}

/// SUBSCRIBE / COPY (SUBSCRIBE ...) TO STDOUT / FLUSH.
fn subscribe_or_flush(tokens: &[&TokenWithSpan], words: &[String]) -> Option<PieceKind> {
    match words.first().map(String::as_str) {
        Some("FLUSH") if tokens.len() == 1 => Some(PieceKind::Flush { view: None }),
        Some("FLUSH") if tokens.len() == 2 => {
            ident(tokens[1]).map(|name| PieceKind::Flush { view: Some(name) })
        }
        Some("SUBSCRIBE") => {
            let name_at = if words.get(1).is_some_and(|w| w == "TO") {
                2
            } else {
                1
            };
            (tokens.len() == name_at + 1)
                .then(|| ident(tokens[name_at]))
                .flatten()
                .map(|name| PieceKind::Subscribe { name, copy: false })
        }
        Some("COPY") if matches!(tokens.get(1).map(|t| &t.token), Some(Token::LParen)) => {
            // COPY ( SUBSCRIBE [TO] name ) TO STDOUT [...]
            let inner: Vec<&TokenWithSpan> = tokens[2..].to_vec();
            if word(inner.first()?)? != "SUBSCRIBE" {
                return None;
            }
            let name_at = if inner
                .get(1)
                .and_then(|t| word(t))
                .is_some_and(|w| w == "TO")
            {
                2
            } else {
                1
            };
            let name = ident(inner.get(name_at)?)?;
            let close = inner.get(name_at + 1)?;
            let to = inner.get(name_at + 2).and_then(|t| word(t));
            let out = inner.get(name_at + 3).and_then(|t| word(t));
            (matches!(close.token, Token::RParen)
                && to.as_deref() == Some("TO")
                && out.as_deref() == Some("STDOUT"))
            .then_some(PieceKind::Subscribe { name, copy: true })
        }
        _ => None,
    }
}

/// Find `WATERMARK FOR col AS expr` inside the column list, blank it (and
/// the comma before it) out of `text`, and return it.
fn cut_watermark(
    tokens: &[&TokenWithSpan],
    text: &mut [char],
    local: &dyn Fn(Location) -> usize,
) -> Result<Option<WatermarkClause>> {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth != 1 || word(t).as_deref() != Some("WATERMARK") {
            continue;
        }
        let column = tokens.get(i + 2).and_then(|t| ident(t));
        let is_for = tokens.get(i + 1).and_then(|t| word(t)).as_deref() == Some("FOR");
        let is_as = tokens.get(i + 3).and_then(|t| word(t)).as_deref() == Some("AS");
        let (Some(column), true, true) = (column, is_for, is_as) else {
            return Err(PlanError::Syntax {
                message: "syntax error in WATERMARK clause".to_string(),
                detail: Some("expected WATERMARK FOR column AS expression".to_string()),
                position: None,
            });
        };
        // The expression runs to the `,` or `)` that ends this element.
        let mut j = i + 4;
        let mut inner = 0;
        while let Some(t) = tokens.get(j) {
            match t.token {
                Token::LParen => inner += 1,
                Token::RParen if inner == 0 => break,
                Token::RParen => inner -= 1,
                Token::Comma if inner == 0 => break,
                _ => {}
            }
            j += 1;
        }
        if j == i + 4 || j >= tokens.len() {
            return Err(PlanError::Syntax {
                message: "syntax error in WATERMARK clause".to_string(),
                detail: Some("expected an expression after AS".to_string()),
                position: None,
            });
        }
        let expr_start = local(tokens[i + 4].span.start);
        let expr_end = local(tokens[j - 1].span.end);
        let expr: String = text[expr_start..expr_end].iter().collect();
        // Blank from the comma before WATERMARK (or WATERMARK itself) to the
        // end of the expression.
        let from = match tokens.get(i.wrapping_sub(1)) {
            Some(prev) if matches!(prev.token, Token::Comma) => local(prev.span.start),
            _ => local(t.span.start),
        };
        let to = if matches!(tokens[j].token, Token::Comma) && from == local(t.span.start) {
            local(tokens[j].span.end)
        } else {
            expr_end
        };
        blank(text, from, to);
        return Ok(Some(WatermarkClause { column, expr }));
    }
    Ok(None)
}

/// Blank a trailing `EMIT ON WINDOW CLOSE`.
fn cut_emit_on_window_close(
    tokens: &[&TokenWithSpan],
    text: &mut [char],
    local: &dyn Fn(Location) -> usize,
) -> bool {
    let n = tokens.len();
    if n < 4 {
        return false;
    }
    let tail: Vec<String> = tokens[n - 4..]
        .iter()
        .map(|t| word(t).unwrap_or_default())
        .collect();
    if tail == ["EMIT", "ON", "WINDOW", "CLOSE"] {
        blank(
            text,
            local(tokens[n - 4].span.start),
            local(tokens[n - 1].span.end),
        );
        return true;
    }
    false
}

fn blank(text: &mut [char], from: usize, to: usize) {
    let to = to.min(text.len());
    for c in text.iter_mut().take(to).skip(from) {
        if *c != '\n' {
            *c = ' ';
        }
    }
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
