//! Every SQL statement on `notifications`: queueing (with the decision that caused it),
//! the deliverer's lease, outcomes and retries, and the API's reads.

use serde::Serialize;
use serde_json::Value;

use super::address::Address;
use crate::alarms::rfc3339;
use crate::store::{Conn, Context, Sql, StoreError};

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
    pub priority: Option<String>,
    #[sqlx(try_from = "crate::store::Flag")]
    pub urgent: bool,
    pub language: String,
    pub held: Option<String>,
    pub digest_id: Option<i64>,
    pub sent_at_ms: Option<i64>,
    pub escalation_step: Option<i64>,
    pub link_expires_at_ms: Option<i64>,
    pub reply_code: Option<String>,
    pub answer: Option<String>,
    pub answered_at_ms: Option<i64>,
    pub answer_via: Option<String>,
}

pub(crate) const NOTIFICATION_COLUMNS: &str = "id, incident_id, kind, role, recipient, channel, body, status, \
     attempts, next_attempt_at_ms, last_error, created_at_ms, delivered_at_ms, priority, urgent, language, held, \
     digest_id, sent_at_ms, escalation_step, link_expires_at_ms, reply_code, answer, answered_at_ms, answer_via";

/// A notification as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationJson {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub kind: String,
    pub role: String,
    pub recipient: String,
    /// `log`, `webhook`, `robot:<name>`, `email` or `sms` (a URL, an address or a number is
    /// not shown).
    pub channel: String,
    /// `pending` (`held` says why it waits), `sent` (accepted by a relay), `delivered`,
    /// `failed` (`last_error` says why), `digested` (carried by notification `digest_id`).
    pub status: String,
    /// `digest` | `quiet_hours` while a pending notification waits.
    pub held: Option<String>,
    pub digest_id: Option<i64>,
    pub priority: Option<String>,
    pub language: String,
    pub sent_at: Option<String>,
    /// `acknowledged` | `on_the_way`, by `answer_via` (`link` | `sms_reply`).
    pub answer: Option<String>,
    pub answered_at: Option<String>,
    pub answer_via: Option<String>,
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
            channel: match Address::parse(&self.channel) {
                Ok(Address::Robot(name)) => format!("robot:{name}"),
                Ok(a) => a.kind().to_owned(),
                Err(_) => "webhook".into(),
            },
            status: self.status.clone(),
            held: self.held.clone(),
            digest_id: self.digest_id,
            priority: self.priority.clone(),
            language: self.language.clone(),
            sent_at: self.sent_at_ms.map(rfc3339),
            answer: self.answer.clone(),
            answered_at: self.answered_at_ms.map(rfc3339),
            answer_via: self.answer_via.clone(),
            attempts: self.attempts,
            next_attempt_at: (self.status == "pending").then(|| rfc3339(self.next_attempt_at_ms)),
            last_error: self.last_error.clone(),
            created_at: rfc3339(self.created_at_ms),
            delivered_at: self.delivered_at_ms.map(rfc3339),
            body: without_answer_credentials(serde_json::from_str(&self.body).unwrap_or(Value::Null)),
        }
    }
}

/// The body as the API shows it: without the answer link and reply code, which let whoever
/// holds them answer *as the recipient* (an operator reading the incident must not).
fn without_answer_credentials(mut body: Value) -> Value {
    if let Some(o) = body.as_object_mut() {
        o.remove("answer_url");
        o.remove("reply_code");
        if let Some(Value::Array(items)) = o.get_mut("items") {
            for item in items.iter_mut() {
                *item = without_answer_credentials(item.take());
            }
        }
    }
    body
}

/// Filters of `GET /notifications`.
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    pub incident: Option<i64>,
    pub status: Option<String>,
    pub limit: i64,
}

