//! Errors from DataFusion, Arrow, I/O and the other crates, sorted into
//! [`ServerError`] variants: what a client sees, and whose fault it is.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use weir_connectors::ConnectorError;
use weir_planner::PlanError;
use weir_runtime::RuntimeError;

use super::{ServerError, lower_first};

/// The SQLSTATE a DataFusion error gets on the wire, for counting it
/// without taking it.
pub fn sqlstate_of(err: &DataFusionError) -> &'static str {
    classify_datafusion(err.find_root(), None).sqlstate()
}

pub(super) fn classify_datafusion(err: &DataFusionError, position: Option<usize>) -> ServerError {
    use datafusion::common::SchemaError;
    match err {
        DataFusionError::SQL(parser_err, _) => {
            let PlanError::Syntax {
                message, detail, ..
            } = weir_planner::parser::syntax_error("", (**parser_err).clone())
            else {
                return ServerError::internal(parser_err.to_string());
            };
            ServerError::Syntax {
                message,
                detail,
                position,
            }
        }
        DataFusionError::SchemaError(schema_err, _) => match schema_err.as_ref() {
            SchemaError::FieldNotFound {
                field,
                valid_fields,
            } => {
                let hint = (!valid_fields.is_empty() && valid_fields.len() <= 20).then(|| {
                    let names: Vec<String> = valid_fields.iter().map(|c| c.flat_name()).collect();
                    format!("valid columns: {}", names.join(", "))
                });
                ServerError::UndefinedColumn {
                    message: format!("column \"{}\" does not exist", field.name),
                    hint,
                    position,
                }
            }
            SchemaError::AmbiguousReference { field } => ServerError::AmbiguousColumn {
                message: format!("column reference \"{}\" is ambiguous", field.name),
            },
            other => ServerError::InvalidStatement {
                message: lower_first(&other.to_string()),
                position,
            },
        },
        DataFusionError::Plan(message) => classify_plan_message(message, position),
        DataFusionError::NotImplemented(message) => ServerError::FeatureNotSupported {
            message: lower_first(message),
            hint: None,
        },
        DataFusionError::Configuration(message) => ServerError::InvalidParameterValue {
            message: lower_first(message),
            hint: None,
        },
        DataFusionError::ArrowError(arrow, _) => classify_arrow(arrow),
        DataFusionError::Execution(message) => classify_execution_message(message),
        DataFusionError::ResourcesExhausted(message) => ServerError::ResourcesExhausted {
            message: lower_first(message),
        },
        DataFusionError::IoError(io) => classify_io(io),
        DataFusionError::ObjectStore(store) => match store.as_ref() {
            datafusion::object_store::Error::NotFound { path, .. } => ServerError::UndefinedFile {
                message: format!("could not open file \"{path}\": no such file"),
            },
            other => ServerError::Io {
                message: other.to_string(),
            },
        },
        DataFusionError::ParquetError(parquet) => ServerError::DataException {
            message: format!("could not read parquet data: {parquet}"),
        },
        DataFusionError::External(inner) => {
            if let Some(connector) = inner.downcast_ref::<ConnectorError>() {
                return connector_error(connector);
            }
            // A statement stopped while its rows streamed (pg::activity).
            match inner.downcast_ref::<ServerError>() {
                Some(ServerError::QueryCanceled) => return ServerError::QueryCanceled,
                Some(ServerError::StatementTimeout) => return ServerError::StatementTimeout,
                Some(ServerError::ClientGone) => return ServerError::ClientGone,
                _ => {}
            }
            if let Some(arrow) = inner.downcast_ref::<ArrowError>() {
                return classify_arrow(arrow);
            }
            if let Some(io) = inner.downcast_ref::<std::io::Error>() {
                return classify_io(io);
            }
            // A function that reports a setting it does not know
            // (`current_setting`), as `SHOW` does.
            if let Some(ServerError::UndefinedObject { message }) =
                inner.downcast_ref::<ServerError>()
            {
                return ServerError::UndefinedObject {
                    message: message.clone(),
                };
            }
            if let Some(over) =
                inner.downcast_ref::<weir_runtime::checkpoint::StateSizeLimitExceeded>()
            {
                return ServerError::ConfigurationLimitExceeded {
                    message: over.to_string(),
                    hint: Some(
                        "raise the job's state_size_limit (ALTER JOB name SET (state_size_limit = '...')) and restart it, or keep less state"
                            .into(),
                    ),
                };
            }
            match inner.downcast_ref::<RuntimeError>() {
                Some(RuntimeError::Panic(message)) => {
                    return ServerError::internal(message.clone());
                }
                Some(RuntimeError::JobFailed { view, failure }) => {
                    return ServerError::job_failed(view, failure);
                }
                _ => {}
            }
            ServerError::Io {
                message: inner.to_string(),
            }
        }
        DataFusionError::ExecutionJoin(join) => ServerError::internal(join.to_string()),
        DataFusionError::Internal(message) => ServerError::internal(message.clone()),
        other => ServerError::internal(other.strip_backtrace()),
    }
}

