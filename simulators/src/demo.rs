//! `gatehouse-sim demo`: one hub and three estates, each with its gateway and simulated
//! devices, background traffic, and a storyline — a forced door at night at one estate, a
//! pump trip at another, a fire alarm at the third — that a scripted operator then works
//! through the gate-house procedure. Prints the hub's live stream as it happens and each
//! incident's timeline when it closes.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    operator::{Operator, timeline_lines},
    scenario::{GATE_GUARDS, SimEstate, demo_estates, start_estate, start_hub},
};

pub struct DemoOptions {
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Stop after this long; `None` runs until Ctrl-C.
    pub run_for: Option<Duration>,
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let estates_spec = demo_estates();
    let hub = start_hub(opts.http_addr, &opts.data_dir, &estates_spec).await?;
    let base = format!("http://{}", hub.http_addr());
    println!("Gatehouse demo: hub at {base}");
    println!("  alarms {base}/api/v1/alarms · incidents {base}/api/v1/incidents · live {base}/api/v1/stream");
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(watch_stream(base.clone(), stop.clone()));
    let mut estates = Vec::new();
    for spec in estates_spec {
        let e = start_estate(spec, hub.grpc_addr(), &opts.data_dir).await?;
        let mqtt = e.gateway.mqtt_addr.map(|a| a.to_string()).unwrap_or_default();
        println!(
            "  {} ({}): gateway MQTT on {mqtt}, pump room (Modbus TCP) on {}",
            e.spec.name,
            e.spec.id,
            e.pump_room.addr()
        );
        estates.push(e);
    }
    for e in &estates {
        spawn_background(e, &stop);
    }
    let story = tokio::spawn(storyline(estates, Operator::new(&base, "operator Li"), stop.clone()));