pub async fn list_notifications(conn: &mut Conn, f: &NotificationFilter) -> Result<Vec<NotificationRow>, StoreError> {
    let mut q = Sql::new(format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE 1 = 1"));
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

/// A notification to queue.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub incident_id: Option<i64>,
    pub kind: &'a str,
    pub role: &'a str,
    pub recipient: &'a str,
    pub channel: &'a str,
    pub priority: Option<&'a str>,
    pub urgent: bool,
    pub language: &'a str,
    /// How far the escalation had gone (0 = its first notice); `None` for other kinds.
    pub escalation_step: Option<i64>,
    pub now: i64,
}

/// Queues a notification (pending, due now, body filled in by [`set_body`]); returns its id.
pub async fn insert_notification(conn: &mut Conn, n: &NewNotification<'_>) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "INSERT INTO notifications (incident_id, kind, role, recipient, channel, body, status, next_attempt_at_ms, \
         created_at_ms, priority, urgent, language, escalation_step) \
         VALUES ($1, $2, $3, $4, $5, '', 'pending', $6, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(n.incident_id)
    .bind(n.kind)
    .bind(n.role)
    .bind(n.recipient)
    .bind(n.channel)
    .bind(n.now)
    .bind(n.priority)
    .bind(n.urgent)
    .bind(n.language)
    .bind(n.escalation_step)
    .fetch_one(&mut *conn)
    .await
    .context(|| "queueing a notification".into())
}

/// The body names the notification's own id, so it is written after the insert.
pub async fn set_body(conn: &mut Conn, id: i64, body: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE notifications SET body = $1 WHERE id = $2")
        .bind(body)
        .bind(id)
        .execute(&mut *conn)
        .await
        .context(|| "queueing a notification".into())?;
    Ok(())
}

/// (incident, attempts, recipient, status) of one notification.
pub async fn delivery_state(
    conn: &mut Conn,
    id: i64,
) -> Result<Option<(Option<i64>, i64, String, String)>, StoreError> {
    sqlx::query_as("SELECT incident_id, attempts, recipient, status FROM notifications WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .context(|| "reading a notification".into())
}

/// An attempt's outcome: the new status (`sent` and `delivered` stamp `sent_at_ms`,
/// `delivered` also `delivered_at_ms`), attempts, next attempt; the lease released.
pub async fn record_attempt(
    conn: &mut Conn,
    id: i64,
    status: &str,
    attempts: i64,
    next_attempt_at_ms: i64,
    error: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let sent = matches!(status, "sent" | "delivered").then_some(now);
    let delivered = (status == "delivered").then_some(now);
    sqlx::query(
        "UPDATE notifications SET status = $1, attempts = $2, next_attempt_at_ms = $3, lease_until_ms = NULL, \
         last_error = $4, sent_at_ms = $5, delivered_at_ms = $6 WHERE id = $7",
    )
    .bind(status)
    .bind(attempts)
    .bind(next_attempt_at_ms)
    .bind(error)
    .bind(sent)
    .bind(delivered)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context(|| "recording a delivery".into())?;
    Ok(())
}

/// The answer link's expiry and the SMS reply code of a queued notification (also in its
/// body, which the caller writes).
pub async fn set_answer_link(
    conn: &mut Conn,
    id: i64,
    link_expires_at_ms: i64,
    reply_code: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE notifications SET link_expires_at_ms = $1, reply_code = $2 WHERE id = $3")
        .bind(link_expires_at_ms)
        .bind(reply_code)
        .bind(id)
        .execute(&mut *conn)
        .await
        .context(|| "storing an answer link".into())?;
    Ok(())
}

/// Whether a reply code is held by a row that can still be answered (a code is reused only
/// once its row is answered or its link has expired).
pub async fn reply_code_taken(conn: &mut Conn, code: &str, now: i64) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM notifications WHERE reply_code = $1 AND answer IS NULL \
         AND link_expires_at_ms > $2",
    )
    .bind(code)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .context(|| "checking a reply code".into())?;
    Ok(n > 0)
}

/// One notification by id (any connection: the writer's transaction or the pool).
pub async fn notification<'c, E>(conn: E, id: i64) -> Result<Option<NotificationRow>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query_as::<_, NotificationRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
    .context(|| format!("reading notification {id}"))
}

