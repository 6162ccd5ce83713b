//! The escalation shell: plans a run's timers, stops steps, and fires what the tick claimed
//! (an escalation step, the response target, the progress limit) inside the writer's
//! transaction, through [`super::queries`]. It queues its notifications through the
//! notification shell (below it) and raises the response-target alarm through the alarm
//! queries.
//!
//! Invariant: never sleeps, sends, or writes outside the transaction it is given: deadlines
//! are `timers` rows, claimed by the tick with a conditional UPDATE.

use std::sync::Arc;

use serde_json::{Value, json};
use tracing::warn;

use crate::alarms::apply::publish_alarm;
use crate::alarms::queries::{self as alarm_q, Cause};
use crate::alarms::rules::{Activation, ActiveAlarm, RuleState};
use crate::alarms::{AlarmKey, Category, Priority};
use crate::incidents::apply::{is_open, timeline};
use crate::incidents::queries::{self as incident_q, IncidentRow, get_incident};
use crate::incidents::{IncidentCategory, IncidentState};
use crate::notify::apply::NotifyShell;
use crate::roles::{Role, RoleResolver};
use crate::store::{Conn, StoreError};
use crate::stream::Published;

use super::queries::{self as timers, TimerRow};
use super::{Condition, Decision, IncidentStatus, PolicyConfig, StepSpec};

fn alarm_category(c: IncidentCategory) -> Category {
    match c {
        IncidentCategory::Fire => Category::Fire,
        IncidentCategory::EquipmentFault | IncidentCategory::PumpFlooding => Category::Plant,
        _ => Category::Security,
    }
}

/// The escalation shell: the policies, who holds a role, and the limits it reads.
#[derive(Debug)]
pub struct EscalationShell {
    hub_id: String,
    resolver: Arc<dyn RoleResolver>,
    policies: Vec<PolicyConfig>,
    response_target_ms: i64,
    progress_limit_ms: i64,
}

impl EscalationShell {
    pub fn new(
        hub_id: String,
        resolver: Arc<dyn RoleResolver>,
        policies: Vec<PolicyConfig>,
        response_target_ms: i64,
        progress_limit_ms: i64,
    ) -> Self {
        EscalationShell {
            hub_id,
            resolver,
            policies,
            response_target_ms,
            progress_limit_ms,
        }
    }

    /// The policy steps an incident of this category and priority snapshots when it opens.
    pub fn policy_for(&self, category: IncidentCategory, priority: Priority) -> Vec<StepSpec> {
        super::select_policy(&self.policies, category, priority)
    }

    /// Plans run `run` of an incident: one `escalation` timer per step and repeat.
    pub async fn plan(
        &self,
        conn: &mut Conn,
        iid: i64,
        run: i64,
        steps: &[StepSpec],
        now: i64,
    ) -> Result<(), StoreError> {
        for t in super::plan_run(steps, now) {
            timers::insert_step(
                conn,
                iid,
                run,
                i64::from(t.step),
                i64::from(t.attempt),
                t.role.as_str(),
                t.condition.as_str(),
                t.due_ms,
            )
            .await?;
        }
        Ok(())
    }

    /// An alarm of an open (not chattering) incident raised again: a new escalation run,
    /// unless the current run is still going and nobody has acknowledged.
    pub async fn retrigger(
        &self,
        conn: &mut Conn,
        out: &mut Published,
        inc: &IncidentRow,
        alarm_id: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let pending = timers::pending_steps(conn, inc.id, inc.escalation_run).await?;
        if pending > 0 && inc.acknowledged_at_ms.is_none() {
            return timeline(
                conn,
                inc.id,
                now,
                "alarm",
                None,
                &format!(
                    "Alarm #{alarm_id} re-triggered; escalation run {} continues",
                    inc.escalation_run
                ),
                json!({"alarm_id": alarm_id}),
            )
            .await;
        }
        let run = inc.escalation_run + 1;
        let n = timers::supersede_run(conn, inc.id, now).await?;
        incident_q::restart_escalation(conn, inc.id, run).await?;
        let steps: Vec<StepSpec> = serde_json::from_str(&inc.policy).unwrap_or_default();
        self.plan(conn, inc.id, run, &steps, now).await?;
        timeline(
            conn,
            inc.id,
            now,
            "escalation",
            None,
            &format!(
                "Alarm #{alarm_id} re-triggered: escalation restarts (run {run}; {n} pending steps of the old run superseded)"
            ),
            json!({"alarm_id": alarm_id, "run": run}),
        )
        .await?;
        out.push("incident", inc.id, "escalation_restarted", json!({"run": run}));
        Ok(())
    }

