//! Synthetic gateways for the board's load figures: each one is a real `GatewayLink.Connect`
//! stream (Hello, batches, the hub's Acks, heartbeats), as the load tooling's
//! `--via grpc` streams are, sending the alarm-raising events a test asks for.

use std::time::Duration;

use gatehouse_proto::{self as pb, downlink, event::Body, gateway_link_client::GatewayLinkClient, uplink};
use tokio::{sync::mpsc, task::JoinHandle};

/// Door controllers of every synthetic gateway.
pub const DOORS: [&str; 2] = ["door-a", "door-b"];
/// The barrier of every synthetic gateway.
pub const BARRIER: &str = "barrier-1";
/// The fire panel of every synthetic gateway.
pub const PANEL: &str = "fire-panel-1";

/// One connected synthetic gateway.
pub struct SynthGateway {
    pub gateway: String,
    pub estate: String,
    tx: mpsc::Sender<pb::Uplink>,
    seq: u64,
    acks: mpsc::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl SynthGateway {
    /// Connects to the hub's gRPC port and says Hello with its devices.
    pub async fn connect(grpc: std::net::SocketAddr, estate: &str) -> anyhow::Result<SynthGateway> {
        let gateway = format!("gw-{estate}");
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await?;
        let mut client = GatewayLinkClient::new(channel);
        let (tx, rx) = mpsc::channel::<pb::Uplink>(64);
        let device = |id: &str, kind: pb::DeviceKind| pb::DeviceInfo {
            device_id: id.into(),
            kind: kind as i32,
            area: "main-gate".into(),
        };
        let mut devices: Vec<pb::DeviceInfo> = DOORS.iter().map(|d| device(d, pb::DeviceKind::Door)).collect();
        devices.push(device(BARRIER, pb::DeviceKind::Door));
        devices.push(device(PANEL, pb::DeviceKind::FirePanel));
        let hello = pb::Hello {
            gateway_id: gateway.clone(),
            estate_id: estate.into(),
            software_version: "board-test".into(),
            devices,
            ..Default::default()
        };
        tx.send(pb::Uplink {
            msg: Some(uplink::Msg::Hello(hello)),
        })
        .await?;
        let mut down = client
            .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let welcome = match tokio::time::timeout(Duration::from_secs(20), down.message()).await {
            Ok(Ok(Some(pb::Downlink {
                msg: Some(downlink::Msg::Welcome(w)),
            }))) => w,
            other => anyhow::bail!("{gateway}: no Welcome: {other:?}"),
        };
        let (ack_tx, acks) = mpsc::channel(1024);
        let reader = tokio::spawn(async move {
            while let Ok(Some(m)) = down.message().await {
                if let Some(downlink::Msg::Ack(a)) = m.msg
                    && ack_tx.send(a.through_seq).await.is_err()
                {
                    break;
                }
            }
        });
        // Heartbeats keep the hub from calling a quiet synthetic gateway silent.
        let hb_tx = tx.clone();
        let every = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms).clamp(1000, 10_000));
        let heart = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let hb = pb::Heartbeat {
                    sent_at_ms: pb::now_ms(),
                    outbox_depth: 0,
                    last_seq: 0,
                };
                if hb_tx
                    .send(pb::Uplink {
                        msg: Some(uplink::Msg::Heartbeat(hb)),
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(SynthGateway {
            gateway,
            estate: estate.into(),
            tx,
            seq: welcome.last_seq,
            acks,
            tasks: vec![reader, heart],
        })
    }

    /// Sends one batch of events and waits for the hub's Ack of all of them (committed).
    pub async fn send(&mut self, bodies: Vec<(&str, pb::DeviceKind, Body)>) -> anyhow::Result<()> {
        let now = pb::now_ms();
        let mut events = Vec::with_capacity(bodies.len());
        for (device, kind, body) in bodies {
            self.seq += 1;
            events.push(pb::Event {
                event_id: format!("{}-{}", self.gateway, self.seq),
                seq: self.seq,
                gateway_id: self.gateway.clone(),
                estate_id: self.estate.clone(),
                device_id: device.into(),
                device_kind: kind as i32,
                area: "main-gate".into(),
                occurred_at_ms: now,
                received_at_ms: now,
                trace_context: Default::default(),
                body: Some(body),
            });
        }
        let through = self.seq;
        self.tx
            .send(pb::Uplink {
                msg: Some(uplink::Msg::Events(pb::EventBatch { events })),
            })
            .await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(30), self.acks.recv()).await {
                Ok(Some(s)) if s >= through => return Ok(()),
                Ok(Some(_)) => continue,
                Ok(None) => anyhow::bail!("{}: the stream ended before the Ack", self.gateway),
                Err(_) => anyhow::bail!("{}: no Ack within 30 s", self.gateway),
            }
        }
    }
}

impl Drop for SynthGateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub fn forced(door: &str) -> Body {
    Body::Door(pb::DoorEvent {
        r#type: pb::DoorEventType::Forced as i32,
        door: door.into(),
        seconds: 0,
    })
}

pub fn held_open(door: &str) -> Body {
    Body::Door(pb::DoorEvent {
        r#type: pb::DoorEventType::HeldOpen as i32,
        door: door.into(),
        seconds: 120,
    })
}

pub fn unregistered_vehicle(lane: &str) -> Body {
    Body::Vehicle(pb::VehicleEvent {
        lane: lane.into(),
        plate: String::new(),
        direction: pb::Direction::In as i32,
        resident: false,
        pass: String::new(),
    })
}

pub fn fire(zone: &str) -> Body {
    Body::Fire(pb::FireEvent {
        r#type: pb::FireEventType::FireAlarm as i32,
        zone: zone.into(),
        text: format!("zone {zone} smoke detector"),
        ..Default::default()
    })
}
