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

/// How an event batch is written: multi-row `VALUES` (1,000 rows, 12 bound values each, per
/// statement) or, on PostgreSQL only, one `INSERT … SELECT FROM UNNEST` of one array per
/// column for the whole batch. The `Any` driver binds no arrays, so each array goes as one
/// text value in PostgreSQL's array syntax, cast by the server (`$1::TEXT[]`). The hub
/// writes `Values`; `Unnest` stays so that `gatehouse-sim bench history --insert unnest`
/// can measure the two on another server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertShape {
    Values,
    Unnest,
}

impl InsertShape {
    /// The shape the hub uses on `backend`: `Values` on both. SQLite has no arrays; on
    /// PostgreSQL `gatehouse-sim bench history` measured the text-array UNNEST no faster
    /// (5,000-row commits into an indexed partition: ~80 ms of insert either way, UNNEST
    /// ~5 % slower; docs/PERFORMANCE.md, issue 13): the server parses the arrays' text as
    /// it would the bound values, and the client hex-encodes every payload.
    pub fn for_backend(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite | Backend::Postgres => InsertShape::Values,
        }
    }

    /// The other shape on `backend`, the bench's comparison (None on SQLite).
    pub fn other(self, backend: Backend) -> Option<Self> {
        match (backend, self) {
            (Backend::Sqlite, _) => None,
            (Backend::Postgres, InsertShape::Values) => Some(InsertShape::Unnest),
            (Backend::Postgres, InsertShape::Unnest) => Some(InsertShape::Values),
        }
    }
}

/// Appends events to partition `partition` (the one covering `ingested_at_ms`: see
/// `partitions::Partitions::covering`) in the backend's [`InsertShape`]. No key: the
/// writer drops duplicates against each gateway's mark (`gateway_marks`) before. Returns
/// how many were inserted.
pub async fn insert_events(
    conn: &mut Conn,
    partition: &str,
    rows: &[EventRow],
    ingested_at_ms: i64,
) -> Result<u64, StoreError> {
    let shape = InsertShape::for_backend(crate::store::backend_of_conn(conn));
    insert_events_as(conn, partition, rows, ingested_at_ms, shape).await
}

/// [`insert_events`] in a given shape (the bench compares them). `Unnest` on SQLite falls
/// back to `Values`.
pub async fn insert_events_as(
    conn: &mut Conn,
    partition: &str,
    rows: &[EventRow],
    ingested_at_ms: i64,
    shape: InsertShape,
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let unnest = shape == InsertShape::Unnest && crate::store::backend_of_conn(conn) == Backend::Postgres;
    let inserted = if unnest {
        insert_unnest(conn, partition, rows, ingested_at_ms).await?
    } else {
        insert_values(conn, partition, rows, ingested_at_ms).await?
    };
    if inserted > 0 {
        super::partitions::queries::count_rows(conn, partition, inserted).await?;
    }
    Ok(inserted)
}

/// Multi-row `VALUES`, 1,000 rows a statement (multi-row VALUES measured faster than
/// row-at-a-time on both backends).
async fn insert_values(
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
    Ok(inserted)
}

/// PostgreSQL: the whole batch in one statement, one array per column (11 values bound
/// whatever the batch size, against 12 a row for `VALUES`).
async fn insert_unnest(
    conn: &mut Conn,
    partition: &str,
    rows: &[EventRow],
    ingested_at_ms: i64,
) -> Result<u64, StoreError> {
    let text = |f: &dyn Fn(&EventRow) -> &str| pg_array::texts(rows.iter().map(f));
    let ints = |f: &dyn Fn(&EventRow) -> i64| pg_array::ints(rows.iter().map(f));
    let mut q = Sql::new(format!(
        "INSERT INTO {partition} ({}) SELECT g, s, e, es, d, k, a, o, r, ",
        super::partitions::queries::EVENT_COLUMNS
    ));
    q.push_bind(ingested_at_ms)
        .push(", b, p FROM UNNEST(")
        .push_bind(text(&|r| &r.gateway_id))
        .push("::TEXT[], ")
        .push_bind(ints(&|r| r.seq))
        .push("::BIGINT[], ")
        .push_bind(text(&|r| &r.event_id))
        .push("::TEXT[], ")
        .push_bind(text(&|r| &r.estate_id))
        .push("::TEXT[], ")
        .push_bind(text(&|r| &r.device_id))
        .push("::TEXT[], ")
        .push_bind(text(&|r| r.device_kind))
        .push("::TEXT[], ")
        .push_bind(text(&|r| &r.area))
        .push("::TEXT[], ")
        .push_bind(ints(&|r| r.occurred_at_ms))
        .push("::BIGINT[], ")
        .push_bind(ints(&|r| r.received_at_ms))
        .push("::BIGINT[], ")
        .push_bind(text(&|r| r.body_kind))
        .push("::TEXT[], ")
        .push_bind(pg_array::byteas(rows.iter().map(|r| r.payload.as_slice())))
        .push("::BYTEA[]) AS u(g, s, e, es, d, k, a, o, r, b, p)");
    Ok(q.build()
        .execute(&mut *conn)
        .await
        .context(|| format!("inserting {} events", rows.len()))?
        .rows_affected())
}