    match opts.run_for {
        Some(d) => tokio::time::sleep(d).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    stop.cancel();
    watcher.abort();
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
    println!("demo stopped");
    Ok(())
}

fn spawn_background(e: &SimEstate, stop: &CancellationToken) {
    let (gate, s) = (e.vehicle_gate.clone(), stop.clone());
    tokio::spawn(async move { gate.background("vehicle-barrier", 20, s).await });
    let (intercom, s) = (e.intercom.clone(), stop.clone());
    tokio::spawn(async move { intercom.background("block-3-lobby", 6, s).await });
}

/// The scripted incidents and the operator's handling of each. Returns the estates so the
/// caller can stop them; stops early (without error) when `stop` is cancelled.
async fn storyline(estates: Vec<SimEstate>, op: Operator, stop: CancellationToken) -> anyhow::Result<Vec<SimEstate>> {
    tokio::select! {
        r = script(&estates, &op) => {
            if let Err(e) = r {
                eprintln!("storyline stopped: {e:#}");
            }
        }
        _ = stop.cancelled() => {}
    }
    Ok(estates)
}

async fn script(estates: &[SimEstate], op: &Operator) -> anyhow::Result<()> {
    let [a, b, c, ..] = estates else { return Ok(()) };
    let start = Instant::now();
    let at = |s: u64| tokio::time::sleep_until(start + Duration::from_secs(s));
    let wait = Duration::from_secs(20);

    let (wang, zhao) = (guard(0, &a.spec.id), guard(1, &a.spec.id));
    at(1).await;
    say(&format!(
        "{} — guard {} badges in at the main-gate post",
        a.spec.name, GATE_GUARDS[0].1
    ));
    a.door.badge("main-gate-east", &wang).await?;
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

    // The forced door: the patrol post checks CCTV — a resident's child pushed the door.
    at(24).await;
    let door = op.open_incident(&a.spec.id, "intrusion", wait).await?;
    let door_id = door["id"].as_i64().context("incident id")?;
    say(&format!(
        "operator — acknowledges incident {door_id} (forced door) and assesses it on CCTV"
    ));
    op.acknowledge_incident(door_id, "patrol post checking CCTV").await?;
    op.transition(door_id, "assessed", "CCTV: a resident's child pushed the door open")
        .await?;
    op.false_alarm(door_id, "resident's child pushed the door; door closed and checked")
        .await?;
    print_timeline(op, door_id, "forced door").await?;

    // The pump: facility incident; the standby pump has taken over; the duty pump is reset.
    at(32).await;
    let pump = op.open_incident(&b.spec.id, "pump_flooding", wait).await?;
    let pump_id = pump["id"].as_i64().context("incident id")?;
    say(&format!(
        "operator — acknowledges incident {pump_id} (pump trip); facility team on the way"
    ));
    op.acknowledge_incident(pump_id, "facility team informed").await?;
    op.transition(
        pump_id,
        "assessed",
        "duty pump tripped; standby running; pressure recovering",
    )
    .await?;
    op.transition(pump_id, "reported", "reported to the estate supervisor")
        .await?;
    op.transition(pump_id, "on_site", "technician in the pump room").await?;
    say(&format!("{} — technician resets the duty pump", b.spec.name));
    b.pump_room.reset();
    op.complete_procedure(pump_id, "done by the technician").await?;
    let fire = op.open_incident(&c.spec.id, "fire", wait).await?;
    let fire_id = fire["id"].as_i64().context("incident id")?;
    at(44).await;
    op.transition(pump_id, "recorded", "repair ticket raised for the duty pump")
        .await?;
    op.transition(pump_id, "closed", "pump room back to normal").await?;
    print_timeline(op, pump_id, "pump trip").await?;

    // The gate post: its guard calls in sick; after the grace period the empty post is an
    // alarm; the operator accepts the recommended cover and the cover badges in.
    at(48).await;
    say(&format!(
        "{} — {} calls in sick and leaves the main-gate post",
        a.spec.name, GATE_GUARDS[0].1
    ));
    op.sick_call(&wang).await?;
    let alarmed_gap = async {
        loop {
            let gaps = op.gaps(&a.spec.id).await?;
            if let Some(g) = gaps.into_iter().find(|g| g["alarmed"] == true) {
                return anyhow::Ok(g);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let gap = tokio::time::timeout(Duration::from_secs(60), alarmed_gap)
        .await
        .context("the empty gate post raised no alarm within 60 s")??;
    let gap_id = gap["id"].as_str().context("gap id")?.to_string();
    let cover = op.cover_gap(&gap_id).await?;
    say(&format!(
        "operator — accepts cover proposal {} (score {}): {} takes the post",
        cover["id"].as_str().unwrap_or("?"),
        cover["score"],
        GATE_GUARDS[1].1
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    say(&format!(
        "{} — {} badges in at the main gate",
        a.spec.name, GATE_GUARDS[1].1
    ));
    a.door.badge("main-gate-east", &zhao).await?;

    // The fire: left unacknowledged long enough for the duty manager escalation at 60 s.
    at(80).await;
    say(&format!(
        "operator — acknowledges fire incident {fire_id} and confirms location and extent"
    ));
    op.acknowledge_incident(fire_id, "monitoring room confirms on CCTV")
        .await?;
    op.transition(
        fire_id,
        "assessed",
        "real: smoke in Block 3 12F corridor, no flames seen",
    )
    .await?;
    op.transition(
        fire_id,
        "reported",
        "supervisor and management centre informed; 119 called",
    )
    .await?;
    op.transition(
        fire_id,
        "on_site",
        "guards on 12F; one meets the fire brigade at the gate",
    )
    .await?;
    op.complete_procedure(fire_id, "done").await?;
    at(95).await;
    say(&format!(
        "{} — the fire brigade clears the scene; the panel is reset",
        c.spec.name
    ));
    c.fire_panel.reset().await?;
    at(100).await;
    op.transition(fire_id, "recorded", "burnt cooking in 1203; detector cleaned")
        .await?;
    op.transition(fire_id, "closed", "all residents accounted for").await?;
    print_timeline(op, fire_id, "fire").await?;
    say("storyline complete; background traffic continues until Ctrl-C");
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

/// Prints the hub's live stream (server-sent events) of alarm, incident and notification
/// changes, one line each.
async fn watch_stream(base: String, stop: CancellationToken) {
    let client = reqwest::Client::new();
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
