//! Every SQL statement of the outbox, and the only place that writes its tables (`outbox`,
//! `meta`, `dead_letter`, `sqlite_sequence`). Writes take the connection of a
//! [`super::tx::WriteTx`], taken under the outbox's write lock; reads take the pool.

use sqlx::{SqliteConnection, SqlitePool};

use super::{OutboxError, db};

/// The `meta` key of the highest sequence number the hub acknowledged.
const ACKED_KEY: &str = "acked_through";

pub(super) async fn count(pool: &SqlitePool) -> Result<i64, OutboxError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(pool)
        .await
        .map_err(db("count"))
}

/// The highest sequence number SQLite ever gave an outbox row.
pub(super) async fn last_seq(pool: &SqlitePool) -> Result<Option<i64>, OutboxError> {
    sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
        .fetch_optional(pool)
        .await
        .map_err(db("reading the sequence"))
}

pub(super) async fn acked(pool: &SqlitePool) -> Result<Option<i64>, OutboxError> {
    sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(ACKED_KEY)
        .fetch_optional(pool)
        .await
        .map_err(db("reading the ack"))
}

/// Deletes the oldest `limit` rows of shed class `class`; returns how many went.
pub(super) async fn shed_oldest(conn: &mut SqliteConnection, class: i64, limit: u64) -> Result<u64, OutboxError> {
    let r =
        sqlx::query("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE class = $1 ORDER BY seq LIMIT $2)")
            .bind(class)
            .bind(limit as i64)
            .execute(conn)
            .await
            .map_err(db("shedding"))?;
    Ok(r.rows_affected())
}

/// Appends one encoded event; returns its sequence number.
pub(super) async fn insert(conn: &mut SqliteConnection, class: i64, event: Vec<u8>) -> Result<i64, OutboxError> {
    sqlx::query_scalar("INSERT INTO outbox (class, event) VALUES ($1, $2) RETURNING seq")
        .bind(class)
        .bind(event)
        .fetch_one(conn)
        .await
        .map_err(db("insert"))
}

/// Up to `limit` rows (seq, encoded event) after `after`, in sequence order.
pub(super) async fn read_after(pool: &SqlitePool, after: i64, limit: i64) -> Result<Vec<(i64, Vec<u8>)>, OutboxError> {
    sqlx::query_as("SELECT seq, event FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(db("read"))
}

/// Deletes every row through `seq` and records the ack (which only grows); returns how
/// many rows went.
pub(super) async fn ack_through(conn: &mut SqliteConnection, seq: i64) -> Result<u64, OutboxError> {
    let r = sqlx::query("DELETE FROM outbox WHERE seq <= $1")
        .bind(seq)
        .execute(&mut *conn)
        .await
        .map_err(db("deleting acknowledged"))?;
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)")
        .bind(ACKED_KEY)
        .bind(seq)
        .execute(conn)
        .await
        .map_err(db("recording the ack"))?;
    Ok(r.rows_affected())
}

pub(super) async fn first_pending(pool: &SqlitePool) -> Result<Option<i64>, OutboxError> {
    sqlx::query_scalar("SELECT MIN(seq) FROM outbox")
        .fetch_one(pool)
        .await
        .map_err(db("reading the first pending event"))
}

/// Adds `offset` to every pending row's sequence number, moves the sequence to `moved_to`
/// and sets the ack to `hub_last_seq`.
pub(super) async fn renumber(
    conn: &mut SqliteConnection,
    offset: i64,
    moved_to: i64,
    hub_last_seq: i64,
) -> Result<(), OutboxError> {
    // Two steps through negative keys, so no renumbered row collides with an old one.
    sqlx::query("UPDATE outbox SET seq = -(seq + $1)")
        .bind(offset)
        .execute(&mut *conn)
        .await
        .map_err(db("renumbering"))?;
    sqlx::query("UPDATE outbox SET seq = -seq")
        .execute(&mut *conn)
        .await
        .map_err(db("renumbering"))?;
    // sqlite_sequence has no key: update its row, or add it when no event was ever stored.
    let moved = sqlx::query("UPDATE sqlite_sequence SET seq = $1 WHERE name = 'outbox'")
        .bind(moved_to)
        .execute(&mut *conn)
        .await
        .map_err(db("moving the sequence"))?;
    if moved.rows_affected() == 0 {
        sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', $1)")
            .bind(moved_to)
            .execute(&mut *conn)
            .await
            .map_err(db("moving the sequence"))?;
    }
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(ACKED_KEY)
        .bind(hub_last_seq)
        .execute(conn)
        .await
        .map_err(db("recording the ack"))?;
    Ok(())
}

/// Moves row `seq` into `dead_letter` with `reason`; returns whether there was one.
pub(super) async fn dead_letter(
    conn: &mut SqliteConnection,
    seq: i64,
    reason: &str,
    at_ms: i64,
) -> Result<bool, OutboxError> {
    let moved = sqlx::query(
        "INSERT OR REPLACE INTO dead_letter (seq, event, reason, at_ms) SELECT seq, event, $2, $3 FROM outbox WHERE seq = $1",
    )
    .bind(seq)
    .bind(reason)
    .bind(at_ms)
    .execute(&mut *conn)
    .await
    .map_err(db("setting an event aside"))?;
    sqlx::query("DELETE FROM outbox WHERE seq = $1")
        .bind(seq)
        .execute(conn)
        .await
        .map_err(db("setting an event aside"))?;
    Ok(moved.rows_affected() > 0)
}

/// The events set aside: (seq, reason).
pub(super) async fn dead_letters(pool: &SqlitePool) -> Result<Vec<(i64, String)>, OutboxError> {
    sqlx::query_as("SELECT seq, reason FROM dead_letter ORDER BY seq")
        .fetch_all(pool)
        .await
        .map_err(db("reading the dead letters"))
}
