//! Weir's same-length rewrites of a statement's text before sqlparser reads
//! it: `CREATE STREAM` read as `CREATE TABLE`, the `WATERMARK FOR col AS
//! expr` clause and a trailing `EMIT ON WINDOW CLOSE` blanked out and
//! remembered. Every rewrite keeps each character where it was, so positions
//! in errors still point into the text the client sent.

use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use super::pieces::WatermarkClause;
use super::tokens::{ident, word};
use crate::error::{PlanError, Result};

/// Overwrite `STREAM` (at `at`) with `TABLE ` (same length).
pub(super) fn stream_as_table(text: &mut [char], at: usize) {
    for (i, c) in "TABLE ".chars().enumerate() {
        text[at + i] = c;
    }
}

/// Find `WATERMARK FOR col AS expr` inside the column list, blank it (and
/// the comma before it) out of `text`, and return it.
pub(super) fn cut_watermark(
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
pub(super) fn cut_emit_on_window_close(
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
