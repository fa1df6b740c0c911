//! The server's errors, and how each one goes onto the wire.
//!
//! Every error a client can see is a [`ServerError`]; [`ServerError::sqlstate`]
//! picks its SQLSTATE with an exhaustive `match` (no `_` arm), so a new variant
//! cannot ship without a code. Errors from the other crates and from
//! DataFusion are sorted into these variants in `classify.rs`.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::tokenizer::Location;
use pgwire::error::{ErrorInfo, PgWireError};

mod classify;

use classify::classify_datafusion;
pub use classify::sqlstate_of;

/// Result alias for this crate.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

/// An error a client sees. `position` fields are 1-based character offsets
/// into the statement text.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    // ---- the user's fault: the statement ----
    /// Not valid SQL.
    #[error("{message}")]
    Syntax {
        /// What went wrong, for the client.
        message: String,
        /// More about the failure (SQLSTATE detail field).
        detail: Option<String>,
        /// Where in the SQL text it went wrong (1-based character).
        position: Option<usize>,
    },
    /// Valid SQL that Weir does not support.
    #[error("{message}")]
    FeatureNotSupported {
        /// What went wrong, for the client.
        message: String,
        /// What the user can do about it.
        hint: Option<String>,
    },
    /// A table or view that does not exist.
    #[error("{kind} \"{name}\" does not exist")]
    UndefinedTable {
        /// What the statement looked for, in Postgres's words: "relation",
        /// or the kind a `DROP` names ("materialized view").
        kind: &'static str,
        /// The object's name.
        name: String,
        /// Where in the SQL text it went wrong (1-based character).
        position: Option<usize>,
    },
    /// A column that does not exist.
    #[error("{message}")]
    UndefinedColumn {
        /// What went wrong, for the client.
        message: String,
        /// What the user can do about it.
        hint: Option<String>,
        /// Where in the SQL text it went wrong (1-based character).
        position: Option<usize>,
    },
    /// A function that does not exist (or not for these argument types).
    #[error("{message}")]
    UndefinedFunction {
        /// What went wrong, for the client.
        message: String,
        /// Where in the SQL text it went wrong (1-based character).
        position: Option<usize>,
    },
    /// Any other named thing that does not exist (a setting, a prepared statement).
    #[error("{message}")]
    UndefinedObject {
        /// What went wrong, for the client.
        message: String,
    },
    /// A table or view of that name exists already.
    #[error("relation \"{name}\" already exists")]
    DuplicateTable {
        /// The object's name.
        name: String,
    },
    /// `DROP VIEW` on a table and the like.
    #[error("{message}")]
    WrongObjectType {
        /// What went wrong, for the client.
        message: String,
    },
    /// A cursor that is not open on this connection.
    #[error("cursor \"{name}\" does not exist")]
    InvalidCursorName {
        /// The object's name.
        name: String,
    },
    /// A cursor of that name is open already.
    #[error("cursor \"{name}\" already exists")]
    DuplicateCursor {
        /// The object's name.
        name: String,
    },
    /// Types that do not fit together in a statement.
    #[error("{message}")]
    DatatypeMismatch {
        /// What went wrong, for the client.
        message: String,
        /// Where in the SQL text it went wrong (1-based character).
        position: Option<usize>,
    },
    /// A column reference that could mean more than one column.
    #[error("{message}")]
    AmbiguousColumn {
        /// What went wrong, for the client.
        message: String,
    },
    /// An object others depend on.
    #[error("{message}")]
    DependentObjects {
        /// What went wrong, for the client.
        message: String,
        /// More about the failure (SQLSTATE detail field).
        detail: Option<String>,
        /// What the user can do about it.
        hint: Option<String>,
    },
    /// Any other statement that cannot be planned.
    #[error("{message}")]
    InvalidStatement {
        /// What went wrong, for the client.
        message: String,
        /// Where in the SQL text it went wrong (1-based character).
        position: Option<usize>,
    },
    /// A statement nested or chained too deeply to plan (Postgres says
    /// this when its stack guard trips).
    #[error("stack depth limit exceeded")]
    StackDepthExceeded {
        /// What the user can do about it.
        hint: String,
    },
    /// A select list longer than Postgres allows.
    #[error("target lists can have at most {max} entries")]
    TooManyColumns {
        /// The limit.
        max: usize,
    },
    /// An action that does not fit the object's state now (resume a running
    /// job, suspend a failed one).
    #[error("{message}")]
    ObjectNotInPrerequisiteState {
        /// What went wrong, for the client.
        message: String,
        /// What the user can do about it.
        hint: Option<String>,
    },
    /// `SET` of a setting no session may change (`server_version`).
    #[error("parameter \"{name}\" cannot be changed")]
    CantChangeParameter {
        /// The setting's name.
        name: String,
    },
    /// A named object (other than a relation) that exists already: a
    /// savepoint, a role.
    #[error("{message}")]
    DuplicateObject {
        /// What went wrong, for the client.
        message: String,
    },
    /// A bad option value (`WITH (...)`, `SET`).
    #[error("{message}")]
    InvalidParameterValue {
        /// What went wrong, for the client.
        message: String,
        /// What the user can do about it.
        hint: Option<String>,
    },

    // ---- the user's fault: the data ----
    /// A value that cannot be read as its type (`'abc'::int`).
    #[error("{message}")]
    InvalidTextRepresentation {
        /// What went wrong, for the client.
        message: String,
    },
    /// Bytes that are not valid in the text's encoding (UTF-8).
    #[error("invalid byte sequence for encoding \"UTF8\"")]
    InvalidByteSequence,
    /// Text that is not a date or time.
    #[error("{message}")]
    InvalidDatetimeFormat {
        /// What went wrong, for the client.
        message: String,
    },
    /// A date or time with a field out of range.
    #[error("{message}")]
    DatetimeFieldOverflow {
        /// What went wrong, for the client.
        message: String,
    },
    /// Division by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// A number too large for its type.
    #[error("{message}")]
    NumericOutOfRange {
        /// What went wrong, for the client.
        message: String,
    },
    /// A scalar subquery that returned more than one row.
    #[error("more than one row returned by a subquery used as an expression")]
    CardinalityViolation,
    /// Any other bad data.
    #[error("{message}")]
    DataException {
        /// What went wrong, for the client.
        message: String,
    },

    // ---- the user's fault: writes to tables Weir owns ----
    /// A primary key that is taken.
    #[error("{message}")]
    UniqueViolation {
        /// What went wrong, for the client.
        message: String,
        /// More about the failure (SQLSTATE detail field).
        detail: String,
    },
    /// A NULL in a NOT NULL column.
    #[error("{message}")]
    NotNullViolation {
        /// What went wrong, for the client.
        message: String,
    },
    /// COPY data that does not follow its format (a missing or extra field).
    #[error("{message}")]
    BadCopyFormat {
        /// What went wrong, for the client.
        message: String,
        /// Where in the input (line and column) it went wrong.
        context: String,
    },
    /// A COPY value that is not of its column's type.
    #[error("{message}")]
    CopyInvalidText {
        /// What went wrong, for the client.
        message: String,
        /// Where in the input (line and column) it went wrong.
        context: String,
    },

    // ---- an outside system's fault ----
    /// A file that is not there.
    #[error("{message}")]
    UndefinedFile {
        /// What went wrong, for the client.
        message: String,
    },
    /// Reading or writing files or object storage failed.
    #[error("{message}")]
    Io {
        /// What went wrong, for the client.
        message: String,
    },
    /// The session's user may not do this.
    #[error("{message}")]
    InsufficientPrivilege {
        /// What was refused, for the client.
        message: String,
    },
    /// A statement in a transaction block after one of its statements
    /// failed (the user's: ROLLBACK first, as in Postgres).
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,
    /// A statement that cannot run inside a transaction block (`DISCARD
    /// ALL`), sent inside one (the user's: COMMIT or ROLLBACK first).
    #[error("{message}")]
    ActiveTransaction {
        /// What was refused, for the client.
        message: String,
    },
    /// Two transactions waited for each other's tables; this one gave up
    /// (the users': retry the transaction).
    #[error("deadlock detected")]
    Deadlock {
        /// What it waited for, for the client.
        detail: String,
    },
    /// The object is in use (the current user, the bootstrap user).
    #[error("{message}")]
    ObjectInUse {
        /// What went wrong, for the client.
        message: String,
    },
    /// Not enough memory (or another resource) for the query.
    #[error("{message}")]
    ResourcesExhausted {
        /// What went wrong, for the client.
        message: String,
    },
    /// A limit the configuration sets was passed (a job's
    /// `state_size_limit`): the user's to raise, or to ask for less.
    #[error("{message}")]
    ConfigurationLimitExceeded {
        /// What went wrong, for the client.
        message: String,
        /// Which setting to change.
        hint: Option<String>,
    },
    /// The statement was cancelled (by the client or a timeout).
    #[error("canceling statement due to user request")]
    QueryCanceled,
    /// The statement ran past the session's `statement_timeout`.
    #[error("canceling statement due to statement timeout")]
    StatementTimeout,
    /// The client went away while its statement ran: the statement is
    /// stopped (nobody will read its answer; the client's doing).
    #[error("connection to client lost")]
    ClientGone,
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The server's configuration is unusable (the operator's to fix).
    #[error("{message}")]
    Config {
        /// What went wrong, for the client.
        message: String,
    },

    // ---- whoever's fault the cause was ----
    /// A materialized view whose job failed, read, subscribed to or
    /// flushed: the cause keeps its class (a bad value in the data is the
    /// user's, a panic is ours).
    #[error("materialized view \"{view}\" failed: {cause}")]
    JobFailed {
        /// The view whose job failed.
        view: String,
        /// The job's error.
        cause: Box<ServerError>,
    },

    // ---- ours ----
    /// A bug or a broken invariant in Weir.
    #[error("internal error: {message}")]
    Internal {
        /// What went wrong, for the client.
        message: String,
    },
}

