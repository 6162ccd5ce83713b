//! The gateway's counters and gauges, rendered as Prometheus text on `/metrics`. A leaf:
//! it imports nothing else of the crate; the label sets are in [`labels`].

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

mod labels;

pub use labels::{
    Dc09Closed, Dc09Conns, Dc09Verdict, ModbusFailure, MqttClose, MqttDenial, MqttRefusal, RejectReason,
    UplinkRejection,
};

#[derive(Debug, Default)]
pub struct Metrics {
    pub mqtt_accepted: AtomicU64,
    mqtt_rejected: [AtomicU64; RejectReason::ALL.len()],
    mqtt_refused: [AtomicU64; MqttRefusal::ALL.len()],
    mqtt_closed: [AtomicU64; MqttClose::ALL.len()],
    mqtt_denied: [AtomicU64; MqttDenial::ALL.len()],
    /// Open MQTT connections (pending CONNECT included).
    pub mqtt_connections: AtomicU64,
    /// QoS 1/2 publishes waiting for their outbox commit (and so for their PUBACK).
    pub mqtt_awaiting_commit: AtomicU64,
    /// The longest a publish has waited for its commit, since start (ms).
    pub mqtt_commit_wait_max_ms: AtomicU64,
    /// Publishes with the retain flag: handled as any publish, never stored as retained.
    pub mqtt_retained_ignored: AtomicU64,
    /// Last wills handled as the device's publish after an abnormal close.
    pub mqtt_wills: AtomicU64,
    pub outbox_appended: AtomicU64,
    pub outbox_depth: AtomicU64,
    pub outbox_shed: AtomicU64,
    pub outbox_write_errors: AtomicU64,
    pub uplink_sent: AtomicU64,
    pub uplink_acked: AtomicU64,
    pub uplink_connects: AtomicU64,
    pub uplink_connected: AtomicU64,
    pub commands: AtomicU64,
    uplink_rejected: [AtomicU64; UplinkRejection::ALL.len()],
    /// Events set aside in the outbox's dead-letter table (too large for any batch).
    pub uplink_dead_lettered: AtomicU64,
    /// Welcomes whose last seq this outbox could not honour (renumbering would pass the ceiling).
    pub uplink_seq_refused: AtomicU64,
    /// The byte bound of a batch in force (the hub's limit, halved after a refusal).
    pub uplink_batch_bytes: AtomicU64,
    /// Events refused at intake because they are larger than `uplink.max_event_bytes`.
    pub events_oversized: AtomicU64,
    pub modbus_requests: AtomicU64,
    modbus_failures: [AtomicU64; ModbusFailure::ALL.len()],
    pub modbus_reconnects: AtomicU64,
    pub modbus_devices_offline: AtomicU64,
    dc09_frames: [AtomicU64; Dc09Verdict::ALL.len()],
    /// Fire events stored from DC-09 frames.
    pub dc09_events: AtomicU64,
    /// Of those, codes the tables do not map (stored with their raw code, raising nothing).
    pub dc09_unmapped: AtomicU64,
    /// Frames not ACKed because the outbox could not store them.
    pub dc09_store_failures: AtomicU64,
    /// Frames dropped unanswered: their source sent more than `dc09.max_frames_per_s`.
    pub dc09_rate_limited: AtomicU64,
    /// Frames dropped unanswered: longer than `dc09.max_frame_bytes`.
    pub dc09_oversized: AtomicU64,
    pub dc09_panels_offline: AtomicU64,
    /// DC-09 TCP connections: open, refused, closed by a limit.
    pub dc09_conns: Dc09Conns,
    /// Zone-state changes read from Modbus fire panels.
    pub fire_zone_changes: AtomicU64,
}

impl Metrics {
    pub fn reject(&self, reason: RejectReason) {
        self.mqtt_rejected[reason as usize].fetch_add(1, Relaxed);
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.mqtt_rejected[reason as usize].load(Relaxed)
    }

    pub fn uplink_rejected(&self, reason: UplinkRejection) {
        self.uplink_rejected[reason as usize].fetch_add(1, Relaxed);
    }

    pub fn uplink_rejections(&self, reason: UplinkRejection) -> u64 {
        self.uplink_rejected[reason as usize].load(Relaxed)
    }

