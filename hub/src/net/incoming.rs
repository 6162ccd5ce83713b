//! The accept side of both servers: TCP_NODELAY and TCP keepalive on every stream, the caps
//! checked before anything is read, refused connections closed at once.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tracing::warn;

use super::io::Guarded;
use super::limits::{ConnTracker, LogGate};

/// How to accept on one listener.
#[derive(Debug, Clone)]
pub struct AcceptOptions {
    /// Idle time before the kernel probes a silent peer (dead gateways, vanished browsers).
    pub tcp_keepalive: Duration,
    /// gRPC: the HTTP/2 preface must arrive within this long.
    pub handshake_timeout: Option<Duration>,
}

/// Admitted connections of `listener`, each holding its place under `tracker`'s caps.
///
/// An accept error (e.g. out of descriptors) is logged at most every 10 s and followed by a
/// short pause, so that a full descriptor table does not turn the accept loop into a spin.
pub fn admitted(
    listener: TcpListener,
    tracker: Arc<ConnTracker>,
    options: AcceptOptions,
) -> impl Stream<Item = io::Result<Guarded>> + Send + 'static {
    let log = Arc::new(LogGate::new(Duration::from_secs(10)));
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(options.tcp_keepalive))
        .with_keepalive_interval(Some(Duration::from_secs(10)))
        .with_keepalive_retries(Some(3))
        .filter_map(move |accepted| {
            let tracker = tracker.clone();
            let log = log.clone();
            let handshake = options.handshake_timeout;
            async move {
                match accepted {
                    Ok(stream) => {
                        let peer = stream.peer_addr().ok()?;
                        // A refused stream is dropped here: closed before anything is read.
                        let permit = tracker.admit(peer).ok()?;
                        let guarded = Guarded::new(stream, peer, permit);
                        Some(Ok(match handshake {
                            Some(t) => guarded.with_handshake_deadline(t, tracker),
                            None => guarded,
                        }))
                    }
                    Err(e) => {
                        if let Some(suppressed) = log.allow() {
                            warn!(error = %e, suppressed, "accepting a connection failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        None
                    }
                }
            }
        })
}