impl ServerError {
    /// The SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ServerError::Syntax { .. } => "42601",
            ServerError::FeatureNotSupported { .. } => "0A000",
            ServerError::UndefinedTable { .. } => "42P01",
            ServerError::UndefinedColumn { .. } => "42703",
            ServerError::UndefinedFunction { .. } => "42883",
            ServerError::UndefinedObject { .. } => "42704",
            ServerError::DuplicateTable { .. } => "42P07",
            ServerError::WrongObjectType { .. } => "42809",
            ServerError::InvalidCursorName { .. } => "34000",
            ServerError::DuplicateCursor { .. } => "42P03",
            ServerError::DatatypeMismatch { .. } => "42804",
            ServerError::AmbiguousColumn { .. } => "42702",
            ServerError::InvalidStatement { .. } => "42000",
            ServerError::DependentObjects { .. } => "2BP01",
            ServerError::StackDepthExceeded { .. } => "54001",
            ServerError::TooManyColumns { .. } => "54011",
            ServerError::InvalidParameterValue { .. } => "22023",
            ServerError::ObjectNotInPrerequisiteState { .. } => "55000",
            ServerError::CantChangeParameter { .. } => "55P02",
            ServerError::DuplicateObject { .. } => "42710",
            ServerError::InvalidTextRepresentation { .. } => "22P02",
            ServerError::DivisionByZero => "22012",
            ServerError::InvalidByteSequence => "22021",
            ServerError::InvalidDatetimeFormat { .. } => "22007",
            ServerError::DatetimeFieldOverflow { .. } => "22008",
            ServerError::NumericOutOfRange { .. } => "22003",
            ServerError::CardinalityViolation => "21000",
            ServerError::DataException { .. } => "22000",
            ServerError::UniqueViolation { .. } => "23505",
            ServerError::NotNullViolation { .. } => "23502",
            ServerError::BadCopyFormat { .. } => "22P04",
            ServerError::CopyInvalidText { .. } => "22P02",
            ServerError::UndefinedFile { .. } => "58P01",
            ServerError::Io { .. } => "58030",
            ServerError::Config { .. } => "F0000",
            ServerError::InsufficientPrivilege { .. } => "42501",
            ServerError::ObjectInUse { .. } => "55006",
            ServerError::InFailedTransaction => "25P02",
            ServerError::ActiveTransaction { .. } => "25001",
            ServerError::Deadlock { .. } => "40P01",
            ServerError::ResourcesExhausted { .. } => "53200",
            ServerError::ConfigurationLimitExceeded { .. } => "53400",
            ServerError::QueryCanceled => "57014",
            ServerError::StatementTimeout => "57014",
            ServerError::ClientGone => "08006",
            ServerError::ShuttingDown => "57P01",
            ServerError::Internal { .. } => "XX000",
            ServerError::JobFailed { cause, .. } => cause.sqlstate(),
        }
    }

    /// The position in the statement text, where known.
    pub fn position(&self) -> Option<usize> {
        match self {
            ServerError::Syntax { position, .. }
            | ServerError::UndefinedTable { position, .. }
            | ServerError::UndefinedColumn { position, .. }
            | ServerError::UndefinedFunction { position, .. }
            | ServerError::DatatypeMismatch { position, .. }
            | ServerError::InvalidStatement { position, .. } => *position,
            _ => None,
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            ServerError::Syntax { detail, .. } => detail.clone(),
            ServerError::UniqueViolation { detail, .. } => Some(detail.clone()),
            ServerError::DependentObjects { detail, .. } => detail.clone(),
            ServerError::Deadlock { detail } => Some(detail.clone()),
            _ => None,
        }
    }

    /// Where in the input the error is (Postgres's CONTEXT: a COPY line).
    fn context(&self) -> Option<String> {
        match self {
            ServerError::BadCopyFormat { context, .. }
            | ServerError::CopyInvalidText { context, .. } => Some(context.clone()),
            _ => None,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ServerError::StackDepthExceeded { hint } => Some(hint.clone()),
            ServerError::FeatureNotSupported { hint, .. }
            | ServerError::DependentObjects { hint, .. }
            | ServerError::UndefinedColumn { hint, .. }
            | ServerError::InvalidParameterValue { hint, .. }
            | ServerError::ObjectNotInPrerequisiteState { hint, .. }
            | ServerError::ConfigurationLimitExceeded { hint, .. } => hint.clone(),
            ServerError::ResourcesExhausted { .. } => Some(
                "each query may use at most query_memory_limit bytes: raise it with SET query_memory_limit = '4GB', or ask for less (fewer groups, a LIMIT)"
                    .to_string(),
            ),
            _ => None,
        }
    }

    /// The same error with its position moved by `offset` characters (a
    /// statement's position inside a longer request).
    pub fn shifted(mut self, offset: usize) -> Self {
        if let Some(position) = self.position_mut() {
            *position += offset;
        }
        self
    }

    /// The position field of the variants that carry one, when it is set.
    fn position_mut(&mut self) -> Option<&mut usize> {
        match self {
            ServerError::Syntax { position, .. }
            | ServerError::UndefinedTable { position, .. }
            | ServerError::UndefinedColumn { position, .. }
            | ServerError::UndefinedFunction { position, .. }
            | ServerError::DatatypeMismatch { position, .. }
            | ServerError::InvalidStatement { position, .. } => position.as_mut(),
            _ => None,
        }
    }

    /// An internal error from any message.
    pub fn internal(message: impl Into<String>) -> Self {
        ServerError::Internal {
            message: message.into(),
        }
    }

    /// The error of a materialized view whose job failed with `failure`.
    pub fn job_failed(view: &str, failure: &weir_runtime::job::JobFailure) -> Self {
        let cause = classify_datafusion(failure.error.find_root(), None);
        ServerError::JobFailed {
            view: view.to_string(),
            cause: Box::new(match &failure.context {
                // "checkpoint 3 failed: ..." with the cause's class.
                Some(context) => cause.with_context(context),
                None => cause,
            }),
        }
    }

    /// This error with `context` before its message, of the same class.
    fn with_context(self, context: &str) -> Self {
        match self {
            ServerError::Io { message } => ServerError::Io {
                message: format!("{context}: {message}"),
            },
            ServerError::Internal { message } => ServerError::Internal {
                message: format!("{context}: {message}"),
            },
            ServerError::ResourcesExhausted { message } => ServerError::ResourcesExhausted {
                message: format!("{context}: {message}"),
            },
            ServerError::UndefinedFile { message } => ServerError::UndefinedFile {
                message: format!("{context}: {message}"),
            },
            other => other,
        }
    }

    /// Sort a DataFusion error, resolving span positions against `sql`.
    pub fn from_datafusion(err: DataFusionError, sql: Option<&str>) -> Self {
        let position = err
            .diagnostic()
            .and_then(|d| d.span)
            .zip(sql)
            .map(|(span, sql)| {
                weir_planner::parser::location_to_position(
                    sql,
                    Location {
                        line: span.start.line,
                        column: span.start.column,
                    },
                )
            });
        classify_datafusion(err.find_root(), position)
    }
}

