//! `gatehouse-sim bench`: the machine's limits beside the hub's real ingest, measured one
//! after another in the same run (figures printed, never asserted):
//!
//! 1. transport — raw tonic bidi streaming of the same messages to a `GatewayLink` server
//!    that acknowledges every batch at once and stores nothing;
//! 2. storage — batched SQLite inserts of the same rows through the hub's own statement
//!    (`events::queries::insert_events`), same pragmas (WAL, synchronous FULL);
//! 3. hub — the real `gatehouse-hub` (child process) ingesting the same streams;
//! 4. MQTT — QoS 1 publishes through Mosquitto
//!    on 127.0.0.1:1883 when one answers there (skipped with a note otherwise).

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use gatehouse_hub::{config::DatabaseUrl, events, store};
use gatehouse_proto::{self as pb, downlink, gateway_link_server::GatewayLink, uplink};
use prost::Message as _;
use serde::Serialize;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    load::{self, HubUnderTest},
    scenario::EstateSpec,
};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Synthetic gateway streams (transport and hub phases).
    pub streams: usize,
    /// Events per second offered in total (set above what the hub can take, to find it).
    pub rate: f64,
    pub duration: Duration,
    pub grpc_batch: Duration,
    /// Rows per transaction in the storage phase (the hub's writer groups up to 5,000).
    pub rows_per_commit: usize,
    /// MQTT publishers and messages each.
    pub mqtt_clients: usize,
    pub mqtt_messages: usize,
    pub hub_bin: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub streams: usize,
    pub offered_rate: f64,
    pub duration_s: f64,
    pub transport_events_per_s: f64,
    pub transport_ack_ms: load::Latency,
    pub storage_rows_per_s: f64,
    pub rows_per_commit: usize,
    pub hub_events_per_s: f64,
    pub hub_ack_ms: load::Latency,
    pub hub_cpu_percent: Option<f64>,
    /// The hub's ingest over the lower of the two limits.
    pub hub_share_of_limit: f64,
    pub mqtt_embedded_msgs_per_s: Option<f64>,
    pub mqtt_mosquitto_msgs_per_s: Option<f64>,
    pub notes: Vec<String>,
}

pub async fn run(opts: BenchOptions) -> anyhow::Result<BenchReport> {
    let dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("gatehouse-bench-{}-{}", std::process::id(), pb::now_ms())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut notes = Vec::new();

    // 1. Transport.
    println!(
        "bench 1/4: raw tonic bidi streaming, {} streams, no persistence …",
        opts.streams
    );
    let (url, stop) = null_server().await?;
    let transport = load::blast(&url, opts.streams, opts.rate, opts.duration, opts.grpc_batch).await?;
    stop.cancel();
    let transport_rate = transport.acked_in_window as f64 / transport.window_s;
    println!("  {transport_rate:.0} events/s acknowledged");
    notes.extend(transport.errors.iter().take(3).map(|e| format!("transport: {e}")));

    // 2. Storage.
    println!(
        "bench 2/4: batched SQLite inserts ({} rows per commit) …",
        opts.rows_per_commit
    );
    let storage_rate = storage(&dir.join("storage.db"), opts.rows_per_commit, opts.duration).await?;
    println!("  {storage_rate:.0} rows/s committed");

    // 3. The hub's real ingest.
    println!("bench 3/4: gatehouse-hub ingest, {} streams …", opts.streams);
    let estates: Vec<EstateSpec> = (0..opts.streams)
        .map(|i| EstateSpec::new(&format!("load-{i}"), &format!("Load estate {i}")))
        .collect();
    let mut hub = HubUnderTest::child(opts.hub_bin.as_deref(), &dir, &estates).await?;
    let cpu0 = hub.cpu_s();
    let t0 = Instant::now();
    let ingest = load::blast(&hub.grpc_url, opts.streams, opts.rate, opts.duration, opts.grpc_batch).await?;
    hub.sample()?;
    let hub_cpu_percent = match (cpu0, hub.cpu_s()) {
        (Some(a), Some(b)) => Some((b - a) / t0.elapsed().as_secs_f64() * 100.0),
        _ => None,
    };
    drop(hub);
    let hub_rate = ingest.acked_in_window as f64 / ingest.window_s;
    println!("  {hub_rate:.0} events/s committed and acknowledged");
    notes.extend(ingest.errors.iter().take(3).map(|e| format!("hub: {e}")));
    if ingest.acked_total < ingest.sent {
        notes.push(format!(
            "hub: {} of {} events unacknowledged at the end",
            ingest.sent - ingest.acked_total,
            ingest.sent
        ));
    }

    // 4. MQTT leg.
    println!(
        "bench 4/4: MQTT QoS 1, {} publishers x {} messages …",
        opts.mqtt_clients, opts.mqtt_messages
    );
    let embedded = match embedded_broker().await {
        Ok(addr) => Some(mqtt_leg(addr, opts.mqtt_clients, opts.mqtt_messages).await?),
        Err(e) => {
            notes.push(format!("gateway MQTT leg skipped: {e:#}"));
            None
        }
    };
    let mosquitto_addr: SocketAddr = "127.0.0.1:1883".parse()?;
    let mosquitto =
        match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(mosquitto_addr)).await {
            Ok(Ok(_)) => Some(mqtt_leg(mosquitto_addr, opts.mqtt_clients, opts.mqtt_messages).await?),
            _ => {
                notes.push("no MQTT broker answers on 127.0.0.1:1883: the Mosquitto comparison was skipped".into());
                None
            }
        };
    let _ = std::fs::remove_dir_all(&dir);

    let limit = transport_rate.min(storage_rate);
    Ok(BenchReport {
        streams: opts.streams,
        offered_rate: opts.rate,
        duration_s: opts.duration.as_secs_f64(),
        transport_events_per_s: transport_rate,
        transport_ack_ms: transport.ack,
        storage_rows_per_s: storage_rate,
        rows_per_commit: opts.rows_per_commit,
        hub_events_per_s: hub_rate,
        hub_ack_ms: ingest.ack,
        hub_cpu_percent,
        hub_share_of_limit: if limit > 0.0 { hub_rate / limit } else { 0.0 },
        mqtt_embedded_msgs_per_s: embedded,
        mqtt_mosquitto_msgs_per_s: mosquitto,
        notes,
    })
}

