//! The API's bearer token: when `api_token` (or `WEIR_API_TOKEN`) is set,
//! every `/api` request must carry `Authorization: Bearer <token>`; else
//! 401 with a JSON error. `/healthz`, `/metrics` and the console's static
//! files stay open (the console asks for the token and sends it).
//!
//! Without a token the API is open, which is safe only where the HTTP
//! listener is reachable from this machine alone: on any other address it
//! answers 401 until a token is set, since `POST /api/v1/sql` can do what
//! a superuser can.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Api;
use super::errors::ApiError;

/// Who may call the API.
#[derive(Clone)]
pub enum Access {
    /// Anyone who reaches the listener (loopback, no token).
    Open,
    /// Callers that present this token.
    Token(crate::config::Secret),
    /// No one: the listener is reachable from other machines and no token
    /// is set.
    Closed,
}

impl Access {
    /// What `token` and a listener on `addr` allow.
    pub fn new(token: Option<crate::config::Secret>, addr: std::net::SocketAddr) -> Self {
        match token {
            Some(token) => Access::Token(token),
            None if addr.ip().is_loopback() => Access::Open,
            None => Access::Closed,
        }
    }
}

/// Equal tokens, in time that depends on neither: both are hashed first,
/// so neither their contents nor their lengths show in the timing.
fn same(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given.ct_eq(&expected).into()
}

fn unauthorized(message: &str, hint: &str) -> Response {
    let mut response = ApiError::new("28000", message)
        .with_hint(hint)
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The middleware in front of every `/api` route.
pub async fn require_token(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    match &api.access {
        Access::Open => next.run(request).await,
        Access::Closed => unauthorized(
            "the REST API is closed: the HTTP listener is reachable from other machines and no api_token is set",
            "set api_token in the config file or WEIR_API_TOKEN",
        ),
        Access::Token(token) => {
            let given = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match given {
                Some(given) if same(given.trim(), token.expose()) => next.run(request).await,
                Some(_) => unauthorized(
                    "the bearer token is wrong",
                    "send the server's api_token as Authorization: Bearer <token>",
                ),
                None => unauthorized(
                    "a bearer token is required",
                    "send the server's api_token as Authorization: Bearer <token>",
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cre", "s3cret"));
        assert!(!same("", "s3cret"));
    }

    #[test]
    fn no_token_is_open_only_on_loopback() {
        let local: std::net::SocketAddr = "127.0.0.1:8488".parse().expect("addr");
        let any: std::net::SocketAddr = "0.0.0.0:8488".parse().expect("addr");
        assert!(matches!(Access::new(None, local), Access::Open));
        assert!(matches!(Access::new(None, any), Access::Closed));
        assert!(matches!(
            Access::new(Some("t".to_string().into()), any),
            Access::Token(_)
        ));
    }
}
