//! The imperative shell around the pure decisions of [`crate::book`], [`crate::incidents`]
//! and [`crate::escalation`]. Owned by the ingest writer and called inside its transaction,
//! so an alarm change, the incident it opens, the escalation timers it plans and the
//! notifications it queues commit together or not at all.
//!
//! Nothing here sleeps: deadlines are rows of `timers`, claimed by [`Engine::tick`] with a
//! conditional UPDATE; notifications are rows of `notifications`, sent by the deliverer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};
use tracing::{info, warn};

use crate::alarms::{AlarmKey, Category, HistoryChange, Priority, rfc3339};
use crate::book::{BookState, Chatter, Flood};
use crate::config::HubConfig;
use crate::escalation::{self, Condition, Decision, IncidentStatus, Recipient, Role, RoleResolver, StepSpec};
use crate::incidents::{
    self, IncidentCategory, IncidentState, OpenIncident, Route, TransitionContext, TransitionRequest,
};
use crate::notify::{Delivery, DeliveryOutcome, StreamEvent, backoff_ms};
use crate::rules::{Activation, AlarmChange, RuleState};
use crate::store::incidents::{IncidentRow, TIMER_COLUMNS, TimerRow, get_incident};
use crate::store::write::{self, Cause};
use crate::store::{self, AlarmRow, Conn, Context, Pool, StoreError};

/// A refused operator action (the transaction goes on; nothing of the action is written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    NotFound(String),
    /// 409: the action conflicts with the current state (illegal transition, step done).
    #[error("{0}")]
    Conflict(String),
    /// 422: the request is well-formed but not acceptable (a reason missing, too long a shelve).
    #[error("{0}")]
    Unprocessable(String),
}

/// An operator action carried out by the writer.
#[derive(Debug, Clone)]
pub enum Op {
    Shelve {
        alarm_id: i64,
        minutes: i64,
        reason: String,
        operator: String,
    },
    OutOfService {
        alarm_id: i64,
        on: bool,
        reason: String,
        operator: String,
    },
    /// Puts a device in maintenance (its alarms suppressed by design) or takes it out.
    Maintenance {
        estate: String,
        device: String,
        on: bool,
        reason: String,
        operator: String,
        until_ms: Option<i64>,
    },
    Open {
        estate: String,
        area: String,
        category: IncidentCategory,
        priority: Priority,
        title: String,
        operator: String,
        note: Option<String>,
    },
    Transition {
        incident_id: i64,
        to: IncidentState,
        actor: String,
        note: Option<String>,
        reason: Option<String>,
        override_by: Option<String>,
    },
    Step {
        incident_id: i64,
        step: String,
        actor: String,
        note: Option<String>,
        skipped: bool,
    },
    /// A rota action (check-in/out, absence, accepting a proposal, assignments, plans).
    Rota(crate::rota::RotaOp),
}

/// Settings the engine reads from the configuration.
#[derive(Debug)]
pub struct EngineConfig {
    pub hub_id: String,
    pub policies: Vec<escalation::PolicyConfig>,
    pub procedures: Vec<incidents::ProcedureConfig>,
    pub group_window_ms: i64,
    pub response_target_ms: i64,
    pub progress_limit_ms: i64,
    pub shelve_max_minutes: i64,
    pub gateway_silent_ms: i64,
    pub retry_initial_s: u32,
    pub retry_max_s: u32,
    pub max_attempts: i64,
}

impl EngineConfig {
    pub fn from_config(c: &HubConfig) -> Self {
        EngineConfig {
            hub_id: c.hub.hub_id.clone(),
            policies: c.escalation.policies.clone(),
            procedures: c.procedures.clone(),
            group_window_ms: i64::from(c.incidents.group_window_s) * 1000,
            response_target_ms: i64::from(c.incidents.response_target_s) * 1000,
            progress_limit_ms: i64::from(c.incidents.progress_limit_s) * 1000,
            shelve_max_minutes: i64::from(c.alarms.shelve_max_minutes),
            gateway_silent_ms: i64::from(c.alarms.gateway_silent_after_s) * 1000,
            retry_initial_s: c.notify.retry_initial_s,
            retry_max_s: c.notify.retry_max_s,
            max_attempts: i64::from(c.notify.max_attempts),
        }
    }
}

/// The writer's alarm-book, incident and escalation state.
#[derive(Debug)]
pub struct Engine {
    pub book: BookState,
    cfg: Arc<EngineConfig>,
    resolver: Arc<dyn RoleResolver>,
    /// Gateway → (estate, last heard), for silence detection.
    heard: HashMap<String, (String, i64)>,
    silent: HashSet<String>,
    published: Vec<StreamEvent>,
    wake: bool,
    /// The rota shell (issue 4), when posts are configured.
    rota: Option<crate::rota::RotaEngine>,
}

fn is_open(state: &str) -> bool {
    !matches!(state, "closed" | "false_alarm")
}

fn q<T>(r: Result<T, sqlx::Error>, what: &str) -> Result<T, StoreError> {
    r.context(|| what.to_owned())
}

fn alarm_category(c: IncidentCategory) -> Category {
    match c {
        IncidentCategory::Fire => Category::Fire,
        IncidentCategory::EquipmentFault | IncidentCategory::PumpFlooding => Category::Plant,
        _ => Category::Security,
    }
}

impl Engine {
    pub fn new(book: BookState, cfg: Arc<EngineConfig>, resolver: Arc<dyn RoleResolver>) -> Self {
        Engine {
            book,
            cfg,
            resolver,
            heard: HashMap::new(),
            silent: HashSet::new(),
            published: Vec::new(),
            wake: false,
            rota: None,
        }
    }

    /// Adds the rota shell: presence from access events, the coverage ledger in the tick,
    /// `on_site` pulling guards off post, rota operator actions.
    pub fn with_rota(mut self, rota: crate::rota::RotaEngine) -> Self {
        self.rota = Some(rota);
        self
    }

    /// Reloads what the book remembers (recent raises, an open flood) from the database.
    pub async fn restore(&mut self, pool: &Pool, now: i64) -> Result<(), StoreError> {
        let since = now - self.book.t.flood_window_ms.max(self.book.t.chatter_window_ms);
        let rows: Vec<(String, String, String, i64)> = q(
            sqlx::query_as(
                "SELECT a.estate_id, a.device_id, a.condition, h.at_ms FROM alarm_history h \
                 JOIN alarms a ON a.id = h.alarm_id WHERE h.at_ms > $1 AND h.change IN ('raised', 'reraised')",
            )
            .bind(since)
            .fetch_all(pool)
            .await,
            "reading recent alarm raises",
        )?;
        let open: Option<i64> = q(
            sqlx::query_scalar("SELECT id FROM flood_periods WHERE ended_at_ms IS NULL LIMIT 1")
                .fetch_optional(pool)
                .await,
            "reading flood periods",
        )?;
        let mut book = BookState::new(self.book.t);
        book.restore(
            rows.into_iter().map(|(e, d, c, at)| (AlarmKey::new(e, d, c), at)),
            open.is_some(),
        );
        self.book = book;
        Ok(())
    }

    /// Stream events of the transaction that just committed.
    pub fn take_published(&mut self) -> (Vec<StreamEvent>, bool) {
        if let Some(r) = self.rota.as_mut() {
            r.commit();
        }
        (std::mem::take(&mut self.published), std::mem::take(&mut self.wake))
    }

    /// The transaction failed: nothing it would have published happened.
    pub fn discard(&mut self) {
        if let Some(r) = self.rota.as_mut() {
            r.rollback();
        }
        self.published.clear();
        self.wake = false;
    }

    fn publish(&mut self, kind: &'static str, id: i64, change: impl Into<String>, data: Value) {
        self.published.push(StreamEvent {
            kind,
            id,
            change: change.into(),
            data,
        });
    }

    // ---- alarm changes -------------------------------------------------------------------

