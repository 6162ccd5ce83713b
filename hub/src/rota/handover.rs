//! Shift handover (交接班): at each change of shift the hub prepares a sheet per post — the
//! estate's open alarms and incidents, equipment faults, the notes left for the post, who
//! hands over and who takes over — which the incoming guard acknowledges. Unacknowledged
//! sheets are listed for the supervisor (`GET /rota/handovers?unacknowledged=true`).
//!
//! Pure: the sheet from the rows read (the shell reads and writes, in `shell/handovers.rs`),
//! and a stored sheet as the API shows it.

use serde_json::{Value, json};

use super::model::{PostConfig, Slot};
use super::queries::{HandoverRow, SheetAlarm, SheetIncident, SheetNote};
use crate::alarms::rfc3339;

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
