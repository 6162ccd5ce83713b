//! The Modbus fire-panel adapter's configuration: a panel's `[devices.modbus_fire]` zone
//! map (the `[modbus]` section it shares with the Modbus adapter is in
//! [`crate::adapters::modbus::config`]).

use std::collections::HashSet;

use serde::Deserialize;

use crate::adapters::modbus::config::{Table, is_host_port};

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

impl ModbusFireConfig {
    /// Load-time checks of the address, the zone range and the bits.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |m: String| Err(m);
        if !is_host_port(&self.address) {
            return bad(format!("modbus_fire.address {:?} must be host:port", self.address));
        }
        if self.poll_ms == 0 || self.timeout_ms == 0 {
            return bad("modbus_fire.poll_ms and timeout_ms must be positive".into());
        }
        if !matches!(self.table, Table::Holding | Table::Input) {
            return bad("modbus_fire.table is holding or input (one status word per zone)".into());
        }
        if self.zones == 0 || u32::from(self.first_register) + u32::from(self.zones) > 65_536 {
            return bad("modbus_fire.zones must be at least 1 and end by register 65535".into());
        }
        let mut seen = HashSet::new();
        for (name, bit) in self.bits.all() {
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
        Ok(())
    }
}
