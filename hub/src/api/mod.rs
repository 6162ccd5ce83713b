//! The HTTP/JSON API (docs/design.md, HTTP API): estates, alarms (ack, shelve, out of service, history),
//! incidents (list, open, detail, transition, procedure steps), commands to devices,
//! notifications (and answering one by its link or an SMS reply, `answer.rs`), the live
//! stream (SSE, with catch-up), the alarm KPI, the audit log (admins), health and metrics; and, outside `/api/v1`, the
//! board's embedded files (`board.rs`).
//!
//! Reads go straight to the database; writes (acknowledgements) go through the ingest
//! writer, the single writer that also keeps the rule engine's state. Every error is a JSON
//! body `{"error": "...", "detail": ...}`, including malformed paths, queries and bodies.

mod alarms;
pub mod answer;
mod audit;
mod auth;
mod board;
mod commands;
mod devices;
pub mod enforce;
mod estates;
pub(crate) mod health;
mod incidents;
mod kpi;
pub mod limits;
mod rota;
pub mod routes;
mod stream;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::error;

use crate::actions::Invalid;
use crate::clock::Clock;
use crate::config::EstateConfig;
use crate::error::OpError;
use crate::link::LinkRegistry;
use crate::metrics::Metrics;
use crate::store::{Pool, StoreError};
use crate::writer::{ActionError, WriterHandle};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub writer: WriterHandle,
    pub links: LinkRegistry,
    pub metrics: Arc<Metrics>,
    pub estates: Arc<Vec<EstateConfig>>,
    pub clock: Arc<dyn Clock>,
    /// Changes published by the writer after each commit (`GET /stream`), with the replay
    /// ring for clients that reconnect.
    pub stream: Arc<crate::stream::Feed>,
    pub hub_id: String,
    pub response_target_ms: i64,
    pub flood_start_above: u32,
    /// The rota's committed state (None: no `[[posts]]` configured).
    pub rota: Option<Arc<crate::rota::RotaShared>>,
    /// `/healthz` fails when the writer has not committed for this long (`ingest.writer_stall_s`).
    pub writer_stall: std::time::Duration,
    /// Sign-in: credentials → principal, sessions, the failed-login throttle.
    pub auth: Arc<crate::auth::Authenticator>,
    /// What answer links and SMS replies are checked with (`answer.rs`).
    pub answers: Arc<answer::AnswerKeys>,
    /// Active, standby or the only hub (`cluster`): a standby forwards changes to the active.
    pub role: Arc<crate::cluster::Role>,
    /// Several hubs: how this hub's relay of the others' live stream is doing (None: one hub).
    pub relay: Option<Arc<crate::cluster::relay::RelayHealth>>,
    /// What a standby forwards operators' changes with (its counts are in `/metrics`).
    pub forwarder: Arc<crate::cluster::forward::Forwarder>,
}

/// The HTTP server's router, built from the route table ([`routes`]): each route wrapped in
/// `auth::enforce` with its decision; the API's routes also behind authentication. TLS and
/// other layers go here (wrap the returned router, or add a `.layer(...)` before `with_state`).
pub fn router(state: AppState) -> Router {
    board::prepare();
    let mut api = Router::new();
    let mut open_api = Router::new();
    let mut root = Router::new();
    for r in routes::routes() {
        let public = r.decl.decision == crate::api::enforce::Decision::Public;
        let handler = r.handler.layer(middleware::from_fn_with_state(
            (state.clone(), r.decl.decision),
            crate::api::enforce::enforce,
        ));
        match r.decl.path.strip_prefix(routes::API) {
            // Signing in takes no credentials: these join after the authentication layer.
            Some(path) if public => open_api = open_api.route(path, handler),
            Some(path) => api = api.route(path, handler),
            None => root = root.route(r.decl.path, handler),
        }
    }
    let api = api
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inside authentication, so it sees the principal.
        .layer(middleware::from_fn(mask_personal_data))
        .layer(middleware::from_fn_with_state(
            state.auth.clone(),
            crate::auth::middleware::authenticate,
        ))
        .merge(open_api);
    root.nest(routes::API, api)
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

/// Every JSON answer of the API with residents' personal data masked for the caller's role
/// (`privacy::View`): one place, so no handler can forget it. The SSE stream masks each
/// event itself (`stream.rs`); roles that see everything in clear pay nothing.
async fn mask_personal_data(request: Request, next: Next) -> Response {
    let view = request
        .extensions()
        .get::<Arc<crate::auth::Principal>>()
        .map_or(crate::privacy::View::MASKED, |p| {
            crate::privacy::View::for_role(p.role.as_str())
        });
    let response = next.run(request).await;
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if view.is_clear() || !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            error!(error = %e, "cannot read an answer to mask it");
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot prepare the answer",
                Value::Null,
            )
            .into_response();
        }
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        // Not JSON after all: nothing of ours to mask.
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    view.json(&mut value);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(value.to_string()))
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

pub use crate::error::ApiError;

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

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::Refused(OpError::NotFound(m)) => {
                ApiError::new(StatusCode::NOT_FOUND, "not found", Value::String(m))
            }
            ActionError::Refused(OpError::Conflict(m)) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", Value::String(m))
            }
            ActionError::Refused(OpError::Unprocessable(m)) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not acceptable", Value::String(m))
            }
            ActionError::Writer(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot record the action now",
                Value::String(e.to_string()),
            ),
        }
    }
}

/// A JSON body that may be empty (then `T::default()`); errors are our JSON 400.
pub(crate) fn json_body<T: DeserializeOwned + Default>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), "cannot read the request body", r.body_text().into()))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid JSON body", e.to_string()))
}

/// A short free-text field: trimmed, bounded, no control characters (newlines allowed in notes).
pub(crate) fn text_field(
    name: &str,
    v: Option<String>,
    max: usize,
    multiline: bool,
) -> Result<Option<String>, ApiError> {
    Ok(crate::actions::text_field(name, v, max, multiline)?)
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        let status = if e.forbidden {
            StatusCode::FORBIDDEN
        } else if e.unprocessable {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, e.error, Value::String(e.detail))
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
