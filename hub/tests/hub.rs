//! The hub on loopback: real gRPC streams, real HTTP, real SQLite in a temporary directory.

mod common;

use std::path::Path;
use std::time::Duration;

use gatehouse_hub::{HubConfig, RunningHub};
use gatehouse_proto::gateway_link_client::GatewayLinkClient;
use gatehouse_proto::{
    DeviceStatus, DoorEvent, DoorEventType, Downlink, Event, EventBatch, Heartbeat, Hello, PointReading, Quality,
    Uplink, Welcome, downlink, event::Body, uplink,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

const WAIT: Duration = Duration::from_secs(10);
const GW: &str = "gw-1";
const ESTATE: &str = "estate-a";

fn config(db: &Path, extra: &str) -> HubConfig {
    common::with_admin(
        HubConfig::from_toml(&format!(
            r#"
[hub]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
database = "{}"
hub_id = "hub-test"

[tls]
plaintext = true

[[gateways]]
id = "gw-1"
estate = "estate-a"

[[estates]]
id = "estate-a"
name = "Riverside Gardens"
timezone = "Asia/Shanghai"

[[estates]]
id = "estate-b"
name = "Hillside Court"
{extra}
"#,
            common::db::database_url(db)
        ))
        .expect("test configuration is valid"),
    )
}

async fn start(db: &Path) -> RunningHub {
    start_with(db, "").await
}

async fn start_with(db: &Path, extra: &str) -> RunningHub {
    gatehouse_hub::start(config(db, extra)).await.expect("hub starts")
}

async fn channel(hub: &RunningHub) -> Channel {
    Endpoint::from_shared(format!("http://{}", hub.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connects")
}

/// One gateway's open stream.
struct Link {
    tx: mpsc::Sender<Uplink>,
    rx: Streaming<Downlink>,
}

impl Link {
    async fn send(&self, msg: uplink::Msg) {
        self.tx.send(Uplink { msg: Some(msg) }).await.unwrap();
    }

    async fn next(&mut self) -> Result<Option<Downlink>, Status> {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("downlink answers in time")
    }

    async fn batch(&mut self, events: Vec<Event>) -> u64 {
        self.send(uplink::Msg::Events(EventBatch { events })).await;
        match self.next().await {
            Ok(Some(Downlink {
                msg: Some(downlink::Msg::Ack(ack)),
            })) => ack.through_seq,
            other => panic!("expected an Ack, got {other:?}"),
        }
    }
}

fn hello(gateway: &str, estate: &str) -> uplink::Msg {
    uplink::Msg::Hello(Hello {
        gateway_id: gateway.into(),
        estate_id: estate.into(),
        software_version: "0.1.0-test".into(),
        devices: vec![],
        ..Default::default()
    })
}

/// Opens a stream whose first message is `first`; the result of the call itself.
async fn open(hub: &RunningHub, first: uplink::Msg) -> Result<Link, Status> {
    let (tx, rx) = mpsc::channel(16);
    tx.send(Uplink { msg: Some(first) }).await.unwrap();
    let mut client = GatewayLinkClient::new(channel(hub).await);
    let response = tokio::time::timeout(WAIT, client.connect(ReceiverStream::new(rx)))
        .await
        .expect("Connect answers in time")?;
    Ok(Link {
        tx,
        rx: response.into_inner(),
    })
}

async fn connect(hub: &RunningHub, gateway: &str) -> (Link, Welcome) {
    let mut link = open(hub, hello(gateway, ESTATE)).await.expect("Hello accepted");
    match link.next().await {
        Ok(Some(Downlink {
            msg: Some(downlink::Msg::Welcome(w)),
        })) => (link, w),
        other => panic!("expected Welcome, got {other:?}"),
    }
}

fn event(seq: u64, device: &str, body: Body) -> Event {
    Event {
        event_id: format!("ev-{seq}"),
        seq,
        gateway_id: GW.into(),
        estate_id: ESTATE.into(),
        device_id: device.into(),
        area: "main gate".into(),
        occurred_at_ms: gatehouse_proto::now_ms(),
        received_at_ms: gatehouse_proto::now_ms(),
        body: Some(body),
        ..Default::default()
    }
}

fn forced(seq: u64, door: &str) -> Event {
    event(
        seq,
        "door-1",
        Body::Door(DoorEvent {
            r#type: DoorEventType::Forced as i32,
            door: door.into(),
            seconds: 0,
        }),
    )
}

fn reading(seq: u64, point: &str, value: f64) -> Event {
    event(
        seq,
        "plc-1",
        Body::Point(PointReading {
            point: point.into(),
            value,
            quality: Quality::Good as i32,
            ..Default::default()
        }),
    )
}

async fn get(hub: &RunningHub, path: &str) -> (u16, Value) {
    let r = common::admin_client()
        .get(format!("http://{}{path}", hub.http_addr()))
        .send()
        .await
        .expect("HTTP answers");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

async fn post(hub: &RunningHub, path: &str, body: &str) -> (u16, Value) {
    let r = common::admin_client()
        .post(format!("http://{}{path}", hub.http_addr()))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("HTTP answers");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

async fn alarms(hub: &RunningHub, query: &str) -> Vec<Value> {
    let (status, body) = get(hub, &format!("/api/v1/alarms{query}")).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("a JSON array").clone()
}

async fn metric(hub: &RunningHub, name: &str) -> f64 {
    let (status, body) = get(hub, "/metrics").await;
    assert_eq!(status, 200);
    let text = body.as_str().expect("metrics are text");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("metric {name} missing in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn forced_door_event_raises_unacknowledged_p2_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("data/hub.db")).await;
    let (mut link, welcome) = connect(&hub, GW).await;
    assert_eq!(welcome.last_seq, 0);
    assert_eq!(welcome.hub_id, "hub-test");
    assert_eq!(welcome.heartbeat_interval_ms, 5000);

    assert_eq!(link.batch(vec![forced(1, "D1")]).await, 1);

    let list = alarms(&hub, "").await;
    assert_eq!(list.len(), 1, "{list:?}");
    let a = &list[0];
    assert_eq!(a["priority"], "P2");
    assert_eq!(a["category"], "security");
    assert_eq!(a["condition"], "door_forced:D1");
    assert_eq!(a["estate"], ESTATE);
    assert_eq!(a["device"], "door-1");
    assert_eq!(a["gateway"], GW);
    assert_eq!(a["area"], "main gate");
    assert_eq!(a["active"], true);
    assert_eq!(a["acknowledged"], false);
    assert_eq!(a["latched"], true);
    assert_eq!(a["activations"], 1);
    assert!(a["raised_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(a["acked_at"], Value::Null);
    hub.shutdown().await;
}

#[tokio::test]
async fn resent_batch_is_acked_again_but_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let (mut link, _) = connect(&hub, GW).await;
    let batch = vec![forced(1, "D1"), reading(2, "temp", 20.0)];
    assert_eq!(link.batch(batch.clone()).await, 2);
    assert_eq!(link.batch(batch).await, 2, "a duplicate batch is still acknowledged");

    let list = alarms(&hub, "").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["activations"], 1, "duplicates change no alarm");
    assert_eq!(metric(&hub, "gatehouse_hub_events_ingested_total").await, 2.0);
    assert_eq!(metric(&hub, "gatehouse_hub_duplicates_dropped_total").await, 2.0);
    assert_eq!(metric(&hub, "gatehouse_hub_batches_committed_total").await, 2.0);

    // A batch overlapping the stored range stores only the new events.
    assert_eq!(link.batch(vec![forced(2, "D1"), forced(3, "D1")]).await, 3);
    assert_eq!(metric(&hub, "gatehouse_hub_events_ingested_total").await, 3.0);
    let list = alarms(&hub, "").await;
    assert_eq!(list[0]["activations"], 2, "the repeat updates the same alarm");
    hub.shutdown().await;
}

#[tokio::test]
async fn reconnect_and_restart_welcome_with_the_stored_last_seq() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let hub = start(&db).await;
    let (mut link, _) = connect(&hub, GW).await;
    assert_eq!(
        link.batch(vec![forced(1, "D1"), forced(2, "D2"), forced(3, "D3")])
            .await,
        3
    );
    link.send(uplink::Msg::Heartbeat(Heartbeat {
        sent_at_ms: gatehouse_proto::now_ms(),
        outbox_depth: 0,
        last_seq: 3,
    }))
    .await;
    drop(link);

    let (_link, welcome) = connect(&hub, GW).await;
    assert_eq!(welcome.last_seq, 3);
    hub.shutdown().await;

    let hub = start(&db).await;
    let (mut link, welcome) = connect(&hub, GW).await;
    assert_eq!(welcome.last_seq, 3, "last_seq survives a restart");
    assert_eq!(alarms(&hub, "?state=active").await.len(), 3);
    // After the restart a resend is still a duplicate, and new events carry on.
    assert_eq!(link.batch(vec![forced(3, "D3"), forced(4, "D4")]).await, 4);
    assert_eq!(metric(&hub, "gatehouse_hub_duplicates_dropped_total").await, 1.0);

    let (status, estates) = get(&hub, "/api/v1/estates").await;
    assert_eq!(status, 200);
    let a = &estates[0];
    assert_eq!(a["id"], ESTATE);
    assert_eq!(a["name"], "Riverside Gardens");
    assert_eq!(a["active_alarms"], 4);
    assert_eq!(a["gateways"][0]["id"], GW);
    assert_eq!(a["gateways"][0]["connected"], true);
    assert_eq!(a["gateways"][0]["last_seq"], 4);
    assert!(a["gateways"][0]["last_seen"].is_string());
    assert_eq!(estates[1]["gateways"], Value::Array(vec![]));
    hub.shutdown().await;
}

#[tokio::test]
async fn operator_ack_over_http_acknowledges_clears_latched_alarm_and_records_history() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let (mut link, _) = connect(&hub, GW).await;
    link.batch(vec![forced(1, "D1")]).await;
    let id = alarms(&hub, "").await[0]["id"].as_i64().unwrap();

    let (status, a) = post(
        &hub,
        &format!("/api/v1/alarms/{id}/ack"),
        r#"{"operator": "alice", "note": "camera shows a delivery"}"#,
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["acknowledged"], true);
    assert_eq!(a["active"], false, "a latched alarm clears when acknowledged");
    assert_eq!(
        a["acked_by"], "test-admin",
        "who acknowledged is the caller, not the body's name"
    );
    assert!(a["acked_at"].is_string());

    let (status, again) = post(&hub, &format!("/api/v1/alarms/{id}/ack"), "").await;
    assert_eq!(status, 409, "{again}");
    assert!(again["error"].is_string());

    let (status, history) = get(&hub, &format!("/api/v1/alarms/{id}/history")).await;
    assert_eq!(status, 200);
    let changes: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["raised", "acknowledged", "cleared"]);
    assert_eq!(history[0]["event"]["gateway"], GW);
    assert_eq!(history[0]["event"]["seq"], 1);
    assert_eq!(history[1]["actor"], "test-admin");
    assert_eq!(history[1]["note"], "camera shows a delivery");

    assert_eq!(alarms(&hub, "?state=standing").await.len(), 0);
    assert_eq!(alarms(&hub, "?state=acknowledged").await.len(), 1);

    // The door is forced again: the same alarm re-raises, unacknowledged again.
    link.batch(vec![forced(2, "D1")]).await;
    let list = alarms(&hub, "?state=unacknowledged&priority=P2&category=security").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["active"], true);
    assert_eq!(list[0]["acked_by"], Value::Null);
    let (_, history) = get(&hub, &format!("/api/v1/alarms/{id}/history")).await;
    assert_eq!(history.as_array().unwrap().last().unwrap()["change"], "reraised");

    let (status, body) = post(&hub, "/api/v1/alarms/999999/ack", "{}").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "alarm not found");
    let (status, body) = post(&hub, "/api/v1/alarms/abc/ack", "{}").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string());
    let (status, body) = post(&hub, &format!("/api/v1/alarms/{id}/ack"), "{not json").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid JSON body");
    let (status, _) = get(&hub, "/api/v1/alarms/999999/history").await;
    assert_eq!(status, 404);
    hub.shutdown().await;
}

