//! The rota's endpoints: `GET /coverage`, `GET /rota/gaps`, `GET /rota/proposals`,
//! `POST /rota/proposals/{id}/accept`, `POST /rota/plan`, check-in/out, absences,
//! assignments, CSV import/export, patrols, handovers, notes, attendance, guards, and
//! `GET /kpi/coverage`.
//!
//! Reads take the rota's committed state (or the database); every change goes through the
//! writer. Solving (proposals, the weekly plan) runs on a blocking thread, off the writer.
//! Bulk writes (a CSV import, publishing a plan) are checked whole off the writer, then
//! applied a time-bounded slice per writer turn ([`crate::rota::bulk`]); the request
//! answers when the last slice has committed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::warn;

use super::{ApiError, ApiPath, ApiQuery, AppState, json_body, text_field};
use crate::alarms::rfc3339;
use crate::engine::Op;
use crate::rota::model::{RotaModel, days_from_epoch, monday_of};
use crate::rota::{RotaOp, RotaShared, bulk, csv, plan, proposals};

const MAX_NAME: usize = 100;
const MAX_NOTE: usize = 2_000;

fn rota(state: &AppState) -> Result<Arc<RotaShared>, ApiError> {
    state.rota.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no rota is configured",
            Value::String("add [[posts]] and [[guards]] to the hub configuration".into()),
        )
    })
}

fn estate_filter(state: &AppState, e: &Option<String>) -> Result<Option<String>, ApiError> {
    let e = e.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if let Some(e) = e
        && !state.estates.iter().any(|x| x.id == e)
    {
        return Err(ApiError::bad_request(
            "invalid estate filter",
            format!("unknown estate {e:?}"),
        ));
    }
    Ok(e.map(str::to_owned))
}

fn time(name: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .map_err(|e| ApiError::bad_request(format!("invalid {name}"), format!("{s:?}: {e} (RFC 3339)")))
        })
        .transpose()
}

fn actor(v: Option<String>, default: &str) -> Result<String, ApiError> {
    Ok(text_field("operator", v, MAX_NAME, false)?.unwrap_or_else(|| default.to_owned()))
}

// ---- coverage ------------------------------------------------------------------------------

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
    ApiPath(id): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let b: ActorBody = json_body(body)?;
    let actor = actor(b.operator, "operator")?;
    let assignment = state
        .writer
        .op(Op::Rota(RotaOp::Accept {
            proposal: id.clone(),
            actor,
        }))
        .await?;
    Ok(Json(json!({"accepted": id, "assignment": assignment})))
}

// ---- presence, absences ----------------------------------------------------------------

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
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let b: CheckBody = json_body(body)?;
    let Some(post) = b.post else {
        return Err(ApiError::bad_request("post is required", Value::Null));
    };
    let actor = actor(b.operator, &b.guard)?;
    state
        .writer
        .op(Op::Rota(RotaOp::CheckIn {
            guard: b.guard.clone(),
            post: post.clone(),
            actor,
        }))
        .await?;
    Ok(Json(json!({"guard": b.guard, "post": post, "on_post": true})))
}

/// `POST /rota/check-out` `{"guard","operator"?}`.
pub async fn check_out(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let b: CheckBody = json_body(body)?;
    let actor = actor(b.operator, &b.guard)?;
    state
        .writer
        .op(Op::Rota(RotaOp::CheckOut {
            guard: b.guard.clone(),
            actor,
        }))
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
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    rota(&state)?;
    let b: AbsenceBody = json_body(body)?;
    let reason = text_field("reason", b.reason, MAX_NOTE, false)?.unwrap_or_else(|| "sick".into());
    let id = state
        .writer
        .op(Op::Rota(RotaOp::Absence {
            guard: b.guard.clone(),
            from_ms: time("from", &b.from)?,
            until_ms: time("until", &b.until)?,
            reason,
            actor: actor(b.operator, "operator")?,
        }))
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "guard": b.guard}))))
}

// ---- assignments, CSV ------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    estate: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

type AssignmentRow = (i64, String, String, String, i64, i64, i64, String, String);

