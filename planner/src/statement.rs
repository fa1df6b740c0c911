//! The statements Weir understands, sorted out of the sqlparser AST.
//!
//! Everything DataFusion can plan on its own (SELECT, VALUES, WITH, EXPLAIN)
//! stays a [`WeirStatement::Query`]; statements whose effect Weir owns (the
//! durable catalog, session settings, transactions) get their own variant.

use datafusion::sql::sqlparser::ast::{
    Action, CreateTableOptions, Expr, GrantObjects, Grantee as AstGrantee, GranteeName,
    GranteesType, Ident, ObjectType, Privileges, Set, Statement,
};

use crate::dml::{Copy, Dml};
use crate::error::{PlanError, Result};
use crate::normalize::{expr_text, object_name, sql_options};
use crate::parser::{FetchCount, JobStatement, PieceKind, WatermarkClause};

/// What kind of named object a statement is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A table: over files, or owned by Weir (rows written with INSERT and
    /// COPY).
    Table,
    /// A (non-materialized) view.
    View,
    /// A stream: an unbounded (or bounded) source of rows with event time.
    Stream,
    /// A materialized view: a continuous query's maintained result.
    MaterializedView,
    /// A sink: a materialized view's rows written out.
    Sink,
}

impl ObjectKind {
    /// The name Postgres uses in messages.
    pub fn name(&self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::View => "view",
            ObjectKind::Stream => "stream",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::Sink => "sink",
        }
    }
}

/// `CREATE STREAM name [(columns, WATERMARK FOR c AS expr)] WITH (...)`.
#[derive(Debug, Clone)]
pub struct CreateStream {
    /// Normalized name.
    pub name: String,
    /// `IF NOT EXISTS` given.
    pub if_not_exists: bool,
    /// Declared columns; empty: the connector's or the files'.
    pub columns: Vec<datafusion::sql::sqlparser::ast::ColumnDef>,
    /// The `WITH (...)` options.
    pub options: Vec<(String, String)>,
    /// The declared watermark.
    pub watermark: Option<WatermarkClause>,
    /// The `PRIMARY KEY` columns (normalized): the key of an upsert
    /// stream's messages.
    pub primary_key: Vec<String>,
}

/// `CREATE MATERIALIZED VIEW name AS query [EMIT ON WINDOW CLOSE]`.
#[derive(Debug, Clone)]
pub struct CreateMaterializedView {
    /// Normalized name.
    pub name: String,
    /// `IF NOT EXISTS` given.
    pub if_not_exists: bool,
    /// The continuous query.
    pub query: Box<datafusion::sql::sqlparser::ast::Query>,
    /// Emit one final row per window when it closes.
    pub emit_on_window_close: bool,
    /// Job settings from `WITH (...)`, keys lowercased (checked by the
    /// server, which owns their meaning).
    pub settings: Vec<(String, String)>,
    /// `CREATE OR REPLACE`: an upgrade of the view if it exists (its
    /// `upgrade_strategy` is among the settings).
    pub or_replace: bool,
}

/// `CREATE TABLE name [(columns)] WITH (connector = ..., ...)`.
#[derive(Debug, Clone)]
pub struct CreateTable {
    /// Normalized name.
    pub name: String,
    /// `IF NOT EXISTS` given.
    pub if_not_exists: bool,
    /// Declared columns; empty means "infer from the data".
    pub columns: Vec<datafusion::sql::sqlparser::ast::ColumnDef>,
    /// The `WITH (...)` options, keys lowercased, values as text.
    pub options: Vec<(String, String)>,
    /// Constraints other than `PRIMARY KEY`, `NULL` and `NOT NULL` were given.
    pub has_constraints: bool,
    /// The `PRIMARY KEY` columns (normalized), table- or column-level.
    pub primary_key: Vec<String>,
    /// `CREATE TABLE ... AS SELECT` was given.
    pub has_query: bool,
}

/// `CREATE [OR REPLACE] VIEW name AS query`.
#[derive(Debug, Clone)]
pub struct CreateView {
    /// Normalized name.
    pub name: String,
    /// `OR REPLACE` given.
    pub or_replace: bool,
    /// The statement itself, for DataFusion to plan (and to store as text).
    pub statement: Box<Statement>,
}

/// Transaction control: a `BEGIN .. COMMIT` block over tables Weir owns is
/// atomic, and `ROLLBACK` undoes it (design 0011); outside a block each
/// statement is its own transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionOp {
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
}

