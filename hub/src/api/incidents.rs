//! `GET/POST /incidents`, `GET /incidents/{id}`, `POST /incidents/{id}/transition`,
//! `POST /incidents/{id}/steps/{step}/done`, `GET /notifications`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiError, ApiPath, ApiQuery, AppState, json_body, text_field};
use crate::actions::{StepRequest, TransitionRequest};
use crate::alarms::{AlarmJson, Priority};
use crate::auth::Caller;
use crate::engine::Op;
use crate::escalation::queries::{TimerJson, incident_timers};
use crate::incidents::queries::{self as q, IncidentFilter, IncidentJson, StepRow, TimelineJson};
use crate::incidents::{IncidentCategory, IncidentState};
use crate::notify::queries::{NotificationFilter, NotificationJson, list_notifications};
use crate::store::Context;

const MAX_LIMIT: i64 = 5_000;
const MAX_NAME: usize = 100;
const MAX_NOTE: usize = 2_000;

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn limit(v: Option<i64>, default: i64) -> Result<i64, ApiError> {
    let l = v.unwrap_or(default);
    if !(1..=MAX_LIMIT).contains(&l) {
        return Err(ApiError::bad_request(
            "invalid limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(l)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentQuery {
    estate: Option<String>,
    state: Option<String>,
    category: Option<String>,
    open: Option<bool>,
    limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<IncidentQuery>,
) -> Result<Json<Vec<IncidentJson>>, ApiError> {
    let st = given(&query.state);
    if let Some(s) = &st
        && IncidentState::parse(s).is_none()
    {
        return Err(ApiError::bad_request(
            "invalid state filter",
            format!("unknown state {s:?}"),
        ));
    }
    let category = given(&query.category);
    if let Some(c) = &category
        && IncidentCategory::parse(c).is_none()
    {
        return Err(ApiError::bad_request(
            "invalid category filter",
            format!("unknown category {c:?}"),
        ));
    }
    let estate = given(&query.estate);
    if let Some(e) = &estate
        && !state.estates.iter().any(|x| &x.id == e)
    {
        return Err(ApiError::bad_request(
            "invalid estate filter",
            format!("unknown estate {e:?}"),
        ));
    }
    let filter = IncidentFilter {
        estate,
        state: st,
        category,
        open: query.open,
        limit: limit(query.limit, 500)?,
    };
    let rows = q::list_incidents(&state.pool, &filter).await?;
    Ok(Json(rows.iter().map(|r| r.to_json(state.response_target_ms)).collect()))
}

/// `GET /incidents/{id}`.
#[derive(Debug, Serialize)]
pub struct IncidentDetail {
    #[serde(flatten)]
    incident: IncidentJson,
    /// The states the workflow allows from this one (`POST …/transition` `to`), so a client
    /// offers exactly these and keeps no copy of the workflow.
    next: Vec<&'static str>,
    alarms: Vec<AlarmJson>,
    procedure: Vec<StepRow>,
    escalation: EscalationJson,
    /// Other durable timers of the incident (response target, progress checks).
    timers: Vec<TimerJson>,
    timeline: Vec<TimelineJson>,
    notifications: Vec<NotificationJson>,
}

#[derive(Debug, Serialize)]
pub struct EscalationJson {
    run: i64,
    /// The policy snapshotted when the incident opened.
    policy: Value,
    /// Every planned step of every run, with its outcome (null: pending).
    steps: Vec<TimerJson>,
}

pub async fn detail(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<IncidentDetail>, ApiError> {
    let mut conn = state
        .pool
        .acquire()
        .await
        .context(|| format!("reading incident {id}"))?;
    let Some(row) = q::get_incident(&mut conn, id).await? else {
        return Err(not_found(id));
    };
    let alarms = q::incident_alarms(&mut conn, id)
        .await?
        .iter()
        .map(|a| a.to_json())
        .collect();
    let procedure = q::incident_steps(&mut conn, id).await?;
    let (steps, timers): (Vec<_>, Vec<_>) = incident_timers(&mut conn, id)
        .await?
        .into_iter()
        .partition(|t| t.kind == "escalation");
    let timeline = q::timeline(&mut conn, id).await?;
    let notifications = list_notifications(
        &mut conn,
        &NotificationFilter {
            incident: Some(id),
            status: None,
            // Every notification of the incident: the board shows how each went, and a
            // cut list would hide the oldest — the first notices.
            limit: i64::MAX,
        },
    )
    .await?
    .iter()
    .map(|n| n.to_json())
    .collect();
    let next = crate::incidents::IncidentState::parse(&row.state)
        .map(|s| s.next().iter().map(|n| n.as_str()).collect())
        .unwrap_or_default();
    Ok(Json(IncidentDetail {
        next,
        incident: row.to_json(state.response_target_ms),
        alarms,
        procedure,
        escalation: EscalationJson {
            run: row.escalation_run,
            policy: serde_json::from_str(&row.policy).unwrap_or(Value::Null),
            steps,
        },
        timers,
        timeline,
        notifications,
    }))
}

async fn read_back(state: &AppState, id: i64) -> Result<Json<IncidentDetail>, ApiError> {
    detail(State(state.clone()), ApiPath(id)).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    estate: Option<String>,
    area: Option<String>,
    category: Option<String>,
    priority: Option<String>,
    title: Option<String>,
    operator: Option<String>,
    note: Option<String>,
}

/// `POST /incidents` `{"estate", "area", "category", "priority"?, "title", "operator"?, "note"?}`:
/// opened by hand (a call, a walk-in report).
pub async fn open(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IncidentDetail>), ApiError> {
    let b: OpenBody = json_body(body)?;
    let required = |name: &str, v: Option<String>| {
        v.ok_or_else(|| ApiError::bad_request("invalid body", format!("{name} is required")))
    };
    let estate = required("estate", text_field("estate", b.estate, 128, false)?)?;
    if !state.estates.iter().any(|e| e.id == estate) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown estate",
            Value::String(estate),
        ));
    }
    let area = text_field("area", b.area, 256, false)?.unwrap_or_else(|| "estate".into());
    let category = required("category", text_field("category", b.category, 64, false)?)?;
    let category = IncidentCategory::parse(&category)
        .ok_or_else(|| ApiError::bad_request("invalid category", format!("unknown category {category:?}")))?;
    let priority = match text_field("priority", b.priority, 8, false)? {
        Some(p) => p
            .parse::<Priority>()
            .map_err(|e| ApiError::bad_request("invalid priority", e))?,
        None => match category {
            IncidentCategory::Fire => Priority::P1,
            IncidentCategory::EquipmentFault | IncidentCategory::PumpFlooding => Priority::P3,
            _ => Priority::P2,
        },
    };
    let title = required("title", text_field("title", b.title, 500, false)?)?;
    text_field("operator", b.operator, MAX_NAME, false)?;
    // Who acted is the caller; a name in the body is checked, never recorded.
    let operator = caller.user().to_owned();
    let note = text_field("note", b.note, MAX_NOTE, true)?;
    let id = state
        .writer
        .op(
            &caller.actor(),
            Op::Open {
                estate,
                area,
                category,
                priority,
                title,
                operator,
                note,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, read_back(&state, id).await?))
}

/// `POST /incidents/{id}/transition` `{"to", "note"?, "actor"?, "reason"?, "override"?:
/// {"supervisor", "reason"}}`. Illegal transitions: 409 naming from → to; a missing reason: 422.
pub async fn transition(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IncidentDetail>, ApiError> {
    // `actor` here names who goes on site (a guard pulled from their post), not who acted:
    // who acted is the caller, in the audit log.
    let b: TransitionRequest = json_body(body)?;
    state.writer.op(&caller.actor(), b.op(id, &caller.principal)?).await?;
    read_back(&state, id).await
}

/// `POST /incidents/{id}/steps/{step}/done` (step = its id or its 1-based position) `{"actor"?,
/// "note"?, "skipped"?}`.
pub async fn step_done(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, step)): ApiPath<(i64, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IncidentDetail>, ApiError> {
    let mut b: StepRequest = json_body(body)?;
    // Who acted is the caller; a name in the body is checked, never recorded.
    b.actor = Some(caller.user().to_owned());
    state.writer.op(&caller.actor(), b.op(id, step)?).await?;
    read_back(&state, id).await
}

/// A notification's statuses (migration 0009).
const STATUSES: [&str; 5] = ["pending", "sent", "delivered", "failed", "digested"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    incident: Option<i64>,
    status: Option<String>,
    limit: Option<i64>,
}

/// `GET /notifications?incident=&status=pending|sent|delivered|failed|digested`.
pub async fn notifications(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> Result<Json<Vec<NotificationJson>>, ApiError> {
    let status = given(&query.status);
    if let Some(s) = &status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid status filter",
            format!("unknown status {s:?} ({})", STATUSES.join(", ")),
        ));
    }
    let mut conn = state.pool.acquire().await.context(|| "listing notifications".into())?;
    let rows = list_notifications(
        &mut conn,
        &NotificationFilter {
            incident: query.incident,
            status,
            limit: limit(query.limit, 1_000)?,
        },
    )
    .await?;
    drop(conn);
    // A notification names no estate: its incident's is the one the caller must see (one
    // without an incident, a flood of the whole centre, only for a scope of all estates).
    let mut out = Vec::with_capacity(rows.len());
    if caller.principal.scope == crate::auth::Scope::All {
        out.extend(rows.iter().map(|n| n.to_json()));
    } else {
        let visible = crate::api::enforce::visible_estates(&caller.principal, &state.estates);
        let mut estate_of: std::collections::HashMap<i64, Option<String>> = std::collections::HashMap::new();
        for n in &rows {
            let Some(incident) = n.incident_id else { continue };
            if let std::collections::hash_map::Entry::Vacant(slot) = estate_of.entry(incident) {
                slot.insert(
                    crate::auth::objects::estate_of(&state.pool, crate::auth::objects::Object::Incident, incident)
                        .await?,
                );
            }
            if estate_of[&incident].as_ref().is_some_and(|e| visible.contains(e)) {
                out.push(n.to_json());
            }
        }
    }
    Ok(Json(out))
}

fn not_found(id: i64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "incident not found", Value::from(id))
}
