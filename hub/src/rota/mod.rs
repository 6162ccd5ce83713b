//! The rota (issue 4): live coverage of every post from the events the hub already sees,
//! cover proposals, patrols, handovers and the weekly plan.
//!
//! Pure cores: [`model`] (configuration, time zones, shift instances), [`coverage`] (the
//! ledger: required against present, grace period), [`fit`] (hard and soft rules),
//! [`hungarian`] (the assignment solver), [`proposals`] (gaps → jointly solved cover),
//! [`plan`] (the weekly local search), [`patrol`] (tours), [`csv`], [`bulk`] (imports and
//! published plans as slices of slot changes). The shell is
//! [`RotaEngine`]: owned by the engine inside the ingest writer, called in its transaction,
//! it persists what the cores decide and hands the alarm book [`RotaEffect`]s (raise, clear,
//! notify, publish). Its state is published to readers ([`RotaShared`]: the role resolver,
//! the API) only after the transaction commits.

pub mod bulk;
pub mod coverage;
pub mod csv;
pub mod fit;
pub mod handover;
pub mod hungarian;
pub mod model;
pub mod patrol;
pub mod plan;
pub mod proposals;
pub mod resolver;
pub mod state;
pub mod store;
pub mod synth;

use std::sync::{Arc, RwLock};

use gatehouse_proto::{AccessResult, Event, event::Body};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::alarms::{AlarmKey, Category, Priority, rfc3339};
use crate::error::OpError;
use crate::escalation::{Recipient, Role};
use crate::rules::Activation;
use crate::store::{Conn, Context, Pool, StoreError};

use model::{PostConfig, RotaModel};
use state::{Absence, Assignment, Live, Presence};

const HOUR_MS: i64 = 3_600_000;
/// A second badge at the same post reader within this long is a double tap, not a clock-off.
const DEBOUNCE_MS: i64 = 60_000;

/// The committed rota state and the model, shared with readers.
#[derive(Debug)]
pub struct RotaShared {
    pub model: Arc<RotaModel>,
    live: RwLock<Arc<Live>>,
    /// Bulk actions (imports, published plans) run one at a time.
    pub bulk_lock: tokio::sync::Mutex<()>,
    pub bulk: bulk::BulkMetrics,
}

impl RotaShared {
    pub fn new(model: Arc<RotaModel>) -> Arc<Self> {
        Arc::new(RotaShared {
            model,
            live: RwLock::new(Arc::new(Live::default())),
            bulk_lock: tokio::sync::Mutex::new(()),
            bulk: bulk::BulkMetrics::default(),
        })
    }

    /// The committed live state.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn publish(&self, live: Live) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
    }
}

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
pub struct RotaEngine {
    shared: Arc<RotaShared>,
    cur: Live,
    /// The committed state, kept from the first change of a transaction (for a rollback).
    backup: Option<Live>,
    effects: Vec<RotaEffect>,
    last_prune: i64,
}

fn q<T>(r: Result<T, sqlx::Error>, what: &str) -> Result<T, StoreError> {
    r.context(|| what.to_owned())
}

fn refused<T>(e: OpError) -> Result<Result<T, OpError>, StoreError> {
    Ok(Err(e))
}

