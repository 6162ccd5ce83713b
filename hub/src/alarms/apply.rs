//! The alarm shell: applies the rule engine's alarm changes and the alarm book's decisions
//! (chattering, flood, suppression by a disabled fire zone or device maintenance, shelving,
//! out of service) inside the writer's transaction, through [`super::queries`]. What follows
//! in another domain (an incident routed or noted, a notification, a timer) it returns to
//! the engine, which calls that domain next.
//!
//! Invariant: nothing here sleeps, sends, or writes outside the transaction it is given.

use serde_json::json;
use tracing::{info, warn};

use crate::error::OpError;
use crate::store::{Conn, Pool, StoreError};
use crate::stream::Published;

use super::book::{BookState, Chatter, Flood};
use super::queries::{self as alarm_q, AlarmRow, Cause, Overlay};
use super::rules::{Activation, ActiveAlarm, AlarmChange, RuleState};
use super::{AlarmKey, HistoryChange, rfc3339};

/// What follows an alarm change in another domain; the engine carries it on.
#[derive(Debug)]
pub enum Followup {
    /// Raised or re-raised: through the book ([`AlarmShell::raised`]) to its incident.
    Raised(i64),
    /// Cleared: noted on its incident's timeline.
    Cleared(i64),
    /// Acknowledged: noted on its incident, which is acknowledged with it.
    Acknowledged { alarm_id: i64, operator: String },
}

/// A raise as the book saw it: the alarm, its chattering, and whether it started a flood
/// (the duty manager is notified of it before the alarm goes on).
#[derive(Debug)]
pub struct Raise {
    pub row: AlarmRow,
    pub chatter: Chatter,
    pub flood_started: Option<usize>,
}

/// The alarm shell: the alarm book (what it remembers of recent raises, the flood) and the
/// shelving limit it reads.
#[derive(Debug)]
pub struct AlarmShell {
    pub book: BookState,
    shelve_max_minutes: i64,
}

/// A chattering state that routes an alarm as a fresh raise (unshelved, back in service).
pub const NOT_CHATTERING: Chatter = Chatter {
    chattering: false,
    started: false,
    quick_repeat: false,
};

impl AlarmShell {
    pub fn new(book: BookState, shelve_max_minutes: i64) -> Self {
        AlarmShell {
            book,
            shelve_max_minutes,
        }
    }

    /// Reloads what the book remembers (recent raises, an open flood) from the database.
    pub async fn restore(&mut self, pool: &Pool, now: i64) -> Result<(), StoreError> {
        let since = now - self.book.t.flood_window_ms.max(self.book.t.chatter_window_ms);
        let rows = alarm_q::raises_since(pool, since).await?;
        let open = alarm_q::open_flood(pool).await?;
        let mut book = BookState::new(self.book.t);
        book.restore(
            rows.into_iter().map(|(e, d, c, at)| (AlarmKey::new(e, d, c), at)),
            open.is_some(),
        );
        self.book = book;
        Ok(())
    }

    pub fn in_flood(&self) -> bool {
        self.book.in_flood()
    }

    /// Persists one alarm change from the rule engine; returns what follows elsewhere.
    pub async fn apply_change(
        &mut self,
        conn: &mut Conn,
        out: &mut Published,
        change: &AlarmChange,
        now: i64,
        cause: &Cause<'_>,
    ) -> Result<Option<Followup>, StoreError> {
        Ok(match change {
            AlarmChange::Activate(a) => {
                let (id, what) = alarm_q::activate(conn, a, now, cause).await?;
                // The condition may carry personal data (an intercom's flat): not logged.
                info!(alarm = id, estate = %a.key.estate, device = %a.key.device, priority = a.priority.as_str(), change = what.as_str(), "alarm activated");
                publish_alarm(out, id, what.as_str(), a);
                raised(id, what)
            }
            AlarmChange::Value { key, value } => {
                alarm_q::set_value(conn, key, *value).await?;
                None
            }
            AlarmChange::Clear { key, note } => {
                let cause = Cause {
                    note: cause.note.or(Some(note)),
                    ..cause.clone()
                };
                if let Some(id) = alarm_q::clear(conn, key, now, &cause).await? {
                    info!(alarm = id, estate = %key.estate, device = %key.device, "alarm cleared");
                    publish_cleared(out, id, key);
                    Some(Followup::Cleared(id))
                } else {
                    warn!(device = %key.device, "rule engine cleared an alarm that is not active in the book");
                    None
                }
            }
            AlarmChange::Acknowledge { key, operator, .. } => {
                match alarm_q::acknowledge(conn, key, operator, now, cause).await? {
                    Some(id) => {
                        out.push(
                            "alarm",
                            id,
                            "acknowledged",
                            json!({"estate": key.estate, "device": key.device, "by": operator}),
                        );
                        Some(Followup::Acknowledged {
                            alarm_id: id,
                            operator: operator.clone(),
                        })
                    }
                    None => None,
                }
            }
        })
    }

