//! Every SQL statement on incidents, their alarms, procedure steps and timeline: the reads
//! of the API and the writes of the engine (inside the writer's transaction).

use serde::Serialize;
use serde_json::Value;

use crate::alarms::queries::{ALARM_COLUMNS, AlarmRow};
use crate::alarms::rfc3339;
use crate::store::{Conn, Context, Pool, Sql, StoreError};

pub(crate) const INCIDENT_COLUMNS: &str = "id, estate_id, area, category, priority, title, state, opened_at_ms, \
     opened_by, last_alarm_at_ms, acknowledged_at_ms, acknowledged_by, on_site_at_ms, closed_at_ms, \
     state_changed_at_ms, transitions, escalation_run, policy, flood_group, response_breached, \
     false_alarm_reason, override_by, override_reason";

/// An incident row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IncidentRow {
    pub id: i64,
    pub estate_id: String,
    pub area: String,
    pub category: String,
    pub priority: String,
    pub title: String,
    pub state: String,
    pub opened_at_ms: i64,
    pub opened_by: String,
    pub last_alarm_at_ms: i64,
    pub acknowledged_at_ms: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub on_site_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    pub state_changed_at_ms: i64,
    pub transitions: i64,
    pub escalation_run: i64,
    pub policy: String,
    #[sqlx(try_from = "crate::store::Flag")]
    pub flood_group: bool,
    #[sqlx(try_from = "crate::store::Flag")]
    pub response_breached: bool,
    pub false_alarm_reason: Option<String>,
    pub override_by: Option<String>,
    pub override_reason: Option<String>,
}

/// An incident as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentJson {
    pub id: i64,
    pub estate: String,
    pub area: String,
    pub category: String,
    pub priority: String,
    pub title: String,
    pub state: String,
    pub opened_at: String,
    pub opened_by: String,
    pub acknowledged: bool,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub on_site_at: Option<String>,
    pub closed_at: Option<String>,
    pub state_changed_at: String,
    /// The 15-minute response target (configurable): when it falls due, and whether it was breached.
    pub response_due_at: String,
    pub response_breached: bool,
    pub flood_group: bool,
    pub false_alarm_reason: Option<String>,
    pub override_by: Option<String>,
    pub override_reason: Option<String>,
}

impl IncidentRow {
    pub fn to_json(&self, response_target_ms: i64) -> IncidentJson {
        IncidentJson {
            id: self.id,
            estate: self.estate_id.clone(),
            area: self.area.clone(),
            category: self.category.clone(),
            priority: self.priority.clone(),
            title: self.title.clone(),
            state: self.state.clone(),
            opened_at: rfc3339(self.opened_at_ms),
            opened_by: self.opened_by.clone(),
            acknowledged: self.acknowledged_at_ms.is_some(),
            acknowledged_at: self.acknowledged_at_ms.map(rfc3339),
            acknowledged_by: self.acknowledged_by.clone(),
            on_site_at: self.on_site_at_ms.map(rfc3339),
            closed_at: self.closed_at_ms.map(rfc3339),
            state_changed_at: rfc3339(self.state_changed_at_ms),
            response_due_at: rfc3339(self.opened_at_ms + response_target_ms),
            response_breached: self.response_breached,
            flood_group: self.flood_group,
            false_alarm_reason: self.false_alarm_reason.clone(),
            override_by: self.override_by.clone(),
            override_reason: self.override_reason.clone(),
        }
    }
}

/// Filters of `GET /incidents`.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub estate: Option<String>,
    pub state: Option<String>,
    pub category: Option<String>,
    /// Only open (true) or only closed / false alarms (false).
    pub open: Option<bool>,
    pub limit: i64,
}

