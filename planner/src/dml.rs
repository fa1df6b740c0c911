//! Writes to tables Weir owns: INSERT, UPDATE, DELETE and COPY, sorted out
//! of the sqlparser AST. DataFusion plans INSERT / UPDATE / DELETE itself
//! (the table's provider does the writing); COPY is Weir's own.

use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Query, Statement,
    TableFactor, TableObject, TableWithJoins,
};

use crate::error::{PlanError, Result};
use crate::normalize::{normalize_ident, object_name};

/// Which write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmlKind {
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
}

impl DmlKind {
    /// The command tag before the row count (`INSERT 0 n`, as Postgres).
    pub fn tag(&self) -> &'static str {
        match self {
            DmlKind::Insert => "INSERT 0",
            DmlKind::Update => "UPDATE",
            DmlKind::Delete => "DELETE",
        }
    }
}

/// An INSERT / UPDATE / DELETE, for DataFusion to plan.
#[derive(Debug, Clone)]
pub struct Dml {
    /// Which write.
    pub kind: DmlKind,
    /// The table written (normalized).
    pub table: String,
    /// The statement.
    pub statement: Box<Statement>,
}

/// `COPY ... FROM STDIN` / `COPY ... TO STDOUT`.
#[derive(Debug, Clone)]
pub struct Copy {
    /// The table (`None` for `COPY (query) TO`).
    pub table: Option<String>,
    /// The query of `COPY (query) TO`.
    pub query: Option<Box<Query>>,
    /// The column list (normalized); empty: all.
    pub columns: Vec<String>,
    /// `TO STDOUT` (else `FROM STDIN`).
    pub to: bool,
    /// `text`, `csv` or `binary`, lowercased.
    pub format: String,
    /// `DELIMITER`.
    pub delimiter: Option<char>,
    /// `NULL`.
    pub null: Option<String>,
    /// `HEADER`.
    pub header: bool,
    /// `QUOTE`.
    pub quote: Option<char>,
    /// `ESCAPE`.
    pub escape: Option<char>,
}

/// Classify INSERT / UPDATE / DELETE.
pub fn classify_dml(statement: Statement) -> Result<Dml> {
    let (kind, table) = match &statement {
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) => (DmlKind::Insert, object_name(name)),
            other => {
                return Err(PlanError::Unsupported {
                    what: format!("INSERT INTO {other}"),
                    hint: None,
                });
            }
        },
        Statement::Update(update) => (DmlKind::Update, table_of(&update.table)?),
        Statement::Delete(delete) => {
            let from = match &delete.from {
                datafusion::sql::sqlparser::ast::FromTable::WithFromKeyword(t)
                | datafusion::sql::sqlparser::ast::FromTable::WithoutKeyword(t) => t,
            };
            match from.as_slice() {
                [one] => (DmlKind::Delete, table_of(one)?),
                _ => {
                    return Err(PlanError::Unsupported {
                        what: "DELETE from more than one table".into(),
                        hint: None,
                    });
                }
            }
        }
        other => {
            return Err(PlanError::Invalid(format!("not a write: {other}")));
        }
    };
    Ok(Dml {
        kind,
        table,
        statement: Box::new(statement),
    })
}

fn table_of(table: &TableWithJoins) -> Result<String> {
    match &table.relation {
        TableFactor::Table { name, .. } if table.joins.is_empty() => Ok(object_name(name)),
        other => Err(PlanError::Unsupported {
            what: format!("writing to \"{other}\""),
            hint: None,
        }),
    }
}

/// The primary key of a `CREATE TABLE`, table- or column-level, and
/// whether any other constraint (UNIQUE, CHECK, DEFAULT, ...) was given.
pub fn table_constraints(
    create: &datafusion::sql::sqlparser::ast::CreateTable,
) -> Result<(Vec<String>, bool)> {
    use datafusion::sql::sqlparser::ast::{ColumnOption, Expr, TableConstraint};
    let mut primary_key = Vec::new();
    let mut other = false;
    let mut set_key = |columns: Vec<String>| {
        if !primary_key.is_empty() {
            return Err(PlanError::Invalid(format!(
                "multiple primary keys for table \"{}\" are not allowed",
                object_name(&create.name)
            )));
        }
        primary_key = columns;
        Ok(())
    };
    for column in &create.columns {
        for option in &column.options {
            match &option.option {
                ColumnOption::Null | ColumnOption::NotNull => {}
                ColumnOption::PrimaryKey(_) => set_key(vec![normalize_ident(&column.name)])?,
                _ => other = true,
            }
        }
    }
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(key) => {
                let columns = key
                    .columns
                    .iter()
                    .map(|c| match &c.column.expr {
                        Expr::Identifier(ident) => Ok(normalize_ident(ident)),
                        other => Err(PlanError::Unsupported {
                            what: format!("a primary key on the expression {other}"),
                            hint: None,
                        }),
                    })
                    .collect::<Result<Vec<_>>>()?;
                set_key(columns)?;
            }
            _ => other = true,
        }
    }
    Ok((primary_key, other))
}

