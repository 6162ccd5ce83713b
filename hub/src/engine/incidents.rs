//! Owns incident routing (open, join, re-trigger), opening, acknowledgement and the timeline; never sleeps, sends, or writes outside the transaction it is given.

use serde_json::{Value, json};
use tracing::info;

use crate::alarms::book::Chatter;
use crate::alarms::queries::AlarmRow;
use crate::alarms::{Category, Priority};
use crate::escalation::{self, Condition, StepSpec};
use crate::incidents::queries::{IncidentRow, get_incident};
use crate::incidents::{self, IncidentCategory, OpenIncident, Route};
use crate::store::{Conn, StoreError};

use super::{Engine, is_open, q};

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
        let open: Vec<(i64, String, i64)> = q(
            sqlx::query_as(
                "SELECT id, area, last_alarm_at_ms FROM incidents WHERE estate_id = $1 \
                 AND state NOT IN ('closed', 'false_alarm')",
            )
            .bind(&row.estate_id)
            .fetch_all(&mut *conn)
            .await,
            "finding open incidents",
        )?;
        let open: Vec<OpenIncident> = open
            .into_iter()
            .map(|(id, area, last_alarm_at_ms)| OpenIncident {
                id,
                area,
                last_alarm_at_ms,
            })
            .collect();
        let flood = self.book.in_flood();
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
        q(
            sqlx::query("INSERT INTO incident_alarms (incident_id, alarm_id, added_at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(iid)
                .bind(alarm_id)
                .bind(now)
                .execute(&mut *conn)
                .await,
            "linking an alarm to its incident",
        )?;
        q(
            sqlx::query("UPDATE alarms SET incident_id = $1 WHERE id = $2")
                .bind(iid)
                .bind(alarm_id)
                .execute(&mut *conn)
                .await,
            "linking an alarm to its incident",
        )?;
        Ok(())
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
        q(
            sqlx::query("UPDATE incidents SET last_alarm_at_ms = $1, priority = CASE WHEN $2 THEN $3 ELSE priority END WHERE id = $4")
                .bind(now)
                .bind(raise)
                .bind(priority.as_str())
                .bind(iid)
                .execute(&mut *conn)
                .await,
            "adding an alarm to an incident",
        )?;
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
        self.publish("incident", iid, "alarm_joined", json!({"alarm_id": row.id}));
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
        q(
            sqlx::query("UPDATE incidents SET last_alarm_at_ms = $1 WHERE id = $2")
                .bind(now)
                .bind(inc.id)
                .execute(&mut *conn)
                .await,
            "updating an incident",
        )?;
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
        let pending: i64 = q(
            sqlx::query_scalar("SELECT COUNT(*) FROM timers WHERE incident_id = $1 AND kind = 'escalation' AND run = $2 AND fired_at_ms IS NULL")
                .bind(inc.id)
                .bind(inc.escalation_run)
                .fetch_one(&mut *conn)
                .await,
            "counting pending escalation steps",
        )?;
        if pending > 0 && inc.acknowledged_at_ms.is_none() {
            return self
                .timeline(
                    conn,
                    inc.id,
                    now,
                    "alarm",
                    None,
                    &format!(
                        "Alarm #{} re-triggered; escalation run {} continues",
                        row.id, inc.escalation_run
                    ),
                    json!({"alarm_id": row.id}),
                )
                .await;
        }
        let run = inc.escalation_run + 1;
        let n = q(
            sqlx::query("UPDATE timers SET fired_at_ms = $1, outcome = 'superseded' WHERE incident_id = $2 AND kind = 'escalation' AND fired_at_ms IS NULL")
                .bind(now)
                .bind(inc.id)
                .execute(&mut *conn)
                .await,
            "superseding an escalation run",
        )?
        .rows_affected();
        q(
            sqlx::query("UPDATE incidents SET escalation_run = $1, acknowledged_at_ms = NULL, acknowledged_by = NULL WHERE id = $2")
                .bind(run)
                .bind(inc.id)
                .execute(&mut *conn)
                .await,
            "restarting escalation",
        )?;
        let steps: Vec<StepSpec> = serde_json::from_str(&inc.policy).unwrap_or_default();
        self.plan(conn, inc.id, run, &steps, now).await?;
        self.timeline(
            conn,
            inc.id,
            now,
            "escalation",
            None,
            &format!(
                "Alarm #{} re-triggered: escalation restarts (run {run}; {n} pending steps of the old run superseded)",
                row.id
            ),
            json!({"alarm_id": row.id, "run": run}),
        )
        .await?;
        self.publish("incident", inc.id, "escalation_restarted", json!({"run": run}));
        Ok(())
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
        let steps = escalation::select_policy(&self.cfg.policies, category, priority);
        let policy = serde_json::to_string(&steps).unwrap_or_else(|_| "[]".into());
        let iid: i64 = q(
            sqlx::query_scalar(
                "INSERT INTO incidents (estate_id, area, category, priority, title, state, opened_at_ms, opened_by, \
                 last_alarm_at_ms, state_changed_at_ms, policy, flood_group) \
                 VALUES ($1, $2, $3, $4, $5, 'discovered', $6, $7, $6, $6, $8, $9) RETURNING id",
            )
            .bind(estate)
            .bind(area)
            .bind(category.as_str())
            .bind(priority.as_str())
            .bind(title)
            .bind(now)
            .bind(opened_by)
            .bind(&policy)
            .bind(flood_group)
            .fetch_one(&mut *conn)
            .await,
            "opening an incident",
        )?;
        for (i, s) in incidents::select_procedure(&self.cfg.procedures, category)
            .iter()
            .enumerate()
        {
            q(
                sqlx::query("INSERT INTO incident_steps (incident_id, idx, step_id, text, mandatory, status) VALUES ($1, $2, $3, $4, $5, 'open')")
                    .bind(iid)
                    .bind(i as i64 + 1)
                    .bind(&s.id)
                    .bind(&s.text)
                    .bind(s.mandatory)
                    .execute(&mut *conn)
                    .await,
                "writing an incident's procedure",
            )?;
        }
        self.plan(conn, iid, 1, &steps, now).await?;
        Self::timer(conn, "response_target", iid, 0, 0, now + self.cfg.response_target_ms).await?;
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
        self.publish(
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
        let row = Self::alarm(conn, alarm_id).await?;
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
        let row = Self::alarm(conn, alarm_id).await?;
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
        q(
            sqlx::query("UPDATE incidents SET acknowledged_at_ms = $1, acknowledged_by = $2 WHERE id = $3")
                .bind(now)
                .bind(actor)
                .bind(inc.id)
                .execute(&mut *conn)
                .await,
            "acknowledging an incident",
        )?;
        self.stop_steps(
            conn,
            inc.id,
            Some(Condition::NotAcknowledged),
            "stopped: acknowledged",
            now,
        )
        .await?;
        Self::timer(
            conn,
            "progress",
            inc.id,
            0,
            inc.transitions,
            now + self.cfg.progress_limit_ms,
        )
        .await?;
        self.publish("incident", inc.id, "acknowledged", json!({"by": actor}));
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
        let data = (!data.is_null()).then(|| data.to_string());
        q(
            sqlx::query("INSERT INTO incident_timeline (incident_id, at_ms, kind, actor, text, data) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(iid)
                .bind(now)
                .bind(kind)
                .bind(actor)
                .bind(text)
                .bind(data)
                .execute(&mut *conn)
                .await,
            "writing an incident's timeline",
        )?;
        Ok(())
    }
}