    /// A raise or re-raise through the book: chattering (overlay and history) and a flood
    /// starting. Suppression comes next ([`held_back`]), once the flood is notified.
    pub async fn raised(
        &mut self,
        conn: &mut Conn,
        out: &mut Published,
        id: i64,
        now: i64,
    ) -> Result<Raise, StoreError> {
        let row = alarm(conn, id).await?;
        let (chatter, flood) = self.book.activation(&row.key(), now);
        if chatter.started {
            alarm_q::set_overlay(conn, id, Overlay::Chattering, true).await?;
            history(
                conn,
                id,
                HistoryChange::Chattering,
                now,
                None,
                Some("3 or more activations within the chatter window"),
            )
            .await?;
            out.push("alarm", id, "chattering", json!({"estate": row.estate_id}));
        }
        let flood_started = match flood {
            Some(Flood::Started { alarms_in_window: n }) => {
                let fid = alarm_q::start_flood(conn, n as i64, now).await?;
                warn!(
                    alarms_in_window = n,
                    "alarm flood: grouping alarms per estate; only P1 notifies singly"
                );
                out.push("flood", fid, "started", json!({"alarms_in_window": n}));
                Some(n)
            }
            _ => None,
        };
        Ok(Raise {
            row,
            chatter,
            flood_started,
        })
    }

    /// Floods and chattering that have ended by `now`.
    pub async fn calm(&mut self, conn: &mut Conn, out: &mut Published, now: i64) -> Result<(), StoreError> {
        let (flood, calm) = self.book.tick(now);
        if flood == Some(Flood::Ended) {
            let id = alarm_q::end_flood(conn, now).await?;
            info!("alarm flood ended");
            out.push("flood", id.unwrap_or(0), "ended", serde_json::Value::Null);
        }
        for key in calm {
            let id = alarm_q::end_chattering(conn, &key).await?;
            if let Some(id) = id {
                history(conn, id, HistoryChange::ChatteringEnded, now, None, None).await?;
                out.push("alarm", id, "chattering_ended", serde_json::Value::Null);
            }
        }
        Ok(())
    }

    /// `Op::Shelve`: hides an alarm for a while (within the configured maximum), with a
    /// reason. Returns when the shelve ends (the engine sets its `shelve_expiry` timer).
    #[allow(clippy::too_many_arguments)]
    pub async fn shelve(
        &self,
        conn: &mut Conn,
        out: &mut Published,
        alarm_id: i64,
        minutes: i64,
        reason: &str,
        operator: &str,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let Some(row) = alarm_q::get_alarm(conn, alarm_id).await? else {
            return Ok(Err(OpError::NotFound(format!("alarm {alarm_id} not found"))));
        };
        let until = match super::book::shelve_until(minutes, self.shelve_max_minutes, reason, now) {
            Ok(u) => u,
            Err(e) => return Ok(Err(OpError::Unprocessable(e))),
        };
        alarm_q::shelve(conn, alarm_id, until, operator, reason, now).await?;
        history(
            conn,
            alarm_id,
            HistoryChange::Shelved,
            now,
            Some(operator),
            Some(&format!("{minutes} min: {reason}")),
        )
        .await?;
        out.push(
            "alarm",
            alarm_id,
            "shelved",
            json!({"estate": row.estate_id, "until": rfc3339(until), "by": operator}),
        );
        Ok(Ok(until))
    }
}

