//! A simulated device's MQTT session, speaking the device profile v1 (docs/design.md, MQTT
//! device profile): it announces itself `online` (retained) with `offline` as its last will,
//! publishes events at QoS 1, and answers every command on its command topic.

use std::{net::SocketAddr, time::Duration};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device {device}: publishing to {topic}: {source}")]
    Publish {
        device: String,
        topic: String,
        source: rumqttc::ClientError,
    },
}

pub struct MqttDevice {
    pub id: String,
    client: AsyncClient,
    session: JoinHandle<()>,
}

impl MqttDevice {
    /// Connects to the gateway's broker as `device_id` (client id and username) with
    /// `password` (`None`: no credentials, for a gateway with `mqtt.allow_anonymous` or a
    /// test of a refusal). The session reconnects by itself after a lost link.
    pub fn connect(broker: SocketAddr, device_id: &str, password: Option<&str>) -> Self {
        let mut options = MqttOptions::new(device_id, broker.ip().to_string(), broker.port());
        if let Some(password) = password {
            options.set_credentials(device_id, password);
        }
        options.set_keep_alive(Duration::from_secs(10));
        // rumqttc refuses to send packets over 10 KiB by default; tests send oversized ones
        // on purpose, for the gateway to refuse.
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        options.set_last_will(LastWill::new(
            status_topic(device_id),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut events) = AsyncClient::new(options, 1024);
        let id = device_id.to_string();
        let session_client = client.clone();
        let session = tokio::spawn(async move {
            let command_topic = format!("gatehouse/v1/{id}/command");
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let c = session_client.clone();
                        let (status, command) = (status_topic(&id), command_topic.clone());
                        // From a task: the client's requests are served by this very loop.
                        // Subscribe before announcing `online`: the broker handles one
                        // connection's packets in order, so whoever sees `online` may send
                        // commands.
                        tokio::spawn(async move {
                            let _ = c.subscribe(command, QoS::AtLeastOnce).await;
                            let _ = c.publish(status, QoS::AtLeastOnce, true, "online").await;
                        });
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == command_topic => {
                        let reply = answer_command(&p.payload);
                        let c = session_client.clone();
                        let topic = format!("{command_topic}/result");
                        tokio::spawn(async move {
                            let _ = c.publish(topic, QoS::AtLeastOnce, false, reply).await;
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(device = %id, error = %e, "simulated device lost its broker; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Self {
            id: device_id.to_string(),
            client,
            session,
        }
    }

    /// Publishes an event payload (a JSON object with its `type`) at QoS 1.
    pub async fn event(&self, payload: Value) -> Result<(), DeviceError> {
        self.publish_raw(
            format!("gatehouse/v1/{}/event", self.id),
            payload.to_string().into_bytes(),
        )
        .await
    }

    /// Publishes any bytes to any topic, for tests of what the gateway refuses.
    pub async fn publish_raw(&self, topic: String, payload: Vec<u8>) -> Result<(), DeviceError> {
        self.client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|source| DeviceError::Publish {
                device: self.id.clone(),
                topic,
                source,
            })
    }
}

impl Drop for MqttDevice {
    fn drop(&mut self) {
        self.session.abort();
    }
}

fn status_topic(device_id: &str) -> String {
    format!("gatehouse/v1/{device_id}/status")
}

/// Simulated hardware does what it is told: every well-formed command succeeds.
fn answer_command(payload: &[u8]) -> Vec<u8> {
    let parsed: Result<Value, _> = serde_json::from_slice(payload);
    let reply = match parsed
        .as_ref()
        .ok()
        .and_then(|v| v.get("command_id"))
        .and_then(Value::as_str)
    {
        Some(id) => {
            let action = parsed
                .as_ref()
                .ok()
                .and_then(|v| v.get("action"))
                .and_then(Value::as_str)
                .unwrap_or("");
            json!({"command_id": id, "ok": true, "message": format!("{action} done")})
        }
        None => json!({"command_id": "", "ok": false, "message": "command without command_id"}),
    };
    reply.to_string().into_bytes()
}

/// A resident's card number, made up: eight digits.
pub fn card_number() -> String {
    sent("card", format!("{:08}", fastrand::u32(0..100_000_000)))
}

/// A flat: block and room, e.g. `B3-1201`.
pub fn flat() -> String {
    sent(
        "flat",
        format!(
            "B{}-{}{:02}",
            fastrand::u8(1..=8),
            fastrand::u8(1..=30),
            fastrand::u8(1..=4)
        ),
    )
}

/// A mainland-China style plate, made up.
pub fn plate() -> String {
    const LETTERS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    let l = LETTERS[fastrand::usize(..LETTERS.len())] as char;
    sent("plate", format!("沪{l}{:05}", fastrand::u32(0..100_000)))
}

/// With `GATEHOUSE_SIM_SENT_PII` naming a file, every card number, plate and flat the
/// simulators make up is appended to it (`<class>\t<value>` lines), so a test can look for
/// exactly those in the logs of a run (residents' data must never be logged in clear).
fn sent(class: &str, value: String) -> String {
    use std::io::Write as _;
    static FILE: std::sync::OnceLock<Option<std::sync::Mutex<std::fs::File>>> = std::sync::OnceLock::new();
    let file = FILE.get_or_init(|| {
        let path = std::env::var_os("GATEHOUSE_SIM_SENT_PII")?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
            .map(std::sync::Mutex::new)
    });
    if let Some(f) = file {
        let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "{class}\t{value}");
    }
    value
}
