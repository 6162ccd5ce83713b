//! The I/O shell around the pure code: one task per device that connects, polls the planned
//! reads, turns observations into events and serves `write` commands between polls.
//!
//! Failure handling follows the protocol's two layers of error. The outer one (transport,
//! header or transaction-id mismatch) and a timeout mean the stream can no longer be trusted
//! (a late reply would answer the next request): the connection is dropped and reopened, and
//! the poll counts as failed. The inner one is the device's exception: it answered, so the
//! connection stays and only the points of that request turn BAD.

use std::{
    borrow::Cow,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use gatehouse_proto::{self as pb, DeviceStatus, PointReading, Quality, event::Body};
use tokio::{
    sync::mpsc,
    time::{self, Instant, MissedTickBehavior},
};
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    config::{ModbusDeviceConfig, ModbusSection, PointConfig, Table},
    decode::{decode, decode_bit, encode},
    link::Link,
    plan::{DEFAULT_MAX_GAP, ReadRequest, plan},
    report::{Health, PointState, Sent, StatusChange},
};
use crate::{
    adapters::{AdapterContext, CommandRequest, SinkClosed, command_result},
    metrics::{Metrics, ModbusFailure},
    registry::DeviceInfo,
};

/// Polls one Modbus device until `shutdown` is cancelled or the event sink closes.
pub async fn run_device(
    ctx: AdapterContext,
    device: DeviceInfo,
    cfg: ModbusDeviceConfig,
    section: ModbusSection,
    mut commands: mpsc::Receiver<CommandRequest>,
    shutdown: CancellationToken,
) {
    let mut poller = Poller::new(ctx, device, cfg, &section);
    info!(device = %poller.out.device.id, address = %poller.cfg.address, requests = poller.plan.len(), "modbus polling starts");
    let mut interval = time::interval(poller.poll);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut commands_open = true;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            request = commands.recv(), if commands_open => {
                let Some(CommandRequest { command, reply }) = request else {
                    commands_open = false;
                    continue;
                };
                let result = tokio::select! {
                    () = shutdown.cancelled() => break,
                    result = poller.command(&command) => result,
                };
                let wrote = result.ok;
                // The caller may have given up waiting; that is not our failure.
                let _ = reply.send(result);
                if wrote {
                    // Read back at once so the new value is reported without waiting a poll.
                    interval.reset_immediately();
                }
            }
            _ = interval.tick() => {
                let outcome = tokio::select! {
                    () = shutdown.cancelled() => break,
                    outcome = poller.poll_once() => outcome,
                };
                if outcome.is_err() {
                    debug!(device = %poller.out.device.id, "event sink closed; modbus polling stops");
                    break;
                }
                if let Some(delay) = poller.backoff() {
                    interval.reset_after(delay);
                }
            }
        }
    }
    poller.finish();
}

/// What one read returned.
enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

/// One point's observation in a poll: a value, or the reason it has none.
type Observation = Result<f64, String>;

/// Where a polled device's events go. Kept apart from the connection (which is not `Sync`)
/// so a borrow of it can be held across the `emit` await in a `Send` task. The Modbus
/// fire-panel poller emits through it too.
pub(crate) struct Emitter {
    pub(crate) ctx: AdapterContext,
    pub(crate) device: DeviceInfo,
}

impl Emitter {
    pub(crate) async fn emit(&self, body: Body) -> Result<(), SinkClosed> {
        let now = pb::now_ms();
        self.ctx
            .sink
            .emit(self.ctx.registry.event(&self.device, now, now, body))
            .await
    }

    pub(crate) async fn status(&self, online: bool, reason: String) -> Result<(), SinkClosed> {
        self.emit(Body::Status(DeviceStatus { online, reason })).await
    }

    async fn reading(&self, point: Option<&PointConfig>, sent: Sent, refresh: bool) -> Result<(), SinkClosed> {
        let Some(point) = point else {
            return Ok(());
        };
        self.emit(Body::Point(PointReading {
            point: point.name.clone(),
            value: sent.value,
            unit: point.unit.clone(),
            quality: sent.quality as i32,
            refresh,
        }))
        .await
    }
}

struct Poller {
    out: Emitter,
    metrics: Arc<Metrics>,
    cfg: ModbusDeviceConfig,
    plan: Vec<ReadRequest>,
    points: Vec<PointState>,
    health: Health,
    /// Whether this device is counted in `modbus_devices_offline`.
    counted_offline: bool,
    link: Link,
    poll: Duration,
    backoff_max: Duration,
    refresh: Duration,
    last_refresh: Instant,
    /// The exception each request got last poll, so it is logged once per change.
    exceptions: Vec<Option<ExceptionCode>>,
}

