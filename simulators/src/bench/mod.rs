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
//!
//! One file per phase (`null_link`, `storage`, `mqtt`); the hub phase is the harness's
//! synthetic streams against a hub child.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use gatehouse_proto as pb;
use serde::Serialize;

use crate::harness::{
    gateway_stream::blast,
    hub::{HubUnderTest, load_estates},
    latency::Latency,
};

pub mod cli;
pub mod history;
mod mqtt;
mod null_link;
mod storage;

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
    pub transport_ack_ms: Latency,
    pub storage_rows_per_s: f64,
    pub rows_per_commit: usize,
    pub hub_events_per_s: f64,
    pub hub_ack_ms: Latency,
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
    let (url, stop) = null_link::null_server().await?;
    let transport = blast(&url, opts.streams, opts.rate, opts.duration, opts.grpc_batch).await?;
    stop.cancel();
    let transport_rate = transport.acked_in_window as f64 / transport.window_s;
    println!("  {transport_rate:.0} events/s acknowledged");
    notes.extend(transport.errors.iter().take(3).map(|e| format!("transport: {e}")));

    // 2. Storage.
    println!(
        "bench 2/4: batched SQLite inserts ({} rows per commit) …",
        opts.rows_per_commit
    );
    let storage_rate = storage::storage(&dir.join("storage.db"), opts.rows_per_commit, opts.duration).await?;
    println!("  {storage_rate:.0} rows/s committed");

    // 3. The hub's real ingest.
    println!("bench 3/4: gatehouse-hub ingest, {} streams …", opts.streams);
    let estates = load_estates(opts.streams);
    let mut hub = HubUnderTest::child(opts.hub_bin.as_deref(), &dir, &estates).await?;
    let cpu0 = hub.cpu_s();
    let t0 = Instant::now();
    let ingest = blast(&hub.grpc_url, opts.streams, opts.rate, opts.duration, opts.grpc_batch).await?;
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
    let embedded = match mqtt::embedded_broker().await {
        Ok(addr) => Some(mqtt::mqtt_leg(addr, opts.mqtt_clients, opts.mqtt_messages).await?),
        Err(e) => {
            notes.push(format!("gateway MQTT leg skipped: {e:#}"));
            None
        }
    };
    let mosquitto_addr: SocketAddr = "127.0.0.1:1883".parse()?;
    let mosquitto =
        match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(mosquitto_addr)).await {
            Ok(Ok(_)) => Some(mqtt::mqtt_leg(mosquitto_addr, opts.mqtt_clients, opts.mqtt_messages).await?),
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
