//! Operator actions as both front doors take them: the HTTP API ([`crate::api`]) and the
//! gRPC command centre ([`crate::centre`]) build the same request values, which are checked
//! here and turned into the writer's [`Op`]s (or, for a command, recorded and handed to its
//! gateway), so the two refuse and accept exactly the same things. Each front door only
//! maps [`Invalid`] and the writer's errors to its own statuses.

use std::collections::BTreeMap;

use gatehouse_proto::Command;
use serde::Deserialize;
use serde_json::json;
use tracing::warn;

use crate::audit::{Actor, AuditEntry};
use crate::commands::queries::{self as command_q, CommandRow};
use crate::commands::{NewCommand, model};
use crate::engine::Op;
use crate::incidents::IncidentState;
use crate::link::LinkRegistry;
use crate::store::{Pool, StoreError};
use crate::writer::{ActionError, WriterHandle};

pub const MAX_NAME: usize = 100;
pub const MAX_NOTE: usize = 2_000;
/// Who an action is recorded as when the request names nobody.
const DEFAULT_ACTOR: &str = "operator";

/// A request refused before anything reached the writer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {detail}")]
pub struct Invalid {
    /// Well-formed but not acceptable (HTTP 422) rather than malformed (400).
    pub unprocessable: bool,
    pub error: String,
    pub detail: String,
}

impl Invalid {
    pub fn bad(error: impl Into<String>, detail: impl Into<String>) -> Self {
        Invalid {
            unprocessable: false,
            error: error.into(),
            detail: detail.into(),
        }
    }

    fn unprocessable(error: impl Into<String>, detail: impl Into<String>) -> Self {
        Invalid {
            unprocessable: true,
            ..Self::bad(error, detail)
        }
    }
}

/// A short free-text field: trimmed (empty = absent), bounded, no control characters
/// (newlines allowed when `multiline`).
pub fn text_field(name: &str, v: Option<String>, max: usize, multiline: bool) -> Result<Option<String>, Invalid> {
    let Some(v) = v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max || v.chars().any(|c| c.is_control() && !(multiline && c == '\n')) {
        return Err(Invalid::bad(
            format!("invalid {name}"),
            format!("at most {max} characters, no control characters"),
        ));
    }
    Ok(Some(v))
}

fn actor(name: &str, v: Option<String>) -> Result<String, Invalid> {
    Ok(text_field(name, v, MAX_NAME, false)?.unwrap_or_else(|| DEFAULT_ACTOR.into()))
}

/// Acknowledging an alarm: `{"operator"?, "note"?}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub operator: Option<String>,
    pub note: Option<String>,
}

impl AckRequest {
    /// The operator (default `operator`) and the note.
    pub fn checked(self) -> Result<(String, Option<String>), Invalid> {
        let operator = self
            .operator
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_ACTOR)
            .to_owned();
        if operator.chars().count() > MAX_NAME || operator.chars().any(char::is_control) {
            return Err(Invalid::bad(
                "invalid operator",
                format!("at most {MAX_NAME} characters, no control characters"),
            ));
        }
        let note = self.note.filter(|n| !n.trim().is_empty());
        if note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE) {
            return Err(Invalid::bad("invalid note", format!("at most {MAX_NOTE} characters")));
        }
        Ok((operator, note))
    }
}

/// Shelving an alarm: `{"minutes", "reason", "operator"?}` (the writer checks the range
/// and that a reason is given).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShelveRequest {
    pub minutes: Option<i64>,
    pub reason: Option<String>,
    pub operator: Option<String>,
}

impl ShelveRequest {
    pub fn op(self, alarm_id: i64) -> Result<Op, Invalid> {
        let minutes = self
            .minutes
            .ok_or_else(|| Invalid::bad("invalid body", "minutes is required"))?;
        Ok(Op::Shelve {
            alarm_id,
            minutes,
            reason: text_field("reason", self.reason, MAX_NOTE, true)?.unwrap_or_default(),
            operator: actor("operator", self.operator)?,
        })
    }
}

/// A supervisor's override of a blocked close.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    pub supervisor: Option<String>,
    pub reason: Option<String>,
}

/// Moving an incident: `{"to", "note"?, "actor"?, "reason"?, "override"?}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    pub to: Option<String>,
    pub note: Option<String>,
    pub actor: Option<String>,
    pub reason: Option<String>,
    #[serde(rename = "override")]
    pub override_: Option<OverrideRequest>,
}

impl TransitionRequest {
    pub fn op(self, incident_id: i64) -> Result<Op, Invalid> {
        let to = text_field("to", self.to, 32, false)?.ok_or_else(|| Invalid::bad("invalid body", "to is required"))?;
        let to = IncidentState::parse(&to).ok_or_else(|| {
            Invalid::bad(
                "invalid state",
                format!(
                    "unknown state {to:?} (discovered, assessed, reported, on_site, recorded, closed, false_alarm)"
                ),
            )
        })?;
        let actor = actor("actor", self.actor)?;
        let note = text_field("note", self.note, MAX_NOTE, true)?;
        let mut reason = text_field("reason", self.reason, MAX_NOTE, true)?;
        let mut override_by = None;
        if let Some(o) = self.override_ {
            let sup = text_field("override.supervisor", o.supervisor, MAX_NAME, false)?
                .ok_or_else(|| Invalid::bad("invalid override", "override.supervisor is required"))?;
            override_by = Some(sup);
            if let Some(r) = text_field("override.reason", o.reason, MAX_NOTE, true)? {
                reason = Some(r);
            }
        }
        Ok(Op::Transition {
            incident_id,
            to,
            actor,
            note,
            reason,
            override_by,
        })
    }
}

