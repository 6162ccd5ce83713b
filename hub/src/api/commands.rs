//! `POST /devices/{id}/commands`, `GET /commands/{id}`, `GET /commands`: an operator's
//! command to a device, and the record of them.
//! The command is checked against its device's kind, recorded through the writer, and only
//! then sent down its gateway's link; a gateway with no stream makes it `gateway_offline`.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use gatehouse_proto::Command;
use serde::Deserialize;
use serde_json::Value;
use tracing::warn;

use super::{ApiError, ApiPath, ApiQuery, AppState, json_body, text_field};
use crate::commands::NewCommand;
use crate::commands::model;
use crate::commands::queries::{self, CommandFilter};
use crate::engine::Op;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    estate: Option<String>,
    action: Option<String>,
    args: Option<BTreeMap<String, String>>,
    operator: Option<String>,
    reason: Option<String>,
    incident: Option<i64>,
}

fn unprocessable(error: &str, detail: impl Into<Value>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error, detail.into())
}

/// `POST /devices/{id}/commands` `{"estate", "action", "args"?, "operator", "reason"?,
/// "incident"?}`: **202** with the command (its `id`, `state` `sent` or `gateway_offline`).
pub async fn send(
    State(state): State<AppState>,
    ApiPath(device): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: CommandBody = json_body(body)?;
    let estate = text_field("estate", body.estate, 100, false)?
        .ok_or_else(|| unprocessable("missing estate", "a device id is unique within its estate"))?;
    let action = text_field("action", body.action, 64, false)?
        .ok_or_else(|| unprocessable("missing action", "e.g. unlock, release, reset, silence, write"))?;
    let operator = text_field("operator", body.operator, 100, false)?
        .ok_or_else(|| unprocessable("missing operator", "who asks for the command"))?;
    let reason = text_field("reason", body.reason, 2_000, true)?;
    let args = body.args.unwrap_or_default();
    let Some((gateway, kind)) = queries::find_device(&state.pool, &estate, &device).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown device",
            format!("no gateway of estate {estate} announced device {device}").into(),
        ));
    };
    model::check(&kind, &action, &args)
        .map_err(|e| unprocessable("action not valid for this device", e.to_string()))?;
    let args_json = serde_json::to_string(&args).unwrap_or_else(|_| "{}".into());
    let id = state
        .writer
        .op(Op::Command(NewCommand {
            estate_id: estate,
            gateway_id: gateway.clone(),
            device_id: device.clone(),
            device_kind: kind,
            action: action.clone(),
            args: args_json,
            operator,
            reason,
            incident_id: body.incident,
        }))
        .await?;
    let row = queries::find(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "command not stored", Value::Null))?;
    // Sent only now that the record is committed, so its result always finds it.
    let command = Command {
        command_id: model::wire_id(id),
        device_id: device,
        action,
        arguments: args.into_iter().collect(),
        deadline_ms: row.deadline_ms,
    };
    if let Err(e) = state.links.send_command(&gateway, command).await {
        warn!(command = id, gateway = %gateway, error = %e, "command not sent");
        state
            .writer
            .op(Op::CommandUndelivered {
                id,
                detail: e.to_string(),
            })
            .await?;
    }
    let row = queries::find(&state.pool, id).await?.unwrap_or(row);
    Ok((StatusCode::ACCEPTED, Json(row.to_json())))
}

/// `GET /commands/{id}`: the command as stored, the same object the stream's `command`
/// events carry.
pub async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<Value>, ApiError> {
    match queries::find(&state.pool, id).await? {
        Some(row) => Ok(Json(row.to_json())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not found",
            format!("command {id}").into(),
        )),
    }
}

/// Most commands one `GET /commands` lists.
const MAX_LIMIT: i64 = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    estate: Option<String>,
    device: Option<String>,
    incident: Option<i64>,
    limit: Option<i64>,
}

/// `GET /commands?estate=&device=&incident=&limit=` (100, ≤ 1000): newest first.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let filter = CommandFilter {
        estate: text_field("estate", query.estate, 100, false)?,
        device: text_field("device", query.device, 200, false)?,
        incident: query.incident,
        limit,
    };
    let rows = queries::list(&state.pool, &filter).await?;
    Ok(Json(rows.iter().map(queries::CommandRow::to_json).collect()))
}
