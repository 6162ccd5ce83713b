//! Every SQL statement on incidents, their alarms, procedure steps and timeline: the reads
//! of the API and the writes of the engine (inside the writer's transaction).

use serde::Serialize;
use serde_json::Value;
use sqlx::{QueryBuilder, Sqlite};

use crate::alarms::queries::{ALARM_COLUMNS, AlarmRow};
use crate::alarms::rfc3339;
use crate::store::{Conn, Context, Pool, StoreError};

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
    pub flood_group: bool,
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
    let mut q: QueryBuilder<Sqlite> =
        QueryBuilder::new(format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE 1 = 1"));
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