/// A procedure step done or skipped: `{"actor"?, "note"?, "skipped"?}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    pub actor: Option<String>,
    pub note: Option<String>,
    /// Mark the step skipped rather than done (a note saying why is required; skipping a
    /// mandatory step notifies the supervisor).
    pub skipped: Option<bool>,
}

impl StepRequest {
    /// `step` is the step's id or its 1-based position.
    pub fn op(self, incident_id: i64, step: String) -> Result<Op, Invalid> {
        let actor = actor("actor", self.actor)?;
        let note = text_field("note", self.note, MAX_NOTE, true)?;
        if step.len() > 64 {
            return Err(Invalid::bad("invalid step", "at most 64 characters"));
        }
        Ok(Op::Step {
            incident_id,
            step,
            actor,
            note,
            skipped: self.skipped.unwrap_or(false),
        })
    }
}

/// A command to a device: `{"estate", "action", "args"?, "operator", "reason"?, "incident"?}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    pub estate: Option<String>,
    pub action: Option<String>,
    pub args: Option<BTreeMap<String, String>>,
    pub operator: Option<String>,
    pub reason: Option<String>,
    pub incident: Option<i64>,
}

/// Why a command was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no gateway of estate {estate} announced device {device}")]
    UnknownDevice { estate: String, device: String },
    #[error(transparent)]
    Action(#[from] ActionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("command {0} was recorded but cannot be read back")]
    NotStored(i64),
}

/// Checks the command against its device's kind, records it through the writer (with its
/// `command.send` audit row) and only then sends it down its gateway's link (a gateway with
/// no stream makes it `gateway_offline`); answers the command as stored. A command refused
/// for its device (unknown device, an action or arguments its kind does not take) leaves a
/// `command.refused` audit row.
pub async fn send_command(
    pool: &Pool,
    writer: &WriterHandle,
    links: &LinkRegistry,
    actor: &Actor,
    device: String,
    request: CommandRequest,
) -> Result<CommandRow, CommandError> {
    let required = |name: &str, max: usize, v: Option<String>, error: &str, detail: &str| {
        text_field(name, v, max, false)?.ok_or_else(|| Invalid::unprocessable(error, detail))
    };
    let estate = required(
        "estate",
        100,
        request.estate,
        "missing estate",
        "a device id is unique within its estate",
    )?;
    let action = required(
        "action",
        64,
        request.action,
        "missing action",
        "e.g. unlock, release, reset, silence, write",
    )?;
    let operator = required(
        "operator",
        MAX_NAME,
        request.operator,
        "missing operator",
        "who asks for the command",
    )?;
    let reason = text_field("reason", request.reason, MAX_NOTE, true)?;
    let args = request.args.unwrap_or_default();
    let refused = |why: String| {
        let entry = AuditEntry::new(
            "command.refused",
            format!("device:{estate}/{device}"),
            json!({"action": action, "args": args, "reason": reason, "refused": why}),
        );
        writer.audit(actor.clone(), entry)
    };
    let Some((gateway, kind)) = command_q::find_device(pool, &estate, &device).await? else {
        let e = CommandError::UnknownDevice {
            estate: estate.clone(),
            device: device.clone(),
        };
        refused(e.to_string()).await.map_err(ActionError::from)?;
        return Err(e);
    };
    if let Err(e) = model::check(&kind, &action, &args) {
        refused(e.to_string()).await.map_err(ActionError::from)?;
        return Err(Invalid::unprocessable("action not valid for this device", e.to_string()).into());
    }
    let args_json = serde_json::to_string(&args).unwrap_or_else(|_| "{}".into());
    let id = writer
        .op(
            actor,
            Op::Command(NewCommand {
                estate_id: estate,
                gateway_id: gateway.clone(),
                device_id: device.clone(),
                device_kind: kind,
                action: action.clone(),
                args: args_json,
                operator,
                reason,
                incident_id: request.incident,
            }),
        )
        .await?;
    let row = command_q::find(pool, id).await?.ok_or(CommandError::NotStored(id))?;
    // Sent only now that the record is committed, so its result always finds it.
    let command = Command {
        command_id: model::wire_id(id),
        device_id: device,
        action,
        arguments: args.into_iter().collect(),
        deadline_ms: row.deadline_ms,
    };
    if let Err(e) = links.send_command(&gateway, command).await {
        warn!(command = id, gateway = %gateway, error = %e, "command not sent");
        writer
            .op(
                actor,
                Op::CommandUndelivered {
                    id,
                    detail: e.to_string(),
                },
            )
            .await?;
    }
    Ok(command_q::find(pool, id).await?.unwrap_or(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_are_trimmed_bounded_and_refuse_control_characters() {
        assert_eq!(text_field("x", Some("  a ".into()), 5, false), Ok(Some("a".into())));
        assert_eq!(text_field("x", Some("   ".into()), 5, false), Ok(None));
        assert!(text_field("x", Some("abcdef".into()), 5, false).is_err());
        assert!(text_field("x", Some("a\nb".into()), 5, false).is_err());
        assert_eq!(text_field("x", Some("a\nb".into()), 5, true), Ok(Some("a\nb".into())));
    }

    #[test]
    fn a_shelve_needs_minutes_and_a_transition_a_known_state() {
        assert_eq!(
            ShelveRequest::default().op(1).unwrap_err().detail,
            "minutes is required"
        );
        let bad = TransitionRequest {
            to: Some("nowhere".into()),
            ..Default::default()
        };
        assert_eq!(bad.op(1).unwrap_err().error, "invalid state");
        let long_step = StepRequest::default().op(1, "x".repeat(65));
        assert_eq!(long_step.unwrap_err().error, "invalid step");
    }
}