async fn assignment_rows(state: &AppState, q: &RangeQuery) -> Result<Vec<AssignmentRow>, ApiError> {
    let estate = estate_filter(state, &q.estate)?;
    let now = state.clock.now_ms();
    let from = time("from", &q.from)?.unwrap_or(now - 86_400_000);
    let to = time("to", &q.to)?.unwrap_or(now + 7 * 86_400_000);
    let rows: Vec<AssignmentRow> = sqlx::query_as(
        "SELECT id, estate_id, post_id, shift, shift_start_ms, start_ms, end_ms, guard_id, source FROM rota_assignments \
         WHERE status = 'active' AND end_ms > $1 AND start_ms < $2 AND ($3 IS NULL OR estate_id = $3) \
         ORDER BY shift_start_ms, post_id, guard_id LIMIT 20000",
    )
    .bind(from)
    .bind(to)
    .bind(estate)
    .fetch_all(&state.pool)
    .await
    .map_err(|e| ApiError::from(crate::store::StoreError::Query { what: "listing assignments".into(), source: e }))?;
    Ok(rows)
}

/// `GET /rota/assignments?estate=&from=&to=` (default: the past day and the coming week).
pub async fn assignments(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = rota(&state)?;
    let rows = assignment_rows(&state, &q).await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|a| {
                json!({"id": a.0, "estate": a.1, "post": a.2, "shift": a.3, "slot": format!("{}@{}", a.2, a.4),
                       "date": r.model.local_date(&a.1, a.4), "from": rfc3339(a.5), "until": rfc3339(a.6),
                       "guard": a.7, "name": r.model.guard(&a.7).map(|g| g.name.clone()), "source": a.8})
            })
            .collect(),
    )))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    /// `post@shift_start_ms`, or `post` + `date` + `shift`.
    slot: Option<String>,
    post: Option<String>,
    date: Option<NaiveDate>,
    shift: Option<String>,
    guard: String,
    operator: Option<String>,
}

/// `POST /rota/assignments` `{"post","date","shift","guard"}` (or `"slot"`).
pub async fn assign(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let r = rota(&state)?;
    let b: AssignBody = json_body(body)?;
    let slot = match (b.slot, b.post, b.date, b.shift) {
        (Some(s), ..) => s,
        (None, Some(p), Some(d), Some(sh)) => {
            let post = r
                .model
                .post(&p)
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not found", format!("post {p}").into()))?;
            let t = r
                .model
                .template(&sh)
                .ok_or_else(|| ApiError::bad_request("unknown shift", Value::String(sh.clone())))?;
            r.model.slot(post, t, d).key()
        }
        _ => return Err(ApiError::bad_request("give slot, or post, date and shift", Value::Null)),
    };
    let id = state
        .writer
        .op(Op::Rota(RotaOp::Assign {
            slot: slot.clone(),
            guard: b.guard.clone(),
            actor: actor(b.operator, "operator")?,
        }))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "slot": slot, "guard": b.guard})),
    ))
}

/// `DELETE /rota/assignments/{id}`.
pub async fn unassign(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    state
        .writer
        .op(Op::Rota(RotaOp::Unassign {
            id,
            actor: "operator".into(),
        }))
        .await?;
    Ok(Json(json!({"id": id, "cancelled": true})))
}

/// `POST /rota/import` (a CSV body: `date,estate,post,shift,guard`): the slots named in the
/// file get exactly the guards it lists. Every row is checked before anything is applied
/// (an error names the first wrong row, 422); then the import is applied in slices between
/// other writer work and the answer comes when the last slice has committed (see
/// [`crate::rota::bulk`] for what a sliced import means).
pub async fn import(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let r = rota(&state)?;
    let body = body.map_err(|r| ApiError::new(r.status(), "cannot read the request body", r.body_text().into()))?;
    let model = r.model.clone();
    // Parsing and checking tens of thousands of rows is CPU work: off the async workers.
    let planned = tokio::task::spawn_blocking(move || {
        let text =
            std::str::from_utf8(&body).map_err(|e| ApiError::bad_request("the CSV is not UTF-8", e.to_string()))?;
        let rows = csv::parse(text).map_err(|e| ApiError::bad_request("invalid CSV", e))?;
        let changes = bulk::plan_import(&model, &rows)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not acceptable", Value::String(e)))?;
        Ok::<_, ApiError>((rows.len(), changes))
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "import failed",
            Value::String(e.to_string()),
        )
    })?;
    let (n, changes) = planned?;
    let done = apply_bulk(&state, &r, changes, "import", "import".into(), n).await?;
    Ok(Json(
        json!({"rows": n, "slots": done.slots, "added": done.added, "removed": done.removed, "slices": done.slices}),
    ))
}

