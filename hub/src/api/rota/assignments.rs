//! Assignments one by one, and in bulk: the CSV import and export, and the slices every
//! bulk action (an import, a published plan) is applied in.

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

use super::super::{ApiError, ApiPath, ApiQuery, AppState, json_body};
use super::{actor, estate_filter, rota, time};
use crate::alarms::rfc3339;
use crate::audit::Actor;
use crate::auth::Caller;
use crate::engine::Op;
use crate::rota::{RotaOp, RotaShared, bulk, csv, queries};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    estate: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

async fn assignment_rows(state: &AppState, q: &RangeQuery) -> Result<Vec<crate::rota::state::Assignment>, ApiError> {
    let estate = estate_filter(state, &q.estate)?;
    let now = state.clock.now_ms();
    let from = time("from", &q.from)?.unwrap_or(now - 86_400_000);
    let to = time("to", &q.to)?.unwrap_or(now + 7 * 86_400_000);
    Ok(queries::list_assignments(&state.pool, from, to, estate.as_deref()).await?)
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
                json!({"id": a.id, "estate": a.estate, "post": a.post, "shift": a.shift, "slot": format!("{}@{}", a.post, a.shift_start),
                       "date": r.model.local_date(&a.estate, a.shift_start), "from": rfc3339(a.start), "until": rfc3339(a.end),
                       "guard": a.guard, "name": r.model.guard(&a.guard).map(|g| g.name.clone()), "source": a.source})
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
    caller: Caller,
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
        .op(
            &caller.actor(),
            Op::Rota(RotaOp::Assign {
                slot: slot.clone(),
                guard: b.guard.clone(),
                actor: actor(b.operator, &caller)?,
            }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "slot": slot, "guard": b.guard})),
    ))
}

/// `DELETE` on `/rota/assignments/{id}`: cancels the assignment.
pub async fn unassign(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    rota(&state)?;
    state
        .writer
        .op(
            &caller.actor(),
            Op::Rota(RotaOp::Unassign {
                id,
                actor: "operator".into(),
            }),
        )
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
    caller: Caller,
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
    let done = apply_bulk(&state, &r, changes, "import", (caller.actor(), "import".into()), n).await?;
    Ok(Json(
        json!({"rows": n, "slots": done.slots, "added": done.added, "removed": done.removed, "slices": done.slices}),
    ))
}

/// What a bulk action did.
pub(super) struct BulkDone {
    pub(super) slots: usize,
    pub(super) added: i64,
    pub(super) removed: i64,
    pub(super) slices: u64,
}

/// Applies a bulk action's slot changes a slice per writer turn (the writer commits each
/// and takes whatever else is queued — alarms — before the next), then records it once.
/// Runs as its own task, so a client that goes away does not stop it half-way.
pub(super) async fn apply_bulk(
    state: &AppState,
    r: &Arc<RotaShared>,
    changes: Vec<bulk::SlotChange>,
    source: &'static str,
    (who, actor): (Actor, String),
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
                .op(
                    &who,
                    Op::Rota(RotaOp::ApplySlice {
                        changes: slice,
                        source,
                        budget,
                        outcome: outcome.clone(),
                    }),
                )
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
            .op(
                &who,
                Op::Rota(RotaOp::BulkDone {
                    source,
                    actor,
                    detail: detail.clone(),
                }),
            )
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
            date: r.model.local_date(&a.estate, a.shift_start),
            estate: a.estate,
            post: a.post,
            shift: a.shift,
            guard: a.guard,
        })
        .collect();
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv::format(&rows)).into_response())
}
