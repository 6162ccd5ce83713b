//! gRPC limits of the hub on loopback (issue 12 §6): a batch over `ingest.max_message_bytes`
//! and a stream over `limits.grpc.max_concurrent_streams` are each refused with a status that
//! says which limit and counted on `/metrics`, while another gateway on its own connection
//! keeps delivering. (Connection caps and the handshake timeout: `limits.rs`.)

mod common;

use std::path::Path;

use common::{Link, WAIT};
use gatehouse_hub::{HubConfig, RunningHub};
use gatehouse_proto::gateway_link_client::GatewayLinkClient;
use gatehouse_proto::{
    DeviceInfo, DoorEvent, DoorEventType, Downlink, Event, EventBatch, Hello, Uplink, downlink, event::Body, uplink,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

fn config(db: &Path, limits: &str) -> HubConfig {
    common::config(db, &format!("{}\n{limits}\n", common::ESTATES_AB))
}

async fn metric(hub: &RunningHub, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", hub.http_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
        .parse()
        .unwrap()
}

fn forced(door: &str) -> Body {
    Body::Door(DoorEvent {
        r#type: DoorEventType::Forced as i32,
        door: door.into(),
        seconds: 0,
    })
}

#[tokio::test]
async fn a_batch_over_max_message_bytes_is_refused_out_of_range_and_counted_while_another_gateway_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let hub = gatehouse_hub::start(config(
        &dir.path().join("hub.db"),
        "[ingest]\nmax_message_bytes = 65536",
    ))
    .await
    .expect("hub starts");
    let mut big = Link::connect(&hub, "gw-1", "estate-a", &["door-1"]).await;
    let mut other = Link::connect(&hub, "gw-2", "estate-b", &["door-9"]).await;
    other.send(vec![("door-9", "side gate", forced("side gate"))]).await;

    let status = big
        .send_seqs(&[1], forced(&"x".repeat(100 * 1024)))
        .await
        .expect_err("the hub refuses the batch");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("too_large") && status.message().contains("65536"),
        "the status names the limit: {}",
        status.message()
    );

    // The other gateway's stream goes on; the refused gateway reconnects and delivers a
    // batch under the limit.
    other.send(vec![("door-9", "side gate", forced("side gate"))]).await;
    let mut again = Link::connect(&hub, "gw-1", "estate-a", &["door-1"]).await;
    again.send(vec![("door-1", "main gate", forced("main gate"))]).await;
    assert_eq!(
        metric(&hub, "gatehouse_hub_batches_rejected_total{reason=\"too_large\"}").await,
        1.0
    );
    hub.shutdown().await;
}

/// A `GatewayLink.Connect` stream on `channel` (one HTTP/2 connection shared by every call
/// on it): Welcome received, or the status the hub answered.
struct RawLink {
    tx: mpsc::Sender<Uplink>,
    rx: tonic::Streaming<Downlink>,
    gateway: String,
    estate: String,
    seq: u64,
}

async fn open_on(channel: &Channel, gateway: &str, estate: &str) -> Result<RawLink, tonic::Status> {
    let (tx, rx) = mpsc::channel(16);
    tx.send(Uplink {
        msg: Some(uplink::Msg::Hello(Hello {
            gateway_id: gateway.into(),
            estate_id: estate.into(),
            software_version: "test".into(),
            devices: vec![DeviceInfo {
                device_id: "door-1".into(),
                kind: 0,
                area: "main gate".into(),
            }],
            last_seq: 0,
            outbox_depth: 0,
        })),
    })
    .await
    .unwrap();
    let mut rx = tokio::time::timeout(
        WAIT,
        GatewayLinkClient::new(channel.clone()).connect(ReceiverStream::new(rx)),
    )
    .await
    .expect("the hub answers the call")?
    .into_inner();
    let welcome = tokio::time::timeout(WAIT, rx.message())
        .await
        .expect("Welcome in time")?;
    let seq = match welcome.and_then(|w| w.msg) {
        Some(downlink::Msg::Welcome(w)) => w.last_seq,
        other => panic!("expected Welcome, got {other:?}"),
    };
    Ok(RawLink {
        tx,
        rx,
        gateway: gateway.into(),
        estate: estate.into(),
        seq,
    })
}

impl RawLink {
    /// One event, acknowledged.
    async fn deliver(&mut self) {
        self.seq += 1;
        let event = Event {
            event_id: format!("{}-ev-{}", self.gateway, self.seq),
            seq: self.seq,
            gateway_id: self.gateway.clone(),
            estate_id: self.estate.clone(),
            device_id: "door-1".into(),
            area: "main gate".into(),
            body: Some(forced("main gate")),
            ..Default::default()
        };
        self.tx
            .send(Uplink {
                msg: Some(uplink::Msg::Events(EventBatch { events: vec![event] })),
            })
            .await
            .unwrap();
        match tokio::time::timeout(WAIT, self.rx.message()).await.unwrap() {
            Ok(Some(Downlink {
                msg: Some(downlink::Msg::Ack(a)),
            })) => assert_eq!(a.through_seq, self.seq),
            other => panic!("expected an Ack, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_stream_over_max_concurrent_streams_is_refused_resource_exhausted_and_counted_while_others_flow() {
    let dir = tempfile::tempdir().unwrap();
    let hub = gatehouse_hub::start(config(
        &dir.path().join("hub.db"),
        "[limits.grpc]\nmax_concurrent_streams = 2",
    ))
    .await
    .expect("hub starts");
    let shared = Endpoint::from_shared(format!("http://{}", hub.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut first = open_on(&shared, "gw-1", "estate-a").await.expect("first stream");
    let second = open_on(&shared, "gw-2", "estate-b").await.expect("second stream");

    // A third stream on the same connection: refused, with the limit in the status.
    let status = open_on(&shared, "gw-3", "estate-a")
        .await
        .err()
        .expect("the third stream is refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("max_concurrent_streams") && status.message().contains("at most 2"),
        "{}",
        status.message()
    );

    // Meanwhile: the admitted streams flow, and so does a gateway on its own connection.
    first.deliver().await;
    let mut own = Link::connect(&hub, "gw-4", "estate-b", &["door-4"]).await;
    own.send(vec![("door-4", "back gate", forced("back gate"))]).await;

    // A stream that ends frees its place on the connection.
    drop(second);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut third = loop {
        match open_on(&shared, "gw-3", "estate-a").await {
            Ok(l) => break l,
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                assert!(tokio::time::Instant::now() < deadline, "the place never came back");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(s) => panic!("unexpected status {s:?}"),
        }
    };
    third.deliver().await;
    first.deliver().await;
    assert!(metric(&hub, "gatehouse_hub_grpc_streams_refused_total").await >= 1.0);
    hub.shutdown().await;
}