impl Poller {
    fn new(ctx: AdapterContext, device: DeviceInfo, cfg: ModbusDeviceConfig, section: &ModbusSection) -> Self {
        let plan = plan(&cfg.points, DEFAULT_MAX_GAP);
        Self {
            points: vec![PointState::default(); cfg.points.len()],
            exceptions: vec![None; plan.len()],
            plan,
            health: Health::new(section.offline_after_failures),
            counted_offline: false,
            link: Link::new(
                &device.id,
                &cfg.address,
                cfg.unit,
                Duration::from_millis(cfg.timeout_ms.max(1)),
                Arc::clone(&ctx.metrics),
            ),
            poll: Duration::from_millis(cfg.poll_ms.max(1)),
            backoff_max: Duration::from_millis(section.backoff_max_ms.max(cfg.poll_ms).max(1)),
            refresh: Duration::from_secs(section.refresh_s.max(1)),
            last_refresh: Instant::now(),
            metrics: Arc::clone(&ctx.metrics),
            out: Emitter { ctx, device },
            cfg,
        }
    }

    fn backoff(&self) -> Option<Duration> {
        self.health
            .backoff(self.poll, self.backoff_max, |range| fastrand::u64(0..=range))
    }

    fn finish(&mut self) {
        if self.counted_offline {
            self.metrics.modbus_devices_offline.fetch_sub(1, Relaxed);
            self.counted_offline = false;
        }
        info!(device = %self.out.device.id, "modbus polling stopped");
    }

    async fn poll_once(&mut self) -> Result<(), SinkClosed> {
        match self.read_all().await {
            Ok(observations) => self.answered(observations).await,
            Err(reason) => self.failed(reason).await,
        }
    }

    async fn answered(&mut self, observations: Vec<(usize, Observation)>) -> Result<(), SinkClosed> {
        if self.health.success() == Some(StatusChange::Online) {
            if self.counted_offline {
                self.metrics.modbus_devices_offline.fetch_sub(1, Relaxed);
                self.counted_offline = false;
            }
            info!(device = %self.out.device.id, "modbus device online");
            self.out.status(true, String::new()).await?;
        }
        let refresh_due = self.last_refresh.elapsed() >= self.refresh;
        for (index, observation) in observations {
            let (Some(state), Some(point)) = (self.points.get_mut(index), self.cfg.points.get(index)) else {
                continue;
            };
            let (value, quality) = match &observation {
                Ok(v) => (Some(*v), Quality::Good),
                Err(_) => (None, Quality::Bad),
            };
            let Some(sent) = state.observe(value, quality, point.deadband) else {
                continue;
            };
            if let Err(why) = &observation {
                warn!(device = %self.out.device.id, point = %point.name, register = point.address, %why, "modbus point BAD");
            }
            // When the refresh is due it sends every point below, this one included.
            if !refresh_due {
                self.out.reading(self.cfg.points.get(index), sent, false).await?;
            }
        }
        if refresh_due {
            self.last_refresh = Instant::now();
            for index in 0..self.points.len() {
                if let Some(sent) = self.points[index].refresh() {
                    self.out.reading(self.cfg.points.get(index), sent, true).await?;
                }
            }
        }
        Ok(())
    }

    async fn failed(&mut self, reason: String) -> Result<(), SinkClosed> {
        if self.health.failures() == 0 {
            debug!(device = %self.out.device.id, %reason, "modbus poll failed");
        }
        if self.health.failure() != Some(StatusChange::Offline) {
            return Ok(());
        }
        if !self.counted_offline {
            self.metrics.modbus_devices_offline.fetch_add(1, Relaxed);
            self.counted_offline = true;
        }
        warn!(device = %self.out.device.id, %reason, failures = self.health.failures(), "modbus device offline; backing off");
        self.out.status(false, reason).await?;
        // The values the hub holds are now old: say so once per point (a quality change).
        for index in 0..self.points.len() {
            let deadband = self.cfg.points.get(index).map_or(0.0, |p| p.deadband);
            let ever_read = self.points[index].last_sent().is_some();
            if ever_read && let Some(sent) = self.points[index].observe(None, Quality::Uncertain, deadband) {
                self.out.reading(self.cfg.points.get(index), sent, false).await?;
            }
        }
        Ok(())
    }

