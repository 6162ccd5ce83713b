//! Owns operator actions (`Op`, refused with `OpError`); never sleeps, sends, or writes outside the transaction it is given.

use serde_json::{Value, json};

use crate::alarms::book::Chatter;
use crate::alarms::rules::RuleState;
use crate::alarms::{HistoryChange, rfc3339};
use crate::store::{Conn, StoreError};

use super::{Engine, Op, OpError};
use crate::alarms::queries::{self as alarm_q, Overlay};

impl Engine {
    /// Carries out an operator action. `Ok(Err(_))` is a refusal (nothing written).
    pub async fn op(
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
                let Some(row) = crate::alarms::queries::get_alarm(conn, alarm_id).await? else {
                    return Ok(Err(OpError::NotFound(format!("alarm {alarm_id} not found"))));
                };
                let until = match crate::alarms::book::shelve_until(minutes, self.cfg.shelve_max_minutes, &reason, now)
                {
                    Ok(u) => u,
                    Err(e) => return Ok(Err(OpError::Unprocessable(e))),
                };
                alarm_q::shelve(conn, alarm_id, until, &operator, &reason, now).await?;
                Self::history(
                    conn,
                    alarm_id,
                    HistoryChange::Shelved,
                    now,
                    Some(&operator),
                    Some(&format!("{minutes} min: {reason}")),
                )
                .await?;
                Self::timer(conn, "shelve_expiry", 0, alarm_id, 0, until).await?;
                self.publish(
                    "alarm",
                    alarm_id,
                    "shelved",
                    json!({"estate": row.estate_id, "until": rfc3339(until), "by": operator}),
                );
                Ok(Ok(alarm_id))
            }
            Op::OutOfService {
                alarm_id,
                on,
                reason,
                operator,
            } => {
                let Some(row) = crate::alarms::queries::get_alarm(conn, alarm_id).await? else {
                    return Ok(Err(OpError::NotFound(format!("alarm {alarm_id} not found"))));
                };
                if row.out_of_service == on {
                    return Ok(Err(OpError::Conflict(format!(
                        "alarm {alarm_id} is already {}",
                        if on { "out of service" } else { "in service" }
                    ))));
                }
                if reason.trim().is_empty() {
                    return Ok(Err(OpError::Unprocessable("a reason is required".into())));
                }
                Self::alarm_flag(conn, alarm_id, Overlay::OutOfService, on).await?;
                let change = if on {
                    HistoryChange::OutOfService
                } else {
                    HistoryChange::ReturnedToService
                };
                Self::history(conn, alarm_id, change, now, Some(&operator), Some(&reason)).await?;
                self.publish(
                    "alarm",
                    alarm_id,
                    change.as_str(),
                    json!({"estate": row.estate_id, "by": operator}),
                );
                if !on && row.active && !row.acknowledged {
                    let row = Self::alarm(conn, alarm_id).await?;
                    self.route_alarm(
                        conn,
                        &row,
                        Chatter {
                            chattering: false,
                            started: false,
                            quick_repeat: false,
                        },
                        now,
                    )
                    .await?;
                }
                Ok(Ok(alarm_id))
            }
            Op::Maintenance {
                estate,
                device,
                on,
                reason,
                operator,
                until_ms,
            } => {
                if on && reason.trim().is_empty() {
                    return Ok(Err(OpError::Unprocessable("a reason is required".into())));
                }
                if until_ms.is_some_and(|u| u <= now) {
                    return Ok(Err(OpError::Unprocessable(
                        "the maintenance must end in the future".into(),
                    )));
                }
                let changed = if on {
                    alarm_q::start_maintenance(conn, &estate, &device, &reason, &operator, until_ms, now).await?
                } else {
                    // Only a maintenance still running can be ended; an expired row goes too.
                    let until = alarm_q::end_maintenance(conn, &estate, &device).await?;
                    u64::from(until.is_some_and(|u| u.is_none_or(|u| u > now)))
                };
                if changed == 0 {
                    return Ok(Err(OpError::Conflict(format!(
                        "device {device} at {estate} is not in maintenance"
                    ))));
                }
                let change = if on { "maintenance_started" } else { "maintenance_ended" };
                self.publish(
                    "device",
                    0,
                    change,
                    json!({"estate": estate, "device": device, "by": operator, "reason": reason}),
                );
                Ok(Ok(0))
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
                let iid = self
                    .open_incident(conn, &estate, &area, category, priority, &title, &operator, false, now)
                    .await?;
                if let Some(note) = note {
                    self.timeline(conn, iid, now, "note", Some(&operator), &note, Value::Null)
                        .await?;
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
            } => self.step(conn, incident_id, &step, &actor, note, skipped, now).await,
            Op::Rota(op) => {
                let Some(r) = self.rota.as_mut() else {
                    return Ok(Err(OpError::NotFound("no rota is configured ([[posts]])".into())));
                };
                let result = r.op(conn, op, now).await?;
                self.rota_effects(conn, rules, now).await?;
                Ok(result)
            }
        }
    }
}
