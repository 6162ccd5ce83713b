//! Pure translation of MQTT device-profile v1 payloads (docs/design.md, MQTT device
//! profile) into canonical event bodies. No I/O here: table-tested below, and fed anything
//! the network sends.

use gatehouse_proto as pb;
use serde::Deserialize;
use serde_json::Value;

use crate::{
    metrics::RejectReason,
    registry::{DeviceInfo, DeviceKind},
};

/// Why a publish was not turned into an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason:?}: {detail}")]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
}

impl Reject {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// What a topic under `gatehouse/v1/` is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    Event,
    Status,
    CommandResult,
}

/// Splits `gatehouse/v1/<device_id>/<event|status|command/result>`.
pub fn parse_topic(topic: &str) -> Result<(&str, TopicKind), Reject> {
    let rest = topic.strip_prefix("gatehouse/v1/").ok_or_else(|| {
        Reject::new(
            RejectReason::BadTopic,
            format!("topic {topic:?} is outside gatehouse/v1/"),
        )
    })?;
    let (device, tail) = rest
        .split_once('/')
        .ok_or_else(|| Reject::new(RejectReason::BadTopic, format!("topic {topic:?} has no device level")))?;
    let kind = match tail {
        "event" => TopicKind::Event,
        "status" => TopicKind::Status,
        "command/result" => TopicKind::CommandResult,
        _ => {
            return Err(Reject::new(
                RejectReason::BadTopic,
                format!("topic {topic:?}: unknown suffix {tail:?}"),
            ));
        }
    };
    if device.is_empty() {
        return Err(Reject::new(
            RejectReason::BadTopic,
            format!("topic {topic:?} has an empty device id"),
        ));
    }
    Ok((device, kind))
}

/// Translates an event payload from `device`. Returns the occurred-at time (the payload's
/// `ts`, else `received_ms`) and the body.
pub fn translate_event(
    device: &DeviceInfo,
    payload: &[u8],
    received_ms: i64,
    max_payload: usize,
) -> Result<(i64, pb::event::Body), Reject> {
    if payload.len() > max_payload {
        return Err(Reject::new(
            RejectReason::Oversized,
            format!(
                "payload of {} bytes exceeds the {max_payload}-byte limit",
                payload.len()
            ),
        ));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| Reject::new(RejectReason::MalformedJson, e.to_string()))?;
    translate_value(device, &value, received_ms)
}

/// Translates a parsed profile object from `device` (a publish's payload, or what a vendor
/// mapping made of a vendor payload). Returns the occurred-at time and the body.
pub fn translate_value(device: &DeviceInfo, value: &Value, received_ms: i64) -> Result<(i64, pb::event::Body), Reject> {
    let Value::Object(map) = value else {
        return Err(Reject::new(RejectReason::MalformedJson, "payload is not a JSON object"));
    };
    let ty = match map.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(Reject::new(RejectReason::WrongFieldType, "\"type\" must be a string")),
        None => return Err(Reject::new(RejectReason::WrongFieldType, "missing \"type\"")),
    };
    let occurred_ms = match map.get("ts") {
        None | Some(Value::Null) => received_ms,
        Some(Value::String(ts)) => chrono::DateTime::parse_from_rfc3339(ts)
            .map_err(|e| {
                Reject::new(
                    RejectReason::WrongFieldType,
                    format!("\"ts\" {ts:?} is not RFC 3339: {e}"),
                )
            })?
            .timestamp_millis(),
        Some(_) => {
            return Err(Reject::new(
                RejectReason::WrongFieldType,
                "\"ts\" must be an RFC 3339 string",
            ));
        }
    };
    if !known_types(device.kind).contains(&ty) {
        return Err(Reject::new(
            RejectReason::UnknownType,
            format!("type {ty:?} is not one a {:?} device sends", device.kind),
        ));
    }
    let wrong = |e: serde_json::Error| Reject::new(RejectReason::WrongFieldType, format!("type {ty:?}: {e}"));
    let body = match device.kind {
        DeviceKind::Door => door(DoorPayload::deserialize(value).map_err(wrong)?),
        DeviceKind::Intercom => intercom(IntercomPayload::deserialize(value).map_err(wrong)?),
        DeviceKind::FirePanel => fire(FirePayload::deserialize(value).map_err(wrong)?),
        DeviceKind::Modbus => {
            return Err(Reject::new(
                RejectReason::UnknownType,
                "a Modbus device does not publish MQTT events",
            ));
        }
    };
    Ok((occurred_ms, body))
}

