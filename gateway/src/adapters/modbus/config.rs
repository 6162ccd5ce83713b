//! The Modbus adapter's configuration: the `[modbus]` section shared by every Modbus device
//! and a device's `[devices.modbus]` point map, with its load-time checks.

use std::collections::HashSet;

use serde::Deserialize;

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

impl ModbusDeviceConfig {
    /// Load-time checks of the address and the point map.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |m: String| Err(m);
        if !is_host_port(&self.address) {
            return bad(format!("address {:?} must be host:port", self.address));
        }
        if self.poll_ms == 0 || self.timeout_ms == 0 {
            return bad("poll_ms and timeout_ms must be positive".into());
        }
        let mut names = HashSet::new();
        for p in &self.points {
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
}

/// Whether `address` is `host:port` (a Modbus TCP server's address).
pub fn is_host_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}
