//! Every SQL statement on alarms, their history and overlays (chattering, suppression,
//! shelving, out of service), flood periods and device maintenance: the API's reads and the
//! writes of the engine (inside the writer's transaction).

use super::rules::Activation;
use super::{AlarmJson, AlarmKey, Category, EventRef, HistoryChange, HistoryJson, Priority, StateFilter, rfc3339};
use crate::store::{Conn, Context, Flag, Pool, Sql, StoreError};

/// An alarm row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlarmRow {
    pub id: i64,
    pub estate_id: String,
    pub device_id: String,
    pub gateway_id: String,
    pub area: String,
    pub condition: String,
    pub priority: String,
    pub category: String,
    pub message: String,
    #[sqlx(try_from = "crate::store::Flag")]
    pub active: bool,
    #[sqlx(try_from = "crate::store::Flag")]
    pub acknowledged: bool,
    #[sqlx(try_from = "crate::store::Flag")]
    pub latched: bool,
    pub activations: i64,
    pub value: Option<f64>,
    pub raised_at_ms: i64,
    pub changed_at_ms: i64,
    pub acked_at_ms: Option<i64>,
    pub acked_by: Option<String>,
    pub shelved_until_ms: Option<i64>,
    pub shelved_by: Option<String>,
    pub shelve_reason: Option<String>,
    #[sqlx(try_from = "crate::store::Flag")]
    pub suppressed: bool,
    #[sqlx(try_from = "crate::store::Flag")]
    pub out_of_service: bool,
    #[sqlx(try_from = "crate::store::Flag")]
    pub chattering: bool,
    pub incident_id: Option<i64>,
}

pub(crate) const ALARM_COLUMNS: &str = "id, estate_id, device_id, gateway_id, area, condition, priority, \
     category, message, active, acknowledged, latched, activations, value, raised_at_ms, \
     changed_at_ms, acked_at_ms, acked_by, shelved_until_ms, shelved_by, shelve_reason, \
     suppressed, out_of_service, chattering, incident_id";

impl AlarmRow {
    /// Whether it still needs someone's attention: active, unacknowledged, or shelved (a
    /// shelved alarm stays in view as shelved until it returns). `state=standing` lists
    /// exactly these; the command centre's watch drops an alarm when it stops standing.
    pub fn stands(&self) -> bool {
        self.active || !self.acknowledged || self.shelved_until_ms.is_some()
    }

    pub fn key(&self) -> AlarmKey {
        AlarmKey::new(&self.estate_id, &self.device_id, &self.condition)
    }

    pub fn to_json(&self) -> AlarmJson {
        AlarmJson {
            id: self.id,
            estate: self.estate_id.clone(),
            device: self.device_id.clone(),
            area: self.area.clone(),
            gateway: self.gateway_id.clone(),
            condition: self.condition.clone(),
            priority: self.priority.clone(),
            category: self.category.clone(),
            message: self.message.clone(),
            active: self.active,
            acknowledged: self.acknowledged,
            latched: self.latched,
            activations: self.activations,
            value: self.value,
            raised_at: rfc3339(self.raised_at_ms),
            changed_at: rfc3339(self.changed_at_ms),
            acked_at: self.acked_at_ms.map(rfc3339),
            acked_by: self.acked_by.clone(),
            shelved: self.shelved_until_ms.is_some(),
            shelved_until: self.shelved_until_ms.map(rfc3339),
            shelved_by: self.shelved_by.clone(),
            shelve_reason: self.shelve_reason.clone(),
            suppressed: self.suppressed,
            out_of_service: self.out_of_service,
            chattering: self.chattering,
            incident_id: self.incident_id,
        }
    }
}

/// Filters of `GET /alarms`.
#[derive(Debug, Clone, Default)]
pub struct AlarmFilter {
    /// Only these alarms (at most a few hundred: one bound variable each).
    pub ids: Option<Vec<i64>>,
    pub estate: Option<String>,
    pub state: Option<StateFilter>,
    pub priority: Option<Priority>,
    pub category: Option<Category>,
    pub limit: i64,
}

