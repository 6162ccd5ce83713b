//! The gateway's OpenTelemetry instruments (exported only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set; see `gatehouse_proto::telemetry`): events in and
//! out, outbox depth, and the uplink's ack latency. The spans are made where the work is:
//! `gateway.mqtt.publish` in the MQTT adapter, `gateway.uplink.send` in the uplink.

use std::{
    sync::{Arc, OnceLock, atomic::Ordering::Relaxed},
    time::Duration,
};

pub use gatehouse_proto::telemetry::*;
use opentelemetry::metrics::Histogram;

use crate::metrics::{Metrics, RejectReason};

static ACK_LATENCY: OnceLock<Histogram<f64>> = OnceLock::new();

/// Registers the gateway's instruments, reading the same counters as `/metrics`. Does
/// nothing when export is off.
pub fn register(metrics: &Arc<Metrics>) {
    if !enabled() {
        return;
    }
    let meter = meter("gatehouse-gateway");
    let m = metrics.clone();
    meter
        .u64_observable_counter("gatehouse.gateway.events.in")
        .with_description("Events appended to the outbox (translated from devices).")
        .with_callback(move |o| o.observe(m.outbox_appended.load(Relaxed), &[]))
        .build();
    let m = metrics.clone();
    meter
        .u64_observable_counter("gatehouse.gateway.events.out")
        .with_description("Events the hub acknowledged as committed.")
        .with_callback(move |o| o.observe(m.uplink_acked.load(Relaxed), &[]))
        .build();
    let m = metrics.clone();
    meter
        .u64_observable_counter("gatehouse.gateway.events.rejected")
        .with_description("MQTT publishes rejected (any reason).")
        .with_callback(move |o| {
            for reason in RejectReason::ALL {
                o.observe(m.rejected(reason), &[attr("reason", reason.as_str())]);
            }
        })
        .build();
    let m = metrics.clone();
    meter
        .u64_observable_gauge("gatehouse.gateway.outbox.depth")
        .with_description("Events in the outbox not yet acknowledged by the hub.")
        .with_callback(move |o| o.observe(m.outbox_depth.load(Relaxed), &[]))
        .build();
    let _ = ACK_LATENCY.set(
        meter
            .f64_histogram("gatehouse.gateway.uplink.ack_latency")
            .with_unit("s")
            .with_description("From sending a batch to the hub's Ack of it (committed).")
            .with_boundaries(vec![0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0])
            .build(),
    );
}

/// Records one batch's send-to-Ack time (when export is on).
pub fn record_ack_latency(took: Duration) {
    if let Some(h) = ACK_LATENCY.get() {
        h.record(took.as_secs_f64(), &[]);
    }
}
