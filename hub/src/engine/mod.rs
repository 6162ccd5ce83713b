//! The engine: owns the writer's domain state (the alarm book, gateway liveness, the rota
//! shell, the stream events of the transaction under way) and dispatches every entry point
//! the writer calls, in its transaction, to the domains' shells — `alarms/apply.rs`,
//! `events/apply.rs`, `incidents/apply.rs`, `escalation/apply.rs`, `notify/apply.rs`,
//! `rota/shell/`. Each shell applies its domain's pure decisions through its own
//! `queries.rs` and returns what follows elsewhere; `flow.rs` is the one
//! place that says what follows what. So an alarm change, the incident it opens, the
//! escalation timers it plans and the notifications it queues commit together or not at
//! all; stream events are published by the writer only after the commit.
//!
//! Invariant: nothing here or in the shells sleeps, sends, or writes outside the
//! transaction it is given. Deadlines are rows of `timers`, claimed by [`Engine::tick`] with
//! a conditional UPDATE; notifications are rows of `notifications`, sent by the deliverer.
//!
//! The entry points:
//! - [`Engine::restore`]: what the alarm book remembers, reloaded at start.
//! - [`Engine::on_event`]: a stored event's consequences besides alarms (vehicle entries;
//!   badges to the rota, `rota.rs`).
//! - [`Engine::apply_change`]: an alarm change from the rule engine, carried on by `flow.rs`.
//! - [`Engine::hello`], [`Engine::heard`], [`Engine::gateway_stalled`],
//!   [`Engine::gateway_progressing`]: gateway liveness and its alarms.
//! - [`Engine::op`] (`ops.rs`): operator actions ([`Op`]), refused with [`OpError`]; each
//!   one that succeeds leaves its audit row in the same transaction (`audit.rs`).
//! - [`Engine::tick`]: claims due timers and dispatches them by kind (`escalation`,
//!   `response_target`, `progress` to escalation; `shelve_expiry` to alarms;
//!   `command_deadline` to commands), then ends
//!   floods and chattering, detects silent gateways and runs the rota's tick.
//! - `Op::Answer` (`answer.rs`): a person's answer to a page (signed link, SMS reply)
//!   recorded as that person; it acknowledges the incident.
//! - [`Engine::command_result`] and the command ops (`commands.rs`): operator commands to
//!   devices recorded, settled by a gateway's result, and timed out by their timer.
//! - [`Engine::claim_deliveries`], [`Engine::delivery_result`]: the deliverer's lease and
//!   outcomes, through the writer.
//! - [`Engine::take_published`] / [`Engine::discard`]: after the commit / rollback.

mod answer;
mod audit;
mod commands;
mod flow;
mod ops;
mod rota;

use std::sync::Arc;

use crate::alarms::apply::{self as alarms, AlarmShell, NOT_CHATTERING};
use crate::alarms::book::BookState;
use crate::alarms::queries::Cause;
use crate::alarms::rules::{AlarmChange, RuleState};
use crate::config::HubConfig;
use crate::escalation::apply::EscalationShell;
use crate::escalation::{self, PolicyConfig, RoleResolver};
use crate::events::apply::{self as events, Liveness};
use crate::incidents::ProcedureConfig;
use crate::incidents::apply::IncidentShell;
use crate::notify::answer::LinkKey;
use crate::notify::apply::{EstateInfo, NotifySettings, NotifyShell};
use crate::notify::{Delivery, DeliveryOutcome};
use crate::store::{Conn, Pool, StoreError};
use crate::stream::{Published, StreamEvent};
use gatehouse_proto::event::Body;

pub use crate::error::OpError;
pub use audit::ack_audit;
pub use ops::Op;

/// Settings the engine reads from the configuration.
#[derive(Debug)]
pub struct EngineConfig {
    pub hub_id: String,
    pub policies: Vec<PolicyConfig>,
    pub procedures: Vec<ProcedureConfig>,
    pub group_window_ms: i64,
    pub response_target_ms: i64,
    pub progress_limit_ms: i64,
    pub shelve_max_minutes: i64,
    pub gateway_silent_ms: i64,
    /// What the notification shell needs of `[notify]` and `[[estates]]`.
    pub notify: NotifySettings,
}

