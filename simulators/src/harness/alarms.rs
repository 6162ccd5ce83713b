//! Alarm visibility: when each forced-door alarm was sent, and when the hub's live stream
//! (`GET /api/v1/stream`, published after the commit) first showed it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

use super::latency::{LATENCY_MAX_MS, Latency};

/// When each forced-door alarm was sent and when the hub's live stream (`GET
/// /api/v1/stream`, published after the commit) first showed it, by its door tag.
#[derive(Clone, Default)]
pub(crate) struct AlarmClock {
    sent: Arc<Mutex<HashMap<String, Instant>>>,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
}

/// Doors of the load's forced-door events are named `load-<gateway>-<n>`; the stream's
/// alarm carries the rule's message, `Door <door> forced open`.
const ALARM_DOOR_PREFIX: &str = "Door load-";

impl AlarmClock {
    pub(crate) fn sent(&self, door: String) {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(door, Instant::now());
    }

    pub(crate) fn sent_count(&self) -> u64 {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    pub(crate) fn seen_count(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    /// Reads the hub's SSE stream until `stop`; returns once subscribed.
    pub(crate) async fn watch(&self, http_base: &str, stop: CancellationToken) -> anyhow::Result<()> {
        let url = format!("{http_base}/api/v1/stream");
        let mut resp = crate::credentials::client()?
            .get(&url)
            .send()
            .await
            .with_context(|| format!("subscribing to {url}"))?;
        if !resp.status().is_success() {
            bail!("GET {url}: {}", resp.status());
        }
        let seen = self.seen.clone();
        tokio::spawn(async move {
            let mut buf = String::new();
            loop {
                let chunk = tokio::select! {
                    _ = stop.cancelled() => return,
                    c = resp.chunk() => c,
                };
                let Ok(Some(chunk)) = chunk else {
                    tracing::warn!("the hub's live stream ended");
                    return;
                };
                let now = Instant::now();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    for line in frame.lines() {
                        let Some(data) = line.strip_prefix("data:") else {
                            continue;
                        };
                        if !data.contains(ALARM_DOOR_PREFIX) {
                            continue;
                        }
                        let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                            continue;
                        };
                        if v["type"] != "alarm" {
                            continue;
                        }
                        let door = v["data"]["message"]
                            .as_str()
                            .and_then(|m| m.strip_prefix("Door "))
                            .and_then(|m| m.strip_suffix(" forced open"));
                        if let Some(door) = door {
                            seen.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry(door.to_string())
                                .or_insert(now);
                        }
                    }
                }
            }
        });
        Ok(())
    }

    /// Waits until every sent alarm was seen, or `within` passed.
    pub(crate) async fn settle(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.seen_count() < self.sent_count() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Latency of each seen alarm from its sending; and how many were never seen.
    pub(crate) fn latency(&self) -> (Latency, u64) {
        let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut h = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MS * 1000, 3).expect("histogram bounds");
        let mut missing = 0;
        for (door, at) in sent.iter() {
            match seen.get(door) {
                Some(s) => h.saturating_record(s.saturating_duration_since(*at).as_micros() as u64),
                None => missing += 1,
            }
        }
        (Latency::from_micros(&h), missing)
    }
}
