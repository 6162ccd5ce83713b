//! `gatehouse-sim load`: a load run that prints figures (it is not a test).
//!
//! One hub runs in this process; each estate's gateway runs as a child process of the
//! `gatehouse-gateway` binary (so its resident memory can be read on its own); simulated
//! intercoms and door controllers publish over real MQTT at a fixed total rate. Every event
//! carries `<device>/<n>` (intercom `call_id`, door `credential`) and its publish time as
//! `ts`, so the hub's database alone tells what was lost, duplicated, and how long each event
//! took from publish to the hub's commit.
//!
//! Children are killed when the run ends, fails or is interrupted (Ctrl-C, SIGTERM): every
//! child lives in a [`GatewayProcess`], whose `Drop` kills and reaps it.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use chrono::SecondsFormat;
use gatehouse_proto::{self as pb, event::Body};
use hdrhistogram::Histogram;
use prost::Message as _;
use serde::Serialize;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    mqtt_device::MqttDevice,
    net::free_local_addr,
    scenario::{self, EstateSpec},
};

/// The gateway binary's file name.
const GATEWAY_BIN: &str = "gatehouse-gateway";
/// How long a gateway may take to listen for MQTT and to say Hello to the hub.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the devices may take to connect (seen as their `online` status at the hub).
const DEVICES_TIMEOUT: Duration = Duration::from_secs(20);
/// Stored load events: the body kinds the load devices produce (intercom `call_answered`,
/// door `access`).
const COUNT_LOAD_EVENTS: &str = "SELECT COUNT(*) FROM events WHERE body_kind IN ('intercom', 'access')";
const READ_LOAD_EVENTS: &str = "SELECT device_id, occurred_at_ms, received_at_ms, ingested_at_ms, payload \
     FROM events WHERE body_kind IN ('intercom', 'access')";
/// How long after the end of the run a device may still wait for its MQTT client to take a
/// publish (the client's queue is full while the broker does not acknowledge).
const PUBLISH_GRACE: Duration = Duration::from_secs(5);
/// How long, after the hub has stored everything, the last Acks may take to reach the
/// gateways.
const ACK_SETTLE: Duration = Duration::from_secs(5);
/// The largest latency the histograms hold (one hour); larger values are counted as this.
const LATENCY_MAX_MS: u64 = 3_600_000;
/// Linux reports CPU time in clock ticks; 100 a second on every mainstream kernel config.
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub estates: usize,
    pub devices_per_estate: usize,
    /// Events per second in total, spread over every device.
    pub rate: f64,
    pub duration: Duration,
    /// Where the hub database and gateway outboxes go; a fresh temporary directory if `None`.
    pub data_dir: Option<PathBuf>,
    /// The `gatehouse-gateway` binary; by default the one next to this executable.
    pub gateway_bin: Option<PathBuf>,
    /// After publishing stops, give up waiting for the hub once nothing new was stored for
    /// this long.
    pub drain_stall: Duration,
    /// The gateways' `outbox.max_events`; the gateway's default if `None`.
    pub outbox_max_events: Option<u64>,
}

impl LoadOptions {
    fn validate(&self) -> anyhow::Result<()> {
        if self.estates == 0 || self.devices_per_estate == 0 {
            bail!("--estates and --devices-per-estate must be at least 1");
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!("--rate must be a positive number of events per second");
        }
        if self.duration.is_zero() {
            bail!("--duration must be longer than zero");
        }
        Ok(())
    }
}

