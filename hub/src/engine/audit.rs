//! What each operator action leaves in the audit log: [`Op`] → action, target and detail.
//! The row is written by [`Engine::op`](super::Engine::op) after the action succeeded, in
//! its transaction; a refused action (`OpError`) leaves none.
//!
//! `named` in a detail is the name the request body gave, kept only when it differs from
//! the actor (who acted is always the authenticated caller).

use serde_json::{Map, Value, json};

use crate::audit::{Actor, AuditEntry};
use crate::rota::RotaOp;

use super::Op;

/// An entry whose target may be the id the action answers (a new incident).
pub(super) struct Pending {
    action: &'static str,
    target: Target,
    detail: Value,
    /// Also put the answered id into the detail under this key (a command's id).
    answer_key: Option<&'static str>,
}

enum Target {
    Fixed(String),
    /// `prefix:<answered id>`.
    Answer(&'static str),
}

impl Pending {
    pub(super) fn entry(mut self, answer: i64) -> AuditEntry {
        if let (Some(key), Value::Object(m)) = (self.answer_key, &mut self.detail) {
            m.insert(key.into(), answer.into());
        }
        let target = match self.target {
            Target::Fixed(t) => t,
            Target::Answer(prefix) => format!("{prefix}:{answer}"),
        };
        AuditEntry::new(self.action, target, self.detail)
    }
}

/// Drops null fields, and `named` when it is the actor.
fn detail(actor: &Actor, v: Value) -> Value {
    let Value::Object(m) = v else { return v };
    let m: Map<String, Value> = m
        .into_iter()
        .filter(|(k, v)| {
            let the_actor = k == "named" && v.as_str() == Some(actor.user.as_str());
            !v.is_null() && !the_actor
        })
        .collect();
    Value::Object(m)
}

fn fixed(action: &'static str, target: String, detail: Value) -> Option<Pending> {
    Some(Pending {
        action,
        target: Target::Fixed(target),
        detail,
        answer_key: None,
    })
}

/// The audit entry of an acknowledgement (a request of its own, not an [`Op`]).
pub fn ack_audit(alarm_id: i64, actor: &Actor, named: &str, note: Option<&str>) -> AuditEntry {
    AuditEntry::new(
        "alarm.acknowledge",
        format!("alarm:{alarm_id}"),
        detail(actor, json!({"named": named, "note": note})),
    )
}

/// What `op` leaves in the log once it succeeds; `None` for the hub's own follow-ups (a
/// bulk action's slices — the action is one row at its end — and an undeliverable command).
pub(super) fn pending(actor: &Actor, op: &Op) -> Option<Pending> {
    let d = |v: Value| detail(actor, v);
    match op {
        Op::Shelve {
            alarm_id,
            minutes,
            reason,
            operator,
        } => fixed(
            "alarm.shelve",
            format!("alarm:{alarm_id}"),
            d(json!({"minutes": minutes, "reason": reason, "named": operator})),
        ),
        Op::OutOfService {
            alarm_id,
            on,
            reason,
            operator,
        } => fixed(
            "alarm.out_of_service",
            format!("alarm:{alarm_id}"),
            d(json!({"on": on, "reason": reason, "named": operator})),
        ),
        Op::Maintenance {
            estate,
            device,
            on,
            reason,
            operator,
            until_ms,
        } => fixed(
            "device.maintenance",
            format!("device:{estate}/{device}"),
            d(json!({"on": on, "reason": reason, "until_ms": until_ms, "named": operator})),
        ),
        Op::Open {
            estate,
            area,
            category,
            priority,
            title,
            operator,
            note,
        } => Some(Pending {
            action: "incident.open",
            target: Target::Answer("incident"),
            detail: d(json!({"estate": estate, "area": area, "category": category.as_str(),
                             "priority": priority.as_str(), "title": title, "note": note, "named": operator})),
            answer_key: None,
        }),
        Op::Transition {
            incident_id,
            to,
            actor: named,
            note,
            reason,
            override_by,
        } => fixed(
            "incident.transition",
            format!("incident:{incident_id}"),
            d(
                json!({"to": to.as_str(), "note": note, "reason": reason, "override_by": override_by,
                     "named": named}),
            ),
        ),
        Op::Step {
            incident_id,
            step,
            actor: named,
            note,
            skipped,
        } => fixed(
            "incident.step",
            format!("incident:{incident_id}"),
            d(json!({"step": step, "skipped": skipped, "note": note, "named": named})),
        ),
        Op::Command(c) => Some(Pending {
            action: "command.send",
            target: Target::Fixed(format!("device:{}/{}", c.estate_id, c.device_id)),
            detail: d(json!({"action": c.action,
                             "args": serde_json::from_str::<Value>(&c.args).unwrap_or(Value::Null),
                             "reason": c.reason, "incident": c.incident_id, "gateway": c.gateway_id,
                             "named": c.operator})),
            answer_key: Some("command"),
        }),
        Op::CommandUndelivered { .. } => None,
        Op::Answer {
            notification_id,
            answer,
            via,
        } => Some(Pending {
            action: "notification.answer",
            target: Target::Fixed(format!("notification:{notification_id}")),
            detail: json!({"answer": answer.as_str(), "via": via.as_str()}),
            answer_key: Some("incident"),
        }),
        Op::Rota(r) => rota(actor, r),
    }
}

fn rota(actor: &Actor, op: &RotaOp) -> Option<Pending> {
    let d = |v: Value| detail(actor, v);
    match op {
        RotaOp::CheckIn {
            guard,
            post,
            actor: named,
        } => fixed(
            "rota.check_in",
            format!("guard:{guard}"),
            d(json!({"post": post, "named": named})),
        ),
        RotaOp::CheckOut { guard, actor: named } => {
            fixed("rota.check_out", format!("guard:{guard}"), d(json!({"named": named})))
        }
        RotaOp::Absence {
            guard,
            from_ms,
            until_ms,
            reason,
            actor: named,
        } => fixed(
            "rota.absence",
            format!("guard:{guard}"),
            d(json!({"from_ms": from_ms, "until_ms": until_ms, "reason": reason, "named": named})),
        ),
        RotaOp::Accept { proposal, actor: named } => fixed(
            "rota.proposal_accept",
            format!("proposal:{proposal}"),
            d(json!({"named": named})),
        ),
        RotaOp::Assign {
            slot,
            guard,
            actor: named,
        } => fixed(
            "rota.assign",
            format!("slot:{slot}"),
            d(json!({"guard": guard, "named": named})),
        ),
        RotaOp::Unassign { id, actor: named } => {
            fixed("rota.unassign", format!("assignment:{id}"), d(json!({"named": named})))
        }
        RotaOp::ApplySlice { .. } => None,
        RotaOp::BulkDone {
            source,
            actor: named,
            detail: summary,
        } => Some(Pending {
            action: if *source == "plan" { "rota.plan" } else { "rota.import" },
            target: Target::Fixed("rota".into()),
            detail: d(json!({"summary": summary, "named": named})),
            answer_key: None,
        }),
        RotaOp::HandoverAck { id, guard } => fixed(
            "rota.handover_ack",
            format!("handover:{id}"),
            d(json!({"guard": guard})),
        ),
        RotaOp::Note { post, text, author } => fixed(
            "rota.note",
            format!("post:{post}"),
            d(json!({"text": text, "named": author})),
        ),
        RotaOp::PatrolRecord {
            tour,
            findings,
            actions,
            by,
        } => fixed(
            "rota.patrol_record",
            format!("tour:{tour}"),
            d(json!({"findings": findings, "actions": actions, "named": by})),
        ),
    }
}
