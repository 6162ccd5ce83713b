//! Pump-room simulator: a Modbus TCP server over a small physical model, with fault
//! injection, for demos, tests and load tests.
//!
//! # Register map (zero-based protocol addresses; any unit id is answered)
//!
//! | Table    | Addr | Name              | Type | Encoding                                   |
//! |----------|------|-------------------|------|--------------------------------------------|
//! | holding  | 0    | `outlet_pressure` | u16  | MPa × 1000 (scale 0.001)                   |
//! | holding  | 1    | `tank_level`      | u16  | m × 100 (scale 0.01)                       |
//! | holding  | 2–3  | `pump1_current`   | f32  | A, word order big, byte order big          |
//! | holding  | 4–5  | `pump2_current`   | f32  | A, word order big, byte order big          |
//! | holding  | 6    | `status_word`     | u16  | bit 0 pump1 running, 1 pump2 running, 2 pump1 fault, 3 pump2 fault |
//! | discrete | 0    | `pump1_fault`     | bool |                                            |
//! | discrete | 1    | `pump2_fault`     | bool |                                            |
//! | discrete | 2    | `pump1_running`   | bool |                                            |
//! | discrete | 3    | `pump2_running`   | bool |                                            |
//! | coil     | 0    | `pump1_enable`    | bool | writable: false stops the duty pump        |
//! | coil     | 1    | `fault_reset`     | bool | writable: writing true clears both faults; reads false |
//!
//! Holding registers are read-only (a write is answered IllegalDataAddress); there are no
//! input registers. Any address or count outside the map is an IllegalDataAddress (or
//! IllegalDataValue for a zero or oversized count) exception, never a panic.
//!
//! [`gateway_points_toml`] gives the same map as gateway configuration.

mod model;
mod service;

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, time::MissedTickBehavior};
use tokio_modbus::server::tcp::Server;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use model::Pump;
pub use service::Fault;
pub use tokio_modbus::ExceptionCode;

use self::{
    model::Model,
    service::{PumpService, Shared, lock},
};

/// Tuning of a simulated pump room.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the duty pump must be lost before the standby starts.
    pub standby_delay: Duration,
    /// Step of the model's background task.
    pub tick: Duration,
    /// Seed of the measurement noise (a fixed seed gives repeatable runs).
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            standby_delay: Duration::from_secs(8),
            tick: Duration::from_millis(100),
            seed: 0x5EED,
        }
    }
}

/// A running pump room; clones share it. It stops on [`PumpRoom::shutdown`] (not on drop,
/// so a clone handed to a test helper does not stop the server behind the test's back).
#[derive(Clone)]
pub struct PumpRoom {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl PumpRoom {
    /// Binds `listen` (port 0 picks a free port) and starts serving with default options.
    pub async fn start(listen: SocketAddr) -> io::Result<PumpRoom> {
        Self::start_with(listen, Options::default()).await
    }

    pub async fn start_with(listen: SocketAddr, options: Options) -> io::Result<PumpRoom> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            model: std::sync::Mutex::new(Model::new(options.standby_delay, options.seed)),
            fault: std::sync::Mutex::new(Fault::None),
        });
        let stop = CancellationToken::new();
        tokio::spawn(run_model(Arc::clone(&shared), options.tick, stop.clone()));
        tokio::spawn(serve(
            listener,
            PumpService {
                shared: Arc::clone(&shared),
            },
            stop.clone(),
        ));
        info!(%addr, "pump room listening");
        Ok(PumpRoom { shared, addr, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Trips pump 1 (duty) or 2 (standby); other numbers are ignored.
    pub fn trip_pump(&self, pump: u8) {
        if !lock(&self.shared.model).trip(pump) {
            warn!(pump, "pump room has pumps 1 and 2 only; trip ignored");
        }
    }

    /// Clears both pumps' faults, as the `fault_reset` coil does.
    pub fn reset(&self) {
        lock(&self.shared.model).reset();
    }

    /// Freezes (true) or releases (false) the pressure register at its current value.
    pub fn set_stuck_sensor(&self, stuck: bool) {
        lock(&self.shared.model).set_stuck(stuck);
    }

    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.shared.fault) = fault;
    }

    /// The true outlet pressure (MPa), without sensor noise or a stuck sensor.
    pub fn pressure(&self) -> f64 {
        lock(&self.shared.model).pressure
    }

    /// Pump 1 or 2 as the model has it now.
    pub fn pump(&self, pump: u8) -> Option<Pump> {
        let index = usize::from(pump).checked_sub(1)?;
        lock(&self.shared.model).pumps.get(index).copied()
    }

    /// Stops the model and the server, closing every connection.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }
}

