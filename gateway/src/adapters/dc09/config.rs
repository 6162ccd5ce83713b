//! The DC-09 adapter's configuration: the `[dc09]` receiver section and each fire panel's
//! `[devices.dc09]` table, with the checks that need nothing outside them.

use std::net::SocketAddr;

use serde::Deserialize;

use super::crypto::Key;

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
    /// Frames a second one source address may send, sustained (TCP and UDP together); a
    /// frame over it is dropped unanswered and counted, and the panel retries after its ACK
    /// timeout. A panel sends a few frames a minute; a fire spreading, tens at once.
    #[serde(default = "default_dc09_max_frames_per_s")]
    pub max_frames_per_s: u32,
    /// Frames one source address may send at once above that rate (the bucket's size).
    #[serde(default = "default_dc09_frame_burst")]
    pub frame_burst: u32,
    /// Longest frame (bytes, LF to CR) answered; a longer one is dropped unanswered and
    /// counted. DC-09's length field caps a frame at 4107 bytes, the default; a panel's
    /// frames are well under 200 (Contact ID or SIA DCS, with AES padding).
    #[serde(default = "default_dc09_max_frame_bytes")]
    pub max_frame_bytes: usize,
}

fn default_dc09_max_frame_bytes() -> usize {
    super::frame::MAX_FRAME
}

fn default_dc09_max_frames_per_s() -> u32 {
    20
}

fn default_dc09_frame_burst() -> u32 {
    100
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

impl Dc09Section {
    /// Load-time checks; `panels` is how many devices report over DC-09.
    pub fn validate(&self, panels: usize) -> Result<(), String> {
        if self.idle_timeout_s == 0 || self.max_connections_per_source == 0 {
            return Err("dc09.idle_timeout_s and dc09.max_connections_per_source must be at least 1".into());
        }
        if !(64..=super::frame::MAX_FRAME).contains(&self.max_frame_bytes) {
            return Err(format!(
                "dc09.max_frame_bytes must be between 64 and {} (DC-09's largest frame)",
                super::frame::MAX_FRAME
            ));
        }
        if self.max_frames_per_s == 0 || self.frame_burst == 0 {
            return Err("dc09.max_frames_per_s and dc09.frame_burst must be at least 1".into());
        }
        // One source at its cap must leave a connection for every configured panel.
        // Saturating: a huge per-source cap from the file is refused, not an overflow.
        if self.max_connections < self.max_connections_per_source.saturating_add(panels) {
            return Err(format!(
                "dc09.max_connections must be at least max_connections_per_source ({}) + the {} configured DC-09 panels",
                self.max_connections_per_source, panels
            ));
        }
        Ok(())
    }
}

impl Dc09DeviceConfig {
    /// The panel's AES key, if it has one.
    pub fn key(&self) -> Result<Option<Key>, String> {
        match (&self.key, &self.key_hex) {
            (Some(_), Some(_)) => Err("give dc09.key or dc09.key_hex, not both".into()),
            (Some(t), None) => Key::from_text(t).map(Some).map_err(|e| e.to_string()),
            (None, Some(h)) => Key::from_hex(h).map(Some).map_err(|e| e.to_string()),
            (None, None) => Ok(None),
        }
    }

    /// Load-time checks of the account, the key and the supervision interval.
    pub fn validate(&self) -> Result<(), String> {
        let ok = (3..=16).contains(&self.account.len()) && self.account.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(format!("dc09.account {:?} must be 3–16 hex digits", self.account));
        }
        if self.key.is_some() && self.key_hex.is_some() {
            return Err("give dc09.key or dc09.key_hex, not both".into());
        }
        if let Err(e) = self.key() {
            return Err(format!("dc09 key: {e}"));
        }
        if self.supervision_s < 2 {
            return Err(format!("dc09.supervision_s = {} is below 2 s", self.supervision_s));
        }
        Ok(())
    }
}
