//! Absences: a sick call makes the guard unavailable for a period (by default from now to
//! the end of their current or next assignment); the assignments it hits are marked
//! `absent`, the guard leaves their post, and the posts' ledgers open the gaps that the
//! proposals then fill.

use serde_json::json;
use tracing::info;

use super::super::queries::{self, NewAbsence};
use super::super::state::{Absence, Assignment};
use super::{HOUR_MS, RotaShell, refused};
use crate::alarms::rfc3339;
use crate::error::OpError;
use crate::store::{Conn, StoreError};

impl RotaShell {
    /// `RotaOp::Absence`; returns the absence's id.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn absence(
        &mut self,
        conn: &mut Conn,
        guard: &str,
        from_ms: Option<i64>,
        until_ms: Option<i64>,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let m = self.m();
        if m.guard(guard).is_none() {
            return refused(OpError::NotFound(format!("guard {guard} not found")));
        }
        let from = from_ms.unwrap_or(now);
        let until = match until_ms {
            Some(u) => u,
            None => self
                .cur
                .of_guard(guard)
                .into_iter()
                .find(|a| a.end > from)
                .map_or(from + 24 * HOUR_MS, |a| a.end),
        };
        if until <= from {
            return refused(OpError::Unprocessable("the absence must end after it starts".into()));
        }
        let row = NewAbsence {
            guard,
            start: from,
            end: until,
            reason,
            reported_by: actor,
            at: now,
        };
        let id = queries::insert_absence(conn, &row).await?;
        self.live_mut().absences.push(Absence {
            id,
            guard: guard.to_owned(),
            start: from,
            end: until,
            reason: reason.to_owned(),
        });
        let hit: Vec<Assignment> = self
            .cur
            .of_guard(guard)
            .into_iter()
            .filter(|a| a.start < until && from < a.end)
            .cloned()
            .collect();
        for a in &hit {
            self.set_status(conn, a.id, "absent", now).await?;
        }
        if self.cur.presence.contains_key(guard) {
            self.off(conn, guard, "off", "api", None, Some(actor), now).await?;
        }
        let detail = json!({"guard": guard, "from": rfc3339(from), "until": rfc3339(until), "reason": reason,
                            "assignments": hit.iter().map(|a| a.id).collect::<Vec<_>>()});
        queries::audit(conn, now, actor, "absence", &detail).await?;
        for a in &hit {
            self.ledger(conn, &a.post, now).await?;
            self.publish(
                "absence",
                json!({"guard": guard, "post": a.post, "slot": format!("{}@{}", a.post, a.shift_start)}),
            );
        }
        info!(guard = %guard, assignments = hit.len(), "absence reported");
        Ok(Ok(id))
    }
}
