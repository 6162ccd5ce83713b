//! `GET /alarms`, `GET /alarms/{id}/history`, `POST /alarms/{id}/ack`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, ApiPath, ApiQuery, AppState, json_body, text_field};
use crate::actions::{AckRequest, ShelveRequest};
use crate::alarms::queries::{self as alarm_q, AlarmFilter};
use crate::alarms::{AlarmJson, HistoryJson};
use crate::auth::Caller;
use crate::engine::Op;
use crate::writer::{AckError, WriterError};

const DEFAULT_LIMIT: i64 = 500;
const MAX_LIMIT: i64 = 5_000;
const MAX_OPERATOR_LEN: usize = 100;
const MAX_NOTE_LEN: usize = 2_000;
/// At most this many ids in `?ids=`.
const MAX_IDS: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmQuery {
    estate: Option<String>,
    state: Option<String>,
    priority: Option<String>,
    category: Option<String>,
    limit: Option<i64>,
    /// `1,2,3`: only these alarms (any state; the other filters still apply).
    ids: Option<String>,
}

/// An empty value (`?state=`) means no filter.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse<T: std::str::FromStr<Err = String>>(name: &str, v: &Option<String>) -> Result<Option<T>, ApiError> {
    given(v)
        .map(|s| {
            s.parse::<T>()
                .map_err(|e| ApiError::bad_request(format!("invalid {name} filter"), e))
        })
        .transpose()
}

pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AlarmQuery>,
) -> Result<Json<Vec<AlarmJson>>, ApiError> {
    let estate = given(&q.estate).map(str::to_owned);
    if let Some(e) = &estate
        && !state.estates.iter().any(|c| &c.id == e)
    {
        return Err(ApiError::bad_request(
            "invalid estate filter",
            format!("unknown estate {e:?}"),
        ));
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let ids = given(&q.ids).map(parse_ids).transpose()?;
    let filter = AlarmFilter {
        ids,
        estate,
        state: parse("state", &q.state)?,
        priority: parse("priority", &q.priority)?,
        category: parse("category", &q.category)?,
        limit,
    };
    let rows = alarm_q::list_alarms(&state.pool, &filter).await?;
    Ok(Json(rows.iter().map(|r| r.to_json()).collect()))
}

/// `1,2,3` → the ids (at most [`MAX_IDS`], each a positive integer).
fn parse_ids(s: &str) -> Result<Vec<i64>, ApiError> {
    let ids = s
        .split(',')
        .map(|p| p.trim().parse::<i64>().ok().filter(|id| *id > 0))
        .collect::<Option<Vec<i64>>>()
        .ok_or_else(|| ApiError::bad_request("invalid ids filter", "comma-separated alarm ids, e.g. 1,2,3"))?;
    if ids.len() > MAX_IDS {
        return Err(ApiError::bad_request(
            "invalid ids filter",
            format!("at most {MAX_IDS} ids"),
        ));
    }
    Ok(ids)
}

pub async fn history(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<HistoryJson>>, ApiError> {
    if alarm_q::find_alarm(&state.pool, id).await?.is_none() {
        return Err(not_found(id));
    }
    Ok(Json(alarm_q::alarm_history(&state.pool, id).await?))
}

pub async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AlarmJson>, ApiError> {
    // Both fields are optional, and so is the body itself.
    let body: AckRequest = json_body(body)?;
    let (_, note) = body.checked()?;
    // Who acted is the caller; a name in the body is checked, never recorded.
    let operator = caller.user().to_owned();
    match state.writer.acknowledge(&caller.actor(), id, operator, note).await {
        Ok(alarm) => Ok(Json(alarm)),
        Err(AckError::NotFound(id)) => Err(not_found(id)),
        Err(AckError::AlreadyAcknowledged(id)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "alarm already acknowledged",
            Value::from(id),
        )),
        Err(AckError::Writer(e)) => Err(writer_error(e)),
    }
}

fn not_found(id: i64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "alarm not found", Value::from(id))
}

fn writer_error(e: WriterError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "cannot record the acknowledgement now",
        Value::String(e.to_string()),
    )
}

/// `POST /alarms/{id}/shelve` `{"minutes", "reason", "operator"?}`: hidden from incidents and
/// notifications until it expires (then it returns by itself).
pub async fn shelve(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AlarmJson>, ApiError> {
    let mut body: ShelveRequest = json_body(body)?;
    // Who acted is the caller; a name in the body is checked, never recorded.
    body.operator = Some(caller.user().to_owned());
    let Some(alarm) = alarm_q::find_alarm(&state.pool, id).await? else {
        return Err(not_found(id));
    };
    crate::actions::check_shelve(caller.principal.role, &alarm.priority, body.minutes)?;
    state.writer.op(&caller.actor(), body.op(id)?).await?;
    read_back(&state, id).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutOfServiceBody {
    out_of_service: Option<bool>,
    reason: Option<String>,
    operator: Option<String>,
}

/// `POST /alarms/{id}/out-of-service` `{"out_of_service": true|false, "reason", "operator"?}`.
pub async fn out_of_service(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AlarmJson>, ApiError> {
    let body: OutOfServiceBody = json_body(body)?;
    let on = body.out_of_service.unwrap_or(true);
    let reason = text_field("reason", body.reason, MAX_NOTE_LEN, true)?.unwrap_or_default();
    text_field("operator", body.operator, MAX_OPERATOR_LEN, false)?;
    // Who acted is the caller; a name in the body is checked, never recorded.
    let operator = caller.user().to_owned();
    state
        .writer
        .op(
            &caller.actor(),
            Op::OutOfService {
                alarm_id: id,
                on,
                reason,
                operator,
            },
        )
        .await?;
    read_back(&state, id).await
}

async fn read_back(state: &AppState, id: i64) -> Result<Json<AlarmJson>, ApiError> {
    match alarm_q::find_alarm(&state.pool, id).await? {
        Some(row) => Ok(Json(row.to_json())),
        None => Err(not_found(id)),
    }
}
