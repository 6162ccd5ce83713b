//! The gateway's configuration file (TOML). Unknown keys are refused with the path of the
//! bad key; cross-references are checked at load time, not at the first message.

use std::{collections::HashSet, net::SocketAddr, path::PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing configuration: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub gateway: GatewaySection,
    #[serde(default)]
    pub mqtt: Option<MqttSection>,
    #[serde(default)]
    pub outbox: OutboxSection,
    #[serde(default)]
    pub uplink: UplinkSection,
    #[serde(default)]
    pub modbus: ModbusSection,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// The SIA DC-09 receiver (fire panels reporting as to a monitoring centre).
    #[serde(default)]
    pub dc09: Option<Dc09Section>,
    /// Vendor JSON mappings, named by devices' `[devices.vendor]` tables.
    #[serde(default)]
    pub vendor_mappings: Vec<crate::adapters::mqtt::vendor::VendorMapping>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dc09Section {
    /// TCP and UDP, on the same port.
    pub listen: SocketAddr,
    /// A TCP connection that delivers no complete frame for this long is closed. A panel's
    /// exchange (connect, frame, ACK) takes well under a second and a transmitter waits
    /// about 20 s for its ACK before it retries (DC-09), so 60 s never cuts a frame in
    /// flight; a transmitter that keeps its connection open between supervision frames
    /// (minutes apart) reconnects for the next one, which costs a handshake, not an alarm.
    #[serde(default = "default_dc09_idle_timeout_s")]
    pub idle_timeout_s: u64,
    /// TCP connections open at once; a new one beyond this takes the place of the one
    /// that has gone longest without a frame.
    #[serde(default = "default_dc09_max_connections")]
    pub max_connections: usize,
    /// TCP connections open at once from one source address; more are refused.
    #[serde(default = "default_dc09_max_connections_per_source")]
    pub max_connections_per_source: usize,
}

fn default_dc09_idle_timeout_s() -> u64 {
    60
}

fn default_dc09_max_connections() -> usize {
    128
}

fn default_dc09_max_connections_per_source() -> usize {
    4
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    pub id: String,
    pub estate: String,
    pub data_dir: PathBuf,
    /// Hub endpoints, tried in order; the first that answers wins.
    pub hubs: Vec<String>,
    /// `/metrics` and `/healthz` for the gateway itself; off when absent.
    #[serde(default)]
    pub http_listen: Option<SocketAddr>,
    /// On that port: a request head must be complete within this long of the connection
    /// opening or of its previous answer (slowloris clients, idle keep-alive connections).
    #[serde(default = "default_http_header_timeout_s")]
    pub http_header_timeout_s: u64,
    /// On that port: connections open at once (a scraper and a probe need a few).
    #[serde(default = "default_http_max_connections")]
    pub http_max_connections: usize,
}

fn default_http_header_timeout_s() -> u64 {
    10
}

fn default_http_max_connections() -> usize {
    32
}

/// The gateway's own MQTT 3.1.1 server (`adapters/mqtt/server.rs`). Every limit here is
/// counted on `/metrics` when hit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    pub listen: SocketAddr,
    /// Largest accepted payload in bytes; a larger publish is rejected as `oversized`.
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    /// Most connected clients whose client id is not a configured MQTT device. Configured
    /// devices always have room of their own (one session each), so strangers cannot take
    /// the estate's slots.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most TCP connections that have not completed CONNECT yet.
    #[serde(default = "default_max_pending")]
    pub max_pending_connections: usize,
    /// Most connections from one source IP address, configured devices' sessions excepted.
    #[serde(default = "default_max_per_ip")]
    pub max_connections_per_ip: usize,
    /// A CONNECT must arrive within this long of the TCP accept.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// A client that asked for no keep-alive (0) is closed after this long without a packet.
    #[serde(default = "default_idle_timeout_s")]
    pub idle_timeout_s: u64,
    /// Largest MQTT packet read (remaining length); a larger one closes the connection.
    /// Above `max_payload_bytes`, so an oversized payload is still rejected and counted by
    /// the translator while the client stays connected.
    #[serde(default = "default_max_packet")]
    pub max_packet_bytes: usize,
    /// Publishes of one connection awaiting their outbox commit (and so their PUBACK); when
    /// reached the connection stops reading its socket: back pressure, never loss.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: usize,
    /// `mqtt.intake` fails when a publish has waited longer than this for its commit.
    #[serde(default = "default_commit_wait_alarm_ms")]
    pub commit_wait_alarm_ms: u64,
}

