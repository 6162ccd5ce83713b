//! Owns queueing notifications to a role's holders and recording claims and delivery outcomes; never sends: the deliverer does, after the commit.

use serde_json::{Value, json};
use tracing::warn;

use crate::alarms::rfc3339;
use crate::escalation::{Recipient, Role};
use crate::incidents::queries::IncidentRow;
use crate::notify::{Delivery, DeliveryOutcome, backoff_ms};
use crate::store::{Conn, StoreError};

use super::{Engine, q};

impl Engine {
    /// Queues a notification to everyone holding `role` at `estate`; logs it when nobody does.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn notify_role(
        &mut self,
        conn: &mut Conn,
        inc: Option<&IncidentRow>,
        estate: &str,
        role: Role,
        kind: &str,
        text: &str,
        now: i64,
    ) -> Result<usize, StoreError> {
        let recipients = self.resolver.resolve(estate, role, now);
        if recipients.is_empty() {
            warn!(
                estate,
                role = role.as_str(),
                kind,
                "nobody holds the role: notification not sent"
            );
            if let Some(inc) = inc {
                self.timeline(
                    conn,
                    inc.id,
                    now,
                    "notification",
                    None,
                    &format!(
                        "Nobody holds role {} at {estate}: {kind} notification not sent",
                        role.as_str()
                    ),
                    Value::Null,
                )
                .await?;
            }
            return Ok(0);
        }
        self.notify(conn, inc, estate, role, &recipients, kind, text, now)
            .await?;
        Ok(recipients.len())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn notify(
        &mut self,
        conn: &mut Conn,
        inc: Option<&IncidentRow>,
        estate: &str,
        role: Role,
        recipients: &[Recipient],
        kind: &str,
        text: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        for r in recipients {
            let id: i64 = q(
                sqlx::query_scalar(
                    "INSERT INTO notifications (incident_id, kind, role, recipient, channel, body, status, next_attempt_at_ms, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, '', 'pending', $6, $6) RETURNING id",
                )
                .bind(inc.map(|i| i.id))
                .bind(kind)
                .bind(role.as_str())
                .bind(&r.name)
                .bind(&r.channel)
                .bind(now)
                .fetch_one(&mut *conn)
                .await,
                "queueing a notification",
            )?;
            let body = json!({
                "notification_id": id,
                "kind": kind,
                "role": role.as_str(),
                "recipient": r.name,
                "estate": estate,
                "text": text,
                "created_at": rfc3339(now),
                "hub": self.cfg.hub_id,
                "incident": inc.map(|i| json!({
                    "id": i.id, "estate": i.estate_id, "area": i.area, "category": i.category,
                    "priority": i.priority, "title": i.title, "state": i.state,
                })),
            })
            .to_string();
            q(
                sqlx::query("UPDATE notifications SET body = $1 WHERE id = $2")
                    .bind(&body)
                    .bind(id)
                    .execute(&mut *conn)
                    .await,
                "queueing a notification",
            )?;
            if let Some(inc) = inc {
                let via = if r.channel == "log" { "log" } else { "webhook" };
                self.timeline(
                    conn,
                    inc.id,
                    now,
                    "notification",
                    None,
                    &format!(
                        "Notification #{id} to {} ({}) via {via} queued: {kind}",
                        r.name,
                        role.as_str()
                    ),
                    json!({"notification_id": id}),
                )
                .await?;
            }
            self.publish(
                "notification",
                id,
                "queued",
                json!({"incident_id": inc.map(|i| i.id), "kind": kind, "role": role.as_str(), "recipient": r.name}),
            );
        }
        self.wake = true;
        Ok(())
    }

    /// Leases due notifications to the deliverer.
    pub async fn claim_deliveries(
        &mut self,
        conn: &mut Conn,
        limit: i64,
        now: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows: Vec<(i64, String, String, String, i64)> = q(
            sqlx::query_as(
                "UPDATE notifications SET lease_until_ms = $1 WHERE id IN \
                 (SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at_ms <= $2 \
                  AND (lease_until_ms IS NULL OR lease_until_ms <= $2) ORDER BY id LIMIT $3) \
                 AND status = 'pending' AND (lease_until_ms IS NULL OR lease_until_ms <= $2) \
                 RETURNING id, channel, recipient, body, attempts",
            )
            .bind(now + 60_000)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await,
            "claiming notifications",
        )?;
        let mut out: Vec<Delivery> = rows
            .into_iter()
            .map(|(id, channel, recipient, body, attempts)| Delivery {
                id,
                channel,
                recipient,
                body,
                attempts,
            })
            .collect();
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    /// Records how a delivery went: delivered, a retry with backoff, or failed for good.
    pub async fn delivery_result(&mut self, conn: &mut Conn, o: &DeliveryOutcome, now: i64) -> Result<(), StoreError> {
        let row: Option<(Option<i64>, i64, String, String)> = q(
            sqlx::query_as("SELECT incident_id, attempts, recipient, status FROM notifications WHERE id = $1")
                .bind(o.id)
                .fetch_optional(&mut *conn)
                .await,
            "reading a notification",
        )?;
        let Some((iid, attempts, recipient, status)) = row else {
            return Ok(());
        };
        if status != "pending" {
            return Ok(());
        }
        let attempts = attempts + 1;
        let (status, next, text) = if o.ok {
            (
                "delivered",
                now,
                format!("Notification #{} to {recipient} delivered (attempt {attempts})", o.id),
            )
        } else if attempts >= self.cfg.max_attempts {
            (
                "failed",
                now,
                format!(
                    "Notification #{} to {recipient} FAILED after {attempts} attempts: {}",
                    o.id,
                    o.error.as_deref().unwrap_or("")
                ),
            )
        } else {
            let delay = backoff_ms(attempts, self.cfg.retry_initial_s, self.cfg.retry_max_s);
            (
                "pending",
                now + delay,
                format!(
                    "Notification #{} to {recipient}: attempt {attempts} failed ({}); retry in {} s",
                    o.id,
                    o.error.as_deref().unwrap_or(""),
                    delay / 1000
                ),
            )
        };
        q(
            sqlx::query(
                "UPDATE notifications SET status = $1, attempts = $2, next_attempt_at_ms = $3, lease_until_ms = NULL, \
                 last_error = $4, delivered_at_ms = $5 WHERE id = $6",
            )
            .bind(status)
            .bind(attempts)
            .bind(next)
            .bind(o.error.as_deref())
            .bind(o.ok.then_some(now))
            .bind(o.id)
            .execute(&mut *conn)
            .await,
            "recording a delivery",
        )?;
        if !o.ok {
            warn!(
                notification = o.id,
                attempts,
                error = o.error.as_deref().unwrap_or(""),
                "notification delivery failed"
            );
        }
        if let Some(iid) = iid {
            self.timeline(
                conn,
                iid,
                now,
                "notification",
                None,
                &text,
                json!({"notification_id": o.id, "status": status}),
            )
            .await?;
        }
        self.publish(
            "notification",
            o.id,
            status,
            json!({"incident_id": iid, "attempts": attempts, "error": o.error}),
        );
        Ok(())
    }
}
