//! Shift handover (交接班): at each change of shift the hub prepares a sheet per post — the
//! estate's open alarms and incidents, equipment faults, the notes left for the post, who
//! hands over and who takes over — which the incoming guard acknowledges. Unacknowledged
//! sheets are listed for the supervisor (`GET /rota/handovers?unacknowledged=true`).

use serde_json::{Value, json};

use super::model::{PostConfig, Slot};
use crate::alarms::rfc3339;
use crate::error::OpError;
use crate::store::{Conn, Context, StoreError};

fn q<T>(r: Result<T, sqlx::Error>, what: &str) -> Result<T, StoreError> {
    r.context(|| what.to_owned())
}

/// Writes the sheet of `post` for the shift `slot` (once); returns its id when new.
pub async fn prepare(
    conn: &mut Conn,
    post: &PostConfig,
    slot: &Slot,
    outgoing: &[String],
    incoming: &[String],
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let alarms: Vec<(i64, String, String, String, String, bool, bool)> = q(
        sqlx::query_as(
            "SELECT id, priority, category, area, message, active, acknowledged FROM alarms \
             WHERE estate_id = $1 AND (active = $2 OR acknowledged = $3) ORDER BY priority, id",
        )
        .bind(&post.estate)
        .bind(true)
        .bind(false)
        .fetch_all(&mut *conn)
        .await,
        "reading open alarms for a handover",
    )?;
    let incidents: Vec<(i64, String, String, String, String)> = q(
        sqlx::query_as(
            "SELECT id, title, state, priority, area FROM incidents WHERE estate_id = $1 \
             AND state NOT IN ('closed', 'false_alarm') ORDER BY id",
        )
        .bind(&post.estate)
        .fetch_all(&mut *conn)
        .await,
        "reading open incidents for a handover",
    )?;
    let notes: Vec<(i64, String, String, i64)> = q(
        sqlx::query_as(
            "SELECT id, text, author, at_ms FROM rota_notes WHERE post_id = $1 AND handover_id IS NULL ORDER BY id",
        )
        .bind(&post.id)
        .fetch_all(&mut *conn)
        .await,
        "reading handover notes",
    )?;
    let alarm = |a: &(i64, String, String, String, String, bool, bool)| json!({"id": a.0, "priority": a.1, "category": a.2, "area": a.3, "message": a.4, "active": a.5, "acknowledged": a.6});
    let sheet = json!({
        "estate": post.estate,
        "post": post.id,
        "shift": slot.shift,
        "shift_start": rfc3339(slot.start_ms),
        "shift_end": rfc3339(slot.end_ms),
        "outgoing": outgoing,
        "incoming": incoming,
        "open_alarms": alarms.iter().filter(|a| a.2 == "security" || a.2 == "fire").map(alarm).collect::<Vec<_>>(),
        "equipment_faults": alarms.iter().filter(|a| a.2 == "plant" || a.2 == "device").map(alarm).collect::<Vec<_>>(),
        "open_incidents": incidents.iter().map(|i| json!({"id": i.0, "title": i.1, "state": i.2, "priority": i.3, "area": i.4})).collect::<Vec<_>>(),
        "notes": notes.iter().map(|n| json!({"text": n.1, "author": n.2, "at": rfc3339(n.3)})).collect::<Vec<_>>(),
    });
    let id: Option<i64> = q(
        sqlx::query_scalar(
            "INSERT INTO rota_handovers (estate_id, post_id, shift_start_ms, created_at_ms, sheet) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (post_id, shift_start_ms) DO NOTHING RETURNING id",
        )
        .bind(&post.estate)
        .bind(&post.id)
        .bind(slot.start_ms)
        .bind(now)
        .bind(sheet.to_string())
        .fetch_optional(&mut *conn)
        .await,
        "writing a handover sheet",
    )?;
    if let Some(id) = id {
        for n in &notes {
            q(
                sqlx::query("UPDATE rota_notes SET handover_id = $1 WHERE id = $2")
                    .bind(id)
                    .bind(n.0)
                    .execute(&mut *conn)
                    .await,
                "attaching handover notes",
            )?;
        }
    }
    Ok(id)
}

/// The incoming guard acknowledges a sheet.
pub async fn acknowledge(conn: &mut Conn, id: i64, guard: &str, now: i64) -> Result<Result<i64, OpError>, StoreError> {
    let row: Option<Option<String>> = q(
        sqlx::query_scalar("SELECT acked_by FROM rota_handovers WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await,
        "reading a handover",
    )?;
    match row {
        None => return Ok(Err(OpError::NotFound(format!("handover {id} not found")))),
        Some(Some(by)) => {
            return Ok(Err(OpError::Conflict(format!(
                "handover {id} was acknowledged by {by}"
            ))));
        }
        Some(None) => {}
    }
    q(
        sqlx::query("UPDATE rota_handovers SET acked_by = $1, acked_at_ms = $2 WHERE id = $3")
            .bind(guard)
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await,
        "acknowledging a handover",
    )?;
    Ok(Ok(id))
}

/// A stored sheet as the API shows it.
pub fn to_json(row: &(i64, String, String, i64, i64, String, Option<String>, Option<i64>)) -> Value {
    let (id, estate, post, shift_start, created, sheet, acked_by, acked_at) = row;
    json!({
        "id": id,
        "estate": estate,
        "post": post,
        "shift_start": rfc3339(*shift_start),
        "created_at": rfc3339(*created),
        "sheet": serde_json::from_str::<Value>(sheet).unwrap_or(Value::Null),
        "acknowledged": acked_by.is_some(),
        "acked_by": acked_by,
        "acked_at": acked_at.map(rfc3339),
    })
}
