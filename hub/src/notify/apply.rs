//! The notification shell: queues notifications to a role's holders, leases them to the
//! deliverer and records how each delivery went (a retry with backoff, or failed for good),
//! inside the writer's transaction, through [`super::queries`].
//!
//! Invariant: never sends (the deliverer does, after the commit) and never writes outside
//! the transaction it is given.

use std::sync::Arc;

use serde_json::{Value, json};
use tracing::warn;

use crate::alarms::rfc3339;
use crate::incidents::apply::timeline;
use crate::incidents::queries::IncidentRow;
use crate::roles::{Recipient, Role, RoleResolver};
use crate::store::{Conn, StoreError};
use crate::stream::Published;

use super::{Delivery, DeliveryOutcome, backoff_ms, queries};

/// The notification shell: who holds a role, and the settings it reads.
#[derive(Debug)]
pub struct NotifyShell {
    hub_id: String,
    resolver: Arc<dyn RoleResolver>,
    retry_initial_s: u32,
    retry_max_s: u32,
    max_attempts: i64,
}

impl NotifyShell {
    pub fn new(
        hub_id: String,
        resolver: Arc<dyn RoleResolver>,
        retry_initial_s: u32,
        retry_max_s: u32,
        max_attempts: i64,
    ) -> Self {
        NotifyShell {
            hub_id,
            resolver,
            retry_initial_s,
            retry_max_s,
            max_attempts,
        }
    }

    /// Queues a notification to everyone holding `role` at `estate`; logs it (and notes it on
    /// the incident's timeline) when nobody does. Returns how many were queued.
    #[allow(clippy::too_many_arguments)]
    pub async fn to_role(
        &self,
        conn: &mut Conn,
        out: &mut Published,
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
                timeline(
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
        self.queue(conn, out, inc, estate, role, &recipients, kind, text, now)
            .await?;
        Ok(recipients.len())
    }

    /// Queues one notification per recipient, each noted on the incident's timeline.
    #[allow(clippy::too_many_arguments)]
    pub async fn queue(
        &self,
        conn: &mut Conn,
        out: &mut Published,
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
                "hub": self.hub_id,
                "incident": inc.map(|i| json!({
                    "id": i.id, "estate": i.estate_id, "area": i.area, "category": i.category,
                    "priority": i.priority, "title": i.title, "state": i.state,
                })),
            })
            .to_string();
            queries::set_body(conn, id, &body).await?;
            if let Some(inc) = inc {
                let via = if r.channel == "log" { "log" } else { "webhook" };
                timeline(
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
            out.push(
                "notification",
                id,
                "queued",
                json!({"incident_id": inc.map(|i| i.id), "kind": kind, "role": role.as_str(), "recipient": r.name}),
            );
        }
        out.wake_deliverer();
        Ok(())
    }

    /// Leases due notifications to the deliverer.
    pub async fn claim(&self, conn: &mut Conn, limit: i64, now: i64) -> Result<Vec<Delivery>, StoreError> {
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
    pub async fn record(
        &self,
        conn: &mut Conn,
        out: &mut Published,
        o: &DeliveryOutcome,
        now: i64,
    ) -> Result<(), StoreError> {
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
        } else if attempts >= self.max_attempts {
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
            let delay = backoff_ms(attempts, self.retry_initial_s, self.retry_max_s);
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
            timeline(
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
        out.push(
            "notification",
            o.id,
            status,
            json!({"incident_id": iid, "attempts": attempts, "error": o.error}),
        );
        Ok(())
    }
}
