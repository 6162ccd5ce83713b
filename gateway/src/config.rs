//! The gateway's configuration file (TOML): the top-level sections, loading, and the checks
//! that span sections. Each adapter's own section and device table live in its folder
//! (`adapters/*/config.rs`) with the checks that need nothing else; this file depends on
//! them, never the reverse. Unknown keys are refused with the path of the bad key;
//! cross-references are checked at load time, not at the first message.

use std::{collections::HashSet, net::SocketAddr, path::PathBuf};

use serde::Deserialize;

use crate::{
    adapters::{
        dc09::{
            self,
            config::{Dc09DeviceConfig, Dc09Section},
        },
        modbus::config::{ModbusDeviceConfig, ModbusSection},
        modbus_fire::config::ModbusFireConfig,
        mqtt::{
            config::{DeviceVendorConfig, MqttSection},
            vendor::{self, VendorMapping},
        },
    },
    registry::{DeviceInfo, DeviceKind, Registry},
};

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
    pub vendor_mappings: Vec<VendorMapping>,
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
    /// Allows `http://` hubs (no TLS) — only on loopback addresses (development, tests).
    #[serde(default)]
    pub plaintext: bool,
    /// The CA the hub's certificate must chain to (PEM); needed for `https://` hubs.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// This gateway's client certificate (PEM), naming it and its estate
    /// (`urn:gatehouse:gateway:<estate>:<gateway>`), and its key.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
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
            plaintext: false,
            ca: None,
            cert: None,
            key: None,
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
    /// The device's MQTT password as an argon2 PHC string (`gatehouse-gateway
    /// hash-password`); the device connects with username = its id and that password.
    #[serde(default)]
    pub mqtt_password_hash: Option<String>,
}

impl DeviceConfig {
    /// Whether this device speaks the MQTT device profile v1 (or vendor JSON over MQTT):
    /// MQTT kinds, unless the device reports over DC-09 or is read over Modbus.
    pub fn speaks_mqtt(&self) -> bool {
        self.kind.is_mqtt() && self.dc09.is_none() && self.modbus_fire.is_none()
    }
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
            validate_hub_url(hub, &self.uplink)?;
        }
        let u = &self.uplink;
        if u.max_event_bytes < 1024 || u.max_event_bytes > u.max_batch_bytes {
            return bad(format!(
                "uplink.max_event_bytes ({}) must be between 1024 and uplink.max_batch_bytes ({})",
                u.max_event_bytes, u.max_batch_bytes
            ));
        }
        // Saturating: a huge max_payload_bytes from the file is refused here, not an
        // arithmetic overflow (a panic in a debug build, a wrap that passes in release).
        if let Some(m) = &self.mqtt
            && m.max_payload_bytes.saturating_add(4096) > u.max_event_bytes
        {
            // A publish the broker takes must make an event the uplink can carry.
            return bad(format!(
                "uplink.max_event_bytes ({}) must exceed mqtt.max_payload_bytes ({}) by at least 4096 (room for the event's ids and times)",
                u.max_event_bytes, m.max_payload_bytes
            ));
        }
        if self.dc09.is_some() && 2 * dc09::frame::MAX_FRAME + 4096 > u.max_event_bytes {
            // A DC-09 panel is ACKed after its events commit and has no other answer for an
            // event the uplink could not carry: the largest frame must always fit.
            return bad(format!(
                "uplink.max_event_bytes ({}) must be at least {} when a [dc09] receiver runs (twice the largest DC-09 frame, plus the event's ids and times)",
                u.max_event_bytes,
                2 * dc09::frame::MAX_FRAME + 4096
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
                (DeviceKind::Modbus, Some(m)) => m
                    .validate()
                    .map_err(|m| ConfigError::Invalid(format!("device {:?}: {m}", d.id)))?,
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
        for d in &self.devices {
            if let Some(h) = &d.mqtt_password_hash {
                crate::adapters::mqtt::auth::check_phc(h)
                    .map_err(|e| ConfigError::Invalid(format!("device {:?}: mqtt_password_hash: {e}", d.id)))?;
            }
        }
        if let Some(m) = &self.mqtt {
            m.validate().map_err(ConfigError::Invalid)?;
        }
        validate_accounts(self)?;
        validate_vendors(self)?;
        Ok(())
    }
}

/// `https://` hubs need `uplink.ca`, `uplink.cert` and `uplink.key`; an `http://` hub is
/// allowed only with `uplink.plaintext = true` and a loopback host.
fn validate_hub_url(hub: &str, uplink: &UplinkSection) -> Result<(), ConfigError> {
    let lower = hub.trim().to_ascii_lowercase();
    if lower.starts_with("https://") {
        for (key, value) in [
            ("uplink.ca", &uplink.ca),
            ("uplink.cert", &uplink.cert),
            ("uplink.key", &uplink.key),
        ] {
            if value.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "{key}: missing; the https:// hub {hub:?} needs uplink.ca (the hub's CA), uplink.cert and uplink.key (this gateway's certificate)"
                )));
            }
        }
        return Ok(());
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return Err(ConfigError::Invalid(format!(
            "gateway.hubs: {hub:?} must be an https:// URL (or http:// with uplink.plaintext = true on loopback)"
        )));
    };
    if !uplink.plaintext {
        return Err(ConfigError::Invalid(format!(
            "uplink.plaintext: {hub:?} is http:// (no TLS); use https:// with uplink.ca, uplink.cert and uplink.key, \
             or set uplink.plaintext = true (loopback hubs only, for development)"
        )));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if !is_loopback_authority(authority) {
        return Err(ConfigError::Invalid(format!(
            "uplink.plaintext: plaintext is allowed only to a loopback hub, and {hub:?} is not one; use https://"
        )));
    }
    Ok(())
}