/// Alarms matching `filter`, newest change first.
pub async fn list_alarms(pool: &Pool, filter: &AlarmFilter) -> Result<Vec<AlarmRow>, StoreError> {
    let mut q = Sql::new(format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE 1 = 1"));
    if let Some(ids) = &filter.ids {
        q.push(" AND id IN (");
        if ids.is_empty() {
            q.push("NULL");
        }
        q.push_list(ids.iter().copied());
        q.push(")");
    }
    if let Some(estate) = &filter.estate {
        q.push(" AND estate_id = ").push_bind(estate.clone());
    }
    if let Some(priority) = filter.priority {
        q.push(" AND priority = ").push_bind(priority.as_str());
    }
    if let Some(category) = filter.category {
        q.push(" AND category = ").push_bind(category.as_str());
    }
    match filter.state {
        None => {}
        Some(StateFilter::Active) => {
            q.push(" AND active = ").push_bind(true);
        }
        Some(StateFilter::Cleared) => {
            q.push(" AND active = ").push_bind(false);
        }
        Some(StateFilter::Acknowledged) => {
            q.push(" AND acknowledged = ").push_bind(true);
        }
        Some(StateFilter::Unacknowledged) => {
            q.push(" AND acknowledged = ").push_bind(false);
        }
        // The SQL form of `AlarmRow::stands`.
        Some(StateFilter::Standing) => {
            q.push(" AND (active = ")
                .push_bind(true)
                .push(" OR acknowledged = ")
                .push_bind(false)
                .push(" OR shelved_until_ms IS NOT NULL)");
        }
    }
    q.push(" ORDER BY changed_at_ms DESC, id DESC LIMIT ")
        .push_bind(filter.limit);
    q.build_query_as::<AlarmRow>()
        .fetch_all(pool)
        .await
        .context(|| "listing alarms".into())
}

/// One alarm by id.
pub async fn get_alarm(conn: &mut Conn, id: i64) -> Result<Option<AlarmRow>, StoreError> {
    sqlx::query_as::<_, AlarmRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {ALARM_COLUMNS} FROM alarms WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
    .context(|| format!("reading alarm {id}"))
}

/// One alarm by id, from the pool.
pub async fn find_alarm(pool: &Pool, id: i64) -> Result<Option<AlarmRow>, StoreError> {
    let mut conn = pool.acquire().await.context(|| format!("reading alarm {id}"))?;
    get_alarm(&mut conn, id).await
}

#[derive(Debug, sqlx::FromRow)]
struct HistoryRow {
    id: i64,
    alarm_id: i64,
    at_ms: i64,
    change: String,
    actor: Option<String>,
    event_gateway_id: Option<String>,
    event_seq: Option<i64>,
    note: Option<String>,
}

/// The history of one alarm, oldest first.
pub async fn alarm_history(pool: &Pool, alarm_id: i64) -> Result<Vec<HistoryJson>, StoreError> {
    let rows = sqlx::query_as::<_, HistoryRow>(
        "SELECT id, alarm_id, at_ms, change, actor, event_gateway_id, event_seq, note \
         FROM alarm_history WHERE alarm_id = $1 ORDER BY id",
    )
    .bind(alarm_id)
    .fetch_all(pool)
    .await
    .context(|| format!("reading the history of alarm {alarm_id}"))?;
    Ok(rows
        .into_iter()
        .map(|r| HistoryJson {
            id: r.id,
            alarm_id: r.alarm_id,
            at: rfc3339(r.at_ms),
            change: r.change,
            actor: r.actor,
            event: match (r.event_gateway_id, r.event_seq) {
                (Some(gateway), Some(seq)) => Some(EventRef { gateway, seq }),
                _ => None,
            },
            note: r.note,
        })
        .collect())
}

/// Active alarms per estate.
pub async fn active_alarms_by_estate(pool: &Pool) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as::<_, (String, i64)>("SELECT estate_id, COUNT(*) FROM alarms WHERE active = $1 GROUP BY estate_id")
        .bind(true)
        .fetch_all(pool)
        .await
        .context(|| "counting active alarms".into())
}

