//! Shift handover (交接班): at each change of shift the hub prepares a sheet per post — the
//! estate's open alarms and incidents, equipment faults, the notes left for the post, who
//! hands over and who takes over — which the incoming guard acknowledges. Unacknowledged
//! sheets are listed for the supervisor (`GET /rota/handovers?unacknowledged=true`).
//!
//! Pure: the sheet from the rows read (the shell reads and writes them through
//! `queries.rs`, in `shell/handovers.rs`), and a stored sheet as the API shows it. The row
//! types are defined here and read by `queries.rs`, so this file depends on no I/O.

use serde_json::{Value, json};

use super::model::{PostConfig, Slot};
use crate::alarms::rfc3339;

/// An alarm of the estate still standing (active, or not acknowledged).
#[derive(sqlx::FromRow)]
pub struct SheetAlarm {
    pub id: i64,
    pub priority: String,
    pub category: String,
    pub area: String,
    pub message: String,
    #[sqlx(try_from = "crate::store::Flag")]
    pub active: bool,
    #[sqlx(try_from = "crate::store::Flag")]
    pub acknowledged: bool,
}

/// An open incident of the estate.
#[derive(sqlx::FromRow)]
pub struct SheetIncident {
    pub id: i64,
    pub title: String,
    pub state: String,
    pub priority: String,
    pub area: String,
}

/// A note left for a post, not yet on a sheet.
#[derive(sqlx::FromRow)]
pub struct SheetNote {
    pub id: i64,
    pub text: String,
    pub author: String,
    #[sqlx(rename = "at_ms")]
    pub at: i64,
}

/// The sheet of `post` for the shift `slot`: security and fire alarms as open alarms,
/// plant and device alarms as equipment faults.
pub fn sheet(
    post: &PostConfig,
    slot: &Slot,
    outgoing: &[String],
    incoming: &[String],
    alarms: &[SheetAlarm],
    incidents: &[SheetIncident],
    notes: &[SheetNote],
) -> Value {
    let alarm = |a: &SheetAlarm| json!({"id": a.id, "priority": a.priority, "category": a.category, "area": a.area, "message": a.message, "active": a.active, "acknowledged": a.acknowledged});
    json!({
        "estate": post.estate,
        "post": post.id,
        "shift": slot.shift,
        "shift_start": rfc3339(slot.start_ms),
        "shift_end": rfc3339(slot.end_ms),
        "outgoing": outgoing,
        "incoming": incoming,
        "open_alarms": alarms.iter().filter(|a| a.category == "security" || a.category == "fire").map(alarm).collect::<Vec<_>>(),
        "equipment_faults": alarms.iter().filter(|a| a.category == "plant" || a.category == "device").map(alarm).collect::<Vec<_>>(),
        "open_incidents": incidents.iter().map(|i| json!({"id": i.id, "title": i.title, "state": i.state, "priority": i.priority, "area": i.area})).collect::<Vec<_>>(),
        "notes": notes.iter().map(|n| json!({"text": n.text, "author": n.author, "at": rfc3339(n.at)})).collect::<Vec<_>>(),
    })
}

/// A stored sheet.
#[derive(sqlx::FromRow)]
pub struct HandoverRow {
    pub id: i64,
    #[sqlx(rename = "estate_id")]
    pub estate: String,
    #[sqlx(rename = "post_id")]
    pub post: String,
    #[sqlx(rename = "shift_start_ms")]
    pub shift_start: i64,
    #[sqlx(rename = "created_at_ms")]
    pub created_at: i64,
    /// The sheet as JSON text.
    pub sheet: String,
    pub acked_by: Option<String>,
    #[sqlx(rename = "acked_at_ms")]
    pub acked_at: Option<i64>,
}

/// A stored sheet as the API shows it.
pub fn to_json(row: &HandoverRow) -> Value {
    json!({
        "id": row.id,
        "estate": row.estate,
        "post": row.post,
        "shift_start": rfc3339(row.shift_start),
        "created_at": rfc3339(row.created_at),
        "sheet": serde_json::from_str::<Value>(&row.sheet).unwrap_or(Value::Null),
        "acknowledged": row.acked_by.is_some(),
        "acked_by": row.acked_by,
        "acked_at": row.acked_at.map(rfc3339),
    })
}
