//! What every connection of the MQTT server shares: the intake, the section's limits, the
//! sessions, and the publishes awaiting their outbox commit ([`Waits`], which keeps
//! `mqtt.intake` and the awaiting-commit gauges true).

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use rumqttc::mqttbytes::v4::Login;

use super::{
    acl::Identity,
    auth::{Credentials, Denied, FailureLimiter},
    config::MqttSection,
    intake::Intake,
    sessions::Sessions,
};
use crate::{
    adapters::log_limit::LogLimiter,
    metrics::{Metrics, MqttRefusal},
};

/// What every connection of the server shares.
pub(super) struct Shared {
    pub intake: Arc<Intake>,
    pub section: MqttSection,
    pub metrics: Arc<Metrics>,
    pub sessions: Sessions,
    /// Client ids of the configured MQTT devices (they have room of their own).
    pub devices: HashSet<String>,
    pub waits: Waits,
    pub log_limit: Mutex<LogLimiter>,
    pub credentials: Credentials,
    pub failures: Mutex<FailureLimiter>,
}

impl Shared {
    /// Logs a refusal or close at most once a minute per `key`.
    pub fn log_allowed(&self, key: &str) -> bool {
        self.log_limit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(key, Instant::now())
    }

    /// Who a CONNECT is: its client certificate's device (a username, if any, must name
    /// the same device), else its username and password, else anonymous when allowed.
    /// Failed logins count against the source address (see [`FailureLimiter`]).
    pub async fn authenticate(
        &self,
        login: Option<&Login>,
        cert_device: Option<String>,
        peer: SocketAddr,
    ) -> Result<Identity, Denied> {
        let ip = peer.ip();
        let limiter = || self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if limiter().blocked(ip, Instant::now()) {
            return Err(Denied::RateLimited);
        }
        let username = login.map(|l| l.username.as_str()).filter(|u| !u.is_empty());
        let verdict = match (cert_device, username) {
            (Some(device), None) => Ok(Identity::Device(device)),
            (Some(device), Some(u)) if u == device => Ok(Identity::Device(device)),
            (Some(_), Some(_)) => Err(Denied::CertMismatch),
            (None, Some(u)) => {
                let password = login.map(|l| l.password.as_bytes()).unwrap_or_default();
                if self.credentials.verify(u, password).await {
                    Ok(Identity::Device(u.to_string()))
                } else {
                    Err(Denied::BadPassword)
                }
            }
            (None, None) if self.section.allow_anonymous => Ok(Identity::Anonymous),
            (None, None) => Err(Denied::NoCredentials),
        };
        if verdict.is_err() && limiter().failed(ip, Instant::now()) {
            tracing::warn!(peer = %peer, failures = self.section.auth_max_failures,
                backoff_s = self.section.auth_backoff_s,
                "MQTT logins from this address failed repeatedly; it is refused without checking for the backoff");
        }
        verdict
    }

    /// A refused login: counted per reason, logged at most once a minute per source.
    pub fn refused_login(&self, why: MqttRefusal, peer: SocketAddr, client_id: &str) {
        self.metrics.mqtt_refused(why);
        if self.log_allowed(&format!("login:{}", peer.ip())) {
            tracing::warn!(peer = %peer, reason = why.as_str(), client = client_id,
                "MQTT login refused (counted on /metrics; logged at most once a minute per source)");
        }
    }

    pub fn refused(&self, why: MqttRefusal, peer: SocketAddr, detail: &str) {
        self.metrics.mqtt_refused(why);
        if self.log_allowed(why.as_str()) {
            tracing::warn!(peer = %peer, reason = why.as_str(), detail,
                "MQTT connection refused (counted on /metrics; logged at most once a minute per reason)");
        }
    }
}

/// Publishes awaiting their outbox commit, oldest first.
#[derive(Default)]
pub(super) struct Waits {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Instant>>,
}

/// One publish's wait; ends (and is measured) when dropped.
pub(super) struct Wait {
    shared: Arc<Shared>,
    id: u64,
    since: Instant,
}

impl Waits {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Instant>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn begin(shared: &Arc<Shared>) -> Wait {
        let id = shared.waits.next.fetch_add(1, Relaxed);
        let since = Instant::now();
        shared.waits.lock().insert(id, since);
        shared.metrics.mqtt_awaiting_commit.fetch_add(1, Relaxed);
        Wait {
            shared: shared.clone(),
            id,
            since,
        }
    }

    pub fn oldest(&self) -> Option<Duration> {
        self.lock().first_key_value().map(|(_, t)| t.elapsed())
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.shared.waits.lock().remove(&self.id);
        let m = &self.shared.metrics;
        let _ = m
            .mqtt_awaiting_commit
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        m.mqtt_commit_wait_max_ms
            .fetch_max(self.since.elapsed().as_millis() as u64, Relaxed);
    }
}
