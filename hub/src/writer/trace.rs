//! The writer's trace spans (only when OpenTelemetry export is on): `hub.ingest` per traced
//! event until its commit, `hub.alarm` per alarm change under it.

use gatehouse_proto::Event;

use crate::alarms::rules::AlarmChange;

/// `hub.ingest` for a traced event, a child of the context it carries; `Span::none()` when
/// export is off or the event carries no context.
pub(super) fn trace_span(event: &Event) -> tracing::Span {
    if !crate::telemetry::enabled() || event.trace_context.is_empty() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(target: "gatehouse_hub::ingest", "hub.ingest",
        gateway = %event.gateway_id, seq = event.seq, device = %event.device_id, committed = tracing::field::Empty);
    crate::telemetry::set_parent(&span, &event.trace_context);
    span
}

/// `hub.alarm`, a child of an event's `hub.ingest` span, around one alarm change.
pub(super) fn alarm_span(parent: &tracing::Span, change: &AlarmChange) -> tracing::Span {
    if parent.is_none() {
        return tracing::Span::none();
    }
    let what = match change {
        AlarmChange::Activate(_) => "activate",
        AlarmChange::Value { .. } => "value",
        AlarmChange::Clear { .. } => "clear",
        AlarmChange::Acknowledge { .. } => "acknowledge",
    };
    let key = change.key();
    tracing::info_span!(target: "gatehouse_hub::alarms", parent: parent, "hub.alarm",
        change = what, estate = %key.estate, device = %key.device,
        // An emergency call's condition names a flat: never in a log or a trace in clear.
        condition = %crate::privacy::log_condition(&key.condition))
}
