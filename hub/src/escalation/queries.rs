//! Every SQL statement on `timers`: the durable deadlines of escalation steps, shelve
//! expiry, response targets and progress limits. A timer fires once: it is claimed by a
//! conditional UPDATE (`fired_at_ms IS NULL`) inside the writer's transaction.

use serde::Serialize;

use crate::alarms::rfc3339;
use crate::store::{Conn, Context, StoreError};

/// A durable timer row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TimerRow {
    pub id: i64,
    pub kind: String,
    pub incident_id: i64,
    pub alarm_id: i64,
    pub run: i64,
    pub step: i64,
    pub attempt: i64,
    pub role: Option<String>,
    pub condition: Option<String>,
    pub due_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub outcome: Option<String>,
}

pub(crate) const TIMER_COLUMNS: &str =
    "id, kind, incident_id, alarm_id, run, step, attempt, role, condition, due_at_ms, fired_at_ms, outcome";

/// An escalation timer as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TimerJson {
    pub kind: String,
    pub run: i64,
    pub step: i64,
    pub attempt: i64,
    pub role: Option<String>,
    pub condition: Option<String>,
    pub due_at: String,
    pub fired_at: Option<String>,
    /// null while pending; fired, skipped: ..., stopped: ..., superseded, ...
    pub outcome: Option<String>,
}

pub async fn incident_timers(conn: &mut Conn, id: i64) -> Result<Vec<TimerJson>, StoreError> {
    let rows = sqlx::query_as::<_, TimerRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {TIMER_COLUMNS} FROM timers WHERE incident_id = $1 ORDER BY run, due_at_ms, step, attempt, id"
    )))
    .bind(id)
    .fetch_all(conn)
    .await
    .context(|| format!("reading the timers of incident {id}"))?;
    Ok(rows
        .into_iter()
        .map(|t| TimerJson {
            kind: t.kind,
            run: t.run,
            step: t.step,
            attempt: t.attempt,
            role: t.role,
            condition: t.condition,
            due_at: rfc3339(t.due_at_ms),
            fired_at: t.fired_at_ms.map(rfc3339),
            outcome: t.outcome,
        })
        .collect())
}