/// PostgreSQL array literals (`{"a","b"}`), the text form the server casts to an array.
pub(crate) mod pg_array {
    use std::fmt::Write as _;

    /// Every element quoted; inside quotes only `"` and `\` are escaped.
    pub fn texts<'a>(items: impl Iterator<Item = &'a str>) -> String {
        let mut out = String::from("{");
        for (i, item) in items.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            for c in item.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        out.push('}');
        out
    }

    pub fn ints(items: impl Iterator<Item = i64>) -> String {
        let mut out = String::from("{");
        for (i, item) in items.enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{item}");
        }
        out.push('}');
        out
    }

    /// Each element in bytea's hex form (`\x0a1b`), its backslash escaped for the array.
    pub fn byteas<'a>(items: impl Iterator<Item = &'a [u8]>) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::from("{");
        for (i, item) in items.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("\"\\\\x");
            for b in item {
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            out.push('"');
        }
        out.push('}');
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn quotes_and_escapes() {
            assert_eq!(
                super::texts(["a", "b\"c", "d\\e", ""].into_iter()),
                r#"{"a","b\"c","d\\e",""}"#
            );
            assert_eq!(super::ints([1, -2].into_iter()), "{1,-2}");
            assert_eq!(
                super::byteas([&[0x0a_u8, 0xff][..], &[][..]].into_iter()),
                r#"{"\\x0aff","\\x"}"#
            );
            assert_eq!(super::texts(std::iter::empty()), "{}");
        }
    }
}

/// The stored high-water marks (`last_seq`) of `gateways`, read under their rows' lock
/// (PostgreSQL `FOR UPDATE`, taken in id order so that two writers locking overlapping sets
/// queue instead of deadlocking; SQLite's writer holds the database's write lock): events
/// at or below a gateway's mark are not inserted, and the mark is raised in the same
/// transaction (`raise_marks`), so a duplicate is dropped even if another writer stored it
/// first.
pub async fn gateway_marks(conn: &mut Conn, gateways: &[&str]) -> Result<Vec<(String, i64)>, StoreError> {
    if gateways.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted = gateways.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::with_capacity(sorted.len());
    for chunk in sorted.chunks(1_000) {
        let mut q = Sql::new("SELECT id, last_seq FROM gateways WHERE id IN (");
        q.push_list(chunk.iter().map(|g| (*g).to_owned())).push(") ORDER BY id");
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

/// One gateway's progress in a writer transaction: the newest seq stored for it (0 when
/// it only was heard from) and when it was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    pub gateway: &'a str,
    pub last_seq: i64,
    pub last_seen_ms: i64,
}

/// Gateways per mark-raising statement (3 bound values each).
const MARKS_PER_UPDATE: usize = 1_000;

/// Raises the marks and last-seen times of many gateways: one `UPDATE … FROM (VALUES …)`
/// per 1,000 gateways (a commit of 5,000 rows from 1,000 gateways took 1,000 single-row
/// UPDATEs, each a round trip). Never lowers `last_seq`; `last_seen_ms` is set. A gateway
/// named twice counts once (its highest seq, its latest time). Rows in id order (the lock
/// order of `gateway_marks`). Returns the gateways updated.
pub async fn raise_marks(conn: &mut Conn, progress: &[Progress<'_>]) -> Result<u64, StoreError> {
    let mut merged: std::collections::BTreeMap<&str, (i64, i64)> = std::collections::BTreeMap::new();
    for p in progress {
        let e = merged.entry(p.gateway).or_insert((p.last_seq, p.last_seen_ms));
        *e = (e.0.max(p.last_seq), e.1.max(p.last_seen_ms));
    }
    let merged: Vec<(&str, (i64, i64))> = merged.into_iter().collect();
    let mut updated = 0;
    for chunk in merged.chunks(MARKS_PER_UPDATE) {
        // VALUES columns are `column1`, `column2`, … on both backends.
        let mut q = Sql::new(
            "UPDATE gateways SET last_seq = CASE WHEN gateways.last_seq < v.column2 THEN v.column2 \
             ELSE gateways.last_seq END, last_seen_ms = v.column3 FROM (",
        );
        q.push_values(chunk, |b, (g, (seq, seen))| {
            b.push_bind((*g).to_owned()).push_bind(*seq).push_bind(*seen);
        });
        q.push(") AS v WHERE gateways.id = v.column1");
        updated += q
            .build()
            .execute(&mut *conn)
            .await
            .context(|| format!("raising the marks of {} gateways", chunk.len()))?
            .rows_affected();
    }
    Ok(updated)
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
