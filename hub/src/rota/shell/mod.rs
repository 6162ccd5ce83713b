//! The rota's shell, [`RotaShell`]: owned by the engine inside the writer and called in
//! its transaction. It asks the pure cores what to do, writes the `rota_*` tables through
//! [`super::queries`], changes a working copy of the live state, and returns
//! [`RotaEffect`]s (raise or clear an alarm, notify, publish) for the engine to apply.
//!
//! Invariant: it never sleeps, sends, or writes outside the transaction it is given, and
//! readers see its state only after the commit ([`RotaShell::commit`]); a rollback restores
//! the committed copy.
//!
//! By concern, each file an `impl RotaShell`:
//! - [`presence`] — badges (`access`), clocking on and off, late / early, `pull` (on site);
//! - [`ledger`] — the gap of each post against the grace period, and the `tick`;
//! - [`patrols`] — starting, scanning and ending tours, a patrol's findings;
//! - [`handovers`] — the sheet at each change of shift, its acknowledgement, notes;
//! - [`absences`] — a sick call and the assignments it hits;
//! - [`assignments`] — assign, unassign, and the slices of a bulk action;
//! - [`accept`] — accepting a cover proposal, re-checked against the state now.

mod absences;
mod accept;
mod assignments;
mod handovers;
mod ledger;
mod patrols;
mod presence;

use std::sync::Arc;

use serde_json::Value;
use tracing::info;

use super::bulk;
use super::model::{PatrolRouteConfig, PostConfig, RotaModel};
use super::patrol;
use super::queries;
use super::shared::RotaShared;
use super::state::{Live, Presence};
use crate::alarms::AlarmKey;
use crate::alarms::rules::Activation;
use crate::error::OpError;
use crate::roles::{Recipient, Role};
use crate::store::{Conn, Pool, StoreError};

const HOUR_MS: i64 = 3_600_000;

/// What the alarm book and the notification outbox must do for the rota.
#[derive(Debug, Clone)]
pub enum RotaEffect {
    /// Raise an alarm; `latched` ones clear when acknowledged.
    Raise(Activation),
    Clear {
        key: AlarmKey,
        note: String,
    },
    /// Notify these people (a guard asked to cover).
    Notify {
        estate: String,
        role: Role,
        recipients: Vec<Recipient>,
        kind: &'static str,
        text: String,
    },
    /// A `coverage` event on the live stream.
    Publish {
        id: i64,
        change: String,
        data: Value,
    },
}

/// An operator's (or guard's) rota action, carried out by the writer.
#[derive(Debug, Clone)]
pub enum RotaOp {
    CheckIn {
        guard: String,
        post: String,
        actor: String,
    },
    CheckOut {
        guard: String,
        actor: String,
    },
    Absence {
        guard: String,
        from_ms: Option<i64>,
        until_ms: Option<i64>,
        reason: String,
        actor: String,
    },
    Accept {
        proposal: String,
        actor: String,
    },
    Assign {
        slot: String,
        guard: String,
        actor: String,
    },
    Unassign {
        id: i64,
        actor: String,
    },
    /// One slice of a bulk action (CSV import, published plan): give these slots exactly
    /// their guards, until the slice has worked `budget`; the outcome, with the changes not
    /// reached, is left in `outcome` (see [`bulk`]).
    ApplySlice {
        changes: Vec<bulk::SlotChange>,
        source: &'static str,
        budget: std::time::Duration,
        outcome: bulk::SliceCell,
    },
    /// The end of a bulk action: one audit row and one `rota` stream event for all its slices.
    BulkDone {
        source: &'static str,
        actor: String,
        detail: Value,
    },
    HandoverAck {
        id: i64,
        guard: String,
    },
    Note {
        post: String,
        text: String,
        author: String,
    },
    PatrolRecord {
        tour: i64,
        findings: Option<String>,
        actions: Option<String>,
        by: String,
    },
}

/// The writer's rota shell.
#[derive(Debug)]
pub struct RotaShell {
    shared: Arc<RotaShared>,
    cur: Live,
    /// The committed state, kept from the first change of a transaction (for a rollback).
    backup: Option<Live>,
    effects: Vec<RotaEffect>,
    last_prune: i64,
}

/// An operator action refused: the transaction goes on, nothing of the action is written.
fn refused<T>(e: OpError) -> Result<Result<T, OpError>, StoreError> {
    Ok(Err(e))
}

