//! The MQTT intake: every publish (of any connection) is translated here — profile topics by
//! [`translate`], vendor topics by [`vendor`] — into an event, a command result or a
//! rejection (counted per reason, logged at most once a minute per device); and the
//! commands sent to devices wait here for their results.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use gatehouse_proto as pb;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    sessions::Sessions,
    translate::{self, Reject, TopicKind},
    vendor::{self, VendorRouter},
};
use crate::{
    adapters::{AdapterContext, CommandRequest, command_result, log_limit::LogLimiter},
    metrics::RejectReason,
};

/// How long a device has to answer a command that carries no deadline.
const DEFAULT_COMMAND_WAIT: Duration = Duration::from_secs(10);

struct Pending {
    reply: oneshot::Sender<pb::CommandResult>,
    command: pb::Command,
    until: Instant,
}

/// Translation of publishes into events, shared by every connection, and the commands
/// awaiting their results.
pub struct Intake {
    pub(super) ctx: AdapterContext,
    max_payload: usize,
    pending: Mutex<HashMap<String, Pending>>,
    log_limit: Mutex<LogLimiter>,
    vendors: VendorRouter,
}

pub(super) async fn run_commands(
    intake: Arc<Intake>,
    sessions: Sessions,
    mut commands: mpsc::Receiver<CommandRequest>,
    shutdown: CancellationToken,
) {
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(req) = commands.recv() => intake.send_command(&sessions, req),
            _ = sweep.tick() => intake.expire_commands(),
        }
    }
}

impl Intake {
    pub(super) fn new(ctx: AdapterContext, max_payload: usize, vendors: VendorRouter) -> Self {
        Self {
            ctx,
            max_payload,
            pending: Mutex::default(),
            log_limit: Mutex::default(),
            vendors,
        }
    }

    /// The vendor topics and the devices bound to them (topic rights use them too).
    pub(super) fn vendors(&self) -> &VendorRouter {
        &self.vendors
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Translates one publish: the event to store, or `None` when there is nothing to store
    /// (a command result, completed here; or a rejection, counted and logged).
    pub(crate) fn take(&self, topic: &str, payload: &[u8]) -> Option<pb::Event> {
        let received_ms = pb::now_ms();
        // The trace of this device message starts here; its context travels in the event.
        // Only when OpenTelemetry export is on: otherwise no span is made at all.
        let span = if crate::telemetry::enabled() {
            tracing::info_span!(target: "gatehouse_gateway::mqtt", "gateway.mqtt.publish", topic = %topic, device = tracing::field::Empty, event_id = tracing::field::Empty)
        } else {
            tracing::Span::none()
        };
        match span.in_scope(|| self.translate(topic, payload, received_ms)) {
            Ok(Some(mut event)) => {
                if !span.is_none() {
                    span.record("device", event.device_id.as_str());
                    span.record("event_id", event.event_id.as_str());
                    crate::telemetry::inject(&span, &mut event.trace_context);
                }
                self.ctx.metrics.mqtt_accepted.fetch_add(1, Relaxed);
                Some(event)
            }
            Ok(None) => None,
            Err((device, reject)) => {
                self.ctx.metrics.reject(reject.reason);
                let log = self
                    .log_limit
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .allow(&device, Instant::now());
                if log {
                    // The detail may quote a card number, plate or flat from the payload.
                    let detail = crate::adapters::redact::quoted_values(&reject.detail);
                    tracing::warn!(device = %device, topic = %topic, reason = reject.reason.as_str(), detail = %detail,
                        "rejected MQTT publish (further rejections from this device are counted, and logged at most once a minute)");
                }
                None
            }
        }
    }

    /// Returns the event to store, `None` for a command result, or the rejection with the
    /// device id it is logged under.
    fn translate(&self, topic: &str, payload: &[u8], received_ms: i64) -> Result<Option<pb::Event>, (String, Reject)> {
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
        let (occurred_ms, body) =
            vendor::translate(mapping, device, &value, received_ms).map_err(|r| (device.id.clone(), r))?;
        Ok(self.ctx.registry.event(device, occurred_ms, received_ms, body))
    }

    fn send_command(&self, sessions: &Sessions, req: CommandRequest) {
        let cmd = &req.command;
        let topic = format!("gatehouse/v1/{}/command", cmd.device_id);
        let delivered = sessions.deliver(&topic, translate::encode_command(cmd).into());
        if delivered == 0 {
            tracing::debug!(device = %cmd.device_id, "no connected client subscribes to the command topic; waiting for the deadline");
        }
        let wait = if cmd.deadline_ms > 0 {
            Duration::from_millis((cmd.deadline_ms - pb::now_ms()).max(0) as u64)
        } else {
            DEFAULT_COMMAND_WAIT
        };
        self.pending().insert(
            cmd.command_id.clone(),
            Pending {
                until: Instant::now() + wait,
                command: req.command,
                reply: req.reply,
            },
        );
    }

    fn complete_command(&self, device_id: &str, reply: translate::CommandReply) {
        let mut pending = self.pending();
        match pending.remove(&reply.command_id) {
            Some(p) if p.command.device_id == device_id => {
                let _ = p.reply.send(command_result(&p.command, reply.ok, reply.message));
            }
            Some(p) => {
                tracing::warn!(device = device_id, command = %reply.command_id, "command result from a device the command was not for; ignored");
                pending.insert(reply.command_id, p);
            }
            None => {
                tracing::debug!(device = device_id, command = %reply.command_id, "result for an unknown or expired command")
            }
        }
    }

    fn expire_commands(&self) {
        let now = Instant::now();
        let mut pending = self.pending();
        let expired: Vec<String> = pending
            .iter()
            .filter(|(_, p)| p.until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for id in expired {
            if let Some(p) = pending.remove(&id) {
                let _ = p
                    .reply
                    .send(command_result(&p.command, false, "the device did not answer in time"));
            }
        }
    }
}