impl EngineConfig {
    /// `http_addr`: where the HTTP port listens (links in notifications default to it);
    /// `link_key`: what answer links are signed with (loaded at start).
    pub fn from_config(c: &HubConfig, http_addr: std::net::SocketAddr, link_key: LinkKey) -> Self {
        EngineConfig {
            hub_id: c.hub.hub_id.clone(),
            policies: c.escalation.policies.clone(),
            procedures: c.procedures.clone(),
            group_window_ms: i64::from(c.incidents.group_window_s) * 1000,
            response_target_ms: i64::from(c.incidents.response_target_s) * 1000,
            progress_limit_ms: i64::from(c.incidents.progress_limit_s) * 1000,
            shelve_max_minutes: i64::from(c.alarms.shelve_max_minutes),
            gateway_silent_ms: i64::from(c.alarms.gateway_silent_after_s) * 1000,
            notify: NotifySettings::from_config(c, http_addr, link_key),
        }
    }
}

impl NotifySettings {
    fn from_config(c: &HubConfig, http_addr: std::net::SocketAddr, link_key: LinkKey) -> Self {
        let n = &c.notify;
        NotifySettings {
            hub_id: c.hub.hub_id.clone(),
            retry_initial_s: n.retry_initial_s,
            retry_max_s: n.retry_max_s,
            max_attempts: i64::from(n.max_attempts),
            language: n.language,
            public_url: n
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{http_addr}"))
                .trim_end_matches('/')
                .to_owned(),
            answer_link_ttl_ms: i64::from(n.answer_link_ttl_s) * 1000,
            digest_interval_s: n.digest_interval_s,
            estates: c
                .estates
                .iter()
                .map(|e| {
                    let info = EstateInfo {
                        name: e.name.clone(),
                        utc_offset_s: crate::rota::model::utc_offset_s(e.timezone.trim()).unwrap_or(0),
                    };
                    (e.id.clone(), info)
                })
                .collect(),
            link_key,
        }
    }
}

/// The writer's alarm-book, incident and escalation state.
#[derive(Debug)]
pub struct Engine {
    alarms: AlarmShell,
    liveness: Liveness,
    /// What this transaction publishes after its commit.
    out: Published,
    notify: NotifyShell,
    incidents: IncidentShell,
    escalation: EscalationShell,
    /// The rota shell (issue 4), when posts are configured.
    rota: Option<crate::rota::RotaShell>,
}

impl Engine {
    pub fn new(book: BookState, cfg: Arc<EngineConfig>, resolver: Arc<dyn RoleResolver>) -> Self {
        let notify = NotifyShell::new(cfg.notify.clone(), resolver.clone());
        let escalation = EscalationShell::new(
            cfg.hub_id.clone(),
            resolver.clone(),
            cfg.policies.clone(),
            cfg.response_target_ms,
            cfg.progress_limit_ms,
        );
        Engine {
            alarms: AlarmShell::new(book, cfg.shelve_max_minutes),
            liveness: Liveness::new(cfg.gateway_silent_ms),
            incidents: IncidentShell::new(cfg.procedures.clone(), cfg.group_window_ms),
            escalation,
            out: Published::default(),
            notify,
            rota: None,
        }
    }

    /// Adds the rota shell: presence from access events, the coverage ledger in the tick,
    /// `on_site` pulling guards off post, rota operator actions.
    pub fn with_rota(mut self, rota: crate::rota::RotaShell) -> Self {
        self.rota = Some(rota);
        self
    }

    /// Reloads what the alarm book remembers (recent raises, an open flood) from the database.
    pub async fn restore(&mut self, pool: &Pool, now: i64) -> Result<(), StoreError> {
        self.alarms.restore(pool, now).await
    }

    /// Stream events the transaction under way will publish once it commits.
    pub fn pending_published(&self) -> &[StreamEvent] {
        self.out.events()
    }

    /// Stream events of the transaction that just committed.
    pub fn take_published(&mut self) -> (Vec<StreamEvent>, bool) {
        if let Some(r) = self.rota.as_mut() {
            r.commit();
        }
        self.out.take()
    }

    /// The transaction failed: nothing it would have published happened.
    pub fn discard(&mut self) {
        if let Some(r) = self.rota.as_mut() {
            r.rollback();
        }
        self.out.clear();
    }

    /// Leases due notifications to the deliverer.
    pub async fn claim_deliveries(
        &mut self,
        conn: &mut Conn,
        limit: i64,
        now: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.notify.claim(conn, &mut self.out, limit, now).await
    }

    /// Records how a delivery went: delivered, a retry with backoff, or failed for good.
    pub async fn delivery_result(&mut self, conn: &mut Conn, o: &DeliveryOutcome, now: i64) -> Result<(), StoreError> {
        self.notify.record(conn, &mut self.out, o, now).await
    }

