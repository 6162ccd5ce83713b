//! `GET /estates`: the configured estates, their gateways, and how many alarms are active.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::alarms::rfc3339;

#[derive(Debug, Serialize)]
pub struct EstateJson {
    id: String,
    name: String,
    timezone: String,
    active_alarms: i64,
    gateways: Vec<GatewayJson>,
}

#[derive(Debug, Serialize)]
pub struct GatewayJson {
    id: String,
    /// An open GatewayLink stream to this hub process now.
    connected: bool,
    last_seen: Option<String>,
    last_seq: i64,
    software_version: String,
}

/// The estates in the caller's scope only.
pub async fn list(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
) -> Result<Json<Vec<EstateJson>>, ApiError> {
    let visible = crate::api::enforce::visible_estates(&caller.principal, &state.estates);
    let mut gateways: HashMap<String, Vec<GatewayJson>> = HashMap::new();
    for g in crate::events::queries::gateways(&state.pool).await? {
        gateways.entry(g.estate_id).or_default().push(GatewayJson {
            connected: state.links.is_connected(&g.id),
            id: g.id,
            last_seen: g.last_seen_ms.map(rfc3339),
            last_seq: g.last_seq,
            software_version: g.software_version,
        });
    }
    let active: HashMap<String, i64> = crate::alarms::queries::active_alarms_by_estate(&state.pool)
        .await?
        .into_iter()
        .collect();
    Ok(Json(
        state
            .estates
            .iter()
            .filter(|e| visible.contains(&e.id))
            .map(|e| EstateJson {
                id: e.id.clone(),
                name: e.name.clone(),
                timezone: e.timezone.clone(),
                active_alarms: active.get(&e.id).copied().unwrap_or(0),
                gateways: gateways.remove(&e.id).unwrap_or_default(),
            })
            .collect(),
    ))
}
