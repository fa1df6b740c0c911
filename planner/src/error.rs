//! Errors of the planner. Nearly all are the user's fault (bad SQL);
//! [`PlanError::Internal`] is the planner's own. Each carries what the server
//! needs to pick a SQLSTATE and a text position.

/// Result alias for this crate.
pub type Result<T, E = PlanError> = std::result::Result<T, E>;

/// Why a statement could not be understood or planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The text is not valid SQL. `position` is a 1-based character offset.
    #[error("{message}")]
    Syntax {
        /// What went wrong, for the client.
        message: String,
        /// More about the failure (SQLSTATE detail field).
        detail: Option<String>,
        /// Where in the SQL text it went wrong (1-based character).
        position: Option<usize>,
    },
    /// Valid SQL that Weir does not support (yet, or on purpose).
    #[error("{what} is not supported")]
    Unsupported {
        /// What is unsupported.
        what: String,
        /// What the user can do about it.
        hint: Option<String>,
    },
    /// A statement refers to an object that does not exist.
    #[error("{kind} \"{name}\" does not exist")]
    UndefinedObject {
        /// The kind of object (table, view, ...).
        kind: &'static str,
        /// The object's name.
        name: String,
    },
    /// A statement would create an object whose name is taken.
    #[error("{kind} \"{name}\" already exists")]
    DuplicateObject {
        /// The kind of object (table, view, ...).
        kind: &'static str,
        /// The object's name.
        name: String,
    },
    /// A statement nested or chained too deeply to be planned within a
    /// thread's stack (Postgres: 54001).
    #[error("stack depth limit exceeded")]
    StackDepth {
        /// What the user can do about it.
        hint: String,
    },
    /// A select list longer than Postgres allows (54011).
    #[error("target lists can have at most {max} entries")]
    TooManyColumns {
        /// The limit.
        max: usize,
    },
    /// A statement is well-formed but its parts do not fit together.
    #[error("{0}")]
    Invalid(String),
    /// The planner broke one of its own rules (a plan it built does not
    /// fit the shape it promised): Weir's fault, not the user's (XX000).
    #[error("internal error: {0}")]
    Internal(String),
}