#[tokio::test]
async fn unknown_filter_values_are_rejected_with_json_400() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    for query in [
        "?state=open",
        "?priority=P9",
        "?category=weather",
        "?estate=nowhere",
        "?colour=red",
        "?limit=0",
    ] {
        let (status, body) = get(&hub, &format!("/api/v1/alarms{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].is_string(), "{query}: {body}");
        assert!(body.get("detail").is_some(), "{query}: {body}");
    }
    let (status, body) = get(&hub, "/api/v1/nothing").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    hub.shutdown().await;
}

#[tokio::test]
async fn stream_not_opening_with_hello_is_refused_with_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let first = uplink::Msg::Events(EventBatch {
        events: vec![forced(1, "D1")],
    });
    let err = open(&hub, first).await.err().expect("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(alarms(&hub, "").await.is_empty());
    hub.shutdown().await;
}

#[tokio::test]
async fn hello_for_unknown_estate_is_refused_with_failed_precondition() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let err = open(&hub, hello(GW, "estate-z")).await.err().expect("refused");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("estate-z"), "{err}");
    hub.shutdown().await;
}

#[tokio::test]
async fn batch_naming_another_gateway_closes_the_stream_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let (mut link, _) = connect(&hub, GW).await;
    let mut foreign = forced(1, "D1");
    foreign.gateway_id = "gw-other".into();
    link.send(uplink::Msg::Events(EventBatch {
        events: vec![forced(1, "D1"), foreign],
    }))
    .await;
    let err = link.next().await.expect_err("stream closed with a status");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(alarms(&hub, "").await.is_empty());
    let (_, welcome) = connect(&hub, GW).await;
    assert_eq!(welcome.last_seq, 0);
    hub.shutdown().await;
}