/// DataFusion reports most planning errors as plain text; the common ones a
/// user meets get their proper SQLSTATE here.
fn classify_plan_message(message: &str, position: Option<usize>) -> ServerError {
    if let Some(rest) = message.strip_prefix("table '")
        && let Some((name, _)) = rest.split_once("' not found")
    {
        let name = name.rsplit('.').next().unwrap_or(name).to_string();
        return ServerError::UndefinedTable {
            kind: "relation",
            name,
            position,
        };
    }
    if message.starts_with("Invalid function") || message.contains("No function matches") {
        return ServerError::UndefinedFunction {
            message: lower_first(message),
            position,
        };
    }
    if message.contains("Cannot infer common argument type")
        || message.contains("cannot be cast")
        || message.contains("Cannot coerce")
        || message.contains("does not support") && message.contains("type")
        || message.contains("mismatch")
    {
        return ServerError::DatatypeMismatch {
            message: lower_first(message),
            position,
        };
    }
    if message.contains("orrelated scalar subquery must be aggregated") {
        // Postgres runs such a subquery once per outer row; DataFusion
        // decorrelates it into a join and needs it aggregated.
        return ServerError::FeatureNotSupported {
            message: "a correlated scalar subquery that is not aggregated is not supported".into(),
            hint: Some(
                "aggregate the selected expression (for example max(..)) or write the subquery as a LEFT JOIN"
                    .into(),
            ),
        };
    }
    if message.contains("already exists") {
        return ServerError::DuplicateTable {
            name: message
                .split('\'')
                .nth(1)
                .unwrap_or(message)
                .rsplit('.')
                .next()
                .unwrap_or(message)
                .to_string(),
        };
    }
    ServerError::InvalidStatement {
        message: lower_first(message),
        position,
    }
}

fn classify_execution_message(message: &str) -> ServerError {
    if message.contains("calar subquery returned more than one row") {
        return ServerError::CardinalityViolation;
    }
    if message.contains("Divide by zero") || message.contains("division by zero") {
        return ServerError::DivisionByZero;
    }
    if message.contains("overflow") {
        return ServerError::NumericOutOfRange {
            message: lower_first(message),
        };
    }
    if message.contains("Cannot cast") || message.contains("Error parsing") {
        return ServerError::InvalidTextRepresentation {
            message: lower_first(message),
        };
    }
    ServerError::DataException {
        message: lower_first(message),
    }
}

fn classify_arrow(err: &ArrowError) -> ServerError {
    match err {
        ArrowError::DivideByZero => ServerError::DivisionByZero,
        ArrowError::ArithmeticOverflow(m) => ServerError::NumericOutOfRange {
            message: lower_first(m),
        },
        ArrowError::CastError(m) | ArrowError::ParseError(m) => {
            ServerError::InvalidTextRepresentation {
                message: cast_message(m),
            }
        }
        ArrowError::CsvError(m) | ArrowError::JsonError(m) => ServerError::DataException {
            message: format!("could not read file data: {m}"),
        },
        ArrowError::IoError(m, io) => match io.kind() {
            std::io::ErrorKind::NotFound => ServerError::UndefinedFile { message: m.clone() },
            _ => ServerError::Io { message: m.clone() },
        },
        ArrowError::ExternalError(inner) => ServerError::DataException {
            message: inner.to_string(),
        },
        ArrowError::MemoryError(m) => ServerError::ResourcesExhausted { message: m.clone() },
        other => ServerError::DataException {
            message: lower_first(&other.to_string()),
        },
    }
}

/// Arrow's "Cannot cast string 'abc' to value of Int64 type" in Postgres's
/// words: `invalid input syntax for type bigint: "abc"`.
fn cast_message(message: &str) -> String {
    let parsed = message
        .strip_prefix("Cannot cast string '")
        .and_then(|rest| rest.rsplit_once("' to value of "))
        .and_then(|(value, rest)| Some((value, rest.strip_suffix(" type")?)));
    // Arrow's CSV reader: "Error while parsing value 'x' as type 'Int64'
    // for column 0 at line 3. Row data: '[x]'" (where it is is kept).
    let (parsed, place) = match parsed {
        Some(parsed) => (Some(parsed), None),
        None => match message
            .strip_prefix("Error while parsing value '")
            .and_then(|rest| rest.split_once("' as type '"))
            .and_then(|(value, rest)| {
                let (ty, rest) = rest.split_once('\'')?;
                let place = rest.strip_prefix(" for ")?.split_once(". Row data")?.0;
                Some(((value, ty), place))
            }) {
            Some((parsed, place)) => (Some(parsed), Some(place)),
            None => (None, None),
        },
    };
    match parsed.and_then(|(value, ty)| {
        Some((
            value,
            ty.parse::<datafusion::arrow::datatypes::DataType>().ok()?,
        ))
    }) {
        Some((value, ty)) => {
            let text = format!(
                "invalid input syntax for type {}: \"{value}\"",
                weir_connectors::copy_format::pg_type_name(&ty)
            );
            match place {
                Some(place) => format!("{text} ({place})"),
                None => text,
            }
        }
        None => lower_first(message),
    }
}