/// Alarm counts by (priority, active, acknowledged), for metrics.
pub async fn alarm_counts(pool: &Pool) -> Result<Vec<(String, bool, bool, i64)>, StoreError> {
    let rows = sqlx::query_as::<_, (String, Flag, Flag, i64)>(
        "SELECT priority, active, acknowledged, COUNT(*) FROM alarms \
         GROUP BY priority, active, acknowledged",
    )
    .fetch_all(pool)
    .await
    .context(|| "counting alarms".into())?;
    Ok(rows
        .into_iter()
        .map(|(p, a, k, n)| (p, a.into(), k.into(), n))
        .collect())
}

/// The active alarms (writer start: the rule engine continues from them).
pub async fn active_alarms(pool: &Pool) -> Result<Vec<AlarmRow>, StoreError> {
    sqlx::query_as::<_, AlarmRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {ALARM_COLUMNS} FROM alarms WHERE active = $1"
    )))
    .bind(true)
    .fetch_all(pool)
    .await
    .context(|| "reading active alarms".into())
}

/// Who or what caused an alarm change.
#[derive(Debug, Clone, Default)]
pub struct Cause<'a> {
    pub actor: Option<&'a str>,
    pub event: Option<(&'a str, i64)>,
    pub note: Option<&'a str>,
}

/// Raises, re-raises or updates an alarm. Re-activating a cleared alarm re-arms it
/// (unacknowledged again). Returns the alarm id and what the change was.
pub async fn activate(
    conn: &mut Conn,
    a: &Activation,
    now_ms: i64,
    cause: &Cause<'_>,
) -> Result<(i64, HistoryChange), StoreError> {
    let (id, activations): (i64, i64) = sqlx::query_as(
        "INSERT INTO alarms (estate_id, device_id, gateway_id, area, condition, priority, \
         category, message, active, acknowledged, latched, activations, value, raised_at_ms, \
         changed_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, \
         CASE WHEN $14 THEN $12 ELSE NULL END, $13, $13) \
         ON CONFLICT (estate_id, device_id, condition) DO UPDATE SET \
         gateway_id = excluded.gateway_id, area = excluded.area, \
         priority = excluded.priority, category = excluded.category, \
         message = excluded.message, latched = excluded.latched, value = excluded.value, \
         activations = alarms.activations + 1, changed_at_ms = excluded.changed_at_ms, \
         raised_at_ms = CASE WHEN alarms.active THEN alarms.raised_at_ms \
                        ELSE excluded.raised_at_ms END, \
         acknowledged = CASE WHEN alarms.active THEN alarms.acknowledged ELSE $10 END, \
         acked_at_ms = CASE WHEN alarms.active THEN alarms.acked_at_ms ELSE NULL END, \
         acked_by = CASE WHEN alarms.active THEN alarms.acked_by ELSE NULL END, \
         active = $9 \
         RETURNING id, activations",
    )
    .bind(&a.key.estate)
    .bind(&a.key.device)
    .bind(&a.gateway)
    .bind(&a.area)
    .bind(&a.key.condition)
    .bind(a.priority.as_str())
    .bind(a.category.as_str())
    .bind(&a.message)
    .bind(true)
    .bind(false)
    .bind(a.latched)
    // Never a NULL double: sqlx's Any driver sends one to PostgreSQL as a NULL *float4*, and
    // the statement PostgreSQL then prepares (and sqlx caches) refuses a later 8-byte value.
    .bind(a.value.unwrap_or(0.0))
    .bind(now_ms)
    .bind(a.value.is_some())
    .fetch_one(&mut *conn)
    .await
    .context(|| format!("raising alarm on device {} of estate {}", a.key.device, a.key.estate))?;
    let change = if a.repeat {
        HistoryChange::Updated
    } else if activations == 1 {
        HistoryChange::Raised
    } else {
        HistoryChange::Reraised
    };
    history(conn, id, change, now_ms, cause).await?;
    Ok((id, change))
}

