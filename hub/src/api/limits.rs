//! Per-request limits of the HTTP API: a time limit on every request except the live
//! stream, and a body size limit. Connection-level limits (caps, header timeout) are in
//! [`crate::net`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tracing::warn;

use super::ApiError;
use crate::config::HttpLimits;
use crate::metrics::Metrics;
use crate::net::Listener;
use crate::net::limits::{Cut, LogGate};

/// Paths that run an operator's bulk action, with their own longer time limit.
const BULK: [&str; 2] = ["/api/v1/rota/import", "/api/v1/rota/plan"];
/// The live stream: it lives as long as the operator's screen; its keep-alive comments end
/// it when the client has gone.
const STREAM: &str = "/api/v1/stream";

#[derive(Clone)]
struct Limits {
    request: Duration,
    bulk: Duration,
    metrics: Arc<Metrics>,
    log: Arc<LogGate>,
}

/// `router` with the request time limit and the body size limit of `limits`.
pub fn apply(router: Router, limits: &HttpLimits, metrics: Arc<Metrics>) -> Router {
    let state = Limits {
        request: Duration::from_secs(u64::from(limits.request_timeout_s)),
        bulk: Duration::from_secs(u64::from(limits.bulk_request_timeout_s)),
        metrics,
        log: Arc::new(LogGate::new(Duration::from_secs(10))),
    };
    router
        .layer(middleware::from_fn_with_state(state, limit_request))
        .layer(DefaultBodyLimit::max(
            usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX),
        ))
}

async fn limit_request(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let limit = if path == STREAM {
        None
    } else if BULK.contains(&path.as_str()) {
        Some(limits.bulk)
    } else {
        Some(limits.request)
    };
    let response = match limit {
        None => next.run(request).await,
        Some(limit) => match tokio::time::timeout(limit, next.run(request)).await {
            Ok(r) => r,
            Err(_) => {
                limits.metrics.net.count_cut(Listener::Http, Cut::Request);
                if let Some(suppressed) = limits.log.allow() {
                    warn!(%method, %path, limit_s = limit.as_secs(), suppressed,
                        "HTTP request not answered within its time limit; answered 503 (counted, logged at most every 10 s)");
                }
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the request took too long",
                    Value::String(format!("not answered within {} s", limit.as_secs())),
                )
                .into_response();
            }
        },
    };
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        limits.metrics.net.count_cut(Listener::Http, Cut::Body);
    }
    response
}
