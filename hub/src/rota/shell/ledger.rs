//! The ledger and the tick: each post's gap (required against present) is brought up to
//! date by [`super::super::coverage::step`] whenever presence changes and at every tick;
//! the tick also starts each shift's handover sheet and drives the patrols.
//!
//! A gap past its grace period raises the post-unattended alarm (P2 security); a gap
//! that closes clears it, unless it carries on into the next shift.

use serde_json::json;
use tracing::{info, warn};

use super::super::coverage::{self, GapEffect};
use super::super::queries::{self, NewGap};
use super::{HOUR_MS, RotaEffect, RotaShell, unattended_key};
use crate::alarms::rules::Activation;
use crate::alarms::{Category, Priority};
use crate::store::{Conn, StoreError};

impl RotaShell {
    /// Brings one post's gap up to date with its presence and the time.
    pub(super) async fn ledger(&mut self, conn: &mut Conn, post_id: &str, now: i64) -> Result<(), StoreError> {
        let m = self.m();
        let Some(post) = m.post(post_id) else { return Ok(()) };
        let slot = m.slot_at(post, now);
        let present = self.cur.present_at(post_id).len() as u32;
        let prev = self.cur.gaps.get(post_id).copied();
        let grace = i64::from(m.settings.grace_s) * 1000;
        let (next, fx) = coverage::step(
            prev,
            slot.as_ref().map(|s| s.start_ms),
            post.required(),
            present,
            now,
            grace,
        );
        if fx.is_empty() {
            return Ok(());
        }
        match next {
            Some(g) => self.live_mut().gaps.insert(post_id.to_owned(), g),
            None => self.live_mut().gaps.remove(post_id),
        };
        for e in fx {
            match e {
                GapEffect::Opened => {
                    let g = next.expect("opened");
                    let gap = NewGap {
                        estate: &post.estate,
                        post: post_id,
                        shift_start: g.shift_start,
                        required: post.required(),
                        opened_at: now,
                        alarm_at: g.alarmed.then_some(now),
                    };
                    queries::open_gap(conn, &gap).await?;
                    info!(
                        post = post_id,
                        present,
                        required = post.required(),
                        "coverage gap opened"
                    );
                    self.publish(
                        "gap_opened",
                        json!({"estate": post.estate, "post": post_id, "present": present, "required": post.required()}),
                    );
                }
                GapEffect::Alarm => {
                    queries::alarm_gap(conn, post_id, now).await?;
                    let shift = slot.as_ref().map_or("", |s| s.shift.as_str());
                    self.effects.push(RotaEffect::Raise(Activation {
                        key: unattended_key(post),
                        gateway: "hub".into(),
                        area: post.area().to_owned(),
                        priority: Priority::P2,
                        category: Category::Security,
                        message: format!(
                            "Post {} ({}) unattended: {present} of {} on the {shift} shift for more than {} min",
                            post.id,
                            post.kind.as_str(),
                            post.required(),
                            m.settings.grace_s / 60
                        ),
                        latched: false,
                        value: Some(f64::from(present)),
                        repeat: false,
                    }));
                    warn!(post = post_id, present, "post unattended past the grace period");
                }
                GapEffect::Closed { clear_alarm } => {
                    queries::close_gap(conn, post_id, now).await?;
                    if clear_alarm {
                        self.effects.push(RotaEffect::Clear {
                            key: unattended_key(post),
                            note: "post covered again".into(),
                        });
                    }
                    self.publish("gap_closed", json!({"estate": post.estate, "post": post_id}));
                }
            }
        }
        Ok(())
    }

    /// Grace periods, shift changes (handover sheets) and patrol deadlines.
    pub async fn tick(&mut self, conn: &mut Conn, now: i64) -> Result<(), StoreError> {
        let m = self.m();
        for p in &m.posts {
            self.ledger(conn, &p.id, now).await?;
            if let Some(slot) = m.slot_at(p, now)
                && self.cur.handed_over.get(&p.id) != Some(&slot.start_ms)
            {
                self.handover(conn, p, &slot, now).await?;
            }
        }
        for r in &m.routes {
            self.patrol_tick(conn, r, now).await?;
        }
        if now - self.last_prune > HOUR_MS {
            self.last_prune = now;
            self.live_mut().prune(now);
        }
        Ok(())
    }
}
