//! What gateways deliver: event rows, each gateway's sequence and progress, device
//! registries, command results and the vehicle-entry count; [`readings`] turns stored point
//! and status events into what the board shows. All of its SQL is in
//! [`queries`]; the single writer calls it inside its transaction. [`apply`] is the shell:
//! vehicle entries and gateway liveness (silent, stalled) as alarms.

pub mod apply;
pub mod partitions;
pub mod purge;
pub mod queries;
pub mod readings;
pub mod retention;

use gatehouse_proto::Event;
use gatehouse_proto::event::Body;
use prost::Message as _;

use queries::EventRow;

/// An event as stored: its columns and its encoded payload.
pub fn row(event: Event, seq: i64) -> EventRow {
    let payload = event.encode_to_vec();
    let body_kind = match &event.body {
        Some(Body::Access(_)) => "access",
        Some(Body::Door(_)) => "door",
        Some(Body::Vehicle(_)) => "vehicle",
        Some(Body::Intercom(_)) => "intercom",
        Some(Body::Fire(_)) => "fire",
        Some(Body::Point(_)) => "point",
        Some(Body::Status(_)) => "status",
        None => "none",
    };
    EventRow {
        device_kind: queries::device_kind_name(event.device_kind),
        gateway_id: event.gateway_id,
        seq,
        event_id: event.event_id,
        estate_id: event.estate_id,
        device_id: event.device_id,
        area: event.area,
        occurred_at_ms: event.occurred_at_ms,
        received_at_ms: event.received_at_ms,
        body_kind,
        payload,
    }
}
