//! The hub's two listeners as seen from the network: who may hold a connection, for how long,
//! and what is counted when a limit is hit (issue 9, defect 7).
//!
//! - [`limits`]: connection caps per listener, in total and per source address; the
//!   [`limits::Permit`] a connection holds while it is open; the counters behind
//!   `gatehouse_hub_connections_*` on `/metrics`.
//! - [`io`]: the accepted stream wrapped with its permit and, for gRPC, the deadline by which
//!   the peer must have sent the HTTP/2 preface.
//! - [`incoming`]: the accept side shared by both servers: TCP options, the caps, refusals.
//! - [`http`]: the HTTP/1 server loop (header timeout, graceful shutdown) over that.
//! - [`streams`]: concurrent gRPC streams per connection, refused with a reason and counted.
//! - [`rlimit`]: raising the descriptor limit, so that the caps, not the descriptor table,
//!   decide who is refused.

pub mod http;
pub mod incoming;
pub mod io;
pub mod limits;
pub mod rlimit;
pub mod streams;

pub use limits::{ConnTracker, Listener, NetMetrics};

/// The peer address of an HTTP connection, put on every request by [`http::serve`]
/// (`auth::Caller` reads it as the caller's source).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);
