//! The hub's configuration file (TOML). Key names are a contract; see the crate docs.
//!
//! Everything is checked at load time: unknown keys, bad addresses, rules that define no
//! condition, rules naming an unknown estate. Errors name the key that is wrong.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::alarms::book::Thresholds;
use crate::escalation::{PolicyConfig, RosterEntry};
use crate::incidents::{IncidentCategory, ProcedureConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    pub hub: HubSection,
    #[serde(default)]
    pub estates: Vec<EstateConfig>,
    #[serde(default)]
    pub rules: RulesConfig,
    #[serde(default)]
    pub alarms: AlarmsConfig,
    #[serde(default)]
    pub incidents: IncidentsConfig,
    #[serde(default)]
    pub escalation: EscalationConfig,
    /// Procedures (SOPs) per incident category; categories not listed use the built-in ones.
    #[serde(default)]
    pub procedures: Vec<ProcedureConfig>,
    /// The static roster: who holds which role (until the rota engine resolves roles).
    #[serde(default)]
    pub roster: Vec<RosterEntry>,
    #[serde(default)]
    pub notify: NotifyConfig,
    /// `[ingest]`: what the hub accepts from gateways, and when it calls one stalled.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// `[rota]`: the rota engine's settings (issue 4).
    #[serde(default)]
    pub rota: crate::rota::model::RotaSettings,
    /// `[[posts]]`: the posts of each estate; none = no rota (roles from `[[roster]]`).
    #[serde(default)]
    pub posts: Vec<crate::rota::model::PostConfig>,
    /// `[[guards]]`.
    #[serde(default)]
    pub guards: Vec<crate::rota::model::GuardConfig>,
    /// `[[patrol_routes]]`.
    #[serde(default)]
    pub patrol_routes: Vec<crate::rota::model::PatrolRouteConfig>,
    /// `[limits.http]`, `[limits.grpc]`: connection caps and timeouts of the listeners.
    #[serde(default)]
    pub limits: LimitsConfig,
}

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

/// `[alarms]`: ISA-18.2 alarm-management thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmsConfig {
    /// An alarm activating this many times within `chatter_window_s` is chattering.
    pub chatter_activations: u32,
    pub chatter_window_s: u32,
    /// More than this many new alarms within `flood_window_s` start flood mode …
    pub flood_start_above: u32,
    /// … which ends when fewer than this many remain in the window.
    pub flood_end_below: u32,
    pub flood_window_s: u32,
    /// Longest shelving an operator may ask for.
    pub shelve_max_minutes: u32,
    /// A gateway not heard from for this long raises one P4 alarm (its devices: unknown).
    pub gateway_silent_after_s: u32,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        AlarmsConfig {
            chatter_activations: 3,
            chatter_window_s: 60,
            flood_start_above: 10,
            flood_end_below: 5,
            flood_window_s: 600,
            shelve_max_minutes: 480,
            gateway_silent_after_s: 30,
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

/// `[incidents]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// An alarm joins an open incident of the same estate and area whose last alarm is this recent.
    pub group_window_s: u32,
    /// The practice's response target: on site within this long, or a breach alarm is raised.
    pub response_target_s: u32,
    /// An acknowledged incident that does not move on within this long alerts the supervisor.
    pub progress_limit_s: u32,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            group_window_s: 600,
            response_target_s: 900,
            progress_limit_s: 600,
        }
    }
}

/// `[escalation]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Policies per incident category (and optionally priority); others use the built-in ones.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

/// `[notify]`: delivery of notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// HMAC-SHA256 key for webhook signatures (a roster entry's `secret` overrides it).
    pub webhook_secret: Option<String>,
    /// First retry after this long; doubled each attempt up to `retry_max_s`.
    pub retry_initial_s: u32,
    pub retry_max_s: u32,
    /// Attempts before a notification is marked failed.
    pub max_attempts: u32,
    /// Timeout of one webhook request.
    pub timeout_s: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook_secret: None,
            retry_initial_s: 5,
            retry_max_s: 300,
            max_attempts: 8,
            timeout_s: 10,
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
    /// or `postgres://...` (not yet available).
    pub database: String,
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
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

