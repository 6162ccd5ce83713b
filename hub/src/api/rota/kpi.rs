//! `GET /kpi/coverage`: post-hours covered, gaps by estate, patrols on time, fairness.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::{ApiError, ApiQuery, AppState};
use super::rota;
use crate::rota::queries;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiQuery {
    hours: Option<i64>,
}

/// `GET /kpi/coverage?hours=24`: share of post-hours covered (the ledger's gaps against the
/// post-hours required), gaps by estate, patrols on time, and the fairness spread (the
/// range of guards' rolling four-week hours).
pub async fn kpi(State(state): State<AppState>, ApiQuery(q): ApiQuery<KpiQuery>) -> Result<Json<Value>, ApiError> {
    let r = rota(&state)?;
    let m = &r.model;
    let hours = q.hours.unwrap_or(24).clamp(1, 24 * 90);
    let now = state.clock.now_ms();
    let from = now - hours * 3_600_000;
    // Required post-hours: each post's shifts overlapping the window × headcount.
    let mut required_h = 0.0;
    for p in &m.posts {
        let mut t = from;
        while t < now {
            match m.slot_at(p, t) {
                Some(s) => {
                    let end = s.end_ms.min(now);
                    required_h += (end - t) as f64 / 3_600_000.0 * f64::from(p.required());
                    t = end;
                }
                None => match m.next_slot(p, t) {
                    Some(s) => t = s.start_ms,
                    None => break,
                },
            }
        }
    }
    let gaps = queries::gap_periods(&state.pool, from, now).await?;
    let mut uncovered_h = 0.0;
    let mut by_estate: std::collections::BTreeMap<String, (i64, f64)> = std::collections::BTreeMap::new();
    for (estate, _post, opened, closed) in &gaps {
        let h = (closed.unwrap_or(now).min(now) - opened.max(&from)) as f64 / 3_600_000.0;
        uncovered_h += h.max(0.0);
        let e = by_estate.entry(estate.clone()).or_default();
        e.0 += 1;
        e.1 += h.max(0.0);
    }
    let tours = queries::tour_outcomes(&state.pool, from).await?;
    let finished: i64 = tours.iter().map(|t| t.1).sum();
    let on_time: i64 = tours.iter().filter(|t| t.0 == "on_time").map(|t| t.1).sum();
    let live = r.live();
    let recent = live.recent(m, now);
    let hours_by_guard: Vec<f64> = m
        .guards
        .iter()
        .filter(|g| !g.floating)
        .map(|g| recent.get(&g.id).map_or(0.0, |x| x.hours))
        .collect();
    let spread = match (
        hours_by_guard.iter().cloned().reduce(f64::max),
        hours_by_guard.iter().cloned().reduce(f64::min),
    ) {
        (Some(a), Some(b)) => a - b,
        _ => 0.0,
    };
    let round = |x: f64| (x * 10.0).round() / 10.0;
    Ok(Json(json!({
        "window_hours": hours,
        "post_hours_required": round(required_h),
        // A gap is counted as the whole post uncovered for its duration (a lower bound on
        // the share covered when a post of two is one short).
        "post_hours_uncovered": round(uncovered_h),
        "coverage_share": if required_h > 0.0 { ((1.0 - uncovered_h / required_h).max(0.0) * 10_000.0).round() / 10_000.0 } else { 1.0 },
        "gaps_by_estate": by_estate.iter().map(|(e, (n, h))| json!({"estate": e, "gaps": n, "hours": round(*h)})).collect::<Vec<_>>(),
        "patrols": {"finished": finished, "on_time": on_time,
                    "on_time_share": if finished > 0 { on_time as f64 / finished as f64 } else { 1.0 },
                    "by_outcome": tours.iter().map(|t| json!({"outcome": t.0, "tours": t.1})).collect::<Vec<_>>()},
        "fairness": {"hours_spread_4w": round(spread),
                     "hours_max_4w": round(hours_by_guard.iter().cloned().fold(0.0, f64::max))},
    })))
}
