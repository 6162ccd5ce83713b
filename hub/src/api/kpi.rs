//! `GET /kpi/alarms?hours=`: the ISA-18.2 measures for this command centre (this hub), and
//! the gate house's vehicle-registration ratio per estate.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiQuery, AppState};
use crate::alarms::{Priority, rfc3339};
use crate::store::{Context, StoreError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiQuery {
    hours: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct AlarmKpi {
    command_centre: String,
    from: String,
    to: String,
    hours: i64,
    /// Raises and re-raises in the period.
    alarms: i64,
    alarms_per_10_minutes: f64,
    /// ISA-18.2: about 1 per 10 minutes per operator is acceptable, 2 manageable.
    target_per_10_minutes: f64,
    flood: FloodKpi,
    top_ten: Vec<TopAlarm>,
    standing_over_24h: Standing,
    priority_mix: BTreeMap<String, PriorityShare>,
    vehicle_registration: Vec<VehicleKpi>,
}

#[derive(Debug, Serialize)]
pub struct FloodKpi {
    active: bool,
    since: Option<String>,
    /// Share of the period spent in flood mode (ISA-18.2 target: under 1 %).
    share_of_time: f64,
    target_share: f64,
    periods: usize,
    starts_above: u32,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TopAlarm {
    alarm_id: i64,
    estate: String,
    device: String,
    condition: String,
    priority: String,
    message: String,
    activations: i64,
}

#[derive(Debug, Serialize)]
pub struct Standing {
    count: usize,
    alarm_ids: Vec<i64>,
}

#[derive(Debug, Serialize)]
pub struct PriorityShare {
    count: i64,
    share: f64,
}

#[derive(Debug, Serialize)]
pub struct VehicleKpi {
    estate: String,
    entries: i64,
    registered: i64,
    /// Registered ÷ entries (1.0 when nothing entered).
    ratio: f64,
    /// The practice's target: 100 % of outside vehicles registered.
    target: f64,
    meets_target: bool,
}

fn ctx<T>(r: Result<T, sqlx::Error>, what: &str) -> Result<T, StoreError> {
    r.context(|| what.to_owned())
}

pub async fn alarms(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<KpiQuery>,
) -> Result<Json<AlarmKpi>, ApiError> {
    let hours = q.hours.unwrap_or(24);
    if !(1..=24 * 90).contains(&hours) {
        return Err(ApiError::bad_request(
            "invalid hours",
            "hours must be between 1 and 2160",
        ));
    }
    let now = state.clock.now_ms();
    let from = now - hours * 3_600_000;
    let pool = &state.pool;
    let mix: Vec<(String, i64)> = ctx(
        sqlx::query_as(
            "SELECT a.priority, COUNT(*) FROM alarm_history h JOIN alarms a ON a.id = h.alarm_id \
             WHERE h.at_ms > $1 AND h.at_ms <= $2 AND h.change IN ('raised', 'reraised') GROUP BY a.priority",
        )
        .bind(from)
        .bind(now)
        .fetch_all(pool)
        .await,
        "counting alarms by priority",
    )?;
    let total: i64 = mix.iter().map(|(_, n)| n).sum();
    let mut priority_mix = BTreeMap::new();
    for p in Priority::ALL {
        let count = mix.iter().find(|(x, _)| x == p.as_str()).map_or(0, |(_, n)| *n);
        let share = if total > 0 { count as f64 / total as f64 } else { 0.0 };
        priority_mix.insert(p.as_str().to_owned(), PriorityShare { count, share });
    }
    let top_ten: Vec<TopAlarm> = ctx(
        sqlx::query_as(
            "SELECT a.id AS alarm_id, a.estate_id AS estate, a.device_id AS device, a.condition, a.priority, a.message, \
             COUNT(*) AS activations FROM alarm_history h JOIN alarms a ON a.id = h.alarm_id \
             WHERE h.at_ms > $1 AND h.at_ms <= $2 AND h.change IN ('raised', 'reraised') \
             GROUP BY a.id, a.estate_id, a.device_id, a.condition, a.priority, a.message \
             ORDER BY activations DESC, a.id LIMIT 10",
        )
        .bind(from)
        .bind(now)
        .fetch_all(pool)
        .await,
        "finding the most frequent alarms",
    )?;
    let standing: Vec<i64> = ctx(
        sqlx::query_scalar("SELECT id FROM alarms WHERE active = $1 AND raised_at_ms < $2 ORDER BY id")
            .bind(true)
            .bind(now - 24 * 3_600_000)
            .fetch_all(pool)
            .await,
        "finding standing alarms",
    )?;
    let floods: Vec<(i64, Option<i64>)> = ctx(
        sqlx::query_as("SELECT started_at_ms, ended_at_ms FROM flood_periods WHERE ended_at_ms IS NULL OR ended_at_ms > $1 ORDER BY id")
            .bind(from)
            .fetch_all(pool)
            .await,
        "reading flood periods",
    )?;
    let in_flood: i64 = floods
        .iter()
        .map(|(s, e)| (e.unwrap_or(now).min(now) - (*s).max(from)).max(0))
        .sum();
    let open = floods.iter().find(|(_, e)| e.is_none()).map(|(s, _)| *s);
    let from_day = rfc3339(from)[..10].to_owned();
    let vehicles: Vec<(String, i64, i64)> = ctx(
        sqlx::query_as(
            "SELECT estate_id, SUM(entries), SUM(registered) FROM vehicle_entries WHERE day >= $1 GROUP BY estate_id",
        )
        .bind(from_day)
        .fetch_all(pool)
        .await,
        "counting vehicle entries",
    )?;
    let vehicle_registration = state
        .estates
        .iter()
        .map(|e| {
            let (entries, registered) = vehicles
                .iter()
                .find(|(id, _, _)| id == &e.id)
                .map_or((0, 0), |(_, n, r)| (*n, *r));
            let ratio = if entries > 0 {
                registered as f64 / entries as f64
            } else {
                1.0
            };
            VehicleKpi {
                estate: e.id.clone(),
                entries,
                registered,
                ratio,
                target: 1.0,
                meets_target: registered == entries,
            }
        })
        .collect();
    let period = (now - from) as f64;
    Ok(Json(AlarmKpi {
        command_centre: state.hub_id.clone(),
        from: rfc3339(from),
        to: rfc3339(now),
        hours,
        alarms: total,
        alarms_per_10_minutes: total as f64 / (period / 600_000.0),
        target_per_10_minutes: 1.0,
        flood: FloodKpi {
            active: open.is_some(),
            since: open.map(rfc3339),
            share_of_time: in_flood as f64 / period,
            target_share: 0.01,
            periods: floods.len(),
            starts_above: state.flood_start_above,
        },
        top_ten,
        standing_over_24h: Standing {
            count: standing.len(),
            alarm_ids: standing,
        },
        priority_mix,
        vehicle_registration,
    }))
}
