//! Logs, traces and metrics for the gateway and the hub (docs/design.md, Observability), in one place.
//!
//! - Logs: `tracing` to stderr, filtered by `RUST_LOG`.
//! - OpenTelemetry: traces and metrics over OTLP/gRPC (through our own tonic) when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and nothing at all when it is not: no exporter,
//!   no layer, and [`enabled`] stays false, so the hot paths skip creating spans and
//!   carrying contexts (one relaxed atomic load per event).
//! - The W3C trace context of an event travels inside the event
//!   (`Event.trace_context`, `traceparent`/`tracestate`): [`inject`] writes a span's context
//!   into it, [`parent_of`] reads it back on the other side, so one trace runs from the
//!   device message through the gateway's uplink to the hub's alarm.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering::Relaxed},
    time::Duration,
};

use opentelemetry::{
    KeyValue,
    propagation::TextMapPropagator,
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    Resource, metrics::SdkMeterProvider, propagation::TraceContextPropagator, trace::SdkTracerProvider,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::filter_fn, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

/// The environment variable that turns OpenTelemetry export on.
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether OpenTelemetry export is on in this process. Hot paths check this before they
/// create a span or touch a trace context.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Why OpenTelemetry export could not be set up.
#[derive(Debug)]
pub enum TelemetryError {
    Exporter(String),
    Subscriber(String),
}

impl std::error::Error for TelemetryError {}

impl std::fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TelemetryError::Exporter(e) => write!(f, "building the OTLP exporter: {e}"),
            TelemetryError::Subscriber(e) => write!(f, "installing the tracing subscriber: {e}"),
        }
    }
}

/// What [`init`] set up; flushes and stops the exporters when dropped (or on
/// [`Telemetry::shutdown`]). Keep it alive for the life of the process.
#[derive(Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Whether this set up OTLP export.
    pub fn exporting(&self) -> bool {
        self.tracer.is_some()
    }

    /// Sends every finished span and the current metrics now.
    pub fn flush(&self) {
        if let Some(t) = &self.tracer
            && let Err(e) = t.force_flush()
        {
            tracing::warn!(error = %e, "flushing spans failed");
        }
        if let Some(m) = &self.meter
            && let Err(e) = m.force_flush()
        {
            tracing::warn!(error = %e, "flushing metrics failed");
        }
    }

    /// Flushes and stops the exporters.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        ENABLED.store(false, Relaxed);
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown();
        }
        if let Some(m) = self.meter.take() {
            let _ = m.shutdown();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Logs to stderr (`RUST_LOG`, else `default_filter`), plus OTLP export of traces and
/// metrics when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Call once, inside a Tokio runtime
/// (the OTLP client is tonic). A bad exporter setting is reported and export stays off:
/// observability never stops a gateway or a hub.
pub fn init(service: &'static str, default_filter: &str) -> Telemetry {
    let endpoint = std::env::var(ENDPOINT_ENV).ok().filter(|e| !e.trim().is_empty());
    match init_with(service, default_filter, endpoint.clone(), true) {
        Ok(t) => t,
        Err(e) => {
            // The subscriber may not be installed: print as well.
            eprintln!("{service}: OpenTelemetry export is off: {e}");
            let _ = init_with(service, default_filter, None, true);
            Telemetry::default()
        }
    }
}

/// [`init`] with the OTLP endpoint given (`None`: no export). With `fmt` false, no log
/// output (tests that only want traces). Fails if a global subscriber is already set.
pub fn init_with(
    service: &'static str,
    default_filter: &str,
    endpoint: Option<String>,
    fmt: bool,
) -> Result<Telemetry, TelemetryError> {
    let env_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt_layer = fmt.then(|| tracing_subscriber::fmt::layer().with_filter(env_filter));
    let Some(endpoint) = endpoint else {
        return tracing_subscriber::registry()
            .with(fmt_layer)
            .try_init()
            .map(|()| Telemetry::default())
            .map_err(|e| TelemetryError::Subscriber(e.to_string()));
    };
    let resource = Resource::builder().with_service_name(service).build();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let tracer_provider = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_batch_exporter(spans)
        .build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let meter_provider = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_periodic_exporter(metrics)
        .build();
    opentelemetry::global::set_meter_provider(meter_provider.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = tracer_provider.tracer(service);
    // Only our own spans go to the collector: the spans of libraries (h2, tonic, sqlx)
    // would swamp one event's trace.
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter_fn(|meta| {
            meta.target().starts_with("gatehouse") && *meta.level() <= tracing::Level::INFO
        }));
    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    ENABLED.store(true, Relaxed);
    Ok(Telemetry {
        tracer: Some(tracer_provider),
        meter: Some(meter_provider),
    })
}

/// Writes `span`'s W3C trace context (`traceparent`, `tracestate`) into an event's
/// `trace_context`, replacing what was there. Does nothing when export is off.
pub fn inject(span: &tracing::Span, carrier: &mut HashMap<String, String>) {
    if !enabled() {
        return;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    carrier.clear();
    TraceContextPropagator::new().inject_context(&cx, carrier);
}

/// Makes `span` a child of the context carried in an event's `trace_context` (if any).
/// Returns whether it had one.
pub fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) -> bool {
    if carrier.is_empty() || !enabled() {
        return false;
    }
    let cx = TraceContextPropagator::new().extract(carrier);
    if !cx.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(cx).is_ok()
}

/// The trace id (32 hex digits) carried in a `trace_context`, if any; for logs and tests.
pub fn trace_id(carrier: &HashMap<String, String>) -> Option<String> {
    let cx = TraceContextPropagator::new().extract(carrier);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The meter every Gatehouse instrument is made from (a no-op one when export is off).
pub fn meter(name: &'static str) -> opentelemetry::metrics::Meter {
    opentelemetry::global::meter(name)
}

/// An attribute, for instruments.
pub fn attr(key: &'static str, value: impl Into<opentelemetry::Value>) -> KeyValue {
    KeyValue::new(key, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_carried_when_export_is_off() {
        let mut carrier = HashMap::new();
        inject(&tracing::Span::none(), &mut carrier);
        assert!(carrier.is_empty());
        assert!(!set_parent(&tracing::Span::none(), &carrier));
    }

    #[test]
    fn trace_id_is_read_from_a_traceparent() {
        let mut carrier = HashMap::new();
        carrier.insert(
            "traceparent".to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        );
        assert_eq!(trace_id(&carrier).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id(&HashMap::new()), None);
    }
}
