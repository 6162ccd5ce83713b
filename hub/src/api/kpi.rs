//! `GET /kpi/alarms?hours=`: the ISA-18.2 measures for this command centre (this hub), and
//! the gate house's vehicle-registration ratio per estate.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiQuery, AppState};
use crate::alarms::queries::{self as alarm_q, TopAlarm};
use crate::alarms::{Priority, rfc3339};

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
    let mix = alarm_q::raises_by_priority(pool, from, now).await?;
    let total: i64 = mix.iter().map(|(_, n)| n).sum();
    let mut priority_mix = BTreeMap::new();
    for p in Priority::ALL {
        let count = mix.iter().find(|(x, _)| x == p.as_str()).map_or(0, |(_, n)| *n);
        let share = if total > 0 { count as f64 / total as f64 } else { 0.0 };
        priority_mix.insert(p.as_str().to_owned(), PriorityShare { count, share });
    }
    let top_ten = alarm_q::top_ten(pool, from, now).await?;
    let standing = alarm_q::standing_since(pool, now - 24 * 3_600_000).await?;
    let floods = alarm_q::floods_since(pool, from).await?;
    let in_flood: i64 = floods
        .iter()
        .map(|(s, e)| (e.unwrap_or(now).min(now) - (*s).max(from)).max(0))
        .sum();
    let open = floods.iter().find(|(_, e)| e.is_none()).map(|(s, _)| *s);
    let from_day = rfc3339(from)[..10].to_owned();
    let vehicles = crate::events::queries::vehicle_entries_since(pool, &from_day).await?;
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
