//! `gatehouse-sim modbus-load`: the gateway's Modbus polling cost, printed (not a test).
//!
//! N light Modbus TCP servers run in this process, one listener each, over a shared set of
//! register blocks whose values drift slowly (a fraction of the points change beyond their
//! deadband every second, the floats also jitter inside it), so report-by-exception has
//! work to do. One `gatehouse-gateway` child process polls all of them (N `kind = "modbus"`
//! devices × P points, a mix of u16 and f32 in holding and input registers and discrete
//! bits, adjacent so each table is one read) and forwards what changed to a
//! `gatehouse-hub` child. The figures are the gateway's own: CPU (utime + stime from
//! `/proc/<pid>/stat`) over a steady-state window after every device answered once, as % of
//! one core; resident memory; Modbus requests/s, events/s and failures from its `/metrics`.
//!
//! `points` is the layout, `plc` the servers, `config` the gateway's configuration,
//! `report` the figures; this module runs it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use tokio_util::sync::CancellationToken;

use crate::{
    harness::{
        binaries::locate_gateway_binary,
        data_dir::prepare_data_dir,
        gateway_process::GatewayProcess,
        hub::HubUnderTest,
        logs::log_problems,
        metrics::scrape,
        procfs::{proc_cpu_s, proc_status, process_figures, threads},
        progress::Progress,
        report::mib,
        signals::spawn_sigterm_listener,
    },
    net::free_local_addr,
    scenario::EstateSpec,
};

pub mod cli;
mod config;
mod plc;
mod points;
mod report;

pub use report::ModbusLoadReport;

/// The estate (and hub configuration entry) of the polled devices.
const ESTATE: &str = "modbus-load";
/// How long the gateway may take to poll every device once and connect to the hub.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct ModbusLoadOptions {
    /// Simulated Modbus servers, one gateway device each.
    pub devices: usize,
    /// Points per device.
    pub points: usize,
    /// The gateway's poll interval per device.
    pub poll: Duration,
    /// The gateway's request timeout.
    pub timeout: Duration,
    /// The measured (steady-state) window.
    pub duration: Duration,
    /// Wait this long after every device has answered once, before the window opens (the
    /// first poll reports every point; the burst must be through the uplink).
    pub warmup: Duration,
    /// Share of the points whose value moves beyond the deadband each second (0–1).
    pub change: f64,
    /// The gateway's `[modbus] refresh_s` (every point re-sent this often).
    pub refresh_s: u64,
    pub data_dir: Option<PathBuf>,
    pub gateway_bin: Option<PathBuf>,
    pub hub_bin: Option<PathBuf>,
}

/// Counters read from the gateway's `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    requests: u64,
    failures: u64,
    reconnects: u64,
    offline: u64,
    appended: u64,
    acked: u64,
}

async fn counters(client: &reqwest::Client, http: SocketAddr) -> Option<Counters> {
    let m = scrape(client, &format!("http://{http}")).await?;
    let get = |name: &str| m.get(name).copied().unwrap_or(0.0) as u64;
    Some(Counters {
        requests: get("gatehouse_gateway_modbus_requests_total"),
        failures: m
            .iter()
            .filter(|(k, _)| k.starts_with("gatehouse_gateway_modbus_failures_total"))
            .map(|(_, v)| *v as u64)
            .sum(),
        reconnects: get("gatehouse_gateway_modbus_reconnects_total"),
        offline: get("gatehouse_gateway_modbus_devices_offline"),
        appended: get("gatehouse_gateway_outbox_appended_total"),
        acked: get("gatehouse_gateway_uplink_acked_total"),
    })
}

/// Runs the Modbus load and returns its figures.
pub async fn run(opts: ModbusLoadOptions, stop: CancellationToken) -> anyhow::Result<ModbusLoadReport> {
    if opts.devices == 0 || opts.points == 0 {
        bail!("--devices and --points must be at least 1");
    }
    if !(0.0..=1.0).contains(&opts.change) {
        bail!("--change must be between 0 and 1");
    }
    let gateway_bin = locate_gateway_binary(opts.gateway_bin.as_deref())?;
    let (data_dir, temporary) = prepare_data_dir(opts.data_dir.as_deref())?;
    let stop = stop.child_token();
    spawn_sigterm_listener(stop.clone());
    println!("modbus-load: data in {}", data_dir.display());
    let servers_stop = stop.child_token();
    let _servers_guard = servers_stop.clone().drop_guard();
    let result = tokio::select! {
        r = drive(&opts, &gateway_bin, &data_dir, &servers_stop) => r,
        _ = stop.cancelled() => Err(anyhow!("interrupted; the gateway and hub were stopped")),
    };
    match &result {
        Ok(report) if temporary && report.clean() => {
            let _ = std::fs::remove_dir_all(&data_dir);
        }
        _ => println!("modbus-load: data kept in {}", data_dir.display()),
    }
    result
}

