//! Every SQL statement on events, gateways (their sequence and progress), their device
//! registries, command results and the vehicle-entry count. Writes run only inside the
//! single writer's transaction. `events` is the partitioned log (a view over the partition
//! tables on SQLite, the partitioned parent on PostgreSQL): reads name it, inserts go to a
//! partition.

use gatehouse_proto::{CommandResult, DeviceInfo, DeviceKind};

use crate::store::{Backend, Conn, Context, Pool, Sql, StoreError};

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

/// Appends events to partition `partition` (the one covering `ingested_at_ms`: see
/// `partitions::Partitions::covering`), multi-row `VALUES` of 1,000 rows (the `Any`
/// driver binds no arrays, so `UNNEST` is not available; multi-row VALUES measured faster
/// than row-at-a-time on both backends). No key: the writer drops duplicates against each
/// gateway's mark (`gateway_marks`) before. Returns how many were inserted.
pub async fn insert_events(
    conn: &mut Conn,
    partition: &str,
    rows: &[EventRow],
    ingested_at_ms: i64,
) -> Result<u64, StoreError> {
    const _: () = assert!(EVENT_COLUMNS * EVENT_ROWS_PER_INSERT < 32_766);
    let mut inserted = 0;
    for chunk in rows.chunks(EVENT_ROWS_PER_INSERT) {
        let mut q = Sql::new(format!(
            "INSERT INTO {partition} ({}) ",
            super::partitions::queries::EVENT_COLUMNS
        ));
        q.push_values(chunk, |b, r| {
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
        let done = q
            .build()
            .execute(&mut *conn)
            .await
            .context(|| format!("inserting {} events", chunk.len()))?;
        inserted += done.rows_affected();
    }
    if inserted > 0 {
        super::partitions::queries::count_rows(conn, partition, inserted).await?;
    }
    Ok(inserted)
}

/// The stored high-water marks (`last_seq`) of `gateways`, read under their rows' lock
/// (PostgreSQL `FOR UPDATE`; SQLite's writer holds the database's write lock): events at or
/// below a gateway's mark are not inserted, and the mark is raised in the same transaction
/// (`gateway_progress`), so a duplicate is dropped even if another writer stored it first.
pub async fn gateway_marks(conn: &mut Conn, gateways: &[&str]) -> Result<Vec<(String, i64)>, StoreError> {
    if gateways.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(gateways.len());
    for chunk in gateways.chunks(1_000) {
        let mut q = Sql::new("SELECT id, last_seq FROM gateways WHERE id IN (");
        q.push_list(chunk.iter().map(|g| (*g).to_owned())).push(")");
        if crate::store::backend_of_conn(conn) == crate::store::Backend::Postgres {
            q.push(" FOR UPDATE");
        }
        out.extend(
            q.build_query_as::<(String, i64)>()
                .fetch_all(&mut *conn)
                .await
                .context(|| "reading gateways' stored marks".into())?,
        );
    }
    Ok(out)
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
        let mut q = Sql::new("INSERT INTO devices (gateway_id, device_id, estate_id, kind, area) ");
        q.push_values(chunk, |b, d| {
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

/// A gateway row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GatewayRow {
    pub id: String,
    pub estate_id: String,
    pub software_version: String,
    #[sqlx(try_from = "crate::store::Flag")]
    pub connected: bool,
    pub last_seen_ms: Option<i64>,
    pub last_seq: i64,
}

pub async fn gateways(pool: &Pool) -> Result<Vec<GatewayRow>, StoreError> {
    sqlx::query_as::<_, GatewayRow>(
        "SELECT id, estate_id, software_version, connected, last_seen_ms, last_seq \
         FROM gateways ORDER BY estate_id, id",
    )
    .fetch_all(pool)
    .await
    .context(|| "listing gateways".into())
}

/// Every gateway's stored last sequence number (writer start).
pub async fn gateway_seqs(pool: &Pool) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as::<_, (String, i64)>("SELECT id, last_seq FROM gateways")
        .fetch_all(pool)
        .await
        .context(|| "reading gateway sequence numbers".into())
}

/// Marks every gateway disconnected (start: no stream survives a restart).
pub async fn mark_all_disconnected(pool: &Pool) -> Result<(), StoreError> {
    sqlx::query("UPDATE gateways SET connected = $1 WHERE connected = $2")
        .bind(false)
        .bind(true)
        .execute(pool)
        .await
        .context(|| "marking gateways disconnected".into())?;
    Ok(())
}

/// Marks a gateway's devices' state unknown (it fell silent) or known again; returns how many.
pub async fn set_devices_unknown(conn: &mut Conn, gateway: &str, unknown: bool) -> Result<u64, StoreError> {
    let what = if unknown {
        "marking devices unknown"
    } else {
        "marking devices known"
    };
    Ok(
        sqlx::query("UPDATE devices SET state_unknown = $1 WHERE gateway_id = $2")
            .bind(unknown)
            .bind(gateway)
            .execute(&mut *conn)
            .await
            .context(|| what.into())?
            .rows_affected(),
    )
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

/// Counts one vehicle entry of `day` (`YYYY-MM-DD`) for the registration KPI; no plate stored.
pub async fn count_vehicle_entry(conn: &mut Conn, estate: &str, day: &str, registered: bool) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO vehicle_entries (estate_id, day, entries, registered) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (estate_id, day) DO UPDATE SET entries = vehicle_entries.entries + 1, \
         registered = vehicle_entries.registered + excluded.registered",
    )
    .bind(estate)
    .bind(day)
    .bind(i64::from(registered))
    .execute(&mut *conn)
    .await
    .context(|| "counting a vehicle entry".into())?;
    Ok(())
}

/// (estate, entries, registered) per estate since `from_day` (`YYYY-MM-DD`).
pub async fn vehicle_entries_since(pool: &Pool, from_day: &str) -> Result<Vec<(String, i64, i64)>, StoreError> {
    sqlx::query_as(
        "SELECT estate_id, CAST(SUM(entries) AS BIGINT), CAST(SUM(registered) AS BIGINT) FROM vehicle_entries \
         WHERE day >= $1 GROUP BY estate_id",
    )
    .bind(from_day)
    .fetch_all(pool)
    .await
    .context(|| "counting vehicle entries".into())
}

/// A device the hub knows from its gateway's Hello, with what the board shows beside it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceRow {
    pub estate_id: String,
    pub device_id: String,
    pub kind: String,
    pub area: String,
    pub gateway_id: String,
    #[sqlx(try_from = "crate::store::Flag")]
    pub gateway_connected: bool,
    /// Its newest event's time.
    pub last_seen_ms: Option<i64>,
    /// Its newest status event (encoded `Event`) since `status_since_ms`.
    pub status_payload: Option<Vec<u8>>,
}

/// The devices of `estate` (every estate when None), by estate and id, at most `limit`.
/// Per device and partition two index probes on its `(estate_id, device_id,
/// occurred_at_ms)` index: its newest event, and its newest status event no older than
/// `status_since_ms` (which bounds that walk on a busy device). On SQLite the probes name
/// each partition (a correlated aggregate over the `events` view would scan every
/// partition); PostgreSQL plans them per partition of `events` itself.
pub async fn devices(
    pool: &Pool,
    estate: Option<&str>,
    status_since_ms: i64,
    limit: i64,
) -> Result<Vec<DeviceRow>, StoreError> {
    let (last_seen, status) = match crate::store::backend_of(pool) {
        Backend::Postgres => (
            "(SELECT MAX(e.occurred_at_ms) FROM events e \
             WHERE e.estate_id = d.estate_id AND e.device_id = d.device_id)"
                .to_owned(),
            "(SELECT e.payload FROM events e \
             WHERE e.estate_id = d.estate_id AND e.device_id = d.device_id \
             AND e.occurred_at_ms >= $2 AND e.body_kind = 'status' \
             ORDER BY e.occurred_at_ms DESC LIMIT 1)"
                .to_owned(),
        ),
        Backend::Sqlite => {
            let names: Vec<String> = super::partitions::queries::list(pool)
                .await?
                .into_iter()
                .map(|p| p.name)
                .collect();
            if names.is_empty() {
                ("NULL".to_owned(), "NULL".to_owned())
            } else {
                let last: Vec<String> = names
                    .iter()
                    .map(|n| {
                        format!(
                            "SELECT MAX(e.occurred_at_ms) AS m FROM {n} e \
                             WHERE e.estate_id = d.estate_id AND e.device_id = d.device_id"
                        )
                    })
                    .collect();
                let status: Vec<String> = names
                    .iter()
                    .map(|n| {
                        format!(
                            "SELECT * FROM (SELECT e.payload AS payload, e.occurred_at_ms AS t FROM {n} e \
                             WHERE e.estate_id = d.estate_id AND e.device_id = d.device_id \
                             AND e.occurred_at_ms >= $2 AND e.body_kind = 'status' \
                             ORDER BY e.occurred_at_ms DESC LIMIT 1)"
                        )
                    })
                    .collect();
                (
                    format!("(SELECT MAX(m) FROM ({}))", last.join(" UNION ALL ")),
                    format!(
                        "(SELECT payload FROM ({}) ORDER BY t DESC LIMIT 1)",
                        status.join(" UNION ALL ")
                    ),
                )
            }
        }
    };
    // `$1` (the estate) and `$2` (the status bound) appear more than once: bound by number.
    let text = format!(
        "SELECT d.estate_id, d.device_id, d.kind, d.area, d.gateway_id, \
         COALESCE(g.connected, FALSE) AS gateway_connected, \
         {last_seen} AS last_seen_ms, {status} AS status_payload \
         FROM devices d LEFT JOIN gateways g ON g.id = d.gateway_id \
         WHERE ($1 IS NULL OR d.estate_id = $1) \
         ORDER BY d.estate_id, d.device_id, d.gateway_id LIMIT $3"
    );
    sqlx::query_as::<_, DeviceRow>(sqlx::AssertSqlSafe(text))
        .bind(estate)
        .bind(status_since_ms)
        .bind(limit)
        .fetch_all(pool)
        .await
        .context(|| "listing devices".into())
}

/// Whether `device` of `estate` is in a gateway's registry.
pub async fn device_known(pool: &Pool, estate: &str, device: &str) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE estate_id = $1 AND device_id = $2")
        .bind(estate)
        .bind(device)
        .fetch_one(pool)
        .await
        .context(|| format!("looking up device {device}"))?;
    Ok(n > 0)
}

