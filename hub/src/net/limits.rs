//! Connection caps: at most `max_connections` open on a listener, at most
//! `max_connections_per_source` of them from one source address, so that one address
//! flooding the port cannot take the room of every gateway and operator.
//!
//! A source is an IPv4 address, or an IPv6 /64 (one host usually holds a whole /64, so
//! counting single IPv6 addresses would let it open as many connections as it likes).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

/// The hub's listeners, as labelled on `/metrics`; `Stream` counts the subscribers of the
/// live SSE stream (`GET /api/v1/stream`), each an HTTP connection held open, capped apart
/// so that screens left open cannot take every place of the HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Http = 0,
    Grpc = 1,
    Stream = 2,
}

impl Listener {
    pub const ALL: [Listener; 3] = [Listener::Http, Listener::Grpc, Listener::Stream];

    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Http => "http",
            Listener::Grpc => "grpc",
            Listener::Stream => "stream",
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds `max_connections`.
    Total = 0,
    /// The source holds `max_connections_per_source`.
    PerSource = 1,
}

impl Refusal {
    pub const ALL: [Refusal; 2] = [Refusal::Total, Refusal::PerSource];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerSource => "max_connections_per_source",
        }
    }
}

/// Why an open connection was closed by a timeout or a size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// HTTP/1: no complete request head in time (slowloris, or idle between requests).
    Header = 0,
    /// gRPC: no HTTP/2 preface in time.
    Handshake = 1,
    /// HTTP: the request was not answered in time (503).
    Request = 2,
    /// HTTP: the body was larger than `max_body_bytes` (413).
    Body = 3,
    /// gRPC: the TLS handshake failed (no, a wrong, an expired or a revoked certificate).
    Tls = 4,
}

impl Cut {
    pub const ALL: [Cut; 5] = [Cut::Header, Cut::Handshake, Cut::Request, Cut::Body, Cut::Tls];

    pub fn as_str(self) -> &'static str {
        match self {
            Cut::Header => "header_timeout",
            Cut::Handshake => "handshake_timeout",
            Cut::Request => "request_timeout",
            Cut::Body => "body_too_large",
            Cut::Tls => "tls_handshake_failed",
        }
    }
}

/// The counters of both listeners.
#[derive(Debug, Default)]
pub struct NetMetrics {
    open: [AtomicU64; Listener::ALL.len()],
    refused: [[AtomicU64; Refusal::ALL.len()]; Listener::ALL.len()],
    cut: [[AtomicU64; Cut::ALL.len()]; Listener::ALL.len()],
    /// gRPC streams refused over `limits.grpc.max_concurrent_streams` (see `streams.rs`).
    streams_refused: AtomicU64,
}

impl NetMetrics {
    pub fn open(&self, l: Listener) -> u64 {
        self.open[l as usize].load(Relaxed)
    }

    pub fn refused(&self, l: Listener, r: Refusal) -> u64 {
        self.refused[l as usize][r as usize].load(Relaxed)
    }

    pub fn cut(&self, l: Listener, c: Cut) -> u64 {
        self.cut[l as usize][c as usize].load(Relaxed)
    }

    pub fn count_cut(&self, l: Listener, c: Cut) {
        self.cut[l as usize][c as usize].fetch_add(1, Relaxed);
    }

    pub fn count_stream_refused(&self) {
        self.streams_refused.fetch_add(1, Relaxed);
    }

    pub fn streams_refused(&self) -> u64 {
        self.streams_refused.load(Relaxed)
    }

