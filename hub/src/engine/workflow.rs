//! Applies the incident workflow: state transitions (with what they stop, notify or pull
//! off post) and procedure steps. Never sleeps, sends, or writes outside the transaction it
//! is given.

use serde_json::{Value, json};
use tracing::info;

use crate::alarms::rules::RuleState;
use crate::escalation::{Condition, Role};
use crate::incidents::queries::{self, get_incident};
use crate::incidents::{self, IncidentState, TransitionContext, TransitionRequest};
use crate::store::{Conn, StoreError};

use crate::incidents::apply::is_open;

use super::{Engine, OpError};

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn transition(
        &mut self,
        conn: &mut Conn,
        _rules: &mut RuleState,
        iid: i64,
        to: IncidentState,
        actor: &str,
        note: Option<String>,
        reason: Option<String>,
        override_by: Option<String>,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let Some(inc) = get_incident(conn, iid).await? else {
            return Ok(Err(OpError::NotFound(format!("incident {iid} not found"))));
        };
        let from = IncidentState::parse(&inc.state).unwrap_or(IncidentState::Discovered);
        let open_steps = queries::open_mandatory_steps(conn, iid).await?;
        let active = queries::active_alarm_ids(conn, iid).await?;
        let req = TransitionRequest {
            to,
            reason: reason.clone(),
            override_by: override_by.clone(),
        };
        let ctx = TransitionContext {
            open_mandatory_steps: open_steps,
            active_alarms: active,
        };
        let fx = match incidents::transition(from, &req, &ctx) {
            Ok(fx) => fx,
            Err(e @ incidents::TransitionError::ReasonRequired { .. }) => {
                return Ok(Err(OpError::Unprocessable(e.to_string())));
            }
            Err(e) => return Ok(Err(OpError::Conflict(e.to_string()))),
        };
        let change = queries::StateChange {
            to: to.as_str(),
            on_site: fx.on_site,
            terminal: fx.terminal,
            false_alarm: to == IncidentState::FalseAlarm,
            reason: reason.as_deref(),
            overridden: fx.overridden,
            override_by: override_by.as_deref(),
        };
        queries::change_state(conn, iid, &change, now).await?;
        let mut text = format!("{from} → {to}");
        if let Some(r) = &reason {
            text.push_str(&format!(" (reason: {r})"));
        }
        if let Some(n) = &note {
            text.push_str(&format!(": {n}"));
        }
        self.timeline(
            conn,
            iid,
            now,
            "transition",
            Some(actor),
            &text,
            json!({"from": from.as_str(), "to": to.as_str()}),
        )
        .await?;
        if fx.acknowledges && inc.acknowledged_at_ms.is_none() {
            self.acknowledge_incident(conn, &inc, actor, now).await?;
        }
        if fx.on_site {
            crate::escalation::apply::stop_steps(conn, iid, Some(Condition::NotOnSite), "stopped: on site", now)
                .await?;
            // The guard who went on site leaves their post (the rota opens the gap).
            if let Some(r) = self.rota.as_mut() {
                if let Some(text) = r.pull(conn, actor, iid, &inc.estate_id, now).await? {
                    self.timeline(conn, iid, now, "rota", Some(actor), &text, Value::Null)
                        .await?;
                }
                self.rota_effects(conn, _rules, now).await?;
            }
        }
        let inc = Self::incident(conn, iid).await?;
        if fx.overridden {
            let by = override_by.unwrap_or_default();
            self.timeline(
                conn,
                iid,
                now,
                "transition",
                Some(&by),
                &format!("Closed by supervisor override: {}", reason.as_deref().unwrap_or("")),
                json!({"skipped_steps": fx.skipped_steps, "active_alarms": ctx.active_alarms}),
            )
            .await?;
            for step in &fx.skipped_steps {
                queries::skip_step_by_override(conn, iid, step, &by, now).await?;
            }
            if !fx.skipped_steps.is_empty() {
                let text = format!(
                    "Incident #{iid} closed by override of {by}; mandatory steps skipped: {}",
                    fx.skipped_steps.join(", ")
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
            }
        }
        if fx.terminal {
            crate::escalation::apply::stop_steps(conn, iid, None, "stopped: incident closed", now).await?;
            crate::escalation::apply::stop_all(conn, iid, now).await?;
        } else if inc.acknowledged_at_ms.is_some() && !fx.acknowledges {
            self.escalation.watch_progress(conn, iid, inc.transitions, now).await?;
        }
        info!(
            incident = iid,
            from = from.as_str(),
            to = to.as_str(),
            "incident transition"
        );
        self.out.push(
            "incident",
            iid,
            "transition",
            json!({"from": from.as_str(), "to": to.as_str(), "by": actor}),
        );
        Ok(Ok(iid))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn step(
        &mut self,
        conn: &mut Conn,
        iid: i64,
        step: &str,
        actor: &str,
        note: Option<String>,
        skipped: bool,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let Some(inc) = get_incident(conn, iid).await? else {
            return Ok(Err(OpError::NotFound(format!("incident {iid} not found"))));
        };
        if !is_open(&inc.state) {
            return Ok(Err(OpError::Conflict(format!(
                "incident {iid} is {}; its steps cannot change",
                inc.state
            ))));
        }
        let steps = queries::incident_steps(conn, iid).await?;
        let found = match step.parse::<i64>() {
            Ok(n) => steps.iter().find(|s| s.idx == n),
            Err(_) => steps.iter().find(|s| s.step_id == step),
        };
        let Some(s) = found.cloned() else {
            let ids: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
            return Ok(Err(OpError::NotFound(format!(
                "incident {iid} has no step {step:?} (steps: {})",
                ids.join(", ")
            ))));
        };
        if s.status != "open" {
            return Ok(Err(OpError::Conflict(format!(
                "step {} is already {}",
                s.step_id, s.status
            ))));
        }
        if skipped && note.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Ok(Err(OpError::Unprocessable(
                "skipping a step needs a note saying why".into(),
            )));
        }
        let status = if skipped { "skipped" } else { "done" };
        queries::record_step(conn, iid, s.idx, status, actor, note.as_deref(), now).await?;
        let mut text = format!("Step {} {status}: {}", s.step_id, s.text);
        if let Some(n) = &note {
            text.push_str(&format!(" — {n}"));
        }
        self.timeline(
            conn,
            iid,
            now,
            "step",
            Some(actor),
            &text,
            json!({"step": s.step_id, "status": status}),
        )
        .await?;
        if skipped && s.mandatory {
            let text = format!(
                "Incident #{iid}: mandatory step {:?} skipped by {actor}: {}",
                s.text,
                note.as_deref().unwrap_or("")
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
        }
        self.out.push(
            "incident",
            iid,
            "step",
            json!({"step": s.step_id, "status": status, "by": actor}),
        );
        Ok(Ok(iid))
    }
}
