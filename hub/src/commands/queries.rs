//! Every SQL statement on `commands`, and the device lookup a command starts from. Writes
//! run only inside the single writer's transaction.

use serde_json::{Value, json};

use crate::alarms::rfc3339;
use crate::store::{Conn, Context, Pool, Sql, StoreError};

/// One command as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CommandRow {
    pub id: i64,
    pub estate_id: String,
    pub gateway_id: String,
    pub device_id: String,
    pub device_kind: String,
    pub action: String,
    pub args: String,
    pub operator: String,
    pub reason: Option<String>,
    pub incident_id: Option<i64>,
    pub state: String,
    pub detail: Option<String>,
    pub created_at_ms: i64,
    pub deadline_ms: i64,
    pub finished_at_ms: Option<i64>,
}

impl CommandRow {
    /// The command as `GET /commands/{id}` answers it and the stream's `command` event
    /// carries it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "estate": self.estate_id,
            "gateway": self.gateway_id,
            "device": self.device_id,
            "device_kind": self.device_kind,
            "action": self.action,
            "args": serde_json::from_str::<Value>(&self.args).unwrap_or(Value::Null),
            "operator": self.operator,
            "reason": self.reason,
            "incident_id": self.incident_id,
            "state": self.state,
            "detail": self.detail,
            "created_at": rfc3339(self.created_at_ms),
            "deadline": rfc3339(self.deadline_ms),
            "finished_at": self.finished_at_ms.map(rfc3339),
        })
    }
}

/// A command to record.
#[derive(Debug, Clone)]
pub struct NewCommand {
    pub estate_id: String,
    pub gateway_id: String,
    pub device_id: String,
    pub device_kind: String,
    pub action: String,
    /// JSON object of string arguments.
    pub args: String,
    pub operator: String,
    pub reason: Option<String>,
    pub incident_id: Option<i64>,
}

const COLUMNS: &str = "id, estate_id, gateway_id, device_id, device_kind, action, args, operator, reason, \
     incident_id, state, detail, created_at_ms, deadline_ms, finished_at_ms";

/// Records a command as `sent`; returns its id.
pub async fn insert(conn: &mut Conn, c: &NewCommand, now: i64, deadline_ms: i64) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "INSERT INTO commands (estate_id, gateway_id, device_id, device_kind, action, args, operator, \
         reason, incident_id, state, created_at_ms, deadline_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'sent', $10, $11) RETURNING id",
    )
    .bind(&c.estate_id)
    .bind(&c.gateway_id)
    .bind(&c.device_id)
    .bind(&c.device_kind)
    .bind(&c.action)
    .bind(&c.args)
    .bind(&c.operator)
    .bind(&c.reason)
    .bind(c.incident_id)
    .bind(now)
    .bind(deadline_ms)
    .fetch_one(&mut *conn)
    .await
    .context(|| format!("recording a command to device {}", c.device_id))
}

/// Settles a command: its state, the reason or answer, and when.
pub async fn settle(conn: &mut Conn, id: i64, state: &str, detail: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE commands SET state = $1, detail = $2, finished_at_ms = $3 WHERE id = $4")
        .bind(state)
        .bind(detail)
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await
        .context(|| format!("settling command {id}"))?;
    Ok(())
}

/// One command, in the writer's transaction.
pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<CommandRow>, StoreError> {
    sqlx::query_as::<_, CommandRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM commands WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
    .context(|| format!("reading command {id}"))
}

/// One command, from the pool.
pub async fn find(pool: &Pool, id: i64) -> Result<Option<CommandRow>, StoreError> {
    let mut conn = pool.acquire().await.context(|| format!("reading command {id}"))?;
    get(&mut conn, id).await
}

/// Filters of `GET /commands`.
#[derive(Debug, Clone, Default)]
pub struct CommandFilter {
    pub estate: Option<String>,
    pub device: Option<String>,
    pub incident: Option<i64>,
    pub limit: i64,
}

/// Commands, newest first.
pub async fn list(pool: &Pool, f: &CommandFilter) -> Result<Vec<CommandRow>, StoreError> {
    let mut q = Sql::new(format!("SELECT {COLUMNS} FROM commands WHERE 1 = 1"));
    if let Some(e) = &f.estate {
        q.push(" AND estate_id = ").push_bind(e.clone());
    }
    if let Some(d) = &f.device {
        q.push(" AND device_id = ").push_bind(d.clone());
    }
    if let Some(i) = f.incident {
        q.push(" AND incident_id = ").push_bind(i);
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
    q.build_query_as::<CommandRow>()
        .fetch_all(pool)
        .await
        .context(|| "listing commands".into())
}

/// A device of an estate as its gateway last announced it: (gateway, kind). A device id
/// is unique within its estate; if two gateways announced it, the latest stream's wins.
pub async fn find_device(pool: &Pool, estate: &str, device: &str) -> Result<Option<(String, String)>, StoreError> {
    sqlx::query_as::<_, (String, String)>(
        "SELECT d.gateway_id, d.kind FROM devices d LEFT JOIN gateways g ON g.id = d.gateway_id \
         WHERE d.estate_id = $1 AND d.device_id = $2 \
         ORDER BY COALESCE(g.connected_at_ms, 0) DESC LIMIT 1",
    )
    .bind(estate)
    .bind(device)
    .fetch_optional(pool)
    .await
    .context(|| format!("looking up device {device} of estate {estate}"))
}
