//! `gatehouse-sim demo`: one hub and three estates, each with its gateway and simulated
//! devices, background traffic, and a storyline — a forced door at night at one estate, a
//! pump trip at another, a fire alarm at the third, a gate guard off sick — that an operator
//! then works through the gate-house procedure: a scripted one (`script.rs`, the default),
//! or a person at the board (`board.rs`, `--operator board`). Prints the hub's live stream
//! as it happens and each incident's timeline when it closes.

mod board;
mod script;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    inbox::{Inbox, InboxMessage},
    operator::{Operator, timeline_lines},
    scenario::{FacilityRobot, GATE_GUARDS, SimEstate, demo_estates, mint_pki, start_estate_with, start_hub_full},
};

pub struct DemoOptions {
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Stop after this long; `None` runs until Ctrl-C.
    pub run_for: Option<Duration>,
    /// Who handles the storyline's incidents.
    pub operator: DemoOperator,
    /// The facility inbox's address; `None`: a loopback port chosen at run time.
    pub inbox_addr: Option<SocketAddr>,
}

/// Who handles the storyline: the scripted operator, or a person at the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DemoOperator {
    #[default]
    Script,
    Board,
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let estates_spec = demo_estates();
    // TLS on by default: a development PKI minted into the data dir (kept across runs).
    let pki = mint_pki(&opts.data_dir.join("pki"), &estates_spec)?;
    // The facility team's chat group: a DingTalk robot receiver of our own, up before the hub
    // so that the first notification finds it.
    let inbox = Arc::new(start_inbox(opts.inbox_addr).await?);
    let robot = FacilityRobot {
        url: inbox.robot_url(),
        secret: inbox.secret().to_owned(),
    };
    let hub = start_hub_full(opts.http_addr, &opts.data_dir, &estates_spec, Some(&pki), Some(&robot)).await?;
    let base = format!("http://{}", hub.http_addr());
    println!("Gatehouse demo: hub at {base}");
    println!(
        "  gateways connect over mutual TLS (certificates in {}; revoke one with `gatehouse-hub certs revoke --out {} --gateway ID`)",
        pki.dir.display(),
        pki.dir.display()
    );
    println!("  board  {base}/");
    println!("  alarms {base}/api/v1/alarms · incidents {base}/api/v1/incidents · live {base}/api/v1/stream");
    println!("  sign in to the board as (user / password, made for this run):");
    for l in crate::credentials::logins()? {
        println!("    {:<13} {:<12} {}", l.role, l.user, l.password);
    }
    println!(
        "  scripts: curl -H \"Authorization: Bearer $TOKEN\" {base}/api/v1/alarms  (a supervisor of every estate)"
    );
    // On a line of its own, for scripts that read it.
    println!("token: {}", crate::credentials::token()?);
    println!("  the facility team's DingTalk group (a local robot receiver; its messages as JSON):");
    println!("facility inbox: {}", inbox.url());
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(watch_stream(base.clone(), stop.clone()));
    let inbox_watcher = tokio::spawn(watch_inbox(inbox.clone()));
    let mut estates = Vec::new();
    for spec in estates_spec {
        let e = start_estate_with(spec, hub.grpc_addr(), &opts.data_dir, Some(&pki)).await?;
        let mqtt = e.gateway.mqtt_addr.map(|a| a.to_string()).unwrap_or_default();
        println!(
            "  {} ({}): gateway MQTT on {mqtt}, pump room (Modbus TCP) on {}",
            e.spec.name,
            e.spec.id,
            e.pump_room.addr()
        );
        // The demo's own devices' logins (random per run; the gateway holds only their
        // hashes), so that a device can be tried by hand with mosquitto_pub.
        if let Some(pw) = e.mqtt_logins.password("door-main-gate") {
            println!("    MQTT login door-main-gate / {pw}");
        }
        estates.push(e);
    }
    for e in &estates {
        spawn_background(e, &stop);
    }
    let story = tokio::spawn(storyline(
        estates,
        Operator::new(&base, "operator Li"),
        opts.operator,
        base.clone(),
        inbox.clone(),
        stop.clone(),
    ));

    match opts.run_for {
        Some(d) => tokio::time::sleep(d).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    stop.cancel();
    watcher.abort();
    inbox_watcher.abort();
    match tokio::time::timeout(Duration::from_secs(10), story).await {
        Ok(Ok(Ok(estates))) => {
            for e in estates {
                e.gateway.shutdown().await;
                e.pump_room.shutdown();
            }
        }
        Ok(Ok(Err(e))) => eprintln!("storyline: {e:#}"),
        Ok(Err(e)) => eprintln!("storyline task: {e}"),
        Err(_) => eprintln!("storyline did not stop in time"),
    }
    hub.shutdown().await;
    inbox.shutdown();
    println!("demo stopped");
    Ok(())
}

fn spawn_background(e: &SimEstate, stop: &CancellationToken) {
    let (gate, s) = (e.vehicle_gate.clone(), stop.clone());
    tokio::spawn(async move { gate.background("vehicle-barrier", 20, s).await });
    let (intercom, s) = (e.intercom.clone(), stop.clone());
    tokio::spawn(async move { intercom.background("block-3-lobby", 6, s).await });
}

