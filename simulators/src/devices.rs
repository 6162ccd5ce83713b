//! Door controller, intercom and fire panel simulators: scripted events for storylines and
//! tests, plus background traffic (residents badging in, cars at the barrier, intercom calls).

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::mqtt_device::{DeviceError, MqttDevice, card_number, flat, plate};

pub struct DoorController(pub MqttDevice);

impl DoorController {
    pub async fn access(&self, door: &str, granted: bool) -> Result<(), DeviceError> {
        let result = if granted { "granted" } else { "denied" };
        let mut payload = json!({"type": "access", "door": door, "result": result, "credential": card_number()});
        if !granted {
            payload["reason"] = json!("card not registered");
        }
        self.0.event(payload).await
    }

    /// A known badge (a guard's card, say) granted at `door`.
    pub async fn badge(&self, door: &str, credential: &str) -> Result<(), DeviceError> {
        self.0
            .event(json!({"type": "access", "door": door, "result": "granted", "credential": credential}))
            .await
    }

    pub async fn forced(&self, door: &str) -> Result<(), DeviceError> {
        self.0.event(json!({"type": "door_forced", "door": door})).await
    }

    pub async fn held_open(&self, door: &str, seconds: u32) -> Result<(), DeviceError> {
        self.0
            .event(json!({"type": "door_held_open", "door": door, "seconds": seconds}))
            .await
    }

    pub async fn vehicle(&self, lane: &str, resident: bool) -> Result<(), DeviceError> {
        let mut payload = json!({"type": "vehicle", "lane": lane, "plate": plate(), "direction": if fastrand::bool() { "in" } else { "out" }, "resident": resident});
        if !resident {
            payload["pass"] = json!(format!("V-{:04}", fastrand::u16(..10_000)));
        }
        self.0.event(payload).await
    }

    /// Residents badging in and out, and cars at the barrier, about `per_minute` a minute.
    pub async fn background(&self, door: &str, per_minute: u32, stop: CancellationToken) {
        while pause(per_minute, &stop).await {
            let r = if fastrand::u8(..10) < 7 {
                self.access(door, fastrand::u8(..50) != 0).await
            } else {
                self.vehicle("lane-1", fastrand::u8(..10) < 8).await
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "background door traffic");
            }
        }
    }
}

pub struct Intercom(pub MqttDevice);

impl Intercom {
    /// One whole call: started, answered, the door released, ended.
    pub async fn call(&self, door: &str) -> Result<(), DeviceError> {
        let call_id = format!("c-{:08x}", fastrand::u32(..));
        self.0
            .event(json!({"type": "call_started", "call_id": call_id, "from": flat(), "to": "gate-house"}))
            .await?;
        self.0
            .event(json!({"type": "call_answered", "call_id": call_id}))
            .await?;
        self.0
            .event(json!({"type": "door_release", "call_id": call_id, "door": door}))
            .await?;
        self.0
            .event(json!({"type": "call_ended", "call_id": call_id, "seconds": fastrand::u32(5..90)}))
            .await
    }

    pub async fn emergency(&self) -> Result<(), DeviceError> {
        self.0.event(json!({"type": "emergency_call", "from": flat()})).await
    }

    pub async fn background(&self, door: &str, per_minute: u32, stop: CancellationToken) {
        while pause(per_minute, &stop).await {
            if let Err(e) = self.call(door).await {
                tracing::debug!(error = %e, "background intercom traffic");
            }
        }
    }
}

pub struct FirePanel(pub MqttDevice);

impl FirePanel {
    pub async fn send(&self, kind: &str, zone: &str, text: &str) -> Result<(), DeviceError> {
        self.0
            .event(json!({"type": kind, "loop": 1, "zone": zone, "text": text}))
            .await
    }
    pub async fn fire_alarm(&self, zone: &str, text: &str) -> Result<(), DeviceError> {
        self.send("fire_alarm", zone, text).await
    }
    pub async fn reset(&self) -> Result<(), DeviceError> {
        self.send("reset", "0", "panel reset").await
    }
}

/// Waits a random interval averaging 60/`per_minute` s; false once `stop` is cancelled.
async fn pause(per_minute: u32, stop: &CancellationToken) -> bool {
    let mean_ms = 60_000 / u64::from(per_minute.max(1));
    let wait = Duration::from_millis(mean_ms / 2 + fastrand::u64(..=mean_ms));
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stop.cancelled() => false,
    }
}
