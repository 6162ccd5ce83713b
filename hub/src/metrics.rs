//! Counters for `/metrics` (Prometheus text format), hand-rolled with atomics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::alarms::Priority;

/// Process-wide counters. Cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    pub events_ingested: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    /// Events deleted as past `[retention] events_days`.
    pub events_purged: AtomicU64,
    pub batches_committed: AtomicU64,
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    commit_micros_sum: AtomicU64,
    pub alarm_changes: AtomicU64,
    pub streams_refused: AtomicU64,
    /// GatewayLink streams refused for who the peer is: no client certificate, a gateway not
    /// in `[[gateways]]`, a Hello that does not match the certificate, a revoked certificate.
    pub streams_denied: AtomicU64,
    /// Streams cut because a CRL reload revoked their certificate.
    pub streams_revoked: AtomicU64,
    http_by_class: [AtomicU64; 5],
    /// Connections of the HTTP and gRPC listeners: open, refused by a cap, cut by a limit.
    pub net: std::sync::Arc<crate::net::NetMetrics>,
    batches_rejected: [AtomicU64; RejectKind::ALL.len()],
    /// Webhook attempts by result, counted by the deliverer.
    pub webhooks: std::sync::Arc<crate::notify::WebhookAttempts>,
    /// Notification attempts by channel and result, counted by the deliverer.
    pub notifications: std::sync::Arc<crate::notify::ChannelAttempts>,
    /// Gateway → stalled (connected, holding events, the stored sequence not advancing).
    stalled: Mutex<BTreeMap<String, bool>>,
    /// When the writer last committed (None: not yet).
    last_commit: Mutex<Option<Instant>>,
    /// Retention purges per history (`events`, `alarm_history`, ...): rows, runs, time.
    purges: Mutex<BTreeMap<&'static str, PurgeTotals>>,
}

/// One history's retention purges since start.
#[derive(Debug, Default, Clone, Copy)]
struct PurgeTotals {
    rows: u64,
    runs: u64,
    micros: u64,
}

/// Why the hub refused a gateway's batch; each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    SeqGap,
    SeqCeiling,
    TooLarge,
    /// A text field of an event is longer than the hub accepts.
    FieldTooLong,
}

impl RejectKind {
    pub const ALL: [RejectKind; 4] = [
        RejectKind::SeqGap,
        RejectKind::SeqCeiling,
        RejectKind::TooLarge,
        RejectKind::FieldTooLong,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::SeqGap => "seq_gap",
            RejectKind::SeqCeiling => "seq_ceiling",
            RejectKind::TooLarge => "too_large",
            RejectKind::FieldTooLong => "field_too_long",
        }
    }
}

