//! `POST /devices/{id}/commands`, `GET /commands/{id}`, `GET /commands`: an operator's
//! command to a device, and the record of them.
//! The command is checked against its device's kind, recorded through the writer, and only
//! then sent down its gateway's link; a gateway with no stream makes it `gateway_offline`
//! (`actions::send_command`, which the gRPC command centre shares).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, ApiPath, ApiQuery, AppState, json_body, text_field};
use crate::actions::{self, CommandError, CommandRequest};
use crate::auth::Caller;
use crate::commands::queries::{self, CommandFilter};

/// `POST /devices/{id}/commands` `{"estate", "action", "args"?, "operator", "reason"?,
/// "incident"?}`: **202** with the command (its `id`, `state` `sent` or `gateway_offline`).
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(device): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: CommandRequest = json_body(body)?;
    match actions::send_command(
        &state.pool,
        &state.writer,
        &state.links,
        &caller.principal,
        &caller.actor(),
        device,
        body,
    )
    .await
    {
        Ok(row) => Ok((StatusCode::ACCEPTED, Json(row.to_json()))),
        Err(CommandError::Invalid(e)) => Err(e.into()),
        Err(e @ CommandError::UnknownDevice { .. }) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown device",
            e.to_string().into(),
        )),
        Err(CommandError::Action(e)) => Err(e.into()),
        Err(CommandError::Store(e)) => Err(e.into()),
        Err(e @ CommandError::NotStored(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "command not stored",
            e.to_string().into(),
        )),
    }
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