impl BenchReport {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "== gatehouse bench ==");
        let _ = writeln!(
            s,
            "{} gateway streams offering {:.0} events/s for {:.0} s each phase",
            self.streams, self.offered_rate, self.duration_s
        );
        let _ = writeln!(
            s,
            "transport (tonic, no persistence) {:>9.0} events/s   ack p50 {} p99 {} ms",
            self.transport_events_per_s, self.transport_ack_ms.p50, self.transport_ack_ms.p99
        );
        let _ = writeln!(
            s,
            "storage (SQLite, {} rows/commit) {:>9.0} rows/s",
            self.rows_per_commit, self.storage_rows_per_s
        );
        let _ = writeln!(
            s,
            "hub ingest (gatehouse-hub)        {:>9.0} events/s   ack p50 {} p99 {} ms   hub cpu {}",
            self.hub_events_per_s,
            self.hub_ack_ms.p50,
            self.hub_ack_ms.p99,
            self.hub_cpu_percent.map_or_else(|| "?".into(), |c| format!("{c:.0}%"))
        );
        let _ = writeln!(
            s,
            "hub share of the lower limit       {:.0}%",
            self.hub_share_of_limit * 100.0
        );
        let mqtt = |v: Option<f64>| v.map_or_else(|| "skipped".into(), |v| format!("{v:.0} msgs/s"));
        let _ = writeln!(
            s,
            "MQTT QoS 1 via the gateway        {}",
            mqtt(self.mqtt_embedded_msgs_per_s)
        );
        let _ = writeln!(
            s,
            "MQTT QoS 1 via Mosquitto :1883    {}",
            mqtt(self.mqtt_mosquitto_msgs_per_s)
        );
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

// ---- 1. a GatewayLink that stores nothing ------------------------------------------------

#[derive(Clone)]
struct NullLink;

type DownStream = Pin<Box<dyn futures::Stream<Item = Result<pb::Downlink, Status>> + Send>>;

#[tonic::async_trait]
impl GatewayLink for NullLink {
    type ConnectStream = DownStream;

