//! The incident shell: applies the incident decisions ([`super::route`], the workflow
//! [`super::transition`], procedures) inside the writer's transaction, through
//! [`super::queries`]. What follows in another domain (escalation planned or stopped,
//! notifications, the rota) it returns to the engine, which calls that domain next.
//!
//! Invariant: nothing here sleeps, sends, or writes outside the transaction it is given.

use serde_json::Value;

use crate::store::{Conn, StoreError};

use super::queries;

/// An incident still open (not closed, not a false alarm).
pub fn is_open(state: &str) -> bool {
    !matches!(state, "closed" | "false_alarm")
}

/// One line of an incident's timeline (`data` stored as JSON unless null).
pub async fn timeline(
    conn: &mut Conn,
    iid: i64,
    now: i64,
    kind: &str,
    actor: Option<&str>,
    text: &str,
    data: Value,
) -> Result<(), StoreError> {
    let data = (!data.is_null()).then(|| data.to_string());
    queries::insert_timeline(conn, iid, now, kind, actor, text, data).await
}
