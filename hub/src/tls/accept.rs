//! The TLS handshake of each admitted gRPC connection, concurrently (a slow handshake never
//! holds the accept loop), within the handshake timeout. A failed or late handshake is
//! counted (`gatehouse_hub_connections_closed_total{reason="tls_handshake_failed"}` or
//! `"handshake_timeout"`) and the connection closed.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::server::TlsState;
use crate::net::io::Guarded;
use crate::net::limits::{ConnTracker, Cut};

/// Connections whose TLS handshake has completed, ready for tonic (which reads the peer's
/// certificates from them).
pub fn handshaken(
    admitted: impl Stream<Item = io::Result<Guarded>> + Send + 'static,
    tls: Arc<TlsState>,
    timeout: Duration,
    tracker: Arc<ConnTracker>,
    stop: CancellationToken,
) -> impl Stream<Item = io::Result<TlsStream<Guarded>>> + Send + 'static {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut admitted = std::pin::pin!(admitted);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tx.closed() => return,
                next = admitted.next() => next,
            };
            let stream = match next {
                Some(Ok(stream)) => stream,
                Some(Err(e)) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    continue;
                }
                None => return,
            };
            let acceptor = tls.acceptor();
            let tracker = tracker.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let peer = stream.peer();
                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "TLS handshake failed");
                        tracker.cut(Cut::Tls, peer);
                    }
                    Err(_) => tracker.cut(Cut::Handshake, peer),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