/// The latest rows that hold `code`, newest first (a code is unique among rows still open
/// to an answer, and an SMS reply names one of them by its sender).
pub async fn by_reply_code(conn: &crate::store::Pool, code: &str) -> Result<Vec<NotificationRow>, StoreError> {
    sqlx::query_as::<_, NotificationRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE reply_code = $1 ORDER BY id DESC LIMIT 16"
    )))
    .bind(code)
    .fetch_all(conn)
    .await
    .context(|| "finding a reply code".into())
}

/// Records the first answer of a notification: `false` when it already had one.
pub async fn record_answer(conn: &mut Conn, id: i64, answer: &str, via: &str, now: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE notifications SET answer = $1, answered_at_ms = $2, answer_via = $3 \
         WHERE id = $4 AND answer IS NULL",
    )
    .bind(answer)
    .bind(now)
    .bind(via)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context(|| "recording an answer".into())?;
    Ok(done.rows_affected() == 1)
}

/// The answer links' key kept in `hub_secrets` (`answer_link_key`), made from `fresh` at
/// first start: run before the writer starts, so the single INSERT is not racing it.
pub async fn answer_link_key(pool: &crate::store::Pool, fresh: &str, now: i64) -> Result<String, StoreError> {
    sqlx::query(
        "INSERT INTO hub_secrets (name, value, created_at_ms) VALUES ('answer_link_key', $1, $2) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(fresh)
    .bind(now)
    .execute(pool)
    .await
    .context(|| "keeping the answer links' key".into())?;
    sqlx::query_scalar("SELECT value FROM hub_secrets WHERE name = 'answer_link_key'")
        .fetch_one(pool)
        .await
        .context(|| "reading the answer links' key".into())
}

// ---- Pacing: digests and quiet hours (see `super::pacing`) ----

/// Stores the recipient's pacing preferences on a queued row (read back when it is claimed).
pub async fn set_pacing(
    conn: &mut Conn,
    id: i64,
    quiet_hours: Option<&str>,
    digest_interval_s: Option<i64>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE notifications SET quiet_hours = $1, digest_interval_s = $2 WHERE id = $3")
        .bind(quiet_hours)
        .bind(digest_interval_s)
        .bind(id)
        .execute(&mut *conn)
        .await
        .context(|| "queueing a notification".into())?;
    Ok(())
}

/// A pending row as the claim paces it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PacedRow {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub kind: String,
    pub role: String,
    pub recipient: String,
    pub channel: String,
    pub body: String,
    pub attempts: i64,
    pub priority: Option<String>,
    #[sqlx(try_from = "crate::store::Flag")]
    pub urgent: bool,
    pub language: String,
    pub held: Option<String>,
    pub escalation_step: Option<i64>,
    pub created_at_ms: i64,
    pub quiet_hours: Option<String>,
    pub digest_interval_s: Option<i64>,
}

/// The columns of [`PacedRow`], as a literal (statements are static strings).
macro_rules! paced_columns {
    () => {
        "id, incident_id, kind, role, recipient, channel, body, attempts, priority, urgent, language, held, \
         escalation_step, created_at_ms, quiet_hours, digest_interval_s"
    };
}

