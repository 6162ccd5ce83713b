//! Presence: a guard's badge at a post's reader clocks them on (or, at the post they are
//! on, off), an operator checks them in or out, an incident going `on_site` pulls them off.
//! Each change is logged, late clock-ins and early clock-outs are recorded, and the post's
//! ledger is brought up to date.
//!
//! Only granted badges of known guards count; any other credential is ignored and never
//! logged (residents' cards are personal data).

use gatehouse_proto::{AccessResult, Event, event::Body};
use serde_json::json;
use tracing::{info, warn};

use super::super::coverage;
use super::super::queries::{self, AttendanceRecord, PresenceChange};
use super::super::state::Presence;
use super::{RotaShell, refused};
use crate::error::OpError;
use crate::store::{Conn, StoreError};

/// A second badge at the same post reader within this long is a double tap, not a clock-off.
const DEBOUNCE_MS: i64 = 60_000;

impl RotaShell {
    /// An `access` event: a guard's badge at a post's reader clocks them on (or, at the post
    /// they are on, off); at a patrol checkpoint it records the tour.
    pub async fn access(&mut self, conn: &mut Conn, event: &Event, now: i64) -> Result<(), StoreError> {
        let Some(Body::Access(a)) = &event.body else {
            return Ok(());
        };
        let m = self.m();
        let Some(&gi) = m.credentials.get(&a.credential) else {
            return Ok(());
        };
        if a.result() != AccessResult::Granted {
            return Ok(());
        }
        let guard = m.guards[gi].id.clone();
        let at = if event.occurred_at_ms > 0 {
            event.occurred_at_ms.min(now)
        } else {
            now
        };
        let keys = [event.device_id.clone(), format!("{}:{}", event.device_id, a.door)];
        if let Some(&pi) = keys.iter().find_map(|k| m.readers.get(k)) {
            let post = &m.posts[pi];
            if post.estate != event.estate_id {
                return Ok(());
            }
            match self.cur.presence.get(&guard) {
                Some(p) if p.post == post.id && p.since > at - DEBOUNCE_MS => {}
                Some(p) if p.post == post.id => self.off(conn, &guard, "off", "badge", None, None, now).await?,
                _ => self.on(conn, &guard, &post.id, "badge", None, now).await?,
            }
            return Ok(());
        }
        for k in &keys {
            let Some(routes) = m.checkpoints.get(k) else { continue };
            for &ri in routes {
                self.scan(conn, ri, k, &guard, now).await?;
            }
            break;
        }
        Ok(())
    }

    /// `RotaOp::CheckIn`.
    pub(super) async fn check_in(
        &mut self,
        conn: &mut Conn,
        guard: &str,
        post: &str,
        actor: &str,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let m = self.m();
        if m.guard(guard).is_none() {
            return refused(OpError::NotFound(format!("guard {guard} not found")));
        }
        if m.post(post).is_none() {
            return refused(OpError::NotFound(format!("post {post} not found")));
        }
        if self.cur.presence.get(guard).is_some_and(|p| p.post == post) {
            return refused(OpError::Conflict(format!("guard {guard} is already on post {post}")));
        }
        self.on(conn, guard, post, "api", Some(actor), now).await?;
        Ok(Ok(0))
    }

    /// `RotaOp::CheckOut`.
    pub(super) async fn check_out(
        &mut self,
        conn: &mut Conn,
        guard: &str,
        actor: &str,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        if !self.cur.presence.contains_key(guard) {
            return refused(OpError::Conflict(format!("guard {guard} is not on a post")));
        }
        self.off(conn, guard, "off", "api", None, Some(actor), now).await?;
        Ok(Ok(0))
    }

