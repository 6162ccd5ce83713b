//! The pieces the hub's integration tests share: a gateway stream played by hand over real
//! gRPC, and HTTP calls against the running hub.

#![allow(dead_code)]

pub mod db;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_hub::{HubConfig, ManualClock, RunningHub};
use gatehouse_proto::gateway_link_client::GatewayLinkClient;
use gatehouse_proto::{
    CommandResult, DeviceInfo, DeviceKind, Downlink, Event, EventBatch, Heartbeat, Hello, Uplink, downlink,
    event::Body, uplink,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Endpoint;

pub const WAIT: Duration = Duration::from_secs(10);

/// Estate A, as most tests configure it.
pub const ESTATE_A: &str = "[[estates]]\nid = \"estate-a\"\nname = \"Riverside Gardens\"\n";
/// Estates A and B.
pub const ESTATES_AB: &str = "[[estates]]\nid = \"estate-a\"\nname = \"Riverside Gardens\"\n\n[[estates]]\nid = \"estate-b\"\nname = \"Hillside Court\"\n";

/// The bearer token of `test-admin`, an admin of every estate, configured by [`config`]
/// and sent by [`http`].
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The gateways the tests play, by estate: each is listed in `[[gateways]]` when `rest`
/// defines its estate.
pub const TEST_GATEWAYS: &[(&str, &str)] = &[
    ("gw-1", "estate-a"),
    ("gw-a", "estate-a"),
    ("gw-2", "estate-b"),
    ("gw-b", "estate-b"),
    ("gw-3", "estate-a"),
    ("gw-4", "estate-b"),
];

/// A test hub's configuration: both listeners on loopback ports chosen at run time, gRPC in
/// plaintext (loopback), its database at `db` (SQLite) or a fresh one on PostgreSQL (`db.rs`), the [`TEST_GATEWAYS`] of its estates,
/// then `rest` (estates and any other sections), then the `[[api_tokens]]` entry of
/// [`ADMIN_TOKEN`].
pub fn config(db: &Path, rest: &str) -> HubConfig {
    let gateways: String = TEST_GATEWAYS
        .iter()
        .filter(|(_, estate)| rest.contains(&format!("id = \"{estate}\"")))
        .map(|(id, estate)| format!("[[gateways]]\nid = \"{id}\"\nestate = \"{estate}\"\n\n"))
        .collect();
    HubConfig::from_toml(&format!(
        "[hub]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\nhub_id = \"hub-test\"\n\n[tls]\nplaintext = true\n\n{gateways}{rest}",
        db::database_url(db),
    ))
    .map(with_admin)
    .expect("test configuration is valid")
}

/// A configuration plus the `[[api_tokens]]` entry of [`ADMIN_TOKEN`] (`test-admin`, all estates).
pub fn with_admin(mut config: HubConfig) -> HubConfig {
    config.api_tokens.push(gatehouse_hub::auth::ApiTokenConfig {
        name: "test-admin".into(),
        role: gatehouse_hub::auth::Role::Admin,
        token_sha256: gatehouse_hub::auth::token_sha256(ADMIN_TOKEN),
        regions: Default::default(),
        estates: Default::default(),
    });
    config
}

/// An HTTP client that sends [`ADMIN_TOKEN`] with every request.
pub fn admin_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {ADMIN_TOKEN}")).unwrap(),
    );
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

/// Starts a hub on `config` whose clock stands still at `t0` until the test moves it.
pub async fn start_at(config: HubConfig, clock: &ManualClock) -> RunningHub {
    gatehouse_hub::start_with_clock(config, Arc::new(clock.clone()))
        .await
        .expect("hub starts")
}

/// One gateway's `GatewayLink.Connect` stream, numbering its events from the hub's Welcome.
pub struct Link {
    tx: mpsc::Sender<Uplink>,
    rx: Streaming<Downlink>,
    seq: u64,
    gateway: String,
    estate: String,
}

impl Link {
    /// Says Hello as `gateway` of `estate` with `devices`, and waits for the Welcome.
    pub async fn connect(hub: &RunningHub, gateway: &str, estate: &str, devices: &[&str]) -> Link {
        Self::connect_holding(hub, gateway, estate, devices, 0, 0).await
    }

    /// [`Link::connect`], saying in Hello that the gateway's outbox holds `outbox_depth`
    /// events up to `last_seq`.
    pub async fn connect_holding(
        hub: &RunningHub,
        gateway: &str,
        estate: &str,
        devices: &[&str],
        last_seq: u64,
        outbox_depth: u64,
    ) -> Link {
        let devices: Vec<(&str, DeviceKind)> = devices.iter().map(|d| (*d, DeviceKind::Unspecified)).collect();
        Self::open(hub, gateway, estate, &devices, last_seq, outbox_depth).await
    }

    /// [`Link::connect`] announcing each device with its kind.
    pub async fn connect_kinds(hub: &RunningHub, gateway: &str, estate: &str, devices: &[(&str, DeviceKind)]) -> Link {
        Self::open(hub, gateway, estate, devices, 0, 0).await
    }