/// A classified statement.
#[derive(Debug, Clone)]
pub enum WeirStatement {
    /// Planned and run by DataFusion.
    Query(Box<Statement>),
    /// Create a table: over files (`WITH (connector = ...)`), or owned by
    /// Weir (columns, no connector).
    CreateTable(CreateTable),
    /// Create a view.
    CreateView(CreateView),
    /// `DROP TABLE | VIEW [IF EXISTS] names`.
    Drop {
        /// What is dropped.
        kind: ObjectKind,
        /// Normalized names.
        names: Vec<String>,
        /// `IF EXISTS` given.
        if_exists: bool,
        /// `CASCADE` given: views that read what is dropped go with it.
        cascade: bool,
    },
    /// `SET name = value` (`None`: back to the default).
    SetVariable {
        /// Lowercased name.
        name: String,
        /// The value as text.
        value: Option<String>,
    },
    /// `RESET name`, `RESET ALL`: back to the server's values.
    Reset {
        /// Lowercased name; `None` for `RESET ALL`.
        name: Option<String>,
    },
    /// `SHOW name`.
    ShowVariable {
        /// Lowercased name.
        name: String,
    },
    /// `SHOW ALL`.
    ShowAll,
    /// `SHOW TABLES`, `SHOW VIEWS`.
    ShowObjects(ObjectKind),
    /// `BEGIN`, `COMMIT`, `ROLLBACK`.
    Transaction(TransactionOp),
    /// `SAVEPOINT`, `RELEASE`, `ROLLBACK TO`: accepted as no-ops, since every
    /// statement commits on its own. The value is the command tag.
    Savepoint(&'static str),
    /// `DISCARD ALL | PLANS | SEQUENCES | TEMP`. Only `ALL` has something
    /// to discard here (settings, cursors); Weir caches no plans and has no
    /// sequences or temporary objects. The tag is Postgres's
    /// (`DISCARD ALL`).
    Discard {
        /// `DISCARD ALL`.
        all: bool,
        /// The command tag.
        tag: &'static str,
    },
    /// A statement drivers send unasked that changes nothing here (`SET
    /// TRANSACTION ..`, `SET ROLE`): accepted, answered with its tag.
    NoEffect(&'static str),
    /// Create a stream.
    CreateStream(CreateStream),
    /// Create a materialized view (a continuous job).
    CreateMaterializedView(CreateMaterializedView),
    /// `EXPLAIN CREATE MATERIALIZED VIEW ...`: the stream plan.
    ExplainMaterializedView(CreateMaterializedView),
    /// Push a view's rows to the client as they are emitted.
    Subscribe {
        /// The view.
        name: String,
        /// As COPY data (`COPY (SUBSCRIBE TO v) TO STDOUT`).
        copy: bool,
    },
    /// Wait until everything read so far is visible in every view (in the
    /// one named).
    Flush {
        /// The view named (`FLUSH v`).
        view: Option<String>,
    },
    /// Write a materialized view's rows out.
    CreateSink(CreateSink),
    // ---- writes to tables Weir owns ----
    /// INSERT / UPDATE / DELETE.
    Dml(Dml),
    /// `COPY t FROM STDIN`, `COPY t | (query) TO STDOUT`.
    Copy(Copy),
    /// `DECLARE name CURSOR FOR SUBSCRIBE TO view`.
    DeclareCursor {
        /// The cursor.
        name: String,
        /// The view subscribed to.
        view: String,
    },
    /// `FETCH [n | ALL] cursor [WITH (timeout = '...')]`.
    Fetch {
        /// The cursor.
        cursor: String,
        /// How many rows at most.
        count: FetchCount,
        /// How long to wait for a first row, as written.
        timeout: Option<String>,
    },
    /// `CLOSE cursor` / `CLOSE ALL` (`None`).
    CloseCursor(Option<String>),
    /// The job statements: `SHOW JOBS`, `ALTER JOB`, savepoints.
    Job(JobStatement),
    /// `CREATE ROLE`, `ALTER ROLE`, `DROP ROLE`: kept as parsed, for the
    /// server, which owns roles and their passwords.
    Role(Box<Statement>),
    /// `GRANT` / `REVOKE` of privileges on relations or on a schema.
    Grant(Grant),
}

/// `GRANT privileges ON target TO grantees` or `REVOKE .. FROM ..`, as
/// Postgres spells them (Weir keeps no grant options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `REVOKE`, not `GRANT`.
    pub revoke: bool,
    /// The privileges named; `None` for `ALL [PRIVILEGES]`.
    pub privileges: Option<Vec<Privilege>>,
    /// What they are on.
    pub target: GrantTarget,
    /// Who gets (or loses) them.
    pub grantees: Vec<Grantee>,
}

/// A privilege a `GRANT` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Privilege {
    /// Read a relation (tables, views, streams, materialized views).
    Select,
    /// Insert into a table Weir owns.
    Insert,
    /// Update a table Weir owns.
    Update,
    /// Delete from a table Weir owns.
    Delete,
    /// Create objects in a schema.
    Create,
    /// Look objects up in a schema: every role may in Weir, so granting it
    /// changes nothing.
    Usage,
}