async fn drive(
    opts: &ModbusLoadOptions,
    gateway_bin: &Path,
    data_dir: &Path,
    servers_stop: &CancellationToken,
) -> anyhow::Result<ModbusLoadReport> {
    let layout = Arc::new(points::layout(opts.points));
    let addrs = plc::start_servers(opts, &layout, servers_stop).await?;
    let requests_per_poll = points::requests_per_poll(&layout);
    let hub = HubUnderTest::child(
        opts.hub_bin.as_deref(),
        data_dir,
        &[EstateSpec::new(ESTATE, "Modbus load")],
    )
    .await?;
    let http = free_local_addr().context("choosing the gateway's HTTP port")?;
    let gw_dir = data_dir.join("gateway");
    let config = data_dir.join("gateway.toml");
    std::fs::write(
        &config,
        config::gateway_toml(opts, &gw_dir, &hub.grpc_url, http, &addrs),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let mut gw = GatewayProcess::spawn(
        gateway_bin,
        &config,
        data_dir.join("gateway.log"),
        gw_dir.join("outbox.db"),
        format!("gw-{ESTATE}"),
        http,
        http,
    )?;
    println!(
        "modbus-load: {} simulated servers up; gateway pid {} polls {} devices x {} points every {:?}",
        addrs.len(),
        gw.child.id(),
        opts.devices,
        opts.points,
        opts.poll
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .context("building an HTTP client")?;

    // The gateway's HTTP listener first (scraping earlier only logs failures).
    let deadline = Instant::now() + WARMUP_TIMEOUT;
    while tokio::net::TcpStream::connect(http).await.is_err() {
        gw.check_alive()?;
        if Instant::now() >= deadline {
            bail!("the gateway did not serve /metrics on {http} within {WARMUP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Warm-up: every device polled once (its first answer reports every point), the first
    // burst acknowledged by the hub.
    let want = (opts.devices * requests_per_poll) as u64;
    let deadline = Instant::now() + WARMUP_TIMEOUT;
    loop {
        gw.check_alive()?;
        if let Some(c) = counters(&client, http).await
            && c.requests >= want
            && c.appended >= (opts.devices * opts.points) as u64
            && c.acked >= c.appended.saturating_sub(opts.devices as u64 * opts.points as u64 / 10)
        {
            break;
        }
        if Instant::now() >= deadline {
            bail!("the gateway did not poll every device once within {WARMUP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("modbus-load: every device answered; warming up {:?}", opts.warmup);
    tokio::time::sleep(opts.warmup).await;

    // The window.
    let pid = gw.child.id();
    let sim_pid = std::process::id();
    let begin = counters(&client, http)
        .await
        .context("scraping the gateway's /metrics")?;
    let (gw_cpu0, sim_cpu0, hub_cpu0) = (proc_cpu_s(pid), proc_cpu_s(sim_pid), hub.cpu_s());
    let began = Instant::now();
    let progress = Progress::new();
    let mut tick = tokio::time::interval_at((began + Duration::from_secs(1)).into(), Duration::from_secs(1));
    while began.elapsed() < opts.duration {
        tick.tick().await;
        gw.check_alive()?;
        gw.sample();
        let c = counters(&client, http).await.unwrap_or_default();
        let cpu = proc_cpu_s(pid).zip(gw_cpu0).map_or(0.0, |(b, a)| b - a);
        let t = began.elapsed().as_secs_f64();
        progress.show(
            began.elapsed(),
            opts.duration,
            &format!(
                "requests {:>7.0}/s  events {:>6.0}/s  failures {}  gateway CPU {:>5.1}%  RSS {}",
                (c.requests - begin.requests) as f64 / t,
                (c.appended - begin.appended) as f64 / t,
                c.failures - begin.failures,
                cpu / t * 100.0,
                mib(gw.rss_max_kib)
            ),
        );
    }
    let (gw_cpu1, sim_cpu1, hub_cpu1) = (proc_cpu_s(pid), proc_cpu_s(sim_pid), hub.cpu_s());
    let window_s = began.elapsed().as_secs_f64();
    let end = counters(&client, http)
        .await
        .context("scraping the gateway's /metrics")?;
    progress.done();
    let pct = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (b - a) / window_s * 100.0);
    let gw_cpu_s = gw_cpu0.zip(gw_cpu1).map_or(0.0, |(a, b)| b - a);
    gw.sample();
    let figures = process_figures(pid);
    let gateway_threads = threads(pid);

    // Let the last events be acknowledged (the polling goes on meanwhile).
    let settle = Instant::now() + Duration::from_secs(10);
    let last = loop {
        let c = counters(&client, http).await.unwrap_or(end);
        if c.acked >= end.appended || Instant::now() >= settle {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let hub_rss = proc_status_of(&hub);
    let hub_cpu = pct(hub_cpu0, hub_cpu1);
    let rss_max = gw.rss_max_kib;
    let log = gw.log.clone();
    drop(gw);
    servers_stop.cancel();
    drop(hub);
    Ok(ModbusLoadReport {
        devices: opts.devices,
        points_per_device: opts.points,
        poll_ms: opts.poll.as_millis() as u64,
        requests_per_poll,
        change_per_s: opts.change,
        refresh_s: opts.refresh_s,
        window_s,
        gateway_cpu_percent: gw_cpu_s / window_s * 100.0,
        gateway_cpu_s: gw_cpu_s,
        gateway_rss_kib: figures.vm_rss_kib,
        gateway_rss_max_kib: rss_max,
        gateway_hwm_kib: figures.vm_hwm_kib,
        gateway_threads,
        modbus_requests_per_s: (end.requests - begin.requests) as f64 / window_s,
        events_per_s: (end.appended - begin.appended) as f64 / window_s,
        failures: end.failures - begin.failures,
        reconnects: end.reconnects - begin.reconnects,
        devices_offline: end.offline,
        // Appended up to the window's end, acknowledged by the settle's end.
        outbox_appended: end.appended,
        uplink_acked: last.acked,
        servers_cpu_percent: pct(sim_cpu0, sim_cpu1).unwrap_or(0.0),
        hub_cpu_percent: hub_cpu,
        hub_rss_kib: hub_rss,
        log_problems: log_problems(&log),
    })
}

fn proc_status_of(hub: &HubUnderTest) -> Option<u64> {
    hub.figures().and_then(|(p, _)| proc_status(p.pid)).map(|(rss, _)| rss)
}
