//! The alarm shell: applies the rule engine's alarm changes and the alarm book's decisions
//! (chattering, flood, suppression by a disabled fire zone or device maintenance, shelving,
//! out of service) inside the writer's transaction, through [`super::queries`]. What follows
//! in another domain (an incident routed, a notification) it returns to the engine, which
//! calls that domain next.
//!
//! Invariant: nothing here sleeps, sends, or writes outside the transaction it is given.

use serde_json::json;

use crate::stream::Published;

use super::rules::Activation;

/// An activation on the live stream.
pub fn publish_alarm(out: &mut Published, id: i64, change: &str, a: &Activation) {
    out.push(
        "alarm",
        id,
        change,
        json!({"estate": a.key.estate, "device": a.key.device, "area": a.area,
               "priority": a.priority.as_str(), "category": a.category.as_str(), "message": a.message}),
    );
}