    /// Persists one alarm change and what follows from it.
    pub async fn apply_change(
        &mut self,
        conn: &mut Conn,
        change: &AlarmChange,
        now: i64,
        cause: &Cause<'_>,
    ) -> Result<(), StoreError> {
        match change {
            AlarmChange::Activate(a) => {
                let (id, what) = write::activate(conn, a, now, cause).await?;
                // The condition may carry personal data (an intercom's flat): not logged.
                info!(alarm = id, estate = %a.key.estate, device = %a.key.device, priority = a.priority.as_str(), change = what.as_str(), "alarm activated");
                self.publish_alarm(id, what.as_str(), a);
                if matches!(what, HistoryChange::Raised | HistoryChange::Reraised) {
                    self.on_raise(conn, id, now).await?;
                }
            }
            AlarmChange::Value { key, value } => write::set_value(conn, key, *value).await?,
            AlarmChange::Clear { key, note } => {
                let cause = Cause {
                    note: cause.note.or(Some(note)),
                    ..cause.clone()
                };
                if let Some(id) = write::clear(conn, key, now, &cause).await? {
                    info!(alarm = id, estate = %key.estate, device = %key.device, "alarm cleared");
                    self.publish(
                        "alarm",
                        id,
                        "cleared",
                        json!({"estate": key.estate, "device": key.device}),
                    );
                    self.on_alarm_note(conn, id, "cleared", now).await?;
                } else {
                    warn!(device = %key.device, "rule engine cleared an alarm that is not active in the book");
                }
            }
            AlarmChange::Acknowledge { key, operator, .. } => {
                if let Some(id) = write::acknowledge(conn, key, operator, now, cause).await? {
                    self.publish(
                        "alarm",
                        id,
                        "acknowledged",
                        json!({"estate": key.estate, "device": key.device, "by": operator}),
                    );
                    self.on_acked(conn, id, operator, now).await?;
                }
            }
        }
        Ok(())
    }

    fn publish_alarm(&mut self, id: i64, change: &str, a: &Activation) {
        self.publish(
            "alarm",
            id,
            change,
            json!({"estate": a.key.estate, "device": a.key.device, "area": a.area,
                   "priority": a.priority.as_str(), "category": a.category.as_str(), "message": a.message}),
        );
    }

    async fn alarm(conn: &mut Conn, id: i64) -> Result<AlarmRow, StoreError> {
        store::get_alarm(conn, id).await?.ok_or_else(|| StoreError::Query {
            what: format!("alarm {id} vanished inside its own transaction"),
            source: sqlx::Error::RowNotFound,
        })
    }

    async fn incident(conn: &mut Conn, id: i64) -> Result<IncidentRow, StoreError> {
        get_incident(conn, id).await?.ok_or_else(|| StoreError::Query {
            what: format!("incident {id} vanished inside its own transaction"),
            source: sqlx::Error::RowNotFound,
        })
    }

