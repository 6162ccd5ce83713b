//! A simulated estate: its gateway with the embedded broker, a door controller, an intercom,
//! a fire panel and a pump room, wired as a real site would be (loopback ports chosen at run
//! time). The demo, the load command and the end-to-end tests build on this.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use gatehouse_gateway::{RunningGateway, adapters::dc09::crypto::Key, config::Config as GatewayConfig};
use gatehouse_hub::{
    RunningHub,
    config::HubConfig,
    tls::{GatewayIdentity, mint},
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{
    devices::{DoorController, FirePanel, Intercom},
    firepanel::dc09::{self, Answer, Dc09Panel, Format, Transport},
    mqtt_device::MqttDevice,
    mqtt_login,
    net::free_local_addr,
    pumproom::{self, PumpRoom},
};

#[derive(Debug, Clone)]
pub struct EstateSpec {
    pub id: String,
    pub name: String,
    /// The estate's fire panel reports over SIA DC-09 (encrypted Contact ID) instead of the
    /// MQTT profile.
    pub dc09_fire_panel: bool,
    /// The hub keeps the rota of the estate's main-gate post (two guards, badge reader
    /// `door-main-gate`): an empty post raises an alarm after a short grace period.
    pub gate_post_rota: bool,
}

impl EstateSpec {
    pub fn new(id: &str, name: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            dc09_fire_panel: false,
            gate_post_rota: false,
        }
    }

    pub fn with_gate_post_rota(mut self) -> Self {
        self.gate_post_rota = true;
        self
    }

    pub fn with_dc09_fire_panel(mut self) -> Self {
        self.dc09_fire_panel = true;
        self
    }
}

/// The guards of a simulated main-gate post: the first is on duty when the demo starts, the
/// second is off and rested. A guard's id and badge credential are `<id>-<estate>`.
pub const GATE_GUARDS: [(&str, &str); 2] = [("g-wang", "Wang Fang"), ("g-zhao", "Zhao Lei")];

/// The DC-09 account and AES key of a simulated estate's fire panel.
pub const DC09_ACCOUNT: &str = "1234";
pub const DC09_KEY: &str = "gatehouse-demo01";

/// The three estates of the demo.
pub fn demo_estates() -> Vec<EstateSpec> {
    vec![
        EstateSpec::new("estate-a", "Riverside Gardens").with_gate_post_rota(),
        EstateSpec::new("estate-b", "Lakeview Court"),
        EstateSpec::new("estate-c", "Maple Heights").with_dc09_fire_panel(),
    ]
}

/// The gateway id of a simulated estate.
pub fn gateway_id(estate: &str) -> String {
    format!("gw-{estate}")
}

/// Mints a development PKI for `estates` into `dir` (a CA, the hub's certificate, one per
/// estate's gateway, an empty CRL), as `gatehouse-hub certs` does.
pub fn mint_pki(dir: &Path, estates: &[EstateSpec]) -> anyhow::Result<mint::Layout> {
    let layout = mint::Layout::new(dir);
    mint::mint_all(
        &layout,
        &mint::MintPlan {
            hub_names: Vec::new(),
            gateways: estates
                .iter()
                .map(|e| GatewayIdentity::new(&e.id, gateway_id(&e.id)))
                .collect(),
            validity: mint::DEFAULT_VALIDITY,
        },
    )
    .with_context(|| format!("minting certificates into {}", dir.display()))?;
    Ok(layout)
}

fn toml_path(p: &Path) -> String {
    toml_str(&p.display().to_string())
}

/// `s` escaped for a basic TOML string.
fn toml_str(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The hub's configuration for `estates`, gRPC in plaintext on loopback (tests, load).
pub fn hub_toml(grpc: SocketAddr, http: SocketAddr, database: &str, estates: &[EstateSpec]) -> anyhow::Result<String> {
    hub_toml_with(grpc, http, database, estates, None)
}

/// The hub's configuration for `estates`, with the plant rules the pump room needs; gRPC over
/// mutual TLS with the certificates of `pki`, else plaintext (loopback only). Each estate's
/// gateway (`gw-<estate>`) is listed in `[[gateways]]`; the demo's users and API token
/// ([`crate::credentials`]) sign in.
pub fn hub_toml_with(
    grpc: SocketAddr,
    http: SocketAddr,
    database: &str,
    estates: &[EstateSpec],
    pki: Option<&mint::Layout>,
) -> anyhow::Result<String> {
    hub_toml_full(grpc, http, database, estates, pki, None)
}

/// A DingTalk custom robot the facility team is notified through (the demo's facility inbox)
/// instead of the log.
#[derive(Clone)]
pub struct FacilityRobot {
    /// The robot's webhook URL, with its access token.
    pub url: String,
    /// Its `SEC…` signing secret.
    pub secret: String,
}

impl std::fmt::Debug for FacilityRobot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FacilityRobot(<redacted>)")
    }
}

