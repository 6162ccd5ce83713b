//! The weekly plan: solved on a blocking thread from a committed snapshot, published (if
//! asked) as a bulk action.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::{ApiError, AppState, json_body};
use super::assignments::apply_bulk;
use super::{actor, rota};
use crate::auth::Caller;
use crate::rota::model::{RotaModel, days_from_epoch, monday_of};
use crate::rota::{bulk, plan};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    /// Estates of the region (default: every estate with posts).
    #[serde(default)]
    estates: Vec<String>,
    /// Any date of the week (local); default: next week.
    week: Option<NaiveDate>,
    /// Local search budget in moves (default: by the week's size, see
    /// `plan::default_moves`; at most `plan::MAX_MOVES`). With the seed, it decides the plan.
    moves: Option<u64>,
    /// A cap on the local search's time (default and at most 30000); a run it cuts short
    /// answers `"cut_short": true`.
    time_budget_ms: Option<u64>,
    seed: Option<u64>,
    /// Start from the published rota (default true: minimal changes).
    keep_published: Option<bool>,
    /// Replace the week's assignments with the plan.
    #[serde(default)]
    publish: bool,
    operator: Option<String>,
}

/// `POST /rota/plan`.
pub async fn plan(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let r = rota(&state)?;
    let b: PlanBody = json_body(body)?;
    for e in &b.estates {
        if !r.model.posts.iter().any(|p| &p.estate == e) {
            return Err(ApiError::bad_request(
                "unknown estate or estate without posts",
                Value::String(e.clone()),
            ));
        }
    }
    let now = state.clock.now_ms();
    let m: Arc<RotaModel> = r.model.clone();
    let first_estate = b
        .estates
        .first()
        .cloned()
        .or_else(|| m.posts.first().map(|p| p.estate.clone()))
        .unwrap_or_default();
    let week = b
        .week
        .unwrap_or_else(|| m.local_date(&first_estate, now) + chrono::Days::new(7));
    let req = plan::Request {
        estates: b.estates.clone(),
        week_start: monday_of(week),
        moves: b.moves.map(|n| n.min(plan::MAX_MOVES)),
        time_budget_ms: b.time_budget_ms.unwrap_or(30_000).min(30_000),
        seed: b.seed.unwrap_or((days_from_epoch(week) as u64).wrapping_mul(0x9E37)),
        keep_published: b.keep_published.unwrap_or(true),
    };
    let live = r.live();
    let p = tokio::task::spawn_blocking(move || plan::plan(&m, &live, &req, now))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "planner failed",
                Value::String(e.to_string()),
            )
        })?;
    let mut v = serde_json::to_value(&p).unwrap_or(Value::Null);
    if b.publish {
        let assignments: Vec<(String, String)> = p
            .assignments
            .iter()
            .filter_map(|a| a.guard.clone().map(|g| (a.slot.clone(), g)))
            .collect();
        let changes = bulk::plan_publish(&r.model, &p.slot_keys, &assignments).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the plan names an unknown slot or guard",
                Value::String(e),
            )
        })?;
        let done = apply_bulk(
            &state,
            &r,
            changes,
            "plan",
            (caller.actor(), actor(b.operator, &caller)?),
            0,
        )
        .await?;
        v["published"] =
            json!({"added": done.added, "removed": done.removed, "slots": done.slots, "slices": done.slices});
    }
    Ok(Json(v))
}
