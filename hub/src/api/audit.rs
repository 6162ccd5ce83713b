//! `GET /audit?after=&limit=&actor=&action=` and `GET /audit/verify`: the audit log and its
//! chain check, for admins only (403 for every other role).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiQuery, AppState, text_field};
use crate::audit::apply as audit;
use crate::audit::queries::{self, AuditFilter};

const DEFAULT_LIMIT: i64 = 500;
const MAX_LIMIT: i64 = 5_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    after: Option<i64>,
    limit: Option<i64>,
    actor: Option<String>,
    action: Option<String>,
}

/// `GET /audit`: rows after `after` (a `seq`, default 0) in order, at most `limit` (500,
/// ≤ 5000), optionally of one actor or one action; `next` is the `after` of the next page.
pub async fn list(State(state): State<AppState>, ApiQuery(q): ApiQuery<AuditQuery>) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("invalid after", "a seq, 0 or more"));
    }
    let filter = AuditFilter {
        after,
        limit,
        actor: text_field("actor", q.actor, 200, false)?,
        action: text_field("action", q.action, 100, false)?,
    };
    let rows = queries::list(&state.pool, &filter).await?;
    let next = rows.last().map_or(after, |r| r.seq);
    Ok(Json(json!({
        "rows": rows.iter().map(queries::to_json).collect::<Vec<_>>(),
        "next": next,
    })))
}

/// `GET /audit/verify`: walks the chain as `gatehouse-hub audit verify` does; 200 with
/// `{"rows", "intact", "head", "first_bad"?: {"seq", "problem", ...}, "message"}`.
pub async fn verify(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let verdict = audit::verify(&state.pool).await?;
    let mut v = serde_json::to_value(&verdict).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("message".into(), verdict.to_string().into());
    }
    Ok(Json(v))
}
