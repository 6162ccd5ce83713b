//! `POST /devices/{id}/maintenance`, `GET /devices/maintenance`: devices in maintenance,
//! whose alarms are suppressed by design while it lasts (ISA-18.2).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiPath, AppState, json_body, text_field};
use crate::alarms::rfc3339;
use crate::engine::Op;

/// Longest maintenance window an operator may give (a week); none means until ended.
const MAX_MINUTES: i64 = 7 * 24 * 60;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceBody {
    estate: Option<String>,
    /// true (default) starts maintenance, false ends it.
    on: Option<bool>,
    reason: Option<String>,
    operator: Option<String>,
    /// How long; absent: until ended by hand.
    minutes: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct MaintenanceJson {
    estate: String,
    device: String,
    reason: String,
    operator: String,
    since: String,
    until: Option<String>,
}

/// `POST /devices/{id}/maintenance` `{"estate", "on"?, "reason", "operator"?, "minutes"?}`.
pub async fn maintenance(
    State(state): State<AppState>,
    ApiPath(device): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Vec<MaintenanceJson>>, ApiError> {
    let body: MaintenanceBody = json_body(body)?;
    let estate = text_field("estate", body.estate, 100, false)?
        .ok_or_else(|| ApiError::bad_request("missing estate", "a device id is unique within its estate"))?;
    if !state.estates.iter().any(|e| e.id == estate) {
        return Err(ApiError::bad_request("unknown estate", estate));
    }
    let on = body.on.unwrap_or(true);
    let reason = text_field("reason", body.reason, 2_000, true)?.unwrap_or_default();
    let operator = text_field("operator", body.operator, 100, false)?.unwrap_or_else(|| "operator".into());
    let until_ms = match body.minutes {
        Some(m) if !(1..=MAX_MINUTES).contains(&m) => {
            return Err(ApiError::bad_request(
                "invalid minutes",
                format!("between 1 and {MAX_MINUTES}"),
            ));
        }
        Some(m) => Some(state.clock.now_ms() + m * 60_000),
        None => None,
    };
    state
        .writer
        .op(Op::Maintenance {
            estate,
            device,
            on,
            reason,
            operator,
            until_ms,
        })
        .await?;
    list(State(state)).await
}

/// `GET /devices/maintenance`: the devices in maintenance now.
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<MaintenanceJson>>, ApiError> {
    let rows = crate::alarms::queries::in_maintenance(&state.pool, state.clock.now_ms()).await?;
    Ok(Json(
        rows.iter()
            .map(|r| MaintenanceJson {
                estate: r.estate_id.clone(),
                device: r.device_id.clone(),
                reason: r.reason.clone(),
                operator: r.operator.clone(),
                since: rfc3339(r.since_ms),
                until: r.until_ms.map(rfc3339),
            })
            .collect(),
    ))
}
