//! Counters for `/metrics` (Prometheus text format), hand-rolled with atomics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::alarms::Priority;

/// Process-wide counters. Cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    pub events_ingested: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    pub batches_committed: AtomicU64,
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    commit_micros_sum: AtomicU64,
    pub alarm_changes: AtomicU64,
    pub streams_refused: AtomicU64,
    http_by_class: [AtomicU64; 5],
    /// Connections of the HTTP and gRPC listeners: open, refused by a cap, cut by a limit.
    pub net: crate::net::NetMetrics,
}

impl Metrics {
    pub fn observe_commit(&self, took: Duration) {
        self.commits.fetch_add(1, Relaxed);
        self.commit_micros_sum
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn observe_http(&self, status: u16) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.http_by_class[class].fetch_add(1, Relaxed);
    }

    /// Renders everything; `connected` and `alarms` (priority, active, acknowledged, count)
    /// are read by the caller at scrape time.
    pub fn render(&self, connected: usize, alarms: &[(String, bool, bool, i64)]) -> String {
        let mut out = String::with_capacity(2048);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            &mut out,
            "gatehouse_hub_events_ingested_total",
            "Events durably stored.",
            self.events_ingested.load(Relaxed),
        );
        counter(
            &mut out,
            "gatehouse_hub_duplicates_dropped_total",
            "Events dropped as already stored (gateway, seq).",
            self.duplicates_dropped.load(Relaxed),
        );
        counter(
            &mut out,
            "gatehouse_hub_batches_committed_total",
            "Event batches from gateways committed (and acknowledged).",
            self.batches_committed.load(Relaxed),
        );
        counter(
            &mut out,
            "gatehouse_hub_commit_failures_total",
            "Writer transactions that failed.",
            self.commit_failures.load(Relaxed),
        );
        counter(
            &mut out,
            "gatehouse_hub_alarm_changes_total",
            "Alarm changes written (raise, update, clear, acknowledge).",
            self.alarm_changes.load(Relaxed),
        );
        counter(
            &mut out,
            "gatehouse_hub_streams_refused_total",
            "GatewayLink streams refused or closed for a protocol error.",
            self.streams_refused.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_commit_seconds Writer transaction latency.\n\
             # TYPE gatehouse_hub_commit_seconds summary\n\
             gatehouse_hub_commit_seconds_sum {}\n\
             gatehouse_hub_commit_seconds_count {}",
            self.commit_micros_sum.load(Relaxed) as f64 / 1e6,
            self.commits.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_connected_gateways Gateways with an open GatewayLink stream.\n\
             # TYPE gatehouse_hub_connected_gateways gauge\n\
             gatehouse_hub_connected_gateways {connected}"
        );
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_alarms Alarms in the alarm book by state and priority.\n\
             # TYPE gatehouse_hub_alarms gauge"
        );
        for p in Priority::ALL {
            for (state, pick) in [
                ("active_unacknowledged", (true, false)),
                ("active_acknowledged", (true, true)),
                ("cleared_unacknowledged", (false, false)),
                ("cleared_acknowledged", (false, true)),
            ] {
                let n: i64 = alarms
                    .iter()
                    .filter(|(prio, a, k, _)| prio == p.as_str() && (*a, *k) == pick)
                    .map(|(_, _, _, n)| n)
                    .sum();
                let _ = writeln!(out, "gatehouse_hub_alarms{{priority=\"{p}\",state=\"{state}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_http_requests_total HTTP requests by status class.\n\
             # TYPE gatehouse_hub_http_requests_total counter"
        );
        for (i, c) in self.http_by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "gatehouse_hub_http_requests_total{{code=\"{}xx\"}} {}",
                i + 1,
                c.load(Relaxed)
            );
        }
        self.net.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_counters_and_alarm_gauges() {
        let m = Metrics::default();
        m.events_ingested.fetch_add(3, Relaxed);
        m.observe_http(404);
        m.observe_commit(Duration::from_millis(2));
        let text = m.render(1, &[("P2".into(), true, false, 2)]);
        assert!(text.contains("gatehouse_hub_events_ingested_total 3"));
        assert!(text.contains("gatehouse_hub_alarms{priority=\"P2\",state=\"active_unacknowledged\"} 2"));
        assert!(text.contains("gatehouse_hub_http_requests_total{code=\"4xx\"} 1"));
        assert!(text.contains("gatehouse_hub_commit_seconds_count 1"));
        assert!(text.contains("gatehouse_hub_connected_gateways 1"));
    }
}