    async fn alarm_flag(conn: &mut Conn, id: i64, column: &str, on: bool) -> Result<(), StoreError> {
        q(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE alarms SET {column} = $1 WHERE id = $2"
            )))
            .bind(on)
            .bind(id)
            .execute(&mut *conn)
            .await,
            "updating an alarm overlay",
        )?;
        Ok(())
    }

    async fn history(
        conn: &mut Conn,
        id: i64,
        change: HistoryChange,
        now: i64,
        actor: Option<&str>,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        let cause = Cause {
            actor,
            note,
            event: None,
        };
        write::history(conn, id, change, now, &cause).await
    }

    /// A raise or re-raise: chattering, flood, overlays, then the incident.
    async fn on_raise(&mut self, conn: &mut Conn, id: i64, now: i64) -> Result<(), StoreError> {
        let row = Self::alarm(conn, id).await?;
        let (chatter, flood) = self.book.activation(&row.key(), now);
        if chatter.started {
            Self::alarm_flag(conn, id, "chattering", true).await?;
            Self::history(
                conn,
                id,
                HistoryChange::Chattering,
                now,
                None,
                Some("3 or more activations within the chatter window"),
            )
            .await?;
            self.publish("alarm", id, "chattering", json!({"estate": row.estate_id}));
        }
        if let Some(Flood::Started { alarms_in_window }) = flood {
            self.flood_started(conn, &row.estate_id, alarms_in_window, now).await?;
        }
        // Suppressed by design: a fire alarm in a zone its panel has disabled.
        if let Some(zone) = row
            .condition
            .strip_prefix("fire_alarm:")
            .or(row.condition.strip_prefix("pre_alarm:"))
        {
            let disabled: Option<i64> = q(
                sqlx::query_scalar(
                    "SELECT id FROM alarms WHERE estate_id = $1 AND device_id = $2 AND condition = $3 AND active = $4",
                )
                .bind(&row.estate_id)
                .bind(&row.device_id)
                .bind(format!("zone_disabled:{zone}"))
                .bind(true)
                .fetch_optional(&mut *conn)
                .await,
                "checking for a disabled fire zone",
            )?;
            if disabled.is_some() != row.suppressed {
                Self::alarm_flag(conn, id, "suppressed", disabled.is_some()).await?;
            }
            if disabled.is_some() {
                Self::history(
                    conn,
                    id,
                    HistoryChange::Suppressed,
                    now,
                    None,
                    Some("fire zone disabled at the panel"),
                )
                .await?;
                self.publish("alarm", id, "suppressed", json!({"estate": row.estate_id}));
                return Ok(());
            }
        }
        // Suppressed by design: the device is in maintenance.
        let maintenance: Option<String> = q(
            sqlx::query_scalar(
                "SELECT reason FROM device_maintenance WHERE estate_id = $1 AND device_id = $2 \
                 AND (until_ms IS NULL OR until_ms > $3)",
            )
            .bind(&row.estate_id)
            .bind(&row.device_id)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await,
            "checking for device maintenance",
        )?;
        if let Some(reason) = maintenance {
            if !row.suppressed {
                Self::alarm_flag(conn, id, "suppressed", true).await?;
            }
            let note = format!("device in maintenance: {reason}");
            Self::history(conn, id, HistoryChange::Suppressed, now, None, Some(&note)).await?;
            self.publish("alarm", id, "suppressed", json!({"estate": row.estate_id}));
            return Ok(());
        }
        if row.shelved_until_ms.is_some_and(|t| t > now) || row.out_of_service {
            return Ok(());
        }
        self.route_alarm(conn, &row, chatter, now).await
    }

    async fn flood_started(&mut self, conn: &mut Conn, estate: &str, n: usize, now: i64) -> Result<(), StoreError> {
        let id: i64 = q(
            sqlx::query_scalar(
                "INSERT INTO flood_periods (started_at_ms, alarms_at_start) VALUES ($1, $2) RETURNING id",
            )
            .bind(now)
            .bind(n as i64)
            .fetch_one(&mut *conn)
            .await,
            "recording a flood",
        )?;
        warn!(
            alarms_in_window = n,
            "alarm flood: grouping alarms per estate; only P1 notifies singly"
        );
        self.publish("flood", id, "started", json!({"alarms_in_window": n}));
        let text = format!(
            "Alarm flood at the command centre: {n} new alarms within the flood window. Alarms are grouped per estate; only P1 notifies singly."
        );
        self.notify_role(conn, None, estate, Role::DutyManager, "flood", &text, now)
            .await?;
        Ok(())
    }

    /// Opens, joins or re-triggers the incident of an alarm that is raised (and not masked).
    async fn route_alarm(
        &mut self,
        conn: &mut Conn,
        row: &AlarmRow,
        chatter: Chatter,
        now: i64,
    ) -> Result<(), StoreError> {
        let (Ok(priority), Ok(category)) = (row.priority.parse::<Priority>(), row.category.parse::<Category>()) else {
            return Ok(());
        };
        let Some(incident_category) = incidents::category_for_alarm(priority, category, &row.condition) else {
            return Ok(());
        };
        if let Some(iid) = row.incident_id
            && let Some(inc) = get_incident(conn, iid).await?
            && is_open(&inc.state)
        {
            return self.retrigger(conn, &inc, row, chatter, now).await;
        }
        let open: Vec<(i64, String, i64)> = q(
            sqlx::query_as(
                "SELECT id, area, last_alarm_at_ms FROM incidents WHERE estate_id = $1 \
                 AND state NOT IN ('closed', 'false_alarm')",
            )
            .bind(&row.estate_id)
            .fetch_all(&mut *conn)
            .await,
            "finding open incidents",
        )?;
        let open: Vec<OpenIncident> = open
            .into_iter()
            .map(|(id, area, last_alarm_at_ms)| OpenIncident {
                id,
                area,
                last_alarm_at_ms,
            })
            .collect();
        let flood = self.book.in_flood();
        match incidents::route(&open, &row.area, priority, flood, self.cfg.group_window_ms, now) {
            Route::Join(iid) => self.join(conn, iid, row, priority, flood, now).await,
            Route::Open => {
                let iid = self
                    .open_incident(
                        conn,
                        &row.estate_id,
                        &row.area,
                        incident_category,
                        priority,
                        &row.message,
                        "alarm",
                        flood && priority != Priority::P1,
                        now,
                    )
                    .await?;
                self.link(conn, iid, row.id, now).await?;
                self.timeline(
                    conn,
                    iid,
                    now,
                    "alarm",
                    None,
                    &format!("Opened by alarm #{} ({}, {})", row.id, row.priority, row.message),
                    json!({"alarm_id": row.id}),
                )
                .await
            }
        }
    }

    async fn link(&mut self, conn: &mut Conn, iid: i64, alarm_id: i64, now: i64) -> Result<(), StoreError> {
        q(
            sqlx::query("INSERT INTO incident_alarms (incident_id, alarm_id, added_at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(iid)
                .bind(alarm_id)
                .bind(now)
                .execute(&mut *conn)
                .await,
            "linking an alarm to its incident",
        )?;
        q(
            sqlx::query("UPDATE alarms SET incident_id = $1 WHERE id = $2")
                .bind(iid)
                .bind(alarm_id)
                .execute(&mut *conn)
                .await,
            "linking an alarm to its incident",
        )?;
        Ok(())
    }

    async fn join(
        &mut self,
        conn: &mut Conn,
        iid: i64,
        row: &AlarmRow,
        priority: Priority,
        flood: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        self.link(conn, iid, row.id, now).await?;
        let inc = Self::incident(conn, iid).await?;
        let raise = inc.priority.parse::<Priority>().is_ok_and(|p| priority < p);
        q(
            sqlx::query("UPDATE incidents SET last_alarm_at_ms = $1, priority = CASE WHEN $2 THEN $3 ELSE priority END WHERE id = $4")
                .bind(now)
                .bind(raise)
                .bind(priority.as_str())
                .bind(iid)
                .execute(&mut *conn)
                .await,
            "adding an alarm to an incident",
        )?;
        let how = if flood { " (flood: grouped by estate)" } else { "" };
        self.timeline(
            conn,
            iid,
            now,
            "alarm",
            None,
            &format!("Alarm #{} joined{how}: {} {}", row.id, row.priority, row.message),
            json!({"alarm_id": row.id}),
        )
        .await?;
        if raise {
            self.timeline(
                conn,
                iid,
                now,
                "alarm",
                None,
                &format!("Priority raised {} → {}", inc.priority, priority),
                Value::Null,
            )
            .await?;
        }
        self.publish("incident", iid, "alarm_joined", json!({"alarm_id": row.id}));
        Ok(())
    }

    /// An alarm of an open incident raised again: a new escalation run, unless the alarm is
    /// chattering (it notifies once, not each time) or the current run is still going.
    async fn retrigger(
        &mut self,
        conn: &mut Conn,
        inc: &IncidentRow,
        row: &AlarmRow,
        chatter: Chatter,
        now: i64,
    ) -> Result<(), StoreError> {
        q(
            sqlx::query("UPDATE incidents SET last_alarm_at_ms = $1 WHERE id = $2")
                .bind(now)
                .bind(inc.id)
                .execute(&mut *conn)
                .await,
            "updating an incident",
        )?;
        if chatter.chattering || chatter.quick_repeat {
            let why = if chatter.chattering {
                "chattering"
            } else {
                "within the chatter window"
            };
            return self
                .timeline(
                    conn,
                    inc.id,
                    now,
                    "alarm",
                    None,
                    &format!("Alarm #{} re-triggered ({why}): no new escalation", row.id),
                    json!({"alarm_id": row.id}),
                )
                .await;
        }
        let pending: i64 = q(
            sqlx::query_scalar("SELECT COUNT(*) FROM timers WHERE incident_id = $1 AND kind = 'escalation' AND run = $2 AND fired_at_ms IS NULL")
                .bind(inc.id)
                .bind(inc.escalation_run)
                .fetch_one(&mut *conn)
                .await,
            "counting pending escalation steps",
        )?;
        if pending > 0 && inc.acknowledged_at_ms.is_none() {
            return self
                .timeline(
                    conn,
                    inc.id,
                    now,
                    "alarm",
                    None,
                    &format!(
                        "Alarm #{} re-triggered; escalation run {} continues",
                        row.id, inc.escalation_run
                    ),
                    json!({"alarm_id": row.id}),
                )
                .await;
        }
        let run = inc.escalation_run + 1;
        let n = q(
            sqlx::query("UPDATE timers SET fired_at_ms = $1, outcome = 'superseded' WHERE incident_id = $2 AND kind = 'escalation' AND fired_at_ms IS NULL")
                .bind(now)
                .bind(inc.id)
                .execute(&mut *conn)
                .await,
            "superseding an escalation run",
        )?
        .rows_affected();
        q(
            sqlx::query("UPDATE incidents SET escalation_run = $1, acknowledged_at_ms = NULL, acknowledged_by = NULL WHERE id = $2")
                .bind(run)
                .bind(inc.id)
                .execute(&mut *conn)
                .await,
            "restarting escalation",
        )?;
        let steps: Vec<StepSpec> = serde_json::from_str(&inc.policy).unwrap_or_default();
        self.plan(conn, inc.id, run, &steps, now).await?;
        self.timeline(
            conn,
            inc.id,
            now,
            "escalation",
            None,
            &format!(
                "Alarm #{} re-triggered: escalation restarts (run {run}; {n} pending steps of the old run superseded)",
                row.id
            ),
            json!({"alarm_id": row.id, "run": run}),
        )
        .await?;
        self.publish("incident", inc.id, "escalation_restarted", json!({"run": run}));
        Ok(())
    }

    async fn plan(
        &mut self,
        conn: &mut Conn,
        iid: i64,
        run: i64,
        steps: &[StepSpec],
        now: i64,
    ) -> Result<(), StoreError> {
        for t in escalation::plan_run(steps, now) {
            q(
                sqlx::query(
                    "INSERT INTO timers (kind, incident_id, run, step, attempt, role, condition, due_at_ms) \
                     VALUES ('escalation', $1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(iid)
                .bind(run)
                .bind(i64::from(t.step))
                .bind(i64::from(t.attempt))
                .bind(t.role.as_str())
                .bind(t.condition.as_str())
                .bind(t.due_ms)
                .execute(&mut *conn)
                .await,
                "planning escalation",
            )?;
        }
        Ok(())
    }

    async fn timer(conn: &mut Conn, kind: &str, iid: i64, alarm_id: i64, run: i64, due: i64) -> Result<(), StoreError> {
        q(
            sqlx::query("INSERT INTO timers (kind, incident_id, alarm_id, run, due_at_ms) VALUES ($1, $2, $3, $4, $5)")
                .bind(kind)
                .bind(iid)
                .bind(alarm_id)
                .bind(run)
                .bind(due)
                .execute(&mut *conn)
                .await,
            "scheduling a timer",
        )?;
        Ok(())
    }

    /// Opens an incident with its procedure, policy snapshot, escalation run 1 and response target.
    #[allow(clippy::too_many_arguments)]
    async fn open_incident(
        &mut self,
        conn: &mut Conn,
        estate: &str,
        area: &str,
        category: IncidentCategory,
        priority: Priority,
        title: &str,
        opened_by: &str,
        flood_group: bool,
        now: i64,
    ) -> Result<i64, StoreError> {
        let steps = escalation::select_policy(&self.cfg.policies, category, priority);
        let policy = serde_json::to_string(&steps).unwrap_or_else(|_| "[]".into());
        let iid: i64 = q(
            sqlx::query_scalar(
                "INSERT INTO incidents (estate_id, area, category, priority, title, state, opened_at_ms, opened_by, \
                 last_alarm_at_ms, state_changed_at_ms, policy, flood_group) \
                 VALUES ($1, $2, $3, $4, $5, 'discovered', $6, $7, $6, $6, $8, $9) RETURNING id",
            )
            .bind(estate)
            .bind(area)
            .bind(category.as_str())
            .bind(priority.as_str())
            .bind(title)
            .bind(now)
            .bind(opened_by)
            .bind(&policy)
            .bind(flood_group)
            .fetch_one(&mut *conn)
            .await,
            "opening an incident",
        )?;
        for (i, s) in incidents::select_procedure(&self.cfg.procedures, category)
            .iter()
            .enumerate()
        {
            q(
                sqlx::query("INSERT INTO incident_steps (incident_id, idx, step_id, text, mandatory, status) VALUES ($1, $2, $3, $4, $5, 'open')")
                    .bind(iid)
                    .bind(i as i64 + 1)
                    .bind(&s.id)
                    .bind(&s.text)
                    .bind(s.mandatory)
                    .execute(&mut *conn)
                    .await,
                "writing an incident's procedure",
            )?;
        }
        self.plan(conn, iid, 1, &steps, now).await?;
        Self::timer(conn, "response_target", iid, 0, 0, now + self.cfg.response_target_ms).await?;
        info!(
            incident = iid,
            estate,
            category = category.as_str(),
            priority = priority.as_str(),
            "incident opened"
        );
        self.timeline(
            conn,
            iid,
            now,
            "opened",
            Some(opened_by),
            &format!("Incident opened: {} {} at {area}", priority.as_str(), category.as_str()),
            json!({"policy": steps}),
        )
        .await?;
        self.publish(
            "incident",
            iid,
            "opened",
            json!({"estate": estate, "area": area, "category": category.as_str(), "priority": priority.as_str()}),
        );
        Ok(iid)
    }

    async fn on_alarm_note(&mut self, conn: &mut Conn, alarm_id: i64, what: &str, now: i64) -> Result<(), StoreError> {
        let row = Self::alarm(conn, alarm_id).await?;
        if let Some(iid) = row.incident_id
            && let Some(inc) = get_incident(conn, iid).await?
            && is_open(&inc.state)
        {
            self.timeline(
                conn,
                iid,
                now,
                "alarm",
                None,
                &format!("Alarm #{alarm_id} {what}"),
                json!({"alarm_id": alarm_id}),
            )
            .await?;
        }
        Ok(())
    }

    async fn on_acked(&mut self, conn: &mut Conn, alarm_id: i64, operator: &str, now: i64) -> Result<(), StoreError> {
        let row = Self::alarm(conn, alarm_id).await?;
        let Some(iid) = row.incident_id else { return Ok(()) };
        let Some(inc) = get_incident(conn, iid).await? else {
            return Ok(());
        };
        if !is_open(&inc.state) {
            return Ok(());
        }
        self.timeline(
            conn,
            iid,
            now,
            "alarm",
            Some(operator),
            &format!("Alarm #{alarm_id} acknowledged"),
            json!({"alarm_id": alarm_id}),
        )
        .await?;
        if inc.acknowledged_at_ms.is_none() {
            self.acknowledge_incident(conn, &inc, operator, now).await?;
        }
        Ok(())
    }

    async fn acknowledge_incident(
        &mut self,
        conn: &mut Conn,
        inc: &IncidentRow,
        actor: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        q(
            sqlx::query("UPDATE incidents SET acknowledged_at_ms = $1, acknowledged_by = $2 WHERE id = $3")
                .bind(now)
                .bind(actor)
                .bind(inc.id)
                .execute(&mut *conn)
                .await,
            "acknowledging an incident",
        )?;
        self.stop_steps(
            conn,
            inc.id,
            Some(Condition::NotAcknowledged),
            "stopped: acknowledged",
            now,
        )
        .await?;
        Self::timer(
            conn,
            "progress",
            inc.id,
            0,
            inc.transitions,
            now + self.cfg.progress_limit_ms,
        )
        .await?;
        self.publish("incident", inc.id, "acknowledged", json!({"by": actor}));
        Ok(())
    }

    /// Stops pending escalation steps (of one condition, or all), noting it on the timeline.
    async fn stop_steps(
        &mut self,
        conn: &mut Conn,
        iid: i64,
        condition: Option<Condition>,
        outcome: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let n = q(
            sqlx::query(
                "UPDATE timers SET fired_at_ms = $1, outcome = $2 WHERE incident_id = $3 AND kind = 'escalation' \
                 AND fired_at_ms IS NULL AND ($4 IS NULL OR condition = $4)",
            )
            .bind(now)
            .bind(outcome)
            .bind(iid)
            .bind(condition.map(Condition::as_str))
            .execute(&mut *conn)
            .await,
            "stopping escalation steps",
        )?
        .rows_affected();
        if n > 0 {
            self.timeline(
                conn,
                iid,
                now,
                "escalation",
                None,
                &format!("Escalation {outcome} ({n} pending steps cancelled)"),
                Value::Null,
            )
            .await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn timeline(
        &mut self,
        conn: &mut Conn,
        iid: i64,
        now: i64,
        kind: &str,
        actor: Option<&str>,
        text: &str,
        data: Value,
    ) -> Result<(), StoreError> {
        let data = (!data.is_null()).then(|| data.to_string());
        q(
            sqlx::query("INSERT INTO incident_timeline (incident_id, at_ms, kind, actor, text, data) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(iid)
                .bind(now)
                .bind(kind)
                .bind(actor)
                .bind(text)
                .bind(data)
                .execute(&mut *conn)
                .await,
            "writing an incident's timeline",
        )?;
        Ok(())
    }

    // ---- notifications -------------------------------------------------------------------

    /// Queues a notification to everyone holding `role` at `estate`; logs it when nobody does.
    #[allow(clippy::too_many_arguments)]
    async fn notify_role(
        &mut self,
        conn: &mut Conn,
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
                self.timeline(
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
        self.notify(conn, inc, estate, role, &recipients, kind, text, now)
            .await?;
        Ok(recipients.len())
    }

    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &mut self,
        conn: &mut Conn,
        inc: Option<&IncidentRow>,
        estate: &str,
        role: Role,
        recipients: &[Recipient],
        kind: &str,
        text: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        for r in recipients {
            let id: i64 = q(
                sqlx::query_scalar(
                    "INSERT INTO notifications (incident_id, kind, role, recipient, channel, body, status, next_attempt_at_ms, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, '', 'pending', $6, $6) RETURNING id",
                )
                .bind(inc.map(|i| i.id))
                .bind(kind)
                .bind(role.as_str())
                .bind(&r.name)
                .bind(&r.channel)
                .bind(now)
                .fetch_one(&mut *conn)
                .await,
                "queueing a notification",
            )?;
            let body = json!({
                "notification_id": id,
                "kind": kind,
                "role": role.as_str(),
                "recipient": r.name,
                "estate": estate,
                "text": text,
                "created_at": rfc3339(now),
                "hub": self.cfg.hub_id,
                "incident": inc.map(|i| json!({
                    "id": i.id, "estate": i.estate_id, "area": i.area, "category": i.category,
                    "priority": i.priority, "title": i.title, "state": i.state,
                })),
            })
            .to_string();
            q(
                sqlx::query("UPDATE notifications SET body = $1 WHERE id = $2")
                    .bind(&body)
                    .bind(id)
                    .execute(&mut *conn)
                    .await,
                "queueing a notification",
            )?;
            if let Some(inc) = inc {
                let via = if r.channel == "log" { "log" } else { "webhook" };
                self.timeline(
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
            self.publish(
                "notification",
                id,
                "queued",
                json!({"incident_id": inc.map(|i| i.id), "kind": kind, "role": role.as_str(), "recipient": r.name}),
            );
        }
        self.wake = true;
        Ok(())
    }

    /// Leases due notifications to the deliverer.
    pub async fn claim_deliveries(
        &mut self,
        conn: &mut Conn,
        limit: i64,
        now: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows: Vec<(i64, String, String, String, i64)> = q(
            sqlx::query_as(
                "UPDATE notifications SET lease_until_ms = $1 WHERE id IN \
                 (SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at_ms <= $2 \
                  AND (lease_until_ms IS NULL OR lease_until_ms <= $2) ORDER BY id LIMIT $3) \
                 AND status = 'pending' AND (lease_until_ms IS NULL OR lease_until_ms <= $2) \
                 RETURNING id, channel, recipient, body, attempts",
            )
            .bind(now + 60_000)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await,
            "claiming notifications",
        )?;
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
    pub async fn delivery_result(&mut self, conn: &mut Conn, o: &DeliveryOutcome, now: i64) -> Result<(), StoreError> {
        let row: Option<(Option<i64>, i64, String, String)> = q(
            sqlx::query_as("SELECT incident_id, attempts, recipient, status FROM notifications WHERE id = $1")
                .bind(o.id)
                .fetch_optional(&mut *conn)
                .await,
            "reading a notification",
        )?;
        let Some((iid, attempts, recipient, status)) = row else {
            return Ok(());
        };
        if status != "pending" {
            return Ok(());
        }
        let attempts = attempts + 1;
        let (status, next, text) = if o.ok {
            (
                "delivered",
                now,
                format!("Notification #{} to {recipient} delivered (attempt {attempts})", o.id),
            )
        } else if attempts >= self.cfg.max_attempts {
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
            let delay = backoff_ms(attempts, self.cfg.retry_initial_s, self.cfg.retry_max_s);
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
        q(
            sqlx::query(
                "UPDATE notifications SET status = $1, attempts = $2, next_attempt_at_ms = $3, lease_until_ms = NULL, \
                 last_error = $4, delivered_at_ms = $5 WHERE id = $6",
            )
            .bind(status)
            .bind(attempts)
            .bind(next)
            .bind(o.error.as_deref())
            .bind(o.ok.then_some(now))
            .bind(o.id)
            .execute(&mut *conn)
            .await,
            "recording a delivery",
        )?;
        if !o.ok {
            warn!(
                notification = o.id,
                attempts,
                error = o.error.as_deref().unwrap_or(""),
                "notification delivery failed"
            );
        }
        if let Some(iid) = iid {
            self.timeline(
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
        self.publish(
            "notification",
            o.id,
            status,
            json!({"incident_id": iid, "attempts": attempts, "error": o.error}),
        );
        Ok(())
    }

    // ---- operator actions ----------------------------------------------------------------

    /// Carries out an operator action. `Ok(Err(_))` is a refusal (nothing written).
    pub async fn op(
        &mut self,
        conn: &mut Conn,
        rules: &mut RuleState,
        op: Op,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        match op {
            Op::Shelve {
                alarm_id,
                minutes,
                reason,
                operator,
            } => {
                let Some(row) = store::get_alarm(conn, alarm_id).await? else {
                    return Ok(Err(OpError::NotFound(format!("alarm {alarm_id} not found"))));
                };
                let until = match crate::book::shelve_until(minutes, self.cfg.shelve_max_minutes, &reason, now) {
                    Ok(u) => u,
                    Err(e) => return Ok(Err(OpError::Unprocessable(e))),
                };
                q(
                    sqlx::query("UPDATE alarms SET shelved_until_ms = $1, shelved_by = $2, shelve_reason = $3, changed_at_ms = $4 WHERE id = $5")
                        .bind(until)
                        .bind(&operator)
                        .bind(&reason)
                        .bind(now)
                        .bind(alarm_id)
                        .execute(&mut *conn)
                        .await,
                    "shelving an alarm",
                )?;
                Self::history(
                    conn,
                    alarm_id,
                    HistoryChange::Shelved,
                    now,
                    Some(&operator),
                    Some(&format!("{minutes} min: {reason}")),
                )
                .await?;
                Self::timer(conn, "shelve_expiry", 0, alarm_id, 0, until).await?;
                self.publish(
                    "alarm",
                    alarm_id,
                    "shelved",
                    json!({"estate": row.estate_id, "until": rfc3339(until), "by": operator}),
                );
                Ok(Ok(alarm_id))
            }
            Op::OutOfService {
                alarm_id,
                on,
                reason,
                operator,
            } => {
                let Some(row) = store::get_alarm(conn, alarm_id).await? else {
                    return Ok(Err(OpError::NotFound(format!("alarm {alarm_id} not found"))));
                };
                if row.out_of_service == on {
                    return Ok(Err(OpError::Conflict(format!(
                        "alarm {alarm_id} is already {}",
                        if on { "out of service" } else { "in service" }
                    ))));
                }
                if reason.trim().is_empty() {
                    return Ok(Err(OpError::Unprocessable("a reason is required".into())));
                }
                Self::alarm_flag(conn, alarm_id, "out_of_service", on).await?;
                let change = if on {
                    HistoryChange::OutOfService
                } else {
                    HistoryChange::ReturnedToService
                };
                Self::history(conn, alarm_id, change, now, Some(&operator), Some(&reason)).await?;
                self.publish(
                    "alarm",
                    alarm_id,
                    change.as_str(),
                    json!({"estate": row.estate_id, "by": operator}),
                );
                if !on && row.active && !row.acknowledged {
                    let row = Self::alarm(conn, alarm_id).await?;
                    self.route_alarm(
                        conn,
                        &row,
                        Chatter {
                            chattering: false,
                            started: false,
                            quick_repeat: false,
                        },
                        now,
                    )
                    .await?;
                }
                Ok(Ok(alarm_id))
            }
            Op::Maintenance {
                estate,
                device,
                on,
                reason,
                operator,
                until_ms,
            } => {
                if on && reason.trim().is_empty() {
                    return Ok(Err(OpError::Unprocessable("a reason is required".into())));
                }
                if until_ms.is_some_and(|u| u <= now) {
                    return Ok(Err(OpError::Unprocessable(
                        "the maintenance must end in the future".into(),
                    )));
                }
                let changed = if on {
                    q(
                        sqlx::query(
                            "INSERT INTO device_maintenance (estate_id, device_id, reason, operator, since_ms, until_ms) \
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (estate_id, device_id) DO UPDATE SET \
                             reason = excluded.reason, operator = excluded.operator, until_ms = excluded.until_ms",
                        )
                        .bind(&estate)
                        .bind(&device)
                        .bind(&reason)
                        .bind(&operator)
                        .bind(now)
                        .bind(until_ms)
                        .execute(&mut *conn)
                        .await,
                        "starting device maintenance",
                    )?
                    .rows_affected()
                } else {
                    // Only a maintenance still running can be ended; an expired row goes too.
                    let until: Option<Option<i64>> = q(
                        sqlx::query_scalar(
                            "DELETE FROM device_maintenance WHERE estate_id = $1 AND device_id = $2 RETURNING until_ms",
                        )
                        .bind(&estate)
                        .bind(&device)
                        .fetch_optional(&mut *conn)
                        .await,
                        "ending device maintenance",
                    )?;
                    u64::from(until.is_some_and(|u| u.is_none_or(|u| u > now)))
                };
                if changed == 0 {
                    return Ok(Err(OpError::Conflict(format!(
                        "device {device} at {estate} is not in maintenance"
                    ))));
                }
                let change = if on { "maintenance_started" } else { "maintenance_ended" };
                self.publish(
                    "device",
                    0,
                    change,
                    json!({"estate": estate, "device": device, "by": operator, "reason": reason}),
                );
                Ok(Ok(0))
            }
            Op::Open {
                estate,
                area,
                category,
                priority,
                title,
                operator,
                note,
            } => {
                let iid = self
                    .open_incident(conn, &estate, &area, category, priority, &title, &operator, false, now)
                    .await?;
                if let Some(note) = note {
                    self.timeline(conn, iid, now, "note", Some(&operator), &note, Value::Null)
                        .await?;
                }
                Ok(Ok(iid))
            }
            Op::Transition {
                incident_id,
                to,
                actor,
                note,
                reason,
                override_by,
            } => {
                self.transition(conn, rules, incident_id, to, &actor, note, reason, override_by, now)
                    .await
            }
            Op::Step {
                incident_id,
                step,
                actor,
                note,
                skipped,
            } => self.step(conn, incident_id, &step, &actor, note, skipped, now).await,
            Op::Rota(op) => {
                let Some(r) = self.rota.as_mut() else {
                    return Ok(Err(OpError::NotFound("no rota is configured ([[posts]])".into())));
                };
                let result = r.op(conn, op, now).await?;
                self.rota_effects(conn, rules, now).await?;
                Ok(result)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn transition(
        &mut self,
        conn: &mut Conn,
        _rules: &mut RuleState,
        iid: i64,
        to: IncidentState,
        actor: &str,
        note: Option<String>,
        reason: Option<String>,
        override_by: Option<String>,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let Some(inc) = get_incident(conn, iid).await? else {
            return Ok(Err(OpError::NotFound(format!("incident {iid} not found"))));
        };
        let from = IncidentState::parse(&inc.state).unwrap_or(IncidentState::Discovered);
        let open_steps: Vec<String> = q(
            sqlx::query_scalar("SELECT step_id FROM incident_steps WHERE incident_id = $1 AND mandatory = $2 AND status = 'open' ORDER BY idx")
                .bind(iid)
                .bind(true)
                .fetch_all(&mut *conn)
                .await,
            "reading open steps",
        )?;
        let active: Vec<i64> = q(
            sqlx::query_scalar("SELECT a.id FROM alarms a JOIN incident_alarms ia ON ia.alarm_id = a.id WHERE ia.incident_id = $1 AND a.active = $2 ORDER BY a.id")
                .bind(iid)
                .bind(true)
                .fetch_all(&mut *conn)
                .await,
            "reading active alarms of an incident",
        )?;
        let req = TransitionRequest {
            to,
            reason: reason.clone(),
            override_by: override_by.clone(),
        };
        let ctx = TransitionContext {
            open_mandatory_steps: open_steps,
            active_alarms: active,
        };
        let fx = match incidents::transition(from, &req, &ctx) {
            Ok(fx) => fx,
            Err(e @ incidents::TransitionError::ReasonRequired { .. }) => {
                return Ok(Err(OpError::Unprocessable(e.to_string())));
            }
            Err(e) => return Ok(Err(OpError::Conflict(e.to_string()))),
        };
        q(
            sqlx::query(
                "UPDATE incidents SET state = $1, state_changed_at_ms = $2, transitions = transitions + 1, \
                 on_site_at_ms = CASE WHEN $3 THEN $2 ELSE on_site_at_ms END, \
                 closed_at_ms = CASE WHEN $4 THEN $2 ELSE closed_at_ms END, \
                 false_alarm_reason = CASE WHEN $5 THEN $6 ELSE false_alarm_reason END, \
                 override_by = CASE WHEN $7 THEN $8 ELSE override_by END, \
                 override_reason = CASE WHEN $7 THEN $6 ELSE override_reason END WHERE id = $9",
            )
            .bind(to.as_str())
            .bind(now)
            .bind(fx.on_site)
            .bind(fx.terminal)
            .bind(to == IncidentState::FalseAlarm)
            .bind(reason.as_deref())
            .bind(fx.overridden)
            .bind(override_by.as_deref())
            .bind(iid)
            .execute(&mut *conn)
            .await,
            "changing an incident's state",
        )?;
        let mut text = format!("{from} → {to}");
        if let Some(r) = &reason {
            text.push_str(&format!(" (reason: {r})"));
        }
        if let Some(n) = &note {
            text.push_str(&format!(": {n}"));
        }
        self.timeline(
            conn,
            iid,
            now,
            "transition",
            Some(actor),
            &text,
            json!({"from": from.as_str(), "to": to.as_str()}),
        )
        .await?;
        if fx.acknowledges && inc.acknowledged_at_ms.is_none() {
            self.acknowledge_incident(conn, &inc, actor, now).await?;
        }
        if fx.on_site {
            self.stop_steps(conn, iid, Some(Condition::NotOnSite), "stopped: on site", now)
                .await?;
            // The guard who went on site leaves their post (the rota opens the gap).
            if let Some(r) = self.rota.as_mut() {
                if let Some(text) = r.pull(conn, actor, iid, &inc.estate_id, now).await? {
                    self.timeline(conn, iid, now, "rota", Some(actor), &text, Value::Null)
                        .await?;
                }
                self.rota_effects(conn, _rules, now).await?;
            }
        }
        let inc = Self::incident(conn, iid).await?;
        if fx.overridden {
            let by = override_by.unwrap_or_default();
            self.timeline(
                conn,
                iid,
                now,
                "transition",
                Some(&by),
                &format!("Closed by supervisor override: {}", reason.as_deref().unwrap_or("")),
                json!({"skipped_steps": fx.skipped_steps, "active_alarms": ctx.active_alarms}),
            )
            .await?;
            for step in &fx.skipped_steps {
                q(
                    sqlx::query("UPDATE incident_steps SET status = 'skipped', done_at_ms = $1, done_by = $2, note = 'skipped by supervisor override' WHERE incident_id = $3 AND step_id = $4")
                        .bind(now)
                        .bind(&by)
                        .bind(iid)
                        .bind(step)
                        .execute(&mut *conn)
                        .await,
                    "skipping steps",
                )?;
            }
            if !fx.skipped_steps.is_empty() {
                let text = format!(
                    "Incident #{iid} closed by override of {by}; mandatory steps skipped: {}",
                    fx.skipped_steps.join(", ")
                );
                self.notify_role(
                    conn,
                    Some(&inc),
                    &inc.estate_id,
                    Role::Supervisor,
                    "supervisor",
                    &text,
                    now,
                )
                .await?;
            }
        }
        if fx.terminal {
            self.stop_steps(conn, iid, None, "stopped: incident closed", now)
                .await?;
            q(
                sqlx::query("UPDATE timers SET fired_at_ms = $1, outcome = 'stopped: incident closed' WHERE incident_id = $2 AND fired_at_ms IS NULL")
                    .bind(now)
                    .bind(iid)
                    .execute(&mut *conn)
                    .await,
                "stopping an incident's timers",
            )?;
        } else if inc.acknowledged_at_ms.is_some() && !fx.acknowledges {
            Self::timer(
                conn,
                "progress",
                iid,
                0,
                inc.transitions,
                now + self.cfg.progress_limit_ms,
            )
            .await?;
        }
        info!(
            incident = iid,
            from = from.as_str(),
            to = to.as_str(),
            "incident transition"
        );
        self.publish(
            "incident",
            iid,
            "transition",
            json!({"from": from.as_str(), "to": to.as_str(), "by": actor}),
        );
        Ok(Ok(iid))
    }

    #[allow(clippy::too_many_arguments)]
    async fn step(
        &mut self,
        conn: &mut Conn,
        iid: i64,
        step: &str,
        actor: &str,
        note: Option<String>,
        skipped: bool,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let Some(inc) = get_incident(conn, iid).await? else {
            return Ok(Err(OpError::NotFound(format!("incident {iid} not found"))));
        };
        if !is_open(&inc.state) {
            return Ok(Err(OpError::Conflict(format!(
                "incident {iid} is {}; its steps cannot change",
                inc.state
            ))));
        }
        let steps = store::incidents::incident_steps(conn, iid).await?;
        let found = match step.parse::<i64>() {
            Ok(n) => steps.iter().find(|s| s.idx == n),
            Err(_) => steps.iter().find(|s| s.step_id == step),
        };
        let Some(s) = found.cloned() else {
            let ids: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
            return Ok(Err(OpError::NotFound(format!(
                "incident {iid} has no step {step:?} (steps: {})",
                ids.join(", ")
            ))));
        };
        if s.status != "open" {
            return Ok(Err(OpError::Conflict(format!(
                "step {} is already {}",
                s.step_id, s.status
            ))));
        }
        if skipped && note.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Ok(Err(OpError::Unprocessable(
                "skipping a step needs a note saying why".into(),
            )));
        }
        let status = if skipped { "skipped" } else { "done" };
        q(
            sqlx::query("UPDATE incident_steps SET status = $1, done_at_ms = $2, done_by = $3, note = $4 WHERE incident_id = $5 AND idx = $6")
                .bind(status)
                .bind(now)
                .bind(actor)
                .bind(note.as_deref())
                .bind(iid)
                .bind(s.idx)
                .execute(&mut *conn)
                .await,
            "recording a procedure step",
        )?;
        let mut text = format!("Step {} {status}: {}", s.step_id, s.text);
        if let Some(n) = &note {
            text.push_str(&format!(" — {n}"));
        }
        self.timeline(
            conn,
            iid,
            now,
            "step",
            Some(actor),
            &text,
            json!({"step": s.step_id, "status": status}),
        )
        .await?;
        if skipped && s.mandatory {
            let text = format!(
                "Incident #{iid}: mandatory step {:?} skipped by {actor}: {}",
                s.text,
                note.as_deref().unwrap_or("")
            );
            self.notify_role(
                conn,
                Some(&inc),
                &inc.estate_id,
                Role::Supervisor,
                "supervisor",
                &text,
                now,
            )
            .await?;
        }
        self.publish(
            "incident",
            iid,
            "step",
            json!({"step": s.step_id, "status": status, "by": actor}),
        );
        Ok(Ok(iid))
    }

    // ---- time ----------------------------------------------------------------------------

    /// A gateway was heard from (Hello, a batch, a heartbeat).
    /// `estate` may be omitted once the gateway's Hello has named it.
    pub async fn heard(
        &mut self,
        conn: &mut Conn,
        gateway: &str,
        estate: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let estate = match (estate, self.heard.get(gateway)) {
            (Some(e), _) => e.to_owned(),
            (None, Some((e, _))) => e.clone(),
            (None, None) => return Ok(()),
        };
        let estate = estate.as_str();
        self.heard.insert(gateway.to_owned(), (estate.to_owned(), now));
        if self.silent.remove(gateway) {
            let key = AlarmKey::new(estate, gateway, "gateway_silent");
            let cause = Cause {
                note: Some("gateway heard again"),
                ..Default::default()
            };
            if let Some(id) = write::clear(conn, &key, now, &cause).await? {
                self.publish("alarm", id, "cleared", json!({"estate": estate, "device": gateway}));
            }
            q(
                sqlx::query("UPDATE devices SET state_unknown = $1 WHERE gateway_id = $2")
                    .bind(false)
                    .bind(gateway)
                    .execute(&mut *conn)
                    .await,
                "marking devices known",
            )?;
            info!(gateway, "gateway heard again");
        }
        Ok(())
    }

    /// Does whatever has fallen due by `now`: claimed timers, flood end, chattering end,
    /// silent gateways.
    pub async fn tick(&mut self, conn: &mut Conn, rules: &mut RuleState, now: i64) -> Result<usize, StoreError> {
        let mut fired = 0;
        // A skipped step brings the next one forward, so claim again (bounded).
        for _ in 0..16 {
            let mut due: Vec<TimerRow> = q(
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE timers SET fired_at_ms = $1, claimed_by = $2 WHERE id IN \
                     (SELECT id FROM timers WHERE fired_at_ms IS NULL AND due_at_ms <= $1 ORDER BY due_at_ms, id LIMIT 500) \
                     AND fired_at_ms IS NULL RETURNING {TIMER_COLUMNS}"
                )))
                .bind(now)
                .bind(&self.cfg.hub_id)
                .fetch_all(&mut *conn)
                .await,
                "claiming due timers",
            )?;
            if due.is_empty() {
                break;
            }
            due.sort_by_key(|t| (t.due_at_ms, t.incident_id, t.run, t.step, t.attempt, t.id));
            for t in due {
                fired += 1;
                let outcome = match t.kind.as_str() {
                    "escalation" => self.fire_escalation(conn, &t, now).await?,
                    "shelve_expiry" => self.shelve_expired(conn, &t, now).await?,
                    "response_target" => self.response_target(conn, rules, &t, now).await?,
                    "progress" => self.progress_check(conn, &t, now).await?,
                    other => format!("unknown timer kind {other}"),
                };
                q(
                    sqlx::query("UPDATE timers SET outcome = $1 WHERE id = $2")
                        .bind(&outcome)
                        .bind(t.id)
                        .execute(&mut *conn)
                        .await,
                    "recording a timer's outcome",
                )?;
            }
        }
        let (flood, calm) = self.book.tick(now);
        if flood == Some(Flood::Ended) {
            let id: Option<i64> = q(
                sqlx::query_scalar("UPDATE flood_periods SET ended_at_ms = $1 WHERE ended_at_ms IS NULL RETURNING id")
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await,
                "ending a flood",
            )?;
            info!("alarm flood ended");
            self.publish("flood", id.unwrap_or(0), "ended", Value::Null);
        }
        for key in calm {
            let id: Option<i64> = q(
                sqlx::query_scalar(
                    "UPDATE alarms SET chattering = $1 WHERE estate_id = $2 AND device_id = $3 AND condition = $4 AND chattering = $5 RETURNING id",
                )
                .bind(false)
                .bind(&key.estate)
                .bind(&key.device)
                .bind(&key.condition)
                .bind(true)
                .fetch_optional(&mut *conn)
                .await,
                "ending chattering",
            )?;
            if let Some(id) = id {
                Self::history(conn, id, HistoryChange::ChatteringEnded, now, None, None).await?;
                self.publish("alarm", id, "chattering_ended", Value::Null);
            }
        }
        let silent: Vec<(String, String)> = self
            .heard
            .iter()
            .filter(|(g, (_, at))| *at <= now - self.cfg.gateway_silent_ms && !self.silent.contains(*g))
            .map(|(g, (e, _))| (g.clone(), e.clone()))
            .collect();
        for (gateway, estate) in silent {
            self.gateway_silent(conn, &gateway, &estate, now).await?;
        }
        if let Some(r) = self.rota.as_mut() {
            r.tick(conn, now).await?;
            self.rota_effects(conn, rules, now).await?;
        }
        Ok(fired)
    }

    // ---- rota ----------------------------------------------------------------------------

    /// An `access` event: the rota's presence and patrol scans.
    pub async fn rota_access(
        &mut self,
        conn: &mut Conn,
        rules: &mut RuleState,
        event: &gatehouse_proto::Event,
        now: i64,
    ) -> Result<(), StoreError> {
        if let Some(r) = self.rota.as_mut() {
            r.access(conn, event, now).await?;
            self.rota_effects(conn, rules, now).await?;
        }
        Ok(())
    }

    /// Applies what the rota decided: alarms through the book (and on to incidents),
    /// notifications through the outbox, coverage changes on the stream.
    async fn rota_effects(&mut self, conn: &mut Conn, rules: &mut RuleState, now: i64) -> Result<(), StoreError> {
        let Some(r) = self.rota.as_mut() else { return Ok(()) };
        for e in r.take_effects() {
            match e {
                crate::rota::RotaEffect::Raise(a) => {
                    let cause = Cause {
                        note: Some("rota"),
                        ..Default::default()
                    };
                    let (id, what) = write::activate(conn, &a, now, &cause).await?;
                    if a.latched {
                        // Latched: the acknowledgement clears it, as for a forced door.
                        rules.restore_active(
                            a.key.clone(),
                            crate::rules::ActiveAlarm {
                                latched: true,
                                value: None,
                            },
                        );
                    }
                    info!(alarm = id, estate = %a.key.estate, condition = %a.key.condition, "rota alarm");
                    self.publish_alarm(id, what.as_str(), &a);
                    if matches!(what, HistoryChange::Raised | HistoryChange::Reraised) {
                        self.on_raise(conn, id, now).await?;
                    }
                }
                crate::rota::RotaEffect::Clear { key, note } => {
                    let cause = Cause {
                        note: Some(&note),
                        ..Default::default()
                    };
                    if let Some(id) = write::clear(conn, &key, now, &cause).await? {
                        self.publish(
                            "alarm",
                            id,
                            "cleared",
                            json!({"estate": key.estate, "device": key.device}),
                        );
                        self.on_alarm_note(conn, id, "cleared", now).await?;
                    }
                }
                crate::rota::RotaEffect::Notify {
                    estate,
                    role,
                    recipients,
                    kind,
                    text,
                } => {
                    self.notify(conn, None, &estate, role, &recipients, kind, &text, now)
                        .await?;
                }
                crate::rota::RotaEffect::Publish { id, change, data } => self.publish("coverage", id, change, data),
            }
        }
        Ok(())
    }

    /// Inhibition: one P4 alarm for the gateway, and its devices' state unknown (not one
    /// alarm per device).
    async fn gateway_silent(
        &mut self,
        conn: &mut Conn,
        gateway: &str,
        estate: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.silent.insert(gateway.to_owned());
        let a = Activation {
            key: AlarmKey::new(estate, gateway, "gateway_silent"),
            gateway: gateway.to_owned(),
            area: "gateway".into(),
            priority: Priority::P4,
            category: Category::Device,
            message: format!(
                "Gateway {gateway} silent: no heartbeat for {} s; its devices' state is unknown",
                self.cfg.gateway_silent_ms / 1000
            ),
            latched: false,
            value: None,
            repeat: false,
        };
        let cause = Cause {
            note: Some("missed heartbeats"),
            ..Default::default()
        };
        let (id, what) = write::activate(conn, &a, now, &cause).await?;
        let n = q(
            sqlx::query("UPDATE devices SET state_unknown = $1 WHERE gateway_id = $2")
                .bind(true)
                .bind(gateway)
                .execute(&mut *conn)
                .await,
            "marking devices unknown",
        )?
        .rows_affected();
        warn!(gateway, devices = n, "gateway silent: its devices' state is unknown");
        self.publish_alarm(id, what.as_str(), &a);
        if matches!(what, HistoryChange::Raised | HistoryChange::Reraised) {
            self.on_raise(conn, id, now).await?;
        }
        Ok(())
    }

    async fn fire_escalation(&mut self, conn: &mut Conn, t: &TimerRow, now: i64) -> Result<String, StoreError> {
        let Some(inc) = get_incident(conn, t.incident_id).await? else {
            return Ok("incident missing".into());
        };
        let role = t.role.as_deref().and_then(Role::parse);
        let condition = t.condition.as_deref().and_then(Condition::parse);
        let (Some(role), Some(condition)) = (role, condition) else {
            return Ok("invalid step".into());
        };
        let status = IncidentStatus {
            state: IncidentState::parse(&inc.state).unwrap_or(IncidentState::Discovered),
            acknowledged: inc.acknowledged_at_ms.is_some(),
            run: inc.escalation_run,
        };
        let recipients = self.resolver.resolve(&inc.estate_id, role, now);
        let step_name = format!(
            "step {} ({}{})",
            t.step + 1,
            role.as_str(),
            if t.attempt > 0 {
                format!(", repeat {}", t.attempt)
            } else {
                String::new()
            }
        );
        Ok(match escalation::decide(t.run, condition, &status, recipients) {
            Decision::Fire(recipients) => {
                let names: Vec<&str> = recipients.iter().map(|r| r.name.as_str()).collect();
                self.timeline(
                    conn,
                    inc.id,
                    now,
                    "escalation",
                    None,
                    &format!(
                        "Escalation {step_name} fired ({}) → {}",
                        condition.as_str(),
                        names.join(", ")
                    ),
                    json!({"run": t.run, "step": t.step, "attempt": t.attempt, "role": role.as_str()}),
                )
                .await?;
                let text = format!(
                    "{} incident #{} at {} ({}): {} — state {}, {}",
                    inc.priority,
                    inc.id,
                    inc.estate_id,
                    inc.area,
                    inc.title,
                    inc.state,
                    condition.as_str().replace('_', " ")
                );
                self.notify(
                    conn,
                    Some(&inc),
                    &inc.estate_id,
                    role,
                    &recipients,
                    "escalation",
                    &text,
                    now,
                )
                .await?;
                self.publish(
                    "incident",
                    inc.id,
                    "escalated",
                    json!({"role": role.as_str(), "step": t.step, "run": t.run}),
                );
                "fired".into()
            }
            Decision::SkipNobody => {
                warn!(
                    incident = inc.id,
                    role = role.as_str(),
                    "escalation step skipped: nobody holds the role"
                );
                self.timeline(
                    conn,
                    inc.id,
                    now,
                    "escalation",
                    None,
                    &format!(
                        "Escalation {step_name} skipped: nobody holds role {} at {}",
                        role.as_str(),
                        inc.estate_id
                    ),
                    json!({"run": t.run, "step": t.step}),
                )
                .await?;
                // Never waited out: the next step comes forward to now.
                let next: Option<i64> = q(
                    sqlx::query_scalar("SELECT MIN(due_at_ms) FROM timers WHERE incident_id = $1 AND run = $2 AND kind = 'escalation' AND fired_at_ms IS NULL AND step > $3")
                        .bind(inc.id)
                        .bind(t.run)
                        .bind(t.step)
                        .fetch_one(&mut *conn)
                        .await,
                    "finding the next escalation step",
                )?;
                if let Some(next) = next
                    && next > now
                {
                    q(
                        sqlx::query("UPDATE timers SET due_at_ms = due_at_ms - $1 WHERE incident_id = $2 AND run = $3 AND kind = 'escalation' AND fired_at_ms IS NULL AND step > $4")
                            .bind(next - now)
                            .bind(inc.id)
                            .bind(t.run)
                            .bind(t.step)
                            .execute(&mut *conn)
                            .await,
                        "bringing the next escalation step forward",
                    )?;
                }
                format!("skipped: nobody holds role {}", role.as_str())
            }
            Decision::Stop(why) => format!("stopped: {why}"),
            Decision::Superseded => "superseded".into(),
        })
    }

    async fn shelve_expired(&mut self, conn: &mut Conn, t: &TimerRow, now: i64) -> Result<String, StoreError> {
        let Some(row) = store::get_alarm(conn, t.alarm_id).await? else {
            return Ok("alarm missing".into());
        };
        if row.shelved_until_ms != Some(t.due_at_ms) {
            return Ok("superseded".into());
        }
        q(
            sqlx::query("UPDATE alarms SET shelved_until_ms = NULL, shelved_by = NULL, shelve_reason = NULL, changed_at_ms = $1 WHERE id = $2")
                .bind(now)
                .bind(row.id)
                .execute(&mut *conn)
                .await,
            "unshelving an alarm",
        )?;
        Self::history(
            conn,
            row.id,
            HistoryChange::Unshelved,
            now,
            None,
            Some("shelve expired"),
        )
        .await?;
        self.publish(
            "alarm",
            row.id,
            "unshelved",
            json!({"estate": row.estate_id, "active": row.active}),
        );
        if row.active && !row.out_of_service && !row.suppressed {
            let row = Self::alarm(conn, row.id).await?;
            self.route_alarm(
                conn,
                &row,
                Chatter {
                    chattering: false,
                    started: false,
                    quick_repeat: false,
                },
                now,
            )
            .await?;
        }
        Ok("expired".into())
    }

    async fn response_target(
        &mut self,
        conn: &mut Conn,
        rules: &mut RuleState,
        t: &TimerRow,
        now: i64,
    ) -> Result<String, StoreError> {
        let Some(inc) = get_incident(conn, t.incident_id).await? else {
            return Ok("incident missing".into());
        };
        if !is_open(&inc.state) || inc.on_site_at_ms.is_some() {
            return Ok("met".into());
        }
        let minutes = self.cfg.response_target_ms / 60_000;
        q(
            sqlx::query("UPDATE incidents SET response_breached = $1 WHERE id = $2")
                .bind(true)
                .bind(inc.id)
                .execute(&mut *conn)
                .await,
            "recording a response-target breach",
        )?;
        let category = IncidentCategory::parse(&inc.category).unwrap_or(IncidentCategory::Other);
        let a = Activation {
            key: AlarmKey::new(
                &inc.estate_id,
                format!("incident-{}", inc.id),
                "response_target_breached",
            ),
            gateway: "hub".into(),
            area: inc.area.clone(),
            priority: Priority::P2,
            category: alarm_category(category),
            message: format!(
                "Response target breached: nobody on site within {minutes} min for incident #{}",
                inc.id
            ),
            latched: true,
            value: None,
            repeat: false,
        };
        let cause = Cause {
            note: Some("response target"),
            ..Default::default()
        };
        let (id, what) = write::activate(conn, &a, now, &cause).await?;
        rules.restore_active(
            a.key.clone(),
            crate::rules::ActiveAlarm {
                latched: true,
                value: None,
            },
        );
        self.publish_alarm(id, what.as_str(), &a);
        self.link(conn, inc.id, id, now).await?;
        warn!(incident = inc.id, "response target breached");
        self.timeline(
            conn,
            inc.id,
            now,
            "response",
            None,
            &format!(
                "Response target of {minutes} min breached (state {}); alarm #{id} raised",
                inc.state
            ),
            json!({"alarm_id": id}),
        )
        .await?;
        let text = format!(
            "Incident #{} at {} ({}): nobody on site within {minutes} min — {}",
            inc.id, inc.estate_id, inc.area, inc.title
        );
        self.notify_role(
            conn,
            Some(&inc),
            &inc.estate_id,
            Role::Supervisor,
            "response_target",
            &text,
            now,
        )
        .await?;
        Ok("breached".into())
    }

    async fn progress_check(&mut self, conn: &mut Conn, t: &TimerRow, now: i64) -> Result<String, StoreError> {
        let Some(inc) = get_incident(conn, t.incident_id).await? else {
            return Ok("incident missing".into());
        };
        if !is_open(&inc.state) || inc.transitions != t.run || inc.acknowledged_at_ms.is_none() {
            return Ok("progressed".into());
        }
        let minutes = self.cfg.progress_limit_ms / 60_000;
        self.timeline(
            conn,
            inc.id,
            now,
            "escalation",
            None,
            &format!(
                "Acknowledged but still {} after {minutes} min: supervisor alerted",
                inc.state
            ),
            Value::Null,
        )
        .await?;
        let text = format!(
            "Incident #{} at {} ({}) acknowledged but still {} after {minutes} min — {}",
            inc.id, inc.estate_id, inc.area, inc.state, inc.title
        );
        self.notify_role(
            conn,
            Some(&inc),
            &inc.estate_id,
            Role::Supervisor,
            "supervisor",
            &text,
            now,
        )
        .await?;
        Ok("alerted".into())
    }

    /// Counts a vehicle entry for the registration KPI (no plate stored here).
    pub async fn vehicle_entry(conn: &mut Conn, estate: &str, registered: bool, now: i64) -> Result<(), StoreError> {
        let day = rfc3339(now)[..10].to_owned();
        q(
            sqlx::query(
                "INSERT INTO vehicle_entries (estate_id, day, entries, registered) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (estate_id, day) DO UPDATE SET entries = vehicle_entries.entries + 1, \
                 registered = vehicle_entries.registered + excluded.registered",
            )
            .bind(estate)
            .bind(day)
            .bind(i64::from(registered))
            .execute(&mut *conn)
            .await,
            "counting a vehicle entry",
        )?;
        Ok(())
    }
}
