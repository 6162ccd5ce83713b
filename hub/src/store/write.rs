//! Writes, all inside the ingest writer's transaction. Nothing else writes to the database.

use gatehouse_proto::{CommandResult, DeviceInfo, DeviceKind};
use sqlx::{QueryBuilder, Sqlite};

use super::{Conn, Context, StoreError};
use crate::alarms::{AlarmKey, HistoryChange};
use crate::rules::Activation;

/// One event as stored.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub gateway_id: String,
    pub seq: i64,
    pub event_id: String,
    pub estate_id: String,
    pub device_id: String,
    pub device_kind: &'static str,
    pub area: String,
    pub occurred_at_ms: i64,
    pub received_at_ms: i64,
    pub body_kind: &'static str,
    pub payload: Vec<u8>,
}

const EVENT_COLUMNS: usize = 12;
/// Rows per INSERT: well under SQLite's 32,766 bound variables.
const EVENT_ROWS_PER_INSERT: usize = 1_000;

/// Inserts events; rows already present (same gateway and seq) are skipped.
/// Returns how many were inserted.
pub async fn insert_events(conn: &mut Conn, rows: &[EventRow], ingested_at_ms: i64) -> Result<u64, StoreError> {
    const _: () = assert!(EVENT_COLUMNS * EVENT_ROWS_PER_INSERT < 32_766);
    let mut inserted = 0;
    for chunk in rows.chunks(EVENT_ROWS_PER_INSERT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO events (gateway_id, seq, event_id, estate_id, device_id, device_kind, \
             area, occurred_at_ms, received_at_ms, ingested_at_ms, body_kind, payload) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(r.gateway_id.clone())
                .push_bind(r.seq)
                .push_bind(r.event_id.clone())
                .push_bind(r.estate_id.clone())
                .push_bind(r.device_id.clone())
                .push_bind(r.device_kind)
                .push_bind(r.area.clone())
                .push_bind(r.occurred_at_ms)
                .push_bind(r.received_at_ms)
                .push_bind(ingested_at_ms)
                .push_bind(r.body_kind)
                .push_bind(r.payload.clone());
        });
        q.push(" ON CONFLICT (gateway_id, seq) DO NOTHING");
        let done = q
            .build()
            .execute(&mut *conn)
            .await
            .context(|| format!("inserting {} events", chunk.len()))?;
        inserted += done.rows_affected();
    }
    Ok(inserted)
}

/// Records a gateway's Hello: upserts its row (connected) and replaces its device registry.
/// Returns the stored last sequence number.
pub async fn gateway_hello(
    conn: &mut Conn,
    gateway_id: &str,
    estate_id: &str,
    software_version: &str,
    devices: &[DeviceInfo],
    now_ms: i64,
) -> Result<i64, StoreError> {
    let last_seq: i64 = sqlx::query_scalar(
        "INSERT INTO gateways (id, estate_id, software_version, connected, connected_at_ms, \
         last_seen_ms, last_seq) VALUES ($1, $2, $3, $4, $5, $5, 0) \
         ON CONFLICT (id) DO UPDATE SET estate_id = excluded.estate_id, \
         software_version = excluded.software_version, connected = excluded.connected, \
         connected_at_ms = excluded.connected_at_ms, \
         last_seen_ms = COALESCE(gateways.last_seen_ms, excluded.last_seen_ms) \
         RETURNING last_seq",
    )
    .bind(gateway_id)
    .bind(estate_id)
    .bind(software_version)
    .bind(true)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await
    .context(|| format!("recording the Hello of gateway {gateway_id}"))?;

    sqlx::query("DELETE FROM devices WHERE gateway_id = $1")
        .bind(gateway_id)
        .execute(&mut *conn)
        .await
        .context(|| format!("replacing the device registry of gateway {gateway_id}"))?;
    for chunk in devices.chunks(1_000) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO devices (gateway_id, device_id, estate_id, kind, area) ");
        q.push_values(chunk, |mut b, d| {
            b.push_bind(gateway_id.to_owned())
                .push_bind(d.device_id.clone())
                .push_bind(estate_id.to_owned())
                .push_bind(device_kind_name(d.kind))
                .push_bind(d.area.clone());
        });
        q.push(" ON CONFLICT (gateway_id, device_id) DO NOTHING");
        q.build()
            .execute(&mut *conn)
            .await
            .context(|| format!("storing the device registry of gateway {gateway_id}"))?;
    }
    Ok(last_seq)
}

/// Advances a gateway's stored progress (last seq, last seen). Never lowers `last_seq`.
pub async fn gateway_progress(
    conn: &mut Conn,
    gateway_id: &str,
    last_seq: Option<i64>,
    last_seen_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE gateways SET last_seq = CASE WHEN last_seq < $1 THEN $1 ELSE last_seq END, \
         last_seen_ms = $2 WHERE id = $3",
    )
    .bind(last_seq.unwrap_or(0))
    .bind(last_seen_ms)
    .bind(gateway_id)
    .execute(&mut *conn)
    .await
    .context(|| format!("updating the progress of gateway {gateway_id}"))?;
    Ok(())
}

pub async fn gateway_disconnected(conn: &mut Conn, gateway_id: &str, now_ms: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE gateways SET connected = $1, last_seen_ms = $2 WHERE id = $3")
        .bind(false)
        .bind(now_ms)
        .bind(gateway_id)
        .execute(&mut *conn)
        .await
        .context(|| format!("marking gateway {gateway_id} disconnected"))?;
    Ok(())
}

pub async fn command_result(
    conn: &mut Conn,
    gateway_id: &str,
    result: &CommandResult,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO command_results (gateway_id, command_id, device_id, ok, message, \
         received_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(gateway_id)
    .bind(&result.command_id)
    .bind(&result.device_id)
    .bind(result.ok)
    .bind(&result.message)
    .bind(now_ms)
    .execute(&mut *conn)
    .await
    .context(|| {
        format!(
            "storing the result of command {} from gateway {gateway_id}",
            result.command_id
        )
    })?;
    Ok(())
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
         changed_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $13, $13) \
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
    .bind(a.value)
    .bind(now_ms)
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

/// `door`, `fire_panel`, ... for a `DeviceKind` number (`unknown` if out of range).
pub fn device_kind_name(kind: i32) -> &'static str {
    match DeviceKind::try_from(kind) {
        Ok(DeviceKind::Door) => "door",
        Ok(DeviceKind::Intercom) => "intercom",
        Ok(DeviceKind::FirePanel) => "fire_panel",
        Ok(DeviceKind::Modbus) => "modbus",
        Ok(DeviceKind::Gateway) => "gateway",
        Ok(DeviceKind::Unspecified) => "unspecified",
        Err(_) => "unknown",
    }
}
