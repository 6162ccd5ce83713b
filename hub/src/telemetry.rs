//! The hub's OpenTelemetry instruments (exported only when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set; see `gatehouse_proto::telemetry`): events in (stored) and duplicates, writer
//! commits, and alarms by state. The spans are made in the writer: `hub.ingest` (a child
//! of the context the event carries, ending at the commit) and `hub.alarm` under it.

use std::{
    sync::{Arc, Mutex, atomic::Ordering::Relaxed},
    time::Duration,
};

pub use gatehouse_proto::telemetry::*;
use tokio_util::sync::CancellationToken;

use crate::{metrics::Metrics, store};

/// How often the alarm counts are read from the database for the `alarms` gauge.
const ALARM_COUNT_EVERY: Duration = Duration::from_secs(10);

/// (priority, active, acknowledged, count), as `crate::alarms::queries::alarm_counts` reads them.
type AlarmCounts = Vec<(String, bool, bool, i64)>;

/// Registers the hub's instruments. Does nothing when export is off.
pub fn register(metrics: &Arc<Metrics>, pool: &store::Pool, stop: CancellationToken) {
    if !enabled() {
        return;
    }
    let meter = meter("gatehouse-hub");
    let m = metrics.clone();
    meter
        .u64_observable_counter("gatehouse.hub.events.in")
        .with_description("Events durably stored.")
        .with_callback(move |o| o.observe(m.events_ingested.load(Relaxed), &[]))
        .build();
    let m = metrics.clone();
    meter
        .u64_observable_counter("gatehouse.hub.events.duplicates")
        .with_description("Events dropped as already stored (gateway, seq).")
        .with_callback(move |o| o.observe(m.duplicates_dropped.load(Relaxed), &[]))
        .build();
    let m = metrics.clone();
    meter
        .u64_observable_counter("gatehouse.hub.batches.acked")
        .with_description("Batches committed and acknowledged to their gateway.")
        .with_callback(move |o| o.observe(m.batches_committed.load(Relaxed), &[]))
        .build();
    let counts: Arc<Mutex<AlarmCounts>> = Arc::default();
    let c = counts.clone();
    meter
        .i64_observable_gauge("gatehouse.hub.alarms")
        .with_description("Alarms by priority and state (active/cleared, acknowledged/unacknowledged).")
        .with_callback(move |o| {
            let counts = c.lock().unwrap_or_else(|e| e.into_inner());
            // Every priority and state, zero included, so a series never just vanishes.
            for priority in ["P1", "P2", "P3", "P4"] {
                for (active, acknowledged) in [(true, false), (true, true), (false, false), (false, true)] {
                    let n = counts
                        .iter()
                        .find(|(p, a, k, _)| p == priority && *a == active && *k == acknowledged)
                        .map_or(0, |r| r.3);
                    let state = if active { "active" } else { "cleared" };
                    let ack = if acknowledged { "acknowledged" } else { "unacknowledged" };
                    o.observe(n, &[attr("priority", priority), attr("state", state), attr("ack", ack)]);
                }
            }
        })
        .build();
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(ALARM_COUNT_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            match crate::alarms::queries::alarm_counts(&pool).await {
                Ok(now) => *counts.lock().unwrap_or_else(|e| e.into_inner()) = now,
                Err(e) => tracing::debug!(error = %e, "counting alarms for telemetry failed"),
            }
        }
    });
}
