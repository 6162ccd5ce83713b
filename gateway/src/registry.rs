//! The gateway's devices: their kinds ([`DeviceKind`]) and the registry that knows each
//! configured device. A device's kind, estate and area come from here, never from what the
//! device sends. The registry is built from the configuration file by
//! `Registry::from_config` (in `config.rs`, which knows the file's shape; this module does
//! not depend on it).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use gatehouse_proto as pb;
use serde::Deserialize;

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

#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub id: String,
    pub kind: DeviceKind,
    pub area: String,
}

/// Who this gateway is and which devices it serves. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    pub gateway_id: Arc<str>,
    pub estate_id: Arc<str>,
    devices: Arc<HashMap<String, DeviceInfo>>,
    /// Devices of an MQTT kind that speak another protocol (DC-09, Modbus fire panels):
    /// an MQTT publish under their id is refused.
    other_protocol: Arc<HashSet<String>>,
}

impl Registry {
    /// This gateway's registry: its identity, its devices, and which of those devices of an
    /// MQTT kind report over another protocol.
    pub fn new(
        gateway_id: &str,
        estate_id: &str,
        devices: impl IntoIterator<Item = DeviceInfo>,
        other_protocol: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            gateway_id: gateway_id.into(),
            estate_id: estate_id.into(),
            devices: Arc::new(devices.into_iter().map(|d| (d.id.clone(), d)).collect()),
            other_protocol: Arc::new(other_protocol.into_iter().collect()),
        }
    }

    pub fn get(&self, device_id: &str) -> Option<&DeviceInfo> {
        self.devices.get(device_id)
    }

    /// Whether `device_id` reports over another protocol than MQTT (so an MQTT publish
    /// under its id is not its own).
    pub fn speaks_other_protocol(&self, device_id: &str) -> bool {
        self.other_protocol.contains(device_id)
    }

    pub fn devices(&self) -> impl Iterator<Item = &DeviceInfo> {
        self.devices.values()
    }

    /// A canonical event for `device`, stamped with this gateway's identity. The event id
    /// is given here; the sequence number is given by the outbox when it commits the event.
    pub fn event(
        &self,
        device: &DeviceInfo,
        occurred_at_ms: i64,
        received_at_ms: i64,
        body: pb::event::Body,
    ) -> pb::Event {
        pb::Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            seq: 0,
            gateway_id: self.gateway_id.to_string(),
            estate_id: self.estate_id.to_string(),
            device_id: device.id.clone(),
            device_kind: device.kind.to_proto() as i32,
            area: device.area.clone(),
            occurred_at_ms,
            received_at_ms,
            trace_context: Default::default(),
            body: Some(body),
        }
    }

    pub fn hello_devices(&self) -> Vec<pb::DeviceInfo> {
        self.devices
            .values()
            .map(|d| pb::DeviceInfo {
                device_id: d.id.clone(),
                kind: d.kind.to_proto() as i32,
                area: d.area.clone(),
            })
            .collect()
    }
}
