//! `/healthz` (alive: the writer commits), `/readyz` (and the database answers), `/metrics`
//! (Prometheus text).
//!
//! The writer commits at least once a second when healthy (its timer tick), so a writer
//! that has not committed for `ingest.writer_stall_s` is stuck (a held write lock, a full
//! disk): alarms are not being stored, and health must say so.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::Value;
use tracing::warn;

use super::{ApiError, AppState};
use crate::store;

pub async fn healthz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if state.role.is_standby() {
        // Alive: a standby runs no writer, so there is no commit to wait for.
        return Ok("ok (standby)");
    }
    writer_commits(&state)?;
    Ok("ok")
}

fn writer_commits(state: &AppState) -> Result<(), ApiError> {
    match state.metrics.since_last_commit() {
        Some(age) if age > state.writer_stall => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ingest writer stalled",
            Value::String(format!(
                "no commit for {} s (ingest.writer_stall_s = {})",
                age.as_secs(),
                state.writer_stall.as_secs()
            )),
        )),
        _ => Ok(()),
    }
}

pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    writer_lease(&state)?;
    writer_commits(&state)?;
    match tokio::time::timeout(Duration::from_secs(2), store::ping(&state.pool)).await {
        Ok(Ok(())) => Ok("ready"),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database unreachable",
            Value::String(e.to_string()),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database unreachable",
            Value::String("no answer to SELECT 1 within 2 s".into()),
        )),
    }
}

/// The `writer_lease` check: a standby (another hub holds the writer lease) is not ready, so a
/// load balancer routes operators and gateways to the active hub.
fn writer_lease(state: &AppState) -> Result<(), ApiError> {
    if state.role.is_standby() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "standby",
            Value::String(format!(
                "writer_lease: another hub holds the writer lease; this hub is a hot standby (for {} s)",
                state.role.for_how_long().as_secs()
            )),
        ));
    }
    Ok(())
}

/// On a standby, every request that may write (anything but GET, HEAD, OPTIONS) is answered
/// 503 with `Retry-After`: the writes go to the active hub. Reads are served from the database.
pub async fn refuse_writes_on_standby(
    State(role): State<std::sync::Arc<crate::cluster::Role>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    let reads = [Method::GET, Method::HEAD, Method::OPTIONS];
    if role.is_standby() && !reads.contains(request.method()) {
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "standby",
            Value::String("standby hub; try another: another hub holds the writer lease".into()),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        return response;
    }
    next.run(request).await
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let alarms = match crate::alarms::queries::alarm_counts(&state.pool).await {
        Ok(counts) => counts,
        Err(e) => {
            warn!(error = %e, "metrics: cannot count alarms");
            Vec::new()
        }
    };
    let mut body = state.metrics.render(state.links.connected_count(), &alarms);
    if let Some(r) = &state.rota {
        r.bulk.render(&mut body);
    }
    state.auth.render(&mut body);
    state.role.render(&mut body);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}
