//! The sections of the configuration file that belong to no domain, each with its defaults:
//! `[hub]`, `[[estates]]`, `[ingest]`, `[limits]`, `[api]`. A domain's own section lives with the
//! domain and is re-exported here (`[rules]`, `[alarms]`, `[incidents]`, `[escalation]`,
//! `[notify]`). Checked as a whole by `HubConfig::validate`.

use std::net::SocketAddr;

use serde::Deserialize;

pub use crate::alarms::book::AlarmsConfig;
pub use crate::alarms::rules::RulesConfig;
pub use crate::escalation::EscalationConfig;
pub use crate::incidents::IncidentsConfig;
pub use crate::notify::NotifyConfig;

/// `[api]`: the HTTP API's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// How many of the last live-stream events the hub keeps, so that a client that
    /// reconnects (`Last-Event-ID`) gets what it missed instead of re-reading every list.
    /// 0: none (every reconnect that missed something is told to `reset`).
    pub stream_replay: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { stream_replay: 10_000 }
    }
}

/// Largest `api.stream_replay`: a ring of a few hundred MB at most.
pub const MAX_STREAM_REPLAY: u32 = 1_000_000;

/// `[limits]`: who may hold a connection to the hub, and for how long.
///
/// The default caps fit the default descriptor limit of 1,024 even when it cannot be raised
/// (384 + 512 connections, 128 left for the database and the process), so the caps, not the
/// descriptor table, decide; a hub configured for more than ~250 estates raises its gRPC cap
/// to two connections per estate (and the process's descriptor limit must allow that). Per source they leave a flood from one address at most 64
/// HTTP connections (a browser opens ~6 per host; a control room behind one NAT address, or
/// a script acknowledging alarms in parallel, opens more; behind a reverse proxy every
/// operator shares its address: raise it there) and 8 gRPC connections (a gateway holds one,
/// two across a reconnect).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub http: HttpLimits,
    pub grpc: GrpcLimits,
}

/// `[limits.http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Connections open at once; more are closed at accept.
    pub max_connections: u32,
    /// Connections open at once from one source address (IPv4, or IPv6 /64).
    pub max_connections_per_source: u32,
    /// A request head must be complete within this long of the connection opening or of its
    /// previous answer: closes slowloris clients and idle keep-alive connections.
    pub header_timeout_s: u32,
    /// An ordinary request must be answered within this long (503 after); the live
    /// `/api/v1/stream` is exempt (it sends a keep-alive comment every 15 s instead).
    pub request_timeout_s: u32,
    /// The same for an operator's bulk action (`/api/v1/rota/import`, `/api/v1/rota/plan`).
    pub bulk_request_timeout_s: u32,
    /// Largest request body; a larger one is answered 413.
    pub max_body_bytes: u64,
    /// Live-stream (`GET /api/v1/stream`) subscribers at once; more are answered 503. Each
    /// also holds one of `max_connections`.
    pub max_stream_subscribers: u32,
    /// Live-stream subscribers at once from one source address; more are answered 429 (a
    /// board holds one per open tab).
    pub max_stream_subscribers_per_source: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 384,
            max_connections_per_source: 64,
            header_timeout_s: 10,
            request_timeout_s: 60,
            bulk_request_timeout_s: 900,
            max_body_bytes: 8 * 1024 * 1024,
            max_stream_subscribers: 256,
            max_stream_subscribers_per_source: 32,
        }
    }
}

impl GrpcLimits {
    /// `max_connections`, or its default for `estates` configured estates.
    pub fn max_connections(&self, estates: usize) -> u32 {
        self.max_connections.unwrap_or_else(|| {
            let room = u32::try_from(estates).unwrap_or(u32::MAX / 4).saturating_mul(2);
            self.max_connections_per_source.saturating_add(room).max(512)
        })
    }
}

/// `[limits.grpc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcLimits {
    /// Connections open at once; more are closed at accept. Must leave room for one
    /// connection per configured estate beside one source's `max_connections_per_source`.
    /// Default: 512, or `max_connections_per_source` + two per configured estate if more.
    pub max_connections: Option<u32>,
    /// Connections open at once from one source address (IPv4, or IPv6 /64).
    pub max_connections_per_source: u32,
    /// A connection must send the HTTP/2 preface within this long of opening.
    pub handshake_timeout_s: u32,
    /// An HTTP/2 PING after this long without a frame from the peer …
    pub keepalive_interval_s: u32,
    /// … which must be answered within this long, or the connection (and the gateway's
    /// stream) ends.
    pub keepalive_timeout_s: u32,
    /// TCP keepalive: the kernel probes a silent peer after this long.
    pub tcp_keepalive_s: u32,
    /// Concurrent HTTP/2 streams per connection (a gateway uses one, plus health checks).
    pub max_concurrent_streams: u32,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        GrpcLimits {
            max_connections: None,
            max_connections_per_source: 8,
            handshake_timeout_s: 10,
            keepalive_interval_s: 20,
            keepalive_timeout_s: 20,
            tcp_keepalive_s: 60,
            max_concurrent_streams: 16,
        }
    }
}

/// `[ingest]`: limits on what gateways send, and the progress watch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest Uplink message (a batch) the hub decodes; announced to gateways in Welcome
    /// so they size their batches under it.
    pub max_message_bytes: u64,
    /// A batch whose first new sequence number lies more than this past the gateway's last
    /// stored one is refused. Gaps are legitimate (a full outbox sheds readings), so this
    /// is sized for days of shedding at full rate, not for tidiness.
    pub max_seq_gap: u64,
    /// No sequence number above this is accepted (2^53: a million events a second for
    /// 285 years, exact in JSON numbers, and far from any i64/u64 overflow).
    pub max_seq: u64,
    /// A connected gateway that holds events the hub has not stored, and whose stored
    /// sequence has not advanced for this long, is stalled (alarm `gateway_stalled`).
    pub stall_after_s: u32,
    /// `/healthz` fails when the writer has not committed for this long (it commits at
    /// least once a second when healthy).
    pub writer_stall_s: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_message_bytes: 4 * 1024 * 1024,
            max_seq_gap: 1_000_000_000,
            max_seq: 1 << 53,
            stall_after_s: 60,
            writer_stall_s: 15,
        }
    }
}

/// `[hub]`: where to listen and where to store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    /// Address of the gRPC server (`GatewayLink`, health, reflection). Port 0 picks one.
    pub grpc_listen: SocketAddr,
    /// Address of the HTTP/JSON API. Port 0 picks one.
    pub http_listen: SocketAddr,
    /// `sqlite://path/to/hub.db` (relative paths are relative to the working directory)
    /// or `postgres://user@host:5432/db`. Either this or `database_env`.
    #[serde(default)]
    pub database: String,
    /// The name of an environment variable holding the database URL (a PostgreSQL password
    /// belongs in a secret, not in the file). Wins over `database` when set.
    #[serde(default)]
    pub database_env: Option<String>,
    /// This hub's name, sent to gateways in `Welcome`.
    #[serde(default = "default_hub_id")]
    pub hub_id: String,
}

fn default_hub_id() -> String {
    "hub".to_owned()
}

/// `[[estates]]`: one estate (小区) this hub serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstateConfig {
    pub id: String,
    pub name: String,
    /// IANA time zone of the estate (shifts are in local time). Default `UTC`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// The region the estate belongs to (users are scoped to regions and estates).
    #[serde(default = "default_region")]
    pub region: String,
}

fn default_region() -> String {
    "default".to_owned()
}

fn default_timezone() -> String {
    "UTC".to_owned()
}