impl RotaShell {
    /// Loads the rota's state from the database.
    pub async fn restore(shared: Arc<RotaShared>, pool: &Pool, now: i64) -> Result<RotaShell, StoreError> {
        let m = shared.model.clone();
        let horizon = now - 29 * 24 * HOUR_MS;
        let mut live = Live::default();
        for a in queries::active_assignments(pool, horizon).await? {
            live.add(a);
        }
        for (guard, post, since) in queries::presence(pool).await? {
            if m.post(&post).is_some() && m.guard(&guard).is_some() {
                live.presence.insert(guard, Presence { post, since });
            }
        }
        live.absences = queries::absences(pool, horizon).await?;
        live.gaps = queries::open_gaps(pool).await?.into_iter().collect();
        live.handed_over = queries::last_handovers(pool).await?.into_iter().collect();
        for t in queries::running_tours(pool).await? {
            let Some(r) = m.routes.iter().find(|r| r.id == t.route) else {
                continue;
            };
            let mut tour = patrol::Tour::plan(r, t.id, t.started_at);
            tour.guard = t.guard;
            for (pos, at) in queries::tour_scan_times(pool, t.id).await? {
                if let Some(s) = tour.scanned.get_mut(pos as usize) {
                    *s = Some(at);
                }
            }
            live.last_tour.insert(t.route.clone(), t.started_at);
            live.tours.insert(t.route, tour);
        }
        for (route, start) in queries::last_tour_starts(pool).await? {
            live.last_tour.entry(route).or_insert(start);
        }
        shared.publish(live.clone());
        info!(
            assignments = live.assignments.len(),
            on_post = live.presence.len(),
            open_gaps = live.gaps.len(),
            "rota loaded"
        );
        Ok(RotaShell {
            shared,
            cur: live,
            backup: None,
            effects: Vec::new(),
            last_prune: now,
        })
    }

    fn m(&self) -> Arc<RotaModel> {
        self.shared.model.clone()
    }

    /// The working copy, to change: the committed state is kept first (for a rollback).
    fn live_mut(&mut self) -> &mut Live {
        if self.backup.is_none() {
            self.backup = Some(self.cur.clone());
        }
        &mut self.cur
    }

    /// The transaction committed: readers see the new state.
    pub fn commit(&mut self) {
        if self.backup.take().is_some() {
            self.shared.publish(self.cur.clone());
        }
    }

    /// The transaction failed: back to the committed state.
    pub fn rollback(&mut self) {
        if let Some(b) = self.backup.take() {
            self.cur = b;
        }
        self.effects.clear();
    }

    pub fn take_effects(&mut self) -> Vec<RotaEffect> {
        std::mem::take(&mut self.effects)
    }

    fn publish(&mut self, change: &str, data: Value) {
        self.effects.push(RotaEffect::Publish {
            id: 0,
            change: change.to_owned(),
            data,
        });
    }

    /// Carries out a rota action. `Ok(Err(_))` is a refusal (nothing written).
    pub async fn op(&mut self, conn: &mut Conn, op: RotaOp, now: i64) -> Result<Result<i64, OpError>, StoreError> {
        match op {
            RotaOp::CheckIn { guard, post, actor } => self.check_in(conn, &guard, &post, &actor, now).await,
            RotaOp::CheckOut { guard, actor } => self.check_out(conn, &guard, &actor, now).await,
            RotaOp::Absence {
                guard,
                from_ms,
                until_ms,
                reason,
                actor,
            } => {
                self.absence(conn, &guard, from_ms, until_ms, &reason, &actor, now)
                    .await
            }
            RotaOp::Accept { proposal, actor } => self.accept(conn, &proposal, &actor, now).await,
            RotaOp::Assign { slot, guard, actor } => self.assign(conn, &slot, &guard, &actor, now).await,
            RotaOp::Unassign { id, actor } => self.unassign(conn, id, &actor, now).await,
            RotaOp::ApplySlice {
                changes,
                source,
                budget,
                outcome,
            } => {
                let done = self.apply_slice(conn, changes, source, budget, now).await?;
                let applied = done.applied as i64;
                *outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
                Ok(Ok(applied))
            }
            RotaOp::BulkDone { source, actor, detail } => self.bulk_done(conn, source, &actor, detail, now).await,
            RotaOp::HandoverAck { id, guard } => self.acknowledge_handover(conn, id, &guard, now).await,
            RotaOp::Note { post, text, author } => self.note(conn, &post, &text, &author, now).await,
            RotaOp::PatrolRecord {
                tour,
                findings,
                actions,
                by,
            } => {
                self.record_patrol(conn, tour, findings.as_deref(), actions.as_deref(), &by)
                    .await
            }
        }
    }
}

/// The key of a post's unattended alarm.
fn unattended_key(post: &PostConfig) -> AlarmKey {
    AlarmKey::new(&post.estate, &post.id, format!("post_unattended:{}", post.id))
}

/// Where a route's alarms are raised: its post's area, else `patrol`.
fn patrol_area(m: &RotaModel, r: &PatrolRouteConfig) -> String {
    r.post
        .as_deref()
        .and_then(|p| m.post(p))
        .map_or_else(|| "patrol".to_owned(), |p| p.area().to_owned())
}