pub async fn list_incidents(pool: &Pool, f: &IncidentFilter) -> Result<Vec<IncidentRow>, StoreError> {
    let mut q = Sql::new(format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE 1 = 1"));
    if let Some(e) = &f.estate {
        q.push(" AND estate_id = ").push_bind(e.clone());
    }
    if let Some(s) = &f.state {
        q.push(" AND state = ").push_bind(s.clone());
    }
    if let Some(c) = &f.category {
        q.push(" AND category = ").push_bind(c.clone());
    }
    match f.open {
        Some(true) => {
            q.push(" AND state NOT IN ('closed', 'false_alarm')");
        }
        Some(false) => {
            q.push(" AND state IN ('closed', 'false_alarm')");
        }
        None => {}
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
    q.build_query_as::<IncidentRow>()
        .fetch_all(pool)
        .await
        .context(|| "listing incidents".into())
}

pub async fn get_incident(conn: &mut Conn, id: i64) -> Result<Option<IncidentRow>, StoreError> {
    sqlx::query_as::<_, IncidentRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
    .context(|| format!("reading incident {id}"))
}

pub async fn incident_alarms(conn: &mut Conn, id: i64) -> Result<Vec<AlarmRow>, StoreError> {
    sqlx::query_as::<_, AlarmRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {ALARM_COLUMNS} FROM alarms WHERE id IN \
         (SELECT alarm_id FROM incident_alarms WHERE incident_id = $1) ORDER BY id"
    )))
    .bind(id)
    .fetch_all(conn)
    .await
    .context(|| format!("reading the alarms of incident {id}"))
}

/// A procedure step of an incident.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StepRow {
    pub idx: i64,
    pub step_id: String,
    pub text: String,
    #[sqlx(try_from = "crate::store::Flag")]
    pub mandatory: bool,
    pub status: String,
    #[serde(skip)]
    pub done_at_ms: Option<i64>,
    pub done_by: Option<String>,
    pub note: Option<String>,
}

pub async fn incident_steps(conn: &mut Conn, id: i64) -> Result<Vec<StepRow>, StoreError> {
    sqlx::query_as::<_, StepRow>(
        "SELECT idx, step_id, text, mandatory, status, done_at_ms, done_by, note \
         FROM incident_steps WHERE incident_id = $1 ORDER BY idx",
    )
    .bind(id)
    .fetch_all(conn)
    .await
    .context(|| format!("reading the steps of incident {id}"))
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct TimelineRow {
    id: i64,
    at_ms: i64,
    kind: String,
    actor: Option<String>,
    text: String,
    data: Option<String>,
}

/// One timeline entry as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineJson {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub actor: Option<String>,
    pub text: String,
    pub data: Value,
}