impl Metrics {
    pub fn observe_commit(&self, took: Duration) {
        self.commits.fetch_add(1, Relaxed);
        self.commit_micros_sum
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// A committed retention purge of `history`: `rows` deleted (or dropped with their
    /// partition) in `took`.
    pub fn observe_purge(&self, history: &'static str, rows: u64, took: Duration) {
        let mut purges = self.purges.lock().unwrap_or_else(|e| e.into_inner());
        let t = purges.entry(history).or_default();
        t.rows += rows;
        t.runs += 1;
        t.micros += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    }

    /// The writer committed a transaction just now.
    pub fn committed_now(&self) {
        *self.last_commit.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// How long since the writer last committed (None before the first commit).
    pub fn since_last_commit(&self) -> Option<Duration> {
        self.last_commit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed())
    }

    pub fn batch_rejected(&self, kind: RejectKind) {
        self.batches_rejected[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn batches_rejected(&self, kind: RejectKind) -> u64 {
        self.batches_rejected[kind as usize].load(Relaxed)
    }

    /// Replaces the per-gateway stalled gauge.
    pub fn set_stalled(&self, gateways: BTreeMap<String, bool>) {
        *self.stalled.lock().unwrap_or_else(|e| e.into_inner()) = gateways;
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
            "gatehouse_hub_events_purged_total",
            "Events deleted as past their retention ([retention] events_days).",
            self.events_purged.load(Relaxed),
        );
        let purges: Vec<(&'static str, PurgeTotals)> = self
            .purges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(h, t)| (*h, *t))
            .collect();
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_purged_rows_total Rows past their retention deleted, by history \
             (events: dropped with their partition).\n# TYPE gatehouse_hub_purged_rows_total counter"
        );
        for (h, t) in &purges {
            let _ = writeln!(out, "gatehouse_hub_purged_rows_total{{history=\"{h}\"}} {}", t.rows);
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_purge_seconds Time spent in retention purges (inside the writer's \
             transaction), by history.\n# TYPE gatehouse_hub_purge_seconds summary"
        );
        for (h, t) in &purges {
            let _ = writeln!(
                out,
                "gatehouse_hub_purge_seconds_sum{{history=\"{h}\"}} {:.6}\ngatehouse_hub_purge_seconds_count{{history=\"{h}\"}} {}",
                t.micros as f64 / 1e6,
                t.runs
            );
        }
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
        counter(
            &mut out,
            "gatehouse_hub_streams_denied_total",
            "GatewayLink streams refused for their identity (no or revoked certificate, unknown gateway, Hello not matching the certificate).",
            self.streams_denied.load(Relaxed),
        );
        counter(
            &mut out,
            "gatehouse_hub_streams_revoked_total",
            "GatewayLink streams cut because a CRL reload revoked their certificate.",
            self.streams_revoked.load(Relaxed),
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
        self.webhooks.render(&mut out);
        self.notifications.render(&mut out);
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_batches_rejected_total Gateway batches refused with an explicit rejection, by reason.\n\
             # TYPE gatehouse_hub_batches_rejected_total counter"
        );
        for k in RejectKind::ALL {
            let _ = writeln!(
                out,
                "gatehouse_hub_batches_rejected_total{{reason=\"{}\"}} {}",
                k.as_str(),
                self.batches_rejected(k)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_gateway_stalled 1 while a connected gateway holds events the hub has not stored and makes no progress.\n\
             # TYPE gatehouse_hub_gateway_stalled gauge"
        );
        for (gateway, stalled) in self.stalled.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            // Prometheus label values escape backslash and double quote.
            let label = gateway.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "gatehouse_hub_gateway_stalled{{gateway=\"{label}\"}} {}",
                u8::from(*stalled)
            );
        }
        let age = self.since_last_commit().map_or(-1.0, |d| d.as_secs_f64());
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_writer_last_commit_age_seconds Seconds since the writer last committed (-1: never).\n\
             # TYPE gatehouse_hub_writer_last_commit_age_seconds gauge\n\
             gatehouse_hub_writer_last_commit_age_seconds {age:.3}"
        );
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
        m.set_stalled([("gw-\"x\\".to_owned(), true)].into_iter().collect());
        m.batch_rejected(RejectKind::SeqGap);
        let text = m.render(1, &[]);
        assert!(
            text.contains("gatehouse_hub_gateway_stalled{gateway=\"gw-\\\"x\\\\\"} 1"),
            "{text}"
        );
        assert!(text.contains("gatehouse_hub_batches_rejected_total{reason=\"seq_gap\"} 1"));
        assert!(text.contains("gatehouse_hub_http_requests_total{code=\"4xx\"} 1"));
        assert!(text.contains("gatehouse_hub_commit_seconds_count 1"));
        assert!(text.contains("gatehouse_hub_connected_gateways 1"));
        m.notifications.count("dingtalk", crate::notify::WebhookResult::Refused);
        let text = m.render(1, &[]);
        assert!(
            text.contains("gatehouse_hub_notification_attempts_total{channel=\"dingtalk\",result=\"refused\"} 1"),
            "{text}"
        );
        assert!(text.contains("gatehouse_hub_notification_attempts_total{channel=\"sms\",result=\"delivered\"} 0"));
    }
}
