//! The gateway's MQTT intake driven from outside, as a careless integrator or a hostile
//! device on the estate network would: the real `gatehouse-gateway` binary, an in-process
//! hub on real gRPC and SQLite, and independent clients (Python paho-mqtt 2.2, Mosquitto's
//! `mosquitto_pub` / `mosquitto_sub`, raw TCP).
//!
//! Needs `python3` with `paho-mqtt` (pip) and `mosquitto-clients` (apt); the disk-full case
//! mounts a tmpfs (root, as here and in CI).

mod common;
use common::{Gateway, PASSWORD, free_addr, hash_line, wait_until};
use std::{
    collections::HashSet,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use gatehouse_proto as pb;
use prost::Message;
use sqlx::{Row, sqlite::SqliteConnectOptions};

const DEVICES: &str = r#"
[[devices]]
id = "fire-1"
kind = "fire_panel"
area = "block-1"
"#;

struct Rig {
    _hub: gatehouse_hub::RunningHub,
    hub_db: PathBuf,
    _gateway: Gateway,
    mqtt: SocketAddr,
    http: SocketAddr,
    data: PathBuf,
    log: PathBuf,
    dir: PathBuf,
}

/// A hub and a gateway with ten doors (`door-1` … `door-10`) and a fire panel (`fire-1`);
/// `mqtt_extra` is appended to the `[mqtt]` section, `data` is the gateway's data dir.
async fn rig(dir: &Path, data: PathBuf, mqtt_extra: &str) -> Rig {
    let hub_db = dir.join("hub.db");
    let hub_config = format!(
        "[hub]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n[tls]\nplaintext = true\n\n[[gateways]]\nid = \"gw-intake\"\nestate = \"estate-a\"\n\
         [[estates]]\nid = \"estate-a\"\nname = \"Riverside Gardens\"\ntimezone = \"Asia/Shanghai\"\n",
        hub_db.display()
    );
    let hub = gatehouse_hub::start(gatehouse_hub::HubConfig::from_toml(&hub_config).expect("hub config"))
        .await
        .expect("hub");
    let (mqtt, http) = (free_addr(), free_addr());
    let mut doors = format!("{}\n", hash_line());
    for i in 1..=10 {
        doors.push_str(&format!(
            "\n[[devices]]\nid = \"door-{i}\"\nkind = \"door\"\narea = \"gate-{i}\"\n{}",
            hash_line()
        ));
    }
    let config_path = dir.join("gateway.toml");
    std::fs::write(
        &config_path,
        format!(
            "[gateway]\nid = \"gw-intake\"\nestate = \"estate-a\"\ndata_dir = \"{}\"\nhubs = [\"http://{}\"]\n\
             http_listen = \"{http}\"\n\n[mqtt]\nlisten = \"{mqtt}\"\n{mqtt_extra}\n\n[uplink]\nplaintext = true\nbackoff_max_ms = 300\n\
             {DEVICES}{doors}",
            data.display(),
            hub.grpc_addr()
        ),
    )
    .expect("write config");
    let log = dir.join("gateway.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_gatehouse-gateway"))
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("spawn gatehouse-gateway");
    let rig = Rig {
        _hub: hub,
        hub_db,
        _gateway: Gateway(child),
        mqtt,
        http,
        data,
        log,
        dir: dir.to_path_buf(),
    };
    wait_until(
        "the gateway's MQTT port and hub link",
        Duration::from_secs(30),
        async || rig.metric("gatehouse_gateway_uplink_connected").await == Some(1),
    )
    .await;
    rig
}

