//! Every SQL statement on `notifications`: queueing (with the decision that caused it),
//! the deliverer's lease, outcomes and retries, and the API's reads.

use serde::Serialize;
use serde_json::Value;
use sqlx::{QueryBuilder, Sqlite};

use crate::alarms::rfc3339;
use crate::store::{Conn, Context, StoreError};

/// A notification row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub kind: String,
    pub role: String,
    pub recipient: String,
    pub channel: String,
    pub body: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
}

pub(crate) const NOTIFICATION_COLUMNS: &str = "id, incident_id, kind, role, recipient, channel, body, status, \
     attempts, next_attempt_at_ms, last_error, created_at_ms, delivered_at_ms";

/// A notification as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationJson {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub kind: String,
    pub role: String,
    pub recipient: String,
    /// `log` or `webhook` (the URL is not shown).
    pub channel: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub body: Value,
}

impl NotificationRow {
    pub fn to_json(&self) -> NotificationJson {
        NotificationJson {
            id: self.id,
            incident_id: self.incident_id,
            kind: self.kind.clone(),
            role: self.role.clone(),
            recipient: self.recipient.clone(),
            channel: if self.channel == "log" {
                "log".into()
            } else {
                "webhook".into()
            },
            status: self.status.clone(),
            attempts: self.attempts,
            next_attempt_at: (self.status == "pending").then(|| rfc3339(self.next_attempt_at_ms)),
            last_error: self.last_error.clone(),
            created_at: rfc3339(self.created_at_ms),
            delivered_at: self.delivered_at_ms.map(rfc3339),
            body: serde_json::from_str(&self.body).unwrap_or(Value::Null),
        }
    }
}

/// Filters of `GET /notifications`.
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    pub incident: Option<i64>,
    pub status: Option<String>,
    pub limit: i64,
}

pub async fn list_notifications(conn: &mut Conn, f: &NotificationFilter) -> Result<Vec<NotificationRow>, StoreError> {
    let mut q: QueryBuilder<Sqlite> =
        QueryBuilder::new(format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE 1 = 1"));
    if let Some(i) = f.incident {
        q.push(" AND incident_id = ").push_bind(i);
    }
    if let Some(s) = &f.status {
        q.push(" AND status = ").push_bind(s.clone());
    }
    q.push(" ORDER BY id LIMIT ").push_bind(f.limit);
    q.build_query_as::<NotificationRow>()
        .fetch_all(conn)
        .await
        .context(|| "listing notifications".into())
}