fn classify_io(io: &std::io::Error) -> ServerError {
    match io.kind() {
        std::io::ErrorKind::NotFound => ServerError::UndefinedFile {
            message: format!("could not open file: {io}"),
        },
        _ => ServerError::Io {
            message: io.to_string(),
        },
    }
}

fn connector_error(err: &ConnectorError) -> ServerError {
    match err {
        ConnectorError::UnknownConnector { .. }
        | ConnectorError::MissingConnector { .. }
        | ConnectorError::MissingOption { .. }
        | ConnectorError::UnknownOption { .. }
        | ConnectorError::InvalidOption { .. } => ServerError::InvalidParameterValue {
            message: err.to_string(),
            hint: None,
        },
        ConnectorError::CannotBe { .. } => ServerError::FeatureNotSupported {
            message: err.to_string(),
            hint: None,
        },
        ConnectorError::NoFiles(_) => ServerError::UndefinedFile {
            message: err.to_string(),
        },
        ConnectorError::PathNotAllowed { .. } => ServerError::InsufficientPrivilege {
            message: err.to_string(),
        },
        ConnectorError::DataFusion(inner) => classify_datafusion(inner.find_root(), None),
        ConnectorError::UniqueViolation { detail, .. } => ServerError::UniqueViolation {
            message: err.to_string(),
            detail: detail.clone(),
        },
        ConnectorError::NotNullViolation { .. } => ServerError::NotNullViolation {
            message: err.to_string(),
        },
        ConnectorError::Deadlock { table } => ServerError::Deadlock {
            detail: format!(
                "waiting for the write lock of table \"{table}\" would wait forever: its holder waits for this transaction"
            ),
        },
        ConnectorError::AppendOnly { .. } => ServerError::FeatureNotSupported {
            message: err.to_string(),
            hint: Some(
                "a table without a PRIMARY KEY is append-only: declare one to UPDATE or DELETE rows"
                    .into(),
            ),
        },
        ConnectorError::InvalidText { message, context } => ServerError::CopyInvalidText {
            message: message.clone(),
            context: context.clone(),
        },
        ConnectorError::BadCopyData { message, context } => ServerError::BadCopyFormat {
            message: message.clone(),
            context: context.clone(),
        },
        ConnectorError::InvalidTimestamp { .. } => ServerError::InvalidDatetimeFormat {
            message: err.to_string(),
        },
        ConnectorError::TimestampOutOfRange { .. } => ServerError::DatetimeFieldOverflow {
            message: err.to_string(),
        },
        ConnectorError::NoColumns { .. } => ServerError::DataException {
            message: err.to_string(),
        },
        ConnectorError::Storage { .. }
        | ConnectorError::LogFailed(_)
        | ConnectorError::External { .. } => ServerError::Io {
            message: err.to_string(),
        },
    }
}

impl From<ConnectorError> for ServerError {
    fn from(err: ConnectorError) -> Self {
        connector_error(&err)
    }
}

impl From<PlanError> for ServerError {
    fn from(err: PlanError) -> Self {
        match err {
            PlanError::Syntax {
                message,
                detail,
                position,
            } => ServerError::Syntax {
                message,
                detail,
                position,
            },
            PlanError::Unsupported { what, hint } => ServerError::FeatureNotSupported {
                message: format!("{what} is not supported"),
                hint,
            },
            PlanError::UndefinedObject { kind, name } => match kind {
                "table" | "view" | "relation" => ServerError::UndefinedTable {
                    kind: "relation",
                    name,
                    position: None,
                },
                _ => ServerError::UndefinedObject {
                    message: format!("{kind} \"{name}\" does not exist"),
                },
            },
            PlanError::DuplicateObject { name, .. } => ServerError::DuplicateTable { name },
            PlanError::StackDepth { hint } => ServerError::StackDepthExceeded { hint },
            PlanError::TooManyColumns { max } => ServerError::TooManyColumns { max },
            PlanError::Invalid(message) => ServerError::InvalidStatement {
                message,
                position: None,
            },
            PlanError::Internal(message) => ServerError::internal(message),
        }
    }
}

impl From<RuntimeError> for ServerError {
    fn from(err: RuntimeError) -> Self {
        match err {
            RuntimeError::DataFusion(inner) => ServerError::from_datafusion(inner, None),
            RuntimeError::Panic(message) => ServerError::Internal { message },
            RuntimeError::JobFailed { view, failure } => ServerError::job_failed(&view, &failure),
            RuntimeError::ShuttingDown => ServerError::ShuttingDown,
            // An outside system changed under the job; it restarts.
            err @ RuntimeError::Repartitioned(_) => ServerError::Io {
                message: err.to_string(),
            },
            RuntimeError::Start(io) => ServerError::internal(io.to_string()),
        }
    }
}