    /// Does whatever has fallen due by `now`: claimed timers, flood end, chattering end,
    /// silent gateways.
    pub async fn tick(&mut self, conn: &mut Conn, rules: &mut RuleState, now: i64) -> Result<usize, StoreError> {
        let mut fired = 0;
        // A skipped step brings the next one forward, so claim again (bounded).
        for _ in 0..16 {
            let mut due = self.escalation.claim_due(conn, now).await?;
            if due.is_empty() {
                break;
            }
            due.sort_by_key(|t| (t.due_at_ms, t.incident_id, t.run, t.step, t.attempt, t.id));
            for t in due {
                fired += 1;
                let outcome = match t.kind.as_str() {
                    "escalation" => self.escalation.fire(conn, &mut self.out, &self.notify, &t, now).await?,
                    "shelve_expiry" => {
                        let (outcome, again) =
                            alarms::shelve_expired(conn, &mut self.out, t.alarm_id, t.due_at_ms, now).await?;
                        if let Some(row) = again {
                            self.route_alarm(conn, &row, NOT_CHATTERING, now).await?;
                        }
                        outcome
                    }
                    "response_target" => {
                        self.escalation
                            .response_target(conn, &mut self.out, rules, &self.notify, &t, now)
                            .await?
                    }
                    "progress" => {
                        self.escalation
                            .progress_check(conn, &mut self.out, &self.notify, &t, now)
                            .await?
                    }
                    commands::DEADLINE_TIMER => self.command_deadline(conn, t.alarm_id, now).await?,
                    other => format!("unknown timer kind {other}"),
                };
                escalation::apply::record_outcome(conn, t.id, &outcome).await?;
            }
        }
        self.alarms.calm(conn, &mut self.out, now).await?;
        for (gateway, estate) in self.liveness.fallen_silent(now) {
            let raised = self
                .liveness
                .silent(conn, &mut self.out, &gateway, &estate, now)
                .await?;
            self.follow(conn, raised, now).await?;
        }
        if let Some(r) = self.rota.as_mut() {
            r.tick(conn, now).await?;
            self.rota_effects(conn, rules, now).await?;
        }
        Ok(fired)
    }

    /// A stored event's consequences besides its alarm changes: a vehicle entering counts
    /// for the registration KPI (no plate stored), a badge goes to the rota (presence and
    /// patrol scans).
    pub async fn on_event(
        &mut self,
        conn: &mut Conn,
        rules: &mut RuleState,
        event: &gatehouse_proto::Event,
        now: i64,
    ) -> Result<(), StoreError> {
        events::count_entry(conn, event, now).await?;
        if let Some(Body::Access(_)) = &event.body {
            self.rota_access(conn, rules, event, now).await?;
        }
        Ok(())
    }

    /// Persists one alarm change from the rule engine, and carries it on (`flow.rs`).
    pub async fn apply_change(
        &mut self,
        conn: &mut Conn,
        change: &AlarmChange,
        now: i64,
        cause: &Cause<'_>,
    ) -> Result<(), StoreError> {
        let then = self
            .alarms
            .apply_change(conn, &mut self.out, change, now, cause)
            .await?;
        self.follow(conn, then, now).await
    }

    /// A gateway said Hello: its estate is remembered; a Hello alone is not being heard.
    pub fn hello(&mut self, gateway: &str, estate: &str, now: i64) {
        self.liveness.hello(gateway, estate, now);
    }

    /// A gateway was heard from (Hello, a batch, a heartbeat): it is silent no more.
    /// `estate` may be omitted once the gateway's Hello has named it.
    pub async fn heard(
        &mut self,
        conn: &mut Conn,
        gateway: &str,
        estate: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.liveness.heard(conn, &mut self.out, gateway, estate, now).await
    }

    /// A connected gateway makes no progress (or its batch was refused): `gateway_stalled`.
    pub async fn gateway_stalled(
        &mut self,
        conn: &mut Conn,
        gateway: &str,
        estate: &str,
        message: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let raised = events::stalled(conn, &mut self.out, gateway, estate, message, now).await?;
        self.follow(conn, raised, now).await
    }

    /// The stalled gateway's stored sequence advanced again (or it has nothing pending).
    pub async fn gateway_progressing(
        &mut self,
        conn: &mut Conn,
        gateway: &str,
        estate: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        events::progressing(conn, &mut self.out, gateway, estate, now).await
    }
}