/// A stored point reading: (device, occurred at, encoded `Event`).
pub type PointRow = (String, i64, Vec<u8>);

/// Point readings of `estate` (of one `device` if given) with `from_ms <= occurred <= to_ms`,
/// newest first, at most `limit` rows.
pub async fn point_readings(
    pool: &Pool,
    estate: &str,
    device: Option<&str>,
    from_ms: i64,
    to_ms: i64,
    limit: i64,
) -> Result<Vec<PointRow>, StoreError> {
    // Two shapes, so the planner takes `events_device_time` for one device and
    // `events_estate_time` for an estate.
    let mut q = Sql::new("SELECT device_id, occurred_at_ms, payload FROM events WHERE estate_id = ");
    q.push_bind(estate.to_owned());
    if let Some(device) = device {
        q.push(" AND device_id = ").push_bind(device.to_owned());
    }
    q.push(" AND body_kind = 'point' AND occurred_at_ms >= ")
        .push_bind(from_ms)
        .push(" AND occurred_at_ms <= ")
        .push_bind(to_ms)
        .push(" ORDER BY occurred_at_ms DESC LIMIT ")
        .push_bind(limit);
    q.build_query_as::<PointRow>()
        .fetch_all(pool)
        .await
        .context(|| format!("reading point readings of estate {estate}"))
}
