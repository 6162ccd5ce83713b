//! The live stream's events (`GET /api/v1/stream`) and [`Published`], what one writer
//! transaction will publish: the domain shells collect into it during the transaction and
//! the writer broadcasts it only after the commit, so a listener never sees a change that
//! was rolled back.
//!
//! A leaf: it imports nothing else of the crate, so every domain's shell can publish.

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

/// The stream events of the transaction under way, in the order they happened, and whether
/// it queued a notification (the deliverer is woken after the commit).
#[derive(Debug, Default)]
pub struct Published {
    events: Vec<StreamEvent>,
    wake: bool,
}

impl Published {
    pub fn push(&mut self, kind: &'static str, id: i64, change: impl Into<String>, data: Value) {
        self.events.push(StreamEvent {
            kind,
            id,
            change: change.into(),
            data,
        });
    }

    /// A notification was queued: the deliverer has work once this commits.
    pub fn wake_deliverer(&mut self) {
        self.wake = true;
    }

    /// The committed transaction's events, and whether to wake the deliverer; empties it.
    pub fn take(&mut self) -> (Vec<StreamEvent>, bool) {
        (std::mem::take(&mut self.events), std::mem::take(&mut self.wake))
    }

    /// The transaction rolled back: nothing it collected happened.
    pub fn clear(&mut self) {
        self.events.clear();
        self.wake = false;
    }
}
