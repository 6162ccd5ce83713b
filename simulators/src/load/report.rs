//! The figures of one load run, in either mode: the report printed and written as JSON.
//! Field names are the JSON contract of `--json`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::harness::{
    latency::{Latency, Summary},
    logs::LogProblem,
    metrics::HubFigures,
    procfs::ProcessFigures,
    report::{mib, opt},
};

/// The figures of one run; printed by [`LoadReport::render`] and written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// `mqtt` or `grpc`.
    pub via: String,
    /// How loss and duplicates were checked.
    pub checked_by: String,
    pub estates: usize,
    pub devices_per_estate: usize,
    pub target_rate: f64,
    pub duration_s: f64,
    pub data_dir: String,
    /// Publishes handed to the devices' MQTT clients (QoS 1).
    pub sent: u64,
    pub publish_errors: u64,
    /// `sent` over the time the devices were publishing.
    pub offered_rate: f64,
    /// Load events in the hub database (each stored copy counted).
    pub stored: u64,
    /// Sent but not stored.
    pub lost: u64,
    /// Extra stored copies of one device sequence number.
    pub duplicated: u64,
    /// Stored load events with a sequence number no device counted as sent.
    pub unexpected: u64,
    /// Whether the hub caught up with everything sent before the drain gave up.
    pub drained: bool,
    /// From the end of publishing until the hub had stored everything (or gave up).
    pub drain_s: f64,
    /// From the first publish to the last ingest of a load event.
    pub span_s: f64,
    /// `stored` over `span_s`.
    pub sustained_rate: f64,
    /// Device publish (`ts`) to the hub's commit (`ingested_at_ms`).
    pub latency_ms: Latency,
    /// Device publish to the gateway's receipt (`received_at_ms`).
    pub to_gateway_ms: Latency,
    /// Gateway receipt to the hub's commit.
    pub gateway_to_hub_ms: Latency,
    /// `--via grpc`: from sending a batch to the hub's Ack of it (committed), per event.
    pub ack_latency_ms: Option<Latency>,
    /// Sending a forced door to the alarm on the hub's live stream (after its commit).
    pub alarm_latency_ms: Option<Latency>,
    pub alarms_sent: u64,
    /// Forced doors whose alarm the live stream never showed.
    pub alarms_missing: u64,
    pub gateways: Vec<GatewayFigures>,
    pub gateway_rss_kib: Summary,
    pub gateway_hwm_kib: Summary,
    /// This process: the simulated devices or streams and the load driver.
    pub sim_process: ProcessFigures,
    /// The hub child process (none when the hub was already running).
    pub hub_process: Option<ProcessFigures>,
    pub hub_rss_max_kib: Option<u64>,
    /// Hub CPU over the run, in % of one core.
    pub hub_cpu_percent: Option<f64>,
    pub stream_errors: Vec<String>,
    pub hub: HubFigures,
}

impl LoadReport {
    /// Nothing lost and nothing duplicated.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.alarms_missing == 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayFigures {
    pub id: String,
    pub process: ProcessFigures,
    /// Largest VmRSS seen while sampling once a second.
    pub sampled_rss_max_kib: u64,
    /// From the gateway's `/metrics` at the end of the run.
    pub mqtt_accepted: Option<u64>,
    pub mqtt_rejected: Option<u64>,
    pub outbox_appended: Option<u64>,
    pub uplink_acked: Option<u64>,
    pub outbox_shed: Option<u64>,
    /// The `gatehouse_gateway_outbox_depth` gauge as the gateway reported it.
    pub outbox_depth_gauge: Option<u64>,
    /// Rows left in the outbox file after the run (read after the gateway stopped).
    pub outbox_rows: Option<u64>,
    /// WARN and ERROR lines in the gateway's log, by message (most frequent first).
    pub log_problems: Vec<LogProblem>,
    pub uplink_connects: Option<u64>,
}