/// Classify a COPY.
pub fn classify_copy(statement: Statement) -> Result<Copy> {
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        values,
    } = statement
    else {
        return Err(PlanError::Invalid("not a COPY".into()));
    };
    match (&target, to) {
        (CopyTarget::Stdin, false) | (CopyTarget::Stdout, true) => {}
        _ => {
            return Err(PlanError::Unsupported {
                what: format!("COPY {} {target}", if to { "TO" } else { "FROM" }),
                hint: Some(
                    "COPY reads FROM STDIN and writes TO STDOUT; use psql's \\copy for files"
                        .into(),
                ),
            });
        }
    }
    if !values.is_empty() {
        return Err(PlanError::Unsupported {
            what: "COPY data inline in the statement".into(),
            hint: None,
        });
    }
    let (table, query, columns) = match source {
        CopySource::Table {
            table_name,
            columns,
        } => (
            Some(object_name(&table_name)),
            None,
            columns.iter().map(normalize_ident).collect(),
        ),
        CopySource::Query(query) if to => (None, Some(query), Vec::new()),
        CopySource::Query(_) => {
            return Err(PlanError::Invalid("COPY FROM cannot read a query".into()));
        }
    };
    let mut copy = Copy {
        table,
        query,
        columns,
        to,
        format: "text".into(),
        delimiter: None,
        null: None,
        header: false,
        quote: None,
        escape: None,
    };
    for option in options {
        match option {
            CopyOption::Format(format) => copy.format = format.value.to_lowercase(),
            CopyOption::Delimiter(c) => copy.delimiter = Some(c),
            CopyOption::Null(null) => copy.null = Some(null),
            CopyOption::Header(header) => copy.header = header,
            CopyOption::Quote(c) => copy.quote = Some(c),
            CopyOption::Escape(c) => copy.escape = Some(c),
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            CopyOption::Freeze(_) => {}
            other => {
                return Err(PlanError::Unsupported {
                    what: format!("COPY option {other}"),
                    hint: None,
                });
            }
        }
    }
    for option in legacy_options {
        match option {
            CopyLegacyOption::Csv(csv) => {
                copy.format = "csv".into();
                for option in csv {
                    match option {
                        CopyLegacyCsvOption::Header => copy.header = true,
                        CopyLegacyCsvOption::Quote(c) => copy.quote = Some(c),
                        CopyLegacyCsvOption::Escape(c) => copy.escape = Some(c),
                        other => {
                            return Err(PlanError::Unsupported {
                                what: format!("COPY option {other}"),
                                hint: None,
                            });
                        }
                    }
                }
            }
            CopyLegacyOption::Binary => copy.format = "binary".into(),
            CopyLegacyOption::Delimiter(c) => copy.delimiter = Some(c),
            CopyLegacyOption::Null(null) => copy.null = Some(null),
            CopyLegacyOption::Header => copy.header = true,
            other => {
                return Err(PlanError::Unsupported {
                    what: format!("COPY option {other}"),
                    hint: None,
                });
            }
        }
    }
    if !matches!(copy.format.as_str(), "text" | "csv") {
        return Err(PlanError::Unsupported {
            what: format!("COPY format \"{}\"", copy.format),
            hint: Some("use FORMAT text or FORMAT csv".into()),
        });
    }
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn copy(sql: &str) -> Copy {
        classify_copy(parse(sql).expect("parse").remove(0)).expect("classify")
    }

    #[test]
    fn copy_options_new_and_legacy() {
        let c = copy("COPY T (A, b) FROM STDIN WITH (FORMAT csv, HEADER true, NULL 'x')");
        assert_eq!(c.table.as_deref(), Some("t"));
        assert_eq!(c.columns, vec!["a", "b"]);
        assert_eq!(
            (c.format.as_str(), c.header, c.null.as_deref()),
            ("csv", true, Some("x"))
        );
        let c = copy("COPY t FROM STDIN CSV HEADER");
        assert_eq!((c.format.as_str(), c.header), ("csv", true));
        let c = copy("COPY (SELECT 1) TO STDOUT");
        assert!(c.to && c.query.is_some());
    }

    #[test]
    fn dml_names_its_table() {
        let d = classify_dml(
            parse("UPDATE Public.T SET a = 1 WHERE b = 2")
                .expect("p")
                .remove(0),
        )
        .expect("classify");
        assert_eq!((d.kind, d.table.as_str()), (DmlKind::Update, "t"));
        let d = classify_dml(parse("DELETE FROM t WHERE a = 1").expect("p").remove(0))
            .expect("classify");
        assert_eq!(d.kind.tag(), "DELETE");
    }
}
