//! Concurrent gRPC streams per connection (`limits.grpc.max_concurrent_streams`), refused out
//! loud: a stream over the cap is answered `RESOURCE_EXHAUSTED` with the limit in its message
//! and counted (`gatehouse_hub_grpc_streams_refused_total`), instead of waiting unseen.
//!
//! Why not HTTP/2's own `SETTINGS_MAX_CONCURRENT_STREAMS` alone: a client that honours it
//! queues its extra streams where the hub never sees them (nothing to count, no error to
//! read), and one that ignores it gets a bare `REFUSED_STREAM`. So the setting is kept as a
//! hard ceiling above the cap ([`h2_ceiling`]) and the cap is enforced here, per service
//! wrapped in [`Capped`]: each call holds its place until its response body is dropped, so a
//! long-lived stream (a gateway's `GatewayLink.Connect`, a console's watch) holds it for its
//! whole life.
//!
//! A connection is told apart by its peer address (IP and port), from the connect info tonic
//! puts on each request, plain TCP or TLS.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body as GrpcBody;
use tonic::codegen::{BoxFuture, Bytes, Service, StdError, http};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tracing::warn;

use super::limits::{LogGate, NetMetrics};

/// The HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` for a cap of `cap`: room above it, so that
/// a stream over the cap reaches [`Capped`] and is refused with a reason.
pub fn h2_ceiling(cap: u32) -> u32 {
    cap.saturating_mul(2).max(cap.saturating_add(4))
}

/// The open streams of every connection, and the cap.
#[derive(Debug)]
pub struct StreamCaps {
    max_per_connection: usize,
    open: Mutex<HashMap<SocketAddr, usize>>,
    metrics: Arc<NetMetrics>,
    log: LogGate,
}

impl StreamCaps {
    pub fn new(max_per_connection: u32, metrics: Arc<NetMetrics>) -> Arc<StreamCaps> {
        Arc::new(StreamCaps {
            max_per_connection: max_per_connection.max(1) as usize,
            open: Mutex::new(HashMap::new()),
            metrics,
            log: LogGate::new(Duration::from_secs(10)),
        })
    }

    /// `service` with its calls counted against the cap.
    pub fn wrap<S>(self: &Arc<Self>, service: S) -> Capped<S> {
        Capped {
            inner: service,
            caps: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, usize>> {
        // Every update is an integer step that cannot panic half-way; keep counting.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(self: &Arc<Self>, connection: SocketAddr) -> Option<StreamPermit> {
        {
            let mut open = self.lock();
            let n = open.entry(connection).or_insert(0);
            if *n >= self.max_per_connection {
                drop(open);
                self.metrics.count_stream_refused();
                if let Some(suppressed) = self.log.allow() {
                    warn!(peer = %connection, cap = self.max_per_connection, suppressed,
                        "gRPC stream refused: its connection holds limits.grpc.max_concurrent_streams (counted; logged at most every 10 s)");
                }
                return None;
            }
            *n += 1;
        }
        Some(StreamPermit {
            caps: self.clone(),
            connection,
        })
    }
}

/// A stream's place on its connection; dropping it frees the place.
#[derive(Debug)]
struct StreamPermit {
    caps: Arc<StreamCaps>,
    connection: SocketAddr,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.caps.lock();
        if let Some(n) = open.get_mut(&self.connection) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.connection);
            }
        }
    }
}

/// A gRPC service whose calls are counted against [`StreamCaps`].
#[derive(Debug, Clone)]
pub struct Capped<S> {
    inner: S,
    caps: Arc<StreamCaps>,
}

impl<S: NamedService> NamedService for Capped<S> {
    const NAME: &'static str = S::NAME;
}

/// The connection a request came on: its peer address, over plain TCP or TLS.
fn connection_of<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let ext = request.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|t| t.get_ref().remote_addr())
        })
}

impl<S, B> Service<http::Request<GrpcBody>> for Capped<S>
where
    S: Service<http::Request<GrpcBody>, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError>,
{
    type Response = http::Response<GrpcBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<GrpcBody>) -> Self::Future {
        let permit = match connection_of(&request) {
            Some(connection) => match self.caps.admit(connection) {
                Some(p) => Some(p),
                None => {
                    let status = tonic::Status::resource_exhausted(format!(
                        "too many concurrent streams on this connection: at most {} (limits.grpc.max_concurrent_streams); open another connection or close a stream",
                        self.caps.max_per_connection
                    ));
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            },
            // No connect info (not served from a socket): nothing to count it under.
            None => None,
        };
        // The clone that was made ready is the one that is called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(response.map(|body| {
                GrpcBody::new(Held {
                    inner: Box::pin(body),
                    permit,
                })
            }))
        })
    }
}

/// A response body that holds its stream's place until it is dropped.
struct Held<B> {
    inner: Pin<Box<B>>,
    permit: Option<StreamPermit>,
}

impl<B> tonic::codegen::Body for Held<B>
where
    B: tonic::codegen::Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let _ = &self.permit;
        self.inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
