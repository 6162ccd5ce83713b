//! OpenTelemetry end to end: an OTLP receiver runs in this process (the collector's gRPC
//! TraceService and MetricsService from opentelemetry-proto, served by tonic on a port chosen
//! at run time); the gateway and the hub run in-process with export pointed at it. A forced
//! door must yield ONE connected trace: the device message at the gateway, the uplink, the
//! hub's ingest and its alarm.
//!
//! The tracing subscriber is global, so this file is its own test binary with one test.

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{eventually, find_alarm, hub};
use gatehouse_proto::telemetry;
use gatehouse_sim::scenario::{EstateSpec, start_estate};
use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::any_value::Value as AnyValue,
    trace::v1::Span,
};
use tonic::{Request, Response, Status};

/// What the receiver was sent.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    metrics: Arc<Mutex<HashSet<String>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut names = self.metrics.lock().unwrap();
        for rm in request.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                names.extend(sm.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            AnyValue::BoolValue(b) => Some(b.to_string()),
            other => Some(format!("{other:?}")),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_door_yields_one_connected_trace_from_the_device_message_to_the_hub_alarm() {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(received.clone()))
        .add_service(MetricsServiceServer::new(received.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    let telemetry = Arc::new(
        telemetry::init_with("gatehouse-e2e", "warn", Some(endpoint), false).expect("telemetry with OTLP export"),
    );
    assert!(telemetry::enabled());

    let dir = tempfile::tempdir().expect("tempdir");
    let estates = [EstateSpec::new("estate-a", "Riverside Gardens")];
    let h = hub(dir.path(), &estates).await;
    let estate = start_estate(estates[0].clone(), h.hub.grpc_addr(), dir.path())
        .await
        .expect("estate");
    gatehouse_gateway::telemetry::register(&estate.gateway.metrics);

    estate.door.forced("main-gate-east").await.expect("publish");
    eventually("the door_forced alarm", Duration::from_secs(20), || {
        find_alarm(&h.base, |a| a["condition"] == "door_forced:main-gate-east")
    })
    .await;

    // Spans end when the hub acknowledges (uplink) and commits (hub): wait for them.
    let spans = eventually("the alarm's trace at the receiver", Duration::from_secs(20), || {
        let (telemetry, received) = (telemetry.clone(), received.clone());
        async move {
            tokio::task::spawn_blocking(move || telemetry.flush())
                .await
                .expect("flush");
            let spans = received.spans.lock().unwrap().clone();
            let alarm = spans.iter().find(|s| {
                s.name == "hub.alarm" && attr(s, "condition").as_deref() == Some("door_forced:main-gate-east")
            })?;
            let trace: Vec<Span> = spans.iter().filter(|s| s.trace_id == alarm.trace_id).cloned().collect();
            let names: HashSet<&str> = trace.iter().map(|s| s.name.as_str()).collect();
            ["gateway.mqtt.publish", "gateway.uplink.send", "hub.ingest", "hub.alarm"]
                .iter()
                .all(|n| names.contains(n))
                .then_some(trace)
        }
    })
    .await;

    // One trace, connected: exactly one root (the device message), every other span's
    // parent is in the same trace, and the chain runs gateway → uplink → hub → alarm.
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let roots: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id.is_empty()).collect();
    assert_eq!(
        roots.len(),
        1,
        "one root span: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert_eq!(roots[0].name, "gateway.mqtt.publish");
    assert_eq!(attr(roots[0], "device").as_deref(), Some("door-main-gate"));
    for s in &spans {
        if !s.parent_span_id.is_empty() {
            assert!(
                by_id.contains_key(s.parent_span_id.as_slice()),
                "span {} has its parent in the trace",
                s.name
            );
        }
    }
    let parent_name = |s: &Span| by_id.get(s.parent_span_id.as_slice()).map(|p| p.name.clone());
    let find = |name: &str| spans.iter().find(|s| s.name == name).expect(name);
    assert_eq!(
        parent_name(find("gateway.uplink.send")).as_deref(),
        Some("gateway.mqtt.publish")
    );
    assert_eq!(parent_name(find("hub.ingest")).as_deref(), Some("gateway.uplink.send"));
    assert_eq!(parent_name(find("hub.alarm")).as_deref(), Some("hub.ingest"));
    assert_eq!(attr(find("hub.ingest"), "committed").as_deref(), Some("true"));

    // Metrics go the same way.
    let t = telemetry.clone();
    tokio::task::spawn_blocking(move || t.flush()).await.expect("flush");
    let names = received.metrics.lock().unwrap().clone();
    for metric in [
        "gatehouse.gateway.events.in",
        "gatehouse.gateway.outbox.depth",
        "gatehouse.hub.events.in",
        "gatehouse.hub.alarms",
    ] {
        assert!(names.contains(metric), "metric {metric} exported: {names:?}");
    }
}
