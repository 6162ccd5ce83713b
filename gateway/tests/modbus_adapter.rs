//! The Modbus adapter against a real tokio-modbus TCP server on loopback.
//!
//! The pump-room simulator lives in gatehouse-sim, which depends on this crate, so the
//! device here is a small in-file server: a register array with fault switches.

use std::{
    collections::HashMap,
    future::{Ready, ready},
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard, atomic::Ordering::Relaxed},
    time::Duration,
};

use gatehouse_gateway::{
    adapters::{
        AdapterContext, CommandRequest, EventSink,
        modbus::{config::ModbusSection, run_device},
    },
    config::Config,
    metrics::{Metrics, ModbusFailure},
    registry::Registry,
};
use gatehouse_proto::{self as pb, DeviceStatus, PointReading, Quality, event::Body};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
    time::{Instant, timeout},
};
use tokio_modbus::{ExceptionCode, Request, Response, server::Service, server::tcp::Server};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- the test device

#[derive(Debug, Clone, Copy, PartialEq)]
enum DeviceFault {
    None,
    /// Reads every request and answers none.
    NoAnswer,
    Exception(ExceptionCode),
}

struct Regs {
    holding: Vec<u16>,
    coils: Vec<bool>,
    discrete: Vec<bool>,
    fault: DeviceFault,
    /// Every request seen, for checking how reads were merged.
    log: Vec<Request<'static>>,
}

#[derive(Clone)]
struct TestDevice {
    regs: Arc<Mutex<Regs>>,
}