/// Stores an active alarm's latest value (no history row).
pub async fn set_value(conn: &mut Conn, key: &AlarmKey, value: f64) -> Result<(), StoreError> {
    sqlx::query("UPDATE alarms SET value = $1 WHERE estate_id = $2 AND device_id = $3 AND condition = $4")
        .bind(value)
        .bind(&key.estate)
        .bind(&key.device)
        .bind(&key.condition)
        .execute(&mut *conn)
        .await
        .context(|| format!("updating the value of an alarm of device {}", key.device))?;
    Ok(())
}

/// Clears an active alarm. Returns its id, or None if it was not active.
pub async fn clear(conn: &mut Conn, key: &AlarmKey, now_ms: i64, cause: &Cause<'_>) -> Result<Option<i64>, StoreError> {
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE alarms SET active = $1, changed_at_ms = $2 \
         WHERE estate_id = $3 AND device_id = $4 AND condition = $5 AND active = $6 \
         RETURNING id",
    )
    .bind(false)
    .bind(now_ms)
    .bind(&key.estate)
    .bind(&key.device)
    .bind(&key.condition)
    .bind(true)
    .fetch_optional(&mut *conn)
    .await
    .context(|| format!("clearing an alarm of device {}", key.device))?;
    if let Some(id) = id {
        history(conn, id, HistoryChange::Cleared, now_ms, cause).await?;
    }
    Ok(id)
}

/// Records an operator's acknowledgement. Returns the alarm id, or None if unknown.
pub async fn acknowledge(
    conn: &mut Conn,
    key: &AlarmKey,
    operator: &str,
    now_ms: i64,
    cause: &Cause<'_>,
) -> Result<Option<i64>, StoreError> {
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE alarms SET acknowledged = $1, acked_at_ms = $2, acked_by = $3, \
         changed_at_ms = $2 WHERE estate_id = $4 AND device_id = $5 AND condition = $6 \
         RETURNING id",
    )
    .bind(true)
    .bind(now_ms)
    .bind(operator)
    .bind(&key.estate)
    .bind(&key.device)
    .bind(&key.condition)
    .fetch_optional(&mut *conn)
    .await
    .context(|| format!("acknowledging an alarm of device {}", key.device))?;
    if let Some(id) = id {
        history(conn, id, HistoryChange::Acknowledged, now_ms, cause).await?;
    }
    Ok(id)
}

pub async fn history(
    conn: &mut Conn,
    alarm_id: i64,
    change: HistoryChange,
    now_ms: i64,
    cause: &Cause<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO alarm_history (alarm_id, at_ms, change, actor, event_gateway_id, \
         event_seq, note) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(alarm_id)
    .bind(now_ms)
    .bind(change.as_str())
    .bind(cause.actor)
    .bind(cause.event.map(|(g, _)| g))
    .bind(cause.event.map(|(_, s)| s))
    .bind(cause.note)
    .execute(&mut *conn)
    .await
    .context(|| format!("writing the history of alarm {alarm_id}"))?;
    Ok(())
}

/// An alarm's overlay flag, set by the engine (never by the rule engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    Chattering,
    Suppressed,
    OutOfService,
}

impl Overlay {
    fn column(self) -> &'static str {
        match self {
            Overlay::Chattering => "chattering",
            Overlay::Suppressed => "suppressed",
            Overlay::OutOfService => "out_of_service",
        }
    }
}

pub async fn set_overlay(conn: &mut Conn, id: i64, overlay: Overlay, on: bool) -> Result<(), StoreError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE alarms SET {} = $1 WHERE id = $2",
        overlay.column()
    )))
    .bind(on)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context(|| "updating an alarm overlay".into())?;
    Ok(())
}

