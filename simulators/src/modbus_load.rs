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

use std::{
    fmt::Write as _,
    future::{Ready, ready},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_modbus::{ExceptionCode, Request, Response, server::Service, server::tcp::Server};
use tokio_util::sync::CancellationToken;

use crate::{
    harness::{
        binaries::locate_gateway_binary,
        data_dir::prepare_data_dir,
        gateway_process::GatewayProcess,
        hub::HubUnderTest,
        logs::{LogProblem, log_problems},
        metrics::scrape,
        procfs::{proc_cpu_s, proc_status, process_figures, threads},
        progress::Progress,
        report::mib,
        signals::spawn_sigterm_listener,
        toml::toml_str,
    },
    net::free_local_addr,
    scenario::EstateSpec,
};

/// The estate (and hub configuration entry) of the polled devices.
const ESTATE: &str = "modbus-load";
/// How long the gateway may take to poll every device once and connect to the hub.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadband of the f32 points; their background jitter stays inside it.
const F32_DEADBAND: f64 = 0.05;

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

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct ModbusLoadReport {
    pub devices: usize,
    pub points_per_device: usize,
    pub poll_ms: u64,
    /// Read requests one poll of one device takes (after merging adjacent points).
    pub requests_per_poll: usize,
    pub change_per_s: f64,
    pub refresh_s: u64,
    pub window_s: f64,
    /// Gateway CPU (user + system) over the window, in % of one core.
    pub gateway_cpu_percent: f64,
    pub gateway_cpu_s: f64,
    pub gateway_rss_kib: u64,
    pub gateway_rss_max_kib: u64,
    pub gateway_hwm_kib: u64,
    pub gateway_threads: Option<u64>,
    /// Over the window, from the gateway's `/metrics`.
    pub modbus_requests_per_s: f64,
    pub events_per_s: f64,
    /// Modbus failures (timeouts, transport, connect, exceptions) and reconnects in the
    /// window, and devices offline at its end.
    pub failures: u64,
    pub reconnects: u64,
    pub devices_offline: u64,
    /// Events appended to the outbox and acknowledged by the hub over the whole run.
    pub outbox_appended: u64,
    pub uplink_acked: u64,
    /// This process (the simulated servers and the driver), CPU over the window.
    pub servers_cpu_percent: f64,
    /// The hub child, CPU over the window.
    pub hub_cpu_percent: Option<f64>,
    pub hub_rss_kib: Option<u64>,
    pub log_problems: Vec<LogProblem>,
}

impl ModbusLoadReport {
    /// No failure, nothing offline, everything appended acknowledged.
    pub fn clean(&self) -> bool {
        self.failures == 0 && self.devices_offline == 0 && self.uplink_acked >= self.outbox_appended
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "== gatehouse modbus load report ==");
        let _ = writeln!(
            s,
            "setup        {} devices x {} points ({} reads per poll), poll every {} ms; {:.1}% of points change per second; refresh every {} s",
            self.devices,
            self.points_per_device,
            self.requests_per_poll,
            self.poll_ms,
            self.change_per_s * 100.0,
            self.refresh_s
        );
        let _ = writeln!(s, "window       {:.1} s of steady state", self.window_s);
        let _ = writeln!(
            s,
            "gateway CPU  {:.1}% of one core ({:.2} s user+system in the window)",
            self.gateway_cpu_percent, self.gateway_cpu_s
        );
        let _ = writeln!(
            s,
            "gateway mem  VmRSS {} (sampled max {}) VmHWM {}; {} threads",
            mib(self.gateway_rss_kib),
            mib(self.gateway_rss_max_kib),
            mib(self.gateway_hwm_kib),
            self.gateway_threads.map_or_else(|| "?".into(), |t| t.to_string())
        );
        let _ = writeln!(
            s,
            "modbus       {:.0} requests/s; {} failures, {} reconnects in the window; {} devices offline  {}",
            self.modbus_requests_per_s,
            self.failures,
            self.reconnects,
            self.devices_offline,
            if self.failures == 0 && self.devices_offline == 0 {
                "OK"
            } else {
                "FAIL"
            }
        );
        let _ = writeln!(
            s,
            "events       {:.0}/s into the outbox in the window; whole run: {} appended, {} acknowledged by the hub  {}",
            self.events_per_s,
            self.outbox_appended,
            self.uplink_acked,
            if self.uplink_acked >= self.outbox_appended {
                "OK"
            } else {
                "FAIL"
            }
        );
        let _ = writeln!(
            s,
            "others       simulated servers + driver {:.1}% of one core; hub {} ({})",
            self.servers_cpu_percent,
            self.hub_cpu_percent
                .map_or_else(|| "?".into(), |c| format!("{c:.1}% of one core")),
            self.hub_rss_kib.map_or_else(|| "?".into(), mib)
        );
        for p in self.log_problems.iter().take(5) {
            let _ = writeln!(s, "gateway log  {} x{}: {}", p.level, p.count, p.message);
        }
        s
    }
}

