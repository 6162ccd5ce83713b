//! Every SQL statement on `hub_leases` and `stream_outbox` (PostgreSQL only: a SQLite file has
//! one writer). Times are the database's clock (`clock_timestamp()`), so the hubs' own clocks
//! may disagree.

use crate::store::{Conn, Context, Pool, StoreError};

/// The lease of the region database's one writer.
pub const WRITER_LEASE: &str = "writer";

/// Now on the database's clock, in ms since the epoch.
const DB_NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// Creates the lease row (expired, epoch 0) if there is none yet.
pub async fn ensure(pool: &Pool) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO hub_leases (name, holder, epoch, acquired_at_ms, expires_at_ms) \
         VALUES ($1, '', 0, 0, 0) ON CONFLICT (name) DO NOTHING",
    )
    .bind(WRITER_LEASE)
    .execute(pool)
    .await
    .context(|| "creating the writer lease".into())?;
    Ok(())
}

/// Takes the lease if it is free or expired: its new epoch, or `None` while another hub holds
/// it. `lock_timeout_ms` bounds the wait for the active's transaction holding the row.
/// `http_url` is where this hub serves HTTP, for the standbys to forward changes to.
pub async fn acquire(
    pool: &Pool,
    holder: &str,
    http_url: &str,
    ttl_ms: i64,
    lock_timeout_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let mut tx = pool.begin().await.context(|| "acquiring the writer lease".into())?;
    // A bounded wait: an active in the middle of a transaction holds the row.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = {}",
        lock_timeout_ms.max(1)
    )))
    .execute(&mut *tx)
    .await
    .context(|| "acquiring the writer lease".into())?;
    let epoch: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE hub_leases SET holder = $1, epoch = epoch + 1, acquired_at_ms = {DB_NOW_MS}, \
         expires_at_ms = {DB_NOW_MS} + $2, http_url = $4 WHERE name = $3 AND expires_at_ms < {DB_NOW_MS} \
         RETURNING epoch"
    )))
    .bind(holder)
    .bind(ttl_ms)
    .bind(WRITER_LEASE)
    .bind(http_url)
    .fetch_optional(&mut *tx)
    .await
    .context(|| "acquiring the writer lease".into())?;
    tx.commit().await.context(|| "acquiring the writer lease".into())?;
    Ok(epoch)
}

/// The fence of one writer transaction, its first statement: renews the lease if `holder`
/// still holds it at `epoch`, and keeps the row locked until COMMIT so no takeover can
/// interleave. Zero rows: the lease was taken over, [`StoreError::Fenced`].
///
/// The session is also told to give up on a transaction left idle for longer than the
/// lease (`idle_in_transaction_session_timeout`): a frozen hub (SIGSTOP, a VM pause) must
/// not hold the row lock, and with it every takeover, forever.
pub async fn fence(conn: &mut Conn, holder: &str, epoch: i64, ttl_ms: i64) -> Result<(), StoreError> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL idle_in_transaction_session_timeout = {}",
        ttl_ms.max(1)
    )))
    .execute(&mut *conn)
    .await
    .context(|| "fencing the writer transaction".into())?;
    let renewed = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE hub_leases SET expires_at_ms = {DB_NOW_MS} + $1 WHERE name = $2 AND holder = $3 AND epoch = $4"
    )))
    .bind(ttl_ms)
    .bind(WRITER_LEASE)
    .bind(holder)
    .bind(epoch)
    .execute(&mut *conn)
    .await
    .context(|| "fencing the writer transaction".into())?
    .rows_affected();
    if renewed == 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced { epoch })
    }
}

/// Gives the lease up (a graceful stop): a standby takes it at its next poll instead of
/// waiting for it to expire.
pub async fn release(pool: &Pool, holder: &str, epoch: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE hub_leases SET expires_at_ms = 0 WHERE name = $1 AND holder = $2 AND epoch = $3")
        .bind(WRITER_LEASE)
        .bind(holder)
        .bind(epoch)
        .execute(pool)
        .await
        .context(|| "releasing the writer lease".into())?;
    Ok(())
}

/// Who holds the lease and at which epoch (for logs and tests).
pub async fn holder(pool: &Pool) -> Result<Option<(String, i64)>, StoreError> {
    sqlx::query_as("SELECT holder, epoch FROM hub_leases WHERE name = $1")
        .bind(WRITER_LEASE)
        .fetch_optional(pool)
        .await
        .context(|| "reading the writer lease".into())
}

/// The hub holding a live lease, if any (a standby's view of where the writer is).
pub async fn active(pool: &Pool) -> Result<Option<crate::cluster::ActiveHub>, StoreError> {
    let row: Option<(String, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT holder, epoch, http_url FROM hub_leases WHERE name = $1 AND expires_at_ms >= {DB_NOW_MS}"
    )))
    .bind(WRITER_LEASE)
    .fetch_optional(pool)
    .await
    .context(|| "reading where the writer is".into())?;
    Ok(row.map(|(holder, epoch, http_url)| crate::cluster::ActiveHub {
        holder,
        epoch,
        http_url,
    }))
}

/// The channel the active hub notifies after each commit that published stream events.
pub const STREAM_CHANNEL: &str = "gatehouse_stream";

/// Writes a transaction's stream events (a JSON array) for the other hubs, inside the writer's
/// fenced transaction, and notifies them: PostgreSQL delivers the notification at COMMIT and
/// drops it on rollback, exactly as the row itself.
pub async fn outbox_append(
    conn: &mut Conn,
    holder: &str,
    epoch: i64,
    at_ms: i64,
    events: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO stream_outbox (holder, epoch, at_ms, events) VALUES ($1, $2, $3, $4)")
        .bind(holder)
        .bind(epoch)
        .bind(at_ms)
        .bind(events)
        .execute(&mut *conn)
        .await
        .context(|| "writing the stream outbox".into())?;
    // The payload names the writer, so its own relay need not look.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(STREAM_CHANNEL)
        .bind(holder)
        .execute(&mut *conn)
        .await
        .context(|| "notifying the other hubs".into())?;
    Ok(())
}

/// One committed transaction's stream events, as the active hub wrote them.
#[derive(Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub holder: String,
    pub events: String,
}

/// The highest outbox id now (0: none): where a hub starting its relay begins.
pub async fn outbox_last(pool: &Pool) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM stream_outbox")
        .fetch_one(pool)
        .await
        .context(|| "reading the stream outbox's last id".into())
}

/// Up to `limit` outbox rows after `after`, oldest first.
pub async fn outbox_after(pool: &Pool, after: i64, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
    sqlx::query_as("SELECT id, holder, events FROM stream_outbox WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await
        .context(|| "reading the stream outbox".into())
}

/// Deletes outbox rows written before `before_ms` (they have long been relayed); how many.
pub async fn outbox_purge(conn: &mut Conn, before_ms: i64) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM stream_outbox WHERE at_ms < $1")
        .bind(before_ms)
        .execute(&mut *conn)
        .await
        .context(|| "purging the stream outbox".into())?
        .rows_affected())
}
