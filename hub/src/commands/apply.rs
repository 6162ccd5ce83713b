//! The commands shell: records a command, settles it (a gateway's result, offline, timed
//! out) through [`super::queries`], publishing each change as a `command` stream event
//! whose data is the command as `GET /commands/{id}` shows it. Runs inside the writer's
//! transaction; it sends nothing — the HTTP handler sends the command after the commit.

use gatehouse_proto::CommandResult;
use tracing::{info, warn};

use super::model::{self, CommandState};
use super::queries::{self, CommandRow, NewCommand};
use crate::store::{Conn, StoreError};
use crate::stream::Published;

/// Records a command as `sent`, with its deadline; returns the stored row.
pub async fn record(conn: &mut Conn, out: &mut Published, c: &NewCommand, now: i64) -> Result<CommandRow, StoreError> {
    let id = queries::insert(conn, c, now, now + model::DEADLINE_MS).await?;
    let row = queries::get(conn, id).await?.ok_or_else(|| StoreError::Query {
        what: format!("reading command {id} back after its insert"),
        source: sqlx::Error::RowNotFound,
    })?;
    info!(command = id, device = %c.device_id, action = %c.action, operator = %c.operator, "command recorded");
    out.push("command", id, "sent", row.to_json());
    Ok(row)
}

/// Moves command `id` to `to` with `detail`, if it may go there (see
/// [`model::may_settle`]); returns the settled row, or None when it stays as it was.
pub async fn settle(
    conn: &mut Conn,
    out: &mut Published,
    id: i64,
    to: CommandState,
    detail: &str,
    now: i64,
) -> Result<Option<CommandRow>, StoreError> {
    let Some(row) = queries::get(conn, id).await? else {
        return Ok(None);
    };
    let from = CommandState::parse(&row.state).unwrap_or(CommandState::Sent);
    if !model::may_settle(from, to) {
        return Ok(None);
    }
    queries::settle(conn, id, to.as_str(), detail, now).await?;
    let row = CommandRow {
        state: to.as_str().into(),
        detail: Some(detail.into()),
        finished_at_ms: Some(now),
        ..row
    };
    info!(command = id, state = to.as_str(), detail, "command settled");
    out.push("command", id, to.as_str(), row.to_json());
    Ok(Some(row))
}

/// A gateway's result for one of our commands (`cmd-<id>`); a result for a command the hub
/// did not record through the API (another id form), or naming another gateway or device,
/// settles nothing.
pub async fn result(
    conn: &mut Conn,
    out: &mut Published,
    gateway_id: &str,
    result: &CommandResult,
    now: i64,
) -> Result<Option<CommandRow>, StoreError> {
    let Some(id) = model::parse_wire_id(&result.command_id) else {
        return Ok(None);
    };
    match queries::get(conn, id).await? {
        Some(row) if row.gateway_id == gateway_id && row.device_id == result.device_id => {}
        _ => {
            warn!(gateway = %gateway_id, command = %result.command_id, "a command result matches no command sent to that gateway and device");
            return Ok(None);
        }
    }
    let to = if result.ok {
        CommandState::Ok
    } else {
        CommandState::Failed
    };
    settle(conn, out, id, to, &result.message, now).await
}

/// The line on the incident's timeline for a command's change.
pub fn timeline_text(row: &CommandRow) -> String {
    let what = format!("command {} to {}", row.action, row.device_id);
    match (row.state.as_str(), row.detail.as_deref()) {
        ("sent", _) => match &row.reason {
            Some(reason) => format!("{what} sent by {}: {reason}", row.operator),
            None => format!("{what} sent by {}", row.operator),
        },
        (state, Some(detail)) if !detail.is_empty() => format!("{what}: {state} ({detail})"),
        (state, _) => format!("{what}: {state}"),
    }
}
