//! Chunked retention deletes of the histories other than events: each statement deletes at
//! most `limit` rows, oldest first, through an index on its time column, so one call is a
//! short write whatever the table's size.

use crate::store::{Conn, Context, StoreError};

/// Deletes up to `limit` rows of `table` whose `time` column is before `cutoff_ms`. `table`
/// and `time` are constants of this module's callers, never input.
async fn chunk(conn: &mut Conn, table: &str, time: &str, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> {
    let mut q = crate::store::Sql::new(format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {time} < "
    ));
    q.push_bind(cutoff_ms)
        .push(format!(" ORDER BY {time} LIMIT "))
        .push_bind(limit)
        .push(")");
    q.build()
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected())
        .context(|| format!("purging {table} past its retention"))
}

/// Alarm history rows before `cutoff_ms`.
pub async fn alarm_history(conn: &mut Conn, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> {
    chunk(conn, "alarm_history", "at_ms", cutoff_ms, limit).await
}

/// Rota history before `cutoff_ms`: presence log, attendance, closed gaps.
pub async fn rota(conn: &mut Conn, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> {
    let mut n = chunk(conn, "rota_presence_log", "at_ms", cutoff_ms, limit).await?;
    n += chunk(conn, "rota_attendance", "at_ms", cutoff_ms, limit).await?;
    n += sqlx::query(
        "DELETE FROM rota_gaps WHERE id IN (SELECT id FROM rota_gaps \
         WHERE closed_at_ms IS NOT NULL AND closed_at_ms < $1 ORDER BY closed_at_ms LIMIT $2)",
    )
    .bind(cutoff_ms)
    .bind(limit)
    .execute(&mut *conn)
    .await
    .map(|r| r.rows_affected())
    .context(|| "purging rota gaps past their retention".into())?;
    Ok(n)
}

/// Incidents closed before `cutoff_ms`, at most `limit`, with their alarms' links, steps
/// and timeline; returns the rows deleted.
pub async fn incidents(conn: &mut Conn, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM incidents WHERE closed_at_ms IS NOT NULL AND closed_at_ms < $1 \
         ORDER BY closed_at_ms LIMIT $2",
    )
    .bind(cutoff_ms)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context(|| "finding incidents past their retention".into())?;
    if ids.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    for table in ["incident_timeline", "incident_steps", "incident_alarms", "incidents"] {
        let column = if table == "incidents" { "id" } else { "incident_id" };
        let mut q = crate::store::Sql::new(format!("DELETE FROM {table} WHERE {column} IN ("));
        q.push_list(ids.iter().copied()).push(")");
        n += q
            .build()
            .execute(&mut *conn)
            .await
            .map(|r| r.rows_affected())
            .context(|| format!("purging {table} past its retention"))?;
    }
    Ok(n)
}
