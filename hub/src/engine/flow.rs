//! What follows what between the domains: the one place that says which shell is called
//! next. A raise goes through the alarm book (chattering, a flood and its notice,
//! suppression) to its incident (re-triggered, joined or opened), whose escalation is
//! planned; a clear or an acknowledgement is noted on the incident, and the first
//! acknowledgement stops its `not_acknowledged` steps. An incident transition stops
//! escalation, pulls the guard off post (the rota), notifies a supervisor's override and
//! starts the progress limit; a skipped mandatory step tells the supervisor. Escalation
//! queues its own notifications (the notification shell sits below it).

use serde_json::Value;

use crate::alarms::apply::{self as alarms, Followup};
use crate::alarms::book::Chatter;
use crate::alarms::queries::AlarmRow;
use crate::alarms::rules::RuleState;
use crate::escalation::Condition;
use crate::escalation::apply as escalation;
use crate::incidents::IncidentState;
use crate::incidents::apply::{self as incidents, Opening, Routed};
use crate::incidents::queries::IncidentRow;
use crate::roles::Role;
use crate::store::{Conn, StoreError};

use super::{Engine, OpError};

impl Engine {
    /// Carries an alarm change on into the incidents.
    pub(super) async fn follow(&mut self, conn: &mut Conn, then: Option<Followup>, now: i64) -> Result<(), StoreError> {
        match then {
            None => Ok(()),
            Some(Followup::Raised(id)) => self.raised(conn, id, now).await,
            Some(Followup::Cleared(id)) => incidents::note_alarm(conn, id, "cleared", now).await,
            Some(Followup::Acknowledged { alarm_id, operator }) => {
                self.alarm_acknowledged(conn, alarm_id, &operator, now).await
            }
        }
    }

    /// A raise or re-raise: the book (chattering, flood), the duty manager told of a flood,
    /// suppression, then the incident.
    async fn raised(&mut self, conn: &mut Conn, id: i64, now: i64) -> Result<(), StoreError> {
        let raise = self.alarms.raised(conn, &mut self.out, id, now).await?;
        if let Some(n) = raise.flood_started {
            let text = alarms::flood_notice(n);
            self.notify
                .to_role(
                    conn,
                    &mut self.out,
                    None,
                    &raise.row.estate_id,
                    Role::DutyManager,
                    "flood",
                    &text,
                    now,
                )
                .await?;
        }
        if alarms::held_back(conn, &mut self.out, &raise.row, now).await? {
            return Ok(());
        }
        self.route_alarm(conn, &raise.row, raise.chatter, now).await
    }

    /// Routes a raised alarm (not held back) to its incident: re-triggered (escalation
    /// decides on a new run), joined, or opened.
    pub(super) async fn route_alarm(
        &mut self,
        conn: &mut Conn,
        row: &AlarmRow,
        chatter: Chatter,
        now: i64,
    ) -> Result<(), StoreError> {
        let flood = self.alarms.in_flood();
        match self
            .incidents
            .route(conn, &mut self.out, row, chatter, flood, now)
            .await?
        {
            Routed::Done => Ok(()),
            Routed::Retriggered(inc) => self.escalation.retrigger(conn, &mut self.out, &inc, row.id, now).await,
            Routed::Open {
                category,
                priority,
                flood_group,
            } => {
                let opening = Opening {
                    estate: &row.estate_id,
                    area: &row.area,
                    category,
                    priority,
                    title: &row.message,
                    opened_by: "alarm",
                    flood_group,
                };
                let iid = self.open_incident(conn, &opening, now).await?;
                incidents::opened_by_alarm(conn, iid, row, now).await
            }
        }
    }

    /// Opens an incident: its policy snapshot and procedure, escalation run 1 and the
    /// response target, then the timeline and the stream.
    pub(super) async fn open_incident(
        &mut self,
        conn: &mut Conn,
        o: &Opening<'_>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let steps = self.escalation.policy_for(o.category, o.priority);
        let iid = self.incidents.insert(conn, o, &steps, now).await?;
        self.escalation.start(conn, iid, &steps, now).await?;
        incidents::opened(conn, &mut self.out, iid, o, &steps, now).await?;
        Ok(iid)
    }

