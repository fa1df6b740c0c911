//! Weir's statements that sqlparser does not know, parsed from tokens:
//! `SUBSCRIBE TO v`, `COPY (SUBSCRIBE TO v) TO STDOUT`, `FLUSH [v]`,
//! `CREATE [OR REPLACE] SINK s FROM v WITH (...)`, `DROP SINK [IF EXISTS] s`, the job
//! statements ([`JobStatement`]: `SHOW JOBS`, `SHOW JOB EVENTS j`,
//! `ALTER JOB j ...`, `CREATE SAVEPOINT sp FOR JOB j`, `SHOW SAVEPOINTS`,
//! `DROP SAVEPOINT sp`), and the cursor statements (`super::cursor`).
//!
//! SQL's transaction `SAVEPOINT name` never meets the job savepoints here:
//! it has no `CREATE`, `SHOW` or `DROP` before it.

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
            "CREATE" => return create_sink(tokens, 2, false).map(Some),
            "DROP" => return drop_sink(tokens).map(Some),
            _ => {}
        }
    }
    if words.len() >= 4 && words[..4] == ["CREATE", "OR", "REPLACE", "SINK"] {
        return create_sink(tokens, 4, true).map(Some);
    }
    if let Some(job) = job_statement(tokens, &words)? {
        return Ok(Some(PieceKind::Job(job)));
    }
    if let Some(cursor) = super::cursor::parse(tokens)? {
        return Ok(Some(cursor));
    }
    Ok(subscribe_or_flush(tokens, &words))
}

/// `CREATE [OR REPLACE] SINK [IF NOT EXISTS] name FROM view WITH
/// (options)`; the name starts at token `at` (after `SINK`).
fn create_sink(
    tokens: &[&TokenWithSpan],
    mut at: usize,
    or_replace: bool,
) -> std::result::Result<PieceKind, ParserError> {
    let if_not_exists = leading_words(&tokens[at..], 3) == ["IF", "NOT", "EXISTS"];
    if if_not_exists {
        if or_replace {
            // As Postgres: OR REPLACE and IF NOT EXISTS ask opposite things.
            return Err(ParserError::ParserError(
                "CREATE OR REPLACE SINK cannot be combined with IF NOT EXISTS".into(),
            ));
        }
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
        or_replace,
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

/// A statement about jobs and their savepoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatement {
    /// `SHOW JOBS`: every job and its status.
    ShowJobs,
    /// `SHOW JOB EVENTS name`: the job's transitions.
    ShowEvents {
        /// The job (normalized).
        job: String,
    },
    /// `ALTER JOB name <action>`.
    Alter {
        /// The job (normalized).
        job: String,
        /// What to do with it.
        action: JobAction,
    },
    /// `CREATE SAVEPOINT sp FOR JOB name`.
    CreateSavepoint {
        /// The savepoint (normalized).
        name: String,
        /// The job (normalized).
        job: String,
    },
    /// `SHOW SAVEPOINTS [FOR JOB name]`.
    ShowSavepoints {
        /// Only this job's (normalized).
        job: Option<String>,
    },
    /// `DROP SAVEPOINT [IF EXISTS] sp`.
    DropSavepoint {
        /// The savepoint (normalized).
        name: String,
        /// `IF EXISTS` given.
        if_exists: bool,
    },
}

/// What `ALTER JOB` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAction {
    /// `SUSPEND`: stop with a savepoint.
    Suspend,
    /// `RESUME [FROM SAVEPOINT sp]`.
    Resume {
        /// The savepoint to restore (`None`: per the restore strategy).
        savepoint: Option<String>,
    },
    /// `SET (key = value, ...)`: change settings (keys lowercased).
    Set(Vec<(String, String)>),
    /// `RESTART`: stop and start again from the latest state.
    Restart,
}