/// Ends chattering of an alarm that is chattering; returns its id, or None.
pub async fn end_chattering(conn: &mut Conn, key: &AlarmKey) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar(
        "UPDATE alarms SET chattering = $1 WHERE estate_id = $2 AND device_id = $3 AND condition = $4 AND chattering = $5 RETURNING id",
    )
    .bind(false)
    .bind(&key.estate)
    .bind(&key.device)
    .bind(&key.condition)
    .bind(true)
    .fetch_optional(&mut *conn)
    .await
    .context(|| "ending chattering".into())
}

/// The id of the active alarm of one (estate, device, condition), if any.
pub async fn active_id(conn: &mut Conn, key: &AlarmKey) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar(
        "SELECT id FROM alarms WHERE estate_id = $1 AND device_id = $2 AND condition = $3 AND active = $4",
    )
    .bind(&key.estate)
    .bind(&key.device)
    .bind(&key.condition)
    .bind(true)
    .fetch_optional(&mut *conn)
    .await
    .context(|| "checking for a disabled fire zone".into())
}

pub async fn shelve(
    conn: &mut Conn,
    id: i64,
    until: i64,
    operator: &str,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE alarms SET shelved_until_ms = $1, shelved_by = $2, shelve_reason = $3, changed_at_ms = $4 WHERE id = $5",
    )
    .bind(until)
    .bind(operator)
    .bind(reason)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context(|| "shelving an alarm".into())?;
    Ok(())
}

pub async fn unshelve(conn: &mut Conn, id: i64, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE alarms SET shelved_until_ms = NULL, shelved_by = NULL, shelve_reason = NULL, changed_at_ms = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context(|| "unshelving an alarm".into())?;
    Ok(())
}

/// Recent raises (estate, device, condition, at) since `since`, for the book's memory.
pub async fn raises_since(pool: &Pool, since: i64) -> Result<Vec<(String, String, String, i64)>, StoreError> {
    sqlx::query_as(
        "SELECT a.estate_id, a.device_id, a.condition, h.at_ms FROM alarm_history h \
         JOIN alarms a ON a.id = h.alarm_id WHERE h.at_ms > $1 AND h.change IN ('raised', 'reraised')",
    )
    .bind(since)
    .fetch_all(pool)
    .await
    .context(|| "reading recent alarm raises".into())
}

/// The flood period still open, if any.
pub async fn open_flood(pool: &Pool) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar("SELECT id FROM flood_periods WHERE ended_at_ms IS NULL LIMIT 1")
        .fetch_optional(pool)
        .await
        .context(|| "reading flood periods".into())
}

pub async fn start_flood(conn: &mut Conn, alarms_at_start: i64, now: i64) -> Result<i64, StoreError> {
    sqlx::query_scalar("INSERT INTO flood_periods (started_at_ms, alarms_at_start) VALUES ($1, $2) RETURNING id")
        .bind(now)
        .bind(alarms_at_start)
        .fetch_one(&mut *conn)
        .await
        .context(|| "recording a flood".into())
}

/// Ends the open flood period; returns its id.
pub async fn end_flood(conn: &mut Conn, now: i64) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar("UPDATE flood_periods SET ended_at_ms = $1 WHERE ended_at_ms IS NULL RETURNING id")
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .context(|| "ending a flood".into())
}

/// Why a device is in maintenance at `now`, if it is.
pub async fn maintenance_reason(
    conn: &mut Conn,
    estate: &str,
    device: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT reason FROM device_maintenance WHERE estate_id = $1 AND device_id = $2 \
         AND (until_ms IS NULL OR until_ms > $3)",
    )
    .bind(estate)
    .bind(device)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .context(|| "checking for device maintenance".into())
}

/// Starts (or changes) a device's maintenance; returns the rows changed.
pub async fn start_maintenance(
    conn: &mut Conn,
    estate: &str,
    device: &str,
    reason: &str,
    operator: &str,
    until_ms: Option<i64>,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "INSERT INTO device_maintenance (estate_id, device_id, reason, operator, since_ms, until_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (estate_id, device_id) DO UPDATE SET \
         reason = excluded.reason, operator = excluded.operator, until_ms = excluded.until_ms",
    )
    .bind(estate)
    .bind(device)
    .bind(reason)
    .bind(operator)
    .bind(now)
    .bind(until_ms)
    .execute(&mut *conn)
    .await
    .context(|| "starting device maintenance".into())?
    .rows_affected())
}

