//! MQTT device profile v1 (DESIGN §4.2): door controllers, intercoms and fire panels publish
//! into the gateway's embedded broker; this adapter reads them through the broker's
//! in-process link, translates them and hands them to the outbox, and publishes commands.

pub mod broker;
pub mod translate;
pub mod vendor;

use std::{
    collections::HashMap,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use gatehouse_proto as pb;
use rumqttd::{
    Notification,
    local::{LinkRx, LinkTx},
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::{
    translate::{Reject, TopicKind},
    vendor::VendorRouter,
};
use super::{AdapterContext, CommandRequest, CommandTx, command_result};
use crate::{config::MqttSection, metrics::RejectReason};

/// How long a device has to answer a command that carries no deadline.
const DEFAULT_COMMAND_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error("subscribing the gateway's link to {filter}: {detail}")]
    Subscribe { filter: String, detail: String },
}

/// Starts the broker and the adapter task; returns the channel that takes commands for any
/// MQTT device.
pub async fn start(
    ctx: AdapterContext,
    section: MqttSection,
    shutdown: CancellationToken,
) -> Result<CommandTx, MqttError> {
    start_with_vendors(ctx, section, VendorRouter::default(), shutdown).await
}

/// [`start`], also reading the vendor JSON topics of `vendors` (see [`vendor`]).
pub async fn start_with_vendors(
    ctx: AdapterContext,
    section: MqttSection,
    vendors: VendorRouter,
    shutdown: CancellationToken,
) -> Result<CommandTx, MqttError> {
    let (mut link_tx, link_rx) = broker::start(&section).await?;
    let profile = [
        "gatehouse/v1/+/event",
        "gatehouse/v1/+/status",
        "gatehouse/v1/+/command/result",
    ];
    let vendor_filters = vendors.topics.iter().map(|(f, _)| f.as_str());
    for filter in profile.into_iter().chain(vendor_filters) {
        link_tx.subscribe(filter).map_err(|e| MqttError::Subscribe {
            filter: filter.into(),
            detail: e.to_string(),
        })?;
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let adapter = Adapter {
        ctx,
        max_payload: section.max_payload_bytes,
        link_tx,
        pending: HashMap::new(),
        log_limit: LogLimiter::default(),
        vendors,
    };
    tokio::spawn(adapter.run(link_rx, cmd_rx, shutdown));
    Ok(cmd_tx)
}

struct Pending {
    reply: oneshot::Sender<pb::CommandResult>,
    command: pb::Command,
    until: Instant,
}

struct Adapter {
    ctx: AdapterContext,
    max_payload: usize,
    link_tx: LinkTx,
    pending: HashMap<String, Pending>,
    log_limit: LogLimiter,
    vendors: VendorRouter,
}

impl Adapter {
    async fn run(
        mut self,
        mut link_rx: LinkRx,
        mut commands: mpsc::Receiver<CommandRequest>,
        shutdown: CancellationToken,
    ) {
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                n = link_rx.next() => match n {
                    Ok(Some(Notification::Forward(f))) => {
                        if !self.on_publish(&f.publish.topic, &f.publish.payload).await {
                            break;
                        }
                    }
                    // The router pauses a link whose buffer filled; it must be woken or it
                    // stops delivering.
                    Ok(Some(Notification::Unschedule)) => {
                        if let Err(e) = link_rx.wake().await {
                            tracing::error!(error = %e, "waking the broker link failed; MQTT intake stops");
                            break;
                        }
                    }
                    // Acks and other notifications, or a wake-up with nothing in it: keep reading.
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "the broker link closed; MQTT intake stops");
                        break;
                    }
                },
                Some(req) = commands.recv() => self.send_command(req),
                _ = sweep.tick() => self.expire_commands(),
            }
        }
    }

    /// Handles one publish; returns false when the outbox has stopped.
    async fn on_publish(&mut self, topic: &[u8], payload: &[u8]) -> bool {
        let received_ms = pb::now_ms();
        let topic = String::from_utf8_lossy(topic);
        // The trace of this device message starts here; its context travels in the event.
        // Only when OpenTelemetry export is on: otherwise no span is made at all.
        let span = if crate::telemetry::enabled() {
            tracing::info_span!(target: "gatehouse_gateway::mqtt", "gateway.mqtt.publish", topic = %topic, device = tracing::field::Empty, event_id = tracing::field::Empty)
        } else {
            tracing::Span::none()
        };
        match span.in_scope(|| self.translate(&topic, payload, received_ms)) {
            Ok(Some(mut event)) => {
                if !span.is_none() {
                    span.record("device", event.device_id.as_str());
                    span.record("event_id", event.event_id.as_str());
                    crate::telemetry::inject(&span, &mut event.trace_context);
                }
                self.ctx.metrics.mqtt_accepted.fetch_add(1, Relaxed);
                if let Err(e) = self.ctx.sink.emit(event).await {
                    tracing::error!(error = %e, "MQTT intake stops");
                    return false;
                }
            }
            Ok(None) => {}
            Err((device, reject)) => {
                self.ctx.metrics.reject(reject.reason);
                if self.log_limit.allow(&device, Instant::now()) {
                    tracing::warn!(device = %device, topic = %topic, reason = reject.reason.as_str(), detail = %reject.detail,
                        "rejected MQTT publish (further rejections from this device are counted, and logged at most once a minute)");
                }
            }
        }
        true
    }

    /// Returns the event to store, `None` for a command result, or the rejection with the
    /// device id it is logged under.
    fn translate(
        &mut self,
        topic: &str,
        payload: &[u8],
        received_ms: i64,
    ) -> Result<Option<pb::Event>, (String, Reject)> {
        if !topic.starts_with("gatehouse/v1/") && !self.vendors.is_empty() {
            return self.translate_vendor(topic, payload, received_ms).map(Some);
        }
        let (device_id, kind) = translate::parse_topic(topic).map_err(|r| ("(bad topic)".to_string(), r))?;
        if self.ctx.registry.speaks_other_protocol(device_id) {
            return Err((
                device_id.to_string(),
                Reject {
                    reason: RejectReason::UnknownType,
                    detail: format!("device {device_id:?} reports over DC-09 or Modbus, not MQTT"),
                },
            ));
        }
        let Some(device) = self.ctx.registry.get(device_id) else {
            return Err((
                device_id.to_string(),
                Reject {
                    reason: RejectReason::UnknownDevice,
                    detail: format!("device {device_id:?} is not in this gateway's registry"),
                },
            ));
        };
        let err = |r| (device_id.to_string(), r);
        let body = match kind {
            TopicKind::Event => {
                let (occurred_ms, body) =
                    translate::translate_event(device, payload, received_ms, self.max_payload).map_err(err)?;
                return Ok(Some(self.ctx.registry.event(device, occurred_ms, received_ms, body)));
            }
            TopicKind::Status => translate::translate_status(payload).map_err(err)?,
            TopicKind::CommandResult => {
                let reply = translate::translate_command_result(payload).map_err(err)?;
                self.complete_command(device_id, reply);
                return Ok(None);
            }
        };
        Ok(Some(self.ctx.registry.event(device, received_ms, received_ms, body)))
    }

    /// A vendor JSON publish: routed to its device by topic (and device key), mapped to a
    /// profile object, translated like a profile publish.
    fn translate_vendor(&self, topic: &str, payload: &[u8], received_ms: i64) -> Result<pb::Event, (String, Reject)> {
        let anonymous = |r| (format!("(vendor topic {topic})"), r);
        if payload.len() > self.max_payload {
            return Err(anonymous(Reject {
                reason: RejectReason::Oversized,
                detail: format!(
                    "payload of {} bytes exceeds the {}-byte limit",
                    payload.len(),
                    self.max_payload
                ),
            }));
        }
        let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| {
            anonymous(Reject {
                reason: RejectReason::MalformedJson,
                detail: e.to_string(),
            })
        })?;
        let (binding, mapping) = self.vendors.route(topic, &value).map_err(anonymous)?;
        let Some(device) = self.ctx.registry.get(&binding.device_id) else {
            return Err(anonymous(Reject {
                reason: RejectReason::UnknownDevice,
                detail: format!("device {:?} is not in the registry", binding.device_id),
            }));
        };
        let (occurred_ms, body) = vendor::translate(mapping, device, &value, received_ms, self.max_payload)
            .map_err(|r| (device.id.clone(), r))?;
        Ok(self.ctx.registry.event(device, occurred_ms, received_ms, body))
    }

    fn send_command(&mut self, req: CommandRequest) {
        let cmd = &req.command;
        let topic = format!("gatehouse/v1/{}/command", cmd.device_id);
        if let Err(e) = self.link_tx.publish(topic, translate::encode_command(cmd)) {
            let _ = req.reply.send(command_result(
                cmd,
                false,
                format!("publishing the command failed: {e}"),
            ));
            return;
        }
        let wait = if cmd.deadline_ms > 0 {
            Duration::from_millis((cmd.deadline_ms - pb::now_ms()).max(0) as u64)
        } else {
            DEFAULT_COMMAND_WAIT
        };
        self.pending.insert(
            cmd.command_id.clone(),
            Pending {
                until: Instant::now() + wait,
                command: req.command,
                reply: req.reply,
            },
        );
    }

    fn complete_command(&mut self, device_id: &str, reply: translate::CommandReply) {
        match self.pending.remove(&reply.command_id) {
            Some(p) if p.command.device_id == device_id => {
                let _ = p.reply.send(command_result(&p.command, reply.ok, reply.message));
            }
            Some(p) => {
                tracing::warn!(device = device_id, command = %reply.command_id, "command result from a device the command was not for; ignored");
                self.pending.insert(reply.command_id, p);
            }
            None => {
                tracing::debug!(device = device_id, command = %reply.command_id, "result for an unknown or expired command")
            }
        }
    }

    fn expire_commands(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                let _ = p
                    .reply
                    .send(command_result(&p.command, false, "the device did not answer in time"));
            }
        }
    }
}

/// At most one log line per device per minute, with a bounded memory of devices (a flood
/// of made-up device ids must not grow it without end).
#[derive(Default)]
pub(crate) struct LogLimiter {
    last: HashMap<String, Instant>,
}

impl LogLimiter {
    const WINDOW: Duration = Duration::from_secs(60);
    const MAX_KEYS: usize = 10_000;

    pub(crate) fn allow(&mut self, key: &str, now: Instant) -> bool {
        if let Some(t) = self.last.get(key)
            && now.duration_since(*t) < Self::WINDOW
        {
            return false;
        }
        if self.last.len() >= Self::MAX_KEYS {
            self.last.retain(|_, t| now.duration_since(*t) < Self::WINDOW);
            if self.last.len() >= Self::MAX_KEYS {
                return false;
            }
        }
        self.last.insert(key.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_logged_once_per_device_per_minute() {
        let mut l = LogLimiter::default();
        let t0 = Instant::now();
        assert!(l.allow("a", t0));
        assert!(!l.allow("a", t0 + Duration::from_secs(59)));
        assert!(l.allow("b", t0 + Duration::from_secs(1)));
        assert!(l.allow("a", t0 + Duration::from_secs(61)));
    }
}
