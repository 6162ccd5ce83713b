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
    /// What carries the load: MQTT devices through gateway processes, or synthetic gateway
    /// streams straight to the hub.
    pub via: Via,
    /// An already running hub's gRPC URL; `None`: start `gatehouse-hub` as a child.
    pub hub: Option<String>,
    /// That hub's HTTP base URL (alarm visibility over `/api/v1/stream`, `/metrics`).
    pub hub_api: Option<String>,
    /// That hub's SQLite database (read-only), for the loss and duplicate check.
    pub hub_db: Option<PathBuf>,
    /// The `gatehouse-hub` binary; by default the one next to this executable.
    pub hub_bin: Option<PathBuf>,
    /// One event in this many is a forced door (a new P2 alarm), timed until the hub's
    /// live stream shows it; 0: none.
    pub alarm_every: u64,
    /// `--via grpc`: how often each synthetic gateway sends what fell due.
    pub grpc_batch: Duration,
}

/// What carries a load run's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Simulated devices → gateway processes (embedded broker, outbox, uplink) → hub.
    Mqtt,
    /// Synthetic gateway streams (`GatewayLink.Connect`) → hub: the hub alone.
    Grpc,
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
        if self.via == Via::Mqtt && self.hub.is_some() && self.hub_db.is_none() {
            bail!("--via mqtt against a running --hub needs --hub-db (the loss check reads the stored events)");
        }
        if self.hub.is_none() && (self.hub_api.is_some() || self.hub_db.is_some()) {
            bail!("--hub-api and --hub-db go with --hub");
        }
        Ok(())
    }
}

/// The figures of one run; printed by [`LoadReport::render`] and written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// `mqtt` or `grpc`.
    pub via: String,
    /// How loss and duplicates were checked.
    pub checked_by: String,
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
    /// `--via grpc`: from sending a batch to the hub's Ack of it (committed), per event.
    pub ack_latency_ms: Option<Latency>,
    /// Sending a forced door to the alarm on the hub's live stream (after its commit).
    pub alarm_latency_ms: Option<Latency>,
    pub alarms_sent: u64,
    /// Forced doors whose alarm the live stream never showed.
    pub alarms_missing: u64,
    pub gateways: Vec<GatewayFigures>,
    pub gateway_rss_kib: Summary,
    pub gateway_hwm_kib: Summary,
    /// This process: the simulated devices or streams and the load driver.
    pub sim_process: ProcessFigures,
    /// The hub child process (none when the hub was already running).
    pub hub_process: Option<ProcessFigures>,
    pub hub_rss_max_kib: Option<u64>,
    /// Hub CPU over the run, in % of one core.
    pub hub_cpu_percent: Option<f64>,
    pub stream_errors: Vec<String>,
    pub hub: HubFigures,
}

