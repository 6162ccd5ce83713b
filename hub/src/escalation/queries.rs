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

/// Pending (unfired) steps of one escalation run.
pub async fn pending_steps(conn: &mut Conn, iid: i64, run: i64) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM timers WHERE incident_id = $1 AND kind = 'escalation' AND run = $2 AND fired_at_ms IS NULL",
    )
    .bind(iid)
    .bind(run)
    .fetch_one(&mut *conn)
    .await
    .context(|| "counting pending escalation steps".into())
}

/// Supersedes every pending escalation step of an incident; returns how many.
pub async fn supersede_run(conn: &mut Conn, iid: i64, now: i64) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE timers SET fired_at_ms = $1, outcome = 'superseded' WHERE incident_id = $2 AND kind = 'escalation' AND fired_at_ms IS NULL",
    )
    .bind(now)
    .bind(iid)
    .execute(&mut *conn)
    .await
    .context(|| "superseding an escalation run".into())?
    .rows_affected())
}

/// Stops every pending timer of an incident (it closed).
pub async fn stop_all(conn: &mut Conn, iid: i64, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE timers SET fired_at_ms = $1, outcome = 'stopped: incident closed' WHERE incident_id = $2 AND fired_at_ms IS NULL",
    )
    .bind(now)
    .bind(iid)
    .execute(&mut *conn)
    .await
    .context(|| "stopping an incident's timers".into())?;
    Ok(())
}

/// One planned escalation step (an attempt of it).
#[allow(clippy::too_many_arguments)]
pub async fn insert_step(
    conn: &mut Conn,
    iid: i64,
    run: i64,
    step: i64,
    attempt: i64,
    role: &str,
    condition: &str,
    due_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO timers (kind, incident_id, run, step, attempt, role, condition, due_at_ms) \
         VALUES ('escalation', $1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(iid)
    .bind(run)
    .bind(step)
    .bind(attempt)
    .bind(role)
    .bind(condition)
    .bind(due_ms)
    .execute(&mut *conn)
    .await
    .context(|| "planning escalation".into())?;
    Ok(())
}

/// Any other timer (`shelve_expiry`, `response_target`, `progress`).
pub async fn insert_timer(
    conn: &mut Conn,
    kind: &str,
    iid: i64,
    alarm_id: i64,
    run: i64,
    due: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO timers (kind, incident_id, alarm_id, run, due_at_ms) VALUES ($1, $2, $3, $4, $5)")
        .bind(kind)
        .bind(iid)
        .bind(alarm_id)
        .bind(run)
        .bind(due)
        .execute(&mut *conn)
        .await
        .context(|| "scheduling a timer".into())?;
    Ok(())
}

/// Stops pending escalation steps (of one condition, or all); returns how many.
pub async fn stop_steps(
    conn: &mut Conn,
    iid: i64,
    condition: Option<&str>,
    outcome: &str,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE timers SET fired_at_ms = $1, outcome = $2 WHERE incident_id = $3 AND kind = 'escalation' \
         AND fired_at_ms IS NULL AND ($4 IS NULL OR condition = $4)",
    )
    .bind(now)
    .bind(outcome)
    .bind(iid)
    .bind(condition)
    .execute(&mut *conn)
    .await
    .context(|| "stopping escalation steps".into())?
    .rows_affected())
}

/// When the next pending step of a run after `step` falls due.
pub async fn next_step_due(conn: &mut Conn, iid: i64, run: i64, step: i64) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar(
        "SELECT MIN(due_at_ms) FROM timers WHERE incident_id = $1 AND run = $2 AND kind = 'escalation' AND fired_at_ms IS NULL AND step > $3",
    )
    .bind(iid)
    .bind(run)
    .bind(step)
    .fetch_one(&mut *conn)
    .await
    .context(|| "finding the next escalation step".into())
}

/// Brings the pending steps of a run after `step` forward by `by_ms`.
pub async fn bring_forward(conn: &mut Conn, iid: i64, run: i64, step: i64, by_ms: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE timers SET due_at_ms = due_at_ms - $1 WHERE incident_id = $2 AND run = $3 AND kind = 'escalation' AND fired_at_ms IS NULL AND step > $4",
    )
    .bind(by_ms)
    .bind(iid)
    .bind(run)
    .bind(step)
    .execute(&mut *conn)
    .await
    .context(|| "bringing the next escalation step forward".into())?;
    Ok(())
}

/// Claims up to 500 due timers for `hub_id`: a conditional UPDATE, so each fires once.
pub async fn claim_due(conn: &mut Conn, hub_id: &str, now: i64) -> Result<Vec<TimerRow>, StoreError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE timers SET fired_at_ms = $1, claimed_by = $2 WHERE id IN \
         (SELECT id FROM timers WHERE fired_at_ms IS NULL AND due_at_ms <= $1 ORDER BY due_at_ms, id LIMIT 500) \
         AND fired_at_ms IS NULL RETURNING {TIMER_COLUMNS}"
    )))
    .bind(now)
    .bind(hub_id)
    .fetch_all(&mut *conn)
    .await
    .context(|| "claiming due timers".into())
}

pub async fn record_outcome(conn: &mut Conn, id: i64, outcome: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE timers SET outcome = $1 WHERE id = $2")
        .bind(outcome)
        .bind(id)
        .execute(&mut *conn)
        .await
        .context(|| "recording a timer's outcome".into())?;
    Ok(())
}
