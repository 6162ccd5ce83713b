//! An accepted connection, holding its place under the caps for as long as it is open.
//!
//! For gRPC it also carries the handshake deadline: hyper's HTTP/2 server waits for the
//! client preface with no timeout of its own, and its keep-alive pings start only after it,
//! so a peer that connects and says nothing would hold its connection forever. Until the
//! peer has sent [`H2_HANDSHAKE_BYTES`], a read still waiting at the deadline fails with
//! `TimedOut`, which ends the connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::limits::{ConnTracker, Cut, Permit};
use std::sync::Arc;

/// The HTTP/2 client preface (24 bytes) and the header of the SETTINGS frame every client
/// must send right after it (9 bytes).
pub const H2_HANDSHAKE_BYTES: usize = 24 + 9;

struct Handshake {
    deadline: Pin<Box<Sleep>>,
    missing: usize,
    tracker: Arc<ConnTracker>,
}

/// A TCP stream with its [`Permit`] (and, for gRPC, its handshake deadline).
pub struct Guarded {
    inner: TcpStream,
    peer: SocketAddr,
    handshake: Option<Handshake>,
    _permit: Permit,
}

impl Guarded {
    pub fn new(inner: TcpStream, peer: SocketAddr, permit: Permit) -> Guarded {
        Guarded {
            inner,
            peer,
            handshake: None,
            _permit: permit,
        }
    }

    /// The peer must send the HTTP/2 preface and SETTINGS header within `timeout`.
    pub fn with_handshake_deadline(mut self, timeout: Duration, tracker: Arc<ConnTracker>) -> Guarded {
        self.handshake = Some(Handshake {
            deadline: Box::pin(tokio::time::sleep(timeout)),
            missing: H2_HANDSHAKE_BYTES,
            tracker,
        });
        self
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn stream(&self) -> &TcpStream {
        &self.inner
    }
}

impl AsyncRead for Guarded {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some(h) = &mut this.handshake {
                    h.missing = h.missing.saturating_sub(buf.filled().len() - before);
                    if h.missing == 0 {
                        this.handshake = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some(h) = &mut this.handshake
                    && h.deadline.as_mut().poll(cx).is_ready()
                {
                    h.tracker.cut(Cut::Handshake, this.peer);
                    this.handshake = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 preface within the handshake timeout",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Tonic reads the peer's address from this (`Request::remote_addr`), as for a plain stream.
impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
