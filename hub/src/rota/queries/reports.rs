//! The rota's reports for the API (patrol tours, attendance, KPIs): reads only, split from
//! [`super`] for length. Every rota statement is still under `rota/queries`.

use super::q;
use crate::store::{Pool, StoreError};

/// A patrol tour as the API lists it.
#[derive(sqlx::FromRow)]
pub struct TourRow {
    pub id: i64,
    #[sqlx(rename = "route_id")]
    pub route: String,
    #[sqlx(rename = "estate_id")]
    pub estate: String,
    #[sqlx(rename = "started_at_ms")]
    pub started_at: i64,
    /// The checkpoint order as JSON text.
    pub checkpoints: String,
    pub status: String,
    #[sqlx(rename = "guard_id")]
    pub guard: Option<String>,
    #[sqlx(rename = "ended_at_ms")]
    pub ended_at: Option<i64>,
    pub findings: Option<String>,
    pub actions: Option<String>,
    pub recorded_by: Option<String>,
}

/// Tours started since `since` (of an estate, a route), newest first.
pub async fn list_tours(
    pool: &Pool,
    estate: Option<&str>,
    route: Option<&str>,
    since: i64,
    limit: i64,
) -> Result<Vec<TourRow>, StoreError> {
    q(
        sqlx::query_as(
            "SELECT id, route_id, estate_id, started_at_ms, checkpoints, status, guard_id, ended_at_ms, findings, actions, recorded_by \
             FROM rota_patrol_tours WHERE ($1 IS NULL OR estate_id = $1) AND ($2 IS NULL OR route_id = $2) \
             AND started_at_ms >= $3 ORDER BY started_at_ms DESC, id DESC LIMIT $4",
        )
        .bind(estate)
        .bind(route)
        .bind(since)
        .bind(limit)
        .fetch_all(pool)
        .await,
        "listing patrol tours",
    )
}

/// A scan as the API lists it.
#[derive(sqlx::FromRow)]
pub struct ScanRow {
    pub checkpoint: String,
    pub position: i64,
    #[sqlx(rename = "expected_at_ms")]
    pub expected_at: i64,
    #[sqlx(rename = "scanned_at_ms")]
    pub scanned_at: i64,
    #[sqlx(rename = "guard_id")]
    pub guard: Option<String>,
    pub late_min: i64,
}

/// A tour's scans in the order they were made.
pub async fn list_scans(pool: &Pool, tour: i64) -> Result<Vec<ScanRow>, StoreError> {
    q(
        sqlx::query_as(
            "SELECT checkpoint, position, expected_at_ms, scanned_at_ms, guard_id, late_min FROM rota_patrol_scans \
             WHERE tour_id = $1 ORDER BY scanned_at_ms, id",
        )
        .bind(tour)
        .fetch_all(pool)
        .await,
        "listing patrol scans",
    )
}

/// A late clock-in or early clock-out as the API lists it.
#[derive(sqlx::FromRow)]
pub struct AttendanceRow {
    #[sqlx(rename = "guard_id")]
    pub guard: String,
    #[sqlx(rename = "post_id")]
    pub post: String,
    #[sqlx(rename = "estate_id")]
    pub estate: String,
    #[sqlx(rename = "shift_start_ms")]
    pub shift_start: i64,
    pub kind: String,
    pub minutes: i64,
    #[sqlx(rename = "at_ms")]
    pub at: i64,
}

/// Since `since`, newest first, at most 1,000.
pub async fn list_attendance(pool: &Pool, estate: Option<&str>, since: i64) -> Result<Vec<AttendanceRow>, StoreError> {
    q(
        sqlx::query_as(
            "SELECT guard_id, post_id, estate_id, shift_start_ms, kind, minutes, at_ms FROM rota_attendance \
             WHERE ($1 IS NULL OR estate_id = $1) AND at_ms >= $2 ORDER BY at_ms DESC LIMIT 1000",
        )
        .bind(estate)
        .bind(since)
        .fetch_all(pool)
        .await,
        "listing attendance",
    )
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
