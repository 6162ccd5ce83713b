//! Applies alarm changes: the alarm row and its history, then overlays (chattering, flood,
//! suppression by a disabled fire zone or device maintenance, shelve expiry) before the
//! incident. Never sleeps, sends, or writes outside the transaction it is given.

use serde_json::json;
use tracing::{info, warn};

use crate::alarms::book::{Chatter, Flood};
use crate::alarms::queries::AlarmRow;
use crate::alarms::queries::{self as alarm_q, Cause, Overlay};
use crate::alarms::rules::AlarmChange;
use crate::alarms::{AlarmKey, HistoryChange, rfc3339};
use crate::escalation::Role;
use crate::escalation::queries::TimerRow;
use crate::store::{Conn, StoreError};

use super::{Engine, OpError};

impl Engine {
    /// Persists one alarm change and what follows from it.
    pub async fn apply_change(
        &mut self,
        conn: &mut Conn,
        change: &AlarmChange,
        now: i64,
        cause: &Cause<'_>,
    ) -> Result<(), StoreError> {
        match change {
            AlarmChange::Activate(a) => {
                let (id, what) = alarm_q::activate(conn, a, now, cause).await?;
                // The condition may carry personal data (an intercom's flat): not logged.
                info!(alarm = id, estate = %a.key.estate, device = %a.key.device, priority = a.priority.as_str(), change = what.as_str(), "alarm activated");
                crate::alarms::apply::publish_alarm(&mut self.out, id, what.as_str(), a);
                if matches!(what, HistoryChange::Raised | HistoryChange::Reraised) {
                    self.on_raise(conn, id, now).await?;
                }
            }
            AlarmChange::Value { key, value } => alarm_q::set_value(conn, key, *value).await?,
            AlarmChange::Clear { key, note } => {
                let cause = Cause {
                    note: cause.note.or(Some(note)),
                    ..cause.clone()
                };
                if let Some(id) = alarm_q::clear(conn, key, now, &cause).await? {
                    info!(alarm = id, estate = %key.estate, device = %key.device, "alarm cleared");
                    self.out.push(
                        "alarm",
                        id,
                        "cleared",
                        json!({"estate": key.estate, "device": key.device}),
                    );
                    self.on_alarm_note(conn, id, "cleared", now).await?;
                } else {
                    warn!(device = %key.device, "rule engine cleared an alarm that is not active in the book");
                }
            }
            AlarmChange::Acknowledge { key, operator, .. } => {
                if let Some(id) = alarm_q::acknowledge(conn, key, operator, now, cause).await? {
                    self.out.push(
                        "alarm",
                        id,
                        "acknowledged",
                        json!({"estate": key.estate, "device": key.device, "by": operator}),
                    );
                    self.on_acked(conn, id, operator, now).await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn alarm(conn: &mut Conn, id: i64) -> Result<AlarmRow, StoreError> {
        crate::alarms::queries::get_alarm(conn, id)
            .await?
            .ok_or_else(|| StoreError::Query {
                what: format!("alarm {id} vanished inside its own transaction"),
                source: sqlx::Error::RowNotFound,
            })
    }

    pub(super) async fn alarm_flag(conn: &mut Conn, id: i64, overlay: Overlay, on: bool) -> Result<(), StoreError> {
        alarm_q::set_overlay(conn, id, overlay, on).await
    }

    pub(super) async fn history(
        conn: &mut Conn,
        id: i64,
        change: HistoryChange,
        now: i64,
        actor: Option<&str>,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        let cause = Cause {
            actor,
            note,
            event: None,
        };
        alarm_q::history(conn, id, change, now, &cause).await
    }

    /// A raise or re-raise: chattering, flood, overlays, then the incident.
    pub(super) async fn on_raise(&mut self, conn: &mut Conn, id: i64, now: i64) -> Result<(), StoreError> {
        let row = Self::alarm(conn, id).await?;
        let (chatter, flood) = self.book.activation(&row.key(), now);
        if chatter.started {
            Self::alarm_flag(conn, id, Overlay::Chattering, true).await?;
            Self::history(
                conn,
                id,
                HistoryChange::Chattering,
                now,
                None,
                Some("3 or more activations within the chatter window"),
            )
            .await?;
            self.out
                .push("alarm", id, "chattering", json!({"estate": row.estate_id}));
        }
        if let Some(Flood::Started { alarms_in_window }) = flood {
            self.flood_started(conn, &row.estate_id, alarms_in_window, now).await?;
        }
        // Suppressed by design: a fire alarm in a zone its panel has disabled.
        if let Some(zone) = row
            .condition
            .strip_prefix("fire_alarm:")
            .or(row.condition.strip_prefix("pre_alarm:"))
        {
            let zone_disabled = AlarmKey::new(&row.estate_id, &row.device_id, format!("zone_disabled:{zone}"));
            let disabled = alarm_q::active_id(conn, &zone_disabled).await?;
            if disabled.is_some() != row.suppressed {
                Self::alarm_flag(conn, id, Overlay::Suppressed, disabled.is_some()).await?;
            }
            if disabled.is_some() {
                Self::history(
                    conn,
                    id,
                    HistoryChange::Suppressed,
                    now,
                    None,
                    Some("fire zone disabled at the panel"),
                )
                .await?;
                self.out
                    .push("alarm", id, "suppressed", json!({"estate": row.estate_id}));
                return Ok(());
            }
        }
        // Suppressed by design: the device is in maintenance.
        let maintenance = alarm_q::maintenance_reason(conn, &row.estate_id, &row.device_id, now).await?;
        if let Some(reason) = maintenance {
            if !row.suppressed {
                Self::alarm_flag(conn, id, Overlay::Suppressed, true).await?;
            }
            let note = format!("device in maintenance: {reason}");
            Self::history(conn, id, HistoryChange::Suppressed, now, None, Some(&note)).await?;
            self.out
                .push("alarm", id, "suppressed", json!({"estate": row.estate_id}));
            return Ok(());
        }
        if row.shelved_until_ms.is_some_and(|t| t > now) || row.out_of_service {
            return Ok(());
        }
        self.route_alarm(conn, &row, chatter, now).await
    }

    async fn flood_started(&mut self, conn: &mut Conn, estate: &str, n: usize, now: i64) -> Result<(), StoreError> {
        let id = alarm_q::start_flood(conn, n as i64, now).await?;
        warn!(
            alarms_in_window = n,
            "alarm flood: grouping alarms per estate; only P1 notifies singly"
        );
        self.out.push("flood", id, "started", json!({"alarms_in_window": n}));
        let text = format!(
            "Alarm flood at the command centre: {n} new alarms within the flood window. Alarms are grouped per estate; only P1 notifies singly."
        );
        self.notify
            .to_role(
                conn,
                &mut self.out,
                None,
                estate,
                Role::DutyManager,
                "flood",
                &text,
                now,
            )
            .await?;
        Ok(())
    }

    pub(super) async fn shelve_expired(
        &mut self,
        conn: &mut Conn,
        t: &TimerRow,
        now: i64,
    ) -> Result<String, StoreError> {
        let Some(row) = crate::alarms::queries::get_alarm(conn, t.alarm_id).await? else {
            return Ok("alarm missing".into());
        };
        if row.shelved_until_ms != Some(t.due_at_ms) {
            return Ok("superseded".into());
        }
        alarm_q::unshelve(conn, row.id, now).await?;
        Self::history(
            conn,
            row.id,
            HistoryChange::Unshelved,
            now,
            None,
            Some("shelve expired"),
        )
        .await?;
        self.out.push(
            "alarm",
            row.id,
            "unshelved",
            json!({"estate": row.estate_id, "active": row.active}),
        );
        if row.active && !row.out_of_service && !row.suppressed {
            let row = Self::alarm(conn, row.id).await?;
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
        Ok("expired".into())
    }

    /// `Op::Shelve`: hides an alarm for a while (within the configured maximum), with a reason.
    pub(super) async fn shelve(
        &mut self,
        conn: &mut Conn,
        alarm_id: i64,
        minutes: i64,
        reason: String,
        operator: String,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let Some(row) = crate::alarms::queries::get_alarm(conn, alarm_id).await? else {
            return Ok(Err(OpError::NotFound(format!("alarm {alarm_id} not found"))));
        };
        let until = match crate::alarms::book::shelve_until(minutes, self.cfg.shelve_max_minutes, &reason, now) {
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
        crate::escalation::apply::timer(conn, "shelve_expiry", 0, alarm_id, 0, until).await?;
        self.out.push(
            "alarm",
            alarm_id,
            "shelved",
            json!({"estate": row.estate_id, "until": rfc3339(until), "by": operator}),
        );
        Ok(Ok(alarm_id))
    }

    /// `Op::OutOfService`: takes an alarm out of service or returns it (re-routed if still standing).
    pub(super) async fn out_of_service(
        &mut self,
        conn: &mut Conn,
        alarm_id: i64,
        on: bool,
        reason: String,
        operator: String,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
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
        self.out.push(
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

    /// `Op::Maintenance`: puts a device in maintenance (its alarms suppressed) or takes it out.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn maintenance(
        &mut self,
        conn: &mut Conn,
        estate: String,
        device: String,
        on: bool,
        reason: String,
        operator: String,
        until_ms: Option<i64>,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
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
        self.out.push(
            "device",
            0,
            change,
            json!({"estate": estate, "device": device, "by": operator, "reason": reason}),
        );
        Ok(Ok(0))
    }
}
