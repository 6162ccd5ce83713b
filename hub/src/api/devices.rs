//! `POST /devices/{id}/maintenance`, `GET /devices/maintenance`: devices in maintenance,
//! whose alarms are suppressed by design while it lasts (ISA-18.2). `GET /devices`: the
//! devices the hub knows, with their last status and readings; `GET /devices/{id}/points`:
//! a device's point trends. Both read stored events, with the work bounded (see the
//! constants) and a `truncated` flag when a bound was hit.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiPath, ApiQuery, AppState, json_body, text_field};
use crate::alarms::rfc3339;
use crate::auth::Caller;
use crate::engine::Op;
use crate::events::queries as event_q;
use crate::events::readings::{self, Reading};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceBody {
    estate: Option<String>,
    /// true (default) starts maintenance, false ends it.
    on: Option<bool>,
    reason: Option<String>,
    operator: Option<String>,
    /// How long (required to start: maintenance always ends; at most a week).
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
    caller: Caller,
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
    text_field("operator", body.operator, 100, false)?;
    // Who acted is the caller; a name in the body is checked, never recorded.
    let operator = caller.user().to_owned();
    let until_ms = crate::actions::maintenance_until(on, body.minutes, state.clock.now_ms())?;
    state
        .writer
        .op(
            &caller.actor(),
            Op::Maintenance {
                estate,
                device,
                on,
                reason,
                operator,
                until_ms,
            },
        )
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

/// At most this many devices in one `GET /devices`.
const MAX_DEVICES: i64 = 5_000;
/// A device's `online` comes from its newest status event no older than this (a week),
/// which bounds the walk back through a busy device's events.
const STATUS_LOOKBACK_MS: i64 = 7 * 24 * 3_600_000;
/// The last readings shown in `GET /devices` are the newest of this window (gateways
/// refresh every point well within it) …
const LATEST_WINDOW_MS: i64 = 24 * 3_600_000;
/// … and of at most this many point events per estate.
const LATEST_ROWS: i64 = 20_000;
/// `GET /devices/{id}/points`: at most this many readings are read (the newest) …
const TREND_ROWS: i64 = 100_000;
/// … and each point's series is thinned to this many samples.
const MAX_SAMPLES: usize = 720;
const MAX_HOURS: i64 = 168;
const DEFAULT_HOURS: i64 = 6;
/// Set (`true`) on `GET /devices` when a bound left something out.
const TRUNCATED: HeaderName = HeaderName::from_static("x-gatehouse-truncated");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesQuery {
    estate: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PointJson {
    value: f64,
    unit: String,
    quality: &'static str,
    at: String,
}

#[derive(Debug, Serialize)]
pub struct DeviceJson {
    estate: String,
    device: String,
    kind: String,
    area: String,
    gateway: String,
    gateway_connected: bool,
    /// The newest status event's flag; null when none.
    online: Option<bool>,
    last_seen: Option<String>,
    maintenance: bool,
    /// The commands its kind takes (`POST /devices/{id}/commands` `action`).
    actions: &'static [&'static str],
    /// Those of `actions` that need a named `reason` (opening, fire-panel reset/silence).
    reason_required: Vec<&'static str>,
    points: BTreeMap<String, PointJson>,
}

/// A configured estate named by a query (trimmed; empty: none).
fn estate_param(state: &AppState, v: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(e) = v.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if !state.estates.iter().any(|c| c.id == e) {
        return Err(ApiError::bad_request("invalid estate", format!("unknown estate {e:?}")));
    }
    Ok(Some(e.to_owned()))
}

/// `GET /devices?estate=E`: the devices gateways announced, with the newest status, event
/// and reading of each point.
pub async fn registry(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DevicesQuery>,
) -> Result<Response, ApiError> {
    let estate = estate_param(&state, q.estate.as_deref())?;
    let now = state.clock.now_ms();
    let rows = event_q::devices(&state.pool, estate.as_deref(), now - STATUS_LOOKBACK_MS, MAX_DEVICES).await?;
    let mut truncated = rows.len() as i64 >= MAX_DEVICES;
    let maintenance: HashSet<(String, String)> = crate::alarms::queries::in_maintenance(&state.pool, now)
        .await?
        .into_iter()
        .map(|m| (m.estate_id, m.device_id))
        .collect();
    let estates: BTreeMap<&str, ()> = rows.iter().map(|r| (r.estate_id.as_str(), ())).collect();
    let mut latest: HashMap<(String, String), BTreeMap<String, Reading>> = HashMap::new();
    for estate in estates.keys() {
        let points =
            event_q::point_readings(&state.pool, estate, None, now - LATEST_WINDOW_MS, now, LATEST_ROWS).await?;
        truncated |= points.len() as i64 >= LATEST_ROWS;
        let mut by_device: HashMap<String, Vec<Reading>> = HashMap::new();
        for (device, at, payload) in points {
            if let Some(r) = readings::reading(&payload, at) {
                by_device.entry(device).or_default().push(r);
            }
        }
        for (device, newest_first) in by_device {
            latest.insert(((*estate).to_owned(), device), readings::latest(newest_first));
        }
    }
    let devices: Vec<DeviceJson> = rows
        .into_iter()
        .map(|r| {
            let key = (r.estate_id, r.device_id);
            let points = latest
                .get(&key)
                .map(|m| {
                    m.iter()
                        .map(|(p, r)| {
                            (
                                p.clone(),
                                PointJson {
                                    value: r.value,
                                    unit: r.unit.clone(),
                                    quality: r.quality,
                                    at: rfc3339(r.at_ms),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            DeviceJson {
                maintenance: maintenance.contains(&key),
                online: r.status_payload.as_deref().and_then(readings::online),
                last_seen: r.last_seen_ms.map(rfc3339),
                estate: key.0,
                device: key.1,
                actions: crate::commands::model::actions(&r.kind),
                reason_required: crate::commands::model::actions(&r.kind)
                    .iter()
                    .copied()
                    .filter(|a| crate::actions::needs_reason(&r.kind, a))
                    .collect(),
                kind: r.kind,
                area: r.area,
                gateway: r.gateway_id,
                gateway_connected: r.gateway_connected,
                points,
            }
        })
        .collect();
    let mut response = Json(devices).into_response();
    if truncated {
        response
            .headers_mut()
            .insert(TRUNCATED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsQuery {
    estate: Option<String>,
    hours: Option<i64>,
    point: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SeriesJson {
    unit: String,
    /// `[unix seconds, value]`, oldest first.
    samples: Vec<(f64, f64)>,
}

#[derive(Debug, Serialize)]
pub struct PointsJson {
    estate: String,
    device: String,
    from: String,
    to: String,
    /// More than the row bound fell in the window: its oldest part is missing.
    truncated: bool,
    points: BTreeMap<String, SeriesJson>,
}

/// `GET /devices/{id}/points?estate=E&hours=H&point=P`: each point's readings over the
/// last `hours`, thinned to at most 720 samples (the last value of each equal bucket).
pub async fn points(
    State(state): State<AppState>,
    ApiPath(device): ApiPath<String>,
    ApiQuery(q): ApiQuery<PointsQuery>,
) -> Result<Json<PointsJson>, ApiError> {
    let estate = estate_param(&state, q.estate.as_deref())?
        .ok_or_else(|| ApiError::bad_request("missing estate", "a device id is unique within its estate"))?;
    let hours = q.hours.unwrap_or(DEFAULT_HOURS);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(ApiError::bad_request(
            "invalid hours",
            format!("between 1 and {MAX_HOURS}"),
        ));
    }
    let point = text_field("point", q.point, 200, false)?;
    if !event_q::device_known(&state.pool, &estate, &device).await? {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not found",
            serde_json::Value::String(format!("no device {device:?} in estate {estate:?}")),
        ));
    }
    let to = state.clock.now_ms();
    let from = to - hours * 3_600_000;
    let rows = event_q::point_readings(&state.pool, &estate, Some(&device), from, to, TREND_ROWS).await?;
    let truncated = rows.len() as i64 >= TREND_ROWS;
    let oldest_first = rows
        .iter()
        .rev()
        .filter_map(|(_, at, payload)| readings::reading(payload, *at));
    let series = readings::series(oldest_first, point.as_deref(), from, to, MAX_SAMPLES);
    Ok(Json(PointsJson {
        estate,
        device,
        from: rfc3339(from),
        to: rfc3339(to),
        truncated,
        points: series
            .into_iter()
            .map(|(p, s)| {
                (
                    p,
                    SeriesJson {
                        unit: s.unit,
                        samples: s.samples.into_iter().map(|(at, v)| (at as f64 / 1000.0, v)).collect(),
                    },
                )
            })
            .collect(),
    }))
}