    /// Clocks a guard on a post (off any other post first).
    async fn on(
        &mut self,
        conn: &mut Conn,
        guard: &str,
        post: &str,
        via: &str,
        actor: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let m = self.m();
        if self.cur.presence.get(guard).is_some_and(|p| p.post != post) {
            self.off(conn, guard, "off", via, None, actor, now).await?;
        }
        let p = m.post(post).expect("known post");
        self.live_mut().presence.insert(
            guard.to_owned(),
            Presence {
                post: post.to_owned(),
                since: now,
            },
        );
        queries::set_presence(conn, guard, post, now).await?;
        let change = PresenceChange {
            guard,
            post: &p.id,
            estate: &p.estate,
            change: "on",
            via,
            at: now,
            incident: None,
            actor,
        };
        queries::log_presence(conn, &change).await?;
        // Late clock-in: the first clock-on of an assigned guard for this shift.
        if let Some(slot) = m.slot_at(p, now)
            && let Some(a) = self
                .cur
                .assigned(post, slot.start_ms)
                .into_iter()
                .find(|a| a.guard == guard)
                .cloned()
        {
            let before = queries::clocked_on_between(conn, guard, post, slot.start_ms, now).await?;
            let tol = i64::from(m.settings.late_after_s) * 1000;
            if !before && let Some(min) = coverage::lateness_min(a.start, now, tol) {
                let late = AttendanceRecord {
                    guard,
                    post: &p.id,
                    estate: &p.estate,
                    shift_start: slot.start_ms,
                    kind: "late",
                    minutes: min,
                    at: now,
                };
                queries::record_attendance(conn, &late).await?;
                info!(guard, post, minutes = min, "late clock-in");
            }
        }
        self.publish(
            "on_post",
            json!({"guard": guard, "post": post, "estate": p.estate, "via": via}),
        );
        self.ledger(conn, post, now).await
    }

    /// Takes a guard off their post: `change` = off (badge, API) or pulled (an incident).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn off(
        &mut self,
        conn: &mut Conn,
        guard: &str,
        change: &str,
        via: &str,
        incident: Option<i64>,
        actor: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let m = self.m();
        let Some(p) = self.live_mut().presence.remove(guard) else {
            return Ok(());
        };
        queries::clear_presence(conn, guard).await?;
        let post = m.post(&p.post).expect("known post");
        let logged = PresenceChange {
            guard,
            post: &post.id,
            estate: &post.estate,
            change,
            via,
            at: now,
            incident,
            actor,
        };
        queries::log_presence(conn, &logged).await?;
        if change == "off"
            && let Some(slot) = m.slot_at(post, now)
            && let Some(a) = self
                .cur
                .assigned(&p.post, slot.start_ms)
                .into_iter()
                .find(|a| a.guard == guard)
            && let Some(min) = coverage::early_min(a.end, now, i64::from(m.settings.late_after_s) * 1000)
        {
            let early = AttendanceRecord {
                guard,
                post: &post.id,
                estate: &post.estate,
                shift_start: slot.start_ms,
                kind: "early",
                minutes: min,
                at: now,
            };
            queries::record_attendance(conn, &early).await?;
            info!(guard, post = %p.post, minutes = min, "early clock-out");
        }
        self.publish(
            "off_post",
            json!({"guard": guard, "post": p.post, "estate": post.estate, "change": change, "incident_id": incident}),
        );
        self.ledger(conn, &p.post, now).await
    }

    /// An incident went `on_site`: the guard who went (the transition's actor, by guard id
    /// or name) leaves their post. Returns a timeline line.
    pub async fn pull(
        &mut self,
        conn: &mut Conn,
        actor: &str,
        incident: i64,
        estate: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let m = self.m();
        let Some(g) = m
            .guards
            .iter()
            .find(|g| g.id == actor || g.name == actor)
            .map(|g| g.id.clone())
        else {
            return Ok(None);
        };
        let Some(p) = self.cur.presence.get(&g).cloned() else {
            return Ok(Some(format!("Guard {g} went on site (was not on a post)")));
        };
        if m.post(&p.post).is_none_or(|x| x.estate != estate) {
            warn!(guard = %g, incident, "guard sent on site at another estate than their post's");
        }
        self.off(conn, &g, "pulled", "incident", Some(incident), Some(actor), now)
            .await?;
        Ok(Some(format!("Guard {g} pulled off post {} to go on site", p.post)))
    }
}