    /// `gatehouse_hub_connections_open`, `…_refused_total`, `…_closed_total`.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_connections_open Connections open per listener.\n\
             # TYPE gatehouse_hub_connections_open gauge"
        );
        for l in Listener::ALL {
            let _ = writeln!(
                out,
                "gatehouse_hub_connections_open{{listener=\"{}\"}} {}",
                l.as_str(),
                self.open(l)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_connections_refused_total Connections closed at accept by a cap.\n\
             # TYPE gatehouse_hub_connections_refused_total counter"
        );
        for l in Listener::ALL {
            for r in Refusal::ALL {
                let _ = writeln!(
                    out,
                    "gatehouse_hub_connections_refused_total{{listener=\"{}\",reason=\"{}\"}} {}",
                    l.as_str(),
                    r.as_str(),
                    self.refused(l, r)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_connections_cut_total Connections or requests ended by a timeout or size limit.\n\
             # TYPE gatehouse_hub_connections_cut_total counter"
        );
        for l in Listener::ALL {
            for c in Cut::ALL {
                // Only the pairs that can happen: HTTP has no preface, gRPC no HTTP/1 head.
                let possible = match l {
                    Listener::Http => !matches!(c, Cut::Handshake | Cut::Tls),
                    Listener::Grpc => matches!(c, Cut::Handshake | Cut::Tls),
                    Listener::Stream => false,
                };
                if possible {
                    let _ = writeln!(
                        out,
                        "gatehouse_hub_connections_cut_total{{listener=\"{}\",reason=\"{}\"}} {}",
                        l.as_str(),
                        c.as_str(),
                        self.cut(l, c)
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_grpc_streams_refused_total gRPC streams refused: their connection held limits.grpc.max_concurrent_streams.\n\
             # TYPE gatehouse_hub_grpc_streams_refused_total counter\n\
             gatehouse_hub_grpc_streams_refused_total {}",
            self.streams_refused()
        );
    }
}

/// Caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_connections: usize,
    pub max_per_source: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// Counts one listener's open connections and admits or refuses new ones.
#[derive(Debug)]
pub struct ConnTracker {
    listener: Listener,
    caps: Caps,
    counts: Mutex<Counts>,
    metrics: Arc<NetMetrics>,
    log: LogGate,
}

/// An admitted connection's place under the caps; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    tracker: Arc<ConnTracker>,
    source: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.tracker.release(self.source);
    }
}

impl Permit {
    pub fn listener(&self) -> Listener {
        self.tracker.listener
    }

    pub fn metrics(&self) -> &NetMetrics {
        &self.tracker.metrics
    }
}

/// The source a connection is counted under.
pub fn source_of(peer: &SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl ConnTracker {
    pub fn new(listener: Listener, caps: Caps, metrics: Arc<NetMetrics>) -> Arc<ConnTracker> {
        Arc::new(ConnTracker {
            listener,
            caps,
            counts: Mutex::new(Counts::default()),
            metrics,
            log: LogGate::new(Duration::from_secs(10)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Every update is a few integer steps that cannot panic half-way; keep counting.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a connection from `peer`, or why there is none (counted and logged).
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Permit, Refusal> {
        let source = source_of(&peer);
        let verdict = {
            let mut counts = self.lock();
            let from_source = counts.per_source.get(&source).copied().unwrap_or(0);
            if from_source >= self.caps.max_per_source {
                Err(Refusal::PerSource)
            } else if counts.total >= self.caps.max_connections {
                Err(Refusal::Total)
            } else {
                counts.total += 1;
                *counts.per_source.entry(source).or_insert(0) += 1;
                Ok(())
            }
        };
        let net = &self.metrics;
        match verdict {
            Ok(()) => {
                net.open[self.listener as usize].fetch_add(1, Relaxed);
                Ok(Permit {
                    tracker: self.clone(),
                    source,
                })
            }
            Err(r) => {
                net.refused[self.listener as usize][r as usize].fetch_add(1, Relaxed);
                if let Some(suppressed) = self.log.allow() {
                    let cap = match r {
                        Refusal::Total => self.caps.max_connections,
                        Refusal::PerSource => self.caps.max_per_source,
                    };
                    warn!(listener = self.listener.as_str(), %peer, reason = r.as_str(), cap, suppressed,
                        "connection refused: cap reached (refusals are counted on /metrics and logged at most every 10 s)");
                }
                Err(r)
            }
        }
    }

    fn release(&self, source: IpAddr) {
        {
            let mut counts = self.lock();
            counts.total = counts.total.saturating_sub(1);
            if let Some(n) = counts.per_source.get_mut(&source) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.per_source.remove(&source);
                }
            }
        }
        self.metrics.open[self.listener as usize].fetch_sub(1, Relaxed);
    }

    /// Logs a cut (timeout, size) at most every 10 s per listener, and counts it.
    pub fn cut(&self, cut: Cut, peer: SocketAddr) {
        self.metrics.count_cut(self.listener, cut);
        if let Some(suppressed) = self.log.allow() {
            warn!(listener = self.listener.as_str(), %peer, reason = cut.as_str(), suppressed,
                "connection closed by a limit (counted on /metrics, logged at most every 10 s)");
        }
    }
}

/// At most one log line per period; says how many were held back in between.
#[derive(Debug)]
pub struct LogGate {
    period: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogGate {
    pub fn new(period: Duration) -> LogGate {
        LogGate {
            period,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.period) {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> SocketAddr {
        format!("{ip}:40000").parse().unwrap()
    }

    #[test]
    fn one_source_cannot_take_more_than_its_share_and_places_come_back_on_drop() {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let t = ConnTracker::new(
            Listener::Grpc,
            Caps {
                max_connections: 3,
                max_per_source: 2,
            },
            metrics.net.clone(),
        );
        let a1 = t.admit(peer("10.0.0.1")).unwrap();
        let _a2 = t.admit(peer("10.0.0.1")).unwrap();
        assert_eq!(t.admit(peer("10.0.0.1")).unwrap_err(), Refusal::PerSource);
        let _b1 = t.admit(peer("10.0.0.2")).unwrap();
        assert_eq!(t.admit(peer("10.0.0.3")).unwrap_err(), Refusal::Total);
        drop(a1);
        let _c1 = t.admit(peer("10.0.0.3")).unwrap();
        assert_eq!(metrics.net.open(Listener::Grpc), 3);
        assert_eq!(metrics.net.refused(Listener::Grpc, Refusal::PerSource), 1);
        assert_eq!(metrics.net.refused(Listener::Grpc, Refusal::Total), 1);
    }

    #[test]
    fn ipv6_hosts_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            source_of(&"[2001:db8:1:2:aaaa::1]:1".parse().unwrap()),
            source_of(&"[2001:db8:1:2:bbbb::9]:1".parse().unwrap())
        );
        assert_eq!(
            source_of(&"[::ffff:10.0.0.1]:1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_log_gate_lets_one_line_through_per_period() {
        let gate = LogGate::new(Duration::from_secs(3600));
        assert_eq!(gate.allow(), Some(0));
        assert_eq!(gate.allow(), None);
        assert_eq!(gate.allow(), None);
    }
}