fn default_max_payload() -> usize {
    16 * 1024
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_pending() -> usize {
    256
}
fn default_max_per_ip() -> usize {
    256
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_idle_timeout_s() -> u64 {
    600
}
fn default_max_packet() -> usize {
    256 * 1024
}
fn default_max_inflight() -> usize {
    64
}
fn default_commit_wait_alarm_ms() -> u64 {
    5_000
}

impl MqttSection {
    /// Every limit at its default, listening on `listen`.
    pub fn with_listen(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_payload_bytes: default_max_payload(),
            max_connections: default_max_connections(),
            max_pending_connections: default_max_pending(),
            max_connections_per_ip: default_max_per_ip(),
            connect_timeout_ms: default_connect_timeout_ms(),
            idle_timeout_s: default_idle_timeout_s(),
            max_packet_bytes: default_max_packet(),
            max_inflight: default_max_inflight(),
            commit_wait_alarm_ms: default_commit_wait_alarm_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    /// Most events held before shedding starts (point readings first, then ordinary
    /// information; fire and security events are never shed).
    #[serde(default = "default_outbox_max")]
    pub max_events: u64,
}

impl Default for OutboxSection {
    fn default() -> Self {
        Self {
            max_events: default_outbox_max(),
        }
    }
}

fn default_outbox_max() -> u64 {
    1_000_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkSection {
    /// Most events in one batch.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// How long the uplink waits to fill a batch before sending what it has.
    #[serde(default = "default_batch_linger_ms")]
    pub batch_linger_ms: u64,
    /// Reconnect backoff: first delay and ceiling, with full jitter.
    #[serde(default = "default_backoff_min_ms")]
    pub backoff_min_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Most bytes in one batch; the hub's limit (announced in Welcome) lowers it further.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// The largest event (encoded) taken in at all: a larger one is refused at intake,
    /// counted and logged, never stored to wedge the uplink later.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Connected, events pending, and no ack advancing for this long: `uplink.progress`
    /// fails (and `/healthz` with it).
    #[serde(default = "default_progress_timeout_s")]
    pub progress_timeout_s: u64,
}

impl Default for UplinkSection {
    fn default() -> Self {
        Self {
            batch_max: default_batch_max(),
            batch_linger_ms: default_batch_linger_ms(),
            backoff_min_ms: default_backoff_min_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            heartbeat_ms: default_heartbeat_ms(),
            max_batch_bytes: default_max_batch_bytes(),
            max_event_bytes: default_max_event_bytes(),
            progress_timeout_s: default_progress_timeout_s(),
        }
    }
}

fn default_batch_max() -> usize {
    500
}
fn default_batch_linger_ms() -> u64 {
    5
}
fn default_backoff_min_ms() -> u64 {
    200
}
fn default_backoff_max_ms() -> u64 {
    10_000
}
fn default_heartbeat_ms() -> u64 {
    5_000
}
fn default_max_batch_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_event_bytes() -> usize {
    64 * 1024
}
fn default_progress_timeout_s() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusSection {
    /// Every point is re-sent at this interval even when unchanged (the full refresh).
    #[serde(default = "default_refresh_s")]
    pub refresh_s: u64,
    /// Consecutive failed polls before a device is reported offline and backed off.
    #[serde(default = "default_offline_after")]
    pub offline_after_failures: u32,
    /// Ceiling of the backoff between reconnect attempts to a failing device.
    #[serde(default = "default_modbus_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

impl Default for ModbusSection {
    fn default() -> Self {
        Self {
            refresh_s: default_refresh_s(),
            offline_after_failures: default_offline_after(),
            backoff_max_ms: default_modbus_backoff_max_ms(),
        }
    }
}

fn default_refresh_s() -> u64 {
    60
}
fn default_offline_after() -> u32 {
    3
}
fn default_modbus_backoff_max_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Door,
    Intercom,
    FirePanel,
    Modbus,
}

impl DeviceKind {
    pub fn to_proto(self) -> gatehouse_proto::DeviceKind {
        use gatehouse_proto::DeviceKind as P;
        match self {
            DeviceKind::Door => P::Door,
            DeviceKind::Intercom => P::Intercom,
            DeviceKind::FirePanel => P::FirePanel,
            DeviceKind::Modbus => P::Modbus,
        }
    }

    /// Whether this kind speaks the MQTT device profile.
    pub fn is_mqtt(self) -> bool {
        !matches!(self, DeviceKind::Modbus)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub id: String,
    pub kind: DeviceKind,
    pub area: String,
    #[serde(default)]
    pub modbus: Option<ModbusDeviceConfig>,
    /// A fire panel reporting over SIA DC-09.
    #[serde(default)]
    pub dc09: Option<Dc09DeviceConfig>,
    /// A fire panel whose zone states are read over Modbus TCP.
    #[serde(default)]
    pub modbus_fire: Option<ModbusFireConfig>,
    /// A device that publishes its vendor's own JSON to the embedded broker.
    #[serde(default)]
    pub vendor: Option<DeviceVendorConfig>,
}

impl DeviceConfig {
    /// Whether this device speaks the MQTT device profile v1 (or vendor JSON over MQTT):
    /// MQTT kinds, unless the device reports over DC-09 or is read over Modbus.
    pub fn speaks_mqtt(&self) -> bool {
        self.kind.is_mqtt() && self.dc09.is_none() && self.modbus_fire.is_none()
    }
}

/// `[devices.dc09]`: the account a fire panel reports under.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dc09DeviceConfig {
    /// The panel's account number (3–16 hex digits, as the panel sends it after `#`).
    pub account: String,
    /// AES key as 16, 24 or 32 characters of text (AES-128/192/256).
    #[serde(default)]
    pub key: Option<String>,
    /// AES key as 32, 48 or 64 hex digits.
    #[serde(default)]
    pub key_hex: Option<String>,
    /// The panel is reported offline when nothing (not even a NULL poll) has come for
    /// this long.
    #[serde(default = "default_supervision_s")]
    pub supervision_s: u64,
}

/// Default supervision interval: 180 s, the EN 50136-1 reporting time of the DP3/SP4
/// categories; set it to about three of the panel's poll intervals.
pub fn default_supervision_s() -> u64 {
    180
}

/// `[devices.modbus_fire]`: a fire panel's zone states in Modbus registers, one status
/// word per zone, and optional command registers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusFireConfig {
    /// host:port of the Modbus TCP server (the panel's gateway module).
    pub address: String,
    pub unit: u8,
    pub poll_ms: u64,
    pub timeout_ms: u64,
    /// Where the zone words are: `holding` or `input` registers.
    #[serde(default = "default_fire_table")]
    pub table: Table,
    /// Zero-based address of the first zone's status word; zone `first_zone + i` is at
    /// `first_register + i`.
    pub first_register: u16,
    /// How many zones.
    pub zones: u16,
    /// The zone number of the first register.
    #[serde(default = "one_u16")]
    pub first_zone: u16,
    /// Which bit of a zone word means what (0 = least significant).
    pub bits: ZoneBits,
    /// Holding register written for `reset` (value `reset_value`).
    #[serde(default)]
    pub reset_register: Option<u16>,
    #[serde(default = "one_u16")]
    pub reset_value: u16,
    /// Holding register written for `silence` (value `silence_value`).
    #[serde(default)]
    pub silence_register: Option<u16>,
    #[serde(default = "one_u16")]
    pub silence_value: u16,
}

fn default_fire_table() -> Table {
    Table::Input
}
fn one_u16() -> u16 {
    1
}

/// Bit numbers of a zone status word; a condition left out is not read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneBits {
    #[serde(default)]
    pub fire: Option<u8>,
    #[serde(default)]
    pub pre_alarm: Option<u8>,
    /// Trouble / fault.
    #[serde(default, alias = "trouble")]
    pub fault: Option<u8>,
    #[serde(default)]
    pub disabled: Option<u8>,
    #[serde(default)]
    pub supervisory: Option<u8>,
    /// "Zone active": an input of the zone is active without being a fire condition;
    /// reported as supervisory.
    #[serde(default)]
    pub active: Option<u8>,
}

impl ZoneBits {
    fn all(&self) -> [(&'static str, Option<u8>); 6] {
        [
            ("fire", self.fire),
            ("pre_alarm", self.pre_alarm),
            ("fault", self.fault),
            ("disabled", self.disabled),
            ("supervisory", self.supervisory),
            ("active", self.active),
        ]
    }
}

/// `[devices.vendor]`: where a device publishes its vendor's JSON and which mapping reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceVendorConfig {
    /// The `name` of a `[[vendor_mappings]]` entry.
    pub mapping: String,
    /// MQTT topic filter the device publishes on (`+` and `#` allowed).
    pub topic: String,
    /// When several devices share a topic: the value of the mapping's `device_field` that
    /// is this device (compared as text).
    #[serde(default)]
    pub device_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusDeviceConfig {
    /// host:port of the Modbus TCP server.
    pub address: String,
    pub unit: u8,
    pub poll_ms: u64,
    pub timeout_ms: u64,
    pub points: Vec<PointConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Holding,
    Input,
    Coil,
    Discrete,
}

impl Table {
    /// Coils and discrete inputs are bits; holding and input registers are 16-bit words.
    pub fn is_bit(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }
    pub fn is_writable(self) -> bool {
        matches!(self, Table::Holding | Table::Coil)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    F32,
    U64,
    I64,
    F64,
}

impl ValueType {
    /// Registers the type spans (bits for a bool in a bit table).
    pub fn width(self) -> u16 {
        match self {
            ValueType::Bool | ValueType::U16 | ValueType::I16 => 1,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
            ValueType::U64 | ValueType::I64 | ValueType::F64 => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    Big,
    Little,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    pub name: String,
    pub table: Table,
    /// Zero-based register or bit address (protocol address, not the 4xxxx notation).
    pub address: u16,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// Order of the 16-bit words of a multi-register value: `big` = most significant first.
    #[serde(default)]
    pub word_order: Order,
    /// Order of the two bytes inside each register: `big` = as Modbus sends them.
    #[serde(default)]
    pub byte_order: Order,
    /// For a bool packed in a register: the bit number, 0 = least significant.
    #[serde(default)]
    pub bit: Option<u8>,
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    #[serde(default)]
    pub unit: String,
    /// Report by exception: a change smaller than this is not sent (until the refresh).
    #[serde(default)]
    pub deadband: f64,
    /// Accepts `write` commands (holding registers and coils only).
    #[serde(default)]
    pub writable: bool,
}

fn one() -> f64 {
    1.0
}

impl Config {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.gateway.id.is_empty() || self.gateway.estate.is_empty() {
            return bad("gateway.id and gateway.estate must not be empty".into());
        }
        if self.gateway.http_header_timeout_s == 0 || self.gateway.http_max_connections == 0 {
            return bad("gateway.http_header_timeout_s and gateway.http_max_connections must be at least 1".into());
        }
        if self.gateway.hubs.is_empty() {
            return bad("gateway.hubs must list at least one hub endpoint".into());
        }
        for hub in &self.gateway.hubs {
            validate_hub_url(hub)?;
        }
        let u = &self.uplink;
        if u.max_event_bytes < 1024 || u.max_event_bytes > u.max_batch_bytes {
            return bad(format!(
                "uplink.max_event_bytes ({}) must be between 1024 and uplink.max_batch_bytes ({})",
                u.max_event_bytes, u.max_batch_bytes
            ));
        }
        if let Some(m) = &self.mqtt
            && m.max_payload_bytes + 4096 > u.max_event_bytes
        {
            // A publish the broker takes must make an event the uplink can carry.
            return bad(format!(
                "uplink.max_event_bytes ({}) must exceed mqtt.max_payload_bytes ({}) by at least 4096 (room for the event's ids and times)",
                u.max_event_bytes, m.max_payload_bytes
            ));
        }
        if u.progress_timeout_s == 0 {
            return bad("uplink.progress_timeout_s must be at least 1".into());
        }
        let mut seen = HashSet::new();
        for d in &self.devices {
            if !seen.insert(d.id.as_str()) {
                return bad(format!("device id {:?} appears twice", d.id));
            }
            if d.id.is_empty() || d.id.contains(['/', '+', '#']) {
                return bad(format!(
                    "device id {:?} must be non-empty and free of '/', '+', '#' (it is an MQTT topic level)",
                    d.id
                ));
            }
            validate_fire_protocols(self, d)?;
            match (d.kind, &d.modbus) {
                (DeviceKind::Modbus, None) => {
                    return bad(format!(
                        "device {:?}: kind = \"modbus\" needs a [devices.modbus] table",
                        d.id
                    ));
                }
                (DeviceKind::Modbus, Some(m)) => validate_modbus(&d.id, m)?,
                (_, Some(_)) => {
                    return bad(format!(
                        "device {:?}: only kind = \"modbus\" takes a [devices.modbus] table",
                        d.id
                    ));
                }
                (_, None) => {}
            }
            if d.speaks_mqtt() && self.mqtt.is_none() {
                return bad(format!("device {:?} speaks MQTT but there is no [mqtt] section", d.id));
            }
        }
        if let Some(m) = &self.mqtt {
            // An oversized payload must reach the translator (rejected and counted, the
            // device stays connected), not trip the packet limit that closes the connection.
            if m.max_packet_bytes <= m.max_payload_bytes {
                return bad(format!(
                    "mqtt.max_packet_bytes ({}) must be larger than mqtt.max_payload_bytes ({})",
                    m.max_packet_bytes, m.max_payload_bytes
                ));
            }
            if m.max_inflight == 0 || m.max_connections_per_ip == 0 || m.max_pending_connections == 0 {
                return bad(
                    "mqtt.max_inflight, max_connections_per_ip and max_pending_connections must be at least 1".into(),
                );
            }
        }
        validate_accounts(self)?;
        crate::adapters::mqtt::vendor::validate(self).map_err(ConfigError::Invalid)?;
        Ok(())
    }
}

/// Only `http://` hubs until TLS lands with the security issue: an `https://` URL would
/// otherwise connect in plaintext while the operator believes it encrypted.
fn validate_hub_url(hub: &str) -> Result<(), ConfigError> {
    let lower = hub.trim().to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(ConfigError::Invalid(format!(
            "gateway.hubs: {hub:?}: TLS to the hub is not built yet (it lands with the security issue); \
             refusing to start rather than send events in plaintext to an https:// URL. Use http:// only \
             over a network you trust, or a TLS tunnel"
        )));
    }
    if !lower.starts_with("http://") {
        return Err(ConfigError::Invalid(format!(
            "gateway.hubs: {hub:?} must be an http:// URL (host:port of the hub's gRPC port)"
        )));
    }
    Ok(())
}

/// A device takes at most one of `dc09`, `modbus_fire`, `vendor`, each where it fits.
fn validate_fire_protocols(config: &Config, d: &DeviceConfig) -> Result<(), ConfigError> {
    let bad = |m: String| Err(ConfigError::Invalid(format!("device {:?}: {m}", d.id)));
    let tables = [
        d.dc09.is_some(),
        d.modbus_fire.is_some(),
        d.vendor.is_some(),
        d.modbus.is_some(),
    ];
    if tables.iter().filter(|t| **t).count() > 1 {
        return bad(
            "takes only one of [devices.dc09], [devices.modbus_fire], [devices.vendor], [devices.modbus]".into(),
        );
    }
    if (d.dc09.is_some() || d.modbus_fire.is_some()) && d.kind != DeviceKind::FirePanel {
        return bad("[devices.dc09] and [devices.modbus_fire] are for kind = \"fire_panel\"".into());
    }
    if d.vendor.is_some() && !matches!(d.kind, DeviceKind::Door | DeviceKind::Intercom | DeviceKind::FirePanel) {
        return bad("[devices.vendor] is for door, intercom and fire_panel devices".into());
    }
    if let Some(dc) = &d.dc09 {
        if config.dc09.is_none() {
            return bad("reports over DC-09 but there is no [dc09] section".into());
        }
        let ok = (3..=16).contains(&dc.account.len()) && dc.account.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return bad(format!("dc09.account {:?} must be 3–16 hex digits", dc.account));
        }
        let key = match (&dc.key, &dc.key_hex) {
            (Some(_), Some(_)) => return bad("give dc09.key or dc09.key_hex, not both".into()),
            (Some(t), None) => Some(crate::adapters::dc09::crypto::Key::from_text(t)),
            (None, Some(h)) => Some(crate::adapters::dc09::crypto::Key::from_hex(h)),
            (None, None) => None,
        };
        if let Some(Err(e)) = key {
            return bad(format!("dc09 key: {e}"));
        }
        if dc.supervision_s < 2 {
            return bad(format!("dc09.supervision_s = {} is below 2 s", dc.supervision_s));
        }
    }
    if let Some(m) = &d.modbus_fire {
        let port_ok = m
            .address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return bad(format!("modbus_fire.address {:?} must be host:port", m.address));
        }
        if m.poll_ms == 0 || m.timeout_ms == 0 {
            return bad("modbus_fire.poll_ms and timeout_ms must be positive".into());
        }
        if !matches!(m.table, Table::Holding | Table::Input) {
            return bad("modbus_fire.table is holding or input (one status word per zone)".into());
        }
        if m.zones == 0 || u32::from(m.first_register) + u32::from(m.zones) > 65_536 {
            return bad("modbus_fire.zones must be at least 1 and end by register 65535".into());
        }
        let mut seen = HashSet::new();
        for (name, bit) in m.bits.all() {
            if let Some(b) = bit {
                if b > 15 {
                    return bad(format!("modbus_fire.bits.{name} = {b} is past 15"));
                }
                if !seen.insert(b) {
                    return bad(format!("modbus_fire.bits: bit {b} is given twice"));
                }
            }
        }
        if seen.is_empty() {
            return bad("modbus_fire.bits names no bit".into());
        }
    }
    Ok(())
}

fn validate_accounts(config: &Config) -> Result<(), ConfigError> {
    let mut accounts = HashSet::new();
    for d in &config.devices {
        if let Some(dc) = &d.dc09
            && !accounts.insert(dc.account.to_ascii_uppercase())
        {
            return Err(ConfigError::Invalid(format!(
                "device {:?}: DC-09 account {:?} is given to two devices",
                d.id, dc.account
            )));
        }
    }
    if let Some(s) = &config.dc09 {
        if s.idle_timeout_s == 0 || s.max_connections_per_source == 0 {
            return Err(ConfigError::Invalid(
                "dc09.idle_timeout_s and dc09.max_connections_per_source must be at least 1".into(),
            ));
        }
        // One source at its cap must leave a connection for every configured panel.
        if s.max_connections < s.max_connections_per_source + accounts.len() {
            return Err(ConfigError::Invalid(format!(
                "dc09.max_connections must be at least max_connections_per_source ({}) + the {} configured DC-09 panels",
                s.max_connections_per_source,
                accounts.len()
            )));
        }
    }
    Ok(())
}

fn validate_modbus(device: &str, m: &ModbusDeviceConfig) -> Result<(), ConfigError> {
    let bad = |m: String| Err(ConfigError::Invalid(format!("device {device:?}: {m}")));
    let port_ok = m
        .address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return bad(format!("address {:?} must be host:port", m.address));
    }
    if m.poll_ms == 0 || m.timeout_ms == 0 {
        return bad("poll_ms and timeout_ms must be positive".into());
    }
    let mut names = HashSet::new();
    for p in &m.points {
        if !names.insert(p.name.as_str()) {
            return bad(format!("point {:?} appears twice", p.name));
        }
        if p.table.is_bit() && p.value_type != ValueType::Bool {
            return bad(format!(
                "point {:?}: a {:?} table holds only bool points",
                p.name, p.table
            ));
        }
        if p.bit.is_some() && (p.table.is_bit() || p.value_type != ValueType::Bool) {
            return bad(format!("point {:?}: `bit` is for a bool inside a register", p.name));
        }
        if let Some(b) = p.bit
            && b > 15
        {
            return bad(format!("point {:?}: bit {b} is past 15", p.name));
        }
        if !p.table.is_bit() && p.value_type == ValueType::Bool && p.bit.is_none() {
            return bad(format!("point {:?}: a bool in a register needs `bit`", p.name));
        }
        if u32::from(p.address) + u32::from(p.value_type.width()) > 65_536 {
            return bad(format!("point {:?}: runs past address 65535", p.name));
        }
        if p.writable && p.bit.is_some() {
            return bad(format!(
                "point {:?}: a bit inside a register cannot be written (it would need a read-modify-write)",
                p.name
            ));
        }
        if p.writable && !p.table.is_writable() {
            return bad(format!(
                "point {:?}: only holding registers and coils are writable",
                p.name
            ));
        }
        let numbers_ok = p.scale.is_finite()
            && p.scale != 0.0
            && p.offset.is_finite()
            && p.deadband.is_finite()
            && p.deadband >= 0.0;
        if !numbers_ok {
            return bad(format!(
                "point {:?}: scale must be finite and non-zero, offset finite, deadband ≥ 0",
                p.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration the spine issue gives, verbatim.
    const ISSUE_EXAMPLE: &str = r#"
[gateway]
id = "gw-a"
estate = "estate-a"
data_dir = "data/gw-a"
hubs = ["http://127.0.0.1:50051"]

[mqtt]
listen = "127.0.0.1:18830"

[[devices]]
id = "door-main-gate"
kind = "door"            # door | intercom | fire_panel | modbus
area = "main-gate"

[[devices]]
id = "pump-room-1"
kind = "modbus"
area = "water-pump-room"
[devices.modbus]
address = "127.0.0.1:15020"
unit = 1
poll_ms = 1000
timeout_ms = 500
[[devices.modbus.points]]
name = "outlet_pressure"
table = "holding"        # holding | input | coil | discrete
address = 0              # zero-based
type = "u16"
scale = 0.001
unit = "MPa"
deadband = 0.005
[[devices.modbus.points]]
name = "pump1_fault"
table = "discrete"
address = 0
type = "bool"
"#;

    #[test]
    fn the_documented_example_loads() {
        let c = Config::from_toml(ISSUE_EXAMPLE).expect("the example is valid");
        assert_eq!(c.devices.len(), 2);
        let m = c.devices[1].modbus.as_ref().expect("modbus table");
        assert_eq!(m.points[0].value_type, ValueType::U16);
        assert_eq!(m.points[0].scale, 0.001);
        assert_eq!(m.points[1].table, Table::Discrete);
        assert_eq!(
            c.outbox.max_events,
            default_outbox_max(),
            "defaults fill what is left out"
        );
    }

    fn refused(edit: impl Fn(String) -> String) -> String {
        match Config::from_toml(&edit(ISSUE_EXAMPLE.to_string())) {
            Ok(_) => panic!("an invalid configuration was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn invalid_configurations_are_refused_naming_the_problem() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "area = \"main-gate\"",
                "area = \"main-gate\"\ncolour = \"red\"",
                "colour",
            ),
            ("kind = \"door\" ", "kind = \"lift\" ", "lift"),
            ("id = \"pump-room-1\"", "id = \"door-main-gate\"", "appears twice"),
            ("address = \"127.0.0.1:15020\"", "address = \"127.0.0.1\"", "host:port"),
            ("deadband = 0.005", "deadband = nan", "deadband"),
            ("type = \"u16\"", "type = \"u16\"\nbit = 3", "bit"),
            (
                "table = \"discrete\"\naddress = 0\ntype = \"bool\"",
                "table = \"discrete\"\naddress = 0\ntype = \"u16\"",
                "only bool",
            ),
            ("type = \"bool\"\n", "type = \"bool\"\nwritable = true\n", "writable"),
            ("hubs = [\"http://127.0.0.1:50051\"]", "hubs = []", "hubs"),
            (
                "hubs = [\"http://127.0.0.1:50051\"]",
                "hubs = [\"https://hub.example:50051\"]",
                "TLS to the hub is not built yet",
            ),
            (
                "hubs = [\"http://127.0.0.1:50051\"]",
                "hubs = [\"http://127.0.0.1:50051\"]\n[uplink]\nmax_event_bytes = 8192",
                "mqtt.max_payload_bytes",
            ),
            ("[mqtt]\nlisten = \"127.0.0.1:18830\"", "", "no [mqtt] section"),
            (
                "[mqtt]\nlisten = \"127.0.0.1:18830\"",
                "[mqtt]\nlisten = \"127.0.0.1:18830\"\nmax_packet_bytes = 1024",
                "max_packet_bytes",
            ),
        ];
        for (from, to, needle) in cases {
            let msg = refused(|s| {
                assert!(s.contains(from), "test setup: {from:?} not in the example");
                s.replacen(from, to, 1)
            });
            assert!(
                msg.contains(needle),
                "error for {to:?} should mention {needle:?}: {msg}"
            );
        }
    }
}
