//! The MQTT adapter's configuration: the `[mqtt]` server section and a vendor device's
//! `[devices.vendor]` table (the `[[vendor_mappings]]` themselves are in [`super::vendor`]).

use std::{net::SocketAddr, path::PathBuf};

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
    /// Clients without credentials are let in (no topic rights checked but the command
    /// topics'). For tests and development only: refused unless `listen` is a loopback
    /// address.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Failed logins from one source address within `auth_failure_window_s` after which
    /// the source is refused, unchecked, for `auth_backoff_s`.
    #[serde(default = "default_auth_max_failures")]
    pub auth_max_failures: u32,
    #[serde(default = "default_auth_failure_window_s")]
    pub auth_failure_window_s: u64,
    #[serde(default = "default_auth_backoff_s")]
    pub auth_backoff_s: u64,
    /// TLS on `listen` (then only TLS is spoken there).
    #[serde(default)]
    pub tls: Option<MqttTls>,
}

/// `[mqtt.tls]`: the server's certificate chain and key (PEM), and optionally the CA whose
/// client certificates identify devices (the certificate's subject CN is the device id).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
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
fn default_auth_max_failures() -> u32 {
    10
}
fn default_auth_failure_window_s() -> u64 {
    60
}
fn default_auth_backoff_s() -> u64 {
    300
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
            allow_anonymous: false,
            auth_max_failures: default_auth_max_failures(),
            auth_failure_window_s: default_auth_failure_window_s(),
            auth_backoff_s: default_auth_backoff_s(),
            tls: None,
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
        if self.allow_anonymous && !self.listen.ip().is_loopback() {
            return Err(format!(
                "mqtt.allow_anonymous is for tests and development on a loopback address only; mqtt.listen is {}",
                self.listen
            ));
        }
        if self.auth_max_failures == 0 || self.auth_failure_window_s == 0 {
            return Err("mqtt.auth_max_failures and mqtt.auth_failure_window_s must be at least 1".into());
        }
        Ok(())
    }
}
