//! A simulated estate: its gateway with the embedded broker, a door controller, an intercom,
//! a fire panel and a pump room, wired as a real site would be (loopback ports chosen at run
//! time). The demo, the load command and the end-to-end tests build on this.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use gatehouse_gateway::{RunningGateway, config::Config as GatewayConfig};
use gatehouse_hub::{RunningHub, config::HubConfig};

use crate::{
    devices::{DoorController, FirePanel, Intercom},
    mqtt_device::MqttDevice,
    net::free_local_addr,
    pumproom::{self, PumpRoom},
};

#[derive(Debug, Clone)]
pub struct EstateSpec {
    pub id: String,
    pub name: String,
}

impl EstateSpec {
    pub fn new(id: &str, name: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
        }
    }
}

/// The three estates of the demo.
pub fn demo_estates() -> Vec<EstateSpec> {
    vec![
        EstateSpec::new("estate-a", "Riverside Gardens"),
        EstateSpec::new("estate-b", "Lakeview Court"),
        EstateSpec::new("estate-c", "Maple Heights"),
    ]
}

/// The hub's configuration for `estates`, with the plant rules the pump room needs.
pub fn hub_toml(grpc: SocketAddr, http: SocketAddr, database: &str, estates: &[EstateSpec]) -> String {
    let mut s = format!("[hub]\ngrpc_listen = \"{grpc}\"\nhttp_listen = \"{http}\"\ndatabase = \"{database}\"\n\n");
    for e in estates {
        s += &format!(
            "[[estates]]\nid = \"{}\"\nname = \"{}\"\ntimezone = \"Asia/Shanghai\"\n\n",
            e.id, e.name
        );
    }
    // Who escalation reaches, until the rota issue resolves roles from live coverage. The
    // `log` channel writes each notification to the hub's log and the incident timeline.
    for e in estates {
        for (role, who) in [
            ("gate_post", "gate post"),
            ("patrol_post", "patrol post"),
            ("monitoring_room", "monitoring room"),
            ("supervisor", "estate supervisor"),
        ] {
            s += &format!(
                "[[roster]]\nestate = \"{}\"\nrole = \"{role}\"\nname = \"{} {who}\"\nchannel = \"log\"\n\n",
                e.id, e.name
            );
        }
    }
    s += "[[roster]]\nrole = \"duty_manager\"\nname = \"Command centre duty manager\"\nchannel = \"log\"\n\n";
    s += "[[roster]]\nrole = \"facility_team\"\nname = \"Facility team\"\nchannel = \"log\"\n\n";
    s += r#"[[rules.points]]
point = "outlet_pressure"
low = 0.25
deadband = 0.02
delay_s = 2
priority = "P3"
message = "Low water pressure at the pump outlet"

[[rules.points]]
point = "pump1_fault"
when = true
priority = "P3"
message = "Duty pump tripped"

[[rules.points]]
point = "pump2_fault"
when = true
priority = "P3"
message = "Standby pump tripped"
"#;
    s
}

/// Starts a hub on `http` (gRPC on a port of its own choosing) with its database in `data_dir`.
pub async fn start_hub(http: SocketAddr, data_dir: &Path, estates: &[EstateSpec]) -> anyhow::Result<RunningHub> {
    start_hub_at("127.0.0.1:0".parse()?, http, data_dir, estates).await
}

/// A gateway's configuration for one simulated estate.
pub fn gateway_toml(estate: &str, data_dir: &Path, hub: SocketAddr, mqtt: SocketAddr, modbus: SocketAddr) -> String {
    format!(
        r#"[gateway]
id = "gw-{estate}"
estate = "{estate}"
data_dir = "{data}"
hubs = ["http://{hub}"]

[mqtt]
listen = "{mqtt}"

[[devices]]
id = "door-main-gate"
kind = "door"
area = "main-gate"

[[devices]]
id = "barrier-vehicle-gate"
kind = "door"
area = "vehicle-gate"

[[devices]]
id = "intercom-block-3"
kind = "intercom"
area = "block-3"

[[devices]]
id = "fire-panel-1"
kind = "fire_panel"
area = "fire-control-room"

[[devices]]
id = "pump-room-1"
kind = "modbus"
area = "water-pump-room"
[devices.modbus]
address = "{modbus}"
unit = 1
poll_ms = 500
timeout_ms = 400
{points}"#,
        data = data_dir.display(),
        points = pumproom::gateway_points_toml(),
    )
}

pub struct SimEstate {
    pub spec: EstateSpec,
    pub gateway: RunningGateway,
    // Shared: one MQTT session per device id (a second would take the first one's place),
    // used by both the storyline and the background traffic.
    pub door: Arc<DoorController>,
    pub vehicle_gate: Arc<DoorController>,
    pub intercom: Arc<Intercom>,
    pub fire_panel: Arc<FirePanel>,
    pub pump_room: PumpRoom,
    pub data_dir: PathBuf,
}

/// Starts one estate's pump room, gateway and devices, its gateway pointed at `hub`.
pub async fn start_estate(spec: EstateSpec, hub: SocketAddr, data_root: &Path) -> anyhow::Result<SimEstate> {
    let pump_room = PumpRoom::start("127.0.0.1:0".parse()?)
        .await
        .context("starting the pump-room simulator")?;
    let mqtt = free_local_addr().context("choosing an MQTT port")?;
    let data_dir = data_root.join(format!("gw-{}", spec.id));
    let toml = gateway_toml(&spec.id, &data_dir, hub, mqtt, pump_room.addr());
    let config = GatewayConfig::from_toml(&toml).with_context(|| format!("gateway configuration for {}", spec.id))?;
    let gateway = gatehouse_gateway::start(config)
        .await
        .with_context(|| format!("starting the gateway of {}", spec.id))?;
    Ok(SimEstate {
        door: Arc::new(DoorController(MqttDevice::connect(mqtt, "door-main-gate"))),
        vehicle_gate: Arc::new(DoorController(MqttDevice::connect(mqtt, "barrier-vehicle-gate"))),
        intercom: Arc::new(Intercom(MqttDevice::connect(mqtt, "intercom-block-3"))),
        fire_panel: Arc::new(FirePanel(MqttDevice::connect(mqtt, "fire-panel-1"))),
        spec,
        gateway,
        pump_room,
        data_dir,
    })
}

/// Starts a hub whose gRPC port is `grpc` (for tests that bring a hub up after its gateways).
pub async fn start_hub_at(
    grpc: SocketAddr,
    http: SocketAddr,
    data_dir: &Path,
    estates: &[EstateSpec],
) -> anyhow::Result<RunningHub> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let db = format!("sqlite://{}", data_dir.join("hub.db").display());
    let config = HubConfig::from_toml(&hub_toml(grpc, http, &db, estates)).context("hub configuration")?;
    gatehouse_hub::start(config).await.context("starting the hub")
}