    /// Run 1 of a new incident, and its response target.
    pub async fn start(&self, conn: &mut Conn, iid: i64, steps: &[StepSpec], now: i64) -> Result<(), StoreError> {
        self.plan(conn, iid, 1, steps, now).await?;
        timer(conn, "response_target", iid, 0, 0, now + self.response_target_ms).await
    }

    /// The progress limit: an acknowledged incident still in the state it reached at
    /// transition `transitions` alerts the supervisor when this falls due.
    pub async fn watch_progress(
        &self,
        conn: &mut Conn,
        iid: i64,
        transitions: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        timer(conn, "progress", iid, 0, transitions, now + self.progress_limit_ms).await
    }

    /// Claims every timer due by `now` (a conditional UPDATE: a timer fires once).
    pub async fn claim_due(&self, conn: &mut Conn, now: i64) -> Result<Vec<TimerRow>, StoreError> {
        timers::claim_due(conn, &self.hub_id, now).await
    }

    /// Fires a claimed `escalation` timer: notifies the step's role, skips it when nobody
    /// holds the role (bringing the next step forward), or records why it stopped.
    pub async fn fire(
        &self,
        conn: &mut Conn,
        out: &mut Published,
        notify: &NotifyShell,
        t: &TimerRow,
        now: i64,
    ) -> Result<String, StoreError> {
        let Some(inc) = get_incident(conn, t.incident_id).await? else {
            return Ok("incident missing".into());
        };
        let role = t.role.as_deref().and_then(Role::parse);
        let condition = t.condition.as_deref().and_then(Condition::parse);
        let (Some(role), Some(condition)) = (role, condition) else {
            return Ok("invalid step".into());
        };
        let status = IncidentStatus {
            state: IncidentState::parse(&inc.state).unwrap_or(IncidentState::Discovered),
            acknowledged: inc.acknowledged_at_ms.is_some(),
            run: inc.escalation_run,
        };
        let recipients = self.resolver.resolve(&inc.estate_id, role, now);
        let step_name = format!(
            "step {} ({}{})",
            t.step + 1,
            role.as_str(),
            if t.attempt > 0 {
                format!(", repeat {}", t.attempt)
            } else {
                String::new()
            }
        );
        Ok(match super::decide(t.run, condition, &status, recipients) {
            Decision::Fire(recipients) => {
                // Initials: the timeline is read by every role (names are personal data).
                let names: Vec<String> = recipients
                    .iter()
                    .map(|r| crate::privacy::mask::initials(&r.name))
                    .collect();
                timeline(
                    conn,
                    inc.id,
                    now,
                    "escalation",
                    None,
                    &format!(
                        "Escalation {step_name} fired ({}) → {}",
                        condition.as_str(),
                        names.join(", ")
                    ),
                    json!({"run": t.run, "step": t.step, "attempt": t.attempt, "role": role.as_str()}),
                )
                .await?;
                let text = format!(
                    "{} incident #{} at {} ({}): {} — state {}, {}",
                    inc.priority,
                    inc.id,
                    inc.estate_id,
                    inc.area,
                    inc.title,
                    inc.state,
                    condition.as_str().replace('_', " ")
                );
                notify
                    .queue(
                        conn,
                        out,
                        Some(&inc),
                        &inc.estate_id,
                        role,
                        &recipients,
                        "escalation",
                        Some(t.step + t.attempt),
                        &text,
                        now,
                    )
                    .await?;
                out.push(
                    "incident",
                    inc.id,
                    "escalated",
                    json!({"role": role.as_str(), "step": t.step, "run": t.run}),
                );
                "fired".into()
            }
            Decision::SkipNobody => {
                warn!(
                    incident = inc.id,
                    role = role.as_str(),
                    "escalation step skipped: nobody holds the role"
                );
                timeline(
                    conn,
                    inc.id,
                    now,
                    "escalation",
                    None,
                    &format!(
                        "Escalation {step_name} skipped: nobody holds role {} at {}",
                        role.as_str(),
                        inc.estate_id
                    ),
                    json!({"run": t.run, "step": t.step}),
                )
                .await?;
                // Never waited out: the next step comes forward to now.
                let next = timers::next_step_due(conn, inc.id, t.run, t.step).await?;
                if let Some(next) = next
                    && next > now
                {
                    timers::bring_forward(conn, inc.id, t.run, t.step, next - now).await?;
                }
                format!("skipped: nobody holds role {}", role.as_str())
            }
            Decision::Stop(why) => format!("stopped: {why}"),
            Decision::Superseded => "superseded".into(),
        })
    }

