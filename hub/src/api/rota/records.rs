//! Patrols, handover sheets, notes and attendance: the records the guards leave.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::{ApiError, ApiPath, ApiQuery, AppState, json_body, text_field};
use super::{MAX_NAME, MAX_NOTE, actor, estate_filter, rota};
use crate::alarms::rfc3339;
use crate::auth::Caller;
use crate::engine::Op;
use crate::rota::{RotaOp, handover, queries};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatrolQuery {
    estate: Option<String>,
    route: Option<String>,
    hours: Option<i64>,
    limit: Option<i64>,
}

/// `GET /rota/patrols?estate=&route=&hours=24`: tours with their scans (times to the minute),
/// findings, actions and who.
pub async fn patrols(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PatrolQuery>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let estate = estate_filter(&state, &q.estate)?;
    let hours = q.hours.unwrap_or(24).clamp(1, 24 * 90);
    let since = state.clock.now_ms() - hours * 3_600_000;
    let tours = queries::list_tours(
        &state.pool,
        estate.as_deref(),
        q.route.as_deref(),
        since,
        q.limit.unwrap_or(200).clamp(1, 5000),
    )
    .await?;
    // Times to the minute, as the practice records them.
    let minute = |ms: i64| rfc3339(ms - ms.rem_euclid(60_000));
    let mut out = Vec::with_capacity(tours.len());
    for t in tours {
        let scans = queries::list_scans(&state.pool, t.id).await?;
        out.push(json!({
            "id": t.id, "route": t.route, "estate": t.estate, "started_at": minute(t.started_at),
            "route_order": serde_json::from_str::<Value>(&t.checkpoints).unwrap_or(Value::Null),
            "status": t.status, "guard": t.guard, "ended_at": t.ended_at.map(minute),
            "findings": t.findings, "actions": t.actions, "recorded_by": t.recorded_by,
            "scans": scans.iter().map(|s| json!({"checkpoint": s.checkpoint, "position": s.position, "expected_at": minute(s.expected_at),
                "scanned_at": minute(s.scanned_at), "guard": s.guard, "late_min": s.late_min})).collect::<Vec<_>>(),
        }));
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatrolRecordBody {
    findings: Option<String>,
    actions: Option<String>,
    by: Option<String>,
}

/// `POST /rota/patrols/{id}/record` `{"findings","actions","by"}`.
pub async fn patrol_record(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let b: PatrolRecordBody = json_body(body)?;
    let by =
        text_field("by", b.by, MAX_NAME, false)?.ok_or_else(|| ApiError::bad_request("by is required", Value::Null))?;
    state
        .writer
        .op(
            &caller.actor(),
            Op::Rota(RotaOp::PatrolRecord {
                tour: id,
                findings: text_field("findings", b.findings, MAX_NOTE, true)?,
                actions: text_field("actions", b.actions, MAX_NOTE, true)?,
                by,
            }),
        )
        .await?;
    Ok(Json(json!({"id": id, "recorded": true})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoverQuery {
    estate: Option<String>,
    unacknowledged: Option<bool>,
    limit: Option<i64>,
}

/// `GET /rota/handovers?estate=&unacknowledged=true`.
pub async fn handovers(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<HandoverQuery>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let estate = estate_filter(&state, &q.estate)?;
    let rows = queries::list_handovers(
        &state.pool,
        estate.as_deref(),
        q.unacknowledged.unwrap_or(false),
        q.limit.unwrap_or(200).clamp(1, 5000),
    )
    .await?;
    Ok(Json(Value::Array(rows.iter().map(handover::to_json).collect())))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoverAckBody {
    guard: String,
}

/// `POST /rota/handovers/{id}/ack` `{"guard"}`.
pub async fn handover_ack(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let b: HandoverAckBody = json_body(body)?;
    let guard = text_field("guard", Some(b.guard), MAX_NAME, false)?
        .ok_or_else(|| ApiError::bad_request("guard is required", Value::Null))?;
    // A guard acknowledges their own handover only.
    if caller.principal.role == crate::auth::Role::Guard && caller.principal.guard_id.as_deref() != Some(&guard) {
        return Err(crate::api::enforce::forbidden(
            "a guard acknowledges their own handover only",
        ));
    }
    state
        .writer
        .op(
            &caller.actor(),
            Op::Rota(RotaOp::HandoverAck {
                id,
                guard: guard.clone(),
            }),
        )
        .await?;
    Ok(Json(json!({"id": id, "acked_by": guard})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    post: String,
    text: String,
    author: Option<String>,
}

/// `POST /rota/notes` `{"post","text","author"}`: a note for the post's next handover sheet.
pub async fn note(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    rota(&state)?;
    let b: NoteBody = json_body(body)?;
    let text = text_field("text", Some(b.text), MAX_NOTE, true)?
        .ok_or_else(|| ApiError::bad_request("text is required", Value::Null))?;
    let id = state
        .writer
        .op(
            &caller.actor(),
            Op::Rota(RotaOp::Note {
                post: b.post,
                text,
                author: actor(b.author, &caller)?,
            }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursQuery {
    estate: Option<String>,
    hours: Option<i64>,
}

/// `GET /rota/attendance?estate=&hours=`: late clock-ins and early clock-outs.
pub async fn attendance(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<HoursQuery>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let estate = estate_filter(&state, &q.estate)?;
    let since = state.clock.now_ms() - q.hours.unwrap_or(24 * 7).clamp(1, 24 * 90) * 3_600_000;
    let rows = queries::list_attendance(&state.pool, estate.as_deref(), since).await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|r| json!({"guard": r.guard, "post": r.post, "estate": r.estate, "shift_start": rfc3339(r.shift_start), "kind": r.kind, "minutes": r.minutes, "at": rfc3339(r.at)}))
            .collect(),
    )))
}
