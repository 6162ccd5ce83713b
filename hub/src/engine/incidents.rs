//! Applies incidents: routing an alarm (open, join, re-trigger), opening one (by an alarm or
//! an operator), acknowledgement, the timeline. Never sleeps, sends, or writes outside the
//! transaction it is given.

use serde_json::{Value, json};
use tracing::info;

use crate::alarms::book::Chatter;
use crate::alarms::queries::AlarmRow;
use crate::alarms::{Category, Priority};
use crate::escalation::Condition;
use crate::incidents::queries::{self, IncidentRow, get_incident};
use crate::incidents::{self, IncidentCategory, OpenIncident, Route};
use crate::store::{Conn, StoreError};

use crate::incidents::apply::is_open;

use super::{Engine, OpError};

impl Engine {
    pub(super) async fn incident(conn: &mut Conn, id: i64) -> Result<IncidentRow, StoreError> {
        get_incident(conn, id).await?.ok_or_else(|| StoreError::Query {
            what: format!("incident {id} vanished inside its own transaction"),
            source: sqlx::Error::RowNotFound,
        })
    }

    /// Opens, joins or re-triggers the incident of an alarm that is raised (and not masked).
    pub(super) async fn route_alarm(
        &mut self,
        conn: &mut Conn,
        row: &AlarmRow,
        chatter: Chatter,
        now: i64,
    ) -> Result<(), StoreError> {
        let (Ok(priority), Ok(category)) = (row.priority.parse::<Priority>(), row.category.parse::<Category>()) else {
            return Ok(());
        };
        let Some(incident_category) = incidents::category_for_alarm(priority, category, &row.condition) else {
            return Ok(());
        };
        if let Some(iid) = row.incident_id
            && let Some(inc) = get_incident(conn, iid).await?
            && is_open(&inc.state)
        {
            return self.retrigger(conn, &inc, row, chatter, now).await;
        }
        let open: Vec<OpenIncident> = queries::open_incidents(conn, &row.estate_id)
            .await?
            .into_iter()
            .map(|(id, area, last_alarm_at_ms)| OpenIncident {
                id,
                area,
                last_alarm_at_ms,
            })
            .collect();
        let flood = self.alarms.in_flood();
        match incidents::route(&open, &row.area, priority, flood, self.cfg.group_window_ms, now) {
            Route::Join(iid) => self.join(conn, iid, row, priority, flood, now).await,
            Route::Open => {
                let iid = self
                    .open_incident(
                        conn,
                        &row.estate_id,
                        &row.area,
                        incident_category,
                        priority,
                        &row.message,
                        "alarm",
                        flood && priority != Priority::P1,
                        now,
                    )
                    .await?;
                self.link(conn, iid, row.id, now).await?;
                self.timeline(
                    conn,
                    iid,
                    now,
                    "alarm",
                    None,
                    &format!("Opened by alarm #{} ({}, {})", row.id, row.priority, row.message),
                    json!({"alarm_id": row.id}),
                )
                .await
            }
        }
    }

    pub(super) async fn link(&mut self, conn: &mut Conn, iid: i64, alarm_id: i64, now: i64) -> Result<(), StoreError> {
        queries::link_alarm(conn, iid, alarm_id, now).await
    }

    async fn join(
        &mut self,
        conn: &mut Conn,
        iid: i64,
        row: &AlarmRow,
        priority: Priority,
        flood: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        self.link(conn, iid, row.id, now).await?;
        let inc = Self::incident(conn, iid).await?;
        let raise = inc.priority.parse::<Priority>().is_ok_and(|p| priority < p);
        queries::alarm_joined(conn, iid, raise, priority.as_str(), now).await?;
        let how = if flood { " (flood: grouped by estate)" } else { "" };
        self.timeline(
            conn,
            iid,
            now,
            "alarm",
            None,
            &format!("Alarm #{} joined{how}: {} {}", row.id, row.priority, row.message),
            json!({"alarm_id": row.id}),
        )
        .await?;
        if raise {
            self.timeline(
                conn,
                iid,
                now,
                "alarm",
                None,
                &format!("Priority raised {} → {}", inc.priority, priority),
                Value::Null,
            )
            .await?;
        }
        self.out
            .push("incident", iid, "alarm_joined", json!({"alarm_id": row.id}));
        Ok(())
    }

    /// An alarm of an open incident raised again: a new escalation run, unless the alarm is
    /// chattering (it notifies once, not each time) or the current run is still going.
    async fn retrigger(
        &mut self,
        conn: &mut Conn,
        inc: &IncidentRow,
        row: &AlarmRow,
        chatter: Chatter,
        now: i64,
    ) -> Result<(), StoreError> {
        queries::alarm_retriggered(conn, inc.id, now).await?;
        if chatter.chattering || chatter.quick_repeat {
            let why = if chatter.chattering {
                "chattering"
            } else {
                "within the chatter window"
            };
            return self
                .timeline(
                    conn,
                    inc.id,
                    now,
                    "alarm",
                    None,
                    &format!("Alarm #{} re-triggered ({why}): no new escalation", row.id),
                    json!({"alarm_id": row.id}),
                )
                .await;
        }
        self.escalation.retrigger(conn, &mut self.out, inc, row.id, now).await
    }