    async fn connect(&self, request: Request<Streaming<pb::Uplink>>) -> Result<Response<DownStream>, Status> {
        let mut up = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok(Some(m)) = up.message().await {
                let reply = match m.msg {
                    Some(uplink::Msg::Hello(_)) => downlink::Msg::Welcome(pb::Welcome {
                        last_seq: 0,
                        hub_id: "null".into(),
                        heartbeat_interval_ms: 5_000,
                        ..Default::default()
                    }),
                    Some(uplink::Msg::Events(b)) => downlink::Msg::Ack(pb::Ack {
                        through_seq: b.events.iter().map(|e| e.seq).max().unwrap_or(0),
                    }),
                    _ => continue,
                };
                if tx.send(Ok(pb::Downlink { msg: Some(reply) })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn null_server() -> anyhow::Result<(String, tokio_util::sync::CancellationToken)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tonic::transport::Server::builder()
        .add_service(pb::gateway_link_server::GatewayLinkServer::new(NullLink))
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
    tokio::spawn(server);
    Ok((format!("http://{addr}"), stop))
}

// ---- 2. storage ---------------------------------------------------------------------------

async fn storage(path: &std::path::Path, rows_per_commit: usize, duration: Duration) -> anyhow::Result<f64> {
    let pool = store::open(&DatabaseUrl::Sqlite(format!("sqlite://{}", path.display())))
        .await
        .context("opening the storage bench database")?;
    let mut seq = 0i64;
    let mut stored = 0u64;
    let began = Instant::now();
    while began.elapsed() < duration {
        let now = pb::now_ms();
        let rows: Vec<events::queries::EventRow> = (0..rows_per_commit)
            .map(|_| {
                seq += 1;
                let gw = format!("gw-load-{}", seq % 1000);
                let event = pb::Event {
                    event_id: format!("{gw}-{seq}"),
                    seq: seq as u64,
                    gateway_id: gw.clone(),
                    estate_id: format!("load-{}", seq % 1000),
                    device_id: format!("{gw}-dev-0"),
                    device_kind: pb::DeviceKind::Door as i32,
                    area: "load".into(),
                    occurred_at_ms: now,
                    received_at_ms: now,
                    trace_context: Default::default(),
                    body: Some(pb::event::Body::Access(pb::AccessEvent {
                        door: "load-door".into(),
                        result: pb::AccessResult::Granted as i32,
                        credential: format!("{gw}-dev-0/{seq}"),
                        reason: String::new(),
                    })),
                };
                events::queries::EventRow {
                    payload: event.encode_to_vec(),
                    gateway_id: event.gateway_id,
                    seq,
                    event_id: event.event_id,
                    estate_id: event.estate_id,
                    device_id: event.device_id,
                    device_kind: "door",
                    area: event.area,
                    occurred_at_ms: now,
                    received_at_ms: now,
                    body_kind: "access",
                }
            })
            .collect();
        let mut tx = pool.begin().await?;
        stored += events::queries::insert_events(&mut tx, &rows, now).await?;
        tx.commit().await?;
    }
    let rate = stored as f64 / began.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}

// ---- 4. MQTT ------------------------------------------------------------------------------

async fn embedded_broker() -> anyhow::Result<SocketAddr> {
    // The gateway serves MQTT as its intake only (a publish goes to the outbox, never to
    // other clients), so this publisher → subscriber leg has nothing to measure there; the
    // gateway's MQTT intake figures come from `gatehouse-sim load`.
    anyhow::bail!("the gateway's MQTT server forwards no publishes to subscribers (intake only)")
}

/// `clients` QoS 1 publishers of `messages` each, one subscriber; messages a second from
/// the first publish until the subscriber has them all (or 30 s).
async fn mqtt_leg(broker: SocketAddr, clients: usize, messages: usize) -> anyhow::Result<f64> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let run = pb::now_ms();
    let received = Arc::new(AtomicU64::new(0));
    let mut options = MqttOptions::new(format!("bench-sub-{run}"), broker.ip().to_string(), broker.port());
    options.set_keep_alive(Duration::from_secs(10));
    let (sub, mut sub_loop) = AsyncClient::new(options, 10_000);
    let filter = format!("gatehouse-bench/{run}/#");
    sub.subscribe(&filter, QoS::AtLeastOnce).await?;
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let r = received.clone();
    let sub_task = tokio::spawn(async move {
        let mut subscribed = Some(subscribed_tx);
        loop {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    r.fetch_add(1, Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), subscribed_rx)
        .await
        .context("the benchmark subscriber got no SUBACK")??;
    let payload = br#"{"type":"access","door":"load-door","result":"granted","credential":"bench/0"}"#.to_vec();
    let began = Instant::now();
    let mut pubs = Vec::new();
    for c in 0..clients {
        let mut options = MqttOptions::new(format!("bench-pub-{run}-{c}"), broker.ip().to_string(), broker.port());
        options.set_keep_alive(Duration::from_secs(10));
        options.set_inflight(100);
        let (client, mut event_loop) = AsyncClient::new(options, 1_000);
        let topic = format!("gatehouse-bench/{run}/{c}/event");
        let payload = payload.clone();
        pubs.push(tokio::spawn(async move {
            let driver = tokio::spawn(async move { while event_loop.poll().await.is_ok() {} });
            for _ in 0..messages {
                if client
                    .publish(&topic, QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            (client, driver)
        }));
    }
    let want = (clients * messages) as u64;
    let deadline = began + Duration::from_secs(30);
    while received.load(Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = began.elapsed().as_secs_f64();
    let got = received.load(Relaxed);
    for p in pubs {
        if let Ok((client, driver)) = p.await {
            let _ = client.disconnect().await;
            driver.abort();
        }
    }
    sub_task.abort();
    if got < want {
        println!("  only {got} of {want} messages arrived within 30 s");
    }
    let rate = got as f64 / took;
    println!("  {broker}: {rate:.0} msgs/s");
    Ok(rate)
}
