//! The API's errors: every failure is JSON with the SQLSTATE the same
//! failure has over pgwire, and an HTTP status picked from that SQLSTATE in
//! one place ([`status_of`]), so a job that is unknown is 404 whether
//! `ALTER JOB` or `POST /api/v1/jobs/{name}/suspend` found out.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pgwire::error::ErrorInfo;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ServerError;

/// An error as the API sends it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiError {
    /// The SQLSTATE, as a Postgres client would get it (`42704`, `55000`).
    pub code: String,
    /// What went wrong, in Postgres style.
    pub message: String,
    /// More about the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Where in the SQL text it went wrong (1-based character), for
    /// `POST /api/v1/sql`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// Whose fault it is: `user` (the request), `outside` (a system Weir
    /// depends on) or `internal` (Weir's).
    pub class: &'static str,
    /// The HTTP status, kept out of the body.
    #[serde(skip)]
    pub status: StatusCode,
}

/// The HTTP status for a SQLSTATE: the one place the API decides it.
pub fn status_of(sqlstate: &str) -> StatusCode {
    match sqlstate {
        // Something named does not exist: a job, a savepoint, a relation.
        "42704" | "42P01" | "58P01" => StatusCode::NOT_FOUND,
        // Does not fit the object's state, or the name is taken.
        "55000" | "55006" | "42710" | "42P07" | "2BP01" => StatusCode::CONFLICT,
        "42501" => StatusCode::FORBIDDEN,
        // No or a wrong bearer token.
        "28000" | "28P01" => StatusCode::UNAUTHORIZED,
        "57014" => StatusCode::REQUEST_TIMEOUT,
        "57P01" | "53200" | "53300" => StatusCode::SERVICE_UNAVAILABLE,
        "58030" => StatusCode::BAD_GATEWAY,
        "XX000" | "F0000" => StatusCode::INTERNAL_SERVER_ERROR,
        // Constraint violations: the write conflicts with what is there.
        s if s.starts_with("23") => StatusCode::CONFLICT,
        // The rest of the user's classes: bad SQL, bad values, unsupported.
        s if s.starts_with("42") || s.starts_with("22") || s.starts_with("0A") => {
            StatusCode::BAD_REQUEST
        }
        s if s.starts_with("21") || s.starts_with("34") || s.starts_with("54") => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn class_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => "outside",
        s if s.is_client_error() => "user",
        _ => "internal",
    }
}

impl ApiError {
    /// An error of the API's own (a bad path or body), with its SQLSTATE.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        let status = status_of(code);
        Self {
            code: code.to_string(),
            message: message.into(),
            detail: None,
            hint: None,
            position: None,
            class: class_of(status),
            status,
        }
    }

    /// A bad value in the request (22023).
    pub fn bad_value(message: impl Into<String>) -> Self {
        Self::new("22023", message)
    }

    /// The same error with a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<ServerError> for ApiError {
    fn from(err: ServerError) -> Self {
        // Through pgwire's ErrorInfo: the fields a Postgres client gets,
        // exactly as it gets them.
        let info = ErrorInfo::from(err);
        let status = status_of(&info.code);
        Self {
            code: info.code,
            message: info.message,
            detail: info.detail,
            hint: info.hint,
            position: info.position.and_then(|p| p.parse().ok()),
            class: class_of(status),
            status,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        if status.is_server_error() {
            tracing::warn!(code = %self.code, message = %self.message, "API request failed");
        }
        (status, Json(self)).into_response()
    }
}

/// What handlers return.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_sqlstate() {
        assert_eq!(status_of("42704"), StatusCode::NOT_FOUND);
        assert_eq!(status_of("55000"), StatusCode::CONFLICT);
        assert_eq!(status_of("42710"), StatusCode::CONFLICT);
        assert_eq!(status_of("22023"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("42601"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("0A000"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("XX000"), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_of("58030"), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn server_errors_keep_code_position_and_hint() {
        let err = ApiError::from(ServerError::Syntax {
            message: "syntax error at or near \"FORM\"".into(),
            detail: None,
            position: Some(10),
        });
        assert_eq!(err.code, "42601");
        assert_eq!(err.position, Some(10));
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.class, "user");
        let err = ApiError::from(ServerError::ObjectNotInPrerequisiteState {
            message: "job \"v\" is suspended".into(),
            hint: Some("only a running job can be suspended".into()),
        });
        assert_eq!(err.status, StatusCode::CONFLICT);
        assert_eq!(
            err.hint.as_deref(),
            Some("only a running job can be suspended")
        );
    }
}