#[tokio::test]
async fn second_stream_of_a_gateway_replaces_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let (mut first, _) = connect(&hub, GW).await;
    let (mut second, _) = connect(&hub, GW).await;
    let err = first.next().await.expect_err("first stream closed");
    assert_eq!(err.code(), Code::Aborted, "{err}");
    assert_eq!(second.batch(vec![forced(1, "D1")]).await, 1);
    assert_eq!(hub.links().connected(), vec![GW.to_owned()]);
    hub.shutdown().await;
}

#[tokio::test]
async fn garbage_bytes_on_the_grpc_port_do_not_disturb_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    for garbage in [
        &b"\x00\x01\x02garbage\xff\xfe\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x08\x00\x00\x00\x00\x00\xde\xad\xbe\xef",
    ] {
        let mut s = tokio::net::TcpStream::connect(hub.grpc_addr()).await.unwrap();
        s.write_all(garbage).await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    }
    // A connection that says nothing and goes away.
    drop(tokio::net::TcpStream::connect(hub.grpc_addr()).await.unwrap());

    let (mut link, _) = connect(&hub, GW).await;
    assert_eq!(link.batch(vec![forced(1, "D1")]).await, 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn health_check_reports_gateway_link_serving_and_reflection_lists_it() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let mut health = HealthClient::new(channel(&hub).await);
    for service in ["", "gatehouse.v1.GatewayLink"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "service {service:?}");
    }

    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(channel(&hub).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let response = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("expected a service list")
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"gatehouse.v1.GatewayLink"), "{names:?}");
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(channel(&hub).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let response = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("expected a service list")
        };
        assert!(list.service.iter().any(|s| s.name == "gatehouse.v1.GatewayLink"));
    }

    let (status, body) = get(&hub, "/healthz").await;
    assert_eq!((status, body), (200, Value::String("ok".into())));
    let (status, _) = get(&hub, "/readyz").await;
    assert_eq!(status, 200);
    hub.shutdown().await;
}