/// What a bulk action did.
struct BulkDone {
    slots: usize,
    added: i64,
    removed: i64,
    slices: u64,
}

/// Applies a bulk action's slot changes a slice per writer turn (the writer commits each
/// and takes whatever else is queued — alarms — before the next), then records it once.
/// Runs as its own task, so a client that goes away does not stop it half-way.
async fn apply_bulk(
    state: &AppState,
    r: &Arc<RotaShared>,
    changes: Vec<bulk::SlotChange>,
    source: &'static str,
    actor: String,
    rows: usize,
) -> Result<BulkDone, ApiError> {
    let writer = state.writer.clone();
    let r = r.clone();
    let task = tokio::spawn(async move {
        let _one_at_a_time = r.bulk_lock.lock().await;
        let settings = &r.model.settings;
        let budget = std::time::Duration::from_millis(u64::from(settings.bulk_slice_ms));
        let per_slice = usize::try_from(settings.bulk_slice_slots).unwrap_or(usize::MAX).max(1);
        let total = changes.len();
        let mut queue: VecDeque<bulk::SlotChange> = changes.into();
        let mut done = BulkDone {
            slots: 0,
            added: 0,
            removed: 0,
            slices: 0,
        };
        let mut failure = None;
        while !queue.is_empty() {
            let slice: Vec<bulk::SlotChange> = queue.drain(..queue.len().min(per_slice)).collect();
            let outcome = bulk::SliceCell::default();
            let sent = writer
                .op(Op::Rota(RotaOp::ApplySlice {
                    changes: slice,
                    source,
                    budget,
                    outcome: outcome.clone(),
                }))
                .await;
            let taken = outcome.lock().unwrap_or_else(|e| e.into_inner()).take();
            match (sent, taken) {
                (Ok(_), Some(o)) => {
                    done.slots += o.applied;
                    done.added += o.added;
                    done.removed += o.removed;
                    done.slices += 1;
                    for c in o.rest.into_iter().rev() {
                        queue.push_front(c);
                    }
                }
                (Ok(_), None) => {
                    failure = Some(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "bulk slice answered without an outcome",
                        Value::Null,
                    ));
                    break;
                }
                (Err(e), _) => {
                    failure = Some(ApiError::from(e));
                    break;
                }
            }
        }
        let detail = json!({"rows": rows, "slots": total, "applied_slots": done.slots, "added": done.added,
                            "removed": done.removed, "slices": done.slices, "complete": failure.is_none()});
        // Recorded even when a slice failed: the slices before it are applied.
        let recorded = writer
            .op(Op::Rota(RotaOp::BulkDone {
                source,
                actor,
                detail: detail.clone(),
            }))
            .await;
        if let Some(mut e) = failure {
            r.bulk.failed.fetch_add(1, Relaxed);
            warn!(source, %detail, error = %e.error, "bulk rota action stopped by a failed slice");
            e.detail = json!({"cause": e.detail, "progress": detail,
                              "retry": "the slots applied so far stay; the same action again completes it"});
            return Err(e);
        }
        recorded?;
        r.bulk.actions.fetch_add(1, Relaxed);
        r.bulk.rows.fetch_add(rows as u64, Relaxed);
        r.bulk.slots.fetch_add(total as u64, Relaxed);
        Ok(done)
    });
    task.await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bulk action failed",
            Value::String(e.to_string()),
        )
    })?
}

/// `GET /rota/export?estate=&from=&to=`: the assignments as CSV.
pub async fn export(State(state): State<AppState>, ApiQuery(q): ApiQuery<RangeQuery>) -> Result<Response, ApiError> {
    let r = rota(&state)?;
    let rows = assignment_rows(&state, &q).await?;
    let rows: Vec<csv::Row> = rows
        .into_iter()
        .map(|a| csv::Row {
            date: r.model.local_date(&a.1, a.4),
            estate: a.1,
            post: a.2,
            shift: a.3,
            guard: a.7,
        })
        .collect();
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv::format(&rows)).into_response())
}

