//! `load --via mqtt`: one `gatehouse-gateway` child process per estate, simulated
//! intercoms and door controllers publishing to them over real MQTT at a fixed total rate,
//! the hub storing what the gateways forward. The hub's database is the judge: every tag
//! sent is looked for there.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use chrono::SecondsFormat;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    LoadOptions,
    analysis::{COUNT_LOAD_EVENTS, analyse},
    report::{GatewayFigures, LoadReport},
    start_hub,
};
use crate::{
    harness::{
        STARTUP_TIMEOUT,
        alarms::AlarmClock,
        gateway_process::GatewayProcess,
        hub::load_estates,
        latency::{Latency, Summary},
        logs::{log_problems, log_tail},
        metrics::{hub_figures, scrape},
        procfs::{proc_status, process_figures},
        progress::Progress,
        report::mib,
        tally::Tally,
        toml::toml_str,
    },
    mqtt_device::MqttDevice,
    mqtt_login,
    net::free_local_addr,
};

/// How long the devices may take to connect (seen as their `online` status at the hub).
const DEVICES_TIMEOUT: Duration = Duration::from_secs(20);
/// How long after the end of the run a device may still wait for its MQTT client to take a
/// publish (the client's queue is full while the broker does not acknowledge).
const PUBLISH_GRACE: Duration = Duration::from_secs(5);
/// How long, after the hub has stored everything, the last Acks may take to reach the
/// gateways.
const ACK_SETTLE: Duration = Duration::from_secs(5);

/// A simulated device's id, kind and area; even indices are intercoms, odd ones doors.
fn device_id(estate: usize, index: usize) -> (String, &'static str) {
    if index.is_multiple_of(2) {
        (format!("e{estate}-intercom-{index:03}"), "intercom")
    } else {
        (format!("e{estate}-door-{index:03}"), "door")
    }
}

#[allow(clippy::too_many_arguments)]
fn load_gateway_toml(
    estate: &str,
    estate_index: usize,
    devices: usize,
    data_dir: &Path,
    hub: &str,
    mqtt: SocketAddr,
    http: SocketAddr,
    outbox_max_events: Option<u64>,
    password_hash: &str,
) -> String {
    let mut s = format!(
        "[gateway]\nid = {}\nestate = {}\ndata_dir = {}\nhubs = [{}]\nhttp_listen = \"{http}\"\n\n[uplink]\nplaintext = true\n\n[mqtt]\nlisten = \"{mqtt}\"\n",
        toml_str(&format!("gw-{estate}")),
        toml_str(estate),
        toml_str(&data_dir.display().to_string()),
        toml_str(hub),
    );
    if let Some(max) = outbox_max_events {
        let _ = write!(s, "\n[outbox]\nmax_events = {max}\n");
    }
    for i in 0..devices {
        let (id, kind) = device_id(estate_index, i);
        let _ = write!(
            s,
            "\n[[devices]]\nid = \"{id}\"\nkind = \"{kind}\"\narea = \"load\"\nmqtt_password_hash = {}\n",
            toml_str(password_hash)
        );
    }
    s
}

