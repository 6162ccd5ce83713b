//! The incident shell: applies the incident decisions (routing an alarm, the workflow,
//! procedure steps) inside the writer's transaction, through [`super::queries`]: opening
//! (by an alarm or an operator), joining, re-triggering, acknowledgement, transitions, steps
//! and the timeline. What follows in another domain (escalation planned or stopped, a
//! notification, the rota) it returns to the engine, which calls that domain next.
//!
//! Invariant: nothing here sleeps, sends, or writes outside the transaction it is given.

use serde::Serialize;
use serde_json::{Value, json};
use tracing::info;

use crate::alarms::book::Chatter;
use crate::alarms::queries::AlarmRow;
use crate::alarms::{Category, Priority};
use crate::error::OpError;
use crate::store::{Conn, StoreError};
use crate::stream::Published;

use super::queries::{self, IncidentRow, get_incident};
use super::{
    IncidentCategory, IncidentState, OpenIncident, ProcedureConfig, Route, TransitionContext, TransitionEffects,
    TransitionError, TransitionRequest,
};

/// An incident still open (not closed, not a false alarm).
pub fn is_open(state: &str) -> bool {
    !matches!(state, "closed" | "false_alarm")
}

/// Where a raised alarm went.
#[derive(Debug)]
pub enum Routed {
    /// Nowhere further: joined an open incident, re-triggered one while chattering, or not
    /// an alarm that opens incidents.
    Done,
    /// Its open incident's alarm raised again: escalation decides on a new run.
    Retriggered(Box<IncidentRow>),
    /// A new incident: the engine opens it, then [`opened_by_alarm`].
    Open {
        category: IncidentCategory,
        priority: Priority,
        flood_group: bool,
    },
}

/// An incident about to be opened.
#[derive(Debug)]
pub struct Opening<'a> {
    pub estate: &'a str,
    pub area: &'a str,
    pub category: IncidentCategory,
    pub priority: Priority,
    pub title: &'a str,
    pub opened_by: &'a str,
    pub flood_group: bool,
}

/// A transition written: what the engine carries on (escalation stopped, the rota, the
/// progress limit) before [`transitioned`].
#[derive(Debug)]
pub struct Transitioned {
    /// The incident as it was before the transition.
    pub inc: IncidentRow,
    pub from: IncidentState,
    pub fx: TransitionEffects,
    pub active_alarms: Vec<i64>,
}

/// A procedure step recorded; published by [`step_recorded`] once its notice is queued.
#[derive(Debug)]
pub struct StepDone {
    pub inc: IncidentRow,
    pub step_id: String,
    pub status: &'static str,
    /// A mandatory step was skipped: the supervisor is told this.
    pub notice: Option<String>,
}

/// The incident shell: the procedures and the grouping window it reads.
#[derive(Debug)]
pub struct IncidentShell {
    procedures: Vec<ProcedureConfig>,
    group_window_ms: i64,
}

impl IncidentShell {
    pub fn new(procedures: Vec<ProcedureConfig>, group_window_ms: i64) -> Self {
        IncidentShell {
            procedures,
            group_window_ms,
        }
    }

