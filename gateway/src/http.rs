//! The gateway's own small HTTP port: `/healthz`, `/readyz` (see [`crate::health`]) and
//! `/metrics` (Prometheus text).

use std::{sync::Arc, time::Duration};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{health::Health, metrics::Metrics};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// Limits of this port: it answers probes and scrapers, so a few connections and a short
/// header timeout; `axum::serve` would hold a silent connection forever.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// How long open connections may finish after a shutdown was asked for.
const CONNECTION_GRACE: Duration = Duration::from_secs(2);

pub async fn serve(
    listener: tokio::net::TcpListener,
    limits: Limits,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, health });
    // HTTP/1 only, with hyper's header timer (which also closes idle keep-alive connections).
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= limits.max_connections {
                        // Dropped: closed at once. A scraper retries at its next interval.
                        tracing::debug!(%peer, "gateway HTTP port at its connection cap; refusing one");
                        continue;
                    }
                    let service = TowerToHyperService::new(app.clone());
                    let builder = builder.clone();
                    let shutdown = shutdown.clone();
                    connections.spawn(async move {
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        let mut conn = std::pin::pin!(conn);
                        let result = tokio::select! {
                            r = conn.as_mut() => r,
                            () = shutdown.cancelled() => {
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "gateway HTTP connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gateway HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(CONNECTION_GRACE, drain).await.is_err() {
        connections.shutdown().await;
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
