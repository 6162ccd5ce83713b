//! Retention of the histories other than events (`[retention] alarms_days`,
//! `incidents_days`, `rota_days`): a chunk of at most `purge_batch` rows per history per
//! writer tick, inside the writer's transaction, so ingest never waits long behind a purge.
//! The audit log is kept (its hash chain starts at its first row).

pub mod queries;

use std::time::{Duration, Instant};

use super::retention::RetentionSettings;
use crate::store::{Conn, StoreError};

/// One tick's purge of each history past its days: (history, rows, time taken) for those
/// that deleted something.
pub async fn histories(
    conn: &mut Conn,
    retention: &RetentionSettings,
    now_ms: i64,
) -> Result<Vec<(&'static str, u64, Duration)>, StoreError> {
    let limit = i64::from(retention.purge_batch);
    let mut out = Vec::new();
    if let Some(cutoff) = retention.alarms_cutoff(now_ms) {
        let began = Instant::now();
        let n = queries::alarm_history(conn, cutoff, limit).await?;
        if n > 0 {
            out.push(("alarm_history", n, began.elapsed()));
        }
    }
    if let Some(cutoff) = retention.incidents_cutoff(now_ms) {
        let began = Instant::now();
        let n = queries::incidents(conn, cutoff, limit).await?;
        if n > 0 {
            out.push(("incidents", n, began.elapsed()));
        }
    }
    if let Some(cutoff) = retention.rota_cutoff(now_ms) {
        let began = Instant::now();
        let n = queries::rota(conn, cutoff, limit).await?;
        if n > 0 {
            out.push(("rota", n, began.elapsed()));
        }
    }
    Ok(out)
}