async fn run_model(shared: Arc<Shared>, tick: Duration, stop: CancellationToken) {
    let mut interval = tokio::time::interval(tick.max(Duration::from_millis(1)));
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            now = interval.tick() => {
                // Step by the real elapsed time so a late tick does not slow the physics.
                lock(&shared.model).step(now.saturating_duration_since(last));
                last = now;
            }
        }
    }
}

async fn serve(listener: TcpListener, service: PumpService, stop: CancellationToken) {
    let server = Server::new(listener);
    let on_connected = move |stream, peer| {
        let service = service.clone();
        async move {
            debug!(%peer, "pump room: client connected");
            Ok(Some((service, stream)))
        }
    };
    let on_process_error = |e: io::Error| debug!(error = %e, "pump room: connection ended with an error");
    // Dropping `serve` at stop also cancels every connection task it spawned.
    tokio::select! {
        () = stop.cancelled() => {}
        result = server.serve(&on_connected, on_process_error) => {
            if let Err(e) = result {
                warn!(error = %e, "pump room stopped accepting connections");
            }
        }
    }
}

/// The register map as gateway configuration: paste under a `[devices.modbus]` table of a
/// device with `kind = "modbus"`.
pub fn gateway_points_toml() -> &'static str {
    r#"[[devices.modbus.points]]
name = "outlet_pressure"
table = "holding"
address = 0
type = "u16"
scale = 0.001
unit = "MPa"
deadband = 0.005

[[devices.modbus.points]]
name = "tank_level"
table = "holding"
address = 1
type = "u16"
scale = 0.01
unit = "m"
deadband = 0.02

[[devices.modbus.points]]
name = "pump1_current"
table = "holding"
address = 2
type = "f32"
word_order = "big"
byte_order = "big"
unit = "A"
deadband = 0.5

[[devices.modbus.points]]
name = "pump2_current"
table = "holding"
address = 4
type = "f32"
word_order = "big"
byte_order = "big"
unit = "A"
deadband = 0.5

[[devices.modbus.points]]
name = "status_word"
table = "holding"
address = 6
type = "u16"

[[devices.modbus.points]]
name = "pump1_fault"
table = "discrete"
address = 0
type = "bool"

[[devices.modbus.points]]
name = "pump2_fault"
table = "discrete"
address = 1
type = "bool"

[[devices.modbus.points]]
name = "pump1_running"
table = "discrete"
address = 2
type = "bool"

[[devices.modbus.points]]
name = "pump2_running"
table = "discrete"
address = 3
type = "bool"

[[devices.modbus.points]]
name = "pump1_enable"
table = "coil"
address = 0
type = "bool"
writable = true

