//! Applies the notification outbox: queueing to a role's holders, the deliverer's claims,
//! delivery outcomes and retries. Never sends: the deliverer does, after the commit.

use serde_json::{Value, json};
use tracing::warn;

use crate::alarms::rfc3339;
use crate::escalation::{Recipient, Role};
use crate::incidents::queries::IncidentRow;
use crate::notify::{Delivery, DeliveryOutcome, backoff_ms, queries};
use crate::store::{Conn, StoreError};

use super::Engine;

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
            let id =
                queries::insert_notification(conn, inc.map(|i| i.id), kind, role.as_str(), &r.name, &r.channel, now)
                    .await?;
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
            queries::set_body(conn, id, &body).await?;
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
        let rows = queries::claim(conn, now + 60_000, now, limit).await?;
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
        let row = queries::delivery_state(conn, o.id).await?;
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
        queries::record_attempt(
            conn,
            o.id,
            status,
            attempts,
            next,
            o.error.as_deref(),
            o.ok.then_some(now),
        )
        .await?;
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