pub async fn timeline(conn: &mut Conn, id: i64) -> Result<Vec<TimelineJson>, StoreError> {
    let rows = sqlx::query_as::<_, TimelineRow>(
        "SELECT id, at_ms, kind, actor, text, data FROM incident_timeline WHERE incident_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(conn)
    .await
    .context(|| format!("reading the timeline of incident {id}"))?;
    Ok(rows
        .into_iter()
        .map(|r| TimelineJson {
            id: r.id,
            at: rfc3339(r.at_ms),
            kind: r.kind,
            actor: r.actor,
            text: r.text,
            data: r
                .data
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or(Value::Null),
        })
        .collect())
}

/// The open incidents of an estate (id, area, last alarm), for routing.
pub async fn open_incidents(conn: &mut Conn, estate: &str) -> Result<Vec<(i64, String, i64)>, StoreError> {
    sqlx::query_as(
        "SELECT id, area, last_alarm_at_ms FROM incidents WHERE estate_id = $1 \
         AND state NOT IN ('closed', 'false_alarm')",
    )
    .bind(estate)
    .fetch_all(&mut *conn)
    .await
    .context(|| "finding open incidents".into())
}

/// Links an alarm to its incident (both sides).
pub async fn link_alarm(conn: &mut Conn, iid: i64, alarm_id: i64, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO incident_alarms (incident_id, alarm_id, added_at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(iid)
    .bind(alarm_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .context(|| "linking an alarm to its incident".into())?;
    sqlx::query("UPDATE alarms SET incident_id = $1 WHERE id = $2")
        .bind(iid)
        .bind(alarm_id)
        .execute(&mut *conn)
        .await
        .context(|| "linking an alarm to its incident".into())?;
    Ok(())
}

/// An alarm joined: its time, and the incident's priority raised to `priority` if `raise`.
pub async fn alarm_joined(conn: &mut Conn, iid: i64, raise: bool, priority: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE incidents SET last_alarm_at_ms = $1, priority = CASE WHEN $2 THEN $3 ELSE priority END WHERE id = $4",
    )
    .bind(now)
    .bind(raise)
    .bind(priority)
    .bind(iid)
    .execute(&mut *conn)
    .await
    .context(|| "adding an alarm to an incident".into())?;
    Ok(())
}

/// An alarm of the incident raised again.
pub async fn alarm_retriggered(conn: &mut Conn, iid: i64, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE incidents SET last_alarm_at_ms = $1 WHERE id = $2")
        .bind(now)
        .bind(iid)
        .execute(&mut *conn)
        .await
        .context(|| "updating an incident".into())?;
    Ok(())
}

/// A new escalation run: the incident is unacknowledged again.
pub async fn restart_escalation(conn: &mut Conn, iid: i64, run: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE incidents SET escalation_run = $1, acknowledged_at_ms = NULL, acknowledged_by = NULL WHERE id = $2",
    )
    .bind(run)
    .bind(iid)
    .execute(&mut *conn)
    .await
    .context(|| "restarting escalation".into())?;
    Ok(())
}

/// What an incident opens with.
#[derive(Debug)]
pub struct NewIncident<'a> {
    pub estate: &'a str,
    pub area: &'a str,
    pub category: &'a str,
    pub priority: &'a str,
    pub title: &'a str,
    pub opened_by: &'a str,
    /// The escalation policy's steps as JSON, snapshotted into the incident.
    pub policy: &'a str,
    pub flood_group: bool,
}

/// Inserts an incident in `discovered`; returns its id.
pub async fn insert_incident(conn: &mut Conn, n: &NewIncident<'_>, now: i64) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "INSERT INTO incidents (estate_id, area, category, priority, title, state, opened_at_ms, opened_by, \
         last_alarm_at_ms, state_changed_at_ms, policy, flood_group) \
         VALUES ($1, $2, $3, $4, $5, 'discovered', $6, $7, $6, $6, $8, $9) RETURNING id",
    )
    .bind(n.estate)
    .bind(n.area)
    .bind(n.category)
    .bind(n.priority)
    .bind(n.title)
    .bind(now)
    .bind(n.opened_by)
    .bind(n.policy)
    .bind(n.flood_group)
    .fetch_one(&mut *conn)
    .await
    .context(|| "opening an incident".into())
}

/// One step of an incident's procedure, open.
pub async fn insert_step(
    conn: &mut Conn,
    iid: i64,
    idx: i64,
    step_id: &str,
    text: &str,
    mandatory: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO incident_steps (incident_id, idx, step_id, text, mandatory, status) VALUES ($1, $2, $3, $4, $5, 'open')",
    )
    .bind(iid)
    .bind(idx)
    .bind(step_id)
    .bind(text)
    .bind(mandatory)
    .execute(&mut *conn)
    .await
    .context(|| "writing an incident's procedure".into())?;
    Ok(())
}

pub async fn acknowledge(conn: &mut Conn, iid: i64, actor: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE incidents SET acknowledged_at_ms = $1, acknowledged_by = $2 WHERE id = $3")
        .bind(now)
        .bind(actor)
        .bind(iid)
        .execute(&mut *conn)
        .await
        .context(|| "acknowledging an incident".into())?;
    Ok(())
}

/// One row of an incident's timeline (`data` JSON, or NULL).
pub async fn insert_timeline(
    conn: &mut Conn,
    iid: i64,
    now: i64,
    kind: &str,
    actor: Option<&str>,
    text: &str,
    data: Option<String>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO incident_timeline (incident_id, at_ms, kind, actor, text, data) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(iid)
    .bind(now)
    .bind(kind)
    .bind(actor)
    .bind(text)
    .bind(data)
    .execute(&mut *conn)
    .await
    .context(|| "writing an incident's timeline".into())?;
    Ok(())
}

