//! The length of every text field of an incoming event (issue 12 §3): the ids the gateway
//! takes from its own configuration (event, gateway, estate, device) at most
//! [`MAX_ID_BYTES`], as in Hello; every text a device supplies (names, codes, panel texts)
//! at most [`MAX_TEXT_BYTES`], the gateway's default MQTT payload limit, so that no event a
//! gateway with default limits accepts from a device is refused here (it would otherwise sit
//! at the head of its outbox); the trace context small. A batch with one field over its bound
//! is rejected whole (`REJECTION_REASON_FIELD_TOO_LONG`) and nothing of it stored; so is a
//! batch with a NUL character in any text (PostgreSQL stores none). Every body
//! is destructured field by field, so a field added to the proto does not compile here until
//! it has a bound.

use gatehouse_proto::{
    AccessEvent, DeviceStatus, DoorEvent, Event, FireEvent, IntercomEvent, PointReading, VehicleEvent, event::Body,
};

/// Ids from the gateway's configuration: event, gateway, estate, device ids.
pub const MAX_ID_BYTES: usize = 128;
/// Texts from devices: doors, areas, lanes, zones, reasons, panel texts, units, card and
/// plate numbers, codes (16 KiB: `mqtt.max_payload_bytes`' default at the gateway).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Entries of the W3C trace context (traceparent, tracestate).
pub const MAX_TRACE_ENTRIES: usize = 4;
/// Keys and values of the trace context (tracestate may be up to 512 bytes).
pub const MAX_TRACE_BYTES: usize = 512;

/// Which field of an event is refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    pub field: &'static str,
    pub len: usize,
    pub max: usize,
    /// The field holds a NUL character: no text column stores one (PostgreSQL refuses it),
    /// so the batch is refused as a whole, like an over-long field, instead of failing the
    /// writer's transaction again on every resend.
    pub nul: bool,
}

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.nul {
            return write!(f, "{} holds a NUL character", self.field);
        }
        write!(f, "{} is {} bytes; at most {}", self.field, self.len, self.max)
    }
}

fn bound(field: &'static str, value: &str, max: usize) -> Result<(), TooLong> {
    let nul = value.contains('\0');
    if value.len() > max || nul {
        return Err(TooLong {
            field,
            len: value.len(),
            max,
            nul,
        });
    }
    Ok(())
}

/// Checks every text field of `event`.
pub fn check_event(event: &Event) -> Result<(), TooLong> {
    let Event {
        event_id,
        seq: _,
        gateway_id,
        estate_id,
        device_id,
        device_kind: _,
        area,
        occurred_at_ms: _,
        received_at_ms: _,
        trace_context,
        body,
    } = event;
    bound("event_id", event_id, MAX_ID_BYTES)?;
    bound("gateway_id", gateway_id, MAX_ID_BYTES)?;
    bound("estate_id", estate_id, MAX_ID_BYTES)?;
    bound("device_id", device_id, MAX_ID_BYTES)?;
    bound("area", area, MAX_TEXT_BYTES)?;
    if trace_context.len() > MAX_TRACE_ENTRIES {
        return Err(TooLong {
            field: "trace_context (entries)",
            len: trace_context.len(),
            max: MAX_TRACE_ENTRIES,
            nul: false,
        });
    }
    for (k, v) in trace_context {
        bound("trace_context key", k, MAX_TRACE_BYTES)?;
        bound("trace_context value", v, MAX_TRACE_BYTES)?;
    }
    match body {
        None => Ok(()),
        Some(Body::Access(AccessEvent {
            door,
            result: _,
            credential,
            reason,
        })) => {
            bound("access.door", door, MAX_TEXT_BYTES)?;
            bound("access.credential", credential, MAX_TEXT_BYTES)?;
            bound("access.reason", reason, MAX_TEXT_BYTES)
        }
        Some(Body::Door(DoorEvent {
            r#type: _,
            door,
            seconds: _,
        })) => bound("door.door", door, MAX_TEXT_BYTES),
        Some(Body::Vehicle(VehicleEvent {
            lane,
            plate,
            direction: _,
            resident: _,
            pass,
        })) => {
            bound("vehicle.lane", lane, MAX_TEXT_BYTES)?;
            bound("vehicle.plate", plate, MAX_TEXT_BYTES)?;
            bound("vehicle.pass", pass, MAX_TEXT_BYTES)
        }
        Some(Body::Intercom(IntercomEvent {
            r#type: _,
            call_id,
            from,
            to,
            seconds: _,
            door,
        })) => {
            bound("intercom.call_id", call_id, MAX_TEXT_BYTES)?;
            bound("intercom.from", from, MAX_TEXT_BYTES)?;
            bound("intercom.to", to, MAX_TEXT_BYTES)?;
            bound("intercom.door", door, MAX_TEXT_BYTES)
        }
        Some(Body::Fire(FireEvent {
            r#type: _,
            r#loop,
            zone,
            point,
            text,
            raw_code,
        })) => {
            bound("fire.loop", r#loop, MAX_TEXT_BYTES)?;
            bound("fire.zone", zone, MAX_TEXT_BYTES)?;
            bound("fire.point", point, MAX_TEXT_BYTES)?;
            bound("fire.text", text, MAX_TEXT_BYTES)?;
            bound("fire.raw_code", raw_code, MAX_TEXT_BYTES)
        }
        Some(Body::Point(PointReading {
            point,
            value: _,
            unit,
            quality: _,
            refresh: _,
        })) => {
            bound("point.point", point, MAX_TEXT_BYTES)?;
            bound("point.unit", unit, MAX_TEXT_BYTES)
        }
        Some(Body::Status(DeviceStatus { online: _, reason })) => bound("status.reason", reason, MAX_TEXT_BYTES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_over_its_bound_is_named() {
        let mut e = Event {
            body: Some(Body::Door(DoorEvent {
                door: "d".repeat(MAX_TEXT_BYTES),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(check_event(&e), Ok(()));
        e.body = Some(Body::Door(DoorEvent {
            door: "d".repeat(MAX_TEXT_BYTES + 1),
            ..Default::default()
        }));
        assert_eq!(check_event(&e).map_err(|t| t.field), Err("door.door"));
        e.body = None;
        e.device_id = "x".repeat(MAX_ID_BYTES + 1);
        assert_eq!(check_event(&e).map_err(|t| t.field), Err("device_id"));
    }

    #[test]
    fn a_nul_character_is_refused_by_name() {
        let e = Event {
            event_id: "a\0b".into(),
            ..Default::default()
        };
        let refused = check_event(&e).expect_err("a NUL is refused");
        assert_eq!((refused.field, refused.nul), ("event_id", true));
        assert_eq!(refused.to_string(), "event_id holds a NUL character");
    }
}
