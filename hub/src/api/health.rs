//! `/healthz` (alive), `/readyz` (database reachable), `/metrics` (Prometheus text).

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::Value;
use tracing::warn;

use super::{ApiError, AppState};
use crate::store;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
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

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let alarms = match store::alarm_counts(&state.pool).await {
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}
