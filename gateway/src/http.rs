//! The gateway's own small HTTP port: `/healthz`, `/readyz` (see [`crate::health`]) and
//! `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio_util::sync::CancellationToken;

use crate::{health::Health, metrics::Metrics};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, health });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "gateway HTTP server stopped");
    }
}

fn answer(ok: bool, health: &Health) -> axum::response::Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "failing" },
        "failing": health.failures(),
    });
    (status, Json(body)).into_response()
}

async fn healthz(State(s): State<AppState>) -> axum::response::Response {
    answer(s.health.live(), &s.health)
}

async fn readyz(State(s): State<AppState>) -> axum::response::Response {
    answer(s.health.ready(), &s.health)
}

async fn metrics_text(State(s): State<AppState>) -> String {
    let mut out = s.metrics.render();
    s.health.render(&mut out);
    out
}
