//! The live stream's events (`GET /api/v1/stream`): the writer collects them during a
//! transaction and broadcasts them only after its commit, so a listener never sees a change
//! that was rolled back.

use serde::Serialize;
use serde_json::Value;

/// One change on the live stream (`GET /api/v1/stream`): SSE event name = `kind`.
#[derive(Debug, Clone, Serialize)]
pub struct StreamEvent {
    /// alarm | incident | notification | flood
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: i64,
    pub change: String,
    pub data: Value,
}