/// Translates a retained `online`/`offline` status payload.
pub fn translate_status(payload: &[u8]) -> Result<pb::event::Body, Reject> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| Reject::new(RejectReason::MalformedJson, "status payload is not UTF-8"))?
        .trim();
    let online = if text.eq_ignore_ascii_case("online") {
        true
    } else if text.eq_ignore_ascii_case("offline") {
        false
    } else {
        return Err(Reject::new(
            RejectReason::WrongFieldType,
            format!("status {text:?} is neither online nor offline"),
        ));
    };
    Ok(pb::event::Body::Status(pb::DeviceStatus {
        online,
        reason: if online {
            "device reported online"
        } else {
            "device reported offline"
        }
        .into(),
    }))
}

/// A device's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommandReply {
    pub command_id: String,
    pub ok: bool,
    #[serde(default)]
    pub message: String,
}

pub fn translate_command_result(payload: &[u8]) -> Result<CommandReply, Reject> {
    serde_json::from_slice(payload)
        .map_err(|e| Reject::new(RejectReason::MalformedJson, format!("command result: {e}")))
}

/// The JSON a device receives on its command topic.
pub fn encode_command(command: &pb::Command) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    for (k, v) in &command.arguments {
        map.insert(k.clone(), Value::String(v.clone()));
    }
    map.insert("command_id".into(), Value::String(command.command_id.clone()));
    map.insert("action".into(), Value::String(command.action.clone()));
    serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
}

