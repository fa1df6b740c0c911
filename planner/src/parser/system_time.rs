//! `FOR SYSTEM_TIME AS OF s.ts` after a table in `FROM` (a lookup join,
//! design note 0016). sqlparser reads the clause only in dialects with
//! table versioning (BigQuery, MSSQL, Snowflake), not in Postgres', which
//! Weir parses with; so it is cut out of the text first (blanked, keeping
//! every position), the rest parsed as Postgres, and the clause put back
//! on its table in the AST (`TableFactor::Table::version`), where it
//! survives printing (the catalog stores a view's query as text) and where
//! the view planner finds it (`crate::lookups`). DataFusion ignores a
//! table's version, so a batch query reads the table as it is now: what a
//! lookup sees when every row passes at once.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, Spanned, Statement, TableFactor, TableVersion, Visit, VisitMut, Visitor,
    VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan};

use super::errors::location_to_position;
use super::tokens::word;
use crate::error::{PlanError, Result};

/// One `FOR SYSTEM_TIME AS OF <column>` cut out of a statement's text.
#[derive(Debug)]
pub(super) struct SystemTime {
    /// Where `FOR` starts in the statement's text (0-based characters).
    at: usize,
    /// The time column as written (`s.ts`).
    column: String,
    /// Where the column starts in the statement's text (0-based).
    column_at: usize,
}

/// Blank each `FOR SYSTEM_TIME AS OF <column>` in `text` and return them,
/// in order. `offset` is where the statement starts in the request (for
/// the positions of errors).
pub(super) fn cut_system_time(
    tokens: &[&TokenWithSpan],
    text: &mut [char],
    local: &dyn Fn(Location) -> usize,
    offset: usize,
) -> Result<Vec<SystemTime>> {
    let mut cuts = Vec::new();
    let mut i = 0;
    while i + 4 <= tokens.len() {
        let words: Vec<String> = tokens[i..i + 4]
            .iter()
            .map(|t| word(t).unwrap_or_default())
            .collect();
        if words != ["FOR", "SYSTEM_TIME", "AS", "OF"] {
            i += 1;
            continue;
        }
        let at = local(tokens[i].span.start);
        let misused = |message: &str, at: usize| PlanError::Syntax {
            message: message.to_string(),
            detail: None,
            position: Some(offset + at + 1),
        };
        if !matches!(
            tokens.get(i.wrapping_sub(1)).map(|t| &t.token),
            Some(Token::Word(_))
        ) {
            return Err(misused(
                "FOR SYSTEM_TIME AS OF must follow a table's name (JOIN t FOR SYSTEM_TIME AS OF s.ts ON ..)",
                at,
            ));
        }
        // The column: a name, or names joined by dots (`s.ts`).
        let first = i + 4;
        let mut last = first;
        if !matches!(tokens.get(first).map(|t| &t.token), Some(Token::Word(_))) {
            let column_at = tokens.get(first).map_or(at, |t| local(t.span.start));
            return Err(misused(
                "FOR SYSTEM_TIME AS OF takes a time column of the stream being joined (s.ts)",
                column_at,
            ));
        }
        while matches!(tokens.get(last + 1).map(|t| &t.token), Some(Token::Period))
            && matches!(tokens.get(last + 2).map(|t| &t.token), Some(Token::Word(_)))
        {
            last += 2;
        }
        let column_at = local(tokens[first].span.start);
        let end = local(tokens[last].span.end).min(text.len());
        let column: String = text[column_at..end].iter().collect();
        for c in text.iter_mut().take(end).skip(at) {
            if *c != '\n' {
                *c = ' ';
            }
        }
        cuts.push(SystemTime {
            at,
            column,
            column_at,
        });
        i = last + 1;
    }
    Ok(cuts)
}