/// The job statements, or `None` for anything else.
fn job_statement(
    tokens: &[&TokenWithSpan],
    words: &[String],
) -> std::result::Result<Option<JobStatement>, ParserError> {
    let word_at = |i: usize| tokens.get(i).and_then(|t| word(t));
    let name_at = |i: usize, what: &str| {
        tokens
            .get(i)
            .and_then(|t| ident(t))
            .ok_or_else(|| expected(what, tokens.get(i)))
    };
    let end_at = |i: usize| match tokens.get(i) {
        None => Ok(()),
        Some(_) => Err(expected("end of statement", tokens.get(i))),
    };
    let first: Vec<&str> = words.iter().take(2).map(String::as_str).collect();
    let statement = match first.as_slice() {
        ["SHOW", "JOBS"] => {
            end_at(2)?;
            JobStatement::ShowJobs
        }
        ["SHOW", "JOB"] => {
            if word_at(2).as_deref() != Some("EVENTS") {
                return Err(expected("EVENTS", tokens.get(2)));
            }
            let job = name_at(3, "a job name")?;
            end_at(4)?;
            JobStatement::ShowEvents { job }
        }
        ["ALTER", "JOB"] => {
            let job = name_at(2, "a job name")?;
            let action = match word_at(3).as_deref() {
                Some("SUSPEND") => {
                    end_at(4)?;
                    JobAction::Suspend
                }
                Some("RESTART") => {
                    end_at(4)?;
                    JobAction::Restart
                }
                Some("RESUME") if tokens.len() == 4 => JobAction::Resume { savepoint: None },
                Some("RESUME") => {
                    if word_at(4).as_deref() != Some("FROM") {
                        return Err(expected(
                            "FROM SAVEPOINT or end of statement",
                            tokens.get(4),
                        ));
                    }
                    if word_at(5).as_deref() != Some("SAVEPOINT") {
                        return Err(expected("SAVEPOINT", tokens.get(5)));
                    }
                    let savepoint = name_at(6, "a savepoint name")?;
                    end_at(7)?;
                    JobAction::Resume {
                        savepoint: Some(savepoint),
                    }
                }
                Some("SET") => JobAction::Set(settings(&tokens[3..])?),
                _ => {
                    return Err(expected(
                        "SUSPEND, RESUME, SET (...) or RESTART",
                        tokens.get(3),
                    ));
                }
            };
            JobStatement::Alter { job, action }
        }
        ["CREATE", "SAVEPOINT"] => {
            let name = name_at(2, "a savepoint name")?;
            if word_at(3).as_deref() != Some("FOR") {
                return Err(expected("FOR JOB", tokens.get(3)));
            }
            if word_at(4).as_deref() != Some("JOB") {
                return Err(expected("JOB", tokens.get(4)));
            }
            let job = name_at(5, "a job name")?;
            end_at(6)?;
            JobStatement::CreateSavepoint { name, job }
        }
        ["SHOW", "SAVEPOINTS"] => {
            let job = match word_at(2).as_deref() {
                None if tokens.len() == 2 => None,
                Some("FOR") => {
                    if word_at(3).as_deref() != Some("JOB") {
                        return Err(expected("JOB", tokens.get(3)));
                    }
                    let job = name_at(4, "a job name")?;
                    end_at(5)?;
                    Some(job)
                }
                _ => return Err(expected("FOR JOB or end of statement", tokens.get(2))),
            };
            JobStatement::ShowSavepoints { job }
        }
        ["DROP", "SAVEPOINT"] => {
            let if_exists = leading_words(&tokens[2..], 2) == ["IF", "EXISTS"];
            let at = if if_exists { 4 } else { 2 };
            let name = name_at(at, "a savepoint name")?;
            end_at(at + 1)?;
            JobStatement::DropSavepoint { name, if_exists }
        }
        _ => return Ok(None),
    };
    Ok(Some(statement))
}

/// `SET (key = value, ...)` of `ALTER JOB`: sqlparser's options list.
fn settings(tokens: &[&TokenWithSpan]) -> std::result::Result<Vec<(String, String)>, ParserError> {
    if !matches!(tokens.get(1).map(|t| &t.token), Some(Token::LParen)) {
        return Err(expected("( key = value, ... )", tokens.get(1)));
    }
    let rest: Vec<String> = tokens.iter().map(|t| t.token.to_string()).collect();
    let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(&rest.join(" "))?;
    let options = parser.parse_options(datafusion::sql::sqlparser::keywords::Keyword::SET)?;
    if parser.peek_token().token != Token::EOF {
        return Err(ParserError::ParserError(format!(
            "Expected: end of statement, found: {}",
            parser.peek_token().token
        )));
    }
    if options.is_empty() {
        return Err(expected("at least one setting", tokens.get(2)));
    }
    crate::normalize::sql_options(options).map_err(|e| ParserError::ParserError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::parse_request;
    use super::*;

    fn job(sql: &str) -> JobStatement {
        match parse_request(sql).expect("parse").remove(0).kind {
            PieceKind::Job(job) => job,
            other => panic!("{sql}: not a job statement: {other:?}"),
        }
    }

    #[test]
    fn job_statements_parse() {
        assert_eq!(job("SHOW JOBS"), JobStatement::ShowJobs);
        assert_eq!(
            job("show job events \"Hot\""),
            JobStatement::ShowEvents { job: "Hot".into() }
        );
        assert_eq!(
            job("ALTER JOB v SUSPEND"),
            JobStatement::Alter {
                job: "v".into(),
                action: JobAction::Suspend
            }
        );
        assert_eq!(
            job("ALTER JOB v RESUME FROM SAVEPOINT sp1"),
            JobStatement::Alter {
                job: "v".into(),
                action: JobAction::Resume {
                    savepoint: Some("sp1".into())
                }
            }
        );
        assert_eq!(
            job("ALTER JOB v SET (restart_attempts = 3, Restart_Strategy = 'fixed_delay')"),
            JobStatement::Alter {
                job: "v".into(),
                action: JobAction::Set(vec![
                    ("restart_attempts".into(), "3".into()),
                    ("restart_strategy".into(), "fixed_delay".into())
                ])
            }
        );
        assert_eq!(
            job("CREATE SAVEPOINT sp FOR JOB v"),
            JobStatement::CreateSavepoint {
                name: "sp".into(),
                job: "v".into()
            }
        );
        assert_eq!(
            job("SHOW SAVEPOINTS FOR JOB v"),
            JobStatement::ShowSavepoints {
                job: Some("v".into())
            }
        );
        assert_eq!(
            job("DROP SAVEPOINT IF EXISTS sp"),
            JobStatement::DropSavepoint {
                name: "sp".into(),
                if_exists: true
            }
        );
    }

    #[test]
    fn transaction_savepoints_are_not_job_statements() {
        let pieces = parse_request("SAVEPOINT a; RELEASE SAVEPOINT a").expect("parse");
        assert!(
            pieces
                .iter()
                .all(|p| matches!(p.kind, PieceKind::Sql { .. }))
        );
    }

    #[test]
    fn job_statement_errors_point_at_the_token() {
        let err = parse_request("ALTER JOB v PAUSE").expect_err("bad action");
        match err {
            crate::error::PlanError::Syntax { position, .. } => assert_eq!(position, Some(13)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse_request("ALTER JOB v SET ()").is_err());
        assert!(parse_request("SHOW JOB EVENTS").is_err());
    }
}