/// `[rules]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    #[serde(default)]
    pub points: Vec<PointRuleConfig>,
}

pub use crate::alarms::rules::PointRuleConfig;

pub use crate::error::ConfigError;

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

pub use crate::store::DatabaseUrl;

impl HubConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<HubConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses and validates a configuration document.
    pub fn from_toml(text: &str) -> Result<HubConfig, ConfigError> {
        let config: HubConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Which backend `hub.database` names. Valid after [`HubConfig::validate`].
    pub fn database_url(&self) -> Result<DatabaseUrl, ConfigError> {
        let url = self.hub.database.trim();
        if url.starts_with("sqlite:") {
            Ok(DatabaseUrl::Sqlite(url.to_owned()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_owned()))
        } else {
            Err(invalid(
                "hub.database",
                format!("expected sqlite://PATH or postgres://..., got {url:?}"),
            ))
        }
    }

    /// Checks cross-references and values that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.database_url()?;
        check_id("hub.hub_id", &self.hub.hub_id)?;

        let mut estate_ids = HashSet::new();
        for (i, estate) in self.estates.iter().enumerate() {
            check_id(&format!("estates[{i}].id"), &estate.id)?;
            if !estate_ids.insert(estate.id.as_str()) {
                return Err(invalid(
                    format!("estates[{i}].id"),
                    format!("estate {:?} is defined twice", estate.id),
                ));
            }
            if estate.name.trim().is_empty() {
                return Err(invalid(format!("estates[{i}].name"), "must not be empty"));
            }
            let tz = estate.timezone.trim();
            if tz.is_empty() || tz.contains(char::is_whitespace) {
                return Err(invalid(
                    format!("estates[{i}].timezone"),
                    format!("{:?} is not an IANA time zone name", estate.timezone),
                ));
            }
        }

        let mut seen = HashSet::new();
        for (i, rule) in self.rules.points.iter().enumerate() {
            let key = |field: &str| format!("rules.points[{i}].{field}");
            check_id(&key("point"), &rule.point)?;
            if let Some(device) = &rule.device {
                check_id(&key("device"), device)?;
            }
            if let Some(estate) = &rule.estate
                && !estate_ids.contains(estate.as_str())
            {
                return Err(invalid(
                    key("estate"),
                    format!("unknown estate {estate:?} (not in [[estates]])"),
                ));
            }
            for (field, v) in [("low", rule.low), ("high", rule.high)] {
                if let Some(v) = v
                    && !v.is_finite()
                {
                    return Err(invalid(key(field), "must be a finite number"));
                }
            }
            if !rule.deadband.is_finite() || rule.deadband < 0.0 {
                return Err(invalid(key("deadband"), "must be a number >= 0"));
            }
            let is_limit = rule.low.is_some() || rule.high.is_some();
            match (is_limit, rule.when) {
                (false, None) => {
                    return Err(invalid(
                        format!("rules.points[{i}]"),
                        format!("rule for point {:?} has neither low/high nor when", rule.point),
                    ));
                }
                (true, Some(_)) => {
                    return Err(invalid(
                        key("when"),
                        "a rule is either a limit rule (low/high) or a state rule (when), not both",
                    ));
                }
                (false, Some(_)) if rule.deadband != 0.0 => {
                    return Err(invalid(key("deadband"), "applies only to limit rules"));
                }
                _ => {}
            }
            if let (Some(low), Some(high)) = (rule.low, rule.high)
                && low >= high
            {
                return Err(invalid(key("low"), format!("low ({low}) must be below high ({high})")));
            }
            let conditions: &[&str] = if is_limit {
                match (rule.low.is_some(), rule.high.is_some()) {
                    (true, true) => &["low", "high"],
                    (true, false) => &["low"],
                    _ => &["high"],
                }
            } else {
                &["state"]
            };
            for c in conditions {
                let identity = (rule.point.clone(), rule.device.clone(), rule.estate.clone(), *c);
                if !seen.insert(identity) {
                    return Err(invalid(
                        format!("rules.points[{i}]"),
                        format!(
                            "a rule with the same point {:?}, device and estate already defines the {c} condition",
                            rule.point
                        ),
                    ));
                }
            }
        }
        self.validate_incidents(&estate_ids)?;
        self.validate_limits()?;
        self.rota_model().map(|_| ())
    }

    /// The rota's validated model (posts, guards, routes, shift templates).
    pub fn rota_model(&self) -> Result<crate::rota::model::RotaModel, ConfigError> {
        crate::rota::model::RotaModel::build(
            &self.estates,
            &self.rota,
            &self.posts,
            &self.guards,
            &self.patrol_routes,
        )
    }

    fn validate_incidents(&self, estate_ids: &HashSet<&str>) -> Result<(), ConfigError> {
        let a = &self.alarms;
        for (key, v) in [
            ("alarms.chatter_activations", a.chatter_activations),
            ("alarms.chatter_window_s", a.chatter_window_s),
            ("alarms.flood_window_s", a.flood_window_s),
            ("alarms.shelve_max_minutes", a.shelve_max_minutes),
            ("alarms.gateway_silent_after_s", a.gateway_silent_after_s),
            ("incidents.response_target_s", self.incidents.response_target_s),
            ("incidents.progress_limit_s", self.incidents.progress_limit_s),
            ("notify.retry_initial_s", self.notify.retry_initial_s),
            ("notify.max_attempts", self.notify.max_attempts),
            ("notify.timeout_s", self.notify.timeout_s),
            ("ingest.stall_after_s", self.ingest.stall_after_s),
            ("ingest.writer_stall_s", self.ingest.writer_stall_s),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        let i = &self.ingest;
        // Below 64 KiB a single large event could not be delivered; above 1 GiB a peer could
        // make the hub allocate that much per stream.
        if !(64 * 1024..=1 << 30).contains(&i.max_message_bytes) {
            return Err(invalid(
                "ingest.max_message_bytes",
                "must be between 65536 and 1073741824",
            ));
        }
        if i.max_seq == 0 || i.max_seq > 1 << 62 {
            return Err(invalid("ingest.max_seq", "must be between 1 and 2^62"));
        }
        if i.max_seq_gap == 0 {
            return Err(invalid("ingest.max_seq_gap", "must be at least 1"));
        }
        if a.chatter_activations < 2 {
            return Err(invalid("alarms.chatter_activations", "must be at least 2"));
        }
        if a.flood_end_below > a.flood_start_above {
            return Err(invalid(
                "alarms.flood_end_below",
                format!("must not exceed flood_start_above ({})", a.flood_start_above),
            ));
        }
        if self.notify.retry_max_s < self.notify.retry_initial_s {
            return Err(invalid("notify.retry_max_s", "must be at least retry_initial_s"));
        }
        let mut seen = HashSet::new();
        for (i, p) in self.escalation.policies.iter().enumerate() {
            let key = format!("escalation.policies[{i}]");
            if !seen.insert((p.category, p.priority)) {
                return Err(invalid(key, "a policy for this category and priority is defined twice"));
            }
            if p.steps.is_empty() {
                return Err(invalid(format!("{key}.steps"), "must list at least one step"));
            }
            for (j, st) in p.steps.iter().enumerate() {
                if st.repeat > 0 && st.repeat_every_s == 0 {
                    return Err(invalid(
                        format!("{key}.steps[{j}].repeat_every_s"),
                        "must be at least 1",
                    ));
                }
                if st.repeat > 100 {
                    return Err(invalid(format!("{key}.steps[{j}].repeat"), "at most 100"));
                }
            }
        }
        let mut cats: HashSet<IncidentCategory> = HashSet::new();
        for (i, p) in self.procedures.iter().enumerate() {
            let key = format!("procedures[{i}]");
            if !cats.insert(p.category) {
                return Err(invalid(
                    key,
                    format!("a procedure for {} is defined twice", p.category.as_str()),
                ));
            }
            let mut ids = HashSet::new();
            for (j, st) in p.steps.iter().enumerate() {
                let k = format!("{key}.steps[{j}]");
                if st.id.is_empty() || !st.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    return Err(invalid(format!("{k}.id"), "a slug of letters, digits, _ and -"));
                }
                if st.id.chars().all(|c| c.is_ascii_digit()) {
                    return Err(invalid(
                        format!("{k}.id"),
                        "must not be a number (numbers address steps by position)",
                    ));
                }
                if !ids.insert(st.id.as_str()) {
                    return Err(invalid(format!("{k}.id"), format!("step {:?} is defined twice", st.id)));
                }
                if st.text.trim().is_empty() {
                    return Err(invalid(format!("{k}.text"), "must not be empty"));
                }
            }
        }
        for (i, r) in self.roster.iter().enumerate() {
            let key = |f: &str| format!("roster[{i}].{f}");
            if let Some(e) = &r.estate
                && !estate_ids.contains(e.as_str())
            {
                return Err(invalid(
                    key("estate"),
                    format!("unknown estate {e:?} (not in [[estates]])"),
                ));
            }
            check_id(&key("name"), &r.name)?;
            if r.channel == "log" {
                if r.secret.is_some() {
                    return Err(invalid(key("secret"), "only webhook channels are signed"));
                }
            } else if let Some(rest) = r.channel.strip_prefix("http://") {
                if rest.is_empty() || r.channel.parse::<reqwest::Url>().is_err() {
                    return Err(invalid(key("channel"), format!("{:?} is not a valid URL", r.channel)));
                }
                if r.secret.is_none() && self.notify.webhook_secret.is_none() {
                    return Err(invalid(
                        key("channel"),
                        "a webhook needs a signing secret: set notify.webhook_secret or this entry's secret",
                    ));
                }
            } else if r.channel.starts_with("https://") {
                return Err(invalid(
                    key("channel"),
                    "https webhooks are not available yet (no TLS client built in); use http:// behind a local relay",
                ));
            } else {
                return Err(invalid(
                    key("channel"),
                    format!("expected \"log\" or an http:// URL, got {:?}", r.channel),
                ));
            }
        }
        if self.notify.webhook_secret.as_deref().is_some_and(|s| s.len() < 16) {
            return Err(invalid("notify.webhook_secret", "must be at least 16 characters"));
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let (h, g) = (&self.limits.http, &self.limits.grpc);
        for (key, v) in [
            ("limits.http.max_connections", h.max_connections),
            ("limits.http.max_connections_per_source", h.max_connections_per_source),
            ("limits.http.header_timeout_s", h.header_timeout_s),
            ("limits.http.request_timeout_s", h.request_timeout_s),
            ("limits.http.bulk_request_timeout_s", h.bulk_request_timeout_s),
            ("limits.grpc.max_connections", g.max_connections(self.estates.len())),
            ("limits.grpc.max_connections_per_source", g.max_connections_per_source),
            ("limits.grpc.handshake_timeout_s", g.handshake_timeout_s),
            ("limits.grpc.keepalive_interval_s", g.keepalive_interval_s),
            ("limits.grpc.keepalive_timeout_s", g.keepalive_timeout_s),
            ("limits.grpc.tcp_keepalive_s", g.tcp_keepalive_s),
            ("limits.grpc.max_concurrent_streams", g.max_concurrent_streams),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if h.max_body_bytes < 1024 {
            return Err(invalid("limits.http.max_body_bytes", "must be at least 1024"));
        }
        for (key, per, total) in [
            (
                "limits.http.max_connections_per_source",
                h.max_connections_per_source,
                h.max_connections,
            ),
            (
                "limits.grpc.max_connections_per_source",
                g.max_connections_per_source,
                g.max_connections(self.estates.len()),
            ),
        ] {
            if per > total {
                return Err(invalid(key, format!("must not exceed max_connections ({total})")));
            }
        }
        // One source at its cap must still leave a connection for every configured estate's
        // gateway.
        let estates = u32::try_from(self.estates.len()).unwrap_or(u32::MAX);
        if g.max_connections(self.estates.len())
            .saturating_sub(g.max_connections_per_source)
            < estates
        {
            return Err(invalid(
                "limits.grpc.max_connections",
                format!(
                    "must be at least max_connections_per_source ({}) + the {estates} configured estates",
                    g.max_connections_per_source
                ),
            ));
        }
        Ok(())
    }

    /// The alarm book's thresholds in milliseconds.
    pub fn thresholds(&self) -> Thresholds {
        let a = &self.alarms;
        Thresholds {
            chatter_activations: a.chatter_activations as usize,
            chatter_window_ms: i64::from(a.chatter_window_s) * 1000,
            flood_start_above: a.flood_start_above as usize,
            flood_end_below: a.flood_end_below as usize,
            flood_window_ms: i64::from(a.flood_window_s) * 1000,
        }
    }
}

fn check_id(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if value.len() > 128 || value.chars().any(char::is_control) {
        return Err(invalid(
            key,
            format!("{value:?} is not a valid identifier (at most 128 characters, no control characters)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::Priority;

    const BASE: &str = r#"
[hub]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
database = "sqlite://data/hub.db"

[[estates]]
id = "estate-a"
name = "Riverside Gardens"
timezone = "Asia/Shanghai"
"#;

    fn with(extra: &str) -> Result<HubConfig, ConfigError> {
        HubConfig::from_toml(&format!("{BASE}{extra}"))
    }

    #[test]
    fn example_configuration_loads_with_defaults() {
        let c = with(
            r#"
[[rules.points]]
point = "outlet_pressure"
low = 0.25
deadband = 0.02
delay_s = 5
priority = "P3"

[[rules.points]]
point = "pump1_fault"
when = true
priority = "P3"
"#,
        )
        .unwrap();
        assert_eq!(c.hub.hub_id, "hub");
        assert_eq!(c.rules.points.len(), 2);
        assert_eq!(c.rules.points[0].priority, Priority::P3);
        assert_eq!(
            c.database_url().unwrap(),
            DatabaseUrl::Sqlite("sqlite://data/hub.db".into())
        );
    }

    #[test]
    fn unknown_key_is_rejected_and_named() {
        let err = with("[[rules.points]]\npoint = \"p\"\nlow = 1.0\npriority = \"P3\"\nlimit = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limit"), "{err}");
    }

    #[test]
    fn rule_without_condition_is_rejected() {
        let err = with("[[rules.points]]\npoint = \"p\"\npriority = \"P3\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rules.points[0]"), "{err}");
        assert!(err.contains("neither low/high nor when"), "{err}");
    }

    #[test]
    fn rule_naming_unknown_estate_is_rejected() {
        let err = with("[[rules.points]]\npoint = \"p\"\nhigh = 2.0\nestate = \"nowhere\"\npriority = \"P2\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rules.points[0].estate"), "{err}");
    }

    #[test]
    fn bad_priority_and_bad_address_are_rejected() {
        assert!(with("[[rules.points]]\npoint = \"p\"\nhigh = 2.0\npriority = \"P9\"\n").is_err());
        let err = HubConfig::from_toml(&BASE.replace("127.0.0.1:0\"\nhttp", "nowhere\"\nhttp"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("grpc_listen"), "{err}");
    }

    #[test]
    fn low_above_high_and_unknown_database_scheme_are_rejected() {
        assert!(with("[[rules.points]]\npoint = \"p\"\nlow = 3.0\nhigh = 2.0\npriority = \"P3\"\n").is_err());
        let err = HubConfig::from_toml(&BASE.replace("sqlite://data/hub.db", "mysql://x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hub.database"), "{err}");
    }

    #[test]
    fn postgres_url_is_accepted_by_the_parser() {
        let c = HubConfig::from_toml(&BASE.replace("sqlite://data/hub.db", "postgres://u@h/db")).unwrap();
        assert!(matches!(c.database_url().unwrap(), DatabaseUrl::Postgres(_)));
    }

    #[test]
    fn incident_sections_load_with_defaults_and_policies_roster_and_procedures() {
        let c = with(
            r#"
[alarms]
flood_start_above = 20

[incidents]
response_target_s = 600

[[escalation.policies]]
category = "fire"
priority = "P1"
steps = [
  { role = "monitoring_room" },
  { role = "duty_manager", wait_s = 30, condition = "not_acknowledged", repeat = 2, repeat_every_s = 60 },
]

[[procedures]]
category = "pump_flooding"
steps = [{ id = "check", text = "Check the pump room", mandatory = true }]

[[roster]]
estate = "estate-a"
role = "supervisor"
name = "Zhang Wei"
channel = "http://127.0.0.1:9000/hook"

[[roster]]
role = "duty_manager"
name = "Centre duty manager"
channel = "log"

[notify]
webhook_secret = "0123456789abcdef0123"
"#,
        )
        .unwrap();
        assert_eq!(c.alarms.flood_start_above, 20);
        assert_eq!(c.alarms.flood_end_below, 5);
        assert_eq!(c.incidents.response_target_s, 600);
        assert_eq!(c.escalation.policies[0].steps[1].repeat, 2);
        assert_eq!(c.roster.len(), 2);
        assert_eq!(c.notify.max_attempts, 8);
    }

    #[test]
    fn bad_incident_configuration_is_rejected_and_named() {
        for (extra, needle) in [
            (
                "[[roster]]\nrole = \"supervisor\"\nname = \"x\"\nchannel = \"http://h/x\"\n",
                "roster[0].channel",
            ),
            ("[[roster]]\nrole = \"boss\"\nname = \"x\"\nchannel = \"log\"\n", "boss"),
            (
                "[[roster]]\nestate = \"zz\"\nrole = \"supervisor\"\nname = \"x\"\nchannel = \"log\"\n",
                "roster[0].estate",
            ),
            (
                "[[roster]]\nrole = \"supervisor\"\nname = \"x\"\nchannel = \"mailto:x\"\n",
                "roster[0].channel",
            ),
            (
                "[[escalation.policies]]\ncategory = \"fire\"\nsteps = []\n",
                "escalation.policies[0].steps",
            ),
            ("[[escalation.policies]]\ncategory = \"arson\"\nsteps = []\n", "arson"),
            (
                "[[procedures]]\ncategory = \"fire\"\nsteps = [{ id = \"a b\", text = \"t\" }]\n",
                "procedures[0].steps[0].id",
            ),
            ("[alarms]\nflood_end_below = 50\n", "alarms.flood_end_below"),
            ("[notify]\nsurprise = 1\n", "surprise"),
        ] {
            let err = with(extra).unwrap_err().to_string();
            assert!(err.contains(needle), "{extra}: {err}");
        }
    }

    #[test]
    fn limits_load_with_defaults_and_bad_limits_are_named() {
        let c = with("[limits.http]\nheader_timeout_s = 2\n").unwrap();
        assert_eq!(c.limits.http.header_timeout_s, 2);
        assert_eq!(c.limits.http.max_connections, 384);
        assert_eq!(c.limits.grpc.max_connections_per_source, 8);
        assert_eq!(c.limits.grpc.max_connections(1), 512);
        assert_eq!(c.limits.grpc.max_connections(1000), 2008, "two per configured estate");
        for (extra, needle) in [
            ("[limits.http]\nmax_connections = 0\n", "limits.http.max_connections"),
            (
                "[limits.http]\nmax_connections = 4\nmax_connections_per_source = 5\n",
                "limits.http.max_connections_per_source",
            ),
            (
                "[limits.grpc]\nmax_connections = 2\nmax_connections_per_source = 2\n",
                "limits.grpc.max_connections",
            ),
            ("[limits.grpc]\nidle = 3\n", "idle"),
        ] {
            let err = with(extra).unwrap_err().to_string();
            assert!(err.contains(needle), "{extra}: {err}");
        }
    }

    #[test]
    fn duplicate_estate_is_rejected() {
        let err = with("[[estates]]\nid = \"estate-a\"\nname = \"again\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("estates[1].id"), "{err}");
    }
}