/// Put each cut clause back on the table it followed, in `statement`
/// parsed from `text` (the statement's text with the clauses blanked).
pub(super) fn attach(
    statement: &mut Statement,
    text: &str,
    cuts: Vec<SystemTime>,
    offset: usize,
) -> Result<()> {
    if cuts.is_empty() {
        return Ok(());
    }
    // Every table's name, where it starts and ends, in visiting order.
    struct Names<'a>(&'a str, Vec<Option<(usize, usize)>>);
    impl Visitor for Names<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            let span = match factor {
                TableFactor::Table {
                    name, args: None, ..
                } => Some(name.span()),
                _ => None,
            };
            let at = |loc: Location| location_to_position(self.0, loc) - 1;
            self.1.push(span.map(|s| (at(s.start), at(s.end))));
            ControlFlow::Continue(())
        }
    }
    let mut names = Names(text, Vec::new());
    let _ = Visit::visit(&*statement, &mut names);
    let chars: Vec<char> = text.chars().collect();
    let mut versions: Vec<Option<Expr>> = vec![None; names.1.len()];
    for cut in cuts {
        let misused = |message: &str| PlanError::Syntax {
            message: message.to_string(),
            detail: None,
            position: Some(offset + cut.at + 1),
        };
        // The table right before the clause, with at most an alias between.
        let table = names
            .1
            .iter()
            .enumerate()
            .filter_map(|(n, span)| span.map(|s| (n, s)))
            .filter(|(_, (start, _))| *start < cut.at)
            .max_by_key(|(_, (start, _))| *start);
        let between =
            |end: usize| -> String { chars[end.min(cut.at)..cut.at].iter().collect::<String>() };
        let Some((n, _)) = table.filter(|(_, (_, end))| only_an_alias(&between(*end))) else {
            return Err(misused(
                "FOR SYSTEM_TIME AS OF must follow a table's name (JOIN t FOR SYSTEM_TIME AS OF s.ts ON ..)",
            ));
        };
        let parsed = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&cut.column)
            .and_then(|mut p| p.parse_expr())
            .map_err(|_| {
                misused(
                    "FOR SYSTEM_TIME AS OF takes a time column of the stream being joined (s.ts)",
                )
            })?;
        versions[n] = Some(placed(parsed, cut.column_at));
    }
    struct Put(Vec<Option<Expr>>, usize);
    impl VisitorMut for Put {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let Some(Some(expr)) = self.0.get_mut(self.1).map(Option::take)
                && let TableFactor::Table { version, .. } = factor
            {
                *version = Some(TableVersion::ForSystemTimeAsOf(expr));
            }
            self.1 += 1;
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(statement, &mut Put(versions, 0));
    Ok(())
}

/// Is `text` (between a table's name and the clause) empty, an alias, or
/// `AS` and an alias?
fn only_an_alias(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [] | [_] => words.iter().all(|w| !w.contains(['(', ')', ','])),
        [r#as, _] => r#as.eq_ignore_ascii_case("as"),
        _ => false,
    }
}

/// `expr` (the time column, parsed on its own) with its names' spans set to
/// where it is in the statement: line 1, the column its character offset
/// (the statement's text read as one line), so that a planning error about
/// it can point there (`crate::lookups::LookupUse::position`).
fn placed(expr: Expr, at: usize) -> Expr {
    let here = Location {
        line: 1,
        column: at as u64 + 1,
    };
    let place = |mut ident: Ident| {
        ident.span = Span::new(here, here);
        ident
    };
    match expr {
        Expr::Identifier(ident) => Expr::Identifier(place(ident)),
        Expr::CompoundIdentifier(idents) => {
            Expr::CompoundIdentifier(idents.into_iter().map(place).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use crate::parser::parse;
    use datafusion::sql::sqlparser::ast::Statement;

    #[test]
    fn the_clause_goes_back_on_its_table_and_prints() {
        for sql in [
            "SELECT * FROM s JOIN t FOR SYSTEM_TIME AS OF s.ts ON s.k = t.k",
            "SELECT * FROM s JOIN t FOR SYSTEM_TIME AS OF s.ts AS d ON s.k = d.k",
            "SELECT * FROM s LEFT JOIN t AS d FOR SYSTEM_TIME AS OF s.ts ON s.k = d.k",
        ] {
            let statement = parse(sql).expect("parses").remove(0);
            let Statement::Query(_) = &statement else {
                panic!("a query");
            };
            let printed = statement.to_string();
            assert!(
                printed.contains("FOR SYSTEM_TIME AS OF s.ts"),
                "{sql} printed as {printed}"
            );
            // What is printed parses back to the same.
            let again = parse(&printed).expect("reparses").remove(0);
            assert_eq!(again.to_string(), printed);
        }
    }

    #[test]
    fn misplaced_clauses_are_syntax_errors_with_positions() {
        for (sql, at) in [
            (
                "SELECT * FROM s JOIN (SELECT * FROM t) FOR SYSTEM_TIME AS OF s.ts ON true",
                40,
            ),
            ("SELECT * FROM s JOIN t FOR SYSTEM_TIME AS OF 1 ON true", 46),
        ] {
            match parse(sql) {
                Err(crate::error::PlanError::Syntax { position, .. }) => {
                    assert_eq!(position, Some(at), "{sql}")
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
    }
}