    /// An alarm acknowledged: noted on its incident, which the first acknowledgement
    /// acknowledges.
    async fn alarm_acknowledged(
        &mut self,
        conn: &mut Conn,
        alarm_id: i64,
        operator: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        if let Some(inc) = incidents::alarm_acknowledged(conn, alarm_id, operator, now).await? {
            self.acknowledge_incident(conn, &inc, operator, now).await?;
        }
        Ok(())
    }

    /// Acknowledges an incident: its `not_acknowledged` steps stop and the progress limit
    /// starts.
    pub(super) async fn acknowledge_incident(
        &mut self,
        conn: &mut Conn,
        inc: &IncidentRow,
        actor: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        incidents::acknowledge(conn, &mut self.out, inc, actor, now).await?;
        escalation::stop_steps(
            conn,
            inc.id,
            Some(Condition::NotAcknowledged),
            "stopped: acknowledged",
            now,
        )
        .await?;
        self.escalation.watch_progress(conn, inc.id, inc.transitions, now).await
    }

    /// `Op::Transition`: the workflow's new state, then what it stops, pulls off post,
    /// notifies (a supervisor's override) or starts (the progress limit).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn transition(
        &mut self,
        conn: &mut Conn,
        rules: &mut RuleState,
        iid: i64,
        to: IncidentState,
        actor: &str,
        note: Option<String>,
        reason: Option<String>,
        override_by: Option<String>,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let t = match incidents::transition(
            conn,
            iid,
            to,
            actor,
            note.as_deref(),
            reason.as_deref(),
            override_by.as_deref(),
            now,
        )
        .await?
        {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        if t.fx.acknowledges && t.inc.acknowledged_at_ms.is_none() {
            self.acknowledge_incident(conn, &t.inc, actor, now).await?;
        }
        if t.fx.on_site {
            escalation::stop_steps(conn, iid, Some(Condition::NotOnSite), "stopped: on site", now).await?;
            // The guard who went on site leaves their post (the rota opens the gap).
            if let Some(r) = self.rota.as_mut() {
                if let Some(text) = r.pull(conn, actor, iid, &t.inc.estate_id, now).await? {
                    incidents::timeline(conn, iid, now, "rota", Some(actor), &text, Value::Null).await?;
                }
                self.rota_effects(conn, rules, now).await?;
            }
        }
        let inc = incidents::incident(conn, iid).await?;
        if t.fx.overridden {
            let by = override_by.unwrap_or_default();
            if let Some(text) = incidents::overridden(conn, iid, &t, &by, reason.as_deref(), now).await? {
                self.notify
                    .to_role(
                        conn,
                        &mut self.out,
                        Some(&inc),
                        &inc.estate_id,
                        Role::Supervisor,
                        "supervisor",
                        &text,
                        now,
                    )
                    .await?;
            }
        }
        if t.fx.terminal {
            escalation::stop_steps(conn, iid, None, "stopped: incident closed", now).await?;
            escalation::stop_all(conn, iid, now).await?;
        } else if inc.acknowledged_at_ms.is_some() && !t.fx.acknowledges {
            self.escalation.watch_progress(conn, iid, inc.transitions, now).await?;
        }
        incidents::transitioned(&mut self.out, iid, t.from, to, actor);
        Ok(Ok(iid))
    }

    /// `Op::Step`: a procedure step done or skipped; a skipped mandatory step tells the
    /// supervisor.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn step(
        &mut self,
        conn: &mut Conn,
        iid: i64,
        step: &str,
        actor: &str,
        note: Option<&str>,
        skipped: bool,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let done = match incidents::step(conn, iid, step, actor, note, skipped, now).await? {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(text) = &done.notice {
            self.notify
                .to_role(
                    conn,
                    &mut self.out,
                    Some(&done.inc),
                    &done.inc.estate_id,
                    Role::Supervisor,
                    "supervisor",
                    text,
                    now,
                )
                .await?;
        }
        incidents::step_recorded(&mut self.out, &done, actor);
        Ok(Ok(iid))
    }
}
