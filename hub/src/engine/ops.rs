//! Operator actions: [`Op`], what an operator may ask of the writer, dispatched to the
//! domain's shell (and on through `flow.rs` where another domain follows). `Ok(Err(_))` is
//! a refusal ([`OpError`]): nothing written.

use serde_json::Value;

use crate::alarms::Priority;
use crate::alarms::apply::{self as alarms, NOT_CHATTERING};
use crate::alarms::rules::RuleState;
use crate::audit::Actor;
use crate::audit::apply as audit;
use crate::escalation::apply as escalation;
use crate::incidents::apply::{self as incidents, Opening};
use crate::incidents::{IncidentCategory, IncidentState};
use crate::store::{Conn, StoreError};

use super::{Engine, OpError};

/// An operator action carried out by the writer.
#[derive(Debug, Clone)]
pub enum Op {
    Shelve {
        alarm_id: i64,
        minutes: i64,
        reason: String,
        operator: String,
    },
    OutOfService {
        alarm_id: i64,
        on: bool,
        reason: String,
        operator: String,
    },
    /// Puts a device in maintenance (its alarms suppressed by design) or takes it out.
    Maintenance {
        estate: String,
        device: String,
        on: bool,
        reason: String,
        operator: String,
        until_ms: Option<i64>,
    },
    Open {
        estate: String,
        area: String,
        category: IncidentCategory,
        priority: Priority,
        title: String,
        operator: String,
        note: Option<String>,
    },
    Transition {
        incident_id: i64,
        to: IncidentState,
        actor: String,
        note: Option<String>,
        reason: Option<String>,
        override_by: Option<String>,
    },
    Step {
        incident_id: i64,
        step: String,
        actor: String,
        note: Option<String>,
        skipped: bool,
    },
    /// A rota action (check-in/out, absence, accepting a proposal, assignments, plans).
    Rota(crate::rota::RotaOp),
    /// Records a command to a device (sent by the caller only after the commit); answers
    /// its id. Refused if its incident does not exist.
    Command(crate::commands::NewCommand),
    /// The command could not be handed to its gateway (no stream): `gateway_offline`.
    CommandUndelivered { id: i64, detail: String },
    /// The recipient of a notification answers it (an answer link, an SMS reply): recorded
    /// as them, it acknowledges the incident; answers the incident's id. Refused when the
    /// notification does not exist or is about no incident (not found), was answered already
    /// (conflict), or its link has expired (unprocessable).
    Answer {
        notification_id: i64,
        answer: crate::notify::answer::Answer,
        via: crate::notify::answer::AnswerVia,
    },
}

impl Engine {
    /// Carries out an operator action by `actor` and, if it succeeded, appends its audit row
    /// in the same transaction (`audit.rs`). `Ok(Err(_))` is a refusal (nothing written).
    pub async fn op(
        &mut self,
        conn: &mut Conn,
        rules: &mut RuleState,
        actor: &Actor,
        op: Op,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let pending = super::audit::pending(actor, &op);
        let result = self.dispatch(conn, rules, op, now).await?;
        if let (Ok(id), Some(p)) = (&result, pending) {
            audit::record(conn, actor, &p.entry(*id), now).await?;
        }
        Ok(result)
    }

    async fn dispatch(
        &mut self,
        conn: &mut Conn,
        rules: &mut RuleState,
        op: Op,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        match op {
            Op::Shelve {
                alarm_id,
                minutes,
                reason,
                operator,
            } => {
                let until = self
                    .alarms
                    .shelve(conn, &mut self.out, alarm_id, minutes, &reason, &operator, now)
                    .await?;
                match until {
                    Ok(until) => {
                        escalation::timer(conn, "shelve_expiry", 0, alarm_id, 0, until).await?;
                        Ok(Ok(alarm_id))
                    }
                    Err(e) => Ok(Err(e)),
                }
            }
            Op::OutOfService {
                alarm_id,
                on,
                reason,
                operator,
            } => {
                let back = alarms::out_of_service(conn, &mut self.out, alarm_id, on, &reason, &operator, now).await?;
                match back {
                    Ok(Some(row)) => {
                        self.route_alarm(conn, &row, NOT_CHATTERING, now).await?;
                        Ok(Ok(alarm_id))
                    }
                    Ok(None) => Ok(Ok(alarm_id)),
                    Err(e) => Ok(Err(e)),
                }
            }
            Op::Maintenance {
                estate,
                device,
                on,
                reason,
                operator,
                until_ms,
            } => {
                alarms::maintenance(
                    conn,
                    &mut self.out,
                    &estate,
                    &device,
                    on,
                    &reason,
                    &operator,
                    until_ms,
                    now,
                )
                .await
            }
            Op::Open {
                estate,
                area,
                category,
                priority,
                title,
                operator,
                note,
            } => {
                let opening = Opening {
                    estate: &estate,
                    area: &area,
                    category,
                    priority,
                    title: &title,
                    opened_by: &operator,
                    flood_group: false,
                };
                let iid = self.open_incident(conn, &opening, now).await?;
                if let Some(note) = note {
                    incidents::timeline(conn, iid, now, "note", Some(&operator), &note, Value::Null).await?;
                }
                Ok(Ok(iid))
            }
            Op::Transition {
                incident_id,
                to,
                actor,
                note,
                reason,
                override_by,
            } => {
                self.transition(conn, rules, incident_id, to, &actor, note, reason, override_by, now)
                    .await
            }
            Op::Step {
                incident_id,
                step,
                actor,
                note,
                skipped,
            } => {
                self.step(conn, incident_id, &step, &actor, note.as_deref(), skipped, now)
                    .await
            }
            Op::Rota(op) => self.rota_op(conn, rules, op, now).await,
            Op::Command(c) => self.record_command(conn, c, now).await,
            Op::CommandUndelivered { id, detail } => self.command_undelivered(conn, id, &detail, now).await,
            Op::Answer {
                notification_id,
                answer,
                via,
            } => self.answer(conn, notification_id, answer, via, now).await,
        }
    }
}