    /// A claimed `response_target` timer: nobody on site in time raises a latched P2 alarm
    /// on the incident and alerts the supervisor.
    pub async fn response_target(
        &self,
        conn: &mut Conn,
        out: &mut Published,
        rules: &mut RuleState,
        notify: &NotifyShell,
        t: &TimerRow,
        now: i64,
    ) -> Result<String, StoreError> {
        let Some(inc) = get_incident(conn, t.incident_id).await? else {
            return Ok("incident missing".into());
        };
        if !is_open(&inc.state) || inc.on_site_at_ms.is_some() {
            return Ok("met".into());
        }
        let minutes = self.response_target_ms / 60_000;
        incident_q::mark_response_breached(conn, inc.id).await?;
        let category = IncidentCategory::parse(&inc.category).unwrap_or(IncidentCategory::Other);
        let a = Activation {
            key: AlarmKey::new(
                &inc.estate_id,
                format!("incident-{}", inc.id),
                "response_target_breached",
            ),
            gateway: "hub".into(),
            area: inc.area.clone(),
            priority: Priority::P2,
            category: alarm_category(category),
            message: format!(
                "Response target breached: nobody on site within {minutes} min for incident #{}",
                inc.id
            ),
            latched: true,
            value: None,
            repeat: false,
        };
        let cause = Cause {
            note: Some("response target"),
            ..Default::default()
        };
        let (id, what) = alarm_q::activate(conn, &a, now, &cause).await?;
        rules.restore_active(
            a.key.clone(),
            ActiveAlarm {
                latched: true,
                value: None,
            },
        );
        publish_alarm(out, id, what.as_str(), &a);
        incident_q::link_alarm(conn, inc.id, id, now).await?;
        warn!(incident = inc.id, "response target breached");
        timeline(
            conn,
            inc.id,
            now,
            "response",
            None,
            &format!(
                "Response target of {minutes} min breached (state {}); alarm #{id} raised",
                inc.state
            ),
            json!({"alarm_id": id}),
        )
        .await?;
        let text = format!(
            "Incident #{} at {} ({}): nobody on site within {minutes} min — {}",
            inc.id, inc.estate_id, inc.area, inc.title
        );
        notify
            .to_role(
                conn,
                out,
                Some(&inc),
                &inc.estate_id,
                Role::Supervisor,
                "response_target",
                &text,
                now,
            )
            .await?;
        Ok("breached".into())
    }

    /// A claimed `progress` timer: acknowledged but no transition since alerts the supervisor.
    pub async fn progress_check(
        &self,
        conn: &mut Conn,
        out: &mut Published,
        notify: &NotifyShell,
        t: &TimerRow,
        now: i64,
    ) -> Result<String, StoreError> {
        let Some(inc) = get_incident(conn, t.incident_id).await? else {
            return Ok("incident missing".into());
        };
        if !is_open(&inc.state) || inc.transitions != t.run || inc.acknowledged_at_ms.is_none() {
            return Ok("progressed".into());
        }
        let minutes = self.progress_limit_ms / 60_000;
        timeline(
            conn,
            inc.id,
            now,
            "escalation",
            None,
            &format!(
                "Acknowledged but still {} after {minutes} min: supervisor alerted",
                inc.state
            ),
            Value::Null,
        )
        .await?;
        let text = format!(
            "Incident #{} at {} ({}) acknowledged but still {} after {minutes} min — {}",
            inc.id, inc.estate_id, inc.area, inc.state, inc.title
        );
        notify
            .to_role(
                conn,
                out,
                Some(&inc),
                &inc.estate_id,
                Role::Supervisor,
                "supervisor",
                &text,
                now,
            )
            .await?;
        Ok("alerted".into())
    }
}

/// A durable timer of `kind` (`shelve_expiry`, `response_target`, `progress`) due at `due`.
pub async fn timer(conn: &mut Conn, kind: &str, iid: i64, alarm_id: i64, run: i64, due: i64) -> Result<(), StoreError> {
    timers::insert_timer(conn, kind, iid, alarm_id, run, due).await
}

/// Records what a claimed timer came to.
pub async fn record_outcome(conn: &mut Conn, id: i64, outcome: &str) -> Result<(), StoreError> {
    timers::record_outcome(conn, id, outcome).await
}

/// The incident ended: every timer of it still pending stops.
pub async fn stop_all(conn: &mut Conn, iid: i64, now: i64) -> Result<(), StoreError> {
    timers::stop_all(conn, iid, now).await
}

/// Stops pending escalation steps (of one condition, or all), noting it on the timeline.
pub async fn stop_steps(
    conn: &mut Conn,
    iid: i64,
    condition: Option<Condition>,
    outcome: &str,
    now: i64,
) -> Result<(), StoreError> {
    let n = timers::stop_steps(conn, iid, condition.map(Condition::as_str), outcome, now).await?;
    if n > 0 {
        timeline(
            conn,
            iid,
            now,
            "escalation",
            None,
            &format!("Escalation {outcome} ({n} pending steps cancelled)"),
            Value::Null,
        )
        .await?;
    }
    Ok(())
}
