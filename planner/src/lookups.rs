//! Lookup joins a query asks for: each table followed by `FOR SYSTEM_TIME
//! AS OF s.ts` (the parser puts the clause on its table: see
//! `parser::system_time`). The view planner makes the join whose right
//! input is such a table a lookup join (`stream_plan::lower_join`); a
//! batch query ignores the clause (DataFusion does), reading the table as
//! it is when the query runs. Design note 0016.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, ObjectNamePart, Spanned, Statement, TableFactor, TableVersion, Visit, Visitor,
};

/// One table read with `FOR SYSTEM_TIME AS OF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupUse {
    /// The table, as a scan of it is named (unquoted names lower-cased).
    pub table: String,
    /// The stream's time column as written: its qualifier, if any, and its
    /// name (`s.ts`).
    pub column: (Option<String>, String),
    /// The clause's time column as the query wrote it (for messages).
    pub written: String,
    /// Where that column is in the statement (1-based characters), when
    /// the statement was parsed from text.
    pub position: Option<usize>,
}

/// Every table `statement` reads `FOR SYSTEM_TIME AS OF`, in order.
pub fn lookup_uses(statement: &Statement) -> Vec<LookupUse> {
    struct Found(Vec<LookupUse>);
    impl Visitor for Found {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name,
                version: Some(TableVersion::ForSystemTimeAsOf(expr)),
                ..
            } = factor
                && let Some(ObjectNamePart::Identifier(table)) = name.0.last()
            {
                let fold = |i: &datafusion::sql::sqlparser::ast::Ident| match i.quote_style {
                    Some(_) => i.value.clone(),
                    None => i.value.to_lowercase(),
                };
                let (column, position) = match expr {
                    Expr::Identifier(i) => ((None, fold(i)), i.span.start),
                    Expr::CompoundIdentifier(parts) if !parts.is_empty() => {
                        let name = fold(&parts[parts.len() - 1]);
                        let qualifier = (parts.len() > 1).then(|| fold(&parts[parts.len() - 2]));
                        ((qualifier, name), parts[0].span.start)
                    }
                    // Not a column: the lowering says so.
                    other => ((None, other.to_string()), other.span().start),
                };
                self.0.push(LookupUse {
                    table: fold(table),
                    column,
                    written: expr.to_string(),
                    // The parser places the column at line 1, its offset in
                    // the statement (`parser::system_time::placed`).
                    position: (position.line == 1).then_some(position.column as usize),
                });
            }
            ControlFlow::Continue(())
        }
    }
    let mut found = Found(Vec::new());
    let _ = statement.visit(&mut found);
    found.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    #[test]
    fn the_lookups_of_a_query_with_their_columns_and_positions() {
        let sql = "SELECT * FROM s JOIN Dims FOR SYSTEM_TIME AS OF s.ts AS d ON s.k = d.k";
        let statement = parse(sql).expect("parses").remove(0);
        assert_eq!(
            lookup_uses(&statement),
            vec![LookupUse {
                table: "dims".into(),
                column: (Some("s".into()), "ts".into()),
                written: "s.ts".into(),
                position: Some(sql.find("s.ts").expect("the column") + 1),
            }]
        );
        let plain = parse("SELECT * FROM s JOIN t ON s.k = t.k")
            .expect("parses")
            .remove(0);
        assert!(lookup_uses(&plain).is_empty());
    }
}