/// The rota raises an alarm (a post uncovered, a guard late): activated and published. A
/// latched one is remembered by the rule engine, so its acknowledgement clears it, as for a
/// forced door.
pub async fn rota_raise(
    conn: &mut Conn,
    out: &mut Published,
    rules: &mut RuleState,
    a: &Activation,
    now: i64,
) -> Result<Option<Followup>, StoreError> {
    let cause = Cause {
        note: Some("rota"),
        ..Default::default()
    };
    let (id, what) = alarm_q::activate(conn, a, now, &cause).await?;
    if a.latched {
        rules.restore_active(
            a.key.clone(),
            ActiveAlarm {
                latched: true,
                value: None,
            },
        );
    }
    info!(alarm = id, estate = %a.key.estate, condition = %crate::privacy::log_condition(&a.key.condition), "rota alarm");
    publish_alarm(out, id, what.as_str(), a);
    Ok(raised(id, what))
}

/// The rota clears its alarm, saying why.
pub async fn rota_clear(
    conn: &mut Conn,
    out: &mut Published,
    key: &AlarmKey,
    note: &str,
    now: i64,
) -> Result<Option<Followup>, StoreError> {
    let cause = Cause {
        note: Some(note),
        ..Default::default()
    };
    let Some(id) = alarm_q::clear(conn, key, now, &cause).await? else {
        return Ok(None);
    };
    publish_cleared(out, id, key);
    Ok(Some(Followup::Cleared(id)))
}

/// `Some(id)` when an activation raised or re-raised the alarm (what goes on to the book).
pub fn raised(id: i64, what: HistoryChange) -> Option<Followup> {
    matches!(what, HistoryChange::Raised | HistoryChange::Reraised).then_some(Followup::Raised(id))
}

/// The notification text of a flood that started with `n` alarms in the window.
pub fn flood_notice(n: usize) -> String {
    format!(
        "Alarm flood at the command centre: {n} new alarms within the flood window. Alarms are grouped per estate; only P1 notifies singly."
    )
}

/// An activation on the live stream.
pub fn publish_alarm(out: &mut Published, id: i64, change: &str, a: &Activation) {
    out.push(
        "alarm",
        id,
        change,
        json!({"estate": a.key.estate, "device": a.key.device, "area": a.area,
               "priority": a.priority.as_str(), "category": a.category.as_str(), "message": a.message}),
    );
}

/// A clear on the live stream.
pub fn publish_cleared(out: &mut Published, id: i64, key: &AlarmKey) {
    out.push(
        "alarm",
        id,
        "cleared",
        json!({"estate": key.estate, "device": key.device}),
    );
}

/// An alarm row that must exist (it was written in this transaction).
pub async fn alarm(conn: &mut Conn, id: i64) -> Result<AlarmRow, StoreError> {
    alarm_q::get_alarm(conn, id).await?.ok_or_else(|| StoreError::Query {
        what: format!("alarm {id} vanished inside its own transaction"),
        source: sqlx::Error::RowNotFound,
    })
}

