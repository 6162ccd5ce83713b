//! Rows to `gatehouse.v1` messages (times as ms, absent as 0 or empty), and the hub's errors
//! to gRPC statuses.

use std::collections::BTreeMap;

use gatehouse_proto::{Alarm, CommandRecord, Incident, ProcedureStep};
use tonic::Status;
use tracing::error;

use crate::actions::{CommandError, Invalid};
use crate::alarms::queries::AlarmRow;
use crate::commands::queries::CommandRow;
use crate::error::OpError;
use crate::incidents::queries::{IncidentRow, StepRow};
use crate::privacy::View;
use crate::store::StoreError;
use crate::writer::{AckError, ActionError, WriterError};

/// An alarm row as `view` may see it (an emergency call's condition names a flat).
pub fn alarm(r: &AlarmRow, view: &View) -> Alarm {
    Alarm {
        id: r.id,
        estate_id: r.estate_id.clone(),
        device_id: r.device_id.clone(),
        area: r.area.clone(),
        gateway_id: r.gateway_id.clone(),
        condition: view.condition(&r.condition),
        priority: r.priority.clone(),
        category: r.category.clone(),
        message: r.message.clone(),
        active: r.active,
        acknowledged: r.acknowledged,
        latched: r.latched,
        activations: r.activations,
        value: r.value,
        raised_at_ms: r.raised_at_ms,
        changed_at_ms: r.changed_at_ms,
        acked_at_ms: r.acked_at_ms.unwrap_or(0),
        acked_by: r.acked_by.clone().unwrap_or_default(),
        shelved: r.shelved_until_ms.is_some(),
        shelved_until_ms: r.shelved_until_ms.unwrap_or(0),
        shelved_by: r.shelved_by.clone().unwrap_or_default(),
        shelve_reason: r.shelve_reason.clone().unwrap_or_default(),
        suppressed: r.suppressed,
        out_of_service: r.out_of_service,
        chattering: r.chattering,
        incident_id: r.incident_id.unwrap_or(0),
    }
}

pub fn incident(r: &IncidentRow, steps: &[StepRow], response_target_ms: i64) -> Incident {
    Incident {
        id: r.id,
        estate_id: r.estate_id.clone(),
        area: r.area.clone(),
        category: r.category.clone(),
        priority: r.priority.clone(),
        title: r.title.clone(),
        state: r.state.clone(),
        opened_at_ms: r.opened_at_ms,
        opened_by: r.opened_by.clone(),
        acknowledged: r.acknowledged_at_ms.is_some(),
        acknowledged_at_ms: r.acknowledged_at_ms.unwrap_or(0),
        acknowledged_by: r.acknowledged_by.clone().unwrap_or_default(),
        on_site_at_ms: r.on_site_at_ms.unwrap_or(0),
        closed_at_ms: r.closed_at_ms.unwrap_or(0),
        state_changed_at_ms: r.state_changed_at_ms,
        response_due_at_ms: r.opened_at_ms.saturating_add(response_target_ms),
        response_breached: r.response_breached,
        flood_group: r.flood_group,
        false_alarm_reason: r.false_alarm_reason.clone().unwrap_or_default(),
        override_by: r.override_by.clone().unwrap_or_default(),
        override_reason: r.override_reason.clone().unwrap_or_default(),
        procedure: steps.iter().map(step).collect(),
    }
}

fn step(s: &StepRow) -> ProcedureStep {
    ProcedureStep {
        index: s.idx,
        step_id: s.step_id.clone(),
        text: s.text.clone(),
        mandatory: s.mandatory,
        status: s.status.clone(),
        done_at_ms: s.done_at_ms.unwrap_or(0),
        done_by: s.done_by.clone().unwrap_or_default(),
        note: s.note.clone().unwrap_or_default(),
    }
}

pub fn command(r: &CommandRow) -> CommandRecord {
    // Stored as the JSON of a string map (`actions::send_command`).
    let args: BTreeMap<String, String> = serde_json::from_str(&r.args).unwrap_or_default();
    CommandRecord {
        id: r.id,
        estate_id: r.estate_id.clone(),
        gateway_id: r.gateway_id.clone(),
        device_id: r.device_id.clone(),
        device_kind: r.device_kind.clone(),
        action: r.action.clone(),
        args: args.into_iter().collect(),
        operator: r.operator.clone(),
        reason: r.reason.clone().unwrap_or_default(),
        incident_id: r.incident_id.unwrap_or(0),
        state: r.state.clone(),
        detail: r.detail.clone().unwrap_or_default(),
        created_at_ms: r.created_at_ms,
        deadline_ms: r.deadline_ms,
        finished_at_ms: r.finished_at_ms.unwrap_or(0),
    }
}

pub fn invalid(e: Invalid) -> Status {
    if e.forbidden {
        return Status::permission_denied(e.to_string());
    }
    Status::invalid_argument(e.to_string())
}

pub fn store(e: StoreError) -> Status {
    error!(error = %e, "database error while serving the command centre");
    Status::internal(format!("database error: {e}"))
}

fn writer(e: WriterError) -> Status {
    Status::unavailable(format!("cannot record the action now: {e}"))
}

pub fn action(e: ActionError) -> Status {
    match e {
        ActionError::Refused(OpError::NotFound(m)) => Status::not_found(m),
        ActionError::Refused(OpError::Conflict(m)) => Status::failed_precondition(m),
        ActionError::Refused(OpError::Unprocessable(m)) => Status::invalid_argument(m),
        ActionError::Writer(e) => writer(e),
    }
}

pub fn ack(e: AckError) -> Status {
    match e {
        AckError::NotFound(_) => Status::not_found(e.to_string()),
        AckError::AlreadyAcknowledged(_) => Status::failed_precondition(e.to_string()),
        AckError::Writer(e) => writer(e),
    }
}

pub fn command_error(e: CommandError) -> Status {
    match e {
        CommandError::Invalid(e) => invalid(e),
        e @ CommandError::UnknownDevice { .. } => Status::not_found(e.to_string()),
        CommandError::Action(e) => action(e),
        CommandError::Store(e) => store(e),
        e @ CommandError::NotStored(_) => Status::internal(e.to_string()),
    }
}
