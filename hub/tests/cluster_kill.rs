//! Several hubs on one PostgreSQL, as real processes: two `gatehouse-hub` processes on one
//! fresh database, gateway streams that know both hubs (each an outbox that resends from the
//! Welcome's `last_seq`, as the gateway does), and the active hub killed with SIGKILL — or
//! frozen with SIGSTOP — mid-run. Checked: every event is stored exactly once, no alarm was
//! raised twice, no escalation timer or notification row doubled, every notification
//! delivered; printed: the time from the kill to the standby's takeover and to each gateway's
//! resumption. PostgreSQL only (`GATEHOUSE_TEST_PG_URL`); skipped by name without it.
//!
//! A bigger run: `GATEHOUSE_FAILOVER_SECS=120 GATEHOUSE_FAILOVER_STREAMS=32
//! GATEHOUSE_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/postgres cargo test --release -p
//! gatehouse-hub --test cluster_kill -- --nocapture`.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::db;
use gatehouse_proto::gateway_link_client::GatewayLinkClient;
use gatehouse_proto::{
    Downlink, Event, EventBatch, Hello, PointReading, Quality, Uplink, downlink, event::Body, uplink,
};
use sqlx::Connection as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Every this many events of a gateway is a pump fault on a device and in an area of its own:
/// one alarm and one incident each (escalation timers, a notification).
const FAULT_EVERY: u64 = 100;
/// Events a gateway adds to its outbox every [`STEP`].
const PER_STEP: u64 = 10;
const STEP: Duration = Duration::from_millis(50);
/// Most events a gateway has sent and not had acknowledged.
const WINDOW: u64 = 2_000;

/// One `gatehouse-hub` process.
struct HubProcess {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
}

