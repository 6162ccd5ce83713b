//! The partitions' SQL: the catalogue, creating and dropping a partition, and (SQLite) the
//! `events` view over them. Partition names are made by `Partition::new` (`events_p` and
//! digits), never taken from outside, so they are written into the statements' text.

use super::Partition;
use crate::store::{Backend, Conn, Context, Pool, Sql, StoreError, backend_of_conn};

/// The columns of an event row, in table order.
pub const EVENT_COLUMNS: &str = "gateway_id, seq, event_id, estate_id, device_id, device_kind, area, \
     occurred_at_ms, received_at_ms, ingested_at_ms, body_kind, payload";

/// Every partition in the catalogue.
pub async fn list(pool: &Pool) -> Result<Vec<Partition>, StoreError> {
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT name, start_ms, end_ms FROM event_partitions ORDER BY start_ms, end_ms")
            .fetch_all(pool)
            .await
            .context(|| "listing event partitions".into())?;
    Ok(rows
        .into_iter()
        .map(|(name, start_ms, end_ms)| Partition { name, start_ms, end_ms })
        .collect())
}

/// The events each partition holds (from the catalogue's count): name → rows.
pub async fn counts(pool: &Pool) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as("SELECT name, rows FROM event_partitions ORDER BY start_ms, end_ms")
        .fetch_all(pool)
        .await
        .context(|| "counting events per partition".into())
}

async fn exec(conn: &mut Conn, text: String, what: &str) -> Result<(), StoreError> {
    Sql::new(text)
        .build()
        .execute(&mut *conn)
        .await
        .context(|| what.to_owned())?;
    Ok(())
}

/// Creates a partition (table and indexes, or a PostgreSQL partition of `events`, which
/// takes the parent's indexes) and its catalogue row.
pub async fn create(conn: &mut Conn, p: &Partition) -> Result<(), StoreError> {
    let name = &p.name;
    let what = format!("creating event partition {name}");
    match backend_of_conn(conn) {
        Backend::Sqlite => {
            exec(
                conn,
                format!(
                    "CREATE TABLE IF NOT EXISTS {name} (gateway_id TEXT NOT NULL, seq BIGINT NOT NULL, \
                     event_id TEXT NOT NULL, estate_id TEXT NOT NULL, device_id TEXT NOT NULL, \
                     device_kind TEXT NOT NULL, area TEXT NOT NULL, occurred_at_ms BIGINT NOT NULL, \
                     received_at_ms BIGINT NOT NULL, ingested_at_ms BIGINT NOT NULL, \
                     body_kind TEXT NOT NULL, payload BLOB NOT NULL)"
                ),
                &what,
            )
            .await?;
            exec(
                conn,
                format!("CREATE INDEX IF NOT EXISTS {name}_estate_time ON {name} (estate_id, occurred_at_ms)"),
                &what,
            )
            .await?;
            exec(
                conn,
                format!(
                    "CREATE INDEX IF NOT EXISTS {name}_device_time ON {name} (estate_id, device_id, occurred_at_ms)"
                ),
                &what,
            )
            .await?;
        }
        Backend::Postgres => {
            exec(
                conn,
                format!(
                    "CREATE TABLE IF NOT EXISTS {name} PARTITION OF events FOR VALUES FROM ({}) TO ({})",
                    p.start_ms, p.end_ms
                ),
                &what,
            )
            .await?;
        }
    }
    sqlx::query(
        "INSERT INTO event_partitions (name, start_ms, end_ms, rows) VALUES ($1, $2, $3, 0) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(p.start_ms)
    .bind(p.end_ms)
    .execute(&mut *conn)
    .await
    .context(|| what.clone())?;
    Ok(())
}

/// Drops a partition whole and its catalogue row; returns the events it held.
pub async fn drop_partition(conn: &mut Conn, p: &Partition) -> Result<u64, StoreError> {
    let name = &p.name;
    let what = format!("dropping event partition {name}");
    let rows: Option<i64> = sqlx::query_scalar("DELETE FROM event_partitions WHERE name = $1 RETURNING rows")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .context(|| what.clone())?;
    if backend_of_conn(conn) == Backend::Postgres {
        exec(conn, format!("ALTER TABLE events DETACH PARTITION {name}"), &what).await?;
    }
    exec(conn, format!("DROP TABLE IF EXISTS {name}"), &what).await?;
    Ok(rows.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
}

/// SQLite: rewrites the `events` view as the UNION ALL of `partitions` (readers keep one
/// name; SQLite pushes a query's WHERE terms into each arm, so each partition's index is
/// used). PostgreSQL: nothing (`events` is the partitioned parent).
pub async fn rewrite_view(conn: &mut Conn, partitions: &[Partition]) -> Result<(), StoreError> {
    if backend_of_conn(conn) != Backend::Sqlite {
        return Ok(());
    }
    let body = if partitions.is_empty() {
        format!(
            "SELECT {} WHERE 0",
            EVENT_COLUMNS
                .split(", ")
                .map(|c| format!("NULL AS {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        partitions
            .iter()
            .map(|p| format!("SELECT {EVENT_COLUMNS} FROM {}", p.name))
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    };
    exec(conn, "DROP VIEW IF EXISTS events".into(), "rewriting the events view").await?;
    exec(
        conn,
        format!("CREATE VIEW events AS {body}"),
        "rewriting the events view",
    )
    .await
}

/// Counts `n` more events stored in partition `name`.
pub async fn count_rows(conn: &mut Conn, name: &str, n: u64) -> Result<(), StoreError> {
    sqlx::query("UPDATE event_partitions SET rows = rows + $1 WHERE name = $2")
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(name)
        .execute(&mut *conn)
        .await
        .context(|| format!("counting the events of partition {name}"))?;
    Ok(())
}