    /// Runs every planned read. `Err` is a failed poll (no usable answer); exceptions and
    /// undecodable values are per-point BAD observations inside `Ok`.
    async fn read_all(&mut self) -> Result<Vec<(usize, Observation)>, String> {
        let mut observations = Vec::with_capacity(self.cfg.points.len());
        if self.plan.is_empty() {
            // No points to read: reachability is all there is to report.
            self.ensure_connected().await?;
        }
        for r in 0..self.plan.len() {
            let (table, start, count) = (self.plan[r].table, self.plan[r].start, self.plan[r].count);
            let request = match table {
                Table::Holding => Request::ReadHoldingRegisters(start, count),
                Table::Input => Request::ReadInputRegisters(start, count),
                Table::Coil => Request::ReadCoils(start, count),
                Table::Discrete => Request::ReadDiscreteInputs(start, count),
            };
            let data = match self.call(request).await? {
                Ok(response) => {
                    if let Some(previous) = self.exceptions[r].take() {
                        info!(device = %self.out.device.id, ?table, register = start, count, %previous, "modbus read answers again");
                    }
                    match response {
                        Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w) => Data::Words(w),
                        Response::ReadCoils(b) | Response::ReadDiscreteInputs(b) => Data::Bits(b),
                        other => {
                            // tokio-modbus matches function codes, so this means the stream
                            // is out of step: treat it like a transport error.
                            self.drop_connection();
                            self.metrics.modbus_failure(ModbusFailure::Transport);
                            return Err(format!("reading {table:?} {start}+{count}: unexpected reply {other:?}"));
                        }
                    }
                }
                Err(exception) => {
                    self.metrics.modbus_failure(ModbusFailure::Exception);
                    if self.exceptions[r] != Some(exception) {
                        warn!(device = %self.out.device.id, ?table, register = start, count, %exception, "modbus device answered with an exception");
                        self.exceptions[r] = Some(exception);
                    }
                    let why = format!("device exception {exception} reading {table:?} {start}+{count}");
                    observations.extend(self.plan[r].points.iter().map(|&i| (i, Err(why.clone()))));
                    continue;
                }
            };
            let request = &self.plan[r];
            for &index in &request.points {
                let Some(point) = self.cfg.points.get(index) else {
                    continue;
                };
                observations.push((index, observe(&data, request, point)));
            }
        }
        Ok(observations)
    }

    async fn call(&mut self, request: Request<'static>) -> Result<Result<Response, ExceptionCode>, String> {
        self.link.call(request).await
    }

    async fn ensure_connected(&mut self) -> Result<(), String> {
        self.link.ensure_connected().await
    }

    fn drop_connection(&mut self) {
        self.link.drop_connection();
    }

    /// Serves one command; only `write` exists for Modbus devices.
    async fn command(&mut self, command: &pb::Command) -> pb::CommandResult {
        let device = &self.out.device.id;
        if command.action != "write" {
            return command_result(
                command,
                false,
                format!(
                    "unsupported action {:?} for Modbus device {device:?} (only \"write\")",
                    command.action
                ),
            );
        }
        if command.deadline_ms > 0 && pb::now_ms() > command.deadline_ms {
            return command_result(command, false, "deadline passed before the write was sent");
        }
        let (Some(name), Some(text)) = (command.arguments.get("point"), command.arguments.get("value")) else {
            return command_result(command, false, "write needs arguments `point` and `value`");
        };
        let Some(point) = self.cfg.points.iter().find(|p| &p.name == name) else {
            return command_result(command, false, format!("device {device:?} has no point {name:?}"));
        };
        if !point.writable {
            return command_result(
                command,
                false,
                format!("point {name:?} of device {device:?} is not writable"),
            );
        }
        let request = match write_request(point, text) {
            Ok(request) => request,
            Err(why) => return command_result(command, false, format!("device {device:?}: {why}")),
        };
        let (address, table) = (point.address, point.table);
        let name = name.clone();
        match self.call(request).await {
            Ok(Ok(_)) => {
                info!(device = %self.out.device.id, point = %name, register = address, value = %text, "modbus write done");
                command_result(command, true, format!("wrote {text} to {name}"))
            }
            Ok(Err(exception)) => {
                self.metrics.modbus_failure(ModbusFailure::Exception);
                let message = format!(
                    "device {:?} refused the write to {name:?} ({table:?} {address}): {exception}",
                    self.out.device.id
                );
                warn!("{message}");
                command_result(command, false, message)
            }
            Err(reason) => {
                let message = format!(
                    "writing {name:?} ({table:?} {address}) on device {:?}: {reason}",
                    self.out.device.id
                );
                warn!("{message}");
                command_result(command, false, message)
            }
        }
    }
}

/// Decodes one point out of the reply to the request that read it.
fn observe(data: &Data, request: &ReadRequest, point: &PointConfig) -> Observation {
    let offset = request.offset_of(point.address);
    let result = match data {
        Data::Words(words) => decode(words.get(offset..).unwrap_or(&[]), point),
        Data::Bits(bits) => decode_bit(bits.get(offset..).unwrap_or(&[]), point),
    };
    result.map_err(|e| e.to_string())
}

/// The request that writes `text` to a writable point.
fn write_request(point: &PointConfig, text: &str) -> Result<Request<'static>, String> {
    match point.table {
        Table::Coil => {
            let on = match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "on" => true,
                "false" | "0" | "off" => false,
                _ => {
                    return Err(format!(
                        "point {:?}: {text:?} is not a bool (true/false/1/0/on/off)",
                        point.name
                    ));
                }
            };
            Ok(Request::WriteSingleCoil(point.address, on))
        }
        Table::Holding => {
            let value: f64 = text
                .trim()
                .parse()
                .map_err(|_| format!("point {:?}: {text:?} is not a number", point.name))?;
            let words = encode(value, point).map_err(|e| e.to_string())?;
            Ok(match words.as_slice() {
                [word] => Request::WriteSingleRegister(point.address, *word),
                _ => Request::WriteMultipleRegisters(point.address, Cow::Owned(words)),
            })
        }
        Table::Input | Table::Discrete => Err(format!(
            "point {:?}: a {:?} point is read-only",
            point.name, point.table
        )),
    }
}