impl HubProcess {
    fn start(dir: &Path, name: &str, url: &str, gateways: &[(String, String)]) -> HubProcess {
        let port = || {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
        };
        let (grpc, http) = (port(), port());
        let mut toml = format!(
            "[hub]\ngrpc_listen = \"{grpc}\"\nhttp_listen = \"{http}\"\ndatabase = \"{url}\"\nhub_id = \"{name}\"\n\n\
             [tls]\nplaintext = true\n\n[cluster]\nlease_s = 3\n\n{}\n\
             [[api_tokens]]\nname = \"test-admin\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n\n\
             [[rules.points]]\npoint = \"pump1_fault\"\nwhen = true\npriority = \"P3\"\n\n\
             [alarms]\nflood_start_above = 1000000\nflood_end_below = 10\n\n\
             [limits.grpc]\nmax_connections_per_source = 10000\n\n",
            common::ESTATES_AB,
            gatehouse_hub::auth::token_sha256(common::ADMIN_TOKEN)
        );
        for estate in ["estate-a", "estate-b"] {
            toml.push_str(&format!(
                "[[roster]]\nestate = \"{estate}\"\nrole = \"facility_team\"\nname = \"Facility\"\nchannel = \"log\"\n\n"
            ));
        }
        for (id, estate) in gateways {
            toml.push_str(&format!("[[gateways]]\nid = \"{id}\"\nestate = \"{estate}\"\n\n"));
        }
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, toml).expect("config written");
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_gatehouse-hub"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().map(Stdio::from).unwrap_or_else(|_| Stdio::null()))
            .stderr(log)
            .spawn()
            .expect("gatehouse-hub starts");
        HubProcess { child, grpc, http }
    }

    /// `/readyz` answers 200 as the active hub (a standby's says "standby").
    async fn ready(&self) -> bool {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .expect("a client");
        match client.get(format!("http://{}/readyz", self.http)).send().await {
            Ok(r) if r.status().as_u16() == 200 => r.text().await.is_ok_and(|t| !t.contains("standby")),
            _ => false,
        }
    }

    async fn wait_ready(&self, what: &str, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            if self.ready().await {
                return Instant::now();
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one simulated gateway saw.
#[derive(Debug, Default)]
struct GatewayLog {
    offered: u64,
    acked: u64,
    /// (when, hub index) of every Welcome.
    welcomes: Vec<(Instant, usize)>,
    /// A Welcome named less than was acknowledged before: acknowledged events were lost.
    regressions: Vec<String>,
}

fn event(gateway: &str, estate: &str, seq: u64) -> Event {
    let fault = seq.is_multiple_of(FAULT_EVERY);
    let body = if fault {
        Body::Point(PointReading {
            point: "pump1_fault".into(),
            value: 1.0,
            quality: Quality::Good as i32,
            ..Default::default()
        })
    } else {
        Body::Access(gatehouse_proto::AccessEvent {
            door: "door-1".into(),
            result: gatehouse_proto::AccessResult::Granted as i32,
            ..Default::default()
        })
    };
    Event {
        event_id: format!("{gateway}-{seq}"),
        seq,
        gateway_id: gateway.into(),
        estate_id: estate.into(),
        device_id: if fault {
            format!("plc-{gateway}-{seq}")
        } else {
            "door-1".into()
        },
        area: if fault {
            format!("plant room {gateway} {seq}")
        } else {
            "main gate".into()
        },
        occurred_at_ms: 0,
        body: Some(body),
        ..Default::default()
    }
}

/// A gateway: adds events to its outbox while `producing`, streams them to the first hub that
/// takes it (moving on to the other on any failure, 100 ms apart), resending from Welcome.
async fn gateway(
    id: String,
    estate: String,
    hubs: Vec<SocketAddr>,
    producing: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    log: Arc<Mutex<GatewayLog>>,
) {
    let mut which = 0usize;
    while !done.load(Ordering::Relaxed) {
        let hub = hubs[which % hubs.len()];
        let _ = session(&id, &estate, hub, which % hubs.len(), &producing, &done, &log).await;
        which += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn session(
    id: &str,
    estate: &str,
    hub: SocketAddr,
    index: usize,
    producing: &AtomicBool,
    done: &AtomicBool,
    log: &Mutex<GatewayLog>,
) -> Result<(), String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{hub}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(64);
    let (offered, acked) = {
        let l = log.lock().unwrap();
        (l.offered, l.acked)
    };
    tx.send(Uplink {
        msg: Some(uplink::Msg::Hello(Hello {
            gateway_id: id.into(),
            estate_id: estate.into(),
            software_version: "failover-test".into(),
            devices: Vec::new(),
            last_seq: offered,
            outbox_depth: offered - acked,
        })),
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut down = tokio::time::timeout(
        Duration::from_secs(3),
        GatewayLinkClient::new(channel).connect(ReceiverStream::new(rx)),
    )
    .await
    .map_err(|_| "no answer to the stream".to_string())?
    .map_err(|s| s.to_string())?
    .into_inner();
    let welcome = tokio::time::timeout(Duration::from_secs(3), down.message())
        .await
        .map_err(|_| "no Welcome".to_string())?
        .map_err(|s| s.to_string())?;
    let mut sent = match welcome {
        Some(Downlink {
            msg: Some(downlink::Msg::Welcome(w)),
        }) => w.last_seq,
        other => return Err(format!("expected Welcome, got {other:?}")),
    };
    {
        let mut l = log.lock().unwrap();
        if sent < l.acked {
            let m = format!(
                "{id}: Welcome from hub {index} says {sent}, but {} was acknowledged",
                l.acked
            );
            l.regressions.push(m);
        }
        l.welcomes.push((Instant::now(), index));
    }
    let mut ticks = tokio::time::interval(STEP);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let offered = {
                    let mut l = log.lock().unwrap();
                    if producing.load(Ordering::Relaxed) {
                        l.offered += PER_STEP;
                    }
                    if done.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    l.offered
                };
                // Never blocked on sending (the Acks must keep being read), and at most
                // WINDOW events unacknowledged, as the gateway's uplink does.
                let acked = log.lock().unwrap().acked;
                if offered > sent && sent < acked + WINDOW {
                    let to = offered.min(sent + 500);
                    let events = (sent + 1..=to).map(|s| event(id, estate, s)).collect();
                    match tx.try_send(Uplink { msg: Some(uplink::Msg::Events(EventBatch { events })) }) {
                        Ok(()) => sent = to,
                        Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            message = down.message() => match message.map_err(|s| s.to_string())? {
                Some(Downlink { msg: Some(downlink::Msg::Ack(a)) }) => {
                    let mut l = log.lock().unwrap();
                    l.acked = l.acked.max(a.through_seq);
                }
                Some(_) => {}
                None => return Err("stream closed".into()),
            }
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Counts that must be zero after the run, and the event rows per gateway.
async fn audit(url: &str) -> (Vec<(String, i64, i64)>, Vec<(&'static str, i64)>) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("database");
    let per_gateway: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT gateway_id, COUNT(*), MAX(seq) FROM events GROUP BY gateway_id ORDER BY gateway_id")
            .fetch_all(&mut conn)
            .await
            .expect("events");
    let mut zero = Vec::new();
    for (what, sql) in [
        (
            "alarms raised more than once",
            "SELECT COUNT(*) FROM (SELECT alarm_id FROM alarm_history WHERE change = 'raised' \
             GROUP BY alarm_id HAVING COUNT(*) > 1) d",
        ),
        (
            "escalation timers doubled",
            "SELECT COUNT(*) FROM (SELECT incident_id FROM timers WHERE kind = 'escalation' \
             GROUP BY incident_id, run, step, attempt HAVING COUNT(*) > 1) d",
        ),
        (
            "notification rows doubled",
            "SELECT COUNT(*) FROM (SELECT incident_id FROM notifications \
             GROUP BY incident_id, kind, role, recipient, channel HAVING COUNT(*) > 1) d",
        ),
        (
            "notifications not delivered",
            "SELECT COUNT(*) FROM notifications WHERE status <> 'delivered'",
        ),
    ] {
        let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&mut conn).await.expect(what);
        zero.push((what, n));
    }
    (per_gateway, zero)
}

async fn count(url: &str, sql: &'static str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("database");
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&mut conn).await.expect("a count");
    n
}

/// An operator's `GET /api/v1/stream` on the hub at `http`: the ids of the alarms it shows
/// raised, in the order shown, until aborted.
async fn watch_raised(http: SocketAddr, raised: Arc<Mutex<Vec<i64>>>) {
    let mut response = common::admin_client()
        .get(format!("http://{http}/api/v1/stream"))
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(response.status().as_u16(), 200);
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let Ok(event) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                continue;
            };
            if let Some(id) = event["id"]
                .as_i64()
                .filter(|_| event["type"] == "alarm" && event["change"] == "raised")
            {
                raised.lock().unwrap().push(id);
            }
        }
    }
}

/// The two runs take turns: each starts two hubs and a load against them, and side by side on
/// two cores they would measure the machine rather than the failover.
static ONE_AT_A_TIME: std::sync::LazyLock<tokio::sync::Mutex<()>> = std::sync::LazyLock::new(Default::default);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_active_hub_loses_and_doubles_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(server) = db::pg_server_or_skip("cluster_kill::sigkill_of_the_active_hub_loses_and_doubles_nothing")
    else {
        return;
    };
    let secs = env_number("GATEHOUSE_FAILOVER_SECS", 20);
    let streams = env_number("GATEHOUSE_FAILOVER_STREAMS", 4);
    let url = db::fresh_database(&server);
    // The hubs' logs (hub-a.log, hub-b.log) are kept when this is set.
    let keep = std::env::var_os("GATEHOUSE_FAILOVER_KEEP").is_some();
    let dir = tempfile::Builder::new().disable_cleanup(keep).tempdir().unwrap();
    if keep {
        println!("hub logs in {}", dir.path().display());
    }
    let gateways: Vec<(String, String)> = (0..streams)
        .map(|i| {
            (
                format!("gw-{i}"),
                if i % 2 == 0 { "estate-a" } else { "estate-b" }.to_owned(),
            )
        })
        .collect();
    let a = HubProcess::start(dir.path(), "hub-a", &url, &gateways);
    a.wait_ready("hub a to become active", Duration::from_secs(60)).await;
    let b = HubProcess::start(dir.path(), "hub-b", &url, &gateways);
    // B is up (healthz) and, being a standby, not ready.
    common::eventually("hub b to listen", || async {
        reqwest::get(format!("http://{}/healthz", b.http)).await.is_ok()
    })
    .await;
    assert!(!b.ready().await, "hub b must be a standby while a holds the lease");
    // An operator watches the live stream on the standby, from before the run to its end.
    let watched = Arc::new(Mutex::new(Vec::new()));
    let watcher = tokio::spawn(watch_raised(b.http, watched.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let producing = Arc::new(AtomicBool::new(true));
    let done = Arc::new(AtomicBool::new(false));
    let logs: Vec<Arc<Mutex<GatewayLog>>> = gateways.iter().map(|_| Arc::default()).collect();
    let tasks: Vec<_> = gateways
        .iter()
        .zip(&logs)
        .map(|((id, estate), log)| {
            tokio::spawn(gateway(
                id.clone(),
                estate.clone(),
                vec![a.grpc, b.grpc],
                producing.clone(),
                done.clone(),
                log.clone(),
            ))
        })
        .collect();

    let run = Duration::from_secs(secs);
    tokio::time::sleep(run * 2 / 5).await;
    let before: u64 = logs.iter().map(|l| l.lock().unwrap().acked).sum();
    assert!(before > 0, "nothing was acknowledged before the kill");
    let relayed_before_kill = watched.lock().unwrap().len();
    let mut a = a;
    a.child.kill().expect("SIGKILL");
    let killed = Instant::now();
    let killed_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let took_over = b.wait_ready("hub b to take over", Duration::from_secs(30)).await;
    tokio::time::sleep(run * 3 / 5).await;
    producing.store(false, Ordering::Relaxed);
    // The backlog drains (a big run may offer more than a debug build ingests): waited for
    // as long as acknowledgements keep advancing.
    let acked = || logs.iter().map(|l| l.lock().unwrap().acked).sum::<u64>();
    let offered = || logs.iter().map(|l| l.lock().unwrap().offered).sum::<u64>();
    let (mut last, mut since) = (acked(), Instant::now());
    while acked() < offered() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if acked() > last {
            (last, since) = (acked(), Instant::now());
        }
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "acknowledgements stopped at {last} of {} offered events: {:?}",
            offered(),
            logs.iter()
                .map(|l| {
                    let l = l.lock().unwrap();
                    (l.acked, l.offered, l.welcomes.len())
                })
                .collect::<Vec<_>>()
        );
    }
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Notifications of incidents raised just before the end: delivered within a poll or two.
    common::eventually("every notification to be delivered", || async {
        count(&url, "SELECT COUNT(*) FROM notifications WHERE status <> 'delivered'").await == 0
    })
    .await;

    let (per_gateway, zero) = audit(&url).await;
    let mut resumed = Vec::new();
    let mut offered_total = 0;
    for ((id, _), log) in gateways.iter().zip(&logs) {
        let l = log.lock().unwrap();
        assert!(l.regressions.is_empty(), "{:?}", l.regressions);
        let row = per_gateway.iter().find(|(g, _, _)| g == id).expect("its events");
        let offered = i64::try_from(l.offered).unwrap();
        assert_eq!(
            (row.1, row.2),
            (offered, offered),
            "{id}: rows and highest seq = every offered event, once"
        );
        offered_total += l.offered;
        if let Some((at, _)) = l.welcomes.iter().find(|(at, hub)| *hub == 1 && *at > killed) {
            resumed.push(at.duration_since(killed));
        }
    }
    assert_eq!(resumed.len(), gateways.len(), "every gateway resumed on hub b");
    for (what, n) in &zero {
        assert_eq!(*n, 0, "{what}");
    }
    let alarms = count(&url, "SELECT COUNT(*) FROM alarms").await;
    let faults: u64 = logs.iter().map(|l| l.lock().unwrap().offered / FAULT_EVERY).sum();
    assert_eq!(alarms, i64::try_from(faults).unwrap(), "one alarm per pump fault");
    // Every alarm, raised through a (relayed) or through b (published), reached the operator
    // watching b once.
    assert!(
        relayed_before_kill > 0,
        "the standby's stream relayed no alarm raised on the active"
    );
    common::eventually("every alarm on the operator's stream", || async {
        watched.lock().unwrap().len() >= usize::try_from(alarms).unwrap()
    })
    .await;
    watcher.abort();
    let mut seen = watched.lock().unwrap().clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        (seen.len(), watched.lock().unwrap().len()),
        (usize::try_from(alarms).unwrap(), usize::try_from(alarms).unwrap()),
        "each alarm raised shown once on the standby's stream"
    );
    let mut notifications = count(&url, "SELECT COUNT(*) FROM notifications").await;
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("database");
    let fired: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT claimed_by, COUNT(*), MIN(fired_at_ms) FROM timers WHERE fired_at_ms IS NOT NULL \
         GROUP BY claimed_by ORDER BY claimed_by",
    )
    .fetch_all(&mut conn)
    .await
    .expect("timers");
    let first_by_b = fired
        .iter()
        .find(|(by, _, _)| by == "hub-b")
        .map(|(_, _, at)| format!("{:.2}", (at - killed_ms) as f64 / 1000.0));
    let fired_by: Vec<String> = fired.iter().map(|(by, n, _)| format!("{by} {n}")).collect();
    if fired.is_empty() {
        // The timers run in the writer's tick; if that transaction fails on this database, no
        // incident escalates at all (the hub logs say why), and there is nothing to double.
        println!("WARNING: no timer fired in this run: the writer's tick did not commit (see the hub logs)");
    } else {
        // Each fault opened an incident of its own; its first step notified the one
        // facility_team recipient exactly once, whichever hub fired it. The last incidents'
        // first steps fire at the writer's next tick: waited for, then counted exactly.
        let all = || async { count(&url, "SELECT COUNT(*) FROM notifications").await >= alarms };
        common::eventually("a first-step notification for every incident", all).await;
        notifications = count(&url, "SELECT COUNT(*) FROM notifications").await;
        assert_eq!(notifications, alarms, "one first-step notification per incident");
    }
    let slowest = resumed.iter().max().copied().unwrap_or_default();
    let mean = resumed.iter().sum::<Duration>() / u32::try_from(resumed.len().max(1)).unwrap();
    println!(
        "failover: {streams} streams, {secs} s, {offered_total} events ({before} acknowledged before the SIGKILL), \
         {alarms} alarms ({relayed_before_kill} relayed to b's operator before the kill), {notifications} notifications; \
         standby active {:.2} s after the kill (lease_s = 3); \
         gateways resumed after {:.2} s mean, {:.2} s slowest; timers fired: {} (hub b's first {} s after \
         the kill); lost 0, duplicated 0",
        took_over.duration_since(killed).as_secs_f64(),
        mean.as_secs_f64(),
        slowest.as_secs_f64(),
        fired_by.join(", "),
        first_by_b.unwrap_or_else(|| "-".into()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_active_wakes_up_fenced_and_stores_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(server) = db::pg_server_or_skip("cluster_kill::a_frozen_active_wakes_up_fenced_and_stores_nothing") else {
        return;
    };
    let url = db::fresh_database(&server);
    let dir = tempfile::tempdir().unwrap();
    let gateways = vec![("gw-0".to_owned(), "estate-a".to_owned())];
    let a = HubProcess::start(dir.path(), "hub-a", &url, &gateways);
    a.wait_ready("hub a to become active", Duration::from_secs(60)).await;
    let b = HubProcess::start(dir.path(), "hub-b", &url, &gateways);
    common::eventually("hub b to listen", || async {
        reqwest::get(format!("http://{}/healthz", b.http)).await.is_ok()
    })
    .await;

    // A stream to a, its first batch stored.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", a.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let hello = Hello {
        gateway_id: "gw-0".into(),
        estate_id: "estate-a".into(),
        software_version: "test".into(),
        ..Default::default()
    };
    tx.send(Uplink {
        msg: Some(uplink::Msg::Hello(hello.clone())),
    })
    .await
    .unwrap();
    let mut down = GatewayLinkClient::new(channel)
        .connect(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let batch = |from: u64, to: u64| Uplink {
        msg: Some(uplink::Msg::Events(EventBatch {
            events: (from..=to).map(|s| event("gw-0", "estate-a", s)).collect(),
        })),
    };
    assert!(matches!(
        down.message().await,
        Ok(Some(Downlink {
            msg: Some(downlink::Msg::Welcome(_))
        }))
    ));
    tx.send(batch(1, 10)).await.unwrap();
    assert!(matches!(
        down.message().await,
        Ok(Some(Downlink {
            msg: Some(downlink::Msg::Ack(_))
        }))
    ));

    // Frozen: its lease runs out and b takes over.
    a.signal("STOP");
    let frozen = Instant::now();
    b.wait_ready("hub b to take over from the frozen hub", Duration::from_secs(30))
        .await;
    println!(
        "frozen hub: b active {:.2} s after SIGSTOP",
        frozen.elapsed().as_secs_f64()
    );
    // A batch waits in a's socket; a wakes up and must not store it.
    tx.send(batch(11, 20)).await.unwrap();
    a.signal("CONT");
    let answer = tokio::time::timeout(Duration::from_secs(10), down.message()).await;
    assert!(
        matches!(&answer, Ok(Err(s)) if s.code() == tonic::Code::Unavailable),
        "the woken hub must refuse the batch, got {answer:?}"
    );
    common::eventually("the woken hub to say it is not ready", || async { !a.ready().await }).await;
    let stored = count(&url, "SELECT COUNT(*) FROM events WHERE gateway_id = 'gw-0'").await;
    assert_eq!(
        stored, 10,
        "nothing the woken hub received after losing its lease is stored"
    );
    assert!(b.ready().await, "b is still the active hub");
}
