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

use super::{config::MqttSection, intake::Intake, sessions::Sessions};
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
}

impl Shared {
    /// Logs a refusal or close at most once a minute per `key`.
    pub fn log_allowed(&self, key: &str) -> bool {
        self.log_limit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(key, Instant::now())
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
