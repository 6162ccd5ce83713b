//! `gatehouse-sim demo`: one hub and three estates, each with its gateway and simulated
//! devices, background traffic, and a storyline — a forced door at night at one estate, a
//! pump trip at another, a fire alarm at the third. Prints alarms as the hub lists them.

use std::{collections::HashSet, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::scenario::{SimEstate, demo_estates, start_estate, start_hub};

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
    println!("Gatehouse demo: hub at {base}  (alarms: {base}/api/v1/alarms, estates: {base}/api/v1/estates)");
    let mut estates = Vec::new();
    for spec in estates_spec {
        let e = start_estate(spec, hub.grpc_addr(), &opts.data_dir).await?;
        println!(
            "  {} ({}): gateway MQTT on {:?}, pump room on {}",
            e.spec.name,
            e.spec.id,
            e.gateway.mqtt_addr,
            e.pump_room.addr()
        );
        estates.push(e);
    }
    let stop = CancellationToken::new();
    for e in &estates {
        spawn_background(e, &stop);
    }
    let story = tokio::spawn(storyline(estates));
    let watcher = tokio::spawn(watch_alarms(base, stop.clone()));

    let until = async {
        match opts.run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        _ = until => {}
        r = watcher => { r.context("alarm watcher")??; }
    }
    stop.cancel();
    if let Ok(estates) = tokio::time::timeout(Duration::from_secs(5), story)
        .await
        .context("storyline")?
    {
        for e in estates? {
            e.gateway.shutdown().await;
            e.pump_room.shutdown();
        }
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

/// The scripted incidents, a few seconds apart so each can be watched arriving.
async fn storyline(estates: Vec<SimEstate>) -> anyhow::Result<Vec<SimEstate>> {
    let start = Instant::now();
    let at = |s: u64| tokio::time::sleep_until(start + Duration::from_secs(s));
    if let [a, b, c, ..] = estates.as_slice() {
        at(5).await;
        println!("story: {} — residents badging in at the main gate", a.spec.name);
        for _ in 0..3 {
            a.door.access("main-gate-east", true).await?;
        }
        at(8).await;
        println!(
            "story: {} — 02:47 on the night shift: the main gate's east door is forced",
            a.spec.name
        );
        a.door.forced("main-gate-east").await?;
        at(12).await;
        println!("story: {} — the duty water pump trips", b.spec.name);
        b.pump_room.trip_pump(1);
        at(16).await;
        println!(
            "story: {} — smoke detector in zone 3 (Block 3, 12th floor corridor)",
            c.spec.name
        );
        c.fire_panel
            .fire_alarm("3", "Block 3 12F corridor smoke detector")
            .await?;
    }
    Ok(estates)
}

/// Polls the hub's alarm list and prints each alarm change once.
async fn watch_alarms(base: String, stop: CancellationToken) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut seen = HashSet::new();
    let url = format!("{base}/api/v1/alarms");
    while !stop.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let alarms: Vec<Value> = match client.get(&url).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %e, "polling alarms");
                continue;
            }
        };
        for a in alarms {
            let key = (
                a["id"].to_string(),
                a["active"].to_string(),
                a["acknowledged"].to_string(),
            );
            if seen.insert(key) {
                let state = if a["active"].as_bool() == Some(true) {
                    "ACTIVE "
                } else {
                    "cleared"
                };
                println!(
                    "alarm: {state} {} {:<10} {:<22} {:<24} {}",
                    a["priority"].as_str().unwrap_or("?"),
                    a["estate"].as_str().unwrap_or("?"),
                    a["device"].as_str().unwrap_or("?"),
                    a["condition"].as_str().unwrap_or("?"),
                    a["message"].as_str().unwrap_or(""),
                );
            }
        }
    }
    Ok(())
}