#[tokio::test]
async fn low_pressure_held_past_the_on_delay_raises_without_a_new_reading() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_with(
        &dir.path().join("hub.db"),
        r#"
[[rules.points]]
point = "outlet_pressure"
low = 0.25
deadband = 0.02
delay_s = 1
priority = "P3"

[[rules.points]]
point = "pump1_fault"
when = true
priority = "P3"
"#,
    )
    .await;
    let (mut link, _) = connect(&hub, GW).await;
    link.batch(vec![reading(1, "outlet_pressure", 0.2), reading(2, "pump1_fault", 1.0)])
        .await;
    let list = alarms(&hub, "").await;
    assert_eq!(list.len(), 1, "only the state rule fires at once: {list:?}");
    assert_eq!(list[0]["condition"], "point:pump1_fault:state");
    assert_eq!(list[0]["category"], "plant");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let list = alarms(&hub, "?priority=P3&state=active").await;
        if let Some(a) = list.iter().find(|a| a["condition"] == "point:outlet_pressure:low") {
            assert_eq!(a["value"], 0.2);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "on-delay never fired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Back within the deadband: still active; past it: cleared.
    link.batch(vec![
        reading(3, "outlet_pressure", 0.26),
        reading(4, "pump1_fault", 0.0),
    ])
    .await;
    assert_eq!(alarms(&hub, "?state=active").await.len(), 1);
    link.batch(vec![reading(5, "outlet_pressure", 0.3)]).await;
    assert_eq!(alarms(&hub, "?state=active").await.len(), 0);
    hub.shutdown().await;
}

#[tokio::test]
async fn device_offline_raises_p4_and_online_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let (mut link, _) = connect(&hub, GW).await;
    let status = |seq, online| {
        event(
            seq,
            "cam-1",
            Body::Status(DeviceStatus {
                online,
                reason: String::new(),
            }),
        )
    };
    link.batch(vec![status(1, false)]).await;
    let list = alarms(&hub, "?state=active&priority=P4&category=device").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["condition"], "offline");
    link.batch(vec![status(2, true)]).await;
    assert!(alarms(&hub, "?state=active").await.is_empty());
    assert_eq!(
        alarms(&hub, "?state=standing").await.len(),
        1,
        "cleared but unacknowledged"
    );
    hub.shutdown().await;
}