/// The figures of one run; printed by [`LoadReport::render`] and written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub estates: usize,
    pub devices_per_estate: usize,
    pub target_rate: f64,
    pub duration_s: f64,
    pub data_dir: String,
    /// Publishes handed to the devices' MQTT clients (QoS 1).
    pub sent: u64,
    pub publish_errors: u64,
    /// `sent` over the time the devices were publishing.
    pub offered_rate: f64,
    /// Load events in the hub database (each stored copy counted).
    pub stored: u64,
    /// Sent but not stored.
    pub lost: u64,
    /// Extra stored copies of one device sequence number.
    pub duplicated: u64,
    /// Stored load events with a sequence number no device counted as sent.
    pub unexpected: u64,
    /// Whether the hub caught up with everything sent before the drain gave up.
    pub drained: bool,
    /// From the end of publishing until the hub had stored everything (or gave up).
    pub drain_s: f64,
    /// From the first publish to the last ingest of a load event.
    pub span_s: f64,
    /// `stored` over `span_s`.
    pub sustained_rate: f64,
    /// Device publish (`ts`) to the hub's commit (`ingested_at_ms`).
    pub latency_ms: Latency,
    /// Device publish to the gateway's receipt (`received_at_ms`).
    pub to_gateway_ms: Latency,
    /// Gateway receipt to the hub's commit.
    pub gateway_to_hub_ms: Latency,
    pub gateways: Vec<GatewayFigures>,
    pub gateway_rss_kib: Summary,
    pub gateway_hwm_kib: Summary,
    /// This process: the hub, the simulated devices and the load driver together.
    pub sim_process: ProcessFigures,
    pub hub: HubFigures,
}

impl LoadReport {
    /// Nothing lost and nothing duplicated.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub max: u64,
    pub mean: f64,
}