/// [`hub_toml_with`], the facility team on `robot` (in Chinese) when given.
pub fn hub_toml_full(
    grpc: SocketAddr,
    http: SocketAddr,
    database: &str,
    estates: &[EstateSpec],
    pki: Option<&mint::Layout>,
    robot: Option<&FacilityRobot>,
) -> anyhow::Result<String> {
    let mut s = format!("[hub]\ngrpc_listen = \"{grpc}\"\nhttp_listen = \"{http}\"\ndatabase = \"{database}\"\n\n");
    s += &crate::credentials::hub_toml_section()?;
    s += &match pki {
        Some(l) => format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\ncrl = \"{}\"\n\n",
            toml_path(&l.hub_cert()),
            toml_path(&l.hub_key()),
            toml_path(&l.ca_cert()),
            toml_path(&l.crl())
        ),
        None => "[tls]\nplaintext = true\n\n".to_owned(),
    };
    for e in estates {
        s += &format!(
            "[[gateways]]\nid = \"{}\"\nestate = \"{}\"\n\n",
            gateway_id(&e.id),
            e.id
        );
    }
    // Every simulated gateway connects from this one machine, which a real estate's gateway
    // never shares: the per-source cap must hold them all.
    s += &format!(
        "[limits.grpc]\nmax_connections_per_source = {}\n\n",
        8 + 2 * estates.len()
    );
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
    // The rota of each main-gate post the spec asks for: Wang Fang on duty, Zhao Lei off.
    let rota: Vec<&EstateSpec> = estates.iter().filter(|e| e.gate_post_rota).collect();
    if !rota.is_empty() {
        s += "[rota]\ngrace_s = 20\n\n";
    }
    for e in rota {
        let id = &e.id;
        s += &format!(
            "[[posts]]\nestate = \"{id}\"\nid = \"{id}-gate\"\nkind = \"gate\"\narea = \"main-gate\"\n\
             readers = [\"door-main-gate\"]\n\n"
        );
        for (guard, name) in GATE_GUARDS {
            s += &format!(
                "[[guards]]\nid = \"{guard}-{id}\"\nname = \"{name}\"\nhome_estate = \"{id}\"\n\
                 credentials = [\"{guard}-{id}\"]\n\n"
            );
        }
    }
    s += "[[roster]]\nrole = \"duty_manager\"\nname = \"Command centre duty manager\"\nchannel = \"log\"\n\n";
    match robot {
        Some(r) => {
            s += &format!(
                "[[notify.robots]]\nname = \"facility\"\nkind = \"dingtalk\"\nurl = \"{}\"\nsecret = \"{}\"\n\n",
                toml_str(&r.url),
                toml_str(&r.secret)
            );
            s += "[[roster]]\nrole = \"facility_team\"\nname = \"Facility team\"\nchannel = \"robot:facility\"\n\
                  language = \"zh-CN\"\n\n";
        }
        None => s += "[[roster]]\nrole = \"facility_team\"\nname = \"Facility team\"\nchannel = \"log\"\n\n",
    }
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
    Ok(s)
}

/// Starts a hub on `http` (gRPC on a port of its own choosing) with its database in `data_dir`.
pub async fn start_hub(http: SocketAddr, data_dir: &Path, estates: &[EstateSpec]) -> anyhow::Result<RunningHub> {
    start_hub_at("127.0.0.1:0".parse()?, http, data_dir, estates).await
}

/// The MQTT devices of a simulated estate.
pub const MQTT_DEVICES: [&str; 4] = [
    "door-main-gate",
    "barrier-vehicle-gate",
    "intercom-block-3",
    "fire-panel-1",
];

/// One random MQTT password per device of a simulated estate, with its hash.
pub struct DeviceLogins {
    /// Device id → (password, argon2 PHC string).
    pub by_device: HashMap<String, (String, String)>,
}

impl DeviceLogins {
    pub fn generate() -> anyhow::Result<Self> {
        let mut by_device = HashMap::new();
        for d in MQTT_DEVICES {
            let password = mqtt_login::random_password()?;
            let hash = mqtt_login::hash(&password)?;
            by_device.insert(d.to_string(), (password, hash));
        }
        Ok(Self { by_device })
    }