impl RotaEngine {
    /// Loads the rota's state from the database.
    pub async fn restore(shared: Arc<RotaShared>, pool: &Pool, now: i64) -> Result<RotaEngine, StoreError> {
        let m = shared.model.clone();
        let mut live = Live::default();
        type Row = (i64, String, String, String, i64, i64, i64, String, String);
        let rows: Vec<Row> = q(
            sqlx::query_as(
                "SELECT id, estate_id, post_id, shift, shift_start_ms, start_ms, end_ms, guard_id, source \
                 FROM rota_assignments WHERE status = 'active' AND end_ms > $1",
            )
            .bind(now - 29 * 24 * HOUR_MS)
            .fetch_all(pool)
            .await,
            "loading rota assignments",
        )?;
        for (id, estate, post, shift, shift_start, start, end, guard, source) in rows {
            live.add(Assignment {
                id,
                estate,
                post,
                shift,
                shift_start,
                start,
                end,
                guard,
                source,
            });
        }
        let rows: Vec<(String, String, i64)> = q(
            sqlx::query_as("SELECT guard_id, post_id, since_ms FROM rota_presence")
                .fetch_all(pool)
                .await,
            "loading presence",
        )?;
        for (guard, post, since) in rows {
            if m.post(&post).is_some() && m.guard(&guard).is_some() {
                live.presence.insert(guard, Presence { post, since });
            }
        }
        let rows: Vec<(i64, String, i64, i64, String)> = q(
            sqlx::query_as("SELECT id, guard_id, start_ms, end_ms, reason FROM rota_absences WHERE end_ms > $1")
                .bind(now - 29 * 24 * HOUR_MS)
                .fetch_all(pool)
                .await,
            "loading absences",
        )?;
        live.absences = rows
            .into_iter()
            .map(|(id, guard, start, end, reason)| Absence {
                id,
                guard,
                start,
                end,
                reason,
            })
            .collect();
        let rows: Vec<(String, i64, i64, Option<i64>)> = q(
            sqlx::query_as(
                "SELECT post_id, shift_start_ms, opened_at_ms, alarm_at_ms FROM rota_gaps WHERE closed_at_ms IS NULL",
            )
            .fetch_all(pool)
            .await,
            "loading open gaps",
        )?;
        for (post, shift_start, opened_at, alarm) in rows {
            live.gaps.insert(
                post,
                coverage::GapState {
                    shift_start,
                    opened_at,
                    alarmed: alarm.is_some(),
                },
            );
        }
        let rows: Vec<(String, i64)> = q(
            sqlx::query_as("SELECT post_id, MAX(shift_start_ms) FROM rota_handovers GROUP BY post_id")
                .fetch_all(pool)
                .await,
            "loading handovers",
        )?;
        live.handed_over = rows.into_iter().collect();
        let rows: Vec<(i64, String, i64, String, Option<String>)> = q(
            sqlx::query_as(
                "SELECT id, route_id, started_at_ms, checkpoints, guard_id FROM rota_patrol_tours WHERE status = 'running'",
            )
            .fetch_all(pool)
            .await,
            "loading patrol tours",
        )?;
        for (id, route, start, _order, guard) in rows {
            let Some(r) = m.routes.iter().find(|r| r.id == route) else {
                continue;
            };
            let mut tour = patrol::Tour::plan(r, id, start);
            tour.guard = guard;
            let scans: Vec<(i64, i64)> = q(
                sqlx::query_as("SELECT position, scanned_at_ms FROM rota_patrol_scans WHERE tour_id = $1")
                    .bind(id)
                    .fetch_all(pool)
                    .await,
                "loading patrol scans",
            )?;
            for (pos, at) in scans {
                if let Some(s) = tour.scanned.get_mut(pos as usize) {
                    *s = Some(at);
                }
            }
            live.last_tour.insert(route.clone(), start);
            live.tours.insert(route, tour);
        }
        let rows: Vec<(String, i64)> = q(
            sqlx::query_as("SELECT route_id, MAX(started_at_ms) FROM rota_patrol_tours GROUP BY route_id")
                .fetch_all(pool)
                .await,
            "loading patrol tours",
        )?;
        for (route, start) in rows {
            live.last_tour.entry(route).or_insert(start);
        }
        shared.publish(live.clone());
        info!(
            assignments = live.assignments.len(),
            on_post = live.presence.len(),
            open_gaps = live.gaps.len(),
            "rota loaded"
        );
        Ok(RotaEngine {
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

    async fn audit(conn: &mut Conn, now: i64, actor: &str, action: &str, detail: Value) -> Result<(), StoreError> {
        q(
            sqlx::query("INSERT INTO rota_audit (at_ms, actor, action, detail) VALUES ($1, $2, $3, $4)")
                .bind(now)
                .bind(actor)
                .bind(action)
                .bind(detail.to_string())
                .execute(&mut *conn)
                .await,
            "writing the rota audit",
        )?;
        Ok(())
    }

    // ---- presence ------------------------------------------------------------------------

    /// An `access` event: a guard's badge at a post's reader clocks them on (or, at the post
    /// they are on, off); at a patrol checkpoint it records the tour. Other credentials are
    /// ignored and never logged (residents' cards are personal data).
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
        q(
            sqlx::query(
                "INSERT INTO rota_presence (guard_id, post_id, since_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (guard_id) DO UPDATE SET post_id = excluded.post_id, since_ms = excluded.since_ms",
            )
            .bind(guard)
            .bind(post)
            .bind(now)
            .execute(&mut *conn)
            .await,
            "recording presence",
        )?;
        Self::log(conn, guard, p, "on", via, now, None, actor).await?;
        // Late clock-in: the first clock-on of an assigned guard for this shift.
        if let Some(slot) = m.slot_at(p, now)
            && let Some(a) = self
                .cur
                .assigned(post, slot.start_ms)
                .into_iter()
                .find(|a| a.guard == guard)
                .cloned()
        {
            let before: Option<i64> = q(
                sqlx::query_scalar(
                    "SELECT id FROM rota_presence_log WHERE guard_id = $1 AND post_id = $2 AND change = 'on' AND at_ms >= $3 AND at_ms < $4 LIMIT 1",
                )
                .bind(guard)
                .bind(post)
                .bind(slot.start_ms)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await,
                "reading earlier clock-ons",
            )?;
            let tol = i64::from(m.settings.late_after_s) * 1000;
            if before.is_none()
                && let Some(min) = coverage::lateness_min(a.start, now, tol)
            {
                Self::attendance(conn, guard, p, slot.start_ms, "late", min, now).await?;
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
    async fn off(
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
        q(
            sqlx::query("DELETE FROM rota_presence WHERE guard_id = $1")
                .bind(guard)
                .execute(&mut *conn)
                .await,
            "removing presence",
        )?;
        let post = m.post(&p.post).expect("known post");
        Self::log(conn, guard, post, change, via, now, incident, actor).await?;
        if change == "off"
            && let Some(slot) = m.slot_at(post, now)
            && let Some(a) = self
                .cur
                .assigned(&p.post, slot.start_ms)
                .into_iter()
                .find(|a| a.guard == guard)
            && let Some(min) = coverage::early_min(a.end, now, i64::from(m.settings.late_after_s) * 1000)
        {
            Self::attendance(conn, guard, post, slot.start_ms, "early", min, now).await?;
            info!(guard, post = %p.post, minutes = min, "early clock-out");
        }
        self.publish(
            "off_post",
            json!({"guard": guard, "post": p.post, "estate": post.estate, "change": change, "incident_id": incident}),
        );
        self.ledger(conn, &p.post, now).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn log(
        conn: &mut Conn,
        guard: &str,
        post: &PostConfig,
        change: &str,
        via: &str,
        now: i64,
        incident: Option<i64>,
        actor: Option<&str>,
    ) -> Result<(), StoreError> {
        q(
            sqlx::query(
                "INSERT INTO rota_presence_log (guard_id, post_id, estate_id, change, via, at_ms, incident_id, actor) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(guard)
            .bind(&post.id)
            .bind(&post.estate)
            .bind(change)
            .bind(via)
            .bind(now)
            .bind(incident)
            .bind(actor)
            .execute(&mut *conn)
            .await,
            "logging presence",
        )?;
        Ok(())
    }

    async fn attendance(
        conn: &mut Conn,
        guard: &str,
        post: &PostConfig,
        shift_start: i64,
        kind: &str,
        minutes: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        q(
            sqlx::query(
                "INSERT INTO rota_attendance (guard_id, post_id, estate_id, shift_start_ms, kind, minutes, at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(guard)
            .bind(&post.id)
            .bind(&post.estate)
            .bind(shift_start)
            .bind(kind)
            .bind(minutes)
            .bind(now)
            .execute(&mut *conn)
            .await,
            "recording attendance",
        )?;
        Ok(())
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

    // ---- the ledger ----------------------------------------------------------------------

    /// Brings one post's gap up to date with its presence and the time.
    async fn ledger(&mut self, conn: &mut Conn, post_id: &str, now: i64) -> Result<(), StoreError> {
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
                coverage::GapEffect::Opened => {
                    let g = next.expect("opened");
                    q(
                        sqlx::query(
                            "INSERT INTO rota_gaps (estate_id, post_id, shift_start_ms, required, opened_at_ms, alarm_at_ms) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(&post.estate)
                        .bind(post_id)
                        .bind(g.shift_start)
                        .bind(i64::from(post.required()))
                        .bind(now)
                        .bind(g.alarmed.then_some(now))
                        .execute(&mut *conn)
                        .await,
                        "opening a gap",
                    )?;
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
                coverage::GapEffect::Alarm => {
                    q(
                        sqlx::query(
                            "UPDATE rota_gaps SET alarm_at_ms = $1 WHERE post_id = $2 AND closed_at_ms IS NULL",
                        )
                        .bind(now)
                        .bind(post_id)
                        .execute(&mut *conn)
                        .await,
                        "recording a gap's alarm",
                    )?;
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
                coverage::GapEffect::Closed { clear_alarm } => {
                    q(
                        sqlx::query(
                            "UPDATE rota_gaps SET closed_at_ms = $1 WHERE post_id = $2 AND closed_at_ms IS NULL",
                        )
                        .bind(now)
                        .bind(post_id)
                        .execute(&mut *conn)
                        .await,
                        "closing a gap",
                    )?;
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

    // ---- time ----------------------------------------------------------------------------

    /// Grace periods, shift changes (handover sheets) and patrol deadlines.
    pub async fn tick(&mut self, conn: &mut Conn, now: i64) -> Result<(), StoreError> {
        let m = self.m();
        for p in &m.posts {
            self.ledger(conn, &p.id, now).await?;
            if let Some(slot) = m.slot_at(p, now)
                && self.cur.handed_over.get(&p.id) != Some(&slot.start_ms)
            {
                self.live_mut().handed_over.insert(p.id.clone(), slot.start_ms);
                let present: Vec<String> = self
                    .cur
                    .present_at(&p.id)
                    .into_iter()
                    .map(|(g, _)| g.to_owned())
                    .collect();
                let incoming: Vec<String> = self
                    .cur
                    .assigned(&p.id, slot.start_ms)
                    .into_iter()
                    .map(|a| a.guard.clone())
                    .collect();
                if let Some(id) = handover::prepare(conn, p, &slot, &present, &incoming, now).await? {
                    self.publish(
                        "handover",
                        json!({"id": id, "estate": p.estate, "post": p.id, "shift": slot.shift}),
                    );
                }
            }
        }
        for (ri, r) in m.routes.iter().enumerate() {
            self.patrol_tick(conn, ri, r, now).await?;
        }
        if now - self.last_prune > HOUR_MS {
            self.last_prune = now;
            self.live_mut().prune(now);
        }
        Ok(())
    }

    async fn patrol_tick(
        &mut self,
        conn: &mut Conn,
        ri: usize,
        r: &model::PatrolRouteConfig,
        now: i64,
    ) -> Result<(), StoreError> {
        let _ = ri;
        if let Some(t) = self.cur.tours.get(&r.id).cloned() {
            let overdue = patrol::overdue(&t, r, now);
            if !overdue.is_empty() && !t.missed_alarmed {
                self.live_mut().tours.get_mut(&r.id).expect("running").missed_alarmed = true;
                let names: Vec<&str> = overdue.iter().map(|&i| t.order[i].as_str()).collect();
                self.effects.push(RotaEffect::Raise(Activation {
                    key: AlarmKey::new(&r.estate, &r.id, format!("patrol_missed:{}", r.id)),
                    gateway: "hub".into(),
                    area: patrol_area(&self.m(), r),
                    priority: Priority::P2,
                    category: Category::Security,
                    message: format!(
                        "Patrol {} missed checkpoint {} (tour #{} started {})",
                        r.id,
                        names.join(", "),
                        t.id,
                        rfc3339(t.start)
                    ),
                    latched: true,
                    value: None,
                    repeat: false,
                }));
                warn!(route = %r.id, tour = t.id, "patrol checkpoint missed");
            }
            if now >= t.ends_at(r) {
                let outcome = patrol::outcome(&t, r);
                q(
                    sqlx::query("UPDATE rota_patrol_tours SET status = $1, ended_at_ms = $2 WHERE id = $3")
                        .bind(outcome)
                        .bind(now)
                        .bind(t.id)
                        .execute(&mut *conn)
                        .await,
                    "ending a patrol tour",
                )?;
                self.live_mut().tours.remove(&r.id);
                self.publish("patrol_ended", json!({"route": r.id, "tour": t.id, "outcome": outcome}));
            }
            return Ok(());
        }
        let period = i64::from(r.period_min) * 60_000;
        let due = self.cur.last_tour.get(&r.id).map_or(now, |l| l + period);
        if now < due {
            return Ok(());
        }
        if let Some(post) = &r.post
            && self.cur.present_at(post).is_empty()
        {
            return Ok(());
        }
        let start = if now - due < period {
            due.max(now - 60_000).min(now)
        } else {
            now
        };
        let id: i64 = q(
            sqlx::query_scalar(
                "INSERT INTO rota_patrol_tours (route_id, estate_id, started_at_ms, checkpoints, status) \
                 VALUES ($1, $2, $3, '[]', 'running') RETURNING id",
            )
            .bind(&r.id)
            .bind(&r.estate)
            .bind(start)
            .fetch_one(&mut *conn)
            .await,
            "starting a patrol tour",
        )?;
        let tour = patrol::Tour::plan(r, id, start);
        q(
            sqlx::query("UPDATE rota_patrol_tours SET checkpoints = $1 WHERE id = $2")
                .bind(serde_json::to_string(&tour.order).unwrap_or_default())
                .bind(id)
                .execute(&mut *conn)
                .await,
            "starting a patrol tour",
        )?;
        self.publish(
            "patrol_started",
            json!({"route": r.id, "tour": id, "order": tour.order}),
        );
        let live = self.live_mut();
        live.last_tour.insert(r.id.clone(), start);
        live.tours.insert(r.id.clone(), tour);
        Ok(())
    }

    async fn scan(
        &mut self,
        conn: &mut Conn,
        ri: usize,
        checkpoint: &str,
        guard: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let m = self.m();
        let r = &m.routes[ri];
        let Some(mut t) = self.cur.tours.get(&r.id).cloned() else {
            return Ok(());
        };
        let outcome = patrol::scan(&mut t, r, checkpoint, now);
        let (index, late) = match outcome {
            patrol::Scan::Ignored => return Ok(()),
            patrol::Scan::OnTime { index } => (index, 0),
            patrol::Scan::Late { index, minutes } => (index, minutes),
        };
        t.guard.get_or_insert_with(|| guard.to_owned());
        q(
            sqlx::query(
                "INSERT INTO rota_patrol_scans (tour_id, checkpoint, position, expected_at_ms, scanned_at_ms, guard_id, late_min) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(t.id)
            .bind(checkpoint)
            .bind(index as i64)
            .bind(t.expected[index])
            .bind(now)
            .bind(guard)
            .bind(late)
            .execute(&mut *conn)
            .await,
            "recording a patrol scan",
        )?;
        q(
            sqlx::query("UPDATE rota_patrol_tours SET guard_id = COALESCE(guard_id, $1) WHERE id = $2")
                .bind(guard)
                .bind(t.id)
                .execute(&mut *conn)
                .await,
            "recording a patrol scan",
        )?;
        if late > 0 && !t.late_alarmed {
            t.late_alarmed = true;
            self.effects.push(RotaEffect::Raise(Activation {
                key: AlarmKey::new(&r.estate, &r.id, format!("patrol_late:{}", r.id)),
                gateway: "hub".into(),
                area: patrol_area(&m, r),
                priority: Priority::P3,
                category: Category::Security,
                message: format!(
                    "Patrol {} late at checkpoint {checkpoint} by {late} min (tour #{})",
                    r.id, t.id
                ),
                latched: true,
                value: None,
                repeat: false,
            }));
        }
        self.live_mut().tours.insert(r.id.clone(), t);
        Ok(())
    }

    // ---- operator actions ----------------------------------------------------------------

    /// Carries out a rota action. `Ok(Err(_))` is a refusal (nothing written).
    pub async fn op(&mut self, conn: &mut Conn, op: RotaOp, now: i64) -> Result<Result<i64, OpError>, StoreError> {
        let m = self.m();
        match op {
            RotaOp::CheckIn { guard, post, actor } => {
                if m.guard(&guard).is_none() {
                    return refused(OpError::NotFound(format!("guard {guard} not found")));
                }
                if m.post(&post).is_none() {
                    return refused(OpError::NotFound(format!("post {post} not found")));
                }
                if self.cur.presence.get(&guard).is_some_and(|p| p.post == post) {
                    return refused(OpError::Conflict(format!("guard {guard} is already on post {post}")));
                }
                self.on(conn, &guard, &post, "api", Some(&actor), now).await?;
                Ok(Ok(0))
            }
            RotaOp::CheckOut { guard, actor } => {
                if !self.cur.presence.contains_key(&guard) {
                    return refused(OpError::Conflict(format!("guard {guard} is not on a post")));
                }
                self.off(conn, &guard, "off", "api", None, Some(&actor), now).await?;
                Ok(Ok(0))
            }
            RotaOp::Absence {
                guard,
                from_ms,
                until_ms,
                reason,
                actor,
            } => {
                if m.guard(&guard).is_none() {
                    return refused(OpError::NotFound(format!("guard {guard} not found")));
                }
                let from = from_ms.unwrap_or(now);
                let until = match until_ms {
                    Some(u) => u,
                    None => self
                        .cur
                        .of_guard(&guard)
                        .into_iter()
                        .find(|a| a.end > from)
                        .map_or(from + 24 * HOUR_MS, |a| a.end),
                };
                if until <= from {
                    return refused(OpError::Unprocessable("the absence must end after it starts".into()));
                }
                let id: i64 = q(
                    sqlx::query_scalar(
                        "INSERT INTO rota_absences (guard_id, start_ms, end_ms, reason, reported_by, at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    )
                    .bind(&guard)
                    .bind(from)
                    .bind(until)
                    .bind(&reason)
                    .bind(&actor)
                    .bind(now)
                    .fetch_one(&mut *conn)
                    .await,
                    "recording an absence",
                )?;
                self.live_mut().absences.push(Absence {
                    id,
                    guard: guard.clone(),
                    start: from,
                    end: until,
                    reason: reason.clone(),
                });
                let hit: Vec<Assignment> = self
                    .cur
                    .of_guard(&guard)
                    .into_iter()
                    .filter(|a| a.start < until && from < a.end)
                    .cloned()
                    .collect();
                for a in &hit {
                    self.set_status(conn, a.id, "absent", now).await?;
                }
                if self.cur.presence.contains_key(&guard) {
                    self.off(conn, &guard, "off", "api", None, Some(&actor), now).await?;
                }
                Self::audit(
                    conn,
                    now,
                    &actor,
                    "absence",
                    json!({"guard": guard, "from": rfc3339(from), "until": rfc3339(until), "reason": reason,
                           "assignments": hit.iter().map(|a| a.id).collect::<Vec<_>>()}),
                )
                .await?;
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
            RotaOp::Accept { proposal, actor } => self.accept(conn, &proposal, &actor, now).await,
            RotaOp::Assign { slot, guard, actor } => {
                let Some(s) = m.slot_by_key(&slot) else {
                    return refused(OpError::NotFound(format!("slot {slot} not found")));
                };
                let Some(g) = m.guard(&guard) else {
                    return refused(OpError::NotFound(format!("guard {guard} not found")));
                };
                let post = m.post(&s.post).expect("slot of a known post");
                let pool = proposals::Pool::for_guards(&m, &self.cur, now, &[guard.as_str()]);
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
                let id = self.insert(conn, &s, &guard, s.start_ms, s.end_ms, "api", now).await?;
                Self::audit(
                    conn,
                    now,
                    &actor,
                    "assign",
                    json!({"assignment": id, "slot": slot, "guard": guard}),
                )
                .await?;
                Ok(Ok(id))
            }
            RotaOp::Unassign { id, actor } => {
                let Some(a) = self.cur.assignments.get(&id).map(|a| (**a).clone()) else {
                    return refused(OpError::NotFound(format!("assignment {id} not found")));
                };
                self.set_status(conn, id, "cancelled", now).await?;
                Self::audit(
                    conn,
                    now,
                    &actor,
                    "unassign",
                    json!({"assignment": id, "guard": a.guard, "post": a.post}),
                )
                .await?;
                self.ledger(conn, &a.post, now).await?;
                Ok(Ok(id))
            }
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
            RotaOp::BulkDone { source, actor, detail } => {
                Self::audit(conn, now, &actor, source, detail.clone()).await?;
                info!(source, %detail, "bulk rota action done");
                let mut data = detail;
                data["source"] = json!(source);
                self.publish("rota", data);
                Ok(Ok(0))
            }
            RotaOp::HandoverAck { id, guard } => handover::acknowledge(conn, id, &guard, now).await,
            RotaOp::Note { post, text, author } => {
                let Some(p) = m.post(&post) else {
                    return refused(OpError::NotFound(format!("post {post} not found")));
                };
                let id: i64 = q(
                    sqlx::query_scalar(
                        "INSERT INTO rota_notes (estate_id, post_id, text, author, at_ms) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    )
                    .bind(&p.estate)
                    .bind(&post)
                    .bind(&text)
                    .bind(&author)
                    .bind(now)
                    .fetch_one(&mut *conn)
                    .await,
                    "adding a handover note",
                )?;
                Ok(Ok(id))
            }
            RotaOp::PatrolRecord {
                tour,
                findings,
                actions,
                by,
            } => {
                let n = q(
                    sqlx::query(
                        "UPDATE rota_patrol_tours SET findings = COALESCE($1, findings), actions = COALESCE($2, actions), recorded_by = $3 WHERE id = $4",
                    )
                    .bind(findings)
                    .bind(actions)
                    .bind(&by)
                    .bind(tour)
                    .execute(&mut *conn)
                    .await,
                    "recording a patrol's findings",
                )?
                .rows_affected();
                if n == 0 {
                    return refused(OpError::NotFound(format!("patrol tour {tour} not found")));
                }
                Ok(Ok(tour))
            }
        }
    }

    /// Gives each slot of a bulk slice exactly its guards (rows already there are kept, so
    /// applying the same change twice changes nothing), in order, until the slice has worked
    /// `budget` (at least one slot, so every slice makes progress). Linear in the slice.
    async fn apply_slice(
        &mut self,
        conn: &mut Conn,
        mut changes: Vec<bulk::SlotChange>,
        source: &'static str,
        budget: std::time::Duration,
        now: i64,
    ) -> Result<bulk::SliceOutcome, StoreError> {
        let started = std::time::Instant::now();
        // What the slots hold now, read per post over the slice's span of it (the slot
        // index): the cost follows the slice, never the size of the whole rota.
        let mut have: Vec<Vec<(i64, String)>> = vec![Vec::new(); changes.len()];
        {
            let mut spans: std::collections::HashMap<&str, (i64, i64)> = std::collections::HashMap::new();
            let mut index: std::collections::HashMap<(&str, i64), usize> = std::collections::HashMap::new();
            for (i, c) in changes.iter().enumerate() {
                let (post, at) = (c.slot.post.as_str(), c.slot.start_ms);
                index.insert((post, at), i);
                let span = spans.entry(post).or_insert((at, at));
                *span = (span.0.min(at), span.1.max(at));
            }
            for (post, (lo, hi)) in spans {
                let rows: Vec<(i64, String, i64)> = q(
                    sqlx::query_as(
                        "SELECT id, guard_id, shift_start_ms FROM rota_assignments \
                         WHERE post_id = $1 AND shift_start_ms >= $2 AND shift_start_ms <= $3 AND status = 'active'",
                    )
                    .bind(post)
                    .bind(lo)
                    .bind(hi)
                    .fetch_all(&mut *conn)
                    .await,
                    "reading the assignments of a bulk slice",
                )?;
                for (id, guard, at) in rows {
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

    #[allow(clippy::too_many_arguments)]
    async fn insert(
        &mut self,
        conn: &mut Conn,
        s: &model::Slot,
        guard: &str,
        start: i64,
        end: i64,
        source: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let id: i64 = q(
            sqlx::query_scalar(
                "INSERT INTO rota_assignments (estate_id, post_id, shift, shift_start_ms, start_ms, end_ms, guard_id, status, source, created_at_ms, changed_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, $9) RETURNING id",
            )
            .bind(&s.estate)
            .bind(&s.post)
            .bind(&s.shift)
            .bind(s.start_ms)
            .bind(start)
            .bind(end)
            .bind(guard)
            .bind(source)
            .bind(now)
            .fetch_one(&mut *conn)
            .await,
            "adding an assignment",
        )?;
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

    async fn set_status(&mut self, conn: &mut Conn, id: i64, status: &str, now: i64) -> Result<(), StoreError> {
        q(
            sqlx::query("UPDATE rota_assignments SET status = $1, changed_at_ms = $2 WHERE id = $3")
                .bind(status)
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await,
            "changing an assignment",
        )?;
        self.live_mut().remove_assignment(id);
        Ok(())
    }

    /// Ends a guard's assignment now (the part already worked stays on record) or, if it has
    /// not started, marks it moved.
    async fn release(&mut self, conn: &mut Conn, a: &Assignment, now: i64) -> Result<(), StoreError> {
        if a.start < now {
            q(
                sqlx::query("UPDATE rota_assignments SET end_ms = $1, changed_at_ms = $1, note = 'moved to cover' WHERE id = $2")
                    .bind(now)
                    .bind(a.id)
                    .execute(&mut *conn)
                    .await,
                "shortening an assignment",
            )?;
            if let Some(x) = self.live_mut().assignments.get_mut(&a.id) {
                Arc::make_mut(x).end = now;
            }
            Ok(())
        } else {
            self.set_status(conn, a.id, "moved", now).await
        }
    }

    /// Accepts a proposal `gap~guard[~backfill]`, re-checking it against the state now.
    async fn accept(
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
        let mut back: Option<(String, model::Slot, i64, i64)> = None;
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
                recipients: vec![Recipient {
                    name: guard.name.clone(),
                    channel: guard.channel.clone(),
                }],
                kind: "cover",
                text,
            });
        }
        Self::audit(
            conn,
            now,
            actor,
            "accept_proposal",
            json!({"proposal": id, "gap": gap_id, "guard": guard_id, "assignment": new_id,
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

fn unattended_key(post: &PostConfig) -> AlarmKey {
    AlarmKey::new(&post.estate, &post.id, format!("post_unattended:{}", post.id))
}

fn patrol_area(m: &RotaModel, r: &model::PatrolRouteConfig) -> String {
    r.post
        .as_deref()
        .and_then(|p| m.post(p))
        .map_or_else(|| "patrol".to_owned(), |p| p.area().to_owned())
}
