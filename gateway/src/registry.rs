//! The gateway's device registry: a device's kind, estate and area come from here, never
//! from what the device sends.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use gatehouse_proto as pb;

use crate::config::{Config, DeviceKind};

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
    pub fn from_config(config: &Config) -> Self {
        let devices = config
            .devices
            .iter()
            .map(|d| {
                (
                    d.id.clone(),
                    DeviceInfo {
                        id: d.id.clone(),
                        kind: d.kind,
                        area: d.area.clone(),
                    },
                )
            })
            .collect();
        let other_protocol = config
            .devices
            .iter()
            .filter(|d| d.kind.is_mqtt() && !d.speaks_mqtt())
            .map(|d| d.id.clone())
            .collect();
        Self {
            gateway_id: config.gateway.id.as_str().into(),
            estate_id: config.gateway.estate.as_str().into(),
            devices: Arc::new(devices),
            other_protocol: Arc::new(other_protocol),
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