    async fn open(
        hub: &RunningHub,
        gateway: &str,
        estate: &str,
        devices: &[(&str, DeviceKind)],
        last_seq: u64,
        outbox_depth: u64,
    ) -> Link {
        let channel = Endpoint::from_shared(format!("http://{}", hub.grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(16);
        let devices = devices
            .iter()
            .map(|(d, kind)| DeviceInfo {
                device_id: (*d).into(),
                kind: *kind as i32,
                area: "main gate".into(),
            })
            .collect();
        tx.send(Uplink {
            msg: Some(uplink::Msg::Hello(Hello {
                gateway_id: gateway.into(),
                estate_id: estate.into(),
                software_version: "test".into(),
                devices,
                last_seq,
                outbox_depth,
            })),
        })
        .await
        .unwrap();
        let mut rx = GatewayLinkClient::new(channel)
            .connect(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let welcome = tokio::time::timeout(WAIT, rx.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let last = match welcome.msg {
            Some(downlink::Msg::Welcome(w)) => w.last_seq,
            other => panic!("expected Welcome, got {other:?}"),
        };
        Link {
            tx,
            rx,
            seq: last,
            gateway: gateway.into(),
            estate: estate.into(),
        }
    }

    /// Sends `(device, area, body)` events as one batch and waits for the Ack: they are
    /// committed.
    pub async fn send(&mut self, items: Vec<(&str, &str, Body)>) {
        self.send_at(items.into_iter().map(|(d, a, b)| (d, a, 0, b)).collect())
            .await;
    }

    /// [`Link::send`] with each event's `occurred_at_ms`.
    pub async fn send_at(&mut self, items: Vec<(&str, &str, i64, Body)>) {
        let events = items
            .into_iter()
            .map(|(device, area, occurred_at_ms, body)| {
                self.seq += 1;
                Event {
                    event_id: format!("ev-{}", self.seq),
                    seq: self.seq,
                    gateway_id: self.gateway.clone(),
                    estate_id: self.estate.clone(),
                    device_id: device.into(),
                    area: area.into(),
                    occurred_at_ms,
                    body: Some(body),
                    ..Default::default()
                }
            })
            .collect();
        self.tx
            .send(Uplink {
                msg: Some(uplink::Msg::Events(EventBatch { events })),
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

    /// The sequence number the next event of [`Link::send`] follows.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Sends one batch of events numbered `seqs` (hand-picked, however implausible) and
    /// returns the hub's next downlink message, or the status it closed the stream with.
    pub async fn send_seqs(&mut self, seqs: &[u64], body: Body) -> Result<Option<Downlink>, tonic::Status> {
        let events = seqs
            .iter()
            .map(|seq| Event {
                event_id: format!("ev-{seq}"),
                seq: *seq,
                gateway_id: self.gateway.clone(),
                estate_id: self.estate.clone(),
                device_id: "door-1".into(),
                area: "main gate".into(),
                body: Some(body.clone()),
                ..Default::default()
            })
            .collect();
        self.tx
            .send(Uplink {
                msg: Some(uplink::Msg::Events(EventBatch { events })),
            })
            .await
            .map_err(|_| tonic::Status::cancelled("uplink closed"))?;
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("no answer"))?
    }

    /// The next downlink message, or the status the stream closed with.
    pub async fn next(&mut self) -> Result<Option<Downlink>, tonic::Status> {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("no answer"))?
    }

    /// A heartbeat saying the outbox holds `outbox_depth` events up to `last_seq`.
    pub async fn heartbeat_holding(&self, last_seq: u64, outbox_depth: u64) {
        self.tx
            .send(Uplink {
                msg: Some(uplink::Msg::Heartbeat(Heartbeat {
                    sent_at_ms: 0,
                    outbox_depth,
                    last_seq,
                })),
            })
            .await
            .unwrap();
    }

    /// Answers a command as the gateway would.
    pub async fn command_result(&self, result: CommandResult) {
        self.tx
            .send(Uplink {
                msg: Some(uplink::Msg::CommandResult(result)),
            })
            .await
            .unwrap();
    }

    pub async fn heartbeat(&self) {
        self.tx
            .send(Uplink {
                msg: Some(uplink::Msg::Heartbeat(Heartbeat::default())),
            })
            .await
            .unwrap();
    }
}

/// `method path` with an optional JSON body; the status and the JSON answer (Null if none).
pub async fn http(hub: &RunningHub, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("http://{}{path}", hub.http_addr());
    let client = admin_client();
    let req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().await.expect("HTTP answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `GET path`, which must answer 200.
pub async fn get(hub: &RunningHub, path: &str) -> Value {
    let (status, body) = http(hub, "GET", path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Polls `check` until it holds; fails naming `what` after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One series of the hub's `/metrics`, or 0 while the hub has not shown it yet (a labelled
/// series appears with its first count).
pub async fn metric_or_zero(hub: &RunningHub, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", hub.http_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// One series of the hub's `/metrics`.
pub async fn metric(hub: &RunningHub, series: &str) -> f64 {
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

/// An https server on 127.0.0.1 serving `app` (tokio-rustls + hyper: the certificate is the
/// test's); `on_failed_handshake` runs for each TLS handshake that fails.
pub async fn https_server(
    server: rustls::ServerConfig,
    app: axum::Router,
    on_failed_handshake: impl Fn() + Clone + Send + 'static,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            let app = app.clone();
            let failed = on_failed_handshake.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    failed();
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(tls),
                        hyper_util::service::TowerToHyperService::new(app),
                    )
                    .await;
            });
        }
    });
    addr
}

/// Raises one P3 at estate-a (a pump fault from gateway gw-1's `plc-1`): its incident notifies
/// the roles its policy names.
pub async fn raise_pump_fault(hub: &RunningHub) {
    let mut link = Link::connect(hub, "gw-1", "estate-a", &["plc-1"]).await;
    link.send(vec![(
        "plc-1",
        "pump room",
        Body::Point(gatehouse_proto::PointReading {
            point: "pump1_fault".into(),
            value: 1.0,
            quality: gatehouse_proto::Quality::Good as i32,
            ..Default::default()
        }),
    )])
    .await;
    hub.tick_now().await.unwrap();
}

/// `GET /api/v1/notifications`, as the admin.
pub async fn notifications(hub: &RunningHub) -> Vec<Value> {
    get(hub, "/api/v1/notifications")
        .await
        .as_array()
        .expect("a JSON array")
        .clone()
}
