//! The HTTP/JSON API (DESIGN §4.5): what exists so far — estates, alarms, health, metrics.
//!
//! Reads go straight to the database; writes (acknowledgements) go through the ingest
//! writer, the single writer that also keeps the rule engine's state. Every error is a JSON
//! body `{"error": "...", "detail": ...}`, including malformed paths, queries and bodies.

mod alarms;
mod estates;
mod health;

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::error;

use crate::config::EstateConfig;
use crate::ingest::{LinkRegistry, WriterHandle};
use crate::metrics::Metrics;
use crate::store::{Pool, StoreError};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub writer: WriterHandle,
    pub links: LinkRegistry,
    pub metrics: Arc<Metrics>,
    pub estates: Arc<Vec<EstateConfig>>,
}

/// Every route of the HTTP API, in one place: authentication and TLS layers go here
/// (wrap the returned router, or add a `.layer(...)` before `with_state`).
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/estates", get(estates::list))
        .route("/alarms", get(alarms::list))
        .route("/alarms/{id}/history", get(alarms::history))
        .route("/alarms/{id}/ack", post(alarms::acknowledge))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state.metrics.observe_http(response.status().as_u16());
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint", Value::Null)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
        Value::Null,
    )
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

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        error!(error = %e, "database error while serving HTTP");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "database error",
            Value::String(e.to_string()),
        )
    }
}

/// `Path` whose rejection is our JSON error.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(rejection) => Err(path_error(rejection)),
        }
    }
}

fn path_error(rejection: PathRejection) -> ApiError {
    let status = match rejection.status() {
        s if s.is_server_error() => s,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, "invalid path parameter", Value::String(rejection.body_text()))
}

/// `Query` whose rejection is our JSON error.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(query_error(rejection)),
        }
    }
}

fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid query", rejection.body_text())
}
