//! What the gateway says about itself on `/healthz`, `/readyz` and `/metrics`.
//!
//! Every part that events flow through registers a named [`Check`] here and keeps it true:
//! the MQTT listener, the MQTT intake, each DC-09 listener, the outbox writer, the uplink's
//! progress. A part that cannot pass events on must say so through its check, so that health
//! never answers "ok" while an estate's alarms go nowhere.
//!
//! Two severities: a **live** check failing means intake or forwarding is broken (both
//! `/healthz` and `/readyz` fail: restart or page someone); a **ready** check failing means
//! the gateway works but cannot deliver yet, e.g. no hub reachable, events safe in the
//! outbox (`/readyz` fails, `/healthz` stays 200).

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Arc, Mutex},
    time::Instant,
};

/// Whether a failing check means the gateway is broken or only not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Live,
    Ready,
}

#[derive(Debug, Clone)]
struct State {
    severity: Severity,
    failing: Option<String>,
    since: Instant,
}

/// The set of checks; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    checks: Arc<Mutex<BTreeMap<String, State>>>,
}

/// One named check, owned by the part it describes. It starts passing.
#[derive(Debug, Clone)]
pub struct Check {
    name: String,
    health: Health,
}

/// A failing check, as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub check: String,
    pub reason: String,
    pub live: bool,
    pub for_s: u64,
}

impl Health {
    /// Registers `name` (e.g. `mqtt.listener`, `dc09.tcp`, `uplink.progress`), passing.
    pub fn register(&self, name: impl Into<String>, severity: Severity) -> Check {
        let name = name.into();
        self.lock().insert(
            name.clone(),
            State {
                severity,
                failing: None,
                since: Instant::now(),
            },
        );
        Check {
            name,
            health: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, State>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is still
        // whole (every write is one insert), so keep serving health.
        self.checks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every failing check, live ones first.
    pub fn failures(&self) -> Vec<Failure> {
        let mut out: Vec<Failure> = self
            .lock()
            .iter()
            .filter_map(|(name, s)| {
                s.failing.as_ref().map(|reason| Failure {
                    check: name.clone(),
                    reason: reason.clone(),
                    live: s.severity == Severity::Live,
                    for_s: s.since.elapsed().as_secs(),
                })
            })
            .collect();
        out.sort_by_key(|f| !f.live);
        out
    }

    /// `/healthz`: no live check failing.
    pub fn live(&self) -> bool {
        self.failures().iter().all(|f| !f.live)
    }

    /// `/readyz`: no check failing at all.
    pub fn ready(&self) -> bool {
        self.failures().is_empty()
    }

    /// `gatehouse_gateway_health_ok{check="…"}` 1 or 0 per check.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP gatehouse_gateway_health_ok Whether each health check passes (1) or fails (0).\n# TYPE gatehouse_gateway_health_ok gauge"
        );
        for (name, s) in self.lock().iter() {
            let _ = writeln!(
                out,
                "gatehouse_gateway_health_ok{{check=\"{name}\"}} {}",
                u8::from(s.failing.is_none())
            );
        }
    }
}

impl Check {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Marks the check passing (logged once when it recovers).
    pub fn ok(&self) {
        let mut checks = self.health.lock();
        if let Some(s) = checks.get_mut(&self.name)
            && s.failing.is_some()
        {
            tracing::info!(check = %self.name, "health check passes again");
            s.failing = None;
            s.since = Instant::now();
        }
    }

    /// Marks the check failing with `reason` (logged when it starts failing or the reason
    /// changes, not on every call).
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        let mut checks = self.health.lock();
        if let Some(s) = checks.get_mut(&self.name) {
            if s.failing.as_deref() == Some(reason.as_str()) {
                return;
            }
            if s.failing.is_none() {
                s.since = Instant::now();
            }
            match s.severity {
                Severity::Live => tracing::error!(check = %self.name, reason = %reason, "health check fails"),
                // Not ready is an expected state (at start, while a hub is down: the uplink logs
                // its own failures); info, not a warning on every start.
                Severity::Ready => tracing::info!(check = %self.name, reason = %reason, "not ready"),
            }
            s.failing = Some(reason);
        }
    }

    /// `ok()` or `fail(reason)`.
    pub fn set(&self, result: Result<(), String>) {
        match result {
            Ok(()) => self.ok(),
            Err(reason) => self.fail(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_live_check_fails_both_endpoints_and_a_ready_one_only_readiness() {
        let health = Health::default();
        let listener = health.register("mqtt.listener", Severity::Live);
        let hub = health.register("uplink.connected", Severity::Ready);
        assert!(health.live() && health.ready());

        hub.fail("no hub reachable");
        assert!(health.live());
        assert!(!health.ready());

        listener.fail("accept failed: too many open files");
        assert!(!health.live());
        let failures = health.failures();
        assert_eq!(failures[0].check, "mqtt.listener", "live failures come first");
        assert_eq!(failures.len(), 2);

        listener.ok();
        hub.set(Ok(()));
        assert!(health.live() && health.ready());
        let mut text = String::new();
        health.render(&mut text);
        assert!(text.contains("gatehouse_gateway_health_ok{check=\"mqtt.listener\"} 1"));
    }
}
