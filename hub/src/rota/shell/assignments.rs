//! Assignments: an operator assigns a guard to a slot (checked against every hard rule) or
//! cancels an assignment; a bulk action (CSV import, published plan) is applied one slice
//! per writer turn and recorded once at its end. Every change of `rota_assignments` passes
//! through [`RotaShell::insert`] and [`RotaShell::set_status`] (or `release`), which keep
//! the live state in step with the rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::info;

use super::super::model::Slot;
use super::super::state::Assignment;
use super::super::{bulk, fit, proposals, queries};
use super::{RotaShell, refused};
use crate::error::OpError;
use crate::store::{Conn, StoreError};

impl RotaShell {
    /// `RotaOp::Assign`; returns the assignment's id.
    pub(super) async fn assign(
        &mut self,
        conn: &mut Conn,
        slot: &str,
        guard: &str,
        actor: &str,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let m = self.m();
        let Some(s) = m.slot_by_key(slot) else {
            return refused(OpError::NotFound(format!("slot {slot} not found")));
        };
        let Some(g) = m.guard(guard) else {
            return refused(OpError::NotFound(format!("guard {guard} not found")));
        };
        let post = m.post(&s.post).expect("slot of a known post");
        let pool = proposals::Pool::for_guards(&m, &self.cur, now, &[guard]);
        let w = fit::Want {
            estate: &s.estate,
            start: s.start_ms,
            end: s.end_ms,
            night: s.night,
            quals: &post.qualifications,
        };
        if let Err(v) = pool.fit(g, &w, None, None, 0) {
            return refused(OpError::Conflict(format!("guard {guard} cannot take {slot}: {v}")));
        }
        let id = self.insert(conn, &s, guard, s.start_ms, s.end_ms, "api", now).await?;
        let detail = json!({"assignment": id, "slot": slot, "guard": guard});
        queries::audit(conn, now, actor, "assign", &detail).await?;
        Ok(Ok(id))
    }

    /// `RotaOp::Unassign`: the assignment is cancelled and its post's gap updated.
    pub(super) async fn unassign(
        &mut self,
        conn: &mut Conn,
        id: i64,
        actor: &str,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let Some(a) = self.cur.assignments.get(&id).map(|a| (**a).clone()) else {
            return refused(OpError::NotFound(format!("assignment {id} not found")));
        };
        self.set_status(conn, id, "cancelled", now).await?;
        let detail = json!({"assignment": id, "guard": a.guard, "post": a.post});
        queries::audit(conn, now, actor, "unassign", &detail).await?;
        self.ledger(conn, &a.post, now).await?;
        Ok(Ok(id))
    }

    /// Gives each slot of a bulk slice exactly its guards (rows already there are kept, so
    /// applying the same change twice changes nothing), in order, until the slice has worked
    /// `budget` (at least one slot, so every slice makes progress). Linear in the slice.
    ///
    /// The wall clock here only sizes the slice (how much goes into one writer turn); what
    /// each slot ends up holding does not depend on it.
    pub(super) async fn apply_slice(
        &mut self,
        conn: &mut Conn,
        mut changes: Vec<bulk::SlotChange>,
        source: &'static str,
        budget: Duration,
        now: i64,
    ) -> Result<bulk::SliceOutcome, StoreError> {
        let started = Instant::now();
        // What the slots hold now, read per post over the slice's span of it (the slot
        // index): the cost follows the slice, never the size of the whole rota.
        let mut have: Vec<Vec<(i64, String)>> = vec![Vec::new(); changes.len()];
        {
            let mut spans: HashMap<&str, (i64, i64)> = HashMap::new();
            let mut index: HashMap<(&str, i64), usize> = HashMap::new();
            for (i, c) in changes.iter().enumerate() {
                let (post, at) = (c.slot.post.as_str(), c.slot.start_ms);
                index.insert((post, at), i);
                let span = spans.entry(post).or_insert((at, at));
                *span = (span.0.min(at), span.1.max(at));
            }
            for (post, (lo, hi)) in spans {
                for (id, guard, at) in queries::slot_assignments(conn, post, lo, hi).await? {
                    if let Some(&i) = index.get(&(post, at)) {
                        have[i].push((id, guard));
                    }
                }
            }
        }
        let mut out = bulk::SliceOutcome::default();
        for (c, have) in changes.iter().zip(&have) {
            if out.applied > 0 && started.elapsed() >= budget {
                break;
            }
            for (id, guard) in have {
                if !c.guards.contains(guard) {
                    self.set_status(conn, *id, "cancelled", now).await?;
                    out.removed += 1;
                }
            }
            for g in &c.guards {
                if !have.iter().any(|(_, guard)| guard == g) {
                    self.insert(conn, &c.slot, g, c.slot.start_ms, c.slot.end_ms, source, now)
                        .await?;
                    out.added += 1;
                }
            }
            out.applied += 1;
        }
        out.rest = changes.split_off(out.applied);
        self.shared.bulk.observe_slice(started.elapsed(), !out.rest.is_empty());
        Ok(out)
    }

    /// `RotaOp::BulkDone`: one audit row and one `rota` stream event for the whole action.
    pub(super) async fn bulk_done(
        &mut self,
        conn: &mut Conn,
        source: &'static str,
        actor: &str,
        detail: Value,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        queries::audit(conn, now, actor, source, &detail).await?;
        info!(source, %detail, "bulk rota action done");
        let mut data = detail;
        data["source"] = json!(source);
        self.publish("rota", data);
        Ok(Ok(0))
    }

    /// A guard on `s` for `[start, end)`: the row and the live state.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn insert(
        &mut self,
        conn: &mut Conn,
        s: &Slot,
        guard: &str,
        start: i64,
        end: i64,
        source: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let id = queries::insert_assignment(conn, s, guard, start, end, source, now).await?;
        self.live_mut().add(Assignment {
            id,
            estate: s.estate.clone(),
            post: s.post.clone(),
            shift: s.shift.clone(),
            shift_start: s.start_ms,
            start,
            end,
            guard: guard.to_owned(),
            source: source.to_owned(),
        });
        Ok(id)
    }

    /// The assignment is no longer active (`cancelled`, `absent`, `moved`).
    pub(super) async fn set_status(
        &mut self,
        conn: &mut Conn,
        id: i64,
        status: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        queries::set_assignment_status(conn, id, status, now).await?;
        self.live_mut().remove_assignment(id);
        Ok(())
    }

    /// Ends a guard's assignment now (the part already worked stays on record) or, if it has
    /// not started, marks it moved.
    pub(super) async fn release(&mut self, conn: &mut Conn, a: &Assignment, now: i64) -> Result<(), StoreError> {
        if a.start < now {
            queries::end_assignment_for_cover(conn, a.id, now).await?;
            if let Some(x) = self.live_mut().assignments.get_mut(&a.id) {
                Arc::make_mut(x).end = now;
            }
            Ok(())
        } else {
            self.set_status(conn, a.id, "moved", now).await
        }
    }
}
