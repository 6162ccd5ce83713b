//! The HTTP server loop: hyper's HTTP/1 connection with a header read timeout, over the
//! capped [`super::incoming::admitted`] stream, with graceful shutdown.
//!
//! `axum::serve` sets no timer, so hyper enforces no header timeout and a client that
//! sends one header byte a second (or nothing) holds its connection forever. HTTP/1 only:
//! hyper-util's protocol-sniffing `auto` server reads the first bytes with no timeout at all,
//! and no operator client speaks cleartext HTTP/2 (browsers use HTTP/2 only over TLS).
//!
//! hyper starts the header timer whenever the connection waits for a request head (its first
//! one or the next on a keep-alive connection), so the same timeout closes slowloris clients
//! and idle keep-alive connections.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures::{Stream, StreamExt as _};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::io::Guarded;
use super::limits::{ConnTracker, Cut};

/// How long open connections may finish their requests after a shutdown was asked for;
/// then they are dropped (a live `/stream` never finishes on its own).
const CONNECTION_GRACE: Duration = Duration::from_secs(3);

/// Serves `app` on every admitted connection until `stop`; then stops accepting, lets
/// in-flight requests finish (for at most [`CONNECTION_GRACE`]) and returns.
pub async fn serve(
    incoming: impl Stream<Item = std::io::Result<Guarded>> + Send + 'static,
    app: Router,
    header_timeout: Duration,
    tracker: Arc<ConnTracker>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let mut connections = JoinSet::new();
    {
        let mut incoming = pin!(incoming);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                next = incoming.next() => match next {
                    Some(Ok(io)) => {
                        let peer = io.peer();
                        // Handlers see who called from where (`auth::Caller`).
                        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(super::Peer(peer))));
                        let builder = builder.clone();
                        let stop = stop.clone();
                        let tracker = tracker.clone();
                        connections.spawn(async move {
                            let conn = builder.serve_connection(TokioIo::new(io), service);
                            let mut conn = pin!(conn);
                            let result = tokio::select! {
                                r = conn.as_mut() => r,
                                () = stop.cancelled() => {
                                    conn.as_mut().graceful_shutdown();
                                    conn.await
                                }
                            };
                            if let Err(e) = result {
                                if e.is_timeout() {
                                    tracker.cut(Cut::Header, peer);
                                } else {
                                    debug!(%peer, error = %e, "HTTP connection ended with an error");
                                }
                            }
                        });
                    }
                    Some(Err(e)) => debug!(error = %e, "HTTP accept failed"),
                    None => break,
                },
            }
        }
        // Leaving this scope drops the listener: no new connection is accepted.
    }
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(CONNECTION_GRACE, drain).await.is_err() {
        debug!(
            left = connections.len(),
            "HTTP connections still open after the grace period; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}