fn known_types(kind: DeviceKind) -> &'static [&'static str] {
    match kind {
        DeviceKind::Door => &["access", "door_forced", "door_held_open", "tamper", "vehicle"],
        DeviceKind::Intercom => &[
            "call_started",
            "call_answered",
            "call_ended",
            "door_release",
            "emergency_call",
        ],
        DeviceKind::FirePanel => &[
            "fire_alarm",
            "pre_alarm",
            "fault",
            "supervisory",
            "disablement",
            "enablement",
            "reset",
            "evacuate",
            "silence",
        ],
        DeviceKind::Modbus => &[],
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Granted {
    Granted,
    Denied,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum InOut {
    In,
    Out,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DoorPayload {
    Access {
        door: String,
        result: Granted,
        credential: String,
        #[serde(default)]
        reason: Option<String>,
    },
    DoorForced {
        door: String,
    },
    DoorHeldOpen {
        door: String,
        seconds: u32,
    },
    Tamper {
        #[serde(default)]
        door: Option<String>,
    },
    Vehicle {
        lane: String,
        plate: String,
        direction: InOut,
        resident: bool,
        #[serde(default)]
        pass: Option<String>,
    },
}

fn door(p: DoorPayload) -> pb::event::Body {
    use pb::event::Body;
    let door_event = |ty: pb::DoorEventType, door: String, seconds: u32| {
        Body::Door(pb::DoorEvent {
            r#type: ty as i32,
            door,
            seconds,
        })
    };
    match p {
        DoorPayload::Access {
            door,
            result,
            credential,
            reason,
        } => Body::Access(pb::AccessEvent {
            door,
            result: match result {
                Granted::Granted => pb::AccessResult::Granted,
                Granted::Denied => pb::AccessResult::Denied,
            } as i32,
            credential,
            reason: reason.unwrap_or_default(),
        }),
        DoorPayload::DoorForced { door } => door_event(pb::DoorEventType::Forced, door, 0),
        DoorPayload::DoorHeldOpen { door, seconds } => door_event(pb::DoorEventType::HeldOpen, door, seconds),
        DoorPayload::Tamper { door } => door_event(pb::DoorEventType::Tamper, door.unwrap_or_default(), 0),
        DoorPayload::Vehicle {
            lane,
            plate,
            direction,
            resident,
            pass,
        } => Body::Vehicle(pb::VehicleEvent {
            lane,
            plate,
            direction: match direction {
                InOut::In => pb::Direction::In,
                InOut::Out => pb::Direction::Out,
            } as i32,
            resident,
            pass: pass.unwrap_or_default(),
        }),
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum IntercomPayload {
    CallStarted {
        call_id: String,
        from: String,
        to: String,
    },
    CallAnswered {
        call_id: String,
    },
    CallEnded {
        call_id: String,
        seconds: u32,
    },
    DoorRelease {
        #[serde(default)]
        call_id: Option<String>,
        door: String,
    },
    EmergencyCall {
        from: String,
    },
}

fn intercom(p: IntercomPayload) -> pb::event::Body {
    use pb::IntercomEventType as T;
    let mut e = pb::IntercomEvent::default();
    let ty = match p {
        IntercomPayload::CallStarted { call_id, from, to } => {
            (e.call_id, e.from, e.to) = (call_id, from, to);
            T::CallStarted
        }
        IntercomPayload::CallAnswered { call_id } => {
            e.call_id = call_id;
            T::CallAnswered
        }
        IntercomPayload::CallEnded { call_id, seconds } => {
            (e.call_id, e.seconds) = (call_id, seconds);
            T::CallEnded
        }
        IntercomPayload::DoorRelease { call_id, door } => {
            (e.call_id, e.door) = (call_id.unwrap_or_default(), door);
            T::DoorRelease
        }
        IntercomPayload::EmergencyCall { from } => {
            e.from = from;
            T::EmergencyCall
        }
    };
    e.r#type = ty as i32;
    pb::event::Body::Intercom(e)
}

/// Fire-panel fields; `zone` is required, the others optional. Numbers are accepted for
/// loop/zone/point because panels number them.
#[derive(Deserialize)]
struct FirePayload {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default, rename = "loop")]
    fire_loop: Option<Label>,
    zone: Label,
    #[serde(default)]
    point: Option<Label>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Label {
    Text(String),
    Number(u64),
}

impl Label {
    fn into_string(self) -> String {
        match self {
            Label::Text(s) => s,
            Label::Number(n) => n.to_string(),
        }
    }
}

fn fire(p: FirePayload) -> pb::event::Body {
    use pb::FireEventType as T;
    let ty = match p.ty.as_str() {
        "fire_alarm" => T::FireAlarm,
        "pre_alarm" => T::PreAlarm,
        "fault" => T::Fault,
        "supervisory" => T::Supervisory,
        "disablement" => T::Disablement,
        "enablement" => T::Enablement,
        "reset" => T::Reset,
        "evacuate" => T::Evacuate,
        "silence" => T::Silence,
        // known_types() has already refused anything else.
        _ => T::Unspecified,
    };
    pb::event::Body::Fire(pb::FireEvent {
        r#type: ty as i32,
        r#loop: p.fire_loop.map(Label::into_string).unwrap_or_default(),
        zone: p.zone.into_string(),
        point: p.point.map(Label::into_string).unwrap_or_default(),
        text: p.text.unwrap_or_default(),
        raw_code: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::event::Body;

    fn dev(kind: DeviceKind) -> DeviceInfo {
        DeviceInfo {
            id: "d1".into(),
            kind,
            area: "main-gate".into(),
        }
    }

    fn ok(kind: DeviceKind, json: &str) -> (i64, Body) {
        translate_event(&dev(kind), json.as_bytes(), 1_000, 16 * 1024).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn err(kind: DeviceKind, json: &[u8]) -> RejectReason {
        match translate_event(&dev(kind), json, 1_000, 64) {
            Ok(b) => panic!("{:?} was accepted as {b:?}", String::from_utf8_lossy(json)),
            Err(r) => r.reason,
        }
    }

    #[test]
    fn door_controller_payloads_translate_to_their_bodies() {
        let (ts, b) = ok(
            DeviceKind::Door,
            r#"{"type":"door_forced","door":"D1","ts":"2026-11-26T03:00:00+08:00"}"#,
        );
        let utc = chrono::DateTime::parse_from_rfc3339("2026-11-25T19:00:00Z").expect("valid");
        assert_eq!(ts, utc.timestamp_millis(), "ts is read with its offset");
        assert_eq!(
            b,
            Body::Door(pb::DoorEvent {
                r#type: pb::DoorEventType::Forced as i32,
                door: "D1".into(),
                seconds: 0
            })
        );
        let (ts, b) = ok(
            DeviceKind::Door,
            r#"{"type":"access","door":"D1","result":"denied","credential":"12345678","reason":"expired"}"#,
        );
        assert_eq!(ts, 1_000, "without ts the receive time stands in");
        let Body::Access(a) = b else { panic!("{b:?}") };
        assert_eq!(
            (a.result, a.credential.as_str(), a.reason.as_str()),
            (pb::AccessResult::Denied as i32, "12345678", "expired")
        );
        let (_, b) = ok(
            DeviceKind::Door,
            r#"{"type":"door_held_open","door":"D2","seconds":95}"#,
        );
        assert!(matches!(b, Body::Door(d) if d.seconds == 95 && d.r#type == pb::DoorEventType::HeldOpen as i32));
        let (_, b) = ok(DeviceKind::Door, r#"{"type":"tamper"}"#);
        assert!(matches!(b, Body::Door(d) if d.r#type == pb::DoorEventType::Tamper as i32 && d.door.is_empty()));
        let (_, b) = ok(
            DeviceKind::Door,
            r#"{"type":"vehicle","lane":"in-1","plate":"沪A12345","direction":"in","resident":false,"pass":"V-77"}"#,
        );
        assert!(
            matches!(b, Body::Vehicle(v) if v.plate == "沪A12345" && !v.resident && v.pass == "V-77" && v.direction == pb::Direction::In as i32)
        );
    }

    #[test]
    fn intercom_payloads_translate_to_their_bodies() {
        let cases: &[(&str, pb::IntercomEventType)] = &[
            (
                r#"{"type":"call_started","call_id":"c1","from":"B3-1201","to":"gate"}"#,
                pb::IntercomEventType::CallStarted,
            ),
            (
                r#"{"type":"call_answered","call_id":"c1"}"#,
                pb::IntercomEventType::CallAnswered,
            ),
            (
                r#"{"type":"call_ended","call_id":"c1","seconds":42}"#,
                pb::IntercomEventType::CallEnded,
            ),
            (
                r#"{"type":"door_release","door":"B3-lobby"}"#,
                pb::IntercomEventType::DoorRelease,
            ),
            (
                r#"{"type":"emergency_call","from":"B3-1201"}"#,
                pb::IntercomEventType::EmergencyCall,
            ),
        ];
        for (json, ty) in cases {
            let (_, b) = ok(DeviceKind::Intercom, json);
            assert!(
                matches!(b, Body::Intercom(ref i) if i.r#type == *ty as i32),
                "{json} gave {b:?}"
            );
        }
    }

    #[test]
    fn fire_panel_payloads_keep_loop_zone_and_point() {
        for ty in known_types(DeviceKind::FirePanel) {
            let json = format!(r#"{{"type":"{ty}","loop":2,"zone":"17","point":"5","text":"Block 3 lobby"}}"#);
            let (_, b) = ok(DeviceKind::FirePanel, &json);
            let Body::Fire(f) = b else { panic!("{b:?}") };
            assert_ne!(f.r#type, pb::FireEventType::Unspecified as i32, "{ty}");
            assert_eq!((f.r#loop.as_str(), f.zone.as_str(), f.point.as_str()), ("2", "17", "5"));
        }
    }

    #[test]
    fn bad_payloads_are_rejected_with_their_reason() {
        use RejectReason::*;
        let cases: &[(DeviceKind, &[u8], RejectReason)] = &[
            (DeviceKind::Door, b"{not json", MalformedJson),
            (DeviceKind::Door, b"[1,2]", MalformedJson),
            (DeviceKind::Door, &[0xff, 0xfe, 0x00], MalformedJson),
            (DeviceKind::Door, br#"{"door":"D1"}"#, WrongFieldType),
            (DeviceKind::Door, br#"{"type":7}"#, WrongFieldType),
            (DeviceKind::Door, br#"{"type":"explode"}"#, UnknownType),
            (DeviceKind::Door, br#"{"type":"fire_alarm","zone":"1"}"#, UnknownType),
            (DeviceKind::Door, br#"{"type":"door_forced","door":5}"#, WrongFieldType),
            (
                DeviceKind::Door,
                br#"{"type":"door_held_open","door":"D","seconds":-3}"#,
                WrongFieldType,
            ),
            (
                DeviceKind::Door,
                br#"{"type":"access","door":"D","result":"maybe","credential":"1"}"#,
                WrongFieldType,
            ),
            (
                DeviceKind::Door,
                br#"{"type":"tamper","ts":"yesterday"}"#,
                WrongFieldType,
            ),
            (DeviceKind::FirePanel, br#"{"type":"fire_alarm"}"#, WrongFieldType),
            (
                DeviceKind::Intercom,
                br#"{"type":"call_ended","call_id":"c"}"#,
                WrongFieldType,
            ),
            (DeviceKind::Door, &[b' '; 65], Oversized),
        ];
        for (kind, json, want) in cases {
            assert_eq!(err(*kind, json), *want, "{:?}", String::from_utf8_lossy(json));
        }
    }

    #[test]
    fn topics_split_into_device_and_kind() {
        assert_eq!(
            parse_topic("gatehouse/v1/door-1/event"),
            Ok(("door-1", TopicKind::Event))
        );
        assert_eq!(
            parse_topic("gatehouse/v1/door-1/status"),
            Ok(("door-1", TopicKind::Status))
        );
        assert_eq!(
            parse_topic("gatehouse/v1/door-1/command/result"),
            Ok(("door-1", TopicKind::CommandResult))
        );
        for bad in [
            "other/door/event",
            "gatehouse/v1/door-1",
            "gatehouse/v1//event",
            "gatehouse/v1/d/command",
        ] {
            assert_eq!(
                parse_topic(bad).map_err(|r| r.reason),
                Err(RejectReason::BadTopic),
                "{bad}"
            );
        }
    }

    #[test]
    fn status_and_command_results_parse() {
        assert!(matches!(translate_status(b" online\n"), Ok(Body::Status(s)) if s.online));
        assert!(matches!(translate_status(b"OFFLINE"), Ok(Body::Status(s)) if !s.online));
        assert!(translate_status(b"maybe").is_err());
        let r = translate_command_result(br#"{"command_id":"k1","ok":false,"message":"jammed"}"#).expect("valid");
        assert_eq!(
            r,
            CommandReply {
                command_id: "k1".into(),
                ok: false,
                message: "jammed".into()
            }
        );
        assert!(translate_command_result(b"{}").is_err());
    }

    #[test]
    fn commands_encode_with_their_arguments() {
        let cmd = pb::Command {
            command_id: "k1".into(),
            device_id: "d1".into(),
            action: "unlock".into(),
            arguments: [("door".to_string(), "D1".to_string())].into(),
            deadline_ms: 0,
        };
        let v: Value = serde_json::from_slice(&encode_command(&cmd)).expect("json");
        assert_eq!(v, serde_json::json!({"command_id":"k1","action":"unlock","door":"D1"}));
    }
}