/// Up to `limit` pending rows due by `now` and not leased, oldest first.
pub async fn due_rows(conn: &mut Conn, now: i64, limit: i64) -> Result<Vec<PacedRow>, StoreError> {
    sqlx::query_as(concat!(
        "SELECT ",
        paced_columns!(),
        " FROM notifications WHERE status = 'pending' AND next_attempt_at_ms <= $1 \
         AND (lease_until_ms IS NULL OR lease_until_ms <= $1) ORDER BY id LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context(|| "claiming notifications".into())
}

/// A recipient's rows held for quiet hours about `incident` (an escalation releases them).
pub async fn quiet_held(
    conn: &mut Conn,
    recipient: &str,
    channel: &str,
    incident: i64,
    now: i64,
) -> Result<Vec<PacedRow>, StoreError> {
    sqlx::query_as(concat!(
        "SELECT ",
        paced_columns!(),
        " FROM notifications WHERE recipient = $1 AND channel = $2 AND status = 'pending' \
         AND held = 'quiet_hours' AND incident_id = $3 AND (lease_until_ms IS NULL OR lease_until_ms <= $4) ORDER BY id"
    ))
    .bind(recipient)
    .bind(channel)
    .bind(incident)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .context(|| "claiming notifications".into())
}

/// Leases one pending row until `lease_until` (no longer held): (id, channel, recipient,
/// body, attempts); `None` if another claim took it.
pub async fn lease(
    conn: &mut Conn,
    id: i64,
    lease_until: i64,
    now: i64,
) -> Result<Option<(i64, String, String, String, i64)>, StoreError> {
    sqlx::query_as(
        "UPDATE notifications SET lease_until_ms = $1, held = NULL WHERE id = $2 AND status = 'pending' \
         AND (lease_until_ms IS NULL OR lease_until_ms <= $3) RETURNING id, channel, recipient, body, attempts",
    )
    .bind(lease_until)
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .context(|| "claiming notifications".into())
}

/// Holds a pending row back (`digest` | `quiet_hours`) until `until`.
pub async fn hold(conn: &mut Conn, id: i64, held: &str, until: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE notifications SET held = $1, next_attempt_at_ms = $2, lease_until_ms = NULL \
         WHERE id = $3 AND status = 'pending'",
    )
    .bind(held)
    .bind(until)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context(|| "holding a notification".into())?;
    Ok(())
}

/// A pending row is carried by digest `digest_id`.
pub async fn mark_digested(conn: &mut Conn, id: i64, digest_id: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE notifications SET status = 'digested', digest_id = $1, held = NULL, lease_until_ms = NULL \
         WHERE id = $2 AND status = 'pending'",
    )
    .bind(digest_id)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context(|| "digesting a notification".into())?;
    Ok(())
}

/// When `recipient` on `channel` was last sent a message.
pub async fn last_sent(conn: &mut Conn, recipient: &str, channel: &str) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar("SELECT last_sent_at_ms FROM notify_pacing WHERE recipient = $1 AND channel = $2")
        .bind(recipient)
        .bind(channel)
        .fetch_optional(&mut *conn)
        .await
        .context(|| "reading a recipient's pacing".into())
}

pub async fn set_last_sent(conn: &mut Conn, recipient: &str, channel: &str, at: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO notify_pacing (recipient, channel, last_sent_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (recipient, channel) DO UPDATE SET last_sent_at_ms = excluded.last_sent_at_ms",
    )
    .bind(recipient)
    .bind(channel)
    .bind(at)
    .execute(&mut *conn)
    .await
    .context(|| "recording a recipient's pacing".into())?;
    Ok(())
}

/// A digest's outcome for good (`sent`, `delivered` or `failed`) becomes its members':
/// returns them (id, incident).
pub async fn settle_digest_members(
    conn: &mut Conn,
    digest_id: i64,
    status: &str,
    error: Option<&str>,
    now: i64,
) -> Result<Vec<(i64, Option<i64>)>, StoreError> {
    let sent = matches!(status, "sent" | "delivered").then_some(now);
    let delivered = (status == "delivered").then_some(now);
    sqlx::query_as(
        "UPDATE notifications SET status = $1, sent_at_ms = $2, delivered_at_ms = $3, last_error = $4 \
         WHERE digest_id = $5 AND status = 'digested' RETURNING id, incident_id",
    )
    .bind(status)
    .bind(sent)
    .bind(delivered)
    .bind(error)
    .bind(digest_id)
    .fetch_all(&mut *conn)
    .await
    .context(|| "recording a digest's delivery".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_body_carries_no_answer_link_or_reply_code_even_in_a_digest() {
        let body = serde_json::json!({
            "text": "x", "answer_url": "http://h/n/tok", "reply_code": "ABC123",
            "items": [{"text": "y", "answer_url": "http://h/n/t2", "reply_code": "DEF456"}],
        });
        let shown = without_answer_credentials(body).to_string();
        assert!(
            !shown.contains("/n/") && !shown.contains("ABC123") && !shown.contains("DEF456"),
            "{shown}"
        );
        assert!(shown.contains("\"text\":\"y\""), "{shown}");
    }
}
