//! What a statement produces, for the protocol handlers to send: rows, a
//! command tag, a subscription, a COPY in either direction. And what
//! Describe says about a prepared statement. Statements build these; the
//! handlers in [`crate::pg`] turn them into pgwire messages.

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;

use crate::copy_in::CopyIn;
use crate::session::ReportedChange;

/// What a statement produced.
pub enum Output {
    /// Rows, streamed from the workers.
    Rows(SendableRecordBatchStream),
    /// A command that returns no rows: its tag (`CREATE TABLE`) and row count.
    Command {
        /// The command tag.
        tag: &'static str,
        /// The row count the tag carries, if any.
        rows: Option<usize>,
    },
    /// `SET` or `RESET` done; the client may need to hear about new values.
    Set {
        /// The command tag: `SET` or `RESET`.
        tag: &'static str,
        /// Changes the client must hear about (ParameterStatus).
        changes: Vec<ReportedChange>,
    },
    /// `BEGIN`.
    TransactionStart,
    /// `SUBSCRIBE`: a view's snapshot, then its changes as they come, until
    /// the job ends or the client cancels.
    Subscribe {
        /// Batches (with an `op` column for updating views).
        batches: SendableRecordBatchStream,
        /// Send as COPY data.
        copy: bool,
    },
    /// `COMMIT` / `ROLLBACK` (the tag says which).
    TransactionEnd(&'static str),
    /// `COPY t FROM STDIN`: the client sends the data next.
    CopyIn(Box<CopyIn>),
    /// An output, after a NOTICE or WARNING the client should see first.
    Noticed {
        /// What the client sees first.
        notice: Notice,
        /// What the statement returns.
        output: Box<Output>,
    },
    /// `COPY ... TO STDOUT`: rows to send as COPY data.
    CopyOut {
        /// The rows.
        batches: SendableRecordBatchStream,
        /// Their format.
        options: weir_connectors::copy_format::CopyOptions,
    },
}

impl Output {
    /// A command without rows: `tag` alone.
    pub fn command(tag: &'static str) -> Self {
        Output::Command { tag, rows: None }
    }

    /// This output, after `notice`.
    pub fn after(self, notice: Notice) -> Self {
        Output::Noticed {
            notice,
            output: Box::new(self),
        }
    }
}

/// A message a statement sends before its result (Postgres's
/// NoticeResponse): its severity, SQLSTATE and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `NOTICE` (something the user may want to know, e.g. a `DROP .. IF
    /// EXISTS` of nothing) or `WARNING` (something likely a mistake).
    pub severity: &'static str,
    /// The SQLSTATE: `00000` for notices, `01000` for warnings, or a more
    /// precise one (`42622`: an identifier truncated).
    pub code: &'static str,
    /// The text.
    pub message: String,
}

impl Notice {
    /// A `NOTICE` (SQLSTATE 00000), as Postgres sends for `DROP .. IF
    /// EXISTS` of something missing.
    pub fn info(message: impl Into<String>) -> Self {
        Notice {
            severity: "NOTICE",
            code: "00000",
            message: message.into(),
        }
    }

    /// A `WARNING` (SQLSTATE 01000), as Postgres sends for `COMMIT` outside
    /// a transaction.
    pub fn warning(message: impl Into<String>) -> Self {
        Notice {
            severity: "WARNING",
            code: "01000",
            message: message.into(),
        }
    }
}

/// What Describe tells a client about a prepared statement.
#[derive(Debug, Clone)]
pub struct Described {
    /// The result columns, or `None` for a statement without rows.
    pub schema: Option<SchemaRef>,
    /// The `$n` parameters' types, where the plan determines them.
    pub params: Vec<Option<DataType>>,
}