impl Privilege {
    /// The keyword, as Postgres prints it.
    pub fn keyword(&self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Create => "CREATE",
            Privilege::Usage => "USAGE",
        }
    }
}

/// What a `GRANT` is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantTarget {
    /// `ON [TABLE] names`: tables, views, streams, materialized views
    /// (normalized names).
    Relations(Vec<String>),
    /// `ON ALL TABLES IN SCHEMA names`: every relation of those schemas.
    AllInSchemas(Vec<String>),
    /// `ON SCHEMA names`.
    Schemas(Vec<String>),
}

/// Who a `GRANT` names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grantee {
    /// `PUBLIC`: every role.
    Public,
    /// A role (normalized name).
    Role(String),
}

/// `CREATE [OR REPLACE] SINK [IF NOT EXISTS] name FROM view WITH (...)`.
#[derive(Debug, Clone)]
pub struct CreateSink {
    /// Normalized name.
    pub name: String,
    /// `IF NOT EXISTS` given.
    pub if_not_exists: bool,
    /// `OR REPLACE` given: the sink there is switches to this definition
    /// at a stop-with-savepoint of its view's job.
    pub or_replace: bool,
    /// The materialized view written out.
    pub from: String,
    /// Connector options, keys lowercased.
    pub options: Vec<(String, String)>,
}

impl WeirStatement {
    /// Sort a parsed piece of a request into what it asks Weir to do.
    pub fn classify_piece(kind: PieceKind) -> Result<Self> {
        match kind {
            PieceKind::Flush { view } => Ok(WeirStatement::Flush { view }),
            PieceKind::Subscribe { name, copy } => Ok(WeirStatement::Subscribe { name, copy }),
            PieceKind::DeclareCursor { name, view } => {
                Ok(WeirStatement::DeclareCursor { name, view })
            }
            PieceKind::Fetch {
                cursor,
                count,
                timeout,
            } => Ok(WeirStatement::Fetch {
                cursor,
                count,
                timeout,
            }),
            PieceKind::CloseCursor { name } => Ok(WeirStatement::CloseCursor(name)),
            PieceKind::Job(job) => Ok(WeirStatement::Job(job)),
            PieceKind::CreateSink {
                name,
                if_not_exists,
                or_replace,
                from,
                options,
            } => Ok(WeirStatement::CreateSink(CreateSink {
                name,
                if_not_exists,
                or_replace,
                from,
                options,
            })),
            PieceKind::DropSink { names, if_exists } => Ok(WeirStatement::Drop {
                kind: ObjectKind::Sink,
                names,
                if_exists,
                cascade: false,
            }),
            PieceKind::Sql {
                statement,
                stream,
                watermark,
                emit_on_window_close,
            } => match *statement {
                Statement::CreateTable(create) if stream => {
                    refuse_proctime_columns(&create.columns)?;
                    let (primary_key, other_constraints) = crate::dml::table_constraints(&create)?;
                    if create.query.is_some() || other_constraints {
                        return Err(PlanError::Unsupported {
                            what: "constraints other than PRIMARY KEY, and AS SELECT, on a stream"
                                .into(),
                            hint: None,
                        });
                    }
                    let options = match create.table_options {
                        CreateTableOptions::With(options) => sql_options(options)?,
                        CreateTableOptions::None => Vec::new(),
                        other => {
                            return Err(PlanError::Unsupported {
                                what: format!("stream options \"{other}\""),
                                hint: Some("write them as WITH (key = 'value', ...)".to_string()),
                            });
                        }
                    };
                    Ok(WeirStatement::CreateStream(CreateStream {
                        name: object_name(&create.name),
                        if_not_exists: create.if_not_exists,
                        columns: create.columns,
                        options,
                        watermark,
                        primary_key,
                    }))
                }
                Statement::Drop {
                    object_type: ObjectType::Table,
                    if_exists,
                    names,
                    cascade,
                    ..
                } if stream => Ok(WeirStatement::Drop {
                    kind: ObjectKind::Stream,
                    names: names.iter().map(object_name).collect(),
                    if_exists,
                    cascade,
                }),
                Statement::CreateView(view) if view.materialized => {
                    Ok(WeirStatement::CreateMaterializedView(
                        create_materialized_view(view, emit_on_window_close)?,
                    ))
                }
                Statement::Explain {
                    statement,
                    analyze: false,
                    ..
                } if matches!(statement.as_ref(), Statement::CreateView(v) if v.materialized) => {
                    let Statement::CreateView(view) = *statement else {
                        unreachable!()
                    };
                    Ok(WeirStatement::ExplainMaterializedView(
                        create_materialized_view(view, emit_on_window_close)?,
                    ))
                }
                other => {
                    if emit_on_window_close {
                        return Err(PlanError::Invalid(
                            "EMIT ON WINDOW CLOSE belongs to CREATE MATERIALIZED VIEW".to_string(),
                        ));
                    }
                    Self::classify(other)
                }
            },
        }
    }

