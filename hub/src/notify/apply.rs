//! The notification shell: queues notifications to a role's holders, leases them to the
//! deliverer paced per recipient (P1 at once; quiet hours; at most one message per digest
//! interval, several rows as one digest — decided by [`super::pacing`]) and records how each
//! delivery went (a retry with backoff, or failed for good; a digest's outcome is its
//! members'), inside the writer's transaction, through [`super::queries`].
//!
//! Invariant: never sends (the deliverer does, after the commit) and never writes outside
//! the transaction it is given.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};
use tracing::warn;

use crate::alarms::rfc3339;
use crate::incidents::apply::timeline;
use crate::incidents::queries::IncidentRow;
use crate::privacy::mask::initials;
use crate::roles::{Lang, QuietHours, Recipient, Role, RoleResolver};

use super::address::Address;
use super::answer::{self, LinkKey};
use super::body::{IncidentSummary, NotificationBody};
use crate::store::{Conn, StoreError};
use crate::stream::Published;

use super::pacing::{self, DueRow, Held, Pacing};
use super::queries::PacedRow;
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
            let quiet = r.prefs.quiet_hours.map(String::from);
            queries::set_pacing(conn, id, quiet.as_deref(), r.prefs.digest_interval_s.map(i64::from)).await?;
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
                        initials(&r.name),
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

    /// Leases due notifications to the deliverer, paced per recipient (name and channel; see
    /// [`super::pacing`]): P1 at once, P3/P4 first notices after the recipient's quiet hours,
    /// everything else at most one message per digest interval — several rows as one digest.
    /// Rows that must wait are held (`held`, `next_attempt_at_ms`). `log` channels are not
    /// paced.
    pub async fn claim(
        &self,
        conn: &mut Conn,
        out: &mut Published,
        limit: i64,
        now: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let lease_until = now + 60_000;
        // Pacing sees every due row of a recipient at once, so it reads more than it leases.
        let rows = queries::due_rows(conn, now, limit.max(1).saturating_mul(16)).await?;
        let mut order: HashMap<(String, String), usize> = HashMap::new();
        let mut groups: Vec<Vec<PacedRow>> = Vec::new();
        for r in rows {
            let key = (r.recipient.clone(), r.channel.clone());
            let i = *order.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[i].push(r);
        }
        let mut deliveries = Vec::new();
        for group in groups {
            if deliveries.len() as i64 >= limit {
                break;
            }
            self.pace(conn, out, group, lease_until, now, &mut deliveries).await?;
        }
        deliveries.sort_by_key(|d| d.id);
        Ok(deliveries)
    }

    /// One recipient's due rows: sends, digests and holds them as [`pacing::plan`] says.
    async fn pace(
        &self,
        conn: &mut Conn,
        out: &mut Published,
        mut rows: Vec<PacedRow>,
        lease_until: i64,
        now: i64,
        deliveries: &mut Vec<Delivery>,
    ) -> Result<(), StoreError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let (recipient, channel) = (first.recipient.clone(), first.channel.clone());
        let paced = !matches!(Address::parse(&channel), Ok(Address::Log));
        if paced {
            // A later escalation brings its incident's notices held for quiet hours with it.
            let escalated: BTreeSet<i64> = rows
                .iter()
                .filter(|r| r.escalation_step.unwrap_or(0) > 0)
                .filter_map(|r| r.incident_id)
                .collect();
            for inc in escalated {
                for h in queries::quiet_held(conn, &recipient, &channel, inc, now).await? {
                    if !rows.iter().any(|r| r.id == h.id) {
                        rows.push(h);
                    }
                }
            }
        }
        // The newest row carries the recipient's current preferences.
        let Some(newest) = rows.iter().max_by_key(|r| r.id) else {
            return Ok(());
        };
        let offset = NotificationBody::parse(&newest.body)
            .and_then(|b| self.settings.estates.get(&b.estate).map(|e| e.utc_offset_s))
            .unwrap_or(0);
        let prefs = if paced {
            Pacing {
                quiet_hours: newest.quiet_hours.clone().and_then(|q| QuietHours::try_from(q).ok()),
                interval_ms: newest
                    .digest_interval_s
                    .unwrap_or(i64::from(self.settings.digest_interval_s))
                    .clamp(0, i64::from(u32::MAX))
                    * 1000,
                utc_offset_s: offset,
            }
        } else {
            Pacing::NONE
        };
        let last = if paced {
            queries::last_sent(conn, &recipient, &channel).await?
        } else {
            None
        };
        let due: Vec<DueRow> = rows
            .iter()
            .map(|r| DueRow {
                id: r.id,
                urgent: r.urgent,
                priority: r.priority.clone(),
                escalation_step: r.escalation_step,
                incident: r.incident_id,
                created_ms: r.created_at_ms,
                resend: r.attempts > 0 || r.kind == DIGEST,
            })
            .collect();
        let plan = pacing::plan(&due, &prefs, last, now);
        for id in &plan.alone {
            if let Some(d) = queries::lease(conn, *id, lease_until, now).await? {
                deliveries.push(delivery(d));
            }
        }
        if !plan.digest.is_empty() {
            let members: Vec<&PacedRow> = plan
                .digest
                .iter()
                .filter_map(|id| rows.iter().find(|r| r.id == *id))
                .collect();
            if let Some(d) = self.digest(conn, out, &members, lease_until, now).await? {
                deliveries.push(d);
            }
        }
        for (id, held, until) in &plan.wait {
            let Some(r) = rows.iter().find(|r| r.id == *id) else {
                continue;
            };
            queries::hold(conn, *id, held.as_str(), *until).await?;
            if r.held.as_deref() == Some(held.as_str()) {
                continue;
            }
            if let (Held::QuietHours, Some(iid)) = (held, r.incident_id) {
                timeline(
                    conn,
                    iid,
                    now,
                    "notification",
                    None,
                    &format!(
                        "Notification #{id} to {} held for quiet hours until {}",
                        initials(&recipient),
                        pacing::local_hhmm(*until, offset)
                    ),
                    json!({"notification_id": id, "held": held.as_str(), "until": rfc3339(*until)}),
                )
                .await?;
            }
            out.push(
                "notification",
                *id,
                "held",
                json!({"incident_id": r.incident_id, "held": held.as_str(), "until": rfc3339(*until)}),
            );
        }
        if paced && plan.fresh {
            queries::set_last_sent(conn, &recipient, &channel, now).await?;
        }
        Ok(())
    }

    /// Queues one digest carrying `members` (oldest first), marks them `digested` and leases
    /// the digest.
    async fn digest(
        &self,
        conn: &mut Conn,
        out: &mut Published,
        members: &[&PacedRow],
        lease_until: i64,
        now: i64,
    ) -> Result<Option<Delivery>, StoreError> {
        let Some(newest) = members.last() else {
            return Ok(None);
        };
        let s = &self.settings;
        let items: Vec<NotificationBody> = members
            .iter()
            .map(|r| NotificationBody::parse(&r.body).unwrap_or_else(|| self.bare_body(r)))
            .collect();
        let estate = items.last().map(|b| b.estate.clone()).unwrap_or_default();
        let language = Lang::parse(&newest.language).unwrap_or(s.language);
        let new = queries::NewNotification {
            incident_id: None,
            kind: DIGEST,
            role: &newest.role,
            recipient: &newest.recipient,
            channel: &newest.channel,
            priority: None,
            urgent: false,
            language: language.as_str(),
            escalation_step: None,
            now,
        };
        let id = queries::insert_notification(conn, &new).await?;
        let n = items.len();
        let body = NotificationBody {
            notification_id: id,
            kind: DIGEST.to_owned(),
            role: newest.role.clone(),
            recipient: newest.recipient.clone(),
            estate_name: s.estates.get(&estate).map(|e| e.name.clone()),
            estate,
            text: format!("{n} updates"),
            created_at: rfc3339(now),
            hub: s.hub_id.clone(),
            language,
            incident: None,
            incident_url: None,
            answer_url: None,
            answer_expires_at: None,
            reply_code: None,
            items,
        };
        let body = serde_json::to_string(&body).unwrap_or_default();
        queries::set_body(conn, id, &body).await?;
        queries::set_pacing(conn, id, newest.quiet_hours.as_deref(), newest.digest_interval_s).await?;
        for m in members {
            queries::mark_digested(conn, m.id, id).await?;
            out.push(
                "notification",
                m.id,
                "digested",
                json!({"incident_id": m.incident_id, "digest_id": id}),
            );
        }
        let by_incident = by_incident(members.iter().map(|m| (m.id, m.incident_id)));
        for (iid, ids) in &by_incident {
            timeline(
                conn,
                *iid,
                now,
                "notification",
                None,
                &format!(
                    "{} to {} sent in digest #{id} ({n} updates)",
                    numbered(ids),
                    newest.recipient
                ),
                json!({"notification_ids": ids, "digest_id": id}),
            )
            .await?;
        }
        out.push(
            "notification",
            id,
            "queued",
            json!({"incident_id": null, "kind": DIGEST, "role": newest.role, "recipient": newest.recipient, "items": n}),
        );
        Ok(queries::lease(conn, id, lease_until, now).await?.map(delivery))
    }

    /// The body of a row stored before bodies had this format: what the row itself says.
    fn bare_body(&self, r: &PacedRow) -> NotificationBody {
        NotificationBody {
            notification_id: r.id,
            kind: r.kind.clone(),
            role: r.role.clone(),
            recipient: r.recipient.clone(),
            estate: String::new(),
            estate_name: None,
            text: String::new(),
            created_at: rfc3339(r.created_at_ms),
            hub: self.settings.hub_id.clone(),
            language: Lang::parse(&r.language).unwrap_or(self.settings.language),
            incident: None,
            incident_url: None,
            answer_url: None,
            answer_expires_at: None,
            reply_code: None,
            items: Vec::new(),
        }
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
        // The timeline is read by every role: a recipient (a guard: a cardholder) by initials;
        // the notification itself names them to the roles that may see names.
        let recipient = initials(&recipient);
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
        if status != "pending" {
            self.settle_digest(conn, out, o, status, &recipient, now).await?;
        }
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

    /// A digest's outcome for good is its members': their status, and one line on each
    /// member incident's timeline.
    async fn settle_digest(
        &self,
        conn: &mut Conn,
        out: &mut Published,
        o: &DeliveryOutcome,
        status: &str,
        recipient: &str, // as the timeline names them (initials)
        now: i64,
    ) -> Result<(), StoreError> {
        let mut members = queries::settle_digest_members(conn, o.id, status, o.error.as_deref(), now).await?;
        members.sort_unstable();
        for (id, iid) in &members {
            out.push(
                "notification",
                *id,
                status,
                json!({"incident_id": iid, "digest_id": o.id}),
            );
        }
        for (iid, ids) in by_incident(members.into_iter()) {
            let how = match (status, o.error.as_deref()) {
                ("failed", Some(e)) => format!("FAILED in digest #{}: {e}", o.id),
                _ => format!("{status} in digest #{}", o.id),
            };
            timeline(
                conn,
                iid,
                now,
                "notification",
                None,
                &format!("{} to {recipient} {how}", numbered(&ids)),
                json!({"notification_ids": ids, "digest_id": o.id, "status": status}),
            )
            .await?;
        }
        Ok(())
    }
}

/// The `kind` of a digest notification.
const DIGEST: &str = "digest";

fn delivery((id, channel, recipient, body, attempts): (i64, String, String, String, i64)) -> Delivery {
    Delivery {
        id,
        channel,
        recipient,
        body,
        attempts,
    }
}

/// Notification ids by incident (rows about no incident left out), in order.
fn by_incident(rows: impl Iterator<Item = (i64, Option<i64>)>) -> BTreeMap<i64, Vec<i64>> {
    let mut m: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (id, iid) in rows {
        if let Some(iid) = iid {
            m.entry(iid).or_default().push(id);
        }
    }
    m
}

/// "Notification #3" or "Notifications #3, #7".
fn numbered(ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(|i| format!("#{i}")).collect();
    match ids.len() {
        1 => format!("Notification {}", list.join("")),
        _ => format!("Notifications {}", list.join(", ")),
    }
}