impl Summary {
    fn of(values: impl Iterator<Item = u64>) -> Self {
        let (mut max, mut sum, mut n) = (0, 0u64, 0u64);
        for v in values {
            max = max.max(v);
            sum += v;
            n += 1;
        }
        Self {
            max,
            mean: if n == 0 { 0.0 } else { sum as f64 / n as f64 },
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessFigures {
    pub pid: u32,
    /// Resident memory at the end of the run (VmRSS).
    pub vm_rss_kib: u64,
    /// Peak resident memory (VmHWM).
    pub vm_hwm_kib: u64,
    /// User + system CPU time over the whole life of the process.
    pub cpu_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayFigures {
    pub id: String,
    pub process: ProcessFigures,
    /// Largest VmRSS seen while sampling once a second.
    pub sampled_rss_max_kib: u64,
    /// From the gateway's `/metrics` at the end of the run.
    pub mqtt_accepted: Option<u64>,
    pub mqtt_rejected: Option<u64>,
    pub outbox_appended: Option<u64>,
    pub uplink_acked: Option<u64>,
    pub outbox_shed: Option<u64>,
    /// The `gatehouse_gateway_outbox_depth` gauge as the gateway reported it.
    pub outbox_depth_gauge: Option<u64>,
    /// Rows left in the outbox file after the run (read after the gateway stopped).
    pub outbox_rows: Option<u64>,
    /// WARN and ERROR lines in the gateway's log, by message (most frequent first).
    pub log_problems: Vec<LogProblem>,
    pub uplink_connects: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogProblem {
    pub level: String,
    /// The start of the message (target and text, without its fields).
    pub message: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HubFigures {
    pub events_ingested: Option<u64>,
    pub duplicates_dropped: Option<u64>,
    pub batches_committed: Option<u64>,
    pub commits: Option<u64>,
    /// Mean writer transaction time.
    pub commit_mean_ms: Option<f64>,
}

/// Runs the load and returns its figures. Stops early (killing the gateways) on `stop`,
/// Ctrl-C or SIGTERM.
pub async fn run(opts: LoadOptions, stop: CancellationToken) -> anyhow::Result<LoadReport> {
    opts.validate()?;
    let gateway_bin = locate_gateway_binary(opts.gateway_bin.as_deref())?;
    let (data_dir, temporary) = prepare_data_dir(opts.data_dir.as_deref())?;
    let stop = stop.child_token();
    spawn_sigterm_listener(stop.clone());
    println!("load: data in {}", data_dir.display());
    let result = tokio::select! {
        r = drive(&opts, &gateway_bin, &data_dir) => r,
        _ = stop.cancelled() => Err(anyhow!("interrupted; the gateways were stopped")),
    };
    // Everything (children included) is dropped by now.
    match &result {
        Ok(report) if temporary && report.clean() => {
            if let Err(e) = std::fs::remove_dir_all(&data_dir) {
                tracing::warn!(dir = %data_dir.display(), error = %e, "could not remove the temporary data directory");
            }
        }
        _ => println!("load: data kept in {}", data_dir.display()),
    }
    result
}

#[cfg(unix)]
fn spawn_sigterm_listener(stop: CancellationToken) {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => stop.cancel(),
                    _ = stop.cancelled() => {}
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM"),
    }
}

#[cfg(not(unix))]
fn spawn_sigterm_listener(_stop: CancellationToken) {}

/// The `gatehouse-gateway` binary: `explicit`, else next to this executable (or one level
/// up, when this runs from `target/<profile>/deps`).
fn locate_gateway_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("the gateway binary {} does not exist", p.display());
    }
    let exe = std::env::current_exe().context("finding this executable's path")?;
    let name = format!("{GATEWAY_BIN}{}", std::env::consts::EXE_SUFFIX);
    let dir = exe.parent().context("this executable has no parent directory")?;
    let candidates = [Some(dir.join(&name)), dir.parent().map(|d| d.join(&name))];
    if let Some(found) = candidates.iter().flatten().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let profile = if cfg!(debug_assertions) { "" } else { " --release" };
    bail!(
        "{name} not found next to {} — build it first with `cargo build{profile} --bins` \
         (the same profile as gatehouse-sim), or pass --gateway-bin",
        exe.display()
    )
}

/// The given directory (refused if it already holds a hub database), else a fresh one under
/// the system temporary directory. Returns whether it is temporary.
fn prepare_data_dir(given: Option<&Path>) -> anyhow::Result<(PathBuf, bool)> {
    let (dir, temporary) = match given {
        Some(d) => (d.to_path_buf(), false),
        None => (
            std::env::temp_dir().join(format!("gatehouse-load-{}-{}", std::process::id(), pb::now_ms())),
            true,
        ),
    };
    if dir.join("hub").join("hub.db").exists() {
        bail!(
            "{} already holds a load run's hub database; give an empty --data-dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok((dir, temporary))
}

/// One `gatehouse-gateway` child process; killed and reaped when dropped.
struct GatewayProcess {
    id: String,
    child: Child,
    mqtt: SocketAddr,
    http: SocketAddr,
    log: PathBuf,
    outbox: PathBuf,
    rss_max_kib: u64,
}

impl GatewayProcess {
    fn spawn(
        bin: &Path,
        config: &Path,
        log: PathBuf,
        outbox: PathBuf,
        id: String,
        mqtt: SocketAddr,
        http: SocketAddr,
    ) -> anyhow::Result<Self> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            id,
            child,
            mqtt,
            http,
            log,
            outbox,
            rss_max_kib: 0,
        })
    }

    /// Fails if the child has exited, with the end of its log.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "gateway {} exited ({status}); end of {}:\n{}",
                self.id,
                self.log.display(),
                log_tail(&self.log, 15)
            ),
            Err(e) => bail!("checking on gateway {}: {e}", self.id),
        }
    }

    fn sample(&mut self) {
        if let Some(rss) = proc_status(self.child.id()).map(|s| s.0) {
            self.rss_max_kib = self.rss_max_kib.max(rss);
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Counts the WARN and ERROR lines of a gateway log (tracing's plain format) by message.
fn log_problems(path: &Path) -> Vec<LogProblem> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut counts: HashMap<(String, String), u64> = HashMap::new();
    for line in text.lines() {
        // `<time> <LEVEL> <target>: <text> <key=value>...`
        let Some((_time, rest)) = line.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let Some((level, message)) = rest.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        if level != "WARN" && level != "ERROR" {
            continue;
        }
        // Fields follow the text as key=value; the text alone names the problem.
        let message = message.trim_start();
        let cut = message
            .find('=')
            .and_then(|eq| message[..eq].rfind(' '))
            .unwrap_or(message.len());
        let key: String = message[..cut].chars().take(120).collect();
        *counts.entry((level.to_string(), key)).or_default() += 1;
    }
    let mut problems: Vec<LogProblem> = counts
        .into_iter()
        .map(|((level, message), count)| LogProblem { level, message, count })
        .collect();
    problems.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.message.cmp(&b.message)));
    problems
}

fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read the log: {e})"),
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

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
    hub: SocketAddr,
    mqtt: SocketAddr,
    http: SocketAddr,
    outbox_max_events: Option<u64>,
) -> String {
    let mut s = format!(
        "[gateway]\nid = {}\nestate = {}\ndata_dir = {}\nhubs = [{}]\nhttp_listen = \"{http}\"\n\n[mqtt]\nlisten = \"{mqtt}\"\n",
        toml_str(&format!("gw-{estate}")),
        toml_str(estate),
        toml_str(&data_dir.display().to_string()),
        toml_str(&format!("http://{hub}")),
    );
    if let Some(max) = outbox_max_events {
        let _ = write!(s, "\n[outbox]\nmax_events = {max}\n");
    }
    for i in 0..devices {
        let (id, kind) = device_id(estate_index, i);
        let _ = write!(s, "\n[[devices]]\nid = \"{id}\"\nkind = \"{kind}\"\narea = \"load\"\n");
    }
    s
}

/// What one device task did.
struct Tally {
    device: String,
    /// Sequence numbers 0..next were attempted.
    next: u64,
    /// Attempts that the MQTT client refused (not sent).
    failed: Vec<u64>,
}

async fn drive(opts: &LoadOptions, gateway_bin: &Path, data_dir: &Path) -> anyhow::Result<LoadReport> {
    let specs: Vec<EstateSpec> = (0..opts.estates)
        .map(|i| EstateSpec::new(&format!("load-{i}"), &format!("Load estate {i}")))
        .collect();
    let hub_dir = data_dir.join("hub");
    let hub = scenario::start_hub("127.0.0.1:0".parse()?, &hub_dir, &specs).await?;
    let db = open_read_only(&hub_dir.join("hub.db")).await?;
    println!(
        "load: hub gRPC {} HTTP {}; starting {} gateway processes ({})",
        hub.grpc_addr(),
        hub.http_addr(),
        opts.estates,
        gateway_bin.display()
    );

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
            hub.grpc_addr(),
            mqtt,
            http,
            opts.outbox_max_events,
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
            devices.push((Arc::new(MqttDevice::connect(gw.mqtt, &id)), kind == "intercom"));
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
        tasks.spawn(publish(device.clone(), *intercom, first, period, end, sent.clone()));
    }
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
                println!(
                    "[{:>4.0}s] sent {total:>8} ({rate:>7.0}/s)  stored {stored:>8}  gateway RSS max {:.1} MiB",
                    now.duration_since(began).as_secs_f64(),
                    rss as f64 / 1024.0
                );
            }
        }
    }
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
            scrapes.push(scrape(&client, gw.http).await);
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
    let hub_metrics = scrape(&client, hub.http_addr()).await;
    let hget = |name: &str| hub_metrics.as_ref().and_then(|m| m.get(name).copied());
    let hub_figures = HubFigures {
        events_ingested: hget("gatehouse_hub_events_ingested_total").map(|v| v as u64),
        duplicates_dropped: hget("gatehouse_hub_duplicates_dropped_total").map(|v| v as u64),
        batches_committed: hget("gatehouse_hub_batches_committed_total").map(|v| v as u64),
        commits: hget("gatehouse_hub_commit_seconds_count").map(|v| v as u64),
        commit_mean_ms: match (
            hget("gatehouse_hub_commit_seconds_sum"),
            hget("gatehouse_hub_commit_seconds_count"),
        ) {
            (Some(sum), Some(n)) if n > 0.0 => Some(sum / n * 1000.0),
            _ => None,
        },
    };
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
    hub.shutdown().await;

    Ok(LoadReport {
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
) -> Tally {
    let mut tally = Tally {
        device: device.id.clone(),
        next: 0,
        failed: Vec::new(),
    };
    loop {
        let due = first + period.mul_f64(tally.next as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
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

async fn open_read_only(path: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .with_context(|| format!("opening the hub database {} read-only", path.display()))
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

/// (VmRSS, VmHWM) in KiB from `/proc/<pid>/status`.
fn proc_status(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU seconds from `/proc/<pid>/stat`.
fn proc_cpu_s(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_S)
}

fn process_figures(pid: u32) -> ProcessFigures {
    let (vm_rss_kib, vm_hwm_kib) = proc_status(pid).unwrap_or((0, 0));
    ProcessFigures {
        pid,
        vm_rss_kib,
        vm_hwm_kib,
        cpu_s: proc_cpu_s(pid).unwrap_or(0.0),
    }
}

/// Prometheus text from `http://addr/metrics`, as name (with labels) → value; `None` if the
/// scrape failed.
async fn scrape(client: &reqwest::Client, addr: SocketAddr) -> Option<HashMap<String, f64>> {
    let text = match client.get(format!("http://{addr}/metrics")).send().await {
        Ok(r) if r.status().is_success() => r.text().await.ok()?,
        Ok(r) => {
            tracing::warn!(%addr, status = %r.status(), "metrics scrape refused");
            return None;
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "metrics scrape failed");
            return None;
        }
    };
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect(),
    )
}

struct Analysis {
    stored: u64,
    lost: u64,
    duplicated: u64,
    unexpected: u64,
    span_s: f64,
    e2e: Histogram<u64>,
    to_gateway: Histogram<u64>,
    to_hub: Histogram<u64>,
}

/// Reads every stored load event and checks it against what was sent.
async fn analyse(db: &SqlitePool, tallies: &[Tally]) -> anyhow::Result<Analysis> {
    // Per device: how many stored copies of each sequence number.
    let mut copies: HashMap<&str, Vec<u32>> = tallies
        .iter()
        .map(|t| (t.device.as_str(), vec![0u32; t.next as usize]))
        .collect();
    // Fixed bounds: an auto-resizing histogram silently clamps `saturating_record` at its
    // current (tiny) top.
    let histogram = || Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MS, 3).context("creating a histogram");
    let (mut e2e, mut to_gateway, mut to_hub) = (histogram()?, histogram()?, histogram()?);
    let (mut stored, mut unexpected) = (0u64, 0u64);
    let (mut first_ms, mut last_ms) = (i64::MAX, i64::MIN);

    let rows: Vec<(String, i64, i64, i64, Vec<u8>)> = sqlx::query_as(READ_LOAD_EVENTS)
        .fetch_all(db)
        .await
        .context("reading the stored load events")?;
    for (device, occurred, received, ingested, payload) in rows {
        stored += 1;
        let tag = match pb::Event::decode(payload.as_slice()) {
            Ok(event) => match event.body {
                Some(Body::Intercom(i)) => i.call_id,
                Some(Body::Access(a)) => a.credential,
                _ => String::new(),
            },
            Err(e) => {
                tracing::warn!(device = %device, error = %e, "a stored payload does not decode");
                String::new()
            }
        };
        let seq = tag
            .rsplit_once('/')
            .filter(|(d, _)| *d == device)
            .and_then(|(_, n)| n.parse::<usize>().ok());
        let Some(slot) = seq.and_then(|n| copies.get_mut(device.as_str())?.get_mut(n)) else {
            unexpected += 1;
            continue;
        };
        *slot += 1;
        if *slot > 1 {
            continue;
        }
        first_ms = first_ms.min(occurred);
        last_ms = last_ms.max(ingested);
        let ms = |from: i64, to: i64| u64::try_from(to - from).unwrap_or(0);
        e2e.saturating_record(ms(occurred, ingested));
        to_gateway.saturating_record(ms(occurred, received));
        to_hub.saturating_record(ms(received, ingested));
    }

    let (mut lost, mut duplicated) = (0u64, 0u64);
    for t in tallies {
        let Some(c) = copies.get(t.device.as_str()) else {
            continue;
        };
        for (n, &k) in c.iter().enumerate() {
            if k == 0 && !t.failed.contains(&(n as u64)) {
                lost += 1;
            }
            duplicated += u64::from(k.saturating_sub(1));
        }
    }
    Ok(Analysis {
        stored,
        lost,
        duplicated,
        unexpected,
        span_s: if last_ms >= first_ms {
            (last_ms - first_ms) as f64 / 1000.0
        } else {
            0.0
        },
        e2e,
        to_gateway,
        to_hub,
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "?".into(), |v| v.to_string())
}

impl LoadReport {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let lat = |s: &mut String, name: &str, l: &Latency| {
            let _ = writeln!(
                s,
                "  {name:<26} p50 {:>6}  p95 {:>6}  p99 {:>6}  max {:>6}  (mean {:.1}, n={})",
                l.p50, l.p95, l.p99, l.max, l.mean, l.count
            );
        };
        let _ = writeln!(s, "== gatehouse load report ==");
        let _ = writeln!(
            s,
            "setup       {} estates x {} devices = {} MQTT devices; target {} events/s for {:.0} s",
            self.estates,
            self.devices_per_estate,
            self.estates * self.devices_per_estate,
            self.target_rate,
            self.duration_s
        );
        let _ = writeln!(
            s,
            "sent        {} (offered {:.0}/s; {} publish errors)",
            self.sent, self.offered_rate, self.publish_errors
        );
        let _ = writeln!(
            s,
            "stored      {} ({}; drain after publishing {:.1} s)",
            self.stored,
            if self.drained {
                "hub caught up"
            } else {
                "hub did NOT catch up"
            },
            self.drain_s
        );
        let verdict = |n: u64| if n == 0 { "OK" } else { "FAIL" };
        let _ = writeln!(s, "lost        {}  {}", self.lost, verdict(self.lost));
        let _ = writeln!(s, "duplicated  {}  {}", self.duplicated, verdict(self.duplicated));
        if self.unexpected > 0 {
            let _ = writeln!(s, "unexpected  {} (stored, not counted as sent)", self.unexpected);
        }
        let _ = writeln!(
            s,
            "sustained   {:.0} events/s stored (first publish to last ingest: {:.1} s)",
            self.sustained_rate, self.span_s
        );
        let _ = writeln!(s, "latency, ms (clock: ms resolution)");
        lat(&mut s, "publish -> hub commit", &self.latency_ms);
        lat(&mut s, "publish -> gateway", &self.to_gateway_ms);
        lat(&mut s, "gateway -> hub commit", &self.gateway_to_hub_ms);
        let _ = writeln!(
            s,
            "gateway memory  VmRSS max {} mean {} | VmHWM max {} mean {}",
            mib(self.gateway_rss_kib.max),
            mib(self.gateway_rss_kib.mean as u64),
            mib(self.gateway_hwm_kib.max),
            mib(self.gateway_hwm_kib.mean as u64)
        );
        for g in &self.gateways {
            let _ = writeln!(
                s,
                "  {:<12} pid {:>7}  VmRSS {:>9}  VmHWM {:>9}  cpu {:>5.1} s",
                g.id,
                g.process.pid,
                mib(g.process.vm_rss_kib),
                mib(g.process.vm_hwm_kib),
                g.process.cpu_s,
            );
            let _ = writeln!(
                s,
                "  {:<12} mqtt accepted {} rejected {} | outbox appended {} acked {} shed {} rows left {} (depth gauge {}) | hub connects {}",
                "",
                opt(&g.mqtt_accepted),
                opt(&g.mqtt_rejected),
                opt(&g.outbox_appended),
                opt(&g.uplink_acked),
                opt(&g.outbox_shed),
                opt(&g.outbox_rows),
                opt(&g.outbox_depth_gauge),
                opt(&g.uplink_connects)
            );
            for p in &g.log_problems {
                let short: String = p.message.chars().take(100).collect();
                // rumqttd logs a TCP connection that sends no CONNECT as an error: the
                // gateway's own readiness probe and this driver's make two.
                let note = if p.message.contains("Error while handling MQTT connect packet") && p.count <= 2 {
                    " (TCP readiness probes)"
                } else {
                    ""
                };
                let _ = writeln!(s, "  {:<12} log {:<5} x{:<5} {short}{note}", "", p.level, p.count);
            }
        }
        let _ = writeln!(
            s,
            "hub process     VmRSS {} VmHWM {} cpu {:.1} s (pid {}; includes the simulated devices and this driver)",
            mib(self.sim_process.vm_rss_kib),
            mib(self.sim_process.vm_hwm_kib),
            self.sim_process.cpu_s,
            self.sim_process.pid
        );
        let _ = writeln!(
            s,
            "hub writer      {} commits, {} batches, mean commit {} ms, {} duplicates dropped by (gateway, seq)",
            opt(&self.hub.commits),
            opt(&self.hub.batches_committed),
            self.hub
                .commit_mean_ms
                .map_or_else(|| "?".into(), |v| format!("{v:.2}")),
            opt(&self.hub.duplicates_dropped)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_str("x\ny"), r#""x\u000Ay""#);
    }

    #[test]
    fn gateway_config_loads() {
        let toml = load_gateway_toml(
            "load-0",
            0,
            3,
            Path::new("/tmp/gw"),
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            "127.0.0.1:3".parse().unwrap(),
            Some(5000),
        );
        let config = gatehouse_gateway::config::Config::from_toml(&toml).expect("valid configuration");
        assert_eq!(config.devices.len(), 3);
        assert_eq!(config.devices[1].id, "e0-door-001");
        assert_eq!(config.outbox.max_events, 5000);
    }

    #[test]
    fn log_problems_are_counted_by_message() {
        let dir = std::env::temp_dir().join(format!("gatehouse-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("gw.log");
        std::fs::write(
            &log,
            "2026-11-26T18:34:31.774668Z  INFO gatehouse_gateway::gateway: gateway started gateway=gw-1\n\
             2026-11-26T18:34:35.513002Z  WARN sqlx::query: slow statement: execution time exceeded alert threshold summary=\"DELETE\" elapsed=2.3s\n\
             2026-11-26T18:34:39.724476Z  WARN sqlx::query: slow statement: execution time exceeded alert threshold summary=\"DELETE\" elapsed=3.2s\n\
             2026-11-26T18:34:40.000000Z ERROR gatehouse_gateway::uplink: hub link down hub=x\n",
        )
        .unwrap();
        let p = log_problems(&log);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].level.as_str(), p[0].message.as_str(), p[0].count),
            (
                "WARN",
                "sqlx::query: slow statement: execution time exceeded alert threshold",
                2
            )
        );
        assert_eq!(
            (p[1].level.as_str(), p[1].message.as_str()),
            ("ERROR", "gatehouse_gateway::uplink: hub link down")
        );
    }

    #[test]
    fn latency_histogram_keeps_large_values() {
        let mut h = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MS, 3).unwrap();
        h.saturating_record(0);
        h.saturating_record(9_000);
        let l = Latency::from_histogram(&h);
        assert_eq!(l.count, 2);
        assert!((8_990..=9_010).contains(&l.max), "max {}", l.max);
    }

    #[test]
    fn proc_figures_of_this_process() {
        let (rss, hwm) = proc_status(std::process::id()).expect("/proc is readable");
        assert!(rss > 0 && hwm >= rss);
        assert!(proc_cpu_s(std::process::id()).is_some());
    }
}
