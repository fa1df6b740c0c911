//! Weir's statements that sqlparser does not know, parsed from tokens:
//! `SUBSCRIBE TO v`, `COPY (SUBSCRIBE TO v) TO STDOUT`, `FLUSH [v]`,
//! `CREATE SINK s FROM v WITH (...)`, `DROP SINK [IF EXISTS] s`, and the
//! cursor statements (`super::cursor`).

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::pieces::PieceKind;
use super::tokens::{expected, ident, leading_words, word};

/// SUBSCRIBE / COPY (SUBSCRIBE ...) TO STDOUT / FLUSH / CREATE and DROP SINK.
pub(super) fn special(
    tokens: &[&TokenWithSpan],
) -> std::result::Result<Option<PieceKind>, ParserError> {
    let words = leading_words(tokens, 8);
    if words.len() >= 2 && words[1] == "SINK" {
        match words[0].as_str() {
            "CREATE" => return create_sink(tokens).map(Some),
            "DROP" => return drop_sink(tokens).map(Some),
            _ => {}
        }
    }
    if let Some(cursor) = super::cursor::parse(tokens)? {
        return Ok(Some(cursor));
    }
    Ok(subscribe_or_flush(tokens, &words))
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
    let options = crate::normalize::sql_options(options)
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