    pub fn password(&self, device: &str) -> Option<&str> {
        self.by_device.get(device).map(|(p, _)| p.as_str())
    }

    /// The `mqtt_password_hash = "…"` line of `device`'s table (empty for another device).
    fn hash_line(&self, device: &str) -> String {
        self.by_device
            .get(device)
            .map(|(_, h)| format!("mqtt_password_hash = \"{h}\"\n"))
            .unwrap_or_default()
    }
}

/// [`start_hub`], gRPC over mutual TLS when `pki` is given.
pub async fn start_hub_with(
    http: SocketAddr,
    data_dir: &Path,
    estates: &[EstateSpec],
    pki: Option<&mint::Layout>,
) -> anyhow::Result<RunningHub> {
    start_hub_full(http, data_dir, estates, pki, None).await
}

/// [`start_hub_with`], the facility team notified through `robot` when given.
pub async fn start_hub_full(
    http: SocketAddr,
    data_dir: &Path,
    estates: &[EstateSpec],
    pki: Option<&mint::Layout>,
    robot: Option<&FacilityRobot>,
) -> anyhow::Result<RunningHub> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let db = format!("sqlite://{}", data_dir.join("hub.db").display());
    let toml = hub_toml_full("127.0.0.1:0".parse()?, http, &db, estates, pki, robot)?;
    let config = HubConfig::from_toml(&toml).context("hub configuration")?;
    gatehouse_hub::start(config).await.context("starting the hub")
}

/// A gateway's configuration for one simulated estate, its uplink in plaintext (loopback);
/// only the devices' password hashes are written, never the passwords.
pub fn gateway_toml(
    estate: &EstateSpec,
    data_dir: &Path,
    hub: SocketAddr,
    mqtt: SocketAddr,
    modbus: SocketAddr,
    logins: &DeviceLogins,
) -> String {
    gateway_toml_with(estate, data_dir, hub, mqtt, modbus, logins, None)
}

