//! Accepting a cover proposal. A proposal is a value (`gap~guard[~backfill]`), not a row:
//! accepting it re-checks every hard rule against the state at that moment (the gap still
//! open and short, the guard free or movable, the back-fill guard free), then moves the
//! guard (the part of a shift already worked stays on record), assigns the cover and the
//! back-fill, and asks each guard by notification to take the post.

use serde_json::json;
use tracing::info;

use super::super::model::Slot;
use super::super::{fit, proposals, queries};
use super::{RotaEffect, RotaShell, refused};
use crate::alarms::rfc3339;
use crate::error::OpError;
use crate::store::{Conn, StoreError};

impl RotaShell {
    /// Accepts a proposal `gap~guard[~backfill]`, re-checking it against the state now.
    pub(super) async fn accept(
        &mut self,
        conn: &mut Conn,
        id: &str,
        actor: &str,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let m = self.m();
        let parts: Vec<&str> = id.split('~').collect();
        let (gap_id, guard_id, backfill_id) = match parts.as_slice() {
            [g, x] => (*g, *x, None),
            [g, x, y] => (*g, *x, Some(*y)),
            _ => return refused(OpError::NotFound(format!("proposal {id} not found"))),
        };
        let gaps = proposals::gaps(&m, &self.cur, now);
        let Some(gap) = gaps.into_iter().find(|g| g.id == gap_id) else {
            return refused(OpError::Conflict(format!("gap {gap_id} is not open")));
        };
        if gap.need == 0 {
            return refused(OpError::Conflict(format!(
                "gap {gap_id} is already covered (awaiting arrival)"
            )));
        }
        let Some(g) = m.guard(guard_id) else {
            return refused(OpError::NotFound(format!("guard {guard_id} not found")));
        };
        if gap.present.iter().chain(&gap.assigned).any(|x| x == guard_id) {
            return refused(OpError::Conflict(format!("guard {guard_id} is already on {gap_id}")));
        }
        let w = proposals::want(&m, &gap, now);
        let judged: Vec<&str> = std::iter::once(guard_id).chain(backfill_id).collect();
        let pool = proposals::Pool::for_guards(&m, &self.cur, now, &judged);
        let (moved, backfill) = match (proposals::source(&m, &self.cur, guard_id, &w, &gap.post), backfill_id) {
            (proposals::Source::Free, None) => (None, None),
            (proposals::Source::Surplus(a), None) => (Some(a.clone()), None),
            (proposals::Source::Needed(a), Some(y)) => (Some(a.clone()), Some(y)),
            (proposals::Source::Needed(a), None) => {
                return refused(OpError::Conflict(format!(
                    "guard {guard_id} is needed at {}; only a back-fill chain can move them",
                    a.post
                )));
            }
            (_, Some(_)) => {
                return refused(OpError::Conflict(format!(
                    "guard {guard_id} is free: no back-fill needed"
                )));
            }
        };
        let changes = i64::from(moved.is_some());
        if let Err(v) = pool.fit(
            g,
            &w,
            moved.as_ref(),
            moved.as_ref().map(|a| a.estate.as_str()),
            changes,
        ) {
            return refused(OpError::Conflict(format!(
                "guard {guard_id} can no longer cover {gap_id}: {v}"
            )));
        }
        let mut back: Option<(String, Slot, i64, i64)> = None;
        if let (Some(y), Some(a)) = (backfill, &moved) {
            let Some(yg) = m.guard(y) else {
                return refused(OpError::NotFound(format!("guard {y} not found")));
            };
            let Some(qs) = m.slot_by_key(&format!("{}@{}", a.post, a.shift_start)) else {
                return refused(OpError::Conflict("the moved guard's slot is gone".into()));
            };
            let qp = m.post(&a.post).expect("known post");
            let wq = fit::Want {
                estate: &a.estate,
                start: a.start.max(now),
                end: a.end,
                night: qs.night,
                quals: &qp.qualifications,
            };
            if !matches!(
                proposals::source(&m, &self.cur, y, &wq, &a.post),
                proposals::Source::Free
            ) || self.cur.presence.contains_key(y)
            {
                return refused(OpError::Conflict(format!("back-fill guard {y} is not free")));
            }
            if let Err(v) = pool.fit(yg, &wq, None, None, 0) {
                return refused(OpError::Conflict(format!(
                    "back-fill guard {y} cannot take {}: {v}",
                    a.post
                )));
            }
            back = Some((y.to_owned(), qs, wq.start, wq.end));
        }
        drop(pool);
        if let Some(a) = &moved {
            self.release(conn, a, now).await?;
        }
        let new_id = self
            .insert(conn, &gap.slot, guard_id, w.start, w.end, "proposal", now)
            .await?;
        let post = m.post(&gap.post).expect("known post");
        let mut notify = vec![(
            g,
            post,
            format!(
                "Cover requested: please take post {} ({}) at {} from {} until {} and badge in on arrival.",
                post.id,
                post.kind.as_str(),
                post.estate,
                rfc3339(w.start),
                rfc3339(w.end)
            ),
        )];
        let mut back_id = None;
        if let Some((y, qs, start, end)) = &back {
            back_id = Some(self.insert(conn, qs, y, *start, *end, "proposal", now).await?);
            let qp = m.post(&qs.post).expect("known post");
            notify.push((
                m.guard(y).expect("checked"),
                qp,
                format!(
                    "Cover requested: please take post {} ({}) at {} from {} until {} (back-fill for {}) and badge in on arrival.",
                    qp.id,
                    qp.kind.as_str(),
                    qp.estate,
                    rfc3339(*start),
                    rfc3339(*end),
                    guard_id
                ),
            ));
        }
        for (guard, p, text) in notify {
            self.effects.push(RotaEffect::Notify {
                estate: p.estate.clone(),
                role: p.kind.role(),
                recipients: vec![guard.recipient()],
                kind: "cover",
                text,
            });
        }
        queries::audit(
            conn,
            now,
            actor,
            "accept_proposal",
            &json!({"proposal": id, "gap": gap_id, "guard": guard_id, "assignment": new_id,
                   "moved_from": moved.as_ref().map(|a| json!({"assignment": a.id, "post": a.post})),
                   "backfill": back.as_ref().map(|b| json!({"guard": b.0, "assignment": back_id}))}),
        )
        .await?;
        info!(proposal = id, actor, assignment = new_id, "cover proposal accepted");
        self.publish(
            "proposal_accepted",
            json!({"proposal": id, "gap": gap_id, "guard": guard_id, "assignment": new_id}),
        );
        Ok(Ok(new_id))
    }
}