/// Ends a device's maintenance (an expired row goes too); returns its `until_ms` if a row
/// was there.
pub async fn end_maintenance(conn: &mut Conn, estate: &str, device: &str) -> Result<Option<Option<i64>>, StoreError> {
    sqlx::query_scalar("DELETE FROM device_maintenance WHERE estate_id = $1 AND device_id = $2 RETURNING until_ms")
        .bind(estate)
        .bind(device)
        .fetch_optional(&mut *conn)
        .await
        .context(|| "ending device maintenance".into())
}

/// Raises and re-raises in (from, to], by priority (the KPI's mix).
pub async fn raises_by_priority(pool: &Pool, from: i64, to: i64) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as(
        "SELECT a.priority, COUNT(*) FROM alarm_history h JOIN alarms a ON a.id = h.alarm_id \
         WHERE h.at_ms > $1 AND h.at_ms <= $2 AND h.change IN ('raised', 'reraised') GROUP BY a.priority",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
    .context(|| "counting alarms by priority".into())
}

/// One of the most frequent alarms of a period.
#[derive(Debug, serde::Serialize, sqlx::FromRow)]
pub struct TopAlarm {
    alarm_id: i64,
    estate: String,
    device: String,
    condition: String,
    priority: String,
    message: String,
    activations: i64,
}

/// The ten alarms raised most often in (from, to].
pub async fn top_ten(pool: &Pool, from: i64, to: i64) -> Result<Vec<TopAlarm>, StoreError> {
    sqlx::query_as(
        "SELECT a.id AS alarm_id, a.estate_id AS estate, a.device_id AS device, a.condition, a.priority, a.message, \
         COUNT(*) AS activations FROM alarm_history h JOIN alarms a ON a.id = h.alarm_id \
         WHERE h.at_ms > $1 AND h.at_ms <= $2 AND h.change IN ('raised', 'reraised') \
         GROUP BY a.id, a.estate_id, a.device_id, a.condition, a.priority, a.message \
         ORDER BY activations DESC, a.id LIMIT 10",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
    .context(|| "finding the most frequent alarms".into())
}

/// Active alarms raised before `before`.
pub async fn standing_since(pool: &Pool, before: i64) -> Result<Vec<i64>, StoreError> {
    sqlx::query_scalar("SELECT id FROM alarms WHERE active = $1 AND raised_at_ms < $2 ORDER BY id")
        .bind(true)
        .bind(before)
        .fetch_all(pool)
        .await
        .context(|| "finding standing alarms".into())
}

/// Flood periods (start, end) open or ended after `from`.
pub async fn floods_since(pool: &Pool, from: i64) -> Result<Vec<(i64, Option<i64>)>, StoreError> {
    sqlx::query_as(
        "SELECT started_at_ms, ended_at_ms FROM flood_periods WHERE ended_at_ms IS NULL OR ended_at_ms > $1 ORDER BY id",
    )
    .bind(from)
    .fetch_all(pool)
    .await
    .context(|| "reading flood periods".into())
}

/// A device in maintenance.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MaintenanceRow {
    pub estate_id: String,
    pub device_id: String,
    pub reason: String,
    pub operator: String,
    pub since_ms: i64,
    pub until_ms: Option<i64>,
}

/// The devices in maintenance at `now`.
pub async fn in_maintenance(pool: &Pool, now: i64) -> Result<Vec<MaintenanceRow>, StoreError> {
    sqlx::query_as(
        "SELECT estate_id, device_id, reason, operator, since_ms, until_ms FROM device_maintenance \
         WHERE until_ms IS NULL OR until_ms > $1 ORDER BY estate_id, device_id",
    )
    .bind(now)
    .fetch_all(pool)
    .await
    .context(|| "listing devices in maintenance".into())
}