impl TestDevice {
    fn regs(&self) -> MutexGuard<'_, Regs> {
        self.regs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn range<T: Copy>(t: &[T], a: u16, n: u16) -> Result<Vec<T>, ExceptionCode> {
    let a = usize::from(a);
    t.get(a..a + usize::from(n))
        .map(<[T]>::to_vec)
        .ok_or(ExceptionCode::IllegalDataAddress)
}

fn serve_request(regs: &mut Regs, req: Request<'static>) -> Result<Response, ExceptionCode> {
    match req {
        Request::ReadHoldingRegisters(a, n) => Ok(Response::ReadHoldingRegisters(range(&regs.holding, a, n)?)),
        Request::ReadCoils(a, n) => Ok(Response::ReadCoils(range(&regs.coils, a, n)?)),
        Request::ReadDiscreteInputs(a, n) => Ok(Response::ReadDiscreteInputs(range(&regs.discrete, a, n)?)),
        Request::WriteSingleRegister(a, w) => {
            *regs
                .holding
                .get_mut(usize::from(a))
                .ok_or(ExceptionCode::IllegalDataAddress)? = w;
            Ok(Response::WriteSingleRegister(a, w))
        }
        Request::WriteMultipleRegisters(a, ws) => {
            let start = usize::from(a);
            let slot = regs
                .holding
                .get_mut(start..start + ws.len())
                .ok_or(ExceptionCode::IllegalDataAddress)?;
            slot.copy_from_slice(&ws);
            Ok(Response::WriteMultipleRegisters(a, ws.len() as u16))
        }
        Request::WriteSingleCoil(a, on) => {
            *regs
                .coils
                .get_mut(usize::from(a))
                .ok_or(ExceptionCode::IllegalDataAddress)? = on;
            Ok(Response::WriteSingleCoil(a, on))
        }
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

impl Service for TestDevice {
    type Request = Request<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let mut regs = self.regs();
        regs.log.push(req.clone());
        ready(match regs.fault {
            DeviceFault::None => serve_request(&mut regs, req).map(Some),
            DeviceFault::NoAnswer => Ok(None),
            DeviceFault::Exception(code) => Err(code),
        })
    }
}

async fn start_device(stop: CancellationToken) -> (TestDevice, SocketAddr) {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let device = TestDevice {
        regs: Arc::new(Mutex::new(Regs {
            holding: vec![0; 100],
            coils: vec![false; 16],
            discrete: vec![false; 16],
            fault: DeviceFault::None,
            log: Vec::new(),
        })),
    };
    let service = device.clone();
    tokio::spawn(async move {
        let server = Server::new(listener);
        let on_connected = move |stream, _| {
            let service = service.clone();
            async move { Ok(Some((service, stream))) }
        };
        tokio::select! {
            () = stop.cancelled() => {}
            _ = server.serve(&on_connected, |_| {}) => {}
        }
    });
    (device, addr)
}

// ---------------------------------------------------------------- the adapter under test

struct Harness {
    device: TestDevice,
    events: mpsc::Receiver<pb::Event>,
    commands: mpsc::Sender<CommandRequest>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

const DEVICE_ID: &str = "pump-1";

async fn start(points_toml: &str, section: ModbusSection, setup: impl FnOnce(&mut Regs)) -> Harness {
    let stop = CancellationToken::new();
    let (device, addr) = start_device(stop.clone()).await;
    setup(&mut device.regs());
    let text = format!(
        r#"
[gateway]
id = "gw-test"
estate = "estate-test"
data_dir = "/tmp/unused"
hubs = ["http://127.0.0.1:1"]

[uplink]
plaintext = true

[[devices]]
id = "{DEVICE_ID}"
kind = "modbus"
area = "plant"

[devices.modbus]
address = "{addr}"
unit = 1
poll_ms = 50
timeout_ms = 100

{points_toml}"#
    );
    let config = Config::from_toml(&text).unwrap();
    let registry = Registry::from_config(&config);
    let info = registry.get(DEVICE_ID).unwrap().clone();
    let cfg = config.devices[0].modbus.clone().unwrap();
    let (tx, events) = mpsc::channel(4096);
    let metrics = Arc::new(Metrics::default());
    let ctx = AdapterContext {
        registry,
        sink: EventSink::new(tx),
        metrics: Arc::clone(&metrics),
        health: Default::default(),
    };
    let (commands, rx) = mpsc::channel(8);
    tokio::spawn(run_device(ctx, info, cfg, section, rx, stop.clone()));
    Harness {
        device,
        events,
        commands,
        metrics,
        stop,
    }
}

fn section(refresh_s: u64) -> ModbusSection {
    ModbusSection {
        refresh_s,
        offline_after_failures: 3,
        backoff_max_ms: 300,
    }
}

fn reading(ev: &pb::Event) -> Option<&PointReading> {
    match &ev.body {
        Some(Body::Point(p)) => Some(p),
        _ => None,
    }
}

fn status(ev: &pb::Event) -> Option<&DeviceStatus> {
    match &ev.body {
        Some(Body::Status(s)) => Some(s),
        _ => None,
    }
}

impl Harness {
    /// Every event within `within`.
    async fn collect(&mut self, within: Duration) -> Vec<pb::Event> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while let Ok(Some(ev)) = timeout(deadline.saturating_duration_since(Instant::now()), self.events.recv()).await {
            out.push(ev);
        }
        out
    }

    /// The first event matching `want` within `within`; panics naming `what` otherwise.
    async fn wait_for(&mut self, what: &str, within: Duration, want: impl Fn(&pb::Event) -> bool) -> pb::Event {
        let deadline = Instant::now() + within;
        loop {
            match timeout(deadline.saturating_duration_since(Instant::now()), self.events.recv()).await {
                Ok(Some(ev)) if want(&ev) => return ev,
                Ok(Some(_)) => {}
                _ => panic!("no {what} within {within:?}"),
            }
        }
    }

    async fn wait_reading(&mut self, point: &str, want: impl Fn(&PointReading) -> bool) -> PointReading {
        let ev = self
            .wait_for(&format!("reading of {point}"), Duration::from_secs(3), |ev| {
                reading(ev).is_some_and(|r| r.point == point && want(r))
            })
            .await;
        reading(&ev).cloned().unwrap()
    }

    async fn command(&self, action: &str, args: &[(&str, &str)]) -> pb::CommandResult {
        let (reply, rx) = oneshot::channel();
        let command = pb::Command {
            command_id: "cmd-1".into(),
            device_id: DEVICE_ID.into(),
            action: action.into(),
            arguments: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            deadline_ms: 0,
        };
        self.commands.send(CommandRequest { command, reply }).await.unwrap();
        timeout(Duration::from_secs(3), rx).await.unwrap().unwrap()
    }
}

fn good(r: &PointReading) -> bool {
    r.quality == Quality::Good as i32
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn merged_reads_decode_every_type_in_one_request_per_table() {
    let points = r#"
[[devices.modbus.points]]
name = "flow"
table = "holding"
address = 0
type = "f32"
unit = "m3/h"

[[devices.modbus.points]]
name = "count"
table = "holding"
address = 2
type = "i32"
word_order = "little"

[[devices.modbus.points]]
name = "temp"
table = "holding"
address = 4
type = "i16"
scale = 0.1

[[devices.modbus.points]]
name = "alarm"
table = "holding"
address = 5
type = "bool"
bit = 3

[[devices.modbus.points]]
name = "swapped"
table = "holding"
address = 6
type = "u16"
byte_order = "little"

[[devices.modbus.points]]
name = "valve"
table = "coil"
address = 0
type = "bool"

[[devices.modbus.points]]
name = "door"
table = "discrete"
address = 0
type = "bool"
"#;
    let mut h = start(points, section(60), |r| {
        let f = 123.456f32.to_bits();
        let c = -123_456i32 as u32;
        r.holding[..7].copy_from_slice(&[
            (f >> 16) as u16,
            f as u16,
            c as u16,
            (c >> 16) as u16,
            -25i16 as u16,
            0b1000,
            0x3412,
        ]);
        r.coils[0] = true;
    })
    .await;
    let expected = [
        ("flow", f64::from(123.456f32)),
        ("count", -123_456.0),
        ("temp", -2.5),
        ("alarm", 1.0),
        ("swapped", f64::from(0x1234u16)),
        ("valve", 1.0),
        ("door", 0.0),
    ];
    for (point, value) in expected {
        let r = h.wait_reading(point, |_| true).await;
        assert!(good(&r), "{point} quality {}", r.quality);
        assert!((r.value - value).abs() < 1e-9, "{point}: {} != {value}", r.value);
        assert!(!r.refresh);
        if point == "flow" {
            assert_eq!(r.unit, "m3/h");
        }
    }
    let log = h.device.regs().log.clone();
    let mut distinct: Vec<_> = log.iter().map(|r| format!("{r:?}")).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct,
        vec![
            "ReadCoils(0, 1)",
            "ReadDiscreteInputs(0, 1)",
            "ReadHoldingRegisters(0, 7)"
        ],
        "one read per table per poll"
    );
}

const PRESSURE: &str = r#"
[[devices.modbus.points]]
name = "pressure"
table = "holding"
address = 0
type = "u16"
scale = 0.001
unit = "MPa"
deadband = 0.005

[[devices.modbus.points]]
name = "level"
table = "holding"
address = 1
type = "u16"
scale = 0.01
unit = "m"
"#;

#[tokio::test]
async fn a_change_within_the_deadband_is_held_until_the_full_refresh() {
    let mut h = start(PRESSURE, section(1), |r| r.holding[0] = 450).await;
    let first = h.wait_reading("pressure", |_| true).await;
    assert!((first.value - 0.45).abs() < 1e-9 && !first.refresh);

    h.device.regs().holding[0] = 453;
    let held = h.collect(Duration::from_millis(400)).await;
    assert!(
        !held
            .iter()
            .filter_map(reading)
            .any(|r| r.point == "pressure" && !r.refresh),
        "0.003 MPa is within the 0.005 deadband: {held:?}"
    );

    let refreshed = h.wait_reading("pressure", |r| r.refresh).await;
    assert!(
        (refreshed.value - 0.453).abs() < 1e-9,
        "the refresh carries the held value: {refreshed:?}"
    );

    h.device.regs().holding[0] = 460;
    let moved = h.wait_reading("pressure", |r| !r.refresh).await;
    assert!((moved.value - 0.46).abs() < 1e-9);
}

#[tokio::test]
async fn an_exception_turns_points_bad_once_and_polling_goes_on() {
    let mut h = start(PRESSURE, section(60), |r| r.holding[1] = 250).await;
    assert!(good(&h.wait_reading("level", |_| true).await));

    h.device.regs().fault = DeviceFault::Exception(ExceptionCode::ServerDeviceFailure);
    let bad = h.wait_reading("level", |r| !good(r)).await;
    assert_eq!(bad.quality, Quality::Bad as i32);
    let requests_then = h.device.regs().log.len();
    let during = h.collect(Duration::from_millis(400)).await;
    assert!(
        h.device.regs().log.len() >= requests_then + 3,
        "polling continues through exceptions"
    );
    assert!(
        !during.iter().filter_map(reading).any(|r| r.point == "level"),
        "BAD is reported once, not every poll: {during:?}"
    );
    assert!(
        !during.iter().any(|e| status(e).is_some()),
        "an answering device is not offline"
    );
    assert_eq!(
        h.metrics.modbus_reconnects.load(Relaxed),
        0,
        "an exception keeps the connection"
    );
    assert!(h.metrics.modbus_failures(ModbusFailure::Exception) >= 3);

    h.device.regs().fault = DeviceFault::None;
    let back = h.wait_reading("level", good).await;
    assert!((back.value - 2.5).abs() < 1e-9);
}

#[tokio::test]
async fn a_silent_device_is_reported_offline_once_and_online_once_when_it_answers() {
    let mut h = start(PRESSURE, section(60), |r| r.holding[0] = 450).await;
    let first = h
        .wait_for("first online", Duration::from_secs(3), |e| status(e).is_some())
        .await;
    assert!(status(&first).unwrap().online);

    h.device.regs().fault = DeviceFault::NoAnswer;
    let silent = h.collect(Duration::from_millis(2500)).await;
    let statuses: Vec<_> = silent.iter().filter_map(status).collect();
    assert_eq!(
        statuses.len(),
        1,
        "one offline event over many failed polls: {statuses:?}"
    );
    assert!(!statuses[0].online && !statuses[0].reason.is_empty(), "{statuses:?}");
    assert!(
        silent
            .iter()
            .filter_map(reading)
            .any(|r| r.point == "pressure" && r.quality == Quality::Uncertain as i32),
        "values the hub holds are marked old"
    );
    assert_eq!(h.metrics.modbus_devices_offline.load(Relaxed), 1);
    assert!(h.metrics.modbus_failures(ModbusFailure::Timeout) >= 3);
    assert!(
        h.metrics.modbus_reconnects.load(Relaxed) >= 3,
        "a timeout drops the connection"
    );
    let attempts = h.device.regs().log.len();
    assert!(attempts < 2500 / 50, "backed off: {attempts} requests in 2.5 s");

    h.device.regs().fault = DeviceFault::None;
    let online = h
        .wait_for("online again", Duration::from_secs(3), |e| status(e).is_some())
        .await;
    assert!(status(&online).unwrap().online);
    let after = h.collect(Duration::from_millis(500)).await;
    assert!(
        !after.iter().any(|e| status(e).is_some()),
        "one online event: {after:?}"
    );
    assert!(
        after.iter().chain([&online]).filter_map(reading).all(good),
        "readings after recovery are GOOD"
    );
    assert_eq!(h.metrics.modbus_devices_offline.load(Relaxed), 0);
}

const WRITABLE: &str = r#"
[[devices.modbus.points]]
name = "setpoint"
table = "holding"
address = 10
type = "u16"
scale = 0.1
writable = true

[[devices.modbus.points]]
name = "big_setpoint"
table = "holding"
address = 12
type = "f32"
word_order = "little"
writable = true

[[devices.modbus.points]]
name = "pump_enable"
table = "coil"
address = 1
type = "bool"
writable = true

[[devices.modbus.points]]
name = "level"
table = "holding"
address = 1
type = "u16"
"#;

#[tokio::test]
async fn a_write_to_a_writable_point_changes_the_device_register() {
    let mut h = start(WRITABLE, section(60), |_| {}).await;
    h.wait_reading("setpoint", |_| true).await;

    let r = h.command("write", &[("point", "setpoint"), ("value", "12.3")]).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(h.device.regs().holding[10], 123);
    let read_back = h.wait_reading("setpoint", |r| r.value > 0.0).await;
    assert!((read_back.value - 12.3).abs() < 1e-9);

    let r = h
        .command("write", &[("point", "big_setpoint"), ("value", "-1.5")])
        .await;
    assert!(r.ok, "{r:?}");
    let bits = (-1.5f32).to_bits();
    assert_eq!(
        h.device.regs().holding[12..14],
        [bits as u16, (bits >> 16) as u16],
        "word order little"
    );

    let r = h.command("write", &[("point", "pump_enable"), ("value", "true")]).await;
    assert!(r.ok, "{r:?}");
    assert!(h.device.regs().coils[1]);

    let r = h.command("write", &[("point", "setpoint"), ("value", "7000")]).await;
    assert!(!r.ok && r.message.contains("out of range"), "{r:?}");
    assert_eq!(h.device.regs().holding[10], 123, "a refused value is not written");
}

#[tokio::test]
async fn writes_to_read_only_points_and_other_actions_are_refused() {
    let mut h = start(WRITABLE, section(60), |r| r.holding[1] = 7).await;
    h.wait_reading("level", |_| true).await;

    let r = h.command("write", &[("point", "level"), ("value", "3")]).await;
    assert!(!r.ok && r.message.contains("not writable"), "{r:?}");
    assert_eq!(h.device.regs().holding[1], 7);
    assert_eq!((r.command_id.as_str(), r.device_id.as_str()), ("cmd-1", DEVICE_ID));

    let r = h.command("unlock", &[]).await;
    assert!(!r.ok && r.message.contains("unsupported action"), "{r:?}");

    let r = h.command("write", &[("point", "nonexistent"), ("value", "1")]).await;
    assert!(!r.ok && r.message.contains("no point"), "{r:?}");

    let r = h.command("write", &[("point", "setpoint"), ("value", "abc")]).await;
    assert!(!r.ok && r.message.contains("not a number"), "{r:?}");
    let writes = h
        .device
        .regs()
        .log
        .iter()
        .filter(|r| !matches!(r, Request::ReadHoldingRegisters(..) | Request::ReadCoils(..)))
        .count();
    assert_eq!(writes, 0, "nothing refused reached the device");
}
