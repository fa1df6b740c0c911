//! Errors of connectors: most are the user's (bad options, missing files),
//! some an outside system's (I/O), and a few ours.

use datafusion::error::DataFusionError;

/// Result alias for this crate.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// Why a connector could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The user named a connector Weir does not have.
    #[error("unknown connector \"{name}\": expected {known}")]
    UnknownConnector {
        /// The name given.
        name: String,
        /// The connectors there are, as a list for the message.
        known: String,
    },
    /// `WITH (...)` without a `connector` (user's fault).
    #[error("option \"connector\" is required for a {role}: expected {one_of}")]
    MissingConnector {
        /// What was being created.
        role: crate::registry::Role,
        /// The connectors that can be that, as a list for the message.
        one_of: String,
    },
    /// A connector used as something it cannot be, such as a generator as a
    /// sink (user's fault; a feature Weir does not have).
    #[error("connector \"{connector}\" cannot be a {role}: it can be {can_be}")]
    CannotBe {
        /// The connector named.
        connector: String,
        /// What it was asked to be.
        role: crate::registry::Role,
        /// What it can be, as a list for the message.
        can_be: String,
    },
    /// A required option is missing (user's fault).
    #[error("option \"{option}\" is required for connector \"{connector}\"")]
    MissingOption {
        /// The connector whose option it is.
        connector: String,
        /// The option's name.
        option: &'static str,
    },
    /// An option the connector does not know (user's fault).
    #[error(
        "unknown option \"{option}\" for connector \"{connector}\"{}",
        .accepts.as_deref().map(|a| format!(": {a}")).unwrap_or_default()
    )]
    UnknownOption {
        /// The connector whose option it is.
        connector: String,
        /// The option's name.
        option: String,
        /// What the connector accepts instead, when known.
        accepts: Option<String>,
    },
    /// An option with a value that cannot be used (user's fault).
    #[error("invalid value \"{value}\" for option \"{option}\": {reason}")]
    InvalidOption {
        /// The option's name.
        option: String,
        /// The value given.
        value: String,
        /// Why the value is refused.
        reason: String,
    },
    /// A path outside the allowed paths, or one of Weir's own files (user's
    /// fault; the operator sets `allowed_paths`).
    #[error("permission denied for path \"{path}\": {reason}")]
    PathNotAllowed {
        /// The path as SQL named it.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// The path matched no file (user's fault, or the files went away).
    #[error("could not find any file at \"{0}\"")]
    NoFiles(String),
    // ---- tables Weir owns ----
    /// A row whose primary key is taken (the user's data).
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation {
        /// The constraint violated.
        constraint: String,
        /// More about the failure (SQLSTATE detail field).
        detail: String,
    },
    /// A NULL in a NOT NULL column (the user's data).
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNullViolation {
        /// The table written to.
        table: String,
        /// The column concerned.
        column: String,
    },
    /// UPDATE or DELETE on a table without a primary key (the user's).
    #[error("cannot {statement} table \"{table}\" because it has no primary key")]
    AppendOnly {
        /// The table written to.
        table: String,
        /// The statement refused.
        statement: String,
    },
    /// Two transactions wait for each other's tables; this one, whose wait
    /// would close the cycle, gives up (the users', as in Postgres: retry).
    #[error("deadlock detected")]
    Deadlock {
        /// The table this transaction was about to wait for.
        table: String,
    },
    /// COPY data with a value that is not of its column's type (the user's).
    #[error("{message}")]
    InvalidText {
        /// What went wrong, for the client.
        message: String,
        /// Where in the input (line and column) it went wrong.
        context: String,
    },
    /// COPY data that is not in the format it claims (the user's).
    #[error("{message}")]
    BadCopyData {
        /// What went wrong, for the client.
        message: String,
        /// Where in the input (line and column) it went wrong.
        context: String,
    },
    /// Weir's own files could not be read or written (an outside system: the disk).
    #[error("could not {action} \"{path}\": {source}")]
    Storage {
        /// What was being done with the file.
        action: &'static str,
        /// The file concerned.
        path: String,
        #[source]

        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The table log failed and takes no more writes until a restart (the disk, or ours).
    #[error("the table log failed: {0}")]
    LogFailed(String),
    /// An outside system (a Kafka broker) failed or refused a request.
    #[error("{system}: {message}")]
    External {
        /// The outside system that failed.
        system: &'static str,
        /// What went wrong, for the client.
        message: String,
    },
    /// Text in a file that is not a timestamp (the user's data).
    #[error("invalid input syntax for type timestamp: \"{value}\"{at}")]
    InvalidTimestamp {
        /// The value given.
        value: String,
        /// Where it is, when known (` (file "f.csv", line 3, column "ts")`).
        at: String,
    },
    /// A timestamp in a file with a field out of range (the user's data).
    #[error("date/time field value out of range: \"{value}\"{at}")]
    TimestampOutOfRange {
        /// The value given.
        value: String,
        /// Where it is, when known.
        at: String,
    },
    /// A file with nothing to infer columns from (the user's).
    #[error("could not infer any column from \"{path}\": the file is empty")]
    NoColumns {
        /// The file concerned.
        path: String,
    },
    /// Reading or listing the files failed; DataFusion says why.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

impl From<ConnectorError> for DataFusionError {
    fn from(err: ConnectorError) -> Self {
        match err {
            ConnectorError::DataFusion(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
