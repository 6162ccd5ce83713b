//! The hub's configuration file (TOML). Key names are a contract; see the crate docs.
//!
//! Everything is checked at load time: unknown keys, bad addresses, rules that define no
//! condition, rules naming an unknown estate. Errors name the key that is wrong.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::alarms::book::Thresholds;
use crate::escalation::RosterEntry;
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
    /// The static roster: who holds which role (for the roles the rota does not resolve).
    #[serde(default)]
    pub roster: Vec<RosterEntry>,
    #[serde(default)]
    pub notify: NotifyConfig,
    /// `[ingest]`: what the hub accepts from gateways, and when it calls one stalled.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// `[rota]`: the rota's settings.
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
    /// `[api]`: the HTTP API's own settings (the live stream's replay).
    #[serde(default)]
    pub api: ApiConfig,
    /// `[[api_tokens]]`: tokens for integrations and scripts (`Authorization: Bearer`),
    /// stored as the SHA-256 of the token.
    #[serde(default)]
    pub api_tokens: Vec<crate::auth::ApiTokenConfig>,
    /// `[auth]`: sessions and the failed-login throttle.
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// `[[users]]`: operators who sign in; the config is the truth for the users it lists.
    #[serde(default)]
    pub users: Vec<crate::auth::UserConfig>,
    /// `[tls]`: the gRPC port's TLS (required; `plaintext = true` only on loopback).
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// `[[gateways]]`: the gateways the hub accepts (any other is refused, nothing recorded).
    #[serde(default)]
    pub gateways: Vec<GatewayEntry>,
    /// `[retention]`: how long events (residents' personal data) are kept.
    #[serde(default)]
    pub retention: crate::events::retention::RetentionSettings,
    /// `[cluster]`: several hubs on one PostgreSQL share its writer as a fenced lease.
    #[serde(default)]
    pub cluster: crate::cluster::ClusterConfig,
}

mod sections;
mod tls;

pub use sections::*;
pub use tls::{GatewayEntry, TlsMode, TlsSection};

pub use crate::alarms::rules::PointRuleConfig;

