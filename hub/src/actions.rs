//! Operator actions as both front doors take them: the HTTP API ([`crate::api`]) and the
//! gRPC command centre ([`crate::centre`]) build the same request values, which are checked
//! here and turned into the writer's [`Op`]s (or, for a command, recorded and handed to its
//! gateway), so the two refuse and accept exactly the same things. Each front door only
//! maps [`Invalid`] and the writer's errors to its own statuses.
//!
//! The role-action rules live here too (issue 12 §3), so both front doors apply them: an
//! override's supervisor is the caller and must be a supervisor; shelving is bounded per
//! role and priority; opening a door or barrier and resetting or silencing a fire panel
//! need a named reason; maintenance always ends; absences are bounded.

use std::collections::BTreeMap;

use gatehouse_proto::Command;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::warn;

use crate::audit::{Actor, AuditEntry};
use crate::auth::{Principal, Role, policy};
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
    /// The caller's role may not do this (HTTP 403, gRPC PERMISSION_DENIED).
    pub forbidden: bool,
    pub error: String,
    pub detail: String,
}

impl Invalid {
    pub fn bad(error: impl Into<String>, detail: impl Into<String>) -> Self {
        Invalid {
            unprocessable: false,
            forbidden: false,
            error: error.into(),
            detail: detail.into(),
        }
    }

