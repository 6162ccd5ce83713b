//! Applies escalation: plans a run's timers, stops steps, and fires what the tick claimed
//! (an escalation step, the response target, the progress limit). Never sleeps: deadlines
//! are `timers` rows.

use serde_json::{Value, json};
use tracing::warn;

use crate::alarms::queries::{self as alarm_q, Cause};
use crate::alarms::rules::{Activation, RuleState};
use crate::alarms::{AlarmKey, Category, Priority};
use crate::escalation::queries::{self as timers, TimerRow};
use crate::escalation::{self, Condition, Decision, IncidentStatus, Role, StepSpec};
use crate::incidents::queries::{self as incident_q, get_incident};
use crate::incidents::{IncidentCategory, IncidentState};
use crate::store::{Conn, StoreError};

use super::{Engine, is_open};

fn alarm_category(c: IncidentCategory) -> Category {
    match c {
        IncidentCategory::Fire => Category::Fire,
        IncidentCategory::EquipmentFault | IncidentCategory::PumpFlooding => Category::Plant,
        _ => Category::Security,
    }
}

impl Engine {
    pub(super) async fn plan(
        &mut self,
        conn: &mut Conn,
        iid: i64,
        run: i64,
        steps: &[StepSpec],
        now: i64,
    ) -> Result<(), StoreError> {
        for t in escalation::plan_run(steps, now) {
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

    pub(super) async fn timer(
        conn: &mut Conn,
        kind: &str,
        iid: i64,
        alarm_id: i64,
        run: i64,
        due: i64,
    ) -> Result<(), StoreError> {
        timers::insert_timer(conn, kind, iid, alarm_id, run, due).await
    }

    /// Stops pending escalation steps (of one condition, or all), noting it on the timeline.
    pub(super) async fn stop_steps(
        &mut self,
        conn: &mut Conn,
        iid: i64,
        condition: Option<Condition>,
        outcome: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let n = timers::stop_steps(conn, iid, condition.map(Condition::as_str), outcome, now).await?;
        if n > 0 {
            self.timeline(
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

    pub(super) async fn fire_escalation(
        &mut self,
        conn: &mut Conn,
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
        Ok(match escalation::decide(t.run, condition, &status, recipients) {
            Decision::Fire(recipients) => {
                let names: Vec<&str> = recipients.iter().map(|r| r.name.as_str()).collect();
                self.timeline(
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
                self.notify
                    .queue(
                        conn,
                        &mut self.out,
                        Some(&inc),
                        &inc.estate_id,
                        role,
                        &recipients,
                        "escalation",
                        &text,
                        now,
                    )
                    .await?;
                self.out.push(
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
                self.timeline(
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

    pub(super) async fn response_target(
        &mut self,
        conn: &mut Conn,
        rules: &mut RuleState,
        t: &TimerRow,
        now: i64,
    ) -> Result<String, StoreError> {
        let Some(inc) = get_incident(conn, t.incident_id).await? else {
            return Ok("incident missing".into());
        };
        if !is_open(&inc.state) || inc.on_site_at_ms.is_some() {
            return Ok("met".into());
        }
        let minutes = self.cfg.response_target_ms / 60_000;
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
            crate::alarms::rules::ActiveAlarm {
                latched: true,
                value: None,
            },
        );
        self.publish_alarm(id, what.as_str(), &a);
        self.link(conn, inc.id, id, now).await?;
        warn!(incident = inc.id, "response target breached");
        self.timeline(
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
        self.notify
            .to_role(
                conn,
                &mut self.out,
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

    pub(super) async fn progress_check(
        &mut self,
        conn: &mut Conn,
        t: &TimerRow,
        now: i64,
    ) -> Result<String, StoreError> {
        let Some(inc) = get_incident(conn, t.incident_id).await? else {
            return Ok("incident missing".into());
        };
        if !is_open(&inc.state) || inc.transitions != t.run || inc.acknowledged_at_ms.is_none() {
            return Ok("progressed".into());
        }
        let minutes = self.cfg.progress_limit_ms / 60_000;
        self.timeline(
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
        Ok("alerted".into())
    }
}