/// The ids of an incident's mandatory steps still open, in order.
pub async fn open_mandatory_steps(conn: &mut Conn, iid: i64) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT step_id FROM incident_steps WHERE incident_id = $1 AND mandatory = $2 AND status = 'open' ORDER BY idx",
    )
    .bind(iid)
    .bind(true)
    .fetch_all(&mut *conn)
    .await
    .context(|| "reading open steps".into())
}

/// The ids of an incident's alarms still active.
pub async fn active_alarm_ids(conn: &mut Conn, iid: i64) -> Result<Vec<i64>, StoreError> {
    sqlx::query_scalar(
        "SELECT a.id FROM alarms a JOIN incident_alarms ia ON ia.alarm_id = a.id WHERE ia.incident_id = $1 AND a.active = $2 ORDER BY a.id",
    )
    .bind(iid)
    .bind(true)
    .fetch_all(&mut *conn)
    .await
    .context(|| "reading active alarms of an incident".into())
}

/// A workflow transition as stored: the new state and what it stamps.
#[derive(Debug)]
pub struct StateChange<'a> {
    pub to: &'a str,
    pub on_site: bool,
    pub terminal: bool,
    pub false_alarm: bool,
    /// The false-alarm reason, or the override's reason.
    pub reason: Option<&'a str>,
    pub overridden: bool,
    pub override_by: Option<&'a str>,
}

pub async fn change_state(conn: &mut Conn, iid: i64, c: &StateChange<'_>, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE incidents SET state = $1, state_changed_at_ms = $2, transitions = transitions + 1, \
         on_site_at_ms = CASE WHEN $3 THEN $2 ELSE on_site_at_ms END, \
         closed_at_ms = CASE WHEN $4 THEN $2 ELSE closed_at_ms END, \
         false_alarm_reason = CASE WHEN $5 THEN $6 ELSE false_alarm_reason END, \
         override_by = CASE WHEN $7 THEN $8 ELSE override_by END, \
         override_reason = CASE WHEN $7 THEN $6 ELSE override_reason END WHERE id = $9",
    )
    .bind(c.to)
    .bind(now)
    .bind(c.on_site)
    .bind(c.terminal)
    .bind(c.false_alarm)
    .bind(c.reason)
    .bind(c.overridden)
    .bind(c.override_by)
    .bind(iid)
    .execute(&mut *conn)
    .await
    .context(|| "changing an incident's state".into())?;
    Ok(())
}

/// A mandatory step skipped by a supervisor's override.
pub async fn skip_step_by_override(
    conn: &mut Conn,
    iid: i64,
    step_id: &str,
    by: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE incident_steps SET status = 'skipped', done_at_ms = $1, done_by = $2, note = 'skipped by supervisor override' WHERE incident_id = $3 AND step_id = $4",
    )
    .bind(now)
    .bind(by)
    .bind(iid)
    .bind(step_id)
    .execute(&mut *conn)
    .await
    .context(|| "skipping steps".into())?;
    Ok(())
}

/// A procedure step done or skipped.
pub async fn record_step(
    conn: &mut Conn,
    iid: i64,
    idx: i64,
    status: &str,
    actor: &str,
    note: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE incident_steps SET status = $1, done_at_ms = $2, done_by = $3, note = $4 WHERE incident_id = $5 AND idx = $6",
    )
    .bind(status)
    .bind(now)
    .bind(actor)
    .bind(note)
    .bind(iid)
    .bind(idx)
    .execute(&mut *conn)
    .await
    .context(|| "recording a procedure step".into())?;
    Ok(())
}

pub async fn mark_response_breached(conn: &mut Conn, iid: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE incidents SET response_breached = $1 WHERE id = $2")
        .bind(true)
        .bind(iid)
        .execute(&mut *conn)
        .await
        .context(|| "recording a response-target breach".into())?;
    Ok(())
}
