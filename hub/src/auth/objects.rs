//! Which estate an object belongs to: the statements authorization needs to find the estate
//! behind an id in a path (an alarm, an incident, a command, an assignment, a patrol tour,
//! a handover, a notification) and whether a device exists. Read-only.

use sqlx::Row;

use crate::store::{Context, Pool, StoreError};

/// The kinds of object an id in a path can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Alarm,
    Incident,
    Command,
    Assignment,
    Patrol,
    Handover,
    Notification,
}

impl Object {
    pub fn name(self) -> &'static str {
        match self {
            Object::Alarm => "alarm",
            Object::Incident => "incident",
            Object::Command => "command",
            Object::Assignment => "assignment",
            Object::Patrol => "patrol tour",
            Object::Handover => "handover",
            Object::Notification => "notification",
        }
    }

    fn statement(self) -> &'static str {
        match self {
            Object::Alarm => "SELECT estate_id FROM alarms WHERE id = $1",
            Object::Incident => "SELECT estate_id FROM incidents WHERE id = $1",
            Object::Command => "SELECT estate_id FROM commands WHERE id = $1",
            Object::Assignment => "SELECT estate_id FROM rota_assignments WHERE id = $1",
            Object::Patrol => "SELECT estate_id FROM rota_patrol_tours WHERE id = $1",
            Object::Handover => "SELECT estate_id FROM rota_handovers WHERE id = $1",
            Object::Notification => {
                "SELECT i.estate_id FROM notifications n JOIN incidents i ON i.id = n.incident_id WHERE n.id = $1"
            }
        }
    }
}

/// The estate of object `id` (None: no such object).
pub async fn estate_of(pool: &Pool, object: Object, id: i64) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(object.statement())
        .bind(id)
        .fetch_optional(pool)
        .await
        .context(|| format!("finding the estate of {} {id}", object.name()))?;
    Ok(row.map(|r| r.get::<String, _>(0)))
}

/// The kind of device `device` of `estate`, if a gateway announced it.
pub async fn device_kind(pool: &Pool, estate: &str, device: &str) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT kind FROM devices WHERE estate_id = $1 AND device_id = $2 LIMIT 1")
        .bind(estate)
        .bind(device)
        .fetch_optional(pool)
        .await
        .context(|| format!("finding device {device} of {estate}"))?;
    Ok(row.map(|r| r.get::<String, _>(0)))
}