/// `host:port` whose host is `localhost`, a 127.x address or `[::1]`.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
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
        dc.validate().or_else(bad)?;
    }
    if let Some(m) = &d.modbus_fire {
        m.validate().or_else(bad)?;
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
        s.validate(accounts.len()).map_err(ConfigError::Invalid)?;
    }
    Ok(())
}

fn validate_vendors(config: &Config) -> Result<(), ConfigError> {
    let devices: Vec<(&str, DeviceKind, &DeviceVendorConfig)> = config
        .devices
        .iter()
        .filter_map(|d| Some((d.id.as_str(), d.kind, d.vendor.as_ref()?)))
        .collect();
    vendor::validate(&config.vendor_mappings, &devices, config.mqtt.is_some()).map_err(ConfigError::Invalid)
}

impl vendor::VendorRouter {
    /// The router of `config`'s vendor mappings and vendor devices.
    pub fn from_config(config: &Config) -> Self {
        let devices = config
            .devices
            .iter()
            .filter_map(|d| Some((d.id.as_str(), d.vendor.as_ref()?)));
        Self::new(config.vendor_mappings.clone(), devices)
    }
}

impl Registry {
    /// The registry of `config`'s devices. Here rather than in `registry.rs`, so that the
    /// registry does not depend on the configuration file's shape.
    pub fn from_config(config: &Config) -> Self {
        let devices = config.devices.iter().map(|d| DeviceInfo {
            id: d.id.clone(),
            kind: d.kind,
            area: d.area.clone(),
        });
        let other_protocol = config
            .devices
            .iter()
            .filter(|d| d.kind.is_mqtt() && !d.speaks_mqtt())
            .map(|d| d.id.clone());
        Registry::new(&config.gateway.id, &config.gateway.estate, devices, other_protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::modbus::config::{Table, ValueType};

    /// The configuration the spine issue gives, verbatim.
    const ISSUE_EXAMPLE: &str = r#"
[gateway]
id = "gw-a"
estate = "estate-a"
data_dir = "data/gw-a"
hubs = ["http://127.0.0.1:50051"]

[uplink]
plaintext = true

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
                "uplink.ca: missing",
            ),
            ("plaintext = true", "plaintext = false", "uplink.plaintext"),
            (
                "hubs = [\"http://127.0.0.1:50051\"]",
                "hubs = [\"http://10.0.0.5:50051\"]",
                "only to a loopback hub",
            ),
            (
                "plaintext = true",
                "plaintext = true\nmax_event_bytes = 8192",
                "mqtt.max_payload_bytes",
            ),
            (
                "plaintext = true\n\n[mqtt]\nlisten = \"127.0.0.1:18830\"",
                "plaintext = true\nmax_event_bytes = 8192\n\n[mqtt]\nlisten = \"127.0.0.1:18830\"\nmax_payload_bytes = 1024\n[dc09]\nlisten = \"127.0.0.1:0\"",
                "[dc09] receiver",
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