// ---- the point layout ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    U16,
    F32,
    Bit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Holding,
    Input,
    Discrete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PointSpec {
    table: Table,
    address: u16,
    kind: Kind,
}

/// `points` points: half in holding registers, a quarter in input registers, the rest
/// discrete inputs; every third register point an f32 (two registers, big-endian). Each
/// table's points are adjacent from address 0, so the gateway reads each table in one
/// request (up to the protocol's 125 registers).
fn layout(points: usize) -> Vec<PointSpec> {
    let holding = points.div_ceil(2);
    let input = points / 4;
    let mut out = Vec::with_capacity(points);
    for (table, n) in [
        (Table::Holding, holding),
        (Table::Input, input),
        (Table::Discrete, points - holding - input),
    ] {
        let mut address = 0u16;
        for i in 0..n {
            let kind = match table {
                Table::Discrete => Kind::Bit,
                _ if i % 3 == 2 => Kind::F32,
                _ => Kind::U16,
            };
            out.push(PointSpec { table, address, kind });
            address += if kind == Kind::F32 { 2 } else { 1 };
        }
    }
    out
}

fn point_name(i: usize, p: &PointSpec) -> String {
    let t = match p.table {
        Table::Holding => "hr",
        Table::Input => "ir",
        Table::Discrete => "di",
    };
    format!("{t}{:03}", i)
}

/// The gateway configuration: one `kind = "modbus"` device per server.
fn gateway_toml(
    opts: &ModbusLoadOptions,
    data_dir: &Path,
    hub: &str,
    http: SocketAddr,
    servers: &[SocketAddr],
) -> String {
    let mut s = format!(
        "[gateway]\nid = \"gw-{ESTATE}\"\nestate = \"{ESTATE}\"\ndata_dir = {}\nhubs = [{}]\nhttp_listen = \"{http}\"\n\n[modbus]\nrefresh_s = {}\n",
        toml_str(&data_dir.display().to_string()),
        toml_str(hub),
        opts.refresh_s.max(1),
    );
    let layout = layout(opts.points);
    let mut points = String::new();
    for (i, p) in layout.iter().enumerate() {
        let (table, ty, extra) = match (p.table, p.kind) {
            (Table::Holding, Kind::U16) => ("holding", "u16", String::new()),
            (Table::Holding, Kind::F32) => ("holding", "f32", format!("deadband = {F32_DEADBAND}\n")),
            (Table::Input, Kind::U16) => ("input", "u16", String::new()),
            (Table::Input, Kind::F32) => ("input", "f32", format!("deadband = {F32_DEADBAND}\n")),
            (_, _) => ("discrete", "bool", String::new()),
        };
        let _ = write!(
            points,
            "[[devices.modbus.points]]\nname = \"{}\"\ntable = \"{table}\"\naddress = {}\ntype = \"{ty}\"\n{extra}",
            point_name(i, p),
            p.address
        );
    }
    for (d, addr) in servers.iter().enumerate() {
        let _ = write!(
            s,
            "\n[[devices]]\nid = \"plc-{d:04}\"\nkind = \"modbus\"\narea = \"plant\"\n[devices.modbus]\naddress = \"{addr}\"\nunit = 1\npoll_ms = {}\ntimeout_ms = {}\n{points}",
            opts.poll.as_millis().max(1),
            opts.timeout.as_millis().max(1)
        );
    }
    s
}

// ---- the simulated servers ----------------------------------------------------------------

