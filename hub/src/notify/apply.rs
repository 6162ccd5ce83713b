//! The notification shell: queues notifications to a role's holders, leases them to the
//! deliverer and records how each delivery went (a retry with backoff, or failed for good),
//! inside the writer's transaction, through [`super::queries`].
//!
//! Invariant: never sends (the deliverer does, after the commit) and never writes outside
//! the transaction it is given.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tracing::warn;

use crate::alarms::rfc3339;
use crate::incidents::apply::timeline;
use crate::incidents::queries::IncidentRow;
use crate::roles::{Lang, Recipient, Role, RoleResolver};

use super::address::Address;
use super::answer::{self, LinkKey};
use super::body::{IncidentSummary, NotificationBody};
use crate::store::{Conn, StoreError};
use crate::stream::Published;

use super::{Delivery, DeliveryOutcome, backoff_ms, queries};

/// An estate as notifications name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstateInfo {
    pub name: String,
    /// Its offset from UTC (quiet hours are its local time).
    pub utc_offset_s: i32,
}

/// What the shell reads of `[notify]` and `[[estates]]`.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub hub_id: String,
    pub retry_initial_s: u32,
    pub retry_max_s: u32,
    pub max_attempts: i64,
    /// A recipient's language when they name none.
    pub language: Lang,
    /// Where people open the board (no trailing `/`): links start with it.
    pub public_url: String,
    pub answer_link_ttl_ms: i64,
    /// A recipient's digest interval when they name none.
    pub digest_interval_s: u32,
    /// Estate id → name and offset.
    pub estates: HashMap<String, EstateInfo>,
    /// Signs answer links and derives SMS reply codes (`Debug` redacts it).
    pub link_key: LinkKey,
}

/// A queued notification's answer link.
struct AnswerLink {
    url: String,
    expires_at_ms: i64,
    reply_code: Option<String>,
}

/// The notification shell: who holds a role, and the settings it reads.
#[derive(Debug)]
pub struct NotifyShell {
    settings: NotifySettings,
    resolver: Arc<dyn RoleResolver>,
}

impl NotifyShell {
    pub fn new(settings: NotifySettings, resolver: Arc<dyn RoleResolver>) -> Self {
        NotifyShell { settings, resolver }
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
        self.queue(conn, out, inc, estate, role, &recipients, kind, None, text, now)
            .await?;
        Ok(recipients.len())
    }

    /// Queues one notification per recipient, each noted on the incident's timeline.
    /// `step`: an escalation's level (0 = its first notice, more = a later step or a repeat);
    /// `None` for other kinds.
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
        step: Option<i64>,
        text: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let s = &self.settings;
        for r in recipients {
            let language = r.prefs.language.unwrap_or(s.language);
            let new = queries::NewNotification {
                incident_id: inc.map(|i| i.id),
                kind,
                role: role.as_str(),
                recipient: &r.name,
                channel: &r.channel,
                priority: inc.map(|i| i.priority.as_str()),
                // P1 is never held back (no digest wait, no quiet hours).
                urgent: inc.is_some_and(|i| i.priority == "P1"),
                language: language.as_str(),
                escalation_step: step,
                now,
            };
            let id = queries::insert_notification(conn, &new).await?;
            let link = self.answer_link(conn, inc, &r.channel, id, now).await?;
            let body = NotificationBody {
                notification_id: id,
                kind: kind.to_owned(),
                role: role.as_str().to_owned(),
                recipient: r.name.clone(),
                estate: estate.to_owned(),
                estate_name: s.estates.get(estate).map(|e| e.name.clone()),
                text: text.to_owned(),
                created_at: rfc3339(now),
                hub: s.hub_id.clone(),
                language,
                incident: inc.map(|i| IncidentSummary {
                    id: i.id,
                    estate: i.estate_id.clone(),
                    area: i.area.clone(),
                    category: i.category.clone(),
                    priority: i.priority.clone(),
                    title: i.title.clone(),
                    state: i.state.clone(),
                }),
                incident_url: inc.map(|i| format!("{}/#/incidents/{}", s.public_url, i.id)),
                answer_url: link.as_ref().map(|l| l.url.clone()),
                answer_expires_at: link.as_ref().map(|l| rfc3339(l.expires_at_ms)),
                reply_code: link.and_then(|l| l.reply_code),
                items: Vec::new(),
            };
            let body = serde_json::to_string(&body).unwrap_or_default();
            queries::set_body(conn, id, &body).await?;
            if let Some(inc) = inc {
                let via = Address::parse(&r.channel).map(|a| a.kind()).unwrap_or("webhook");
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

    /// The answer link (and, for SMS, the reply code) of a notification about an incident
    /// on a channel a person reads (not `log`), stored on its row.
    async fn answer_link(
        &self,
        conn: &mut Conn,
        inc: Option<&IncidentRow>,
        channel: &str,
        id: i64,
        now: i64,
    ) -> Result<Option<AnswerLink>, StoreError> {
        let s = &self.settings;
        let address = match (inc, Address::parse(channel)) {
            (Some(_), Ok(a)) if a != Address::Log => a,
            _ => return Ok(None),
        };
        let expires_at_ms = now.saturating_add(s.answer_link_ttl_ms);
        let token = answer::sign(&s.link_key, id, expires_at_ms);
        let reply_code = match address {
            Address::Sms(_) => Some(self.free_reply_code(conn, id, now).await?),
            _ => None,
        };
        queries::set_answer_link(conn, id, expires_at_ms, reply_code.as_deref()).await?;
        Ok(Some(AnswerLink {
            url: format!("{}/n/{token}", s.public_url),
            expires_at_ms,
            reply_code,
        }))
    }

    /// A reply code no other row open to an answer holds. 32⁶ codes make a clash rare;
    /// after many the last one is kept (the sender's number still tells the rows apart).
    async fn free_reply_code(&self, conn: &mut Conn, id: i64, now: i64) -> Result<String, StoreError> {
        let mut code = answer::reply_code(&self.settings.link_key, id, 0);
        for attempt in 1..16 {
            if !queries::reply_code_taken(conn, &code, now).await? {
                break;
            }
            code = answer::reply_code(&self.settings.link_key, id, attempt);
        }
        Ok(code)
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
            let status = if o.delivered { "delivered" } else { "sent" };
            (
                status,
                now,
                format!("Notification #{} to {recipient} {status} (attempt {attempts})", o.id),
            )
        } else if attempts >= self.settings.max_attempts {
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
            let delay = backoff_ms(attempts, self.settings.retry_initial_s, self.settings.retry_max_s);
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
        queries::record_attempt(conn, o.id, status, attempts, next, o.error.as_deref(), now).await?;
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
