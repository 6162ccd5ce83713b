//! Reads of the rota's tables for the API (the writer alone writes them).

use serde_json::{Value, json};

use crate::alarms::rfc3339;
use crate::store::{Context, Pool, StoreError};

fn q<T>(r: Result<T, sqlx::Error>, what: &str) -> Result<T, StoreError> {
    r.context(|| what.to_owned())
}

pub type HandoverRow = (i64, String, String, i64, i64, String, Option<String>, Option<i64>);

pub async fn handovers(
    pool: &Pool,
    estate: Option<&str>,
    unacknowledged: bool,
    limit: i64,
) -> Result<Vec<Value>, StoreError> {
    let rows: Vec<HandoverRow> = q(
        sqlx::query_as(
            "SELECT id, estate_id, post_id, shift_start_ms, created_at_ms, sheet, acked_by, acked_at_ms FROM rota_handovers \
             WHERE ($1 IS NULL OR estate_id = $1) AND ($2 = FALSE OR acked_by IS NULL) ORDER BY id DESC LIMIT $3",
        )
        .bind(estate)
        .bind(unacknowledged)
        .bind(limit)
        .fetch_all(pool)
        .await,
        "listing handovers",
    )?;
    Ok(rows.iter().map(super::handover::to_json).collect())
}

type TourRow = (
    i64,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub async fn patrols(
    pool: &Pool,
    estate: Option<&str>,
    route: Option<&str>,
    since_ms: i64,
    limit: i64,
) -> Result<Vec<Value>, StoreError> {
    let tours: Vec<TourRow> = q(
        sqlx::query_as(
            "SELECT id, route_id, estate_id, started_at_ms, checkpoints, status, guard_id, ended_at_ms, findings, actions, recorded_by \
             FROM rota_patrol_tours WHERE ($1 IS NULL OR estate_id = $1) AND ($2 IS NULL OR route_id = $2) \
             AND started_at_ms >= $3 ORDER BY started_at_ms DESC, id DESC LIMIT $4",
        )
        .bind(estate)
        .bind(route)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(pool)
        .await,
        "listing patrol tours",
    )?;
    let mut out = Vec::with_capacity(tours.len());
    for t in tours {
        let scans: Vec<(String, i64, i64, i64, Option<String>, i64)> = q(
            sqlx::query_as(
                "SELECT checkpoint, position, expected_at_ms, scanned_at_ms, guard_id, late_min FROM rota_patrol_scans \
                 WHERE tour_id = $1 ORDER BY scanned_at_ms, id",
            )
            .bind(t.0)
            .fetch_all(pool)
            .await,
            "listing patrol scans",
        )?;
        // Times to the minute, as the practice records them.
        let minute = |ms: i64| rfc3339(ms - ms.rem_euclid(60_000));
        out.push(json!({
            "id": t.0, "route": t.1, "estate": t.2, "started_at": minute(t.3),
            "route_order": serde_json::from_str::<Value>(&t.4).unwrap_or(Value::Null),
            "status": t.5, "guard": t.6, "ended_at": t.7.map(minute),
            "findings": t.8, "actions": t.9, "recorded_by": t.10,
            "scans": scans.iter().map(|s| json!({"checkpoint": s.0, "position": s.1, "expected_at": minute(s.2),
                "scanned_at": minute(s.3), "guard": s.4, "late_min": s.5})).collect::<Vec<_>>(),
        }));
    }
    Ok(out)
}

pub async fn attendance(pool: &Pool, estate: Option<&str>, since_ms: i64) -> Result<Vec<Value>, StoreError> {
    let rows: Vec<(String, String, String, i64, String, i64, i64)> = q(
        sqlx::query_as(
            "SELECT guard_id, post_id, estate_id, shift_start_ms, kind, minutes, at_ms FROM rota_attendance \
             WHERE ($1 IS NULL OR estate_id = $1) AND at_ms >= $2 ORDER BY at_ms DESC LIMIT 1000",
        )
        .bind(estate)
        .bind(since_ms)
        .fetch_all(pool)
        .await,
        "listing attendance",
    )?;
    Ok(rows
        .iter()
        .map(|r| json!({"guard": r.0, "post": r.1, "estate": r.2, "shift_start": rfc3339(r.3), "kind": r.4, "minutes": r.5, "at": rfc3339(r.6)}))
        .collect())
}

/// Gaps of the ledger that overlap `[from, to)`: (estate, post, opened, closed or None).
pub async fn gap_periods(
    pool: &Pool,
    from: i64,
    to: i64,
) -> Result<Vec<(String, String, i64, Option<i64>)>, StoreError> {
    q(
        sqlx::query_as(
            "SELECT estate_id, post_id, opened_at_ms, closed_at_ms FROM rota_gaps \
             WHERE opened_at_ms < $2 AND (closed_at_ms IS NULL OR closed_at_ms > $1)",
        )
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await,
        "reading gap periods",
    )
}

/// Finished patrol tours since `from`: (status, count).
pub async fn tour_outcomes(pool: &Pool, from: i64) -> Result<Vec<(String, i64)>, StoreError> {
    q(
        sqlx::query_as(
            "SELECT status, COUNT(*) FROM rota_patrol_tours WHERE started_at_ms >= $1 AND status != 'running' GROUP BY status",
        )
        .bind(from)
        .fetch_all(pool)
        .await,
        "reading patrol outcomes",
    )
}