async fn history(
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

/// Whether a raised alarm stays off incidents: suppressed by design (a fire alarm in a zone
/// its panel has disabled, a device in maintenance; noted and published), shelved, or out
/// of service.
pub async fn held_back(conn: &mut Conn, out: &mut Published, row: &AlarmRow, now: i64) -> Result<bool, StoreError> {
    let id = row.id;
    // Suppressed by design: a fire alarm in a zone its panel has disabled.
    if let Some(zone) = row
        .condition
        .strip_prefix("fire_alarm:")
        .or(row.condition.strip_prefix("pre_alarm:"))
    {
        let zone_disabled = AlarmKey::new(&row.estate_id, &row.device_id, format!("zone_disabled:{zone}"));
        let disabled = alarm_q::active_id(conn, &zone_disabled).await?;
        if disabled.is_some() != row.suppressed {
            alarm_q::set_overlay(conn, id, Overlay::Suppressed, disabled.is_some()).await?;
        }
        if disabled.is_some() {
            history(
                conn,
                id,
                HistoryChange::Suppressed,
                now,
                None,
                Some("fire zone disabled at the panel"),
            )
            .await?;
            out.push("alarm", id, "suppressed", json!({"estate": row.estate_id}));
            return Ok(true);
        }
    }
    // Suppressed by design: the device is in maintenance.
    let maintenance = alarm_q::maintenance_reason(conn, &row.estate_id, &row.device_id, now).await?;
    if let Some(reason) = maintenance {
        if !row.suppressed {
            alarm_q::set_overlay(conn, id, Overlay::Suppressed, true).await?;
        }
        let note = format!("device in maintenance: {reason}");
        history(conn, id, HistoryChange::Suppressed, now, None, Some(&note)).await?;
        out.push("alarm", id, "suppressed", json!({"estate": row.estate_id}));
        return Ok(true);
    }
    Ok(row.shelved_until_ms.is_some_and(|t| t > now) || row.out_of_service)
}

/// A claimed `shelve_expiry` timer: the alarm comes back. Returns the timer's outcome and,
/// when the alarm still stands, its row to route to an incident again.
pub async fn shelve_expired(
    conn: &mut Conn,
    out: &mut Published,
    alarm_id: i64,
    due_at_ms: i64,
    now: i64,
) -> Result<(String, Option<AlarmRow>), StoreError> {
    let Some(row) = alarm_q::get_alarm(conn, alarm_id).await? else {
        return Ok(("alarm missing".into(), None));
    };
    if row.shelved_until_ms != Some(due_at_ms) {
        return Ok(("superseded".into(), None));
    }
    alarm_q::unshelve(conn, row.id, now).await?;
    history(
        conn,
        row.id,
        HistoryChange::Unshelved,
        now,
        None,
        Some("shelve expired"),
    )
    .await?;
    out.push(
        "alarm",
        row.id,
        "unshelved",
        json!({"estate": row.estate_id, "active": row.active}),
    );
    let again = if row.active && !row.out_of_service && !row.suppressed {
        Some(alarm(conn, row.id).await?)
    } else {
        None
    };
    Ok(("expired".into(), again))
}

/// `Op::OutOfService`: takes an alarm out of service or returns it. Returns its row when it
/// comes back still standing and unacknowledged (the engine routes it again).
#[allow(clippy::too_many_arguments)]
pub async fn out_of_service(
    conn: &mut Conn,
    out: &mut Published,
    alarm_id: i64,
    on: bool,
    reason: &str,
    operator: &str,
    now: i64,
) -> Result<Result<Option<AlarmRow>, OpError>, StoreError> {
    let Some(row) = alarm_q::get_alarm(conn, alarm_id).await? else {
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
    alarm_q::set_overlay(conn, alarm_id, Overlay::OutOfService, on).await?;
    let change = if on {
        HistoryChange::OutOfService
    } else {
        HistoryChange::ReturnedToService
    };
    history(conn, alarm_id, change, now, Some(operator), Some(reason)).await?;
    out.push(
        "alarm",
        alarm_id,
        change.as_str(),
        json!({"estate": row.estate_id, "by": operator}),
    );
    if !on && row.active && !row.acknowledged {
        return Ok(Ok(Some(alarm(conn, alarm_id).await?)));
    }
    Ok(Ok(None))
}

/// `Op::Maintenance`: puts a device in maintenance (its alarms suppressed) or takes it out.
#[allow(clippy::too_many_arguments)]
pub async fn maintenance(
    conn: &mut Conn,
    out: &mut Published,
    estate: &str,
    device: &str,
    on: bool,
    reason: &str,
    operator: &str,
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
        alarm_q::start_maintenance(conn, estate, device, reason, operator, until_ms, now).await?
    } else {
        // Only a maintenance still running can be ended; an expired row goes too.
        let until = alarm_q::end_maintenance(conn, estate, device).await?;
        u64::from(until.is_some_and(|u| u.is_none_or(|u| u > now)))
    };
    if changed == 0 {
        return Ok(Err(OpError::Conflict(format!(
            "device {device} at {estate} is not in maintenance"
        ))));
    }
    let change = if on { "maintenance_started" } else { "maintenance_ended" };
    out.push(
        "device",
        0,
        change,
        json!({"estate": estate, "device": device, "by": operator, "reason": reason}),
    );
    Ok(Ok(0))
}