impl LoadReport {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let lat = |s: &mut String, name: &str, l: &Latency| {
            let _ = writeln!(
                s,
                "  {name:<26} p50 {:>6}  p95 {:>6}  p99 {:>6}  max {:>6}  (mean {:.1}, n={})",
                l.p50, l.p95, l.p99, l.max, l.mean, l.count
            );
        };
        let _ = writeln!(s, "== gatehouse load report (via {}) ==", self.via);
        if self.via == "grpc" {
            let _ = writeln!(
                s,
                "setup       {} synthetic gateway streams x {} devices; target {} events/s for {:.0} s",
                self.estates, self.devices_per_estate, self.target_rate, self.duration_s
            );
        } else {
            let _ = writeln!(
                s,
                "setup       {} estates x {} devices = {} MQTT devices; target {} events/s for {:.0} s",
                self.estates,
                self.devices_per_estate,
                self.estates * self.devices_per_estate,
                self.target_rate,
                self.duration_s
            );
        }
        let _ = writeln!(s, "checked by  {}", self.checked_by);
        for e in self.stream_errors.iter().take(5) {
            let _ = writeln!(s, "stream err  {e}");
        }
        let _ = writeln!(
            s,
            "sent        {} (offered {:.0}/s; {} publish errors)",
            self.sent, self.offered_rate, self.publish_errors
        );
        let _ = writeln!(
            s,
            "stored      {} ({}; drain after publishing {:.1} s)",
            self.stored,
            if self.drained {
                "hub caught up"
            } else {
                "hub did NOT catch up"
            },
            self.drain_s
        );
        let verdict = |n: u64| if n == 0 { "OK" } else { "FAIL" };
        let _ = writeln!(s, "lost        {}  {}", self.lost, verdict(self.lost));
        let _ = writeln!(s, "duplicated  {}  {}", self.duplicated, verdict(self.duplicated));
        if self.unexpected > 0 {
            let _ = writeln!(s, "unexpected  {} (stored, not counted as sent)", self.unexpected);
        }
        let _ = writeln!(
            s,
            "sustained   {:.0} events/s stored (first publish to last ingest: {:.1} s)",
            self.sustained_rate, self.span_s
        );
        let _ = writeln!(s, "latency, ms (clock: ms resolution)");
        lat(&mut s, "publish -> hub commit", &self.latency_ms);
        if self.via == "mqtt" {
            lat(&mut s, "publish -> gateway", &self.to_gateway_ms);
            lat(&mut s, "gateway -> hub commit", &self.gateway_to_hub_ms);
        }
        if let Some(a) = &self.ack_latency_ms {
            lat(&mut s, "batch sent -> hub Ack", a);
        }
        if let Some(a) = &self.alarm_latency_ms {
            lat(&mut s, "device -> alarm visible", a);
            let _ = writeln!(
                s,
                "  {:<26} {} forced doors sent, {} never shown on /api/v1/stream  {}",
                "",
                self.alarms_sent,
                self.alarms_missing,
                if self.alarms_missing == 0 { "OK" } else { "FAIL" }
            );
        }
        if let Some(p) = &self.hub_process {
            let _ = writeln!(
                s,
                "hub process     pid {} VmRSS {} (sampled max {}) VmHWM {} cpu {:.1} s = {} of one core over the run",
                p.pid,
                mib(p.vm_rss_kib),
                mib(self.hub_rss_max_kib.unwrap_or(0)),
                mib(p.vm_hwm_kib),
                p.cpu_s,
                self.hub_cpu_percent.map_or_else(|| "?".into(), |c| format!("{c:.0}%"))
            );
        }
        let _ = writeln!(
            s,
            "{}gateway memory  VmRSS max {} mean {} | VmHWM max {} mean {}",
            if self.gateways.is_empty() {
                "(no gateway processes) "
            } else {
                ""
            },
            mib(self.gateway_rss_kib.max),
            mib(self.gateway_rss_kib.mean as u64),
            mib(self.gateway_hwm_kib.max),
            mib(self.gateway_hwm_kib.mean as u64)
        );
        for g in &self.gateways {
            let _ = writeln!(
                s,
                "  {:<12} pid {:>7}  VmRSS {:>9}  VmHWM {:>9}  cpu {:>5.1} s",
                g.id,
                g.process.pid,
                mib(g.process.vm_rss_kib),
                mib(g.process.vm_hwm_kib),
                g.process.cpu_s,
            );
            let _ = writeln!(
                s,
                "  {:<12} mqtt accepted {} rejected {} | outbox appended {} acked {} shed {} rows left {} (depth gauge {}) | hub connects {}",
                "",
                opt(&g.mqtt_accepted),
                opt(&g.mqtt_rejected),
                opt(&g.outbox_appended),
                opt(&g.uplink_acked),
                opt(&g.outbox_shed),
                opt(&g.outbox_rows),
                opt(&g.outbox_depth_gauge),
                opt(&g.uplink_connects)
            );
            for p in &g.log_problems {
                let short: String = p.message.chars().take(100).collect();
                let _ = writeln!(s, "  {:<12} log {:<5} x{:<5} {short}", "", p.level, p.count);
            }
        }
        let _ = writeln!(
            s,
            "load driver     VmRSS {} VmHWM {} cpu {:.1} s (pid {}; the simulated devices or streams)",
            mib(self.sim_process.vm_rss_kib),
            mib(self.sim_process.vm_hwm_kib),
            self.sim_process.cpu_s,
            self.sim_process.pid
        );
        let _ = writeln!(
            s,
            "hub writer      {} commits, {} batches, mean commit {} ms, {} duplicates dropped by (gateway, seq)",
            opt(&self.hub.commits),
            opt(&self.hub.batches_committed),
            self.hub
                .commit_mean_ms
                .map_or_else(|| "?".into(), |v| format!("{v:.2}")),
            opt(&self.hub.duplicates_dropped)
        );
        s
    }
}