    /// Opens an incident with its procedure, policy snapshot, escalation run 1 and response target.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn open_incident(
        &mut self,
        conn: &mut Conn,
        estate: &str,
        area: &str,
        category: IncidentCategory,
        priority: Priority,
        title: &str,
        opened_by: &str,
        flood_group: bool,
        now: i64,
    ) -> Result<i64, StoreError> {
        let steps = self.escalation.policy_for(category, priority);
        let policy = serde_json::to_string(&steps).unwrap_or_else(|_| "[]".into());
        let new = queries::NewIncident {
            estate,
            area,
            category: category.as_str(),
            priority: priority.as_str(),
            title,
            opened_by,
            policy: &policy,
            flood_group,
        };
        let iid = queries::insert_incident(conn, &new, now).await?;
        for (i, s) in incidents::select_procedure(&self.cfg.procedures, category)
            .iter()
            .enumerate()
        {
            queries::insert_step(conn, iid, i as i64 + 1, &s.id, &s.text, s.mandatory).await?;
        }
        self.escalation.start(conn, iid, &steps, now).await?;
        info!(
            incident = iid,
            estate,
            category = category.as_str(),
            priority = priority.as_str(),
            "incident opened"
        );
        self.timeline(
            conn,
            iid,
            now,
            "opened",
            Some(opened_by),
            &format!("Incident opened: {} {} at {area}", priority.as_str(), category.as_str()),
            json!({"policy": steps}),
        )
        .await?;
        self.out.push(
            "incident",
            iid,
            "opened",
            json!({"estate": estate, "area": area, "category": category.as_str(), "priority": priority.as_str()}),
        );
        Ok(iid)
    }

    pub(super) async fn on_alarm_note(
        &mut self,
        conn: &mut Conn,
        alarm_id: i64,
        what: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let row = crate::alarms::apply::alarm(conn, alarm_id).await?;
        if let Some(iid) = row.incident_id
            && let Some(inc) = get_incident(conn, iid).await?
            && is_open(&inc.state)
        {
            self.timeline(
                conn,
                iid,
                now,
                "alarm",
                None,
                &format!("Alarm #{alarm_id} {what}"),
                json!({"alarm_id": alarm_id}),
            )
            .await?;
        }
        Ok(())
    }

    pub(super) async fn on_acked(
        &mut self,
        conn: &mut Conn,
        alarm_id: i64,
        operator: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let row = crate::alarms::apply::alarm(conn, alarm_id).await?;
        let Some(iid) = row.incident_id else { return Ok(()) };
        let Some(inc) = get_incident(conn, iid).await? else {
            return Ok(());
        };
        if !is_open(&inc.state) {
            return Ok(());
        }
        self.timeline(
            conn,
            iid,
            now,
            "alarm",
            Some(operator),
            &format!("Alarm #{alarm_id} acknowledged"),
            json!({"alarm_id": alarm_id}),
        )
        .await?;
        if inc.acknowledged_at_ms.is_none() {
            self.acknowledge_incident(conn, &inc, operator, now).await?;
        }
        Ok(())
    }

    pub(super) async fn acknowledge_incident(
        &mut self,
        conn: &mut Conn,
        inc: &IncidentRow,
        actor: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        queries::acknowledge(conn, inc.id, actor, now).await?;
        crate::escalation::apply::stop_steps(
            conn,
            inc.id,
            Some(Condition::NotAcknowledged),
            "stopped: acknowledged",
            now,
        )
        .await?;
        self.escalation
            .watch_progress(conn, inc.id, inc.transitions, now)
            .await?;
        self.out.push("incident", inc.id, "acknowledged", json!({"by": actor}));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn timeline(
        &mut self,
        conn: &mut Conn,
        iid: i64,
        now: i64,
        kind: &str,
        actor: Option<&str>,
        text: &str,
        data: Value,
    ) -> Result<(), StoreError> {
        crate::incidents::apply::timeline(conn, iid, now, kind, actor, text, data).await
    }

    /// `Op::Open`: an incident an operator opens by hand, with an optional first note.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn open_by_operator(
        &mut self,
        conn: &mut Conn,
        estate: String,
        area: String,
        category: IncidentCategory,
        priority: Priority,
        title: String,
        operator: String,
        note: Option<String>,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let iid = self
            .open_incident(conn, &estate, &area, category, priority, &title, &operator, false, now)
            .await?;
        if let Some(note) = note {
            self.timeline(conn, iid, now, "note", Some(&operator), &note, Value::Null)
                .await?;
        }
        Ok(Ok(iid))
    }
}