impl Rig {
    async fn metrics(&self) -> String {
        match reqwest::get(format!("http://{}/metrics", self.http)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// One sample's value, by its full name with labels.
    async fn metric(&self, name: &str) -> Option<u64> {
        self.metrics().await.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    async fn healthz(&self) -> (u16, String) {
        match reqwest::get(format!("http://{}/healthz", self.http)).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    async fn hub_rows(&self, sql: &'static str) -> Vec<sqlx::sqlite::SqliteRow> {
        let options = SqliteConnectOptions::new().filename(&self.hub_db);
        let mut conn = sqlx::ConnectOptions::connect(&options).await.expect("open hub db");
        sqlx::query(sql).fetch_all(&mut conn).await.expect("query hub db")
    }

    /// Credentials of the access events stored at the hub.
    async fn hub_credentials(&self) -> Vec<String> {
        self.hub_rows("SELECT payload FROM events WHERE gateway_id = 'gw-intake' AND body_kind = 'access'")
            .await
            .iter()
            .filter_map(|r| {
                let bytes: Vec<u8> = r.get(0);
                match pb::Event::decode(bytes.as_slice()).ok()?.body {
                    Some(pb::event::Body::Access(a)) => Some(a.credential),
                    _ => None,
                }
            })
            .collect()
    }

    async fn fire_alarm_raised(&self) -> bool {
        !self
            .hub_rows(
                "SELECT id FROM alarms WHERE device_id = 'fire-1' AND priority = 'P1' AND category = 'fire' AND active",
            )
            .await
            .is_empty()
    }

    /// Publishes a fire alarm from `fire-1` with mosquitto_pub (QoS 1) and waits for its P1
    /// alarm at the hub.
    async fn fire_alarm_arrives(&self) {
        let status = mosquitto_pub(
            self.mqtt,
            "fire-1",
            &[
                "-t",
                "gatehouse/v1/fire-1/event",
                "-m",
                r#"{"type":"fire_alarm","loop":1,"zone":"3","point":"7","text":"Block 1 stair"}"#,
            ],
        );
        assert!(status, "mosquitto_pub of the fire alarm got its PUBACK");
        wait_until(
            "the fire alarm's P1 alarm at the hub",
            Duration::from_secs(20),
            async || self.fire_alarm_raised().await,
        )
        .await;
    }
}

/// `mosquitto_pub -q 1` as device `client_id` (its client id and username) with `extra`
/// arguments; true when it exited 0 (CONNACK and PUBACK).
fn mosquitto_pub(mqtt: SocketAddr, client_id: &str, extra: &[&str]) -> bool {
    mosquitto_pub_as(mqtt, client_id, client_id, extra)
}

/// `mosquitto_pub -q 1` logged in as `device`, with client id `client_id`.
fn mosquitto_pub_as(mqtt: SocketAddr, device: &str, client_id: &str, extra: &[&str]) -> bool {
    Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &mqtt.port().to_string(),
            "-q",
            "1",
            "-i",
            client_id,
            "-u",
            device,
            "-P",
            PASSWORD,
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("run mosquitto_pub (apt install mosquitto-clients)")
        .success()
}

/// Ten paho-mqtt publishers (`door-1` … `door-10`), `rate` QoS 1 access events a second
/// each for `seconds`; then waits up to `drain_s` for the PUBACKs. Writes the credentials
/// whose publish was PUBACKed, one a line, to `acked`, and prints its figures.
const PUBLISHERS: &str = r#"
import sys, threading, time
import paho.mqtt.client as mqtt

port, rate, seconds, drain_s, acked_path, tag, password = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
results = []

def run(i):
    # No lock of ours around paho's calls: its network thread runs on_publish holding
    # paho's own lock. Each client sends fewer than 65,535 messages, so mids are unique.
    acked_at, sent = {}, []
    def on_publish(client, userdata, mid, reason_code, properties):
        acked_at[mid] = time.monotonic()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"door-{i}")
    c.on_publish = on_publish
    c.username_pw_set(f"door-{i}", password)
    c.max_inflight_messages_set(20)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        while n < due:
            cred = f"{tag}-{i}-{n:06d}"
            payload = '{"type":"access","door":"D%d","result":"granted","credential":"%s"}' % (i, cred)
            t0 = time.monotonic()
            info = c.publish(f"gatehouse/v1/door-{i}/event", payload, qos=1)
            sent.append((info.mid, cred, t0))
            n += 1
        time.sleep(0.005)
    end = time.monotonic() + drain_s
    while time.monotonic() < end and len(acked_at) < len(sent):
        time.sleep(0.05)
    c.disconnect()
    c.loop_stop()
    results.append((sent, dict(acked_at)))

threads = [threading.Thread(target=run, args=(i,)) for i in range(1, 11)]
for t in threads: t.start()
for t in threads: t.join()
acked, total, max_wait = [], 0, 0.0
for sent, acked_at in results:
    total += len(sent)
    for mid, cred, t0 in sent:
        if mid in acked_at:
            acked.append(cred)
            max_wait = max(max_wait, acked_at[mid] - t0)
with open(acked_path, "w") as f:
    f.write("\n".join(acked))
print(f"publishers: sent {total}, PUBACKed {len(acked)}, max PUBACK wait {max_wait:.2f} s", flush=True)
"#;

/// Kills a helper process on drop (a failing assertion leaves none behind).
struct Reaped(Option<Child>);

impl Reaped {
    /// Waits for the process to end by itself.
    async fn wait(mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("a child");
        tokio::task::spawn_blocking(move || child.wait().expect("wait"))
            .await
            .expect("join")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_publishers(rig: &Rig, rate: u32, seconds: f64, drain_s: f64, tag: &str) -> (Reaped, PathBuf) {
    let script = rig.dir.join("publishers.py");
    std::fs::write(&script, PUBLISHERS).expect("write script");
    let acked = rig.dir.join(format!("acked-{tag}.txt"));
    let child = Command::new("python3")
        .arg(&script)
        .args([
            rig.mqtt.port().to_string(),
            rate.to_string(),
            seconds.to_string(),
            drain_s.to_string(),
            acked.display().to_string(),
            tag.to_string(),
            PASSWORD.to_string(),
        ])
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python3 (pip install paho-mqtt==2.2.0)");
    (Reaped(Some(child)), acked)
}

fn read_acked(path: &Path) -> HashSet<String> {
    std::fs::read_to_string(path)
        .expect("the publishers wrote their PUBACKed credentials")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puback_means_stored_while_the_outbox_is_locked_by_another_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rig = rig(dir.path(), dir.path().join("gw"), "commit_wait_alarm_ms = 1500").await;
    let began = Instant::now();
    let (publishers, acked_path) = spawn_publishers(&rig, 400, 5.0, 60.0, "stall");

    // Another process takes the outbox's write lock for 6 s, as a backup tool would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut locker = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
             c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(6)\nc.execute('ROLLBACK')\n",
        ])
        .arg(rig.data.join("outbox.db"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the locker");
    let mut line = [0u8; 6];
    locker
        .stdout
        .as_mut()
        .expect("locker stdout")
        .read_exact(&mut line)
        .expect("the locker holds the lock");

    // Devices feel it as PUBACKs that wait, and health says why.
    wait_until(
        "/healthz to fail naming the intake",
        Duration::from_secs(6),
        async || {
            let (status, body) = rig.healthz().await;
            status == 503 && body.contains("mqtt.intake")
        },
    )
    .await;
    let awaiting = rig.metric("gatehouse_gateway_mqtt_awaiting_commit").await.unwrap_or(0);
    assert!(
        awaiting > 0,
        "publishes wait for their commit while the outbox is locked"
    );
    assert!(locker.wait().expect("locker").success());

    let status = publishers.wait().await;
    assert!(status.success(), "the publishers ran");
    let acked = read_acked(&acked_path);
    assert!(acked.len() > 5_000, "most publishes were PUBACKed ({})", acked.len());

    let mut stored = HashSet::new();
    wait_until(
        "every PUBACKed event at the hub",
        Duration::from_secs(120),
        async || {
            stored = rig.hub_credentials().await.into_iter().collect();
            acked.is_subset(&stored)
        },
    )
    .await;
    wait_until("/healthz to pass again", Duration::from_secs(10), async || {
        rig.healthz().await.0 == 200
    })
    .await;
    let max_wait = rig
        .metric("gatehouse_gateway_mqtt_commit_wait_max_ms")
        .await
        .unwrap_or(0);
    eprintln!(
        "outbox stall: {} PUBACKed, {} stored at the hub, none lost; longest commit wait {max_wait} ms; {:.1} s in all",
        acked.len(),
        stored.len(),
        began.elapsed().as_secs_f64()
    );
    assert!(
        max_wait >= 3_000,
        "the commits really waited for the lock ({max_wait} ms)"
    );
}

/// A raw MQTT 3.1.1 CONNECT with `client_id` (a device: also the username, with
/// [`PASSWORD`]), keep-alive 30 s, clean session.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 30];
    for field in [client_id, client_id, PASSWORD] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut p = vec![0x10, body.len() as u8];
    p.extend(body);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connects_reset_before_connack_do_not_stop_intake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rig = rig(dir.path(), dir.path().join("gw"), "").await;
    for _ in 0..2 {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(rig.mqtt).await.expect("connect");
        s.write_all(&connect_packet("door-5")).await.expect("send CONNECT");
        // RST instead of FIN, before reading the CONNACK.
        s.set_zero_linger().expect("SO_LINGER 0");
        drop(s);
    }
    // A third, and a keeper: new connections are accepted.
    let mut s = TcpStream::connect(rig.mqtt).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(&connect_packet("door-5")).expect("send CONNECT");
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).expect("a CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0], "accepted");
    rig.fire_alarm_arrives().await;
    assert_eq!(rig.healthz().await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_collision_with_anything_does_not_stop_intake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rig = rig(dir.path(), dir.path().join("gw"), "").await;
    // The old gateway's own link id, and a real device's id while that device is connected.
    let mut fire_session = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &rig.mqtt.port().to_string(),
            "-i",
            "fire-1",
            "-u",
            "fire-1",
            "-P",
            PASSWORD,
            "-t",
        ])
        .arg("gatehouse/v1/fire-1/command")
        .stdout(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    wait_until("the fire panel's session", Duration::from_secs(5), async || {
        rig.metric("gatehouse_gateway_mqtt_connections").await == Some(1)
    })
    .await;
    // Client ids are scoped to the device that logged in: door-1 using the client ids
    // `gatehouse-gateway` and `fire-1` takes nothing over; fire-1 itself takes its session.
    for (device, id) in [
        ("door-1", "gatehouse-gateway"),
        ("door-1", "fire-1"),
        ("door-1", "door-1"),
        ("fire-1", "fire-1"),
    ] {
        assert!(mosquitto_pub_as(
            rig.mqtt,
            device,
            id,
            &["-t", &format!("gatehouse/v1/{device}/status"), "-m", "online"]
        ));
    }
    wait_until("the takeover counted", Duration::from_secs(5), async || {
        rig.metric("gatehouse_gateway_mqtt_closed_total{reason=\"taken_over\"}")
            .await
            >= Some(1)
    })
    .await;
    let _ = fire_session.kill();
    let _ = fire_session.wait();
    rig.fire_alarm_arrives().await;
    assert_eq!(rig.healthz().await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_timed_out_and_capped_per_source_while_devices_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rig = rig(
        dir.path(),
        dir.path().join("gw"),
        "connect_timeout_ms = 1500\nmax_connections_per_ip = 100\nmax_pending_connections = 400",
    )
    .await;
    // 300 sockets from 127.0.0.2 that never send CONNECT, and 20 that send half of one.
    let flood: Vec<tokio::net::TcpStream> = {
        let mut v = Vec::new();
        for i in 0..320 {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind("127.0.0.2:0".parse().expect("addr"))
                .expect("bind 127.0.0.2");
            let mut s = socket.connect(rig.mqtt).await.expect("connect");
            if i % 16 == 0 {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(&connect_packet("slow")[..5]).await;
            }
            v.push(s);
        }
        v
    };
    wait_until(
        "the per-source cap to refuse the excess",
        Duration::from_secs(10),
        async || {
            rig.metric("gatehouse_gateway_mqtt_refused_total{reason=\"per_ip_cap\"}")
                .await
                >= Some(200)
        },
    )
    .await;
    // Meanwhile a real device from another address connects and its alarm arrives.
    rig.fire_alarm_arrives().await;
    // The ones let in are closed at the connect timeout.
    wait_until(
        "the silent connections to be timed out",
        Duration::from_secs(10),
        async || {
            rig.metric("gatehouse_gateway_mqtt_closed_total{reason=\"connect_timeout\"}")
                .await
                >= Some(100)
        },
    )
    .await;
    let mut closed = 0;
    for mut s in flood {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 320, "every flood connection was closed by the gateway");
    assert_eq!(rig.metric("gatehouse_gateway_mqtt_connections").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_publishes_are_never_stored_so_they_cannot_grow_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rig = rig(dir.path(), dir.path().join("gw"), "").await;
    let big = rig.dir.join("big.bin");
    std::fs::write(&big, vec![b'x'; 200 * 1024]).expect("payload file");
    for _ in 0..50 {
        assert!(mosquitto_pub(
            rig.mqtt,
            "door-9",
            &[
                "-r",
                "-t",
                "gatehouse/v1/door-9/status",
                "-f",
                &big.display().to_string()
            ]
        ));
    }
    assert_eq!(
        rig.metric("gatehouse_gateway_mqtt_retained_ignored_total").await,
        Some(50)
    );
    // A new subscriber to everything gets no retained message.
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &rig.mqtt.port().to_string(),
            "-u",
            "door-9",
            "-P",
            PASSWORD,
            "-t",
            "gatehouse/v1/door-9/command",
            "-C",
            "1",
            "-W",
            "2",
        ])
        .output()
        .expect("mosquitto_sub");
    assert!(out.stdout.is_empty(), "nothing was retained");
    rig.fire_alarm_arrives().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_outbox_loses_nothing_pubacked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = dir.path().join("small");
    std::fs::create_dir_all(&mount).expect("mount point");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&mount)
        .status()
        .expect("run mount");
    assert!(mounted.success(), "mounting a small tmpfs (the test runs as root)");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let rig = rig(dir.path(), mount.join("gw"), "commit_wait_alarm_ms = 1500").await;

    // Fill the filesystem.
    let filler = mount.join("filler");
    {
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let (publishers, acked_path) = spawn_publishers(&rig, 100, 4.0, 60.0, "full");
    wait_until("outbox writes to fail", Duration::from_secs(20), async || {
        rig.metric("gatehouse_gateway_outbox_write_errors_total").await >= Some(1)
    })
    .await;
    wait_until(
        "/healthz to fail naming the outbox",
        Duration::from_secs(10),
        async || {
            let (status, body) = rig.healthz().await;
            status == 503 && body.contains("outbox.writer")
        },
    )
    .await;
    // Back pressure: publishes wait rather than being acknowledged.
    let before = rig.metric("gatehouse_gateway_mqtt_awaiting_commit").await.unwrap_or(0);
    assert!(before > 0, "publishes wait for their commit on a full disk");
    let log = std::fs::read_to_string(&rig.log).unwrap_or_default();
    assert!(log.contains("outbox write failed"), "the log says so:\n{log}");

    // Space returns.
    std::fs::remove_file(&filler).expect("free space");
    let status = publishers.wait().await;
    assert!(status.success());
    let acked = read_acked(&acked_path);
    assert!(acked.len() > 1_000, "PUBACKs resumed ({})", acked.len());
    wait_until("every PUBACKed event at the hub", Duration::from_secs(60), async || {
        let stored: HashSet<String> = rig.hub_credentials().await.into_iter().collect();
        acked.is_subset(&stored)
    })
    .await;
    wait_until("/healthz to pass again", Duration::from_secs(10), async || {
        rig.healthz().await.0 == 200
    })
    .await;
    eprintln!("disk full: {} PUBACKed, all stored at the hub", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_will_is_stored_after_an_abnormal_close_and_discarded_after_disconnect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rig = rig(dir.path(), dir.path().join("gw"), "").await;
    let session = |id: &str| {
        Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &rig.mqtt.port().to_string(),
                "-i",
                id,
                "-u",
                id,
                "-P",
                PASSWORD,
                "-q",
                "1",
            ])
            .args(["-t", &format!("gatehouse/v1/{id}/command")])
            .args(["--will-topic", &format!("gatehouse/v1/{id}/status")])
            .args(["--will-payload", "offline", "--will-qos", "1"])
            .stdout(Stdio::null())
            .spawn()
            .expect("mosquitto_sub")
    };
    // door-2 dies without DISCONNECT (SIGKILL: the kernel closes its socket). A first login
    // puts its password in the verified-secret cache, so that its session is established
    // (not still hashing) by the time it is killed.
    assert!(mosquitto_pub(
        rig.mqtt,
        "door-2",
        &["-t", "gatehouse/v1/door-2/status", "-m", "online"]
    ));
    let mut dying = Reaped(Some(session("door-2")));
    wait_until("door-2's session", Duration::from_secs(5), async || {
        rig.metric("gatehouse_gateway_mqtt_connections").await == Some(1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(dying.0.take().map(|mut c| {
        let _ = c.kill();
        c.wait()
    }));
    wait_until("door-2's will at the hub", Duration::from_secs(10), async || {
        // Its `online`, then its will.
        rig.hub_rows("SELECT seq FROM events WHERE device_id = 'door-2' AND body_kind = 'status'")
            .await
            .len()
            == 2
    })
    .await;
    assert_eq!(rig.metric("gatehouse_gateway_mqtt_wills_total").await, Some(1));

    // door-3 publishes `online` and disconnects cleanly: its will is discarded.
    assert!(mosquitto_pub(
        rig.mqtt,
        "door-3",
        &[
            "--will-topic",
            "gatehouse/v1/door-3/status",
            "--will-payload",
            "offline",
            "-t",
            "gatehouse/v1/door-3/status",
            "-m",
            "online"
        ]
    ));
    wait_until(
        "door-3's online at the hub and its connection gone",
        Duration::from_secs(10),
        async || {
            let stored = rig
                .hub_rows("SELECT seq FROM events WHERE device_id = 'door-3' AND body_kind = 'status'")
                .await
                .len();
            stored == 1 && rig.metric("gatehouse_gateway_mqtt_connections").await == Some(0)
        },
    )
    .await;
    assert_eq!(
        rig.metric("gatehouse_gateway_mqtt_wills_total").await,
        Some(1),
        "no will after DISCONNECT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_packets_close_only_their_own_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let rig = rig(dir.path(), dir.path().join("gw"), "max_packet_bytes = 65536").await;
    let connected = async |id: &str| {
        let mut s = tokio::net::TcpStream::connect(rig.mqtt).await.expect("connect");
        s.write_all(&connect_packet(id)).await.expect("CONNECT");
        let mut connack = [0u8; 4];
        s.read_exact(&mut connack).await.expect("CONNACK");
        s
    };
    // Garbage after CONNECT; a packet type only a server sends; a 1 MiB remaining length;
    // an MQTT 5 CONNECT (answered 0x01).
    let mut garbage = connected("door-6").await;
    garbage.write_all(&[0xF0, 0x03, 1, 2, 3]).await.expect("write");
    let mut server_only = connected("door-7").await;
    server_only.write_all(&[0x20, 0x02, 0, 0]).await.expect("write");
    let mut huge = connected("door-8").await;
    huge.write_all(&[0x30, 0x80, 0x80, 0x40]).await.expect("write");
    let mut v5 = tokio::net::TcpStream::connect(rig.mqtt).await.expect("connect");
    v5.write_all(&[0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 30, 0, 0, 0])
        .await
        .expect("write");
    for s in [&mut garbage, &mut server_only, &mut huge] {
        let mut b = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("closed in time");
        assert!(matches!(n, Ok(0) | Err(_)), "the gateway closed the connection");
    }
    let mut connack = [0u8; 4];
    v5.read_exact(&mut connack).await.expect("a CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 1], "unacceptable protocol version");
    assert_eq!(
        rig.metric("gatehouse_gateway_mqtt_closed_total{reason=\"malformed\"}")
            .await,
        Some(2)
    );
    assert_eq!(
        rig.metric("gatehouse_gateway_mqtt_closed_total{reason=\"packet_too_large\"}")
            .await,
        Some(1)
    );
    assert_eq!(
        rig.metric("gatehouse_gateway_mqtt_refused_total{reason=\"bad_protocol\"}")
            .await,
        Some(1)
    );
    rig.fire_alarm_arrives().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos_2_publish_is_stored_once_and_completed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rig = rig(dir.path(), dir.path().join("gw"), "").await;
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &rig.mqtt.port().to_string(),
            "-q",
            "2",
            "-i",
            "door-4",
            "-u",
            "door-4",
            "-P",
            PASSWORD,
        ])
        .args(["-t", "gatehouse/v1/door-4/event"])
        .args([
            "-m",
            r#"{"type":"access","door":"D4","result":"granted","credential":"qos2-once"}"#,
        ])
        .status()
        .expect("mosquitto_pub");
    assert!(status.success(), "PUBREC after the commit, PUBCOMP on PUBREL");
    wait_until("the event at the hub", Duration::from_secs(10), async || {
        rig.hub_credentials().await.contains(&"qos2-once".to_string())
    })
    .await;
    assert_eq!(rig.hub_credentials().await.len(), 1, "stored once");
}
