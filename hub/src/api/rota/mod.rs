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
//!
//! One file per group of endpoints; this one holds what they share (the rota or a 404, the
//! estate filter, times, the acting operator).

mod assignments;
mod coverage;
mod duty;
mod kpi;
mod plan;
mod records;

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::Value;

use super::{ApiError, AppState, text_field};
use crate::rota::RotaShared;

pub use assignments::{assign, assignments, export, import, unassign};
pub use coverage::{accept, coverage, gaps, guards, proposals};
pub use duty::{absence, check_in, check_out};
pub use kpi::kpi;
pub use plan::plan;
pub use records::{attendance, handover_ack, handovers, note, patrol_record, patrols};

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

/// Who acted: the caller. A name in the body (`operator`, `author`) is checked, never recorded.
fn actor(named: Option<String>, caller: &crate::auth::Caller) -> Result<String, ApiError> {
    text_field("operator", named, MAX_NAME, false)?;
    Ok(caller.user().to_owned())
}