/// The scripted incidents and their handling. Returns the estates so the caller can stop
/// them; stops early (without error) when `stop` is cancelled.
async fn storyline(
    estates: Vec<SimEstate>,
    op: Operator,
    who: DemoOperator,
    base: String,
    inbox: Arc<Inbox>,
    stop: CancellationToken,
) -> anyhow::Result<Vec<SimEstate>> {
    let story = async {
        match who {
            DemoOperator::Script => script::script(&estates, &op, &inbox).await,
            DemoOperator::Board => board::story(&estates, &op, &base).await,
        }
    };
    tokio::select! {
        r = story => {
            if let Err(e) = r {
                eprintln!("storyline stopped: {e:#}");
            }
        }
        _ = stop.cancelled() => {}
    }
    Ok(estates)
}

/// The storyline for a person at the board, on estates already started (the demo's three, in
/// order): the devices act up, then follow the operator's decisions; returns once every
/// incident is closed and the empty gate post covered. The browser tests drive it.
pub async fn board_story(estates: &[SimEstate], op: &Operator, base: &str) -> anyhow::Result<()> {
    board::story(estates, op, base).await
}

/// The devices' part of the storyline, the same whoever operates: a guard badges in, residents
/// come home, then at night the main gate's door is forced (estate A), the duty pump trips
/// (B) and a smoke detector goes off (C). Runs until 16 s after `start`.
async fn opening_beats(a: &SimEstate, b: &SimEstate, c: &SimEstate, start: Instant) -> anyhow::Result<()> {
    let at = |s: u64| tokio::time::sleep_until(start + Duration::from_secs(s));
    at(1).await;
    say(&format!(
        "{} — guard {} badges in at the main-gate post",
        a.spec.name, GATE_GUARDS[0].1
    ));
    a.door.badge("main-gate-east", &guard(0, &a.spec.id)).await?;
    at(5).await;
    say(&format!("{} — residents badging in at the main gate", a.spec.name));
    for _ in 0..3 {
        a.door.access("main-gate-east", true).await?;
    }
    at(8).await;
    say(&format!(
        "{} — 02:47, night shift: the main gate's east door is forced",
        a.spec.name
    ));
    a.door.forced("main-gate-east").await?;
    at(12).await;
    say(&format!("{} — the duty water pump trips", b.spec.name));
    b.pump_room.trip_pump(1);
    at(16).await;
    say(&format!(
        "{} — smoke detector, zone 3 (Block 3, 12F corridor); the panel reports over {}",
        c.spec.name,
        c.fire_panel.protocol()
    ));
    c.fire_panel
        .fire_alarm(3, "Block 3 12F corridor smoke detector")
        .await?;
    Ok(())
}

/// The id (and badge) of gate guard `i` of `estate`.
fn guard(i: usize, estate: &str) -> String {
    format!("{}-{estate}", GATE_GUARDS[i].0)
}

fn say(s: &str) {
    println!("story:  {s}");
}

async fn print_timeline(op: &Operator, id: i64, what: &str) -> anyhow::Result<()> {
    let detail = op.incident(id).await?;
    println!(
        "timeline of incident {id} ({what}, {}):",
        detail["state"].as_str().unwrap_or("?")
    );
    for line in timeline_lines(&detail) {
        println!("{line}");
    }
    Ok(())
}

async fn start_inbox(addr: Option<SocketAddr>) -> anyhow::Result<Inbox> {
    use anyhow::Context;
    let inbox = match addr {
        Some(a) => Inbox::start_random_at(a).await,
        None => Inbox::start_random().await,
    };
    inbox.context("starting the facility inbox")
}

/// Prints each message the facility inbox receives, as it arrives: its first line, and why
/// its signature did not verify when it did not.
async fn watch_inbox(inbox: Arc<Inbox>) {
    let mut seen = 0;
    loop {
        let (total, new) = inbox.next(seen).await;
        seen = total;
        for m in new {
            println!("{}", inbox_line(&m));
        }
    }
}

fn inbox_line(m: &InboxMessage) -> String {
    let mut line = format!("facility inbox ← {}", m.first_line());
    if let Some(why) = m.refused.as_deref().filter(|_| !m.signature_verified) {
        line += &format!("  [signature NOT verified: {why}]");
    }
    line
}

/// Prints the hub's live stream (server-sent events) of alarm, incident and notification
/// changes, one line each.
async fn watch_stream(base: String, stop: CancellationToken) {
    let client = match crate::credentials::client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("live stream: {e:#}");
            return;
        }
    };
    while !stop.is_cancelled() {
        let mut resp = match client.get(format!("{base}/api/v1/stream")).send().await {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if let Some(line) = frame.lines().find_map(|l| l.strip_prefix("data:"))
                    && let Ok(v) = serde_json::from_str::<Value>(line.trim())
                {
                    print_change(&v);
                }
            }
        }
    }
}

fn print_change(v: &Value) {
    if v["type"].is_null() {
        return; // the stream's hello
    }
    // Each change carries its own small `data` (see the hub's stream docs): print it whole.
    let data = match &v["data"] {
        Value::Object(m) => m
            .iter()
            .filter(|(_, x)| !x.is_null())
            .map(|(k, x)| match x {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    println!(
        "live:   {:<12} #{:<4} {:<20} {data}",
        v["type"].as_str().unwrap_or(""),
        v["id"],
        v["change"].as_str().unwrap_or("")
    );
}