// ---- the weekly plan -----------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    /// Estates of the region (default: every estate with posts).
    #[serde(default)]
    estates: Vec<String>,
    /// Any date of the week (local); default: next week.
    week: Option<NaiveDate>,
    /// Local search budget (default 2000, at most 30000).
    time_budget_ms: Option<u64>,
    seed: Option<u64>,
    /// Start from the published rota (default true: minimal changes).
    keep_published: Option<bool>,
    /// Replace the week's assignments with the plan.
    #[serde(default)]
    publish: bool,
    operator: Option<String>,
}

/// `POST /rota/plan`.
pub async fn plan(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let r = rota(&state)?;
    let b: PlanBody = json_body(body)?;
    for e in &b.estates {
        if !r.model.posts.iter().any(|p| &p.estate == e) {
            return Err(ApiError::bad_request(
                "unknown estate or estate without posts",
                Value::String(e.clone()),
            ));
        }
    }
    let now = state.clock.now_ms();
    let m: Arc<RotaModel> = r.model.clone();
    let first_estate = b
        .estates
        .first()
        .cloned()
        .or_else(|| m.posts.first().map(|p| p.estate.clone()))
        .unwrap_or_default();
    let week = b
        .week
        .unwrap_or_else(|| m.local_date(&first_estate, now) + chrono::Days::new(7));
    let req = plan::Request {
        estates: b.estates.clone(),
        week_start: monday_of(week),
        time_budget_ms: b.time_budget_ms.unwrap_or(2_000).min(30_000),
        seed: b.seed.unwrap_or((days_from_epoch(week) as u64).wrapping_mul(0x9E37)),
        keep_published: b.keep_published.unwrap_or(true),
    };
    let live = r.live();
    let p = tokio::task::spawn_blocking(move || plan::plan(&m, &live, &req, now))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "planner failed",
                Value::String(e.to_string()),
            )
        })?;
    let mut v = serde_json::to_value(&p).unwrap_or(Value::Null);
    if b.publish {
        let assignments: Vec<(String, String)> = p
            .assignments
            .iter()
            .filter_map(|a| a.guard.clone().map(|g| (a.slot.clone(), g)))
            .collect();
        let changes = bulk::plan_publish(&r.model, &p.slot_keys, &assignments).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the plan names an unknown slot or guard",
                Value::String(e),
            )
        })?;
        let done = apply_bulk(&state, &r, changes, "plan", actor(b.operator, "planner")?, 0).await?;
        v["published"] =
            json!({"added": done.added, "removed": done.removed, "slots": done.slots, "slices": done.slices});
    }
    Ok(Json(v))
}

