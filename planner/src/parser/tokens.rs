//! Small readers of sqlparser tokens shared by Weir's own statement parsers
//! (sinks, SUBSCRIBE, FLUSH, cursors, the WATERMARK clause).

use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

/// An unquoted word, upper-cased (a keyword as written in any case).
pub(super) fn word(t: &TokenWithSpan) -> Option<String> {
    match &t.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_uppercase()),
        _ => None,
    }
}

/// The first `n` tokens as upper-cased words (empty for anything else).
pub(super) fn leading_words(tokens: &[&TokenWithSpan], n: usize) -> Vec<String> {
    tokens
        .iter()
        .take(n)
        .map(|t| word(t).unwrap_or_default())
        .collect()
}

/// An identifier as Postgres folds it: quoted as written, unquoted
/// lower-cased.
pub(super) fn ident(t: &TokenWithSpan) -> Option<String> {
    match &t.token {
        Token::Word(w) if w.quote_style.is_some() => Some(w.value.clone()),
        Token::Word(w) => Some(w.value.to_lowercase()),
        _ => None,
    }
}

/// sqlparser's "Expected: ..., found: ..." error, with the token's position.
pub(super) fn expected(what: &str, found: Option<&&TokenWithSpan>) -> ParserError {
    ParserError::ParserError(match found {
        Some(t) => format!(
            "Expected: {what}, found: {} at Line: {}, Column: {}",
            t.token, t.span.start.line, t.span.start.column
        ),
        None => format!("Expected: {what}, found: EOF"),
    })
}