    /// Sort a parsed statement into what it asks Weir to do.
    pub fn classify(statement: Statement) -> Result<Self> {
        Ok(match statement {
            Statement::Query(_) | Statement::Explain { .. } => {
                WeirStatement::Query(Box::new(statement))
            }
            Statement::CreateTable(mut create) => {
                let (primary_key, has_constraints) = crate::dml::table_constraints(&create)?;
                let options = match std::mem::take(&mut create.table_options) {
                    CreateTableOptions::None => Vec::new(),
                    CreateTableOptions::With(options) => sql_options(options)?,
                    other => {
                        return Err(PlanError::Unsupported {
                            what: format!("table options \"{other}\""),
                            hint: Some("write them as WITH (key = 'value', ...)".to_string()),
                        });
                    }
                };
                if create.or_replace || create.temporary || create.external {
                    return Err(PlanError::Unsupported {
                        what: "CREATE OR REPLACE / TEMPORARY / EXTERNAL TABLE".to_string(),
                        hint: Some(
                            "use CREATE TABLE name WITH (connector = 'file', ...)".to_string(),
                        ),
                    });
                }
                WeirStatement::CreateTable(CreateTable {
                    name: object_name(&create.name),
                    if_not_exists: create.if_not_exists,
                    has_constraints,
                    primary_key,
                    has_query: create.query.is_some(),
                    columns: create.columns,
                    options,
                })
            }
            Statement::CreateView(ref view) if !view.materialized => {
                WeirStatement::CreateView(CreateView {
                    name: object_name(&view.name),
                    or_replace: view.or_replace,
                    statement: Box::new(statement),
                })
            }
            Statement::CreateRole(_)
            | Statement::AlterRole { .. }
            | Statement::Drop {
                object_type: ObjectType::Role | ObjectType::User,
                ..
            } => WeirStatement::Role(Box::new(statement)),
            Statement::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => {
                let kind = match object_type {
                    ObjectType::Table => ObjectKind::Table,
                    ObjectType::View => ObjectKind::View,
                    ObjectType::MaterializedView => ObjectKind::MaterializedView,
                    other => {
                        return Err(PlanError::Unsupported {
                            what: format!("DROP {other}"),
                            hint: None,
                        });
                    }
                };
                WeirStatement::Drop {
                    kind,
                    names: names.iter().map(object_name).collect(),
                    if_exists,
                    cascade,
                }
            }
            Statement::Set(set) => classify_set(set)?,
            Statement::Reset(reset) => WeirStatement::Reset {
                name: match reset.reset {
                    datafusion::sql::sqlparser::ast::Reset::ALL => None,
                    datafusion::sql::sqlparser::ast::Reset::ConfigurationParameter(name) => {
                        Some(object_name(&name))
                    }
                },
            },
            Statement::ShowVariable { variable } => classify_show(&variable),
            Statement::ShowTables { .. } => WeirStatement::ShowObjects(ObjectKind::Table),
            Statement::ShowViews {
                materialized: true, ..
            } => WeirStatement::ShowObjects(ObjectKind::MaterializedView),
            Statement::ShowViews { .. } => WeirStatement::ShowObjects(ObjectKind::View),
            Statement::StartTransaction { .. } => WeirStatement::Transaction(TransactionOp::Begin),
            Statement::Commit { .. } => WeirStatement::Transaction(TransactionOp::Commit),
            Statement::Rollback {
                savepoint: Some(_), ..
            } => WeirStatement::Savepoint("ROLLBACK"),
            Statement::Rollback { .. } => WeirStatement::Transaction(TransactionOp::Rollback),
            Statement::Savepoint { .. } => WeirStatement::Savepoint("SAVEPOINT"),
            Statement::ReleaseSavepoint { .. } => WeirStatement::Savepoint("RELEASE"),
            // psycopg sends `DEALLOCATE ALL` when a transaction with
            // prepared statements rolls back, and names new ones afterwards.
            // Accepted: a statement prepared with Parse stays in the
            // connection's store (pgwire's, which offers no way to empty it)
            // until the connection ends or the name is prepared again, so
            // a client that executes a deallocated name still runs it
            // where PostgreSQL would answer 26000.
            Statement::Deallocate { .. } => WeirStatement::NoEffect("DEALLOCATE"),
            Statement::Discard { object_type } => {
                use datafusion::sql::sqlparser::ast::DiscardObject;
                let (all, tag) = match object_type {
                    DiscardObject::ALL => (true, "DISCARD ALL"),
                    DiscardObject::PLANS => (false, "DISCARD PLANS"),
                    DiscardObject::SEQUENCES => (false, "DISCARD SEQUENCES"),
                    DiscardObject::TEMP => (false, "DISCARD TEMP"),
                };
                WeirStatement::Discard { all, tag }
            }
            Statement::Grant(grant) => WeirStatement::Grant(classify_grant(
                false,
                grant.privileges,
                grant.objects,
                grant.grantees,
                grant.with_grant_option,
            )?),
            Statement::Revoke(revoke) => WeirStatement::Grant(classify_grant(
                true,
                revoke.privileges,
                revoke.objects,
                revoke.grantees,
                false,
            )?),
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                WeirStatement::Dml(crate::dml::classify_dml(statement)?)
            }
            Statement::Copy { .. } => WeirStatement::Copy(crate::dml::classify_copy(statement)?),
            other => {
                return Err(PlanError::Unsupported {
                    what: statement_kind(&other),
                    hint: None,
                });
            }
        })
    }
}