pub use crate::error::ConfigError;

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// `localhost` or a loopback address: where a relay may be spoken to in clear.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
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
        self.database_url_from(|name| std::env::var(name).ok())
    }

    /// [`HubConfig::database_url`] with the environment given (tests).
    pub fn database_url_from(&self, env: impl Fn(&str) -> Option<String>) -> Result<DatabaseUrl, ConfigError> {
        match &self.hub.database_env {
            Some(name) => {
                let url = env(name).ok_or_else(|| {
                    invalid(
                        "hub.database_env",
                        format!("the environment variable {name} is not set (or not UTF-8)"),
                    )
                })?;
                Self::parse_database_url(&url).map_err(|_| {
                    invalid(
                        "hub.database_env",
                        format!("{name} must hold sqlite://PATH or postgres://..."),
                    )
                })
            }
            None if self.hub.database.trim().is_empty() => Err(invalid(
                "hub.database",
                "set hub.database (sqlite://PATH or postgres://...) or hub.database_env".to_owned(),
            )),
            None => Self::parse_database_url(&self.hub.database),
        }
    }

    /// Which backend a `hub.database` value names (also `audit verify --database`).
    pub fn parse_database_url(url: &str) -> Result<DatabaseUrl, ConfigError> {
        let url = url.trim();
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
        self.cluster.check().map_err(|m| invalid("cluster.lease_s", m))?;

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
        self.validate_email_sms()?;
        self.validate_robots()?;
        self.validate_limits()?;
        self.validate_auth()?;
        self.tls_mode()?;
        tls::validate_gateways(&self.gateways, &estate_ids)?;
        self.rota_model().map(|_| ())
    }

    /// `[auth]`, `[[users]]` and `[[api_tokens]]`: names, hashes, roles and scopes.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        use crate::auth::{Role, users};
        let a = &self.auth;
        for (key, v) in [
            ("auth.session_ttl_min", a.session_ttl_min),
            ("auth.max_failed_logins", a.max_failed_logins),
            ("auth.lockout_s", a.lockout_s),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        let estates: HashSet<&str> = self.estates.iter().map(|e| e.id.as_str()).collect();
        let regions: HashSet<&str> = self.estates.iter().map(|e| e.region.as_str()).collect();
        let check_scope =
            |key: String, rs: &std::collections::BTreeSet<String>, es: &std::collections::BTreeSet<String>| {
                if let Some(r) = rs.iter().find(|r| !regions.contains(r.as_str())) {
                    return Err(invalid(
                        format!("{key}.regions"),
                        format!("no estate is in region {r:?}"),
                    ));
                }
                if let Some(e) = es.iter().find(|e| !estates.contains(e.as_str())) {
                    return Err(invalid(
                        format!("{key}.estates"),
                        format!("unknown estate {e:?} (not in [[estates]])"),
                    ));
                }
                Ok(())
            };
        let mut names = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("users[{i}]");
            users::check_name(&u.name).map_err(|e| invalid(format!("{key}.name"), e.0))?;
            if !names.insert(u.name.as_str()) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("user {:?} is defined twice", u.name),
                ));
            }
            users::check_hash(&u.password_hash).map_err(|e| {
                invalid(
                    format!("{key}.password_hash"),
                    format!("{} (make one with `gatehouse-hub hash-password`)", e.0),
                )
            })?;
            if u.role == Role::Guard && u.guard_id.is_none() {
                return Err(invalid(
                    format!("{key}.guard_id"),
                    "a user of role guard names their rota guard id",
                ));
            }
            check_scope(key, &u.regions, &u.estates)?;
        }
        for (i, t) in self.api_tokens.iter().enumerate() {
            let key = format!("api_tokens[{i}]");
            if t.token_sha256.len() != 64 || !t.token_sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(
                    format!("{key}.token_sha256"),
                    "64 hex digits (the SHA-256 of the token)",
                ));
            }
        }
        Ok(())
    }

    /// `[notify.email]`, `[notify.sms]` and the links' settings of `[notify]`. Secrets in
    /// `*_env` variables are read at start, not here: a configuration is checked without them.
    fn validate_email_sms(&self) -> Result<(), ConfigError> {
        let n = &self.notify;
        if let Some(u) = &n.public_url {
            match url::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
                _ => {
                    return Err(invalid(
                        "notify.public_url",
                        format!("{u:?} is not an http:// or https:// URL"),
                    ));
                }
            }
        }
        if n.link_secret.is_some() && n.link_secret_env.is_some() {
            return Err(invalid(
                "notify.link_secret",
                "link_secret and link_secret_env are both set: give one",
            ));
        }
        if n.link_secret.as_ref().is_some_and(|s| s.expose().chars().count() < 32) {
            return Err(invalid("notify.link_secret", "must be at least 32 characters"));
        }
        if n.answer_link_ttl_s < 60 {
            return Err(invalid("notify.answer_link_ttl_s", "must be at least 60"));
        }
        if let Some(e) = &n.email {
            let key = |f: &str| format!("notify.email.{f}");
            let server = e.server.trim();
            if server.is_empty() || server.contains(char::is_whitespace) {
                return Err(invalid(key("server"), "must be a host name or an address"));
            }
            if let Err(err) = e.from.parse::<lettre::message::Mailbox>() {
                return Err(invalid(
                    key("from"),
                    format!("{:?} is not a mailbox (`Name <address@example.com>`): {err}", e.from),
                ));
            }
            if e.port == Some(0) {
                return Err(invalid(key("port"), "must be between 1 and 65535"));
            }
            if e.security == crate::notify::config::EmailSecurity::None && !is_loopback_host(server) {
                return Err(invalid(
                    key("security"),
                    "\"none\" sends passwords and messages in clear: only for a relay on loopback (localhost, 127.0.0.1, ::1); use \"starttls\" or \"tls\"",
                ));
            }
            if e.security == crate::notify::config::EmailSecurity::None && e.ca_file.is_some() {
                return Err(invalid(key("ca_file"), "security = \"none\" uses no TLS: no CA file"));
            }
            let has_password = e.password.is_some() || e.password_env.is_some();
            if e.password.is_some() && e.password_env.is_some() {
                return Err(invalid(
                    key("password"),
                    "password and password_env are both set: give one",
                ));
            }
            if e.username.is_some() != has_password {
                return Err(invalid(
                    key(if has_password { "username" } else { "password" }),
                    "username and a password (password or password_env) go together",
                ));
            }
        }
        if let Some(s) = &n.sms {
            let key = |f: &str| format!("notify.sms.{f}");
            use crate::notify::channels::sms;
            let url = sms::sample_url(&s.url).map_err(|e| invalid(key("url"), e))?;
            match url.scheme() {
                "https" => {}
                "http" if url.host_str().is_some_and(is_loopback_host) => {}
                "http" => {
                    return Err(invalid(
                        key("url"),
                        "http:// sends the API key and the message in clear: only for a gateway on loopback; use https://",
                    ));
                }
                _ => return Err(invalid(key("url"), "must be an https:// URL")),
            }
            let method = s.method.to_ascii_uppercase();
            if !matches!(method.as_str(), "GET" | "POST" | "PUT") {
                return Err(invalid(key("method"), format!("GET, POST or PUT, not {:?}", s.method)));
            }
            if method == "GET" && !s.body.is_empty() {
                return Err(invalid(
                    key("body"),
                    "a GET sends no body: put {to} and {text} in the URL",
                ));
            }
            let ct = s.content_type.trim();
            if !ct.split(';').next().is_some_and(|t| t.contains('/')) || ct.contains(char::is_control) {
                return Err(invalid(key("content_type"), "a media type such as application/json"));
            }
            for (name, value) in &s.headers {
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(invalid(format!("notify.sms.headers.{name}"), "not a header name"));
                }
                if value.contains(['\r', '\n']) {
                    return Err(invalid(
                        format!("notify.sms.headers.{name}"),
                        "a header value holds no line break",
                    ));
                }
            }
            if s.max_chars < 70 {
                return Err(invalid(
                    key("max_chars"),
                    "must be at least 70 (one SMS of Chinese text)",
                ));
            }
            if !sms::names_to_and_text(s) {
                return Err(invalid(
                    key("url"),
                    "the template (url, headers, body) must name {to} and {text} somewhere",
                ));
            }
            if s.inbound_token.is_some() && s.inbound_token_env.is_some() {
                return Err(invalid(
                    key("inbound_token"),
                    "inbound_token and inbound_token_env are both set: give one",
                ));
            }
            if s.inbound_token
                .as_ref()
                .is_some_and(|t| t.expose().chars().count() < 16)
            {
                return Err(invalid(key("inbound_token"), "must be at least 16 characters"));
            }
        }
        Ok(())
    }

    /// The gRPC listener's TLS, or plaintext where `[tls]` explicitly allows it.
    pub fn tls_mode(&self) -> Result<TlsMode, ConfigError> {
        TlsSection::mode(self.tls.as_ref(), self.hub.grpc_listen)
    }

    /// The rota's validated model (posts, guards, routes, shift templates).
    pub fn rota_model(&self) -> Result<crate::rota::model::RotaModel, ConfigError> {
        let estates: Vec<crate::rota::model::EstateZone> = self
            .estates
            .iter()
            .map(|e| crate::rota::model::EstateZone {
                id: e.id.clone(),
                timezone: e.timezone.clone(),
            })
            .collect();
        crate::rota::model::RotaModel::build(&estates, &self.rota, &self.posts, &self.guards, &self.patrol_routes)
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
        if let Some((key, why)) = self.retention.invalid() {
            return Err(invalid(key, why));
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
            match crate::notify::address::Address::parse(&r.channel) {
                Err(e) => return Err(invalid(key("channel"), e)),
                Ok(crate::notify::address::Address::Webhook(_)) => {
                    if r.secret.is_some() && r.secret_env.is_some() {
                        return Err(invalid(key("secret"), "secret and secret_env are both set: give one"));
                    }
                    if r.secret.is_none()
                        && r.secret_env.is_none()
                        && self.notify.webhook_secret.is_none()
                        && self.notify.webhook_secret_env.is_none()
                    {
                        return Err(invalid(
                            key("channel"),
                            "a webhook needs a signing secret: set notify.webhook_secret or this entry's secret",
                        ));
                    }
                }
                Ok(other) => {
                    if r.secret.is_some() || r.secret_env.is_some() {
                        return Err(invalid(
                            key("secret"),
                            "only http(s) webhook channels are signed with a roster secret",
                        ));
                    }
                    self.check_channel_configured(&key("channel"), &other)?;
                }
            }
            if let Some(ca) = &r.ca_file {
                if !r.channel.starts_with("https://") {
                    return Err(invalid(key("ca_file"), "only https:// webhooks use a CA file"));
                }
                // One channel, one client: two entries naming it must trust the same roots.
                if let Some(other) = self
                    .roster
                    .iter()
                    .take(i)
                    .find(|o| o.channel == r.channel && o.ca_file.as_ref().is_some_and(|c| c != ca))
                {
                    return Err(invalid(
                        key("ca_file"),
                        format!("another entry for this channel names {:?}", other.ca_file),
                    ));
                }
            }
        }
        for (i, g) in self.guards.iter().enumerate() {
            if let Ok(a) = crate::notify::address::Address::parse(&g.channel) {
                self.check_channel_configured(&format!("guards[{i}].channel"), &a)?;
            }
        }
        if self.notify.webhook_secret.is_some() && self.notify.webhook_secret_env.is_some() {
            return Err(invalid(
                "notify.webhook_secret",
                "webhook_secret and webhook_secret_env are both set: give one",
            ));
        }
        if self.notify.webhook_secret.as_deref().is_some_and(|s| s.len() < 16) {
            return Err(invalid("notify.webhook_secret", "must be at least 16 characters"));
        }
        Ok(())
    }

    /// `[[notify.robots]]`: unique slug names, one URL (https; http only to loopback), a
    /// signing secret where the platform signs, a CA file only for https. A URL given by
    /// `url_env` is checked when it is read, at start. No message quotes a URL or a secret.
    fn validate_robots(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for (i, r) in self.notify.robots.iter().enumerate() {
            let key = |f: &str| format!("notify.robots[{i}].{f}");
            if r.name.is_empty()
                || r.name.len() > 64
                || !r
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err(invalid(
                    key("name"),
                    format!("{:?} is not a slug (lowercase letters, digits, - and _)", r.name),
                ));
            }
            if !names.insert(r.name.as_str()) {
                return Err(invalid(key("name"), format!("robot {:?} is defined twice", r.name)));
            }
            match (&r.url, &r.url_env) {
                (Some(_), Some(_)) => return Err(invalid(key("url"), "url and url_env are both set: give one")),
                (None, None) => return Err(invalid(key("url"), "set url or url_env")),
                (Some(url), None) => crate::notify::channels::robots::check_url(url.expose(), r.ca_file.is_some())
                    .map_err(|why| invalid(key("url"), why))?,
                (None, Some(var)) => {
                    if var.trim().is_empty() {
                        return Err(invalid(key("url_env"), "must name an environment variable"));
                    }
                }
            }
            if r.secret.is_some() && r.secret_env.is_some() {
                return Err(invalid(key("secret"), "secret and secret_env are both set: give one"));
            }
            let has_secret = r.secret.as_ref().is_some_and(|s| !s.expose().is_empty()) || r.secret_env.is_some();
            if r.kind.signed() && !has_secret {
                return Err(invalid(
                    key("secret"),
                    format!(
                        "a {} robot needs its signing secret (secret or secret_env)",
                        r.kind.as_str()
                    ),
                ));
            }
            if r.ca_file.is_some()
                && let Some(url) = &r.url
                && !url.expose().starts_with("https://")
            {
                return Err(invalid(key("ca_file"), "ca_file is for https:// robots only"));
            }
        }
        Ok(())
    }

    /// A `robot:`, `mailto:` or `sms:` channel needs its `[notify]` section.
    fn check_channel_configured(&self, key: &str, a: &crate::notify::address::Address) -> Result<(), ConfigError> {
        use crate::notify::address::Address;
        match a {
            Address::Robot(name) if !self.notify.robots.iter().any(|r| &r.name == name) => {
                Err(invalid(key, format!("no robot {name:?} in [[notify.robots]]")))
            }
            Address::Email(_) if self.notify.email.is_none() => {
                Err(invalid(key, "a mailto: channel needs [notify.email]"))
            }
            Address::Sms(_) if self.notify.sms.is_none() => Err(invalid(key, "an sms: channel needs [notify.sms]")),
            _ => Ok(()),
        }
    }

    /// What each https webhook trusts beyond the system's roots (CA files are read at start,
    /// by [`crate::notify::tls::WebhookClients::build`]).
    pub fn webhook_trust(&self) -> crate::notify::tls::WebhookTrust {
        crate::notify::tls::WebhookTrust {
            default_ca: self.notify.ca_file.clone(),
            per_channel: self
                .roster
                .iter()
                .filter_map(|r| r.ca_file.clone().map(|ca| (r.channel.clone(), ca)))
                .collect(),
        }
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let (h, g) = (&self.limits.http, &self.limits.grpc);
        for (key, v) in [
            ("limits.http.max_connections", h.max_connections),
            ("limits.http.max_connections_per_source", h.max_connections_per_source),
            ("limits.http.header_timeout_s", h.header_timeout_s),
            ("limits.http.request_timeout_s", h.request_timeout_s),
            ("limits.http.bulk_request_timeout_s", h.bulk_request_timeout_s),
            ("limits.http.max_stream_subscribers", h.max_stream_subscribers),
            (
                "limits.http.max_stream_subscribers_per_source",
                h.max_stream_subscribers_per_source,
            ),
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
        if self.api.stream_replay > MAX_STREAM_REPLAY {
            return Err(invalid(
                "api.stream_replay",
                format!("at most {MAX_STREAM_REPLAY} (each held event costs memory)"),
            ));
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
mod tests;
