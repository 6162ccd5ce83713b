//! Errors that many domains share. A leaf: it imports nothing else of the crate, so any
//! domain can use it without a circle. [`ApiError`] is the HTTP API's error answer; it lives
//! here so that `auth` (which the API's layers use) need not import `api`.

use std::path::PathBuf;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A refused operator action (the transaction goes on; nothing of the action is written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    NotFound(String),
    /// 409: the action conflicts with the current state (illegal transition, step done).
    #[error("{0}")]
    Conflict(String),
    /// 422: the request is well-formed but not acceptable (a reason missing, too long a shelve).
    #[error("{0}")]
    Unprocessable(String),
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: String, message: String },
}

/// An error answer: `{"error": "...", "detail": ...}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub detail: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>, detail: Value) -> Self {
        ApiError {
            status,
            error: error.into(),
            detail,
        }
    }

    pub fn bad_request(error: impl Into<String>, detail: impl Into<Value>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, detail.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.error, "detail": self.detail }))).into_response()
    }
}