impl LoadReport {
    /// Nothing lost and nothing duplicated.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.alarms_missing == 0
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
    let gateway_bin = match opts.via {
        Via::Mqtt => Some(locate_gateway_binary(opts.gateway_bin.as_deref())?),
        Via::Grpc => None,
    };
    let (data_dir, temporary) = prepare_data_dir(opts.data_dir.as_deref())?;
    let stop = stop.child_token();
    spawn_sigterm_listener(stop.clone());
    println!("load: data in {}", data_dir.display());
    let result = tokio::select! {
        r = async {
            match &gateway_bin {
                Some(bin) => drive(&opts, bin, &data_dir).await,
                None => drive_grpc(&opts, &data_dir).await,
            }
        } => r,
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
pub(crate) fn spawn_sigterm_listener(stop: CancellationToken) {
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
pub(crate) fn spawn_sigterm_listener(_stop: CancellationToken) {}

/// The `gatehouse-gateway` binary: `explicit`, else next to this executable.
pub(crate) fn locate_gateway_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    locate_binary(GATEWAY_BIN, explicit)
}

/// The given directory (refused if it already holds a hub database), else a fresh one under
/// the system temporary directory. Returns whether it is temporary.
pub(crate) fn prepare_data_dir(given: Option<&Path>) -> anyhow::Result<(PathBuf, bool)> {
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
pub(crate) struct GatewayProcess {
    pub(crate) id: String,
    pub(crate) child: Child,
    mqtt: SocketAddr,
    http: SocketAddr,
    pub(crate) log: PathBuf,
    outbox: PathBuf,
    pub(crate) rss_max_kib: u64,
}

impl GatewayProcess {
    pub(crate) fn spawn(
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
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
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

    pub(crate) fn sample(&mut self) {
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
pub(crate) fn log_problems(path: &Path) -> Vec<LogProblem> {
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

pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read the log: {e})"),
    }
}

/// A TOML basic string.
pub(crate) fn toml_str(s: &str) -> String {
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
    hub: &str,
    mqtt: SocketAddr,
    http: SocketAddr,
    outbox_max_events: Option<u64>,
) -> String {
    let mut s = format!(
        "[gateway]\nid = {}\nestate = {}\ndata_dir = {}\nhubs = [{}]\nhttp_listen = \"{http}\"\n\n[mqtt]\nlisten = \"{mqtt}\"\n",
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
    let mut hub = HubUnderTest::start(opts, data_dir, &specs).await?;
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
    let mut tally = Tally {
        device: device.id.clone(),
        next: 0,
        failed: Vec::new(),
    };
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
pub(crate) fn proc_status(pid: u32) -> Option<(u64, u64)> {
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
pub(crate) fn proc_cpu_s(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_S)
}

pub(crate) fn process_figures(pid: u32) -> ProcessFigures {
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
pub(crate) async fn scrape(client: &reqwest::Client, addr: &str) -> Option<HashMap<String, f64>> {
    let text = match client.get(format!("{addr}/metrics")).send().await {
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

pub(crate) fn mib(kib: u64) -> String {
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
        let _ = writeln!(s, "== gatehouse load report (via {}) ==", self.via);
        if self.via == "grpc" {
            let _ = writeln!(
                s,
                "setup       {} synthetic gateway streams x {} devices; target {} events/s for {:.0} s",
                self.estates, self.devices_per_estate, self.target_rate, self.duration_s
            );
        } else {
            let _ = writeln!(
                s,
                "setup       {} estates x {} devices = {} MQTT devices; target {} events/s for {:.0} s",
                self.estates,
                self.devices_per_estate,
                self.estates * self.devices_per_estate,
                self.target_rate,
                self.duration_s
            );
        }
        let _ = writeln!(s, "checked by  {}", self.checked_by);
        for e in self.stream_errors.iter().take(5) {
            let _ = writeln!(s, "stream err  {e}");
        }
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
        if self.via == "mqtt" {
            lat(&mut s, "publish -> gateway", &self.to_gateway_ms);
            lat(&mut s, "gateway -> hub commit", &self.gateway_to_hub_ms);
        }
        if let Some(a) = &self.ack_latency_ms {
            lat(&mut s, "batch sent -> hub Ack", a);
        }
        if let Some(a) = &self.alarm_latency_ms {
            lat(&mut s, "device -> alarm visible", a);
            let _ = writeln!(
                s,
                "  {:<26} {} forced doors sent, {} never shown on /api/v1/stream  {}",
                "",
                self.alarms_sent,
                self.alarms_missing,
                if self.alarms_missing == 0 { "OK" } else { "FAIL" }
            );
        }
        if let Some(p) = &self.hub_process {
            let _ = writeln!(
                s,
                "hub process     pid {} VmRSS {} (sampled max {}) VmHWM {} cpu {:.1} s = {} of one core over the run",
                p.pid,
                mib(p.vm_rss_kib),
                mib(self.hub_rss_max_kib.unwrap_or(0)),
                mib(p.vm_hwm_kib),
                p.cpu_s,
                self.hub_cpu_percent.map_or_else(|| "?".into(), |c| format!("{c:.0}%"))
            );
        }
        let _ = writeln!(
            s,
            "{}gateway memory  VmRSS max {} mean {} | VmHWM max {} mean {}",
            if self.gateways.is_empty() {
                "(no gateway processes) "
            } else {
                ""
            },
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
                let _ = writeln!(s, "  {:<12} log {:<5} x{:<5} {short}", "", p.level, p.count);
            }
        }
        let _ = writeln!(
            s,
            "load driver     VmRSS {} VmHWM {} cpu {:.1} s (pid {}; the simulated devices or streams)",
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
            "http://127.0.0.1:1",
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

// ---- the hub under test -----------------------------------------------------------------

/// The hub binary's file name.
const HUB_BIN: &str = "gatehouse-hub";

/// The hub a run loads: a `gatehouse-hub` child process of this run (its CPU and memory
/// are read from /proc), or one already running (`--hub`).
pub(crate) struct HubUnderTest {
    /// gRPC URL the gateways (or synthetic streams) connect to.
    pub(crate) grpc_url: String,
    /// HTTP base URL (`http://host:port`) for `/api/v1/stream`, `/metrics`.
    http_base: Option<String>,
    /// The hub database, read-only: what is checked for loss and duplicates.
    db: Option<SqlitePool>,
    process: Option<HubProcess>,
}

impl HubUnderTest {
    async fn start(opts: &LoadOptions, data_dir: &Path, estates: &[EstateSpec]) -> anyhow::Result<Self> {
        if let Some(url) = &opts.hub {
            let db = match &opts.hub_db {
                Some(p) => Some(open_read_only(p).await?),
                None => None,
            };
            return Ok(Self {
                grpc_url: url.clone(),
                http_base: opts.hub_api.clone(),
                db,
                process: None,
            });
        }
        Self::child(opts.hub_bin.as_deref(), data_dir, estates).await
    }

    /// Starts `gatehouse-hub` as a child process with its database under `data_dir`.
    pub(crate) async fn child(hub_bin: Option<&Path>, data_dir: &Path, estates: &[EstateSpec]) -> anyhow::Result<Self> {
        let bin = locate_binary(HUB_BIN, hub_bin)?;
        let hub_dir = data_dir.join("hub");
        std::fs::create_dir_all(&hub_dir).with_context(|| format!("creating {}", hub_dir.display()))?;
        let grpc = free_local_addr().context("choosing the hub's gRPC port")?;
        let http = free_local_addr().context("choosing the hub's HTTP port")?;
        let db_path = hub_dir.join("hub.db");
        let toml = scenario::hub_toml(grpc, http, &format!("sqlite://{}", db_path.display()), estates);
        let config = data_dir.join("hub.toml");
        std::fs::write(&config, toml).with_context(|| format!("writing {}", config.display()))?;
        let log = data_dir.join("hub.log");
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("GATEHOUSE_LOAD_HUB_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut process = HubProcess {
            child,
            log,
            rss_max_kib: 0,
        };
        // Ready when /readyz answers 200.
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            process.check_alive()?;
            if let Ok(r) = client.get(format!("http://{http}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "the hub did not become ready within {STARTUP_TIMEOUT:?}; end of {}:\n{}",
                    process.log.display(),
                    log_tail(&process.log, 15)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let db = open_read_only(&db_path).await?;
        Ok(Self {
            grpc_url: format!("http://{grpc}"),
            http_base: Some(format!("http://{http}")),
            db: Some(db),
            process: Some(process),
        })
    }

    pub(crate) fn sample(&mut self) -> anyhow::Result<()> {
        if let Some(p) = &mut self.process {
            p.check_alive()?;
            if let Some((rss, _)) = proc_status(p.child.id()) {
                p.rss_max_kib = p.rss_max_kib.max(rss);
            }
        }
        Ok(())
    }

    pub(crate) fn cpu_s(&self) -> Option<f64> {
        self.process.as_ref().and_then(|p| proc_cpu_s(p.child.id()))
    }

    pub(crate) fn figures(&self) -> Option<(ProcessFigures, u64)> {
        self.process
            .as_ref()
            .map(|p| (process_figures(p.child.id()), p.rss_max_kib))
    }
}

/// The `gatehouse-hub` child; killed and reaped when dropped.
struct HubProcess {
    child: Child,
    log: PathBuf,
    rss_max_kib: u64,
}

impl HubProcess {
    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "the hub exited ({status}); end of {}:\n{}",
                self.log.display(),
                log_tail(&self.log, 15)
            ),
            Err(e) => bail!("checking on the hub: {e}"),
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A binary next to this executable (or one level up, from `target/<profile>/deps`), or
/// the one given.
fn locate_binary(name: &str, explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("the binary {} does not exist", p.display());
    }
    let exe = std::env::current_exe().context("finding this executable's path")?;
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let dir = exe.parent().context("this executable has no parent directory")?;
    let candidates = [Some(dir.join(&file)), dir.parent().map(|d| d.join(&file))];
    if let Some(found) = candidates.iter().flatten().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let profile = if cfg!(debug_assertions) { "" } else { " --release" };
    bail!(
        "{file} not found next to {} — build it first with `cargo build{profile} --bins` \
         (the same profile as gatehouse-sim), or name it with its --*-bin flag",
        exe.display()
    )
}

// ---- alarm visibility -------------------------------------------------------------------

/// When each forced-door alarm was sent and when the hub's live stream (`GET
/// /api/v1/stream`, published after the commit) first showed it, by its door tag.
#[derive(Clone, Default)]
struct AlarmClock {
    sent: Arc<std::sync::Mutex<HashMap<String, Instant>>>,
    seen: Arc<std::sync::Mutex<HashMap<String, Instant>>>,
}

/// Doors of the load's forced-door events are named `load-<gateway>-<n>`; the stream's
/// alarm carries the rule's message, `Door <door> forced open`.
const ALARM_DOOR_PREFIX: &str = "Door load-";

impl AlarmClock {
    fn sent(&self, door: String) {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(door, Instant::now());
    }

    fn sent_count(&self) -> u64 {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    fn seen_count(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    /// Reads the hub's SSE stream until `stop`; returns once subscribed.
    async fn watch(&self, http_base: &str, stop: CancellationToken) -> anyhow::Result<()> {
        let url = format!("{http_base}/api/v1/stream");
        let mut resp = reqwest::Client::new()
            .get(&url)
            .send()
            .await
            .with_context(|| format!("subscribing to {url}"))?;
        if !resp.status().is_success() {
            bail!("GET {url}: {}", resp.status());
        }
        let seen = self.seen.clone();
        tokio::spawn(async move {
            let mut buf = String::new();
            loop {
                let chunk = tokio::select! {
                    _ = stop.cancelled() => return,
                    c = resp.chunk() => c,
                };
                let Ok(Some(chunk)) = chunk else {
                    tracing::warn!("the hub's live stream ended");
                    return;
                };
                let now = Instant::now();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    for line in frame.lines() {
                        let Some(data) = line.strip_prefix("data:") else {
                            continue;
                        };
                        if !data.contains(ALARM_DOOR_PREFIX) {
                            continue;
                        }
                        let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                            continue;
                        };
                        if v["type"] != "alarm" {
                            continue;
                        }
                        let door = v["data"]["message"]
                            .as_str()
                            .and_then(|m| m.strip_prefix("Door "))
                            .and_then(|m| m.strip_suffix(" forced open"));
                        if let Some(door) = door {
                            seen.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry(door.to_string())
                                .or_insert(now);
                        }
                    }
                }
            }
        });
        Ok(())
    }

    /// Waits until every sent alarm was seen, or `within` passed.
    async fn settle(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.seen_count() < self.sent_count() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Latency of each seen alarm from its sending; and how many were never seen.
    fn latency(&self) -> (Latency, u64) {
        let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut h = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MS * 1000, 3).expect("histogram bounds");
        let mut missing = 0;
        for (door, at) in sent.iter() {
            match seen.get(door) {
                Some(s) => h.saturating_record(s.saturating_duration_since(*at).as_micros() as u64),
                None => missing += 1,
            }
        }
        (Latency::from_micros(&h), missing)
    }
}

impl Latency {
    /// From a histogram of microseconds, in milliseconds (fractions kept in the mean only).
    fn from_micros(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us.div_ceil(1000);
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

// ---- progress -----------------------------------------------------------------------------

/// One status line, rewritten in place on a terminal (`\r`), one line a second otherwise.
pub(crate) struct Progress {
    tty: bool,
}

impl Progress {
    pub(crate) fn new() -> Self {
        use std::io::IsTerminal as _;
        Self {
            tty: std::io::stdout().is_terminal(),
        }
    }

    pub(crate) fn show(&self, elapsed: Duration, total: Duration, line: &str) {
        use std::io::Write as _;
        let frac = (elapsed.as_secs_f64() / total.as_secs_f64().max(0.001)).min(1.0);
        let width = 20;
        let filled = (frac * width as f64).round() as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        if self.tty {
            print!("\r[{bar}] {:>4.0}s {line}\x1b[K", elapsed.as_secs_f64());
            let _ = std::io::stdout().flush();
        } else {
            println!("[{bar}] {:>4.0}s {line}", elapsed.as_secs_f64());
        }
    }

    pub(crate) fn done(&self) {
        if self.tty {
            println!();
        }
    }
}

// ---- --via grpc: synthetic gateway streams ----------------------------------------------

/// What one synthetic gateway stream did.
struct StreamTally {
    devices: Vec<Tally>,
    /// Events acknowledged by the hub (its Ack covers them: committed).
    acked: u64,
    /// Sent (and acknowledged) batches.
    batches: u64,
    ack_us: Histogram<u64>,
    error: Option<String>,
}

struct StreamPlan {
    index: usize,
    gateway: String,
    estate: String,
    devices: Vec<String>,
    /// Events per second of this stream.
    rate: f64,
    batch_every: Duration,
    alarm_every: u64,
    began: Instant,
    end: Instant,
    drain: Duration,
}

/// Most batches of one stream sent and not yet acknowledged (the hub reads 16 ahead).
const GRPC_WINDOW: usize = 16;

async fn run_stream(
    plan: StreamPlan,
    url: String,
    sent: Arc<AtomicU64>,
    acked_total: Arc<AtomicU64>,
    alarms: AlarmClock,
) -> StreamTally {
    let mut tally = StreamTally {
        devices: plan
            .devices
            .iter()
            .map(|d| Tally {
                device: d.clone(),
                next: 0,
                failed: Vec::new(),
            })
            .collect(),
        acked: 0,
        batches: 0,
        ack_us: Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MS * 1000, 3).expect("histogram bounds"),
        error: None,
    };
    if let Err(e) = stream_events(&plan, &url, &sent, &acked_total, &alarms, &mut tally).await {
        tally.error = Some(format!("{}: {e:#}", plan.gateway));
    }
    tally
}

async fn stream_events(
    plan: &StreamPlan,
    url: &str,
    sent: &AtomicU64,
    acked_total: &AtomicU64,
    alarms: &AlarmClock,
    tally: &mut StreamTally,
) -> anyhow::Result<()> {
    use gatehouse_proto::{downlink, gateway_link_client::GatewayLinkClient, uplink};
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let mut client = GatewayLinkClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::Uplink>(GRPC_WINDOW * 2);
    let hello = pb::Hello {
        gateway_id: plan.gateway.clone(),
        estate_id: plan.estate.clone(),
        software_version: "gatehouse-sim-load".into(),
        devices: plan
            .devices
            .iter()
            .enumerate()
            .map(|(k, d)| pb::DeviceInfo {
                device_id: d.clone(),
                kind: if k % 2 == 0 {
                    pb::DeviceKind::Intercom
                } else {
                    pb::DeviceKind::Door
                } as i32,
                area: "load".into(),
            })
            .collect(),
        ..Default::default()
    };
    tx.send(pb::Uplink {
        msg: Some(uplink::Msg::Hello(hello)),
    })
    .await
    .ok();
    let mut downlink = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context("GatewayLink.Connect")?
        .into_inner();
    let welcome = match tokio::time::timeout(STARTUP_TIMEOUT, downlink.message()).await {
        Ok(Ok(Some(pb::Downlink {
            msg: Some(downlink::Msg::Welcome(w)),
        }))) => w,
        other => bail!("no Welcome: {other:?}"),
    };
    let mut seq = welcome.last_seq;
    // (last seq of the batch, its size, sent at)
    let mut unacked: std::collections::VecDeque<(u64, u64, Instant)> = Default::default();
    let mut made = 0u64;
    let mut ticker = tokio::time::interval_at(
        (plan.began + plan.batch_every.mul_f64((plan.index % 97) as f64 / 97.0)).into(),
        plan.batch_every,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sending = true;
    let mut drain_until = None;
    loop {
        if !sending && unacked.is_empty() {
            return Ok(());
        }
        if let Some(until) = drain_until
            && Instant::now() >= until
        {
            bail!(
                "{} batches unacknowledged, no Ack for {:?} after the end",
                unacked.len(),
                plan.drain
            );
        }
        tokio::select! {
            msg = downlink.message() => match msg {
                Ok(Some(pb::Downlink { msg: Some(downlink::Msg::Ack(a)) })) => {
                    let now = Instant::now();
                    while let Some(&(last, n, at)) = unacked.front() {
                        if last > a.through_seq {
                            break;
                        }
                        unacked.pop_front();
                        // Draining: the hub is still making progress; give it the stall time again.
                        if drain_until.is_some() {
                            drain_until = Some(now + plan.drain);
                        }
                        let _ = tally.ack_us.record_n(now.duration_since(at).as_micros() as u64, n);
                        tally.acked += n;
                        tally.batches += 1;
                        acked_total.fetch_add(n, Relaxed);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("the hub closed the stream"),
                Err(status) => bail!("stream failed: {status}"),
            },
            _ = ticker.tick(), if sending => {
                let now = Instant::now();
                if now >= plan.end {
                    sending = false;
                    drain_until = Some(now + plan.drain);
                    continue;
                }
                let due_total = (now.duration_since(plan.began).as_secs_f64() * plan.rate) as u64;
                if unacked.len() >= GRPC_WINDOW || due_total <= made {
                    continue;
                }
                let n = (due_total - made).min(MAX_BATCH_EVENTS);
                let now_ms = pb::now_ms();
                let mut events = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    made += 1;
                    seq += 1;
                    let d = (made as usize) % tally.devices.len();
                    let t = &mut tally.devices[d];
                    // Streams are offset, so one event in `alarm_every` overall is an
                    // alarm even when each stream sends fewer than that.
                    let alarm = plan.alarm_every > 0
                        && (made + plan.index as u64 * 7919).is_multiple_of(plan.alarm_every);
                    let body = if alarm {
                        let door = format!("load-{}-{made}", plan.index);
                        alarms.sent(door.clone());
                        Body::Door(pb::DoorEvent {
                            r#type: pb::DoorEventType::Forced as i32,
                            door,
                            seconds: 0,
                        })
                    } else {
                        let tag = format!("{}/{}", t.device, t.next);
                        t.next += 1;
                        Body::Access(pb::AccessEvent {
                            door: "load-door".into(),
                            result: pb::AccessResult::Granted as i32,
                            credential: tag,
                            reason: String::new(),
                        })
                    };
                    events.push(pb::Event {
                        event_id: format!("{}-{seq}", plan.gateway),
                        seq,
                        gateway_id: plan.gateway.clone(),
                        estate_id: plan.estate.clone(),
                        device_id: t.device.clone(),
                        device_kind: pb::DeviceKind::Door as i32,
                        area: "load".into(),
                        occurred_at_ms: now_ms,
                        received_at_ms: now_ms,
                        trace_context: Default::default(),
                        body: Some(body),
                    });
                }
                let tagged = events.iter().filter(|e| matches!(e.body, Some(Body::Access(_)))).count() as u64;
                unacked.push_back((seq, n, Instant::now()));
                tx.send(pb::Uplink { msg: Some(uplink::Msg::Events(pb::EventBatch { events })) })
                    .await
                    .map_err(|_| anyhow!("the stream's send side closed"))?;
                sent.fetch_add(tagged, Relaxed);
            }
        }
    }
}

/// Largest batch a synthetic gateway sends (a real one: `uplink.batch_max`, 500).
const MAX_BATCH_EVENTS: u64 = 500;

/// `--via grpc`: N synthetic gateway streams against the hub alone.
async fn drive_grpc(opts: &LoadOptions, data_dir: &Path) -> anyhow::Result<LoadReport> {
    let specs: Vec<EstateSpec> = (0..opts.estates)
        .map(|i| EstateSpec::new(&format!("load-{i}"), &format!("Load estate {i}")))
        .collect();
    let mut hub = HubUnderTest::start(opts, data_dir, &specs).await?;
    println!(
        "load: hub gRPC {} ({}); opening {} synthetic gateway streams",
        hub.grpc_url,
        if hub.process.is_some() {
            "child process"
        } else {
            "already running"
        },
        opts.estates
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
    // Gateway ids unique to this run, so an already running hub starts them at seq 1.
    let run = if hub.process.is_some() {
        String::new()
    } else {
        format!("-r{}", pb::now_ms() % 100_000_000)
    };
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let per_stream = opts.rate / opts.estates as f64;
    // Time for every stream to connect before the clock starts.
    let began = Instant::now() + Duration::from_millis(500 + 3 * opts.estates as u64);
    let end = began + opts.duration;
    let mut tasks = JoinSet::new();
    for (i, spec) in specs.iter().enumerate() {
        let gateway = format!("gw-{}{run}", spec.id);
        let plan = StreamPlan {
            index: i,
            devices: (0..opts.devices_per_estate.max(1))
                .map(|k| format!("{gateway}-dev-{k:03}"))
                .collect(),
            gateway,
            estate: spec.id.clone(),
            rate: per_stream,
            batch_every: opts.grpc_batch,
            alarm_every: opts.alarm_every,
            began,
            end,
            drain: opts.drain_stall.max(Duration::from_secs(5)),
        };
        tasks.spawn(run_stream(
            plan,
            hub.grpc_url.clone(),
            sent.clone(),
            acked.clone(),
            alarms.clone(),
        ));
    }
    tokio::time::sleep_until(began.into()).await;
    let cpu_at_start = hub.cpu_s();
    let progress = Progress::new();
    let mut tick = tokio::time::interval_at((began + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let (mut last_sent, mut last_at, mut last_cpu) = (0, began, cpu_at_start);
    let mut streams = Vec::with_capacity(opts.estates);
    while !tasks.is_empty() {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(t)) => streams.push(t),
                Some(Err(e)) => bail!("a stream task failed: {e}"),
                None => {}
            },
            now = tick.tick() => {
                let now = now.into_std();
                hub.sample()?;
                let total = sent.load(Relaxed);
                let dt = now.duration_since(last_at).as_secs_f64();
                let rate = (total - last_sent) as f64 / dt;
                let cpu = hub.cpu_s();
                let cpu_pct = match (cpu, last_cpu) {
                    (Some(c), Some(l)) => format!("{:.0}%", (c - l) / dt * 100.0),
                    _ => "?".into(),
                };
                (last_sent, last_at, last_cpu) = (total, now, cpu);
                let rss = hub.process.as_ref().map_or(0, |p| p.rss_max_kib);
                progress.show(
                    now.duration_since(began),
                    opts.duration,
                    &format!(
                        "sent {total:>9} ({rate:>7.0}/s) acked {:>9}  alarms {}/{}  hub cpu {cpu_pct} rss {}",
                        acked.load(Relaxed),
                        alarms.seen_count(),
                        alarms.sent_count(),
                        mib(rss)
                    ),
                );
            }
        }
    }
    progress.done();
    let run_s = began.elapsed().as_secs_f64();
    hub.sample()?;
    let cpu_at_end = hub.cpu_s();
    alarms.settle(Duration::from_secs(5)).await;
    watch_stop.cancel();

    let total_sent = sent.load(Relaxed);
    let total_acked = acked.load(Relaxed);
    let stream_errors: Vec<String> = streams.iter().filter_map(|s| s.error.clone()).collect();
    let mut ack = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MS * 1000, 3).context("histogram")?;
    for s in &streams {
        ack.add(&s.ack_us).context("merging ack histograms")?;
    }
    let tallies: Vec<Tally> = streams.into_iter().flat_map(|s| s.devices).collect();
    let (alarm_latency, alarms_missing) = alarms.latency();

    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
    let hub_metrics = match &hub.http_base {
        Some(base) => scrape(&client, base).await,
        None => None,
    };
    let hub_figures = hub_figures(hub_metrics.as_ref());
    let (analysis, checked_by) = match &hub.db {
        Some(db) => (
            Some(analyse(db, &tallies).await?),
            "hub database: every tag sent, counted",
        ),
        None => (
            None,
            "hub acks only (no --hub-db): lost = sent - acknowledged; duplicates not checkable",
        ),
    };
    let hub_process = hub.figures();
    if let Some(db) = hub.db.take() {
        db.close().await;
    }
    drop(hub);

    let (stored, lost, duplicated, unexpected, span_s, e2e) = match &analysis {
        Some(a) => (
            a.stored,
            a.lost,
            a.duplicated,
            a.unexpected,
            a.span_s,
            Latency::from_histogram(&a.e2e),
        ),
        None => (
            total_acked,
            total_sent.saturating_sub(total_acked),
            0,
            0,
            run_s,
            Latency::default(),
        ),
    };
    let hub_cpu_percent = match (cpu_at_start, cpu_at_end) {
        (Some(a), Some(b)) if run_s > 0.0 => Some((b - a) / run_s * 100.0),
        _ => None,
    };
    Ok(LoadReport {
        via: "grpc".into(),
        checked_by: checked_by.into(),
        estates: opts.estates,
        devices_per_estate: opts.devices_per_estate,
        target_rate: opts.rate,
        duration_s: opts.duration.as_secs_f64(),
        data_dir: data_dir.display().to_string(),
        sent: total_sent,
        publish_errors: stream_errors.len() as u64,
        offered_rate: total_sent as f64 / opts.duration.as_secs_f64(),
        stored,
        lost,
        duplicated,
        unexpected,
        drained: stream_errors.is_empty(),
        drain_s: (run_s - opts.duration.as_secs_f64()).max(0.0),
        span_s,
        sustained_rate: if span_s > 0.0 { stored as f64 / span_s } else { 0.0 },
        latency_ms: e2e,
        to_gateway_ms: Latency::default(),
        gateway_to_hub_ms: Latency::default(),
        ack_latency_ms: Some(Latency::from_micros(&ack)),
        alarm_latency_ms: (opts.alarm_every > 0).then_some(alarm_latency),
        alarms_sent: alarms.sent_count(),
        alarms_missing,
        gateways: Vec::new(),
        gateway_rss_kib: Summary::default(),
        gateway_hwm_kib: Summary::default(),
        sim_process: process_figures(std::process::id()),
        hub_process: hub_process.as_ref().map(|p| p.0.clone()),
        hub_rss_max_kib: hub_process.map(|p| p.1),
        hub_cpu_percent,
        stream_errors,
        hub: hub_figures,
    })
}

fn hub_figures(m: Option<&HashMap<String, f64>>) -> HubFigures {
    let hget = |name: &str| m.and_then(|m| m.get(name).copied());
    HubFigures {
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
    }
}

/// What [`blast`] measured.
pub(crate) struct BlastResult {
    /// Events acknowledged between the start and the end of the sending window.
    pub acked_in_window: u64,
    pub acked_total: u64,
    pub sent: u64,
    pub window_s: f64,
    pub ack: Latency,
    pub errors: Vec<String>,
}

/// `streams` synthetic gateways (`gw-load-<i>` of estates `load-<i>`) offering `rate`
/// events/s in total to `url` for `duration`, no alarms; counts what the hub acknowledged.
pub(crate) async fn blast(
    url: &str,
    streams: usize,
    rate: f64,
    duration: Duration,
    batch_every: Duration,
) -> anyhow::Result<BlastResult> {
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let began = Instant::now() + Duration::from_millis(500 + 3 * streams as u64);
    let end = began + duration;
    let mut tasks = JoinSet::new();
    for i in 0..streams {
        let gateway = format!("gw-load-{i}");
        let plan = StreamPlan {
            index: i,
            devices: (0..4).map(|k| format!("{gateway}-dev-{k}")).collect(),
            gateway,
            estate: format!("load-{i}"),
            rate: rate / streams as f64,
            batch_every,
            alarm_every: 0,
            began,
            end,
            drain: Duration::from_secs(20),
        };
        tasks.spawn(run_stream(
            plan,
            url.to_string(),
            sent.clone(),
            acked.clone(),
            AlarmClock::default(),
        ));
    }
    tokio::time::sleep_until(began.into()).await;
    let at_start = acked.load(Relaxed);
    tokio::time::sleep_until(end.into()).await;
    let at_end = acked.load(Relaxed);
    let mut ack = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MS * 1000, 3).context("histogram")?;
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let t = joined.context("a stream task failed")?;
        ack.add(&t.ack_us).context("merging ack histograms")?;
        errors.extend(t.error);
    }
    Ok(BlastResult {
        acked_in_window: at_end - at_start,
        acked_total: acked.load(Relaxed),
        sent: sent.load(Relaxed),
        window_s: duration.as_secs_f64(),
        ack: Latency::from_micros(&ack),
        errors,
    })
}