/// One server's registers.
#[derive(Debug, Default)]
struct Registers {
    holding: Vec<u16>,
    input: Vec<u16>,
    discrete: Vec<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registers {
    fn new(layout: &[PointSpec], seed: usize) -> Self {
        let mut r = Registers::default();
        for (i, p) in layout.iter().enumerate() {
            let v = (seed * 7 + i) as f64;
            match p.kind {
                Kind::U16 => r.set_u16(p, 1000 + (v as u16 % 1000)),
                Kind::F32 => r.set_f32(p, 20.0 + (v % 50.0) as f32),
                Kind::Bit => r.set_bit(p, i % 2 == 0),
            }
        }
        r
    }

    fn words(&mut self, table: Table) -> &mut Vec<u16> {
        match table {
            Table::Input => &mut self.input,
            _ => &mut self.holding,
        }
    }

    fn set_u16(&mut self, p: &PointSpec, v: u16) {
        let words = self.words(p.table);
        let a = usize::from(p.address);
        if words.len() <= a {
            words.resize(a + 1, 0);
        }
        words[a] = v;
    }

    fn get_u16(&mut self, p: &PointSpec) -> u16 {
        self.words(p.table).get(usize::from(p.address)).copied().unwrap_or(0)
    }

    fn set_f32(&mut self, p: &PointSpec, v: f32) {
        let bits = v.to_bits();
        let words = self.words(p.table);
        let a = usize::from(p.address);
        if words.len() <= a + 1 {
            words.resize(a + 2, 0);
        }
        words[a] = (bits >> 16) as u16;
        words[a + 1] = bits as u16;
    }

    fn get_f32(&mut self, p: &PointSpec) -> f32 {
        let words = self.words(p.table);
        let a = usize::from(p.address);
        match (words.get(a), words.get(a + 1)) {
            (Some(&hi), Some(&lo)) => f32::from_bits((u32::from(hi) << 16) | u32::from(lo)),
            _ => 0.0,
        }
    }

    fn set_bit(&mut self, p: &PointSpec, on: bool) {
        let a = usize::from(p.address);
        if self.discrete.len() <= a {
            self.discrete.resize(a + 1, false);
        }
        self.discrete[a] = on;
    }

    /// One second of drift: each point moves beyond its deadband with probability
    /// `change`; the floats also jitter inside their deadband every time.
    fn drift(&mut self, layout: &[PointSpec], change: f64, rng: &mut fastrand::Rng) {
        for p in layout {
            let moves = rng.f64() < change;
            match p.kind {
                Kind::U16 if moves => {
                    let v = self.get_u16(p);
                    let step = rng.u16(1..=5);
                    let v = if rng.bool() {
                        v.saturating_add(step)
                    } else {
                        v.saturating_sub(step)
                    };
                    self.set_u16(p, v);
                }
                Kind::F32 => {
                    let v = self.get_f32(p);
                    let jitter = (rng.f32() - 0.5) * (F32_DEADBAND as f32) * 0.4;
                    let step = if moves {
                        let s = F32_DEADBAND as f32 * (2.0 + rng.f32() * 4.0);
                        if rng.bool() { s } else { -s }
                    } else {
                        0.0
                    };
                    self.set_f32(p, v + step + jitter);
                }
                Kind::Bit if moves => {
                    let a = usize::from(p.address);
                    let on = self.discrete.get(a).copied().unwrap_or(false);
                    self.set_bit(p, !on);
                }
                _ => {}
            }
        }
    }

    fn answer(&self, request: Request<'_>) -> Result<Response, ExceptionCode> {
        fn range<T: Copy>(table: &[T], address: u16, count: u16, max: u16) -> Result<Vec<T>, ExceptionCode> {
            if count == 0 || count > max {
                return Err(ExceptionCode::IllegalDataValue);
            }
            let start = usize::from(address);
            table
                .get(start..start + usize::from(count))
                .map(<[T]>::to_vec)
                .ok_or(ExceptionCode::IllegalDataAddress)
        }
        match request {
            Request::ReadHoldingRegisters(a, n) => Ok(Response::ReadHoldingRegisters(range(&self.holding, a, n, 125)?)),
            Request::ReadInputRegisters(a, n) => Ok(Response::ReadInputRegisters(range(&self.input, a, n, 125)?)),
            Request::ReadDiscreteInputs(a, n) => Ok(Response::ReadDiscreteInputs(range(&self.discrete, a, n, 2000)?)),
            Request::ReadCoils(..) => Err(ExceptionCode::IllegalDataAddress),
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

#[derive(Clone)]
struct PlcService(Arc<Mutex<Registers>>);

impl Service for PlcService {
    type Request = Request<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        ready(lock(&self.0).answer(request).map(Some))
    }
}

/// Binds one loopback listener per device and serves them until `stop`; returns their
/// addresses.
async fn start_servers(
    opts: &ModbusLoadOptions,
    layout: &Arc<Vec<PointSpec>>,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<SocketAddr>> {
    let mut addrs = Vec::with_capacity(opts.devices);
    let mut blocks = Vec::with_capacity(opts.devices);
    for d in 0..opts.devices {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .with_context(|| format!("binding simulated Modbus server {d} (raise `ulimit -n`?)"))?;
        addrs.push(listener.local_addr()?);
        let block = Arc::new(Mutex::new(Registers::new(layout, d)));
        blocks.push(Arc::clone(&block));
        let service = PlcService(block);
        let stop = stop.clone();
        tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = move |stream, _peer| {
                let service = service.clone();
                async move { Ok(Some((service, stream))) }
            };
            tokio::select! {
                () = stop.cancelled() => {}
                r = server.serve(&on_connected, |e| tracing::debug!(error = %e, "simulated modbus connection")) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "a simulated Modbus server stopped");
                    }
                }
            }
        });
    }
    // The drift: once a second, every block.
    let layout = Arc::clone(layout);
    let change = opts.change;
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(0x6A7E);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {
                    for b in &blocks {
                        lock(b).drift(&layout, change, &mut rng);
                    }
                }
            }
        }
    });
    Ok(addrs)
}

