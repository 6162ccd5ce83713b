//! Per-request limits of the HTTP API: a time limit on every request except the live
//! stream, a body size limit (413, in the API's JSON error shape like every other refusal),
//! and caps on the live stream's subscribers, in total (503) and per source address (429),
//! each subscriber holding its place until its response body is dropped. Connection-level
//! limits (caps, header timeout) are in [`crate::net`]. Every refusal is counted on
//! `/metrics`.

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
use crate::net::limits::{Caps, ConnTracker, Cut, LogGate, Refusal};
use crate::net::{Listener, limits::Permit};

/// Paths that run an operator's bulk action, with their own longer time limit.
const BULK: [&str; 2] = ["/api/v1/rota/import", "/api/v1/rota/plan"];
/// The live stream: it lives as long as the operator's screen; its keep-alive comments end
/// it when the client has gone.
const STREAM: &str = "/api/v1/stream";

#[derive(Clone)]
struct Limits {
    request: Duration,
    bulk: Duration,
    max_body_bytes: u64,
    metrics: Arc<Metrics>,
    log: Arc<LogGate>,
    /// The live stream's subscribers (`listener="stream"` on `/metrics`).
    subscribers: Arc<ConnTracker>,
}

/// `router` with the request time limit and the body size limit of `limits`.
pub fn apply(router: Router, limits: &HttpLimits, metrics: Arc<Metrics>) -> Router {
    let state = Limits {
        request: Duration::from_secs(u64::from(limits.request_timeout_s)),
        bulk: Duration::from_secs(u64::from(limits.bulk_request_timeout_s)),
        max_body_bytes: limits.max_body_bytes,
        subscribers: ConnTracker::new(
            Listener::Stream,
            Caps {
                max_connections: limits.max_stream_subscribers as usize,
                max_per_source: limits.max_stream_subscribers_per_source as usize,
            },
            metrics.net.clone(),
        ),
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
        None => {
            let permit = match request.extensions().get::<crate::net::Peer>() {
                Some(peer) => match limits.subscribers.admit(peer.0) {
                    Ok(p) => Some(p),
                    Err(refusal) => return stream_full(refusal),
                },
                // Not behind our accept loop (no peer known): nothing to count it under.
                None => None,
            };
            let response = next.run(request).await;
            match permit {
                Some(permit) => holding(response, permit),
                None => response,
            }
        }
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
        // axum's own 413 (from `DefaultBodyLimit`) is plain text: answer in the API's shape.
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
            Value::String(format!(
                "at most {} bytes (limits.http.max_body_bytes)",
                limits.max_body_bytes
            )),
        )
        .into_response();
    }
    response
}

/// The refusal of a subscriber over a cap: 503 when every place is taken, 429 when the
/// caller's address holds its share (it is the one to back off).
fn stream_full(refusal: Refusal) -> Response {
    let (status, detail) = match refusal {
        Refusal::Total => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub serves as many live-stream subscribers as it may (limits.http.max_stream_subscribers); retry later",
        ),
        Refusal::PerSource => (
            StatusCode::TOO_MANY_REQUESTS,
            "this address holds as many live-stream subscriptions as it may (limits.http.max_stream_subscribers_per_source); close one first",
        ),
    };
    let mut response =
        ApiError::new(status, "too many stream subscribers", Value::String(detail.into())).into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("5"),
    );
    response
}

/// `response` whose body holds `permit` until the body is dropped: the subscriber's place is
/// freed when its stream ends or its client goes.
fn holding(response: Response, permit: Permit) -> Response {
    use futures::StreamExt as _;
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    });
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}