fn create_materialized_view(
    view: datafusion::sql::sqlparser::ast::CreateView,
    emit_on_window_close: bool,
) -> Result<CreateMaterializedView> {
    let settings = match view.options {
        CreateTableOptions::None => Vec::new(),
        CreateTableOptions::With(options) => sql_options(options)?,
        other => {
            return Err(PlanError::Unsupported {
                what: format!("materialized view options \"{other}\""),
                hint: Some("write job settings as WITH (key = 'value', ...)".to_string()),
            });
        }
    };
    Ok(CreateMaterializedView {
        name: object_name(&view.name),
        if_not_exists: view.if_not_exists,
        query: view.query,
        emit_on_window_close,
        settings,
        or_replace: view.or_replace,
    })
}

/// The parts of a `GRANT` or `REVOKE` Weir keeps, or why it cannot.
fn classify_grant(
    revoke: bool,
    privileges: Privileges,
    objects: Option<GrantObjects>,
    grantees: Vec<AstGrantee>,
    with_grant_option: bool,
) -> Result<Grant> {
    let unsupported = |what: String| PlanError::Unsupported { what, hint: None };
    if with_grant_option {
        return Err(unsupported("WITH GRANT OPTION".to_string()));
    }
    let privileges = match privileges {
        Privileges::All { .. } => None,
        Privileges::Actions(actions) => Some(
            actions
                .iter()
                .map(|action| match action {
                    Action::Select { columns: None } => Ok(Privilege::Select),
                    Action::Insert { columns: None } => Ok(Privilege::Insert),
                    Action::Update { columns: None } => Ok(Privilege::Update),
                    Action::Delete => Ok(Privilege::Delete),
                    Action::Create { obj_type: None } => Ok(Privilege::Create),
                    Action::Usage => Ok(Privilege::Usage),
                    Action::Select { .. } | Action::Insert { .. } | Action::Update { .. } => {
                        Err(unsupported("column privileges".to_string()))
                    }
                    other => Err(unsupported(format!("privilege {other}"))),
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    let names = |names: &[datafusion::sql::sqlparser::ast::ObjectName]| {
        names.iter().map(object_name).collect::<Vec<_>>()
    };
    let target = match objects {
        Some(GrantObjects::Tables(tables)) => GrantTarget::Relations(names(&tables)),
        Some(GrantObjects::Views(views)) => GrantTarget::Relations(names(&views)),
        Some(GrantObjects::AllTablesInSchema { schemas }) => {
            GrantTarget::AllInSchemas(names(&schemas))
        }
        Some(GrantObjects::Schemas(schemas)) => GrantTarget::Schemas(names(&schemas)),
        Some(other) => return Err(unsupported(format!("GRANT ON {other}"))),
        None => return Err(unsupported("GRANT of a role to a role".to_string())),
    };
    let grantees = grantees
        .iter()
        .map(|grantee| match (&grantee.grantee_type, &grantee.name) {
            (GranteesType::Public, _) => Ok(Grantee::Public),
            (_, Some(GranteeName::ObjectName(name))) => {
                let name = object_name(name);
                // sqlparser reads an unquoted PUBLIC as a name.
                Ok(if name == "public" {
                    Grantee::Public
                } else {
                    Grantee::Role(name)
                })
            }
            _ => Err(unsupported(format!("grantee {grantee}"))),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Grant {
        revoke,
        privileges,
        target,
        grantees,
    })
}

fn classify_set(set: Set) -> Result<WeirStatement> {
    Ok(match set {
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = object_name(&variable);
            let value = match values.as_slice() {
                [single] if is_default(single) => None,
                values => Some(values.iter().map(expr_text).collect::<Vec<_>>().join(", ")),
            };
            WeirStatement::SetVariable { name, value }
        }
        Set::SetTimeZone { value, .. } => WeirStatement::SetVariable {
            name: "timezone".to_string(),
            value: if is_default(&value) {
                None
            } else {
                Some(expr_text(&value))
            },
        },
        Set::SetNames { charset_name, .. } => WeirStatement::SetVariable {
            name: "client_encoding".to_string(),
            value: Some(charset_name.value),
        },
        Set::SetNamesDefault {} => WeirStatement::SetVariable {
            name: "client_encoding".to_string(),
            value: None,
        },
        // Transaction characteristics and roles have no effect in Weir, and
        // drivers send them unasked: accept them.
        Set::SetTransaction { .. } | Set::SetRole { .. } | Set::SetSessionAuthorization(_) => {
            WeirStatement::NoEffect("SET")
        }
        other => {
            return Err(PlanError::Unsupported {
                what: format!("\"{other}\""),
                hint: None,
            });
        }
    })
}

fn classify_show(variable: &[Ident]) -> WeirStatement {
    let words: Vec<String> = variable
        .iter()
        .map(|i| i.value.to_ascii_lowercase())
        .collect();
    match words.join(" ").as_str() {
        "all" => WeirStatement::ShowAll,
        "tables" => WeirStatement::ShowObjects(ObjectKind::Table),
        "views" => WeirStatement::ShowObjects(ObjectKind::View),
        "streams" => WeirStatement::ShowObjects(ObjectKind::Stream),
        "materialized views" => WeirStatement::ShowObjects(ObjectKind::MaterializedView),
        "sinks" => WeirStatement::ShowObjects(ObjectKind::Sink),
        // Postgres's settings named by several words.
        name @ ("time zone" | "transaction isolation level" | "session authorization") => {
            WeirStatement::ShowVariable {
                name: name.replace(' ', "_"),
            }
        }
        // sqlparser drops the dot of a custom setting (`SHOW myapp.flag`).
        _ => WeirStatement::ShowVariable {
            name: words.join("."),
        },
    }
}

fn is_default(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(ident) if ident.value.eq_ignore_ascii_case("default") && ident.quote_style.is_none())
}

/// A short name for a statement, for "... is not supported".
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    words.join(" ").to_uppercase()
}

/// A stream column computed as `PROCTIME()` (Flink's `p_time AS
/// PROCTIME()`) is refused: Weir stamps processing time in the view that
/// windows by it, `TUMBLE(stream, PROCTIME(), ..)` (design 0012, section 6).
fn refuse_proctime_columns(columns: &[datafusion::sql::sqlparser::ast::ColumnDef]) -> Result<()> {
    use datafusion::sql::sqlparser::ast::ColumnOption;
    for column in columns {
        for option in &column.options {
            if let ColumnOption::Generated {
                generation_expr: Some(expr),
                ..
            } = &option.option
                && crate::windows::is_proctime(expr)
            {
                return Err(PlanError::Unsupported {
                    what: format!(
                        "a stream column computed as PROCTIME() (\"{}\")",
                        column.name
                    ),
                    hint: Some(format!(
                        "leave the column out; {}",
                        crate::windows::PROCTIME_HINT
                    )),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn classify(sql: &str) -> WeirStatement {
        let mut statements = parse(sql).expect("parse");
        WeirStatement::classify(statements.remove(0)).expect("classify")
    }

    #[test]
    fn create_table_with_options() {
        let WeirStatement::CreateTable(t) =
            classify("CREATE TABLE Trips WITH (connector = 'file', path = 'a.csv', header = true)")
        else {
            panic!("not a create table");
        };
        assert_eq!(t.name, "trips");
        assert!(t.columns.is_empty());
        assert_eq!(
            t.options,
            vec![
                ("connector".to_string(), "file".to_string()),
                ("path".to_string(), "a.csv".to_string()),
                ("header".to_string(), "true".to_string()),
            ]
        );
    }

    #[test]
    fn set_and_show_variables() {
        assert!(matches!(
            classify("SET search_path TO public, \"$user\""),
            WeirStatement::SetVariable { name, value: Some(v) } if name == "search_path" && v == "public, $user"
        ));
        assert!(matches!(
            classify("SET TIME ZONE 'UTC'"),
            WeirStatement::SetVariable { name, value: Some(v) } if name == "timezone" && v == "UTC"
        ));
        assert!(matches!(
            classify("SHOW transaction isolation level"),
            WeirStatement::ShowVariable { name } if name == "transaction_isolation_level"
        ));
        assert!(matches!(
            classify("SHOW TABLES"),
            WeirStatement::ShowObjects(ObjectKind::Table)
        ));
    }

    #[test]
    fn deallocate_is_accepted_with_its_tag() {
        for sql in [
            "DEALLOCATE ALL",
            "DEALLOCATE PREPARE _pg3_0",
            "deallocate s1",
        ] {
            assert!(
                matches!(classify(sql), WeirStatement::NoEffect("DEALLOCATE")),
                "{sql}"
            );
        }
    }

    #[test]
    fn grants_and_revokes_as_postgres_spells_them() {
        let WeirStatement::Grant(grant) =
            classify("GRANT SELECT, INSERT ON TABLE T, public.u TO Alice, PUBLIC")
        else {
            panic!("not a grant");
        };
        assert_eq!(
            grant,
            Grant {
                revoke: false,
                privileges: Some(vec![Privilege::Select, Privilege::Insert]),
                target: GrantTarget::Relations(vec!["t".into(), "u".into()]),
                grantees: vec![Grantee::Role("alice".into()), Grantee::Public],
            }
        );
        let WeirStatement::Grant(grant) = classify("REVOKE ALL PRIVILEGES ON s FROM bob") else {
            panic!("not a revoke");
        };
        assert!(grant.revoke && grant.privileges.is_none());
        let WeirStatement::Grant(grant) = classify("GRANT CREATE ON SCHEMA public TO bob") else {
            panic!("not a grant");
        };
        assert_eq!(grant.target, GrantTarget::Schemas(vec!["public".into()]));
        assert_eq!(grant.privileges, Some(vec![Privilege::Create]));
        let mut statements = parse("GRANT SELECT ON t TO bob WITH GRANT OPTION").expect("parse");
        let err = WeirStatement::classify(statements.remove(0)).expect_err("unsupported");
        assert_eq!(err.to_string(), "WITH GRANT OPTION is not supported");
    }

    #[test]
    fn unsupported_statements_say_what() {
        let mut statements = parse("CREATE INDEX i ON t (a)").expect("parse");
        let err = WeirStatement::classify(statements.remove(0)).expect_err("unsupported");
        assert_eq!(err.to_string(), "CREATE INDEX is not supported");
    }
}
