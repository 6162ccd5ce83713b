//! The gateway's own small HTTP port: `/healthz` and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::{Router, extract::State, routing::get};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { m.render() }),
        )
        .with_state(metrics);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "gateway HTTP server stopped");
    }
}