    pub fn unprocessable(error: impl Into<String>, detail: impl Into<String>) -> Self {
        Invalid {
            unprocessable: true,
            ..Self::bad(error, detail)
        }
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Invalid {
            forbidden: true,
            ..Self::bad("forbidden", detail)
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
#[derive(Debug, Default, Deserialize, Serialize)]
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
#[derive(Debug, Default, Deserialize, Serialize)]
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

/// The longest `role` may shelve an alarm of `priority` ([`policy::max_shelve_minutes`]):
/// a longer shelve is 422, a role that may not shelve 403.
pub fn check_shelve(role: Role, priority: &str, minutes: Option<i64>) -> Result<(), Invalid> {
    let Some(max) = policy::max_shelve_minutes(role, priority) else {
        return Err(Invalid::forbidden(format!("a {} may not shelve alarms", role.as_str())));
    };
    match minutes {
        Some(m) if m > max => Err(Invalid::unprocessable(
            "shelved too long",
            format!(
                "a {} may shelve a {priority} alarm for at most {max} minutes",
                role.as_str()
            ),
        )),
        _ => Ok(()),
    }
}

/// A supervisor's override of a blocked close.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    pub supervisor: Option<String>,
    pub reason: Option<String>,
}

/// Moving an incident: `{"to", "note"?, "actor"?, "reason"?, "override"?}`.
#[derive(Debug, Default, Deserialize, Serialize)]
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
    /// `caller` is who asks: an override is theirs (never a name in the request) and needs
    /// a supervisor or duty manager.
    pub fn op(self, incident_id: i64, caller: &Principal) -> Result<Op, Invalid> {
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
            if !policy::allows(caller.role, policy::Permission::CloseWithOverride) {
                return Err(Invalid::forbidden(format!(
                    "closing with an override needs a supervisor; you are a {}",
                    caller.role.as_str()
                )));
            }
            // The name in the request, if any, is checked for shape only: the override is
            // recorded as the caller's.
            text_field("override.supervisor", o.supervisor, MAX_NAME, false)?;
            override_by = Some(caller.user.clone());
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
#[derive(Debug, Default, Deserialize, Serialize)]
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
#[derive(Debug, Default, Deserialize, Serialize)]
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

/// Actions that open a way in (doors, barriers, intercom releases) or reset or silence a fire
/// panel: each needs a named reason, kept with the command.
pub fn needs_reason(kind: &str, action: &str) -> bool {
    match kind {
        "door" | "intercom" => matches!(action, "unlock" | "release"),
        "fire_panel" => matches!(action, "reset" | "silence"),
        _ => false,
    }
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
    caller: &Principal,
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
    // Who asks is the caller, never a name in the request.
    let operator = caller.user.clone();
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
    if caller.role == Role::Facility && !policy::is_plant_kind(&kind) {
        return Err(Invalid::forbidden(format!(
            "a facility user commands plant-room devices only, not a {kind}"
        ))
        .into());
    }
    if reason.is_none() && needs_reason(&kind, &action) {
        return Err(
            Invalid::unprocessable("missing reason", format!("{action} on a {kind} needs a named reason")).into(),
        );
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

/// The longest maintenance window (a week): a device's alarms are suppressed meanwhile.
pub const MAX_MAINTENANCE_MINUTES: i64 = 7 * 24 * 60;

/// When a maintenance window that starts `now` ends: it always ends (no open-ended
/// maintenance), within [`MAX_MAINTENANCE_MINUTES`]. Ending maintenance needs no minutes.
pub fn maintenance_until(on: bool, minutes: Option<i64>, now_ms: i64) -> Result<Option<i64>, Invalid> {
    match (on, minutes) {
        (false, _) => Ok(None),
        (true, None) => Err(Invalid::unprocessable(
            "missing minutes",
            format!("maintenance always ends: give minutes, 1 to {MAX_MAINTENANCE_MINUTES}"),
        )),
        (true, Some(m)) if !(1..=MAX_MAINTENANCE_MINUTES).contains(&m) => Err(Invalid::bad(
            "invalid minutes",
            format!("between 1 and {MAX_MAINTENANCE_MINUTES}"),
        )),
        (true, Some(m)) => Ok(Some(now_ms + m * 60_000)),
    }
}

/// How far ahead an absence may reach (90 days), and how far back it may start (a week).
pub const MAX_ABSENCE_AHEAD_MS: i64 = 90 * 24 * 3_600_000;
pub const MAX_ABSENCE_BACK_MS: i64 = 7 * 24 * 3_600_000;

/// An absence lies within a week back and 90 days ahead of `now`, and ends after it starts.
pub fn check_absence(from_ms: Option<i64>, until_ms: Option<i64>, now_ms: i64) -> Result<(), Invalid> {
    let bad = |detail: &str| Err(Invalid::unprocessable("absence out of bounds", detail.to_owned()));
    for t in [from_ms, until_ms].into_iter().flatten() {
        if t > now_ms + MAX_ABSENCE_AHEAD_MS {
            return bad("an absence reaches at most 90 days ahead");
        }
        if t < now_ms - MAX_ABSENCE_BACK_MS {
            return bad("an absence starts at most 7 days back");
        }
    }
    if let (Some(f), Some(u)) = (from_ms, until_ms)
        && u <= f
    {
        return bad("until must be after from");
    }
    Ok(())
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
        assert_eq!(
            bad.op(1, &principal(Role::Supervisor)).unwrap_err().error,
            "invalid state"
        );
        let long_step = StepRequest::default().op(1, "x".repeat(65));
        assert_eq!(long_step.unwrap_err().error, "invalid step");
    }

    fn principal(role: Role) -> Principal {
        Principal {
            user: "sam".into(),
            role,
            scope: crate::auth::Scope::All,
            via: crate::auth::Via::ApiToken,
            guard_id: None,
        }
    }

    #[test]
    fn an_override_is_the_callers_and_needs_a_supervisor() {
        let req = || TransitionRequest {
            to: Some("closed".into()),
            override_: Some(OverrideRequest {
                supervisor: Some("Made Up".into()),
                reason: Some("brigade confirmed".into()),
            }),
            ..Default::default()
        };
        assert!(req().op(1, &principal(Role::Operator)).unwrap_err().forbidden);
        match req().op(1, &principal(Role::Supervisor)) {
            Ok(Op::Transition { override_by, .. }) => assert_eq!(override_by.as_deref(), Some("sam")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shelving_maintenance_and_absences_are_bounded() {
        assert!(check_shelve(Role::Operator, "P1", Some(30)).is_ok());
        assert!(check_shelve(Role::Operator, "P1", Some(480)).unwrap_err().unprocessable);
        assert!(check_shelve(Role::Guard, "P4", Some(5)).unwrap_err().forbidden);
        assert!(maintenance_until(true, None, 0).unwrap_err().unprocessable);
        assert!(maintenance_until(true, Some(MAX_MAINTENANCE_MINUTES + 1), 0).is_err());
        assert_eq!(maintenance_until(true, Some(1), 0), Ok(Some(60_000)));
        assert_eq!(maintenance_until(false, None, 0), Ok(None));
        let year_9999 = 253_402_214_400_000;
        assert!(check_absence(None, Some(year_9999), 0).is_err());
        assert!(check_absence(Some(0), Some(3_600_000), 0).is_ok());
    }

    #[test]
    fn opening_and_fire_panel_resets_need_a_reason() {
        assert!(needs_reason("door", "unlock"));
        assert!(needs_reason("door", "release"));
        assert!(!needs_reason("door", "lock"));
        assert!(needs_reason("fire_panel", "reset"));
        assert!(needs_reason("fire_panel", "silence"));
        assert!(!needs_reason("modbus", "write"));
    }
}