// ---- the run ------------------------------------------------------------------------------

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
    let layout = Arc::new(layout(opts.points));
    let addrs = start_servers(opts, &layout, servers_stop).await?;
    let requests_per_poll = {
        // Each table's points are adjacent: one read per table and per 125 registers.
        let mut n = 0;
        for t in [Table::Holding, Table::Input, Table::Discrete] {
            let width: u32 = layout
                .iter()
                .filter(|p| p.table == t)
                .map(|p| if p.kind == Kind::F32 { 2 } else { 1 })
                .sum();
            let limit = if t == Table::Discrete { 2000 } else { 125 };
            n += width.div_ceil(limit) as usize;
        }
        n
    };
    let hub = HubUnderTest::child(
        opts.hub_bin.as_deref(),
        data_dir,
        &[EstateSpec::new(ESTATE, "Modbus load")],
    )
    .await?;
    let http = free_local_addr().context("choosing the gateway's HTTP port")?;
    let gw_dir = data_dir.join("gateway");
    let config = data_dir.join("gateway.toml");
    std::fs::write(&config, gateway_toml(opts, &gw_dir, &hub.grpc_url, http, &addrs))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_points_mix_types_and_tables_and_read_in_three_requests() {
        let l = layout(30);
        assert_eq!(l.len(), 30);
        let count = |t: Table, k: Kind| l.iter().filter(|p| p.table == t && p.kind == k).count();
        assert_eq!(count(Table::Holding, Kind::U16) + count(Table::Holding, Kind::F32), 15);
        assert_eq!(count(Table::Holding, Kind::F32), 5);
        assert_eq!(count(Table::Input, Kind::U16) + count(Table::Input, Kind::F32), 7);
        assert_eq!(count(Table::Discrete, Kind::Bit), 8);

        // The gateway's own planner merges each table into one read.
        let toml = gateway_toml(
            &ModbusLoadOptions {
                devices: 2,
                points: 30,
                poll: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                duration: Duration::from_secs(1),
                warmup: Duration::ZERO,
                change: 0.05,
                refresh_s: 60,
                data_dir: None,
                gateway_bin: None,
                hub_bin: None,
            },
            Path::new("/tmp/x"),
            "http://127.0.0.1:1",
            "127.0.0.1:2".parse().unwrap(),
            &["127.0.0.1:3".parse().unwrap(), "127.0.0.1:4".parse().unwrap()],
        );
        let config = gatehouse_gateway::config::Config::from_toml(&toml).expect("the generated config is valid");
        assert_eq!(config.devices.len(), 2);
        let points = &config.devices[0].modbus.as_ref().unwrap().points;
        assert_eq!(points.len(), 30);
        let plan = gatehouse_gateway::adapters::modbus::plan::plan(points, 0);
        assert_eq!(plan.len(), 3, "{plan:?}");
    }

    #[test]
    fn registers_answer_the_layout_and_drift() {
        let l = layout(30);
        let mut r = Registers::new(&l, 3);
        let Ok(Response::ReadHoldingRegisters(before)) = r.answer(Request::ReadHoldingRegisters(0, 20)) else {
            panic!("holding registers 0+20 answer");
        };
        assert!(r.answer(Request::ReadHoldingRegisters(0, 21)).is_err());
        assert!(matches!(
            r.answer(Request::ReadDiscreteInputs(0, 8)),
            Ok(Response::ReadDiscreteInputs(b)) if b.len() == 8
        ));
        let mut rng = fastrand::Rng::with_seed(1);
        r.drift(&l, 1.0, &mut rng);
        let Ok(Response::ReadHoldingRegisters(after)) = r.answer(Request::ReadHoldingRegisters(0, 20)) else {
            panic!("holding registers 0+20 answer");
        };
        assert_ne!(before, after);
    }
}
