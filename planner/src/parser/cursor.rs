//! Cursors over subscriptions: `DECLARE c CURSOR FOR SUBSCRIBE TO v`,
//! `FETCH [n | ALL | NEXT] [FROM | IN] c [WITH (timeout = '...')]`,
//! `CLOSE c | ALL`, as Materialize has them.
//!
//! A driver that cannot read an endless result (or a user who wants rows in
//! chunks) declares a cursor and fetches from it: each `FETCH n` returns up
//! to n rows, waiting until at least one is there (or the timeout passes).
//! Parsed from tokens here because sqlparser knows neither `SUBSCRIBE` nor
//! the `WITH (timeout)` option.

use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::pieces::{FetchCount, PieceKind};
use super::tokens::{expected, ident, word};

/// `DECLARE`, `FETCH` or `CLOSE`, if `tokens` are one of them over a
/// subscription; `None` leaves the statement to sqlparser.
pub(super) fn parse(tokens: &[&TokenWithSpan]) -> Result<Option<PieceKind>, ParserError> {
    match tokens.first().and_then(|t| word(t)).as_deref() {
        Some("DECLARE") => declare(tokens),
        Some("FETCH") => fetch(tokens).map(Some),
        Some("CLOSE") => close(tokens).map(Some),
        _ => Ok(None),
    }
}

/// `DECLARE name [BINARY] [NO SCROLL] CURSOR [WITH | WITHOUT HOLD] FOR
/// SUBSCRIBE [TO] view`.
fn declare(tokens: &[&TokenWithSpan]) -> Result<Option<PieceKind>, ParserError> {
    let Some(name) = tokens.get(1).and_then(|t| ident(t)) else {
        return Err(expected("a cursor name", tokens.get(1)));
    };
    let Some(for_at) = tokens
        .iter()
        .position(|t| word(t).as_deref() == Some("FOR"))
    else {
        return Ok(None);
    };
    if tokens.get(for_at + 1).and_then(|t| word(t)).as_deref() != Some("SUBSCRIBE") {
        // A cursor over a query: sqlparser's to parse (and Weir's to refuse).
        return Ok(None);
    }
    let options: Vec<String> = tokens[2..for_at]
        .iter()
        .map(|t| word(t).unwrap_or_default())
        .collect();
    if !options.iter().any(|w| w == "CURSOR") {
        return Err(expected("CURSOR", tokens.get(2)));
    }
    let subscription = &tokens[for_at + 1..];
    let name_at = if subscription.get(1).and_then(|t| word(t)).as_deref() == Some("TO") {
        2
    } else {
        1
    };
    let view = subscription
        .get(name_at)
        .and_then(|t| ident(t))
        .ok_or_else(|| expected("the name of a materialized view", subscription.get(name_at)))?;
    if let Some(extra) = subscription.get(name_at + 1) {
        return Err(expected("the end of the statement", Some(extra)));
    }
    Ok(Some(PieceKind::DeclareCursor { name, view }))
}

