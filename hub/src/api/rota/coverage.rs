//! Coverage now or planned, open gaps, cover proposals and accepting one, and the guards
//! with where they are. Reads take the rota's committed state; solving runs on a blocking
//! thread, off the writer.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::{ApiError, ApiPath, ApiQuery, AppState, json_body};
use super::{actor, estate_filter, rota, time};
use crate::alarms::rfc3339;
use crate::auth::Caller;
use crate::engine::Op;
use crate::rota::{RotaOp, proposals};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageQuery {
    estate: Option<String>,
    at: Option<String>,
}

/// `GET /coverage?estate=&at=`: per estate and post, required against present (now) or
/// against assigned (`at` another time: the planned coverage).
pub async fn coverage(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<CoverageQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = rota(&state)?;
    let estate = estate_filter(&state, &q.estate)?;
    let now = state.clock.now_ms();
    let at = time("at", &q.at)?.unwrap_or(now);
    let live_view = (at - now).abs() < 60_000;
    let m = &r.model;
    let live = r.live();
    let mut estates: Vec<Value> = Vec::new();
    let mut ids: Vec<&str> = m.posts.iter().map(|p| p.estate.as_str()).collect();
    ids.dedup();
    ids.sort();
    ids.dedup();
    for e in ids.into_iter().filter(|e| estate.as_deref().is_none_or(|x| x == *e)) {
        let mut posts = Vec::new();
        let (mut req_sum, mut have_sum) = (0u32, 0u32);
        for p in m.posts.iter().filter(|p| p.estate == e) {
            let slot = m.slot_at(p, at);
            let assigned: Vec<Value> = slot
                .as_ref()
                .map(|s| {
                    live.assigned(&p.id, s.start_ms)
                        .into_iter()
                        .map(|a| json!({"guard": a.guard, "name": m.guard(&a.guard).map(|g| g.name.clone()), "from": rfc3339(a.start), "until": rfc3339(a.end), "source": a.source}))
                        .collect()
                })
                .unwrap_or_default();
            let present: Vec<Value> = if live_view {
                live.present_at(&p.id)
                    .into_iter()
                    .map(|(g, since)| json!({"guard": g, "name": m.guard(g).map(|g| g.name.clone()), "since": rfc3339(since)}))
                    .collect()
            } else {
                Vec::new()
            };
            let required = if slot.is_some() { p.required() } else { 0 };
            let have = if live_view { present.len() } else { assigned.len() } as u32;
            req_sum += required;
            have_sum += have.min(required);
            let status = match (&slot, have) {
                (None, _) => "not_staffed",
                (_, 0) => "empty",
                (_, h) if h < required => "short",
                _ => "covered",
            };
            let gap = live.gaps.get(&p.id).filter(|_| live_view);
            posts.push(json!({
                "post": p.id, "kind": p.kind, "area": p.area(),
                "shift": slot.as_ref().map(|s| s.shift.clone()),
                "shift_start": slot.as_ref().map(|s| rfc3339(s.start_ms)),
                "shift_end": slot.as_ref().map(|s| rfc3339(s.end_ms)),
                "required": required, "present": present, "assigned": assigned, "status": status,
                "gap": gap.map(|g| json!({"id": format!("{}@{}", p.id, g.shift_start), "since": rfc3339(g.opened_at), "alarmed": g.alarmed})),
            }));
        }
        estates.push(json!({"estate": e, "required": req_sum, "covered": have_sum, "posts": posts}));
    }
    Ok(Json(
        json!({"at": rfc3339(at), "basis": if live_view { "present" } else { "assigned" }, "estates": estates}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GapQuery {
    estate: Option<String>,
}

/// `GET /rota/gaps?estate=`.
pub async fn gaps(State(state): State<AppState>, ApiQuery(q): ApiQuery<GapQuery>) -> Result<Json<Value>, ApiError> {
    let r = rota(&state)?;
    let estate = estate_filter(&state, &q.estate)?;
    let live = r.live();
    let gaps: Vec<proposals::Gap> = proposals::gaps(&r.model, &live, state.clock.now_ms())
        .into_iter()
        .filter(|g| estate.as_deref().is_none_or(|e| e == g.estate))
        .collect();
    Ok(Json(serde_json::to_value(gaps).unwrap_or(Value::Null)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalQuery {
    gap: Option<String>,
}

/// `GET /rota/proposals?gap=`: every open gap solved together; the answer lists the
/// recommended proposals (the joint optimum) and ranked alternatives.
pub async fn proposals(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    ApiQuery(q): ApiQuery<ProposalQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = rota(&state)?;
    let now = state.clock.now_ms();
    let live = r.live();
    let model = r.model.clone();
    let mut sol = tokio::task::spawn_blocking(move || proposals::solve(&model, &live, now))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "solver failed",
                Value::String(e.to_string()),
            )
        })?;
    if let Some(gap) = q.gap.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if !sol.gaps.iter().any(|g| g.id == gap) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no such open gap",
                Value::String(gap.into()),
            ));
        }
        sol.proposals.retain(|p| p.gap == gap);
        sol.gaps.retain(|g| g.id == gap);
        sol.escalate.retain(|g| g == gap);
    }
    // Only the gaps of the caller's estates, and the proposals and escalations for them (a
    // gap's id names its post: `post@start`).
    if caller.principal.scope != crate::auth::Scope::All {
        let visible = crate::api::enforce::visible_estates(&caller.principal, &state.estates);
        let shown = |gap: &str| {
            let post = gap.split('@').next().unwrap_or_default();
            r.model.post(post).is_some_and(|p| visible.contains(&p.estate))
        };
        sol.gaps.retain(|g| visible.contains(&g.estate));
        sol.proposals.retain(|p| shown(&p.gap));
        sol.escalate.retain(|g| shown(g));
    }
    Ok(Json(serde_json::to_value(sol).unwrap_or(Value::Null)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorBody {
    operator: Option<String>,
}

/// `POST /rota/proposals/{id}/accept` `{"operator"}`.
pub async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let b: ActorBody = json_body(body)?;
    let actor = actor(b.operator, &caller)?;
    let assignment = state
        .writer
        .op(
            &caller.actor(),
            Op::Rota(RotaOp::Accept {
                proposal: id.clone(),
                actor,
            }),
        )
        .await?;
    Ok(Json(json!({"accepted": id, "assignment": assignment})))
}

/// `GET /rota/guards`: guards, where they are, their coming assignments.
pub async fn guards(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let r = rota(&state)?;
    let live = r.live();
    let now = state.clock.now_ms();
    let v: Vec<Value> = r
        .model
        .guards
        .iter()
        .map(|g| {
            json!({
                "id": g.id, "name": g.name, "home_estate": g.home_estate, "floating": g.floating,
                "qualifications": g.qualifications, "contract_hours": g.contract_hours,
                "on_post": live.presence.get(&g.id).map(|p| json!({"post": p.post, "since": rfc3339(p.since)})),
                "absent": live.absences.iter().any(|a| a.guard == g.id && a.start <= now && now < a.end),
                "next": live.of_guard(&g.id).into_iter().filter(|a| a.end > now).take(3)
                    .map(|a| json!({"post": a.post, "shift": a.shift, "from": rfc3339(a.start), "until": rfc3339(a.end)})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(Value::Array(v)))
}
