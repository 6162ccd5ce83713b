//! The gateway process killed with SIGKILL mid-stream and restarted: no event that reached
//! its outbox is lost or duplicated at the hub. Runs the real `gatehouse-gateway` binary
//! against an in-process hub, with a real MQTT client publishing throughout.

mod common;
use common::{Gateway, PASSWORD, free_addr, hash_line, wait_until};
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use gatehouse_proto as pb;
use prost::Message;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use sqlx::{Row, sqlite::SqliteConnectOptions};

impl Gateway {
    fn spawn(config: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_gatehouse-gateway"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gatehouse-gateway");
        Gateway(child)
    }

    fn sigkill(&mut self) {
        // std's kill() is SIGKILL on Unix: no flush, no graceful close.
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }
}

/// Call ids of the intercom events in `db` (the outbox's `event` or the hub's `payload`).
async fn call_ids(db: &Path, sql: &'static str) -> Vec<String> {
    let options = SqliteConnectOptions::new().filename(db);
    let mut conn = sqlx::ConnectOptions::connect(&options).await.expect("open db");
    let rows = sqlx::query(sql).fetch_all(&mut conn).await.expect("query");
    rows.iter()
        .filter_map(|r| {
            let bytes: Vec<u8> = r.get(0);
            match pb::Event::decode(bytes.as_slice()).expect("stored event decodes").body {
                Some(pb::event::Body::Intercom(i)) => Some(i.call_id),
                _ => None,
            }
        })
        .collect()
}

const HUB_EVENTS: &str = "SELECT payload FROM events WHERE gateway_id = 'gw-crash' ORDER BY seq";
const OUTBOX_EVENTS: &str = "SELECT event FROM outbox ORDER BY seq";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_mid_stream_loses_and_duplicates_nothing_that_reached_its_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub_db = dir.path().join("hub.db");
    let hub_config = format!(
        "[hub]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n[tls]\nplaintext = true\n\n[[gateways]]\nid = \"gw-crash\"\nestate = \"estate-a\"\n\
         [[estates]]\nid = \"estate-a\"\nname = \"Riverside Gardens\"\ntimezone = \"Asia/Shanghai\"\n",
        hub_db.display()
    );
    let hub = gatehouse_hub::start(gatehouse_hub::HubConfig::from_toml(&hub_config).expect("hub config"))
        .await
        .expect("hub");

    let mqtt = free_addr();
    let http = free_addr();
    let data: PathBuf = dir.path().join("gw");
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(
        &config_path,
        format!(
            "[gateway]\nid = \"gw-crash\"\nestate = \"estate-a\"\ndata_dir = \"{}\"\nhubs = [\"http://{}\"]\n\
             http_listen = \"{http}\"\n\n[mqtt]\nlisten = \"{mqtt}\"\n\n[uplink]\nplaintext = true\nbackoff_max_ms = 300\n\n\
             [[devices]]\nid = \"intercom-1\"\nkind = \"intercom\"\narea = \"block-1\"\n{}",
            data.display(),
            hub.grpc_addr(),
            hash_line()
        ),
    )
    .expect("write config");

    let mut gateway = Gateway::spawn(&config_path);
    wait_until("the gateway's broker", Duration::from_secs(20), async || {
        tokio::net::TcpStream::connect(mqtt).await.is_ok()
    })
    .await;

    // A device publishing without pause; its client reconnects by itself.
    let mut options = MqttOptions::new("intercom-1", "127.0.0.1", mqtt.port());
    options.set_credentials("intercom-1", PASSWORD);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut session) = AsyncClient::new(options, 256);
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            if session.poll().await.is_err() {
                // The gateway is down: the client retries on the next poll.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let publisher = {
        let (stop, published) = (stop.clone(), published.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Relaxed) {
                let payload = format!(r#"{{"type":"call_answered","call_id":"c-{n:06}"}}"#);
                if client
                    .publish("gatehouse/v1/intercom-1/event", QoS::AtLeastOnce, false, payload)
                    .await
                    .is_ok()
                {
                    n += 1;
                    published.store(n, Relaxed);
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        })
    };

    // Mid-stream: the hub has some, the outbox is still taking more.
    wait_until(
        "the hub to store a few hundred events",
        Duration::from_secs(30),
        async || call_ids(&hub_db, HUB_EVENTS).await.len() >= 300,
    )
    .await;
    gateway.sigkill();
    stop.store(true, Relaxed);
    publisher.await.expect("publisher");

    let at_hub_before: HashSet<String> = call_ids(&hub_db, HUB_EVENTS).await.into_iter().collect();
    let in_outbox: HashSet<String> = call_ids(&data.join("outbox.db"), OUTBOX_EVENTS)
        .await
        .into_iter()
        .collect();
    let reached_outbox: HashSet<String> = at_hub_before.union(&in_outbox).cloned().collect();
    assert!(at_hub_before.len() >= 300);
    eprintln!(
        "at SIGKILL: {} published, {} stored at the hub, {} in the outbox ({} of those already at the hub)",
        published.load(Relaxed),
        at_hub_before.len(),
        in_outbox.len(),
        in_outbox.intersection(&at_hub_before).count()
    );

    // Restart on the same data directory; it resends from the hub's ack.
    let _gateway = Gateway::spawn(&config_path);
    let metrics_url = format!("http://{http}/metrics");
    wait_until(
        "the restarted gateway to drain its outbox",
        Duration::from_secs(60),
        async || match reqwest::get(&metrics_url).await {
            Ok(r) => r.text().await.is_ok_and(|t| {
                t.lines().any(|l| l == "gatehouse_gateway_outbox_depth 0")
                    && t.lines().any(|l| l == "gatehouse_gateway_uplink_connected 1")
            }),
            Err(_) => false,
        },
    )
    .await;

    let after = call_ids(&hub_db, HUB_EVENTS).await;
    let unique: HashSet<String> = after.iter().cloned().collect();
    assert_eq!(unique.len(), after.len(), "no event is stored twice at the hub");
    let missing: Vec<&String> = reached_outbox.difference(&unique).collect();
    assert!(
        missing.is_empty(),
        "{} events that reached the outbox never reached the hub: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        !in_outbox.is_empty() || published.load(Relaxed) > at_hub_before.len(),
        "the kill should land mid-stream (outbox non-empty or publishes in flight)"
    );
    hub.shutdown().await;
}
