//! Check-in, check-out and absences (sick calls): each a writer action.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::{ApiError, AppState, json_body, text_field};
use super::{MAX_NOTE, actor, rota, time};
use crate::auth::Caller;
use crate::engine::Op;
use crate::rota::RotaOp;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    guard: String,
    post: Option<String>,
    operator: Option<String>,
}

/// `POST /rota/check-in` `{"guard","post","operator"?}`.
pub async fn check_in(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let b: CheckBody = json_body(body)?;
    let Some(post) = b.post else {
        return Err(ApiError::bad_request("post is required", Value::Null));
    };
    let actor = actor(b.operator, &caller)?;
    state
        .writer
        .op(
            &caller.actor(),
            Op::Rota(RotaOp::CheckIn {
                guard: b.guard.clone(),
                post: post.clone(),
                actor,
            }),
        )
        .await?;
    Ok(Json(json!({"guard": b.guard, "post": post, "on_post": true})))
}

/// `POST /rota/check-out` `{"guard","operator"?}`.
pub async fn check_out(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let b: CheckBody = json_body(body)?;
    let actor = actor(b.operator, &caller)?;
    state
        .writer
        .op(
            &caller.actor(),
            Op::Rota(RotaOp::CheckOut {
                guard: b.guard.clone(),
                actor,
            }),
        )
        .await?;
    Ok(Json(json!({"guard": b.guard, "on_post": false})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbsenceBody {
    guard: String,
    from: Option<String>,
    until: Option<String>,
    reason: Option<String>,
    operator: Option<String>,
}

/// `POST /rota/absences` `{"guard","from"?,"until"?,"reason","operator"?}`: a sick call.
/// Default from now until the end of the guard's current or next assignment.
pub async fn absence(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    rota(&state)?;
    let b: AbsenceBody = json_body(body)?;
    let reason = text_field("reason", b.reason, MAX_NOTE, false)?.unwrap_or_else(|| "sick".into());
    let (from_ms, until_ms) = (time("from", &b.from)?, time("until", &b.until)?);
    crate::actions::check_absence(from_ms, until_ms, state.clock.now_ms())?;
    let id = state
        .writer
        .op(
            &caller.actor(),
            Op::Rota(RotaOp::Absence {
                guard: b.guard.clone(),
                from_ms,
                until_ms,
                reason,
                actor: actor(b.operator, &caller)?,
            }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "guard": b.guard}))))
}
