//! What the parser hands on: a request's statements ("pieces"), each with
//! what Weir's own syntax added to it. These types are the parser's output
//! and the classifier's input (`crate::statement`), so both import them from
//! here and neither imports the other's internals.

use datafusion::sql::sqlparser::ast::Statement;

/// One statement of a request, with where it came from.
#[derive(Debug, Clone)]
pub struct Piece {
    /// What was parsed.
    pub kind: PieceKind,
    /// The statement's text (after Weir's same-length rewrites).
    pub text: String,
    /// Characters in the request before `text` starts.
    pub offset: usize,
}

/// What a piece of a request is.
#[derive(Debug, Clone)]
pub enum PieceKind {
    /// A statement sqlparser parsed, with what Weir's syntax added to it.
    Sql {
        /// The statement.
        statement: Box<Statement>,
        /// `CREATE STREAM` / `DROP STREAM` (parsed as `TABLE`).
        stream: bool,
        /// `WATERMARK FOR column AS expression`, when declared.
        watermark: Option<WatermarkClause>,
        /// `EMIT ON WINDOW CLOSE` was given.
        emit_on_window_close: bool,
    },
    /// `SUBSCRIBE TO name`, or its `COPY (...) TO STDOUT` form.
    Subscribe {
        /// The view subscribed to (normalized).
        name: String,
        /// The COPY form: rows stream as COPY data.
        copy: bool,
    },
    /// `FLUSH [view]`: wait until everything written so far is visible in
    /// views (in that one view).
    Flush {
        /// The view named, normalized.
        view: Option<String>,
    },
    /// `CREATE [OR REPLACE] SINK [IF NOT EXISTS] name FROM view WITH (key =
    /// 'value', ...)`.
    CreateSink {
        /// The sink (normalized).
        name: String,
        /// `IF NOT EXISTS` given.
        if_not_exists: bool,
        /// `OR REPLACE` given: an upgrade of the sink there is.
        or_replace: bool,
        /// The view it writes out (normalized).
        from: String,
        /// The connector options, keys lowercased.
        options: Vec<(String, String)>,
    },
    /// `DROP SINK [IF EXISTS] names`.
    DropSink {
        /// Normalized names.
        names: Vec<String>,
        /// `IF EXISTS` given.
        if_exists: bool,
    },
    /// `DECLARE name CURSOR FOR SUBSCRIBE TO view`.
    DeclareCursor {
        /// The cursor (normalized).
        name: String,
        /// The view subscribed to (normalized).
        view: String,
    },
    /// `FETCH [n | ALL] [FROM] cursor [WITH (timeout = '...')]`.
    Fetch {
        /// The cursor (normalized).
        cursor: String,
        /// How many rows.
        count: FetchCount,
        /// How long to wait for a first row, as written (`None`: as long
        /// as it takes).
        timeout: Option<String>,
    },
    /// `CLOSE cursor`, or `CLOSE ALL` (`None`).
    CloseCursor {
        /// The cursor (normalized).
        name: Option<String>,
    },
    /// A job statement (`SHOW JOBS`, `ALTER JOB`, savepoints).
    Job(super::JobStatement),
}

/// A stream's declared watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkClause {
    /// The event-time column (normalized).
    pub column: String,
    /// The watermark expression as written, e.g. `ts - INTERVAL '2 seconds'`.
    pub expr: String,
}

/// How many rows a `FETCH` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchCount {
    /// `FETCH n`, `FETCH NEXT` (1), `FETCH` (1).
    Rows(u64),
    /// `FETCH ALL`: every row there is now (at least one, for a
    /// subscription).
    All,
}
