//! `/healthz` (alive: the writer commits), `/readyz` (and the database answers; on a standby:
//! an active hub to forward to, and the live stream relayed), `/metrics` (Prometheus text).
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
    if !state.role.is_standby() {
        writer_commits(&state)?;
    }
    match tokio::time::timeout(Duration::from_secs(2), store::ping(&state.pool)).await {
        Ok(Ok(())) if state.role.is_standby() => Ok("ready (standby: changes are forwarded to the active hub)"),
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

/// The `writer_lease` check. A standby is ready while it can serve operators in full: a hub
/// holds the writer lease (its changes are forwarded there) and this hub's relay of the live
/// stream is current. Gateways a standby refuses move on to the next hub they know.
fn writer_lease(state: &AppState) -> Result<(), ApiError> {
    if !state.role.is_standby() {
        return Ok(());
    }
    let not_ready = |detail: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "standby", Value::String(detail));
    let Some(active) = state.role.writer_at() else {
        return Err(not_ready(format!(
            "writer_lease: no hub holds the writer lease (standby for {} s; a takeover is due within cluster.lease_s)",
            state.role.for_how_long().as_secs()
        )));
    };
    if !state.forwarder.answers(&active.holder) {
        return Err(not_ready(format!(
            "active_hub: {} does not answer at {} (cluster.advertise_http), so changes cannot be forwarded",
            active.holder, active.http_url
        )));
    }
    match state.relay.as_ref().map(|r| r.since_last_look()) {
        Some(Some(age)) if age <= crate::cluster::relay::STALE => Ok(()),
        Some(Some(age)) => Err(not_ready(format!(
            "stream_relay: the other hubs' changes were last read {} s ago",
            age.as_secs()
        ))),
        _ => Err(not_ready(
            "stream_relay: not yet reading the other hubs' changes".into(),
        )),
    }
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
    if let Some(relay) = &state.relay {
        relay.render(&mut body);
    }
    state.forwarder.render(&mut body);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}