impl From<ServerError> for ErrorInfo {
    fn from(err: ServerError) -> Self {
        let mut info = ErrorInfo::new(
            "ERROR".to_string(),
            err.sqlstate().to_string(),
            err.to_string(),
        );
        info.detail = err.detail();
        info.hint = err.hint();
        info.position = err.position().map(|p| p.to_string());
        info.where_context = err.context();
        info
    }
}

impl From<ServerError> for PgWireError {
    fn from(err: ServerError) -> Self {
        PgWireError::UserError(Box::new(err.into()))
    }
}

fn lower_first(s: &str) -> String {
    let s = s.trim();
    let mut chars = s.chars();
    match chars.next() {
        Some(first) if !chars.as_str().starts_with(|c: char| c.is_uppercase()) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::error::ArrowError;

    #[test]
    fn missing_table_is_42p01() {
        let err = ServerError::from_datafusion(
            DataFusionError::Plan("table 'datafusion.public.nope' not found".into()),
            None,
        );
        assert_eq!(err.sqlstate(), "42P01");
        assert_eq!(err.to_string(), "relation \"nope\" does not exist");
    }

    #[test]
    fn a_bad_csv_value_is_invalid_text() {
        let err = ServerError::from_datafusion(
            DataFusionError::ArrowError(
                Box::new(ArrowError::ParseError(
                    "Error while parsing value 'x' as type 'Int64' for column 0 at line 3. Row data: '[x]'".into(),
                )),
                None,
            ),
            None,
        );
        assert_eq!(err.sqlstate(), "22P02");
        assert_eq!(
            err.to_string(),
            "invalid input syntax for type bigint: \"x\" (column 0 at line 3)"
        );
    }

    #[test]
    fn arrow_errors_are_data_errors() {
        let err = ServerError::from_datafusion(
            DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None),
            None,
        );
        assert_eq!(err.sqlstate(), "22012");
    }
}