// ---- patrols, handovers, notes, attendance, guards -----------------------------------------

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
    let v = crate::rota::store::patrols(
        &state.pool,
        estate.as_deref(),
        q.route.as_deref(),
        since,
        q.limit.unwrap_or(200).clamp(1, 5000),
    )
    .await?;
    Ok(Json(Value::Array(v)))
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
    ApiPath(id): ApiPath<i64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let b: PatrolRecordBody = json_body(body)?;
    let by =
        text_field("by", b.by, MAX_NAME, false)?.ok_or_else(|| ApiError::bad_request("by is required", Value::Null))?;
    state
        .writer
        .op(Op::Rota(RotaOp::PatrolRecord {
            tour: id,
            findings: text_field("findings", b.findings, MAX_NOTE, true)?,
            actions: text_field("actions", b.actions, MAX_NOTE, true)?,
            by,
        }))
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
    let v = crate::rota::store::handovers(
        &state.pool,
        estate.as_deref(),
        q.unacknowledged.unwrap_or(false),
        q.limit.unwrap_or(200).clamp(1, 5000),
    )
    .await?;
    Ok(Json(Value::Array(v)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoverAckBody {
    guard: String,
}

/// `POST /rota/handovers/{id}/ack` `{"guard"}`.
pub async fn handover_ack(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    let b: HandoverAckBody = json_body(body)?;
    let guard = text_field("guard", Some(b.guard), MAX_NAME, false)?
        .ok_or_else(|| ApiError::bad_request("guard is required", Value::Null))?;
    state
        .writer
        .op(Op::Rota(RotaOp::HandoverAck {
            id,
            guard: guard.clone(),
        }))
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
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    rota(&state)?;
    let b: NoteBody = json_body(body)?;
    let text = text_field("text", Some(b.text), MAX_NOTE, true)?
        .ok_or_else(|| ApiError::bad_request("text is required", Value::Null))?;
    let id = state
        .writer
        .op(Op::Rota(RotaOp::Note {
            post: b.post,
            text,
            author: actor(b.author, "operator")?,
        }))
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
    Ok(Json(Value::Array(
        crate::rota::store::attendance(&state.pool, estate.as_deref(), since).await?,
    )))
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

// ---- KPI -------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiQuery {
    hours: Option<i64>,
}

/// `GET /kpi/coverage?hours=24`: share of post-hours covered (the ledger's gaps against the
/// post-hours required), gaps by estate, patrols on time, and the fairness spread (the
/// range of guards' rolling four-week hours).
pub async fn kpi(State(state): State<AppState>, ApiQuery(q): ApiQuery<KpiQuery>) -> Result<Json<Value>, ApiError> {
    let r = rota(&state)?;
    let m = &r.model;
    let hours = q.hours.unwrap_or(24).clamp(1, 24 * 90);
    let now = state.clock.now_ms();
    let from = now - hours * 3_600_000;
    // Required post-hours: each post's shifts overlapping the window × headcount.
    let mut required_h = 0.0;
    for p in &m.posts {
        let mut t = from;
        while t < now {
            match m.slot_at(p, t) {
                Some(s) => {
                    let end = s.end_ms.min(now);
                    required_h += (end - t) as f64 / 3_600_000.0 * f64::from(p.required());
                    t = end;
                }
                None => match m.next_slot(p, t) {
                    Some(s) => t = s.start_ms,
                    None => break,
                },
            }
        }
    }
    let gaps = crate::rota::store::gap_periods(&state.pool, from, now).await?;
    let mut uncovered_h = 0.0;
    let mut by_estate: std::collections::BTreeMap<String, (i64, f64)> = std::collections::BTreeMap::new();
    for (estate, _post, opened, closed) in &gaps {
        let h = (closed.unwrap_or(now).min(now) - opened.max(&from)) as f64 / 3_600_000.0;
        uncovered_h += h.max(0.0);
        let e = by_estate.entry(estate.clone()).or_default();
        e.0 += 1;
        e.1 += h.max(0.0);
    }
    let tours = crate::rota::store::tour_outcomes(&state.pool, from).await?;
    let finished: i64 = tours.iter().map(|t| t.1).sum();
    let on_time: i64 = tours.iter().filter(|t| t.0 == "on_time").map(|t| t.1).sum();
    let live = r.live();
    let recent = live.recent(m, now);
    let hours_by_guard: Vec<f64> = m
        .guards
        .iter()
        .filter(|g| !g.floating)
        .map(|g| recent.get(&g.id).map_or(0.0, |x| x.hours))
        .collect();
    let spread = match (
        hours_by_guard.iter().cloned().reduce(f64::max),
        hours_by_guard.iter().cloned().reduce(f64::min),
    ) {
        (Some(a), Some(b)) => a - b,
        _ => 0.0,
    };
    let round = |x: f64| (x * 10.0).round() / 10.0;
    Ok(Json(json!({
        "window_hours": hours,
        "post_hours_required": round(required_h),
        // A gap is counted as the whole post uncovered for its duration (a lower bound on
        // the share covered when a post of two is one short).
        "post_hours_uncovered": round(uncovered_h),
        "coverage_share": if required_h > 0.0 { ((1.0 - uncovered_h / required_h).max(0.0) * 10_000.0).round() / 10_000.0 } else { 1.0 },
        "gaps_by_estate": by_estate.iter().map(|(e, (n, h))| json!({"estate": e, "gaps": n, "hours": round(*h)})).collect::<Vec<_>>(),
        "patrols": {"finished": finished, "on_time": on_time,
                    "on_time_share": if finished > 0 { on_time as f64 / finished as f64 } else { 1.0 },
                    "by_outcome": tours.iter().map(|t| json!({"outcome": t.0, "tours": t.1})).collect::<Vec<_>>()},
        "fairness": {"hours_spread_4w": round(spread),
                     "hours_max_4w": round(hours_by_guard.iter().cloned().fold(0.0, f64::max))},
    })))
}
