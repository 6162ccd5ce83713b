//! The MQTT adapter's configuration: the `[mqtt]` server section and a vendor device's
//! `[devices.vendor]` table (the `[[vendor_mappings]]` themselves are in [`super::vendor`]).

use std::net::SocketAddr;

use serde::Deserialize;

/// The gateway's own MQTT 3.1.1 server (`shell.rs`). Every limit here is
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

impl MqttSection {
    /// Load-time checks of the section's own limits.
    pub fn validate(&self) -> Result<(), String> {
        // An oversized payload must reach the translator (rejected and counted, the
        // device stays connected), not trip the packet limit that closes the connection.
        if self.max_packet_bytes <= self.max_payload_bytes {
            return Err(format!(
                "mqtt.max_packet_bytes ({}) must be larger than mqtt.max_payload_bytes ({})",
                self.max_packet_bytes, self.max_payload_bytes
            ));
        }
        if self.max_inflight == 0 || self.max_connections_per_ip == 0 || self.max_pending_connections == 0 {
            return Err(
                "mqtt.max_inflight, max_connections_per_ip and max_pending_connections must be at least 1".into(),
            );
        }
        Ok(())
    }
}