[[devices.modbus.points]]
name = "fault_reset"
table = "coil"
address = 1
type = "bool"
writable = true
"#
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use tokio_modbus::{
        Slave,
        client::{Reader, Writer, tcp},
    };

    use super::*;

    fn loopback() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    #[test]
    fn the_points_snippet_is_valid_gateway_configuration() {
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
id = "pumproom"
kind = "modbus"
area = "plant"

[devices.modbus]
address = "127.0.0.1:1502"
unit = 1
poll_ms = 500
timeout_ms = 1000

{}"#,
            gateway_points_toml()
        );
        let config = gatehouse_gateway::config::Config::from_toml(&text).unwrap();
        let points = &config.devices[0].modbus.as_ref().unwrap().points;
        assert_eq!(points.len(), 11);
        assert!(
            points
                .iter()
                .any(|p| p.name == "outlet_pressure" && p.deadband == 0.005)
        );
        assert!(points.iter().any(|p| p.name == "pump1_fault"));
    }

    #[tokio::test]
    async fn serves_the_register_map_over_tcp_and_injects_faults() {
        let room = PumpRoom::start(loopback()).await.unwrap();
        let mut client = tcp::connect_slave(room.addr(), Slave(1)).await.unwrap();
        let regs = client.read_holding_registers(0, 7).await.unwrap().unwrap();
        assert!((f64::from(regs[0]) / 1000.0 - 0.45).abs() < 0.01, "{regs:?}");
        assert_eq!(regs[6] & 0b1111, 0b0001);
        assert_eq!(
            client.read_holding_registers(5, 3).await.unwrap(),
            Err(ExceptionCode::IllegalDataAddress)
        );

        room.trip_pump(1);
        assert_eq!(
            client.read_discrete_inputs(0, 4).await.unwrap().unwrap(),
            vec![true, false, false, false]
        );
        client.write_single_coil(1, true).await.unwrap().unwrap();
        assert!(!room.pump(1).unwrap().fault);

        room.set_fault(Fault::Exception(ExceptionCode::ServerDeviceBusy));
        assert_eq!(
            client.read_coils(0, 2).await.unwrap(),
            Err(ExceptionCode::ServerDeviceBusy)
        );

        room.set_fault(Fault::LateAnswer(Duration::from_millis(150)));
        let started = tokio::time::Instant::now();
        client.read_coils(0, 2).await.unwrap().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(150));

        room.set_fault(Fault::NoAnswer);
        let silent = tokio::time::timeout(Duration::from_millis(200), client.read_coils(0, 1)).await;
        assert!(silent.is_err(), "no answer while the fault is set");

        room.set_fault(Fault::None);
        let mut fresh = tcp::connect_slave(room.addr(), Slave(1)).await.unwrap();
        assert_eq!(fresh.read_coils(0, 2).await.unwrap().unwrap(), vec![true, false]);
        room.shutdown();
    }

    /// The gateway's own adapter, configured by [`gateway_points_toml`], sees the trip:
    /// pressure falls below the hub's 0.25 MPa rule and `pump1_fault` turns true.
    #[tokio::test]
    async fn the_gateway_adapter_sees_a_duty_pump_trip() {
        use gatehouse_gateway::{
            adapters::{AdapterContext, EventSink, modbus::run_device},
            config::Config,
            metrics::Metrics,
            registry::Registry,
        };
        use gatehouse_proto::event::Body;

        let room = PumpRoom::start(loopback()).await.unwrap();
        let text = format!(
            "[gateway]\nid = \"gw\"\nestate = \"e\"\ndata_dir = \"/tmp/unused\"\nhubs = [\"http://127.0.0.1:1\"]\n\n\
             [uplink]\nplaintext = true\n\n\
             [[devices]]\nid = \"pumproom\"\nkind = \"modbus\"\narea = \"plant\"\n\n\
             [devices.modbus]\naddress = \"{}\"\nunit = 1\npoll_ms = 100\ntimeout_ms = 500\n\n{}",
            room.addr(),
            gateway_points_toml()
        );
        let config = Config::from_toml(&text).unwrap();
        let registry = Registry::from_config(&config);
        let device = registry.get("pumproom").unwrap().clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let ctx = AdapterContext {
            registry,
            sink: EventSink::new(tx),
            metrics: Arc::new(Metrics::default()),
            health: Default::default(),
        };
        let stop = CancellationToken::new();
        let (_commands, commands_rx) = tokio::sync::mpsc::channel(1);
        let cfg = config.devices[0].modbus.clone().unwrap();
        tokio::spawn(run_device(
            ctx,
            device,
            cfg,
            config.modbus.clone(),
            commands_rx,
            stop.clone(),
        ));

        let mut latest = std::collections::HashMap::new();
        let mut wait_until = async |want: &dyn Fn(&std::collections::HashMap<String, f64>) -> bool| {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while !want(&latest) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let Ok(Some(ev)) = tokio::time::timeout(left, rx.recv()).await else {
                    return false;
                };
                if let Some(Body::Point(p)) = ev.body {
                    latest.insert(p.point, p.value);
                }
            }
            true
        };
        assert!(wait_until(&|m| m.get("outlet_pressure").is_some_and(|p| *p > 0.4)).await);
        room.trip_pump(1);
        assert!(
            wait_until(&|m| m.get("outlet_pressure").is_some_and(|p| *p < 0.25) && m.get("pump1_fault") == Some(&1.0))
                .await,
            "trip seen by the gateway"
        );
        stop.cancel();
        room.shutdown();
    }
}