pub(super) async fn drive(opts: &LoadOptions, gateway_bin: &Path, data_dir: &Path) -> anyhow::Result<LoadReport> {
    let specs = load_estates(opts.estates);
    let mut hub = start_hub(opts, data_dir, &specs).await?;
    let db = hub.db.clone().context("the MQTT load needs the hub database")?;
    println!(
        "load: hub gRPC {} HTTP {} ({}); starting {} gateway processes ({})",
        hub.grpc_url,
        hub.http_base.as_deref().unwrap_or("?"),
        if hub.process.is_some() {
            "child process"
        } else {
            "already running"
        },
        opts.estates,
        gateway_bin.display()
    );
    let alarms = AlarmClock::default();
    let watch_stop = CancellationToken::new();
    let _watch_guard = watch_stop.clone().drop_guard();
    if opts.alarm_every > 0 {
        match &hub.http_base {
            Some(base) => alarms.watch(base, watch_stop.clone()).await?,
            None => println!("load: no --hub-api: alarm visibility is not measured"),
        }
    }

    // One random MQTT password for the run's devices (each still logs in under its own id;
    // hashing one per device would cost argon2 time per device for nothing a load run needs).
    let password = mqtt_login::random_password()?;
    let password_hash = mqtt_login::hash(&password)?;

    // Gateways, as child processes.
    let mut gateways = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let mqtt = free_local_addr().context("choosing an MQTT port")?;
        let http = free_local_addr().context("choosing a gateway HTTP port")?;
        let gw_dir = data_dir.join(format!("gw-{}", spec.id));
        let toml = load_gateway_toml(
            &spec.id,
            i,
            opts.devices_per_estate,
            &gw_dir,
            &hub.grpc_url,
            mqtt,
            http,
            opts.outbox_max_events,
            &password_hash,
        );
        let config = data_dir.join(format!("gw-{}.toml", spec.id));
        std::fs::write(&config, toml).with_context(|| format!("writing {}", config.display()))?;
        let log = data_dir.join(format!("gw-{}.log", spec.id));
        gateways.push(GatewayProcess::spawn(
            gateway_bin,
            &config,
            log,
            gw_dir.join("outbox.db"),
            format!("gw-{}", spec.id),
            mqtt,
            http,
        )?);
    }
    for gw in &mut gateways {
        wait_mqtt(gw).await?;
    }
    wait_for(
        &db,
        "SELECT COUNT(*) FROM gateways WHERE connected",
        opts.estates as i64,
        STARTUP_TIMEOUT,
        &mut gateways,
    )
    .await
    .context("waiting for every gateway to connect to the hub")?;

    // Devices.
    let mut devices = Vec::with_capacity(opts.estates * opts.devices_per_estate);
    for (e, gw) in gateways.iter().enumerate() {
        for i in 0..opts.devices_per_estate {
            let (id, kind) = device_id(e, i);
            devices.push((
                Arc::new(MqttDevice::connect(gw.mqtt, &id, Some(&password))),
                kind == "intercom",
            ));
        }
    }
    if let Err(e) = wait_for(
        &db,
        "SELECT COUNT(*) FROM events WHERE body_kind = 'status'",
        devices.len() as i64,
        DEVICES_TIMEOUT,
        &mut gateways,
    )
    .await
    {
        tracing::warn!(error = %e, "not every device was seen online; publishing anyway");
        println!("load: warning: not every device was seen online ({e:#}); publishing anyway");
    }
    println!(
        "load: {} devices connected; publishing {} events/s for {:?}",
        devices.len(),
        opts.rate,
        opts.duration
    );

    // Publishing.
    let sent = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs_f64(devices.len() as f64 / opts.rate);
    let began = Instant::now();
    let end = began + opts.duration;
    let mut tasks = JoinSet::new();
    for (k, (device, intercom)) in devices.iter().enumerate() {
        // Spread the devices' first publishes over one period.
        let first = began + period.mul_f64(k as f64 / devices.len() as f64);
        // Doors are half the devices: each sends every (alarm_every / 2)-th event as a
        // forced door, so one event in `alarm_every` overall is an alarm.
        let alarm_every = if *intercom || opts.alarm_every == 0 {
            0
        } else {
            (opts.alarm_every / 2).max(1)
        };
        tasks.spawn(publish(
            device.clone(),
            *intercom,
            first,
            period,
            end,
            sent.clone(),
            (alarm_every, alarms.clone()),
        ));
    }
    let progress = Progress::new();
    let cpu_at_start = hub.cpu_s();
    let mut tallies = Vec::with_capacity(devices.len());
    let mut tick = tokio::time::interval_at((began + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let mut last_sent = 0;
    let mut last_at = began;
    while !tasks.is_empty() {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(t)) => tallies.push(t),
                Some(Err(e)) => bail!("a device task failed: {e}"),
                None => {}
            },
            now = tick.tick() => {
                let now = now.into_std();
                let total = sent.load(Relaxed);
                let rate = (total - last_sent) as f64 / now.duration_since(last_at).as_secs_f64();
                (last_sent, last_at) = (total, now);
                let stored = count(&db, COUNT_LOAD_EVENTS).await.unwrap_or(-1);
                let rss = sample_gateways(&mut gateways)?;
                hub.sample()?;
                progress.show(
                    now.duration_since(began),
                    opts.duration,
                    &format!(
                        "sent {total:>8} ({rate:>7.0}/s)  stored {stored:>8}  alarms {}/{}  gateway RSS max {}  hub RSS {}",
                        alarms.seen_count(),
                        alarms.sent_count(),
                        mib(rss),
                        mib(hub.process.as_ref().map_or(0, |p| p.rss_max_kib))
                    ),
                );
            }
        }
    }
    progress.done();
    let publish_s = began.elapsed().as_secs_f64();
    let total_sent = sent.load(Relaxed);
    let publish_errors: u64 = tallies.iter().map(|t| t.failed.len() as u64).sum();
    println!(
        "load: publishing done: {total_sent} sent in {publish_s:.1} s ({:.0}/s); waiting for the hub to store them",
        total_sent as f64 / publish_s
    );

    // Drain: until everything sent is stored, or nothing new for `drain_stall`.
    let drain_began = Instant::now();
    let mut last_progress = Instant::now();
    let mut stored_before = -1;
    let mut last_print = Instant::now();
    let drained = loop {
        let stored = count(&db, COUNT_LOAD_EVENTS).await?;
        if stored >= total_sent as i64 {
            break true;
        }
        if stored != stored_before {
            stored_before = stored;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= opts.drain_stall {
            break false;
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            sample_gateways(&mut gateways)?;
            println!(
                "[drain {:>3.0}s] stored {stored:>8} of {total_sent}",
                drain_began.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drain_s = drain_began.elapsed().as_secs_f64();

    // Figures from the live processes, then stop the gateways and devices. First let the
    // last Acks reach the gateways (everything appended to an outbox acknowledged), so
    // their counters are final.
    sample_gateways(&mut gateways)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .context("building an HTTP client")?;
    let settle_deadline = Instant::now() + ACK_SETTLE;
    let scrapes = loop {
        let mut scrapes = Vec::with_capacity(gateways.len());
        for gw in &gateways {
            scrapes.push(scrape(&client, &format!("http://{}", gw.http)).await);
        }
        let settled = scrapes.iter().all(|m| {
            let get = |name: &str| m.as_ref().and_then(|m| m.get(name).copied());
            matches!(
                (get("gatehouse_gateway_outbox_appended_total"), get("gatehouse_gateway_uplink_acked_total")),
                (Some(appended), Some(acked)) if acked >= appended
            )
        });
        if settled || Instant::now() >= settle_deadline {
            break scrapes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut gateway_figures = Vec::with_capacity(gateways.len());
    for (gw, m) in gateways.iter().zip(scrapes) {
        let get = |name: &str| m.as_ref().and_then(|m| m.get(name).copied()).map(|v| v as u64);
        gateway_figures.push(GatewayFigures {
            id: gw.id.clone(),
            process: process_figures(gw.child.id()),
            sampled_rss_max_kib: gw.rss_max_kib,
            mqtt_accepted: get("gatehouse_gateway_mqtt_accepted_total"),
            mqtt_rejected: m.as_ref().map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with("gatehouse_gateway_mqtt_rejected_total"))
                    .map(|(_, v)| *v as u64)
                    .sum()
            }),
            outbox_appended: get("gatehouse_gateway_outbox_appended_total"),
            uplink_acked: get("gatehouse_gateway_uplink_acked_total"),
            outbox_shed: get("gatehouse_gateway_outbox_shed_total"),
            outbox_depth_gauge: get("gatehouse_gateway_outbox_depth"),
            outbox_rows: None,
            log_problems: log_problems(&gw.log),
            uplink_connects: get("gatehouse_gateway_uplink_connects_total"),
        });
    }
    hub.sample()?;
    let cpu_at_end = hub.cpu_s();
    let hub_metrics = match &hub.http_base {
        Some(base) => scrape(&client, base).await,
        None => None,
    };
    let hub_figures = hub_figures(hub_metrics.as_ref());
    alarms.settle(Duration::from_secs(5)).await;
    watch_stop.cancel();
    let (alarm_latency, alarms_missing) = alarms.latency();
    let sim_process = process_figures(std::process::id());
    let outboxes: Vec<PathBuf> = gateways.iter().map(|g| g.outbox.clone()).collect();
    drop(gateways);
    drop(devices);
    // The rows really left in each outbox (the gateways are gone; the files are ours).
    for (figures, path) in gateway_figures.iter_mut().zip(&outboxes) {
        figures.outbox_rows = outbox_rows(path).await;
    }

    // The hub's database tells the rest.
    let analysis = analyse(&db, &tallies).await?;
    db.close().await;
    let hub_process = hub.figures();
    let run_s = began.elapsed().as_secs_f64();
    drop(hub);
    let hub_cpu_percent = match (cpu_at_start, cpu_at_end) {
        (Some(a), Some(b)) if run_s > 0.0 => Some((b - a) / run_s * 100.0),
        _ => None,
    };

    Ok(LoadReport {
        via: "mqtt".into(),
        checked_by: "hub database: every tag sent, counted".into(),
        estates: opts.estates,
        devices_per_estate: opts.devices_per_estate,
        target_rate: opts.rate,
        duration_s: opts.duration.as_secs_f64(),
        data_dir: data_dir.display().to_string(),
        sent: total_sent,
        publish_errors,
        offered_rate: total_sent as f64 / publish_s,
        stored: analysis.stored,
        lost: analysis.lost,
        duplicated: analysis.duplicated,
        unexpected: analysis.unexpected,
        drained,
        drain_s,
        span_s: analysis.span_s,
        sustained_rate: if analysis.span_s > 0.0 {
            analysis.stored as f64 / analysis.span_s
        } else {
            0.0
        },
        latency_ms: Latency::from_histogram(&analysis.e2e),
        to_gateway_ms: Latency::from_histogram(&analysis.to_gateway),
        gateway_to_hub_ms: Latency::from_histogram(&analysis.to_hub),
        gateway_rss_kib: Summary::of(gateway_figures.iter().map(|g| g.process.vm_rss_kib)),
        gateway_hwm_kib: Summary::of(gateway_figures.iter().map(|g| g.process.vm_hwm_kib)),
        gateways: gateway_figures,
        sim_process,
        ack_latency_ms: None,
        alarm_latency_ms: (opts.alarm_every > 0).then_some(alarm_latency),
        alarms_sent: alarms.sent_count(),
        alarms_missing,
        hub_process: hub_process.as_ref().map(|p| p.0.clone()),
        hub_rss_max_kib: hub_process.map(|p| p.1),
        hub_cpu_percent,
        stream_errors: Vec::new(),
        hub: hub_figures,
    })
}

/// One device's publishing: event `n` is due at `first + n × period`, until `end`. A device
/// that falls behind publishes at once until it has caught up.
async fn publish(
    device: Arc<MqttDevice>,
    intercom: bool,
    first: Instant,
    period: Duration,
    end: Instant,
    sent: Arc<AtomicU64>,
    (alarm_every, alarms): (u64, AlarmClock),
) -> Tally {
    let mut tally = Tally::new(device.id.clone());
    // Slot k of the schedule; tagged events are numbered apart, forced doors are not.
    let mut k = 0u64;
    loop {
        let due = first + period.mul_f64(k as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        k += 1;
        if alarm_every > 0 && k.is_multiple_of(alarm_every) {
            let door = format!("load-{}-{k}", device.id);
            alarms.sent(door.clone());
            if let Err(e) = device.event(json!({"type": "door_forced", "door": door})).await {
                tracing::warn!(error = %e, "forced-door publish refused by the MQTT client");
            }
            continue;
        }
        let n = tally.next;
        tally.next += 1;
        let tag = format!("{}/{n}", device.id);
        let ts = chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let payload = if intercom {
            json!({"type": "call_answered", "call_id": tag, "ts": ts})
        } else {
            json!({"type": "access", "door": "load-door", "result": "granted", "credential": tag, "ts": ts})
        };
        // A client that cannot take the publish by the end (plus a grace) has not sent it.
        match tokio::time::timeout_at((end + PUBLISH_GRACE).into(), device.event(payload)).await {
            Ok(Ok(())) => {
                sent.fetch_add(1, Relaxed);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "publish refused by the MQTT client");
                tally.failed.push(n);
            }
            Err(_) => {
                tracing::warn!(device = %device.id, "the MQTT client took no publish for too long; device stops");
                tally.failed.push(n);
                break;
            }
        }
    }
    tally
}

/// Rows in a stopped gateway's outbox file.
async fn outbox_rows(path: &Path) -> Option<u64> {
    let options = SqliteConnectOptions::new().filename(path);
    let pool = match SqlitePoolOptions::new().max_connections(1).connect_with(options).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open the outbox");
            return None;
        }
    };
    let n: Option<i64> = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .ok();
    pool.close().await;
    n.and_then(|n| u64::try_from(n).ok())
}

