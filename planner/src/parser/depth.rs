//! Limits on how deep a statement may nest or chain, checked before
//! sqlparser builds the tree, so that no later recursion can overflow a
//! thread's stack.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{PlanError, Result};

/// Deep nesting is refused with an error instead of recursing without bound.
pub(super) const RECURSION_LIMIT: usize = 64;

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

/// Refuse a statement whose operators could chain deeper than
/// [`MAX_EXPRESSION_DEPTH`], before sqlparser builds the tree.
///
/// An upper bound from tokens alone: every operator since the last comma at
/// each open bracket may add a level, and so may every open bracket. It
/// over-counts (`a = 1 AND b = 2` counts three) but never under-counts a
/// chain, and a wide list (`SELECT 1, 1, ...`, `IN (1, 2, ...)`) counts one
/// item at a time.
pub(super) fn check_depth(tokens: &[TokenWithSpan]) -> Result<()> {
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