    pub fn mqtt_refused(&self, why: MqttRefusal) {
        self.mqtt_refused[why as usize].fetch_add(1, Relaxed);
    }

    pub fn mqtt_refusals(&self, why: MqttRefusal) -> u64 {
        self.mqtt_refused[why as usize].load(Relaxed)
    }

    pub fn mqtt_closed(&self, why: MqttClose) {
        self.mqtt_closed[why as usize].fetch_add(1, Relaxed);
    }

    pub fn mqtt_closes(&self, why: MqttClose) -> u64 {
        self.mqtt_closed[why as usize].load(Relaxed)
    }

    pub fn mqtt_denied(&self, why: MqttDenial) {
        self.mqtt_denied[why as usize].fetch_add(1, Relaxed);
    }

    pub fn mqtt_denials(&self, why: MqttDenial) -> u64 {
        self.mqtt_denied[why as usize].load(Relaxed)
    }

    pub fn modbus_failure(&self, kind: ModbusFailure) {
        self.modbus_failures[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn modbus_failures(&self, kind: ModbusFailure) -> u64 {
        self.modbus_failures[kind as usize].load(Relaxed)
    }

    /// Counts a DC-09 frame by what became of it.
    pub fn dc09_frame(&self, verdict: Dc09Verdict) {
        self.dc09_frames[verdict as usize].fetch_add(1, Relaxed);
    }

    pub fn dc09_frames(&self, verdict: Dc09Verdict) -> u64 {
        self.dc09_frames[verdict as usize].load(Relaxed)
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "gatehouse_gateway_mqtt_accepted_total",
            "MQTT publishes translated into events.",
            self.mqtt_accepted.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_outbox_appended_total",
            "Events committed to the outbox.",
            self.outbox_appended.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_outbox_shed_total",
            "Events dropped from a full outbox (point readings and information only).",
            self.outbox_shed.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_outbox_write_errors_total",
            "Outbox transactions that failed (disk full, I/O).",
            self.outbox_write_errors.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_uplink_sent_total",
            "Events sent to the hub (resends included).",
            self.uplink_sent.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_uplink_acked_total",
            "Events acknowledged by the hub.",
            self.uplink_acked.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_uplink_connects_total",
            "Successful hub connections.",
            self.uplink_connects.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_commands_total",
            "Commands received from the hub.",
            self.commands.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_modbus_requests_total",
            "Modbus requests sent.",
            self.modbus_requests.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_modbus_reconnects_total",
            "Modbus connections dropped and reopened.",
            self.modbus_reconnects.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP gatehouse_gateway_mqtt_rejected_total MQTT publishes rejected, by reason.\n# TYPE gatehouse_gateway_mqtt_rejected_total counter"
        );
        for r in RejectReason::ALL {
            let _ = writeln!(
                out,
                "gatehouse_gateway_mqtt_rejected_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.rejected(r)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_gateway_uplink_rejected_total Batches the hub refused, by reason.\n# TYPE gatehouse_gateway_uplink_rejected_total counter"
        );
        for r in UplinkRejection::ALL {
            let _ = writeln!(
                out,
                "gatehouse_gateway_uplink_rejected_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.uplink_rejections(r)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_gateway_mqtt_refused_total MQTT connections refused, by reason.\n# TYPE gatehouse_gateway_mqtt_refused_total counter"
        );
        for r in MqttRefusal::ALL {
            let _ = writeln!(
                out,
                "gatehouse_gateway_mqtt_refused_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.mqtt_refusals(r)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_gateway_mqtt_closed_total MQTT connections closed by the gateway, by reason.\n# TYPE gatehouse_gateway_mqtt_closed_total counter"
        );
        for r in MqttClose::ALL {
            let _ = writeln!(
                out,
                "gatehouse_gateway_mqtt_closed_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.mqtt_closes(r)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_gateway_mqtt_denied_total MQTT publishes and subscriptions refused by topic rights, by reason.\n# TYPE gatehouse_gateway_mqtt_denied_total counter"
        );
        for r in MqttDenial::ALL {
            let _ = writeln!(
                out,
                "gatehouse_gateway_mqtt_denied_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.mqtt_denials(r)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_gateway_modbus_failures_total Failed Modbus requests, by kind.\n# TYPE gatehouse_gateway_modbus_failures_total counter"
        );
        for f in ModbusFailure::ALL {
            let _ = writeln!(
                out,
                "gatehouse_gateway_modbus_failures_total{{kind=\"{}\"}} {}",
                f.as_str(),
                self.modbus_failures(f)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_gateway_dc09_frames_total SIA DC-09 frames received, by outcome (accepted, poll and duplicate were ACKed).\n# TYPE gatehouse_gateway_dc09_frames_total counter"
        );
        for v in Dc09Verdict::ALL {
            let _ = writeln!(
                out,
                "gatehouse_gateway_dc09_frames_total{{result=\"{}\"}} {}",
                v.as_str(),
                self.dc09_frames(v)
            );
        }
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "gatehouse_gateway_dc09_events_total",
            "Fire events stored from DC-09 frames.",
            self.dc09_events.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_dc09_unmapped_total",
            "DC-09 event codes outside the fire tables (stored with their raw code, raising nothing).",
            self.dc09_unmapped.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_dc09_store_failures_total",
            "DC-09 frames answered NAK because the outbox could not store them.",
            self.dc09_store_failures.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_dc09_rate_limited_total",
            "DC-09 frames dropped unanswered: their source address was over dc09.max_frames_per_s (the panel retries after its ACK timeout).",
            self.dc09_rate_limited.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_dc09_oversized_total",
            "DC-09 frames dropped unanswered: longer than dc09.max_frame_bytes.",
            self.dc09_oversized.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_uplink_dead_lettered_total",
            "Events set aside in the outbox's dead-letter table: too large for any batch the hub accepts.",
            self.uplink_dead_lettered.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_uplink_seq_refused_total",
            "Hub Welcomes whose last sequence number this outbox could not honour without passing its ceiling.",
            self.uplink_seq_refused.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_events_oversized_total",
            "Events refused at intake: larger than uplink.max_event_bytes.",
            self.events_oversized.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_mqtt_retained_ignored_total",
            "MQTT publishes with the retain flag (handled as any publish; nothing is retained).",
            self.mqtt_retained_ignored.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_mqtt_wills_total",
            "MQTT last wills handled as the device's publish after an abnormal close.",
            self.mqtt_wills.load(Relaxed),
        );
        counter(
            "gatehouse_gateway_fire_zone_changes_total",
            "Zone-state changes read from Modbus fire panels.",
            self.fire_zone_changes.load(Relaxed),
        );
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "gatehouse_gateway_outbox_depth",
            "Events in the outbox not yet acknowledged by the hub.",
            self.outbox_depth.load(Relaxed),
        );
        gauge(
            "gatehouse_gateway_mqtt_connections",
            "Open MQTT connections (those still waiting for CONNECT included).",
            self.mqtt_connections.load(Relaxed),
        );
        gauge(
            "gatehouse_gateway_mqtt_awaiting_commit",
            "MQTT publishes waiting for their outbox commit, and so for their PUBACK.",
            self.mqtt_awaiting_commit.load(Relaxed),
        );
        gauge(
            "gatehouse_gateway_mqtt_commit_wait_max_ms",
            "Longest an MQTT publish has waited for its outbox commit since start (ms).",
            self.mqtt_commit_wait_max_ms.load(Relaxed),
        );
        gauge(
            "gatehouse_gateway_uplink_connected",
            "1 while a hub stream is open.",
            self.uplink_connected.load(Relaxed),
        );
        gauge(
            "gatehouse_gateway_uplink_batch_bytes",
            "The byte bound of an uplink batch in force (the hub's announced limit, halved after a refusal).",
            self.uplink_batch_bytes.load(Relaxed),
        );
        gauge(
            "gatehouse_gateway_modbus_devices_offline",
            "Modbus devices currently reported offline.",
            self.modbus_devices_offline.load(Relaxed),
        );
        gauge(
            "gatehouse_gateway_dc09_panels_offline",
            "DC-09 fire panels silent past their supervision interval.",
            self.dc09_panels_offline.load(Relaxed),
        );
        self.dc09_conns.render(&mut out);
        out
    }
}