    /// Routes an alarm that is raised (and not held back): re-triggers its open incident,
    /// joins one open at the same estate and area within the window (per estate in a
    /// flood), or asks for a new one.
    pub async fn route(
        &self,
        conn: &mut Conn,
        out: &mut Published,
        row: &AlarmRow,
        chatter: Chatter,
        flood: bool,
        now: i64,
    ) -> Result<Routed, StoreError> {
        let (Ok(priority), Ok(category)) = (row.priority.parse::<Priority>(), row.category.parse::<Category>()) else {
            return Ok(Routed::Done);
        };
        let Some(incident_category) = super::category_for_alarm(priority, category, &row.condition) else {
            return Ok(Routed::Done);
        };
        if let Some(iid) = row.incident_id
            && let Some(inc) = get_incident(conn, iid).await?
            && is_open(&inc.state)
        {
            return retriggered(conn, inc, row, chatter, now).await;
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
        Ok(
            match super::route(&open, &row.area, priority, flood, self.group_window_ms, now) {
                Route::Join(iid) => {
                    join(conn, out, iid, row, priority, flood, now).await?;
                    Routed::Done
                }
                Route::Open => Routed::Open {
                    category: incident_category,
                    priority,
                    flood_group: flood && priority != Priority::P1,
                },
            },
        )
    }

    /// Writes a new incident with its policy snapshot and its procedure's steps; the
    /// engine plans its escalation next, then [`opened`].
    pub async fn insert(
        &self,
        conn: &mut Conn,
        o: &Opening<'_>,
        policy: &impl Serialize,
        now: i64,
    ) -> Result<i64, StoreError> {
        let policy = serde_json::to_string(policy).unwrap_or_else(|_| "[]".into());
        let new = queries::NewIncident {
            estate: o.estate,
            area: o.area,
            category: o.category.as_str(),
            priority: o.priority.as_str(),
            title: o.title,
            opened_by: o.opened_by,
            policy: &policy,
            flood_group: o.flood_group,
        };
        let iid = queries::insert_incident(conn, &new, now).await?;
        for (i, s) in super::select_procedure(&self.procedures, o.category).iter().enumerate() {
            queries::insert_step(conn, iid, i as i64 + 1, &s.id, &s.text, s.mandatory).await?;
        }
        Ok(iid)
    }
}

/// An alarm of an open incident raised again. While it chatters (or repeats within the
/// chatter window) it notifies once, not each time: noted, no new run.
async fn retriggered(
    conn: &mut Conn,
    inc: IncidentRow,
    row: &AlarmRow,
    chatter: Chatter,
    now: i64,
) -> Result<Routed, StoreError> {
    queries::alarm_retriggered(conn, inc.id, now).await?;
    if chatter.chattering || chatter.quick_repeat {
        let why = if chatter.chattering {
            "chattering"
        } else {
            "within the chatter window"
        };
        timeline(
            conn,
            inc.id,
            now,
            "alarm",
            None,
            &format!("Alarm #{} re-triggered ({why}): no new escalation", row.id),
            json!({"alarm_id": row.id}),
        )
        .await?;
        return Ok(Routed::Done);
    }
    Ok(Routed::Retriggered(Box::new(inc)))
}

async fn join(
    conn: &mut Conn,
    out: &mut Published,
    iid: i64,
    row: &AlarmRow,
    priority: Priority,
    flood: bool,
    now: i64,
) -> Result<(), StoreError> {
    queries::link_alarm(conn, iid, row.id, now).await?;
    let inc = incident(conn, iid).await?;
    let raise = inc.priority.parse::<Priority>().is_ok_and(|p| priority < p);
    queries::alarm_joined(conn, iid, raise, priority.as_str(), now).await?;
    let how = if flood { " (flood: grouped by estate)" } else { "" };
    timeline(
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
        timeline(
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
    out.push("incident", iid, "alarm_joined", json!({"alarm_id": row.id}));
    Ok(())
}

/// A new incident's escalation is planned: logged, on its timeline and on the stream.
pub async fn opened(
    conn: &mut Conn,
    out: &mut Published,
    iid: i64,
    o: &Opening<'_>,
    policy: &impl Serialize,
    now: i64,
) -> Result<(), StoreError> {
    info!(
        incident = iid,
        estate = o.estate,
        category = o.category.as_str(),
        priority = o.priority.as_str(),
        "incident opened"
    );
    timeline(
        conn,
        iid,
        now,
        "opened",
        Some(o.opened_by),
        &format!(
            "Incident opened: {} {} at {}",
            o.priority.as_str(),
            o.category.as_str(),
            o.area
        ),
        json!({ "policy": policy }),
    )
    .await?;
    out.push(
        "incident",
        iid,
        "opened",
        json!({"estate": o.estate, "area": o.area, "category": o.category.as_str(), "priority": o.priority.as_str()}),
    );
    Ok(())
}

/// The alarm that opened an incident is linked to it and named on its timeline.
pub async fn opened_by_alarm(conn: &mut Conn, iid: i64, row: &AlarmRow, now: i64) -> Result<(), StoreError> {
    queries::link_alarm(conn, iid, row.id, now).await?;
    timeline(
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

/// Something happened to an alarm (`what`: "cleared"): noted on its open incident.
pub async fn note_alarm(conn: &mut Conn, alarm_id: i64, what: &str, now: i64) -> Result<(), StoreError> {
    let row = crate::alarms::apply::alarm(conn, alarm_id).await?;
    if let Some(iid) = row.incident_id
        && let Some(inc) = get_incident(conn, iid).await?
        && is_open(&inc.state)
    {
        timeline(
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

/// An alarm was acknowledged: noted on its open incident. Returns the incident when this
/// acknowledges it too (the first acknowledgement).
pub async fn alarm_acknowledged(
    conn: &mut Conn,
    alarm_id: i64,
    operator: &str,
    now: i64,
) -> Result<Option<IncidentRow>, StoreError> {
    let row = crate::alarms::apply::alarm(conn, alarm_id).await?;
    let Some(iid) = row.incident_id else { return Ok(None) };
    let Some(inc) = get_incident(conn, iid).await? else {
        return Ok(None);
    };
    if !is_open(&inc.state) {
        return Ok(None);
    }
    timeline(
        conn,
        iid,
        now,
        "alarm",
        Some(operator),
        &format!("Alarm #{alarm_id} acknowledged"),
        json!({"alarm_id": alarm_id}),
    )
    .await?;
    Ok(inc.acknowledged_at_ms.is_none().then_some(inc))
}

/// Acknowledges an incident (on the stream too); the engine stops its `not_acknowledged`
/// steps and starts the progress limit next.
pub async fn acknowledge(
    conn: &mut Conn,
    out: &mut Published,
    inc: &IncidentRow,
    actor: &str,
    now: i64,
) -> Result<(), StoreError> {
    queries::acknowledge(conn, inc.id, actor, now).await?;
    out.push("incident", inc.id, "acknowledged", json!({"by": actor}));
    Ok(())
}

/// An incident row that must exist (it was read or written in this transaction).
pub async fn incident(conn: &mut Conn, id: i64) -> Result<IncidentRow, StoreError> {
    get_incident(conn, id).await?.ok_or_else(|| StoreError::Query {
        what: format!("incident {id} vanished inside its own transaction"),
        source: sqlx::Error::RowNotFound,
    })
}

/// One line of an incident's timeline (`data` stored as JSON unless null).
pub async fn timeline(
    conn: &mut Conn,
    iid: i64,
    now: i64,
    kind: &str,
    actor: Option<&str>,
    text: &str,
    data: Value,
) -> Result<(), StoreError> {
    let data = (!data.is_null()).then(|| data.to_string());
    queries::insert_timeline(conn, iid, now, kind, actor, text, data).await
}

/// `Op::Transition`, first part: checks the workflow and writes the new state and its
/// timeline line. The engine carries the effects on.
#[allow(clippy::too_many_arguments)]
pub async fn transition(
    conn: &mut Conn,
    iid: i64,
    to: IncidentState,
    actor: &str,
    note: Option<&str>,
    reason: Option<&str>,
    override_by: Option<&str>,
    now: i64,
) -> Result<Result<Transitioned, OpError>, StoreError> {
    let Some(inc) = get_incident(conn, iid).await? else {
        return Ok(Err(OpError::NotFound(format!("incident {iid} not found"))));
    };
    let from = IncidentState::parse(&inc.state).unwrap_or(IncidentState::Discovered);
    let open_steps = queries::open_mandatory_steps(conn, iid).await?;
    let active = queries::active_alarm_ids(conn, iid).await?;
    let req = TransitionRequest {
        to,
        reason: reason.map(str::to_owned),
        override_by: override_by.map(str::to_owned),
    };
    let ctx = TransitionContext {
        open_mandatory_steps: open_steps,
        active_alarms: active,
    };
    let fx = match super::transition(from, &req, &ctx) {
        Ok(fx) => fx,
        Err(e @ TransitionError::ReasonRequired { .. }) => {
            return Ok(Err(OpError::Unprocessable(e.to_string())));
        }
        Err(e) => return Ok(Err(OpError::Conflict(e.to_string()))),
    };
    let change = queries::StateChange {
        to: to.as_str(),
        on_site: fx.on_site,
        terminal: fx.terminal,
        false_alarm: to == IncidentState::FalseAlarm,
        reason,
        overridden: fx.overridden,
        override_by,
    };
    queries::change_state(conn, iid, &change, now).await?;
    let mut text = format!("{from} → {to}");
    if let Some(r) = reason {
        text.push_str(&format!(" (reason: {r})"));
    }
    if let Some(n) = note {
        text.push_str(&format!(": {n}"));
    }
    timeline(
        conn,
        iid,
        now,
        "transition",
        Some(actor),
        &text,
        json!({"from": from.as_str(), "to": to.as_str()}),
    )
    .await?;
    Ok(Ok(Transitioned {
        inc,
        from,
        fx,
        active_alarms: ctx.active_alarms,
    }))
}

/// A supervisor's override closed the incident: noted, its open mandatory steps marked
/// skipped. Returns the supervisor's notice when steps were skipped.
pub async fn overridden(
    conn: &mut Conn,
    iid: i64,
    t: &Transitioned,
    by: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<Option<String>, StoreError> {
    timeline(
        conn,
        iid,
        now,
        "transition",
        Some(by),
        &format!("Closed by supervisor override: {}", reason.unwrap_or("")),
        json!({"skipped_steps": t.fx.skipped_steps, "active_alarms": t.active_alarms}),
    )
    .await?;
    for step in &t.fx.skipped_steps {
        queries::skip_step_by_override(conn, iid, step, by, now).await?;
    }
    Ok((!t.fx.skipped_steps.is_empty()).then(|| {
        format!(
            "Incident #{iid} closed by override of {by}; mandatory steps skipped: {}",
            t.fx.skipped_steps.join(", ")
        )
    }))
}

/// `Op::Transition`, last part: logged and on the stream.
pub fn transitioned(out: &mut Published, iid: i64, from: IncidentState, to: IncidentState, actor: &str) {
    info!(
        incident = iid,
        from = from.as_str(),
        to = to.as_str(),
        "incident transition"
    );
    out.push(
        "incident",
        iid,
        "transition",
        json!({"from": from.as_str(), "to": to.as_str(), "by": actor}),
    );
}

/// `Op::Step`: a procedure step done or skipped (skipping needs a note saying why).
pub async fn step(
    conn: &mut Conn,
    iid: i64,
    step: &str,
    actor: &str,
    note: Option<&str>,
    skipped: bool,
    now: i64,
) -> Result<Result<StepDone, OpError>, StoreError> {
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
    if skipped && note.is_none_or(|n| n.trim().is_empty()) {
        return Ok(Err(OpError::Unprocessable(
            "skipping a step needs a note saying why".into(),
        )));
    }
    let status = if skipped { "skipped" } else { "done" };
    queries::record_step(conn, iid, s.idx, status, actor, note, now).await?;
    let mut text = format!("Step {} {status}: {}", s.step_id, s.text);
    if let Some(n) = note {
        text.push_str(&format!(" — {n}"));
    }
    timeline(
        conn,
        iid,
        now,
        "step",
        Some(actor),
        &text,
        json!({"step": s.step_id, "status": status}),
    )
    .await?;
    let notice = (skipped && s.mandatory).then(|| {
        format!(
            "Incident #{iid}: mandatory step {:?} skipped by {actor}: {}",
            s.text,
            note.unwrap_or("")
        )
    });
    Ok(Ok(StepDone {
        inc,
        step_id: s.step_id,
        status,
        notice,
    }))
}

/// A procedure step recorded, on the stream.
pub fn step_recorded(out: &mut Published, d: &StepDone, actor: &str) {
    out.push(
        "incident",
        d.inc.id,
        "step",
        json!({"step": d.step_id, "status": d.status, "by": actor}),
    );
}