async fn count(db: &SqlitePool, sql: &'static str) -> anyhow::Result<i64> {
    sqlx::query_scalar(sql)
        .fetch_one(db)
        .await
        .with_context(|| format!("querying the hub database: {sql}"))
}

/// Polls `sql` (a count) until it reaches `want`; fails after `timeout` or if a gateway dies.
async fn wait_for(
    db: &SqlitePool,
    sql: &'static str,
    want: i64,
    timeout: Duration,
    gateways: &mut [GatewayProcess],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        for gw in gateways.iter_mut() {
            gw.check_alive()?;
        }
        let n = count(db, sql).await?;
        if n >= want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("only {n} of {want} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the gateway's broker accepts TCP connections.
async fn wait_mqtt(gw: &mut GatewayProcess) -> anyhow::Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        gw.check_alive()?;
        if tokio::net::TcpStream::connect(gw.mqtt).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "gateway {} did not accept MQTT connections on {} within {STARTUP_TIMEOUT:?}; end of {}:\n{}",
                gw.id,
                gw.mqtt,
                gw.log.display(),
                log_tail(&gw.log, 15)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Samples every gateway's RSS (failing if one died); returns the largest now.
fn sample_gateways(gateways: &mut [GatewayProcess]) -> anyhow::Result<u64> {
    let mut max = 0;
    for gw in gateways.iter_mut() {
        gw.check_alive()?;
        gw.sample();
        max = max.max(proc_status(gw.child.id()).map_or(0, |s| s.0));
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_config_loads() {
        let toml = load_gateway_toml(
            "load-0",
            0,
            3,
            Path::new("/tmp/gw"),
            "http://127.0.0.1:1",
            "127.0.0.1:2".parse().unwrap(),
            "127.0.0.1:3".parse().unwrap(),
            Some(5000),
            mqtt_login::test_password_hash(),
        );
        let config = gatehouse_gateway::config::Config::from_toml(&toml).expect("valid configuration");
        assert_eq!(config.devices.len(), 3);
        assert_eq!(config.devices[1].id, "e0-door-001");
        assert_eq!(config.outbox.max_events, 5000);
        assert!(config.devices.iter().all(|d| d.mqtt_password_hash.is_some()));
    }
}