/// `FETCH [FORWARD] [n | ALL | NEXT] [FROM | IN] name [WITH (timeout = 'interval')]`.
fn fetch(tokens: &[&TokenWithSpan]) -> Result<PieceKind, ParserError> {
    let mut at = 1;
    let mut count = FetchCount::Rows(1);
    if tokens.get(at).and_then(|t| word(t)).as_deref() == Some("FORWARD") {
        at += 1;
    }
    match tokens.get(at).map(|t| &t.token) {
        Some(Token::Number(n, _)) => {
            let n: u64 = n
                .parse()
                .map_err(|_| expected("a row count", tokens.get(at)))?;
            count = FetchCount::Rows(n);
            at += 1;
        }
        Some(Token::Word(_)) => match word(tokens[at]).as_deref() {
            Some("ALL") => {
                count = FetchCount::All;
                at += 1;
            }
            Some("NEXT") => at += 1,
            _ => {}
        },
        _ => {}
    }
    if matches!(
        tokens.get(at).and_then(|t| word(t)).as_deref(),
        Some("FROM" | "IN")
    ) {
        at += 1;
    }
    let cursor = tokens
        .get(at)
        .and_then(|t| ident(t))
        .ok_or_else(|| expected("a cursor name", tokens.get(at)))?;
    at += 1;
    let mut timeout = None;
    if tokens.get(at).and_then(|t| word(t)).as_deref() == Some("WITH") {
        // WITH ( timeout = 'interval' )
        let option = tokens.get(at + 2).and_then(|t| word(t));
        let value = match tokens.get(at + 4).map(|t| &t.token) {
            Some(Token::SingleQuotedString(s)) => Some(s.clone()),
            Some(Token::Number(n, _)) => Some(format!("{n} seconds")),
            _ => None,
        };
        let shaped = matches!(tokens.get(at + 1).map(|t| &t.token), Some(Token::LParen))
            && matches!(tokens.get(at + 3).map(|t| &t.token), Some(Token::Eq))
            && matches!(tokens.get(at + 5).map(|t| &t.token), Some(Token::RParen));
        match (option.as_deref(), value, shaped) {
            (Some("TIMEOUT"), Some(value), true) => timeout = Some(value),
            _ => {
                return Err(expected(
                    "WITH (timeout = '<interval>')",
                    tokens.get(at + 1),
                ));
            }
        }
        at += 6;
    }
    if let Some(extra) = tokens.get(at) {
        return Err(expected("the end of the statement", Some(extra)));
    }
    Ok(PieceKind::Fetch {
        cursor,
        count,
        timeout,
    })
}

/// `CLOSE name` or `CLOSE ALL`.
fn close(tokens: &[&TokenWithSpan]) -> Result<PieceKind, ParserError> {
    let name = match tokens.get(1) {
        Some(t) if word(t).as_deref() == Some("ALL") => None,
        Some(t) => Some(ident(t).ok_or_else(|| expected("a cursor name", Some(t)))?),
        None => return Err(expected("a cursor name", None)),
    };
    if let Some(extra) = tokens.get(2) {
        return Err(expected("the end of the statement", Some(extra)));
    }
    Ok(PieceKind::CloseCursor { name })
}

#[cfg(test)]
mod tests {
    use crate::parser::{FetchCount, PieceKind, parse_request};

    fn kind(sql: &str) -> PieceKind {
        parse_request(sql).expect(sql).remove(0).kind
    }

    #[test]
    fn cursors_over_subscriptions() {
        assert!(matches!(
            kind("DECLARE c CURSOR FOR SUBSCRIBE TO v"),
            PieceKind::DeclareCursor { name, view } if name == "c" && view == "v"
        ));
        assert!(matches!(
            kind("declare \"C\" no scroll cursor without hold for subscribe V"),
            PieceKind::DeclareCursor { name, view } if name == "C" && view == "v"
        ));
        assert!(matches!(
            kind("FETCH 10 c"),
            PieceKind::Fetch { cursor, count: FetchCount::Rows(10), timeout: None } if cursor == "c"
        ));
        assert!(matches!(
            kind("FETCH ALL FROM c"),
            PieceKind::Fetch {
                count: FetchCount::All,
                ..
            }
        ));
        assert!(matches!(
            kind("FETCH FORWARD 3 IN c WITH (timeout = '1s')"),
            PieceKind::Fetch { count: FetchCount::Rows(3), timeout: Some(t), .. } if t == "1s"
        ));
        assert!(matches!(
            kind("FETCH c"),
            PieceKind::Fetch {
                count: FetchCount::Rows(1),
                ..
            }
        ));
        assert!(matches!(kind("CLOSE c"), PieceKind::CloseCursor { name: Some(n) } if n == "c"));
        assert!(matches!(
            kind("CLOSE ALL"),
            PieceKind::CloseCursor { name: None }
        ));
        assert!(parse_request("FETCH 10 c WITH (size = 3)").is_err());
        assert!(parse_request("FETCH 10").is_err());
    }
}