/// A gateway's configuration for one simulated estate; its uplink over mutual TLS with its
/// certificate from `pki`, else plaintext (loopback only).
pub fn gateway_toml_with(
    estate: &EstateSpec,
    data_dir: &Path,
    hub: SocketAddr,
    mqtt: SocketAddr,
    modbus: SocketAddr,
    logins: &DeviceLogins,
    pki: Option<&mint::Layout>,
) -> String {
    let gateway = gateway_id(&estate.id);
    let (hub_url, uplink) = match pki {
        Some(l) => (
            format!("https://{hub}"),
            format!(
                "[uplink]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                toml_path(&l.ca_cert()),
                toml_path(&l.gateway_cert(&gateway)),
                toml_path(&l.gateway_key(&gateway))
            ),
        ),
        None => (format!("http://{hub}"), "[uplink]\nplaintext = true\n".to_owned()),
    };
    let (dc09_section, dc09_device) = if estate.dc09_fire_panel {
        (
            "[dc09]\nlisten = \"127.0.0.1:0\"\n".to_string(),
            format!("[devices.dc09]\naccount = \"{DC09_ACCOUNT}\"\nkey = \"{DC09_KEY}\"\n"),
        )
    } else {
        (String::new(), String::new())
    };
    let fire_hash = if estate.dc09_fire_panel {
        String::new()
    } else {
        logins.hash_line("fire-panel-1")
    };
    let estate = &estate.id;
    format!(
        r#"[gateway]
id = "{gateway}"
estate = "{estate}"
data_dir = "{data}"
hubs = ["{hub_url}"]

{uplink}
[mqtt]
listen = "{mqtt}"

{dc09_section}
[[devices]]
id = "door-main-gate"
kind = "door"
area = "main-gate"
{door_hash}
[[devices]]
id = "barrier-vehicle-gate"
kind = "door"
area = "vehicle-gate"
{barrier_hash}
[[devices]]
id = "intercom-block-3"
kind = "intercom"
area = "block-3"
{intercom_hash}
[[devices]]
id = "fire-panel-1"
kind = "fire_panel"
area = "fire-control-room"
{fire_hash}{dc09_device}

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
        door_hash = logins.hash_line("door-main-gate"),
        barrier_hash = logins.hash_line("barrier-vehicle-gate"),
        intercom_hash = logins.hash_line("intercom-block-3"),
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
    pub fire_panel: Arc<EstateFirePanel>,
    pub pump_room: PumpRoom,
    pub data_dir: PathBuf,
    /// The MQTT passwords its devices log in with (the gateway has only their hashes).
    pub mqtt_logins: DeviceLogins,
}

/// Starts one estate's pump room, gateway and devices, its gateway pointed at `hub`.
pub async fn start_estate(spec: EstateSpec, hub: SocketAddr, data_root: &Path) -> anyhow::Result<SimEstate> {
    start_estate_with(spec, hub, data_root, None).await
}

/// [`start_estate`], the gateway's uplink over mutual TLS when `pki` is given.
pub async fn start_estate_with(
    spec: EstateSpec,
    hub: SocketAddr,
    data_root: &Path,
    pki: Option<&mint::Layout>,
) -> anyhow::Result<SimEstate> {
    let pump_room = PumpRoom::start("127.0.0.1:0".parse()?)
        .await
        .context("starting the pump-room simulator")?;
    let mqtt = free_local_addr().context("choosing an MQTT port")?;
    let data_dir = data_root.join(format!("gw-{}", spec.id));
    let logins = DeviceLogins::generate().context("making the devices' MQTT passwords")?;
    let toml = gateway_toml_with(&spec, &data_dir, hub, mqtt, pump_room.addr(), &logins, pki);
    let config = GatewayConfig::from_toml(&toml).with_context(|| format!("gateway configuration for {}", spec.id))?;
    let gateway = gatehouse_gateway::start(config)
        .await
        .with_context(|| format!("starting the gateway of {}", spec.id))?;
    let fire_panel = match gateway.dc09_addr {
        Some(receiver) if spec.dc09_fire_panel => {
            let key = Key::from_text(DC09_KEY).context("the simulated panel's key")?;
            let panel = Arc::new(Mutex::new(Dc09Panel::new(
                receiver,
                DC09_ACCOUNT,
                Some(key),
                Transport::Tcp,
                Format::ContactId,
            )));
            let polls = CancellationToken::new();
            tokio::spawn(dc09::poll_loop(panel.clone(), Duration::from_secs(30), polls.clone()));
            EstateFirePanel::Dc09 { panel, polls }
        }
        _ => EstateFirePanel::Mqtt(FirePanel(MqttDevice::connect(
            mqtt,
            "fire-panel-1",
            logins.password("fire-panel-1"),
        ))),
    };
    let device = |id: &str| MqttDevice::connect(mqtt, id, logins.password(id));
    Ok(SimEstate {
        door: Arc::new(DoorController(device("door-main-gate"))),
        vehicle_gate: Arc::new(DoorController(device("barrier-vehicle-gate"))),
        intercom: Arc::new(Intercom(device("intercom-block-3"))),
        fire_panel: Arc::new(fire_panel),
        spec,
        gateway,
        pump_room,
        data_dir,
        mqtt_logins: logins,
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
    let config = HubConfig::from_toml(&hub_toml(grpc, http, &db, estates)?).context("hub configuration")?;
    gatehouse_hub::start(config).await.context("starting the hub")
}

/// An estate's fire panel, in whichever protocol it reports.
pub enum EstateFirePanel {
    /// The MQTT device profile.
    Mqtt(FirePanel),
    /// SIA DC-09 (encrypted Contact ID), with its line-supervision polls running.
    Dc09 {
        panel: Arc<Mutex<Dc09Panel>>,
        polls: CancellationToken,
    },
}

impl EstateFirePanel {
    pub fn protocol(&self) -> &'static str {
        match self {
            EstateFirePanel::Mqtt(_) => "MQTT",
            EstateFirePanel::Dc09 { .. } => "SIA DC-09 (Contact ID, AES)",
        }
    }

    pub async fn fire_alarm(&self, zone: u16, text: &str) -> anyhow::Result<()> {
        match self {
            EstateFirePanel::Mqtt(p) => Ok(p.fire_alarm(&zone.to_string(), text).await?),
            EstateFirePanel::Dc09 { panel, .. } => expect_ack(panel.lock().await.fire_alarm(zone).await?),
        }
    }

    pub async fn reset(&self) -> anyhow::Result<()> {
        match self {
            EstateFirePanel::Mqtt(p) => Ok(p.reset().await?),
            EstateFirePanel::Dc09 { panel, .. } => expect_ack(panel.lock().await.reset().await?),
        }
    }
}

impl Drop for EstateFirePanel {
    fn drop(&mut self) {
        if let EstateFirePanel::Dc09 { polls, .. } = self {
            polls.cancel();
        }
    }
}

fn expect_ack(answer: Answer) -> anyhow::Result<()> {
    match answer {
        Answer::Ack => Ok(()),
        other => anyhow::bail!("the DC-09 receiver answered {other:?}"),
    }
}
