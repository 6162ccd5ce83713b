//! MQTT device profile v1 and vendor JSON: profile payloads built from arbitrary field
//! values translate to exactly those values; arbitrary bytes and arbitrary JSON are
//! either translated into the device kind's own bodies or refused with a reason; topics
//! split only into what they were joined from; the shipped vendor mappings
//! (`deploy/vendor/`) survive any mutation of their documented payloads.

use std::path::Path;

use gatehouse_gateway::{
    adapters::mqtt::{
        translate::{self, TopicKind},
        vendor::{self, VendorRouter},
    },
    config::Config,
    metrics::RejectReason,
    registry::{DeviceInfo, DeviceKind, Registry},
};
use gatehouse_proto::{self as pb, event::Body};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::cases;

const MAX_PAYLOAD: usize = 16 * 1024;

fn dev(kind: DeviceKind) -> DeviceInfo {
    DeviceInfo {
        id: "d1".into(),
        kind,
        area: "main-gate".into(),
    }
}

fn kind() -> impl Strategy<Value = DeviceKind> {
    prop_oneof![
        Just(DeviceKind::Door),
        Just(DeviceKind::Intercom),
        Just(DeviceKind::FirePanel),
        Just(DeviceKind::Modbus)
    ]
}

/// Whether `body` is one a device of `kind` may produce.
fn body_fits(kind: DeviceKind, body: &Body) -> bool {
    matches!(
        (kind, body),
        (DeviceKind::Door, Body::Access(_) | Body::Door(_) | Body::Vehicle(_))
            | (DeviceKind::Intercom, Body::Intercom(_))
            | (DeviceKind::FirePanel, Body::Fire(_))
    )
}

/// Any JSON value, nested a few levels, with the profile's keys likely among the keys.
pub fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => "[a-z_\\-]{1,12}",
        2 => prop::sample::select(vec![
            "type", "ts", "door", "result", "credential", "reason", "seconds", "lane", "plate",
            "direction", "resident", "pass", "call_id", "from", "to", "zone", "loop", "point", "text",
        ]).prop_map(String::from),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,16}".prop_map(Value::from),
        prop::sample::select(vec![
            "access",
            "door_forced",
            "door_held_open",
            "tamper",
            "vehicle",
            "call_started",
            "call_ended",
            "emergency_call",
            "fire_alarm",
            "reset",
            "granted",
            "denied",
            "in",
            "out",
            "2026-11-26T03:00:00+08:00",
            "online",
            "",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `v` with the value at a chosen place replaced (or removed, or a new key added).
pub fn mutate(v: &mut Value, at: &prop::sample::Index, with: Value, op: u8) {
    let mut places: Vec<Vec<String>> = Vec::new();
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    path.push(k.clone());
                    walk(c, path, out);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    path.push(i.to_string());
                    walk(c, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    walk(v, &mut Vec::new(), &mut places);
    let path = places[at.index(places.len())].clone();
    let Some((last, parent)) = path.split_last() else {
        *v = with;
        return;
    };
    let mut node = &mut *v;
    for key in parent {
        node = match node {
            Value::Object(m) => m.get_mut(key).expect("walked"),
            Value::Array(a) => a.get_mut(key.parse::<usize>().expect("index")).expect("walked"),
            _ => return,
        };
    }
    match (node, op % 3) {
        (Value::Object(m), 0) => {
            m.remove(last);
        }
        (Value::Object(m), 1) => {
            m.insert(format!("{last}-x"), with);
        }
        (Value::Object(m), _) => {
            m.insert(last.clone(), with);
        }
        (Value::Array(a), _) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *slot = with;
            }
        }
        _ => {}
    }
}

/// The gateway configuration of `tests/vendor_mappings.rs`: three vendor devices and
/// every mapping shipped in `deploy/vendor/`.
fn vendor_config() -> Config {
    let mut text = String::from(
        r#"
[gateway]
id = "gw-vendor"
estate = "estate-a"
data_dir = "/nonexistent/fuzz"
hubs = ["http://127.0.0.1:1"]

[uplink]
plaintext = true

[mqtt]
listen = "127.0.0.1:0"
allow_anonymous = true

[[devices]]
id = "door-east"
kind = "door"
area = "east-gate"
[devices.vendor]
mapping = "uhppoted-mqtt"
topic = "uhppoted/gateway/events"
device_key = "405419896"

[[devices]]
id = "door-lobby-b3"
kind = "door"
area = "block-3-lobby"
[devices.vendor]
mapping = "hikvision-isapi-acs"
topic = "hikvision/acs/events"
device_key = "192.168.1.64"
"#,
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/vendor");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("deploy/vendor exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for f in files {
        text.push('\n');
        text.push_str(&std::fs::read_to_string(f).expect("readable"));
    }
    Config::from_toml(&text).unwrap_or_else(|e| panic!("the shipped vendor mappings load: {e}"))
}

/// The documented payloads of the shipped mappings (as in `tests/vendor_mappings.rs`).
fn vendor_seeds() -> Vec<(&'static str, Value)> {
    vec![
        (
            "uhppoted/gateway/events",
            json!({"message": {"event": {
                "access-granted": true, "card-number": 8165538, "device-id": 405419896,
                "direction": 1, "direction-text": "in", "door-id": 3, "event-id": 69,
                "event-reason": 1, "event-reason-text": "swipe", "event-type": 1,
                "event-type-text": "card swipe", "timestamp": "2021-08-10 10:28:32 PDT"
            }}}),
        ),
        (
            "uhppoted/gateway/events",
            json!({"message": {"event": {"device-id": 405419896, "door-id": 2, "event-reason": 38, "event-type": 3}}}),
        ),
        (
            "hikvision/acs/events",
            json!({
                "ipAddress": "192.168.1.64", "portNo": 80, "dateTime": "2026-11-26T02:47:00+08:00",
                "eventType": "AccessControllerEvent", "eventState": "active",
                "AccessControllerEvent": {"majorEventType": 5, "subEventType": 1, "cardNo": "1234567",
                    "employeeNoString": "E17", "doorNo": 1, "serialNo": 1418}
            }),
        ),
        (
            "hikvision/acs/events",
            json!({
                "ipAddress": "192.168.1.64", "dateTime": "2026-11-26T02:47:00+08:00",
                "eventType": "AccessControllerEvent",
                "AccessControllerEvent": {"majorEventType": 5, "subEventType": 9, "cardNo": "99", "doorNo": 2}
            }),
        ),
    ]
}

/// Routes and translates a vendor publish as the intake does; every refusal has a reason
/// and a success is a door body from the device bound to the topic.
fn vendor_publish(
    router: &VendorRouter,
    registry: &Registry,
    topic: &str,
    payload: &Value,
) -> Result<(), TestCaseError> {
    let Ok((binding, mapping)) = router.route(topic, payload) else {
        return Ok(());
    };
    let device = registry
        .get(&binding.device_id)
        .ok_or_else(|| TestCaseError::fail("a bound device is registered"))?;
    let _ = mapping.to_profile(payload);
    if let Ok((_, body)) = vendor::translate(mapping, device, payload, 1_000) {
        prop_assert!(body_fits(device.kind, &body), "{:?} from {}", body, payload);
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_bytes_are_translated_or_refused_with_a_reason(kind in kind(), bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        match translate::translate_event(&dev(kind), &bytes, 1_000, 128) {
            Ok((_, body)) => prop_assert!(body_fits(kind, &body)),
            Err(r) => prop_assert!(RejectReason::ALL.contains(&r.reason) && !r.detail.is_empty()),
        }
        let _ = translate::translate_status(&bytes);
        let _ = translate::translate_command_result(&bytes);
    }

    #[test]
    fn arbitrary_json_is_translated_only_into_the_kinds_bodies(kind in kind(), v in json_value(), ty in prop::sample::select(vec![
        "access", "door_forced", "door_held_open", "tamper", "vehicle", "call_started", "call_answered",
        "call_ended", "door_release", "emergency_call", "fire_alarm", "fault", "reset", "silence",
    ])) {
        // Half the time, the object names a real type so the field checks are reached.
        let mut v = v;
        if let Value::Object(m) = &mut v { m.insert("type".into(), Value::from(ty)); }
        let bytes = serde_json::to_vec(&v).expect("serializes");
        for value in [&v, &serde_json::from_slice::<Value>(&bytes).expect("parses back")] {
            if let Ok((_, body)) = translate::translate_value(&dev(kind), value, 1_000) {
                prop_assert!(body_fits(kind, &body), "{:?} from {}", body, value);
            }
        }
        match translate::translate_event(&dev(kind), &bytes, 1_000, MAX_PAYLOAD) {
            Ok((_, body)) => prop_assert!(body_fits(kind, &body)),
            Err(r) => prop_assert!(RejectReason::ALL.contains(&r.reason)),
        }
    }

    #[test]
    fn access_and_vehicle_payloads_keep_their_values(
        door in "\\PC{0,40}", credential in "\\PC{0,24}", reason in proptest::option::of("\\PC{0,40}"),
        granted in any::<bool>(), plate in "\\PC{0,16}", lane in "\\PC{0,8}", resident in any::<bool>(),
        ts in proptest::option::of(0i64..4_102_444_800),
    ) {
        let mut access = json!({"type": "access", "door": door, "result": if granted { "granted" } else { "denied" }, "credential": credential});
        if let Some(r) = &reason { access["reason"] = json!(r); }
        if let Some(s) = ts {
            access["ts"] = json!(chrono::DateTime::from_timestamp(s, 0).expect("in range").to_rfc3339());
        }
        let (at, body) = translate::translate_event(&dev(DeviceKind::Door), &serde_json::to_vec(&access).expect("json"), 1_000, MAX_PAYLOAD)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(at, ts.map_or(1_000, |s| s * 1000));
        prop_assert_eq!(body, Body::Access(pb::AccessEvent {
            door: door.clone(),
            result: if granted { pb::AccessResult::Granted } else { pb::AccessResult::Denied } as i32,
            credential,
            reason: reason.unwrap_or_default(),
        }));
        let vehicle = json!({"type": "vehicle", "lane": lane, "plate": plate, "direction": "out", "resident": resident});
        let (_, body) = translate::translate_event(&dev(DeviceKind::Door), vehicle.to_string().as_bytes(), 1_000, MAX_PAYLOAD)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(body, Body::Vehicle(pb::VehicleEvent {
            lane, plate, direction: pb::Direction::Out as i32, resident, pass: String::new(),
        }));
    }

    #[test]
    fn fire_payloads_keep_zone_loop_and_point_as_text(zone in any::<u64>(), point in "\\PC{0,12}", text in "\\PC{0,60}") {
        let v = json!({"type": "fire_alarm", "zone": zone, "loop": "L1", "point": point, "text": text});
        let (_, body) = translate::translate_value(&dev(DeviceKind::FirePanel), &v, 1_000)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Body::Fire(f) = body else { return Err(TestCaseError::fail("not a fire body")) };
        prop_assert_eq!(
            (f.r#type, f.zone, f.r#loop.as_str(), f.point, f.text),
            (pb::FireEventType::FireAlarm as i32, zone.to_string(), "L1", point, text)
        );
    }

    #[test]
    fn topics_split_into_what_they_were_joined_from(device in "[^/#+]{0,20}", suffix in prop::sample::select(vec!["event", "status", "command/result", "command", "", "event/x"]), topic in "\\PC{0,40}") {
        let joined = format!("gatehouse/v1/{device}/{suffix}");
        match translate::parse_topic(&joined) {
            Ok((d, k)) => {
                prop_assert_eq!(d, device.as_str());
                let want = match k { TopicKind::Event => "event", TopicKind::Status => "status", TopicKind::CommandResult => "command/result" };
                prop_assert_eq!(want, suffix);
            }
            Err(r) => {
                prop_assert_eq!(r.reason, RejectReason::BadTopic);
                prop_assert!(device.is_empty() || !matches!(suffix, "event" | "status" | "command/result"));
            }
        }
        if let Ok((d, _)) = translate::parse_topic(&topic) {
            prop_assert!(!d.is_empty() && !d.contains('/'));
        }
    }

    #[test]
    fn status_payloads_are_online_offline_or_refused(text in "\\s{0,3}(online|offline|ONLINE|Offline|maybe|\\PC{0,10})\\s{0,3}") {
        match translate::translate_status(text.as_bytes()) {
            Ok(Body::Status(s)) => prop_assert_eq!(s.online, text.trim().eq_ignore_ascii_case("online")),
            Ok(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
            Err(r) => prop_assert!(!["online", "offline"].contains(&text.trim().to_ascii_lowercase().as_str()), "{}", r),
        }
    }

    #[test]
    fn commands_encode_to_json_that_names_them(id in "\\PC{0,20}", action in "\\PC{0,12}", args in proptest::collection::hash_map("[a-z]{1,8}", "\\PC{0,12}", 0..4)) {
        let cmd = pb::Command { command_id: id.clone(), device_id: "d1".into(), action: action.clone(), arguments: args.clone(), deadline_ms: 0 };
        let v: Value = serde_json::from_slice(&translate::encode_command(&cmd)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // command_id and action win over arguments of the same name.
        prop_assert_eq!(&v["command_id"], &json!(id));
        prop_assert_eq!(&v["action"], &json!(action));
        for (k, a) in &args {
            if k != "command_id" && k != "action" { prop_assert_eq!(&v[k], &json!(a)); }
        }
        // A device's reply in the profile's shape reads back.
        let reply = json!({"command_id": id, "ok": true, "message": action});
        let r = translate::translate_command_result(reply.to_string().as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!((r.command_id, r.ok, r.message), (id, true, action));
    }
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn shipped_vendor_mappings_survive_mutated_payloads(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), json_value(), any::<u8>()), 1..4),
    ) {
        let config = vendor_config();
        let router = VendorRouter::from_config(&config);
        let registry = Registry::from_config(&config);
        let seeds = vendor_seeds();
        let (topic, mut payload) = seeds[seed.index(seeds.len())].clone();
        // The unmutated seed is an event of its device.
        let (binding, mapping) = router.route(topic, &payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let device = registry.get(&binding.device_id).expect("registered");
        prop_assert!(vendor::translate(mapping, device, &payload, 1_000).is_ok());
        for (at, with, op) in edits {
            mutate(&mut payload, &at, with, op);
            vendor_publish(&router, &registry, topic, &payload)?;
        }
    }

    #[test]
    fn shipped_vendor_mappings_survive_arbitrary_json(v in json_value(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let config = vendor_config();
        let router = VendorRouter::from_config(&config);
        let registry = Registry::from_config(&config);
        for topic in ["uhppoted/gateway/events", "hikvision/acs/events", "other/topic"] {
            vendor_publish(&router, &registry, topic, &v)?;
            if let Ok(parsed) = serde_json::from_slice::<Value>(&bytes) {
                vendor_publish(&router, &registry, topic, &parsed)?;
            }
        }
        // Paths of any shape read nothing or a value, never panic.
        for path in ["", ".", "message..event", "0.1.2", "AccessControllerEvent.majorEventType"] {
            let _ = vendor::lookup(&v, path);
        }
    }
}

mod codec {
    //! The MQTT wire boundary (`codec::read_packet`, rumqttc's v4 codecs): publishes of any
    //! topic, payload, QoS and flags, sent back to back and read in pieces of any size,
    //! come out as the same packets; one over the size limit is refused, not read (the limit
    //! counts the bytes after the fixed header, up to five fewer than the whole packet).

    use bytes::BytesMut;
    use gatehouse_gateway::adapters::mqtt::codec::{DecodeError, read_packet};
    use proptest::prelude::*;
    use rumqttc::mqttbytes::{
        QoS,
        v4::{Packet, Publish},
    };

    use crate::cases;

    fn publish() -> impl Strategy<Value = Publish> {
        (
            "[a-z0-9/_\\-é]{1,30}",
            proptest::collection::vec(any::<u8>(), 0..200),
            prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)],
            any::<bool>(),
            1u16..,
        )
            .prop_map(|(topic, payload, qos, retain, pkid)| {
                let mut p = Publish::new(topic, qos, payload);
                p.retain = retain;
                if qos != QoS::AtMostOnce {
                    p.pkid = pkid;
                }
                p
            })
    }

    proptest! {
        #![proptest_config(cases(256))]

        #[test]
        fn publishes_read_back_from_a_stream_cut_anywhere(
            pubs in proptest::collection::vec(publish(), 1..5),
            chunk in 1usize..64,
        ) {
            let mut wire = BytesMut::new();
            for p in &pubs {
                Packet::Publish(p.clone()).write(&mut wire, 1 << 20).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            }
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for part in wire.chunks(chunk) {
                buf.extend_from_slice(part);
                while let Some(p) = read_packet(&mut buf, 4096).map_err(|e| TestCaseError::fail(e.to_string()))? {
                    got.push(p);
                }
            }
            prop_assert!(buf.is_empty());
            let want: Vec<Packet> = pubs.into_iter().map(Packet::Publish).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn a_packet_over_the_limit_is_refused(p in publish(), limit in 16usize..128) {
            let mut wire = BytesMut::new();
            Packet::Publish(p).write(&mut wire, 1 << 20).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let len = wire.len();
            // The limit applies to the remaining length, the bytes after the fixed header
            // (one type byte and one to four length bytes), as rumqttc counts it.
            let header = 2 + usize::from(len - 2 > 127) + usize::from(len - 3 > 16_383);
            let remaining = len - header;
            match read_packet(&mut wire, limit) {
                Ok(Some(_)) => prop_assert!(remaining <= limit, "a packet of {} bytes after its header passed a limit of {}", remaining, limit),
                Ok(None) => return Err(TestCaseError::fail("a whole packet needs no more bytes")),
                Err(e) => prop_assert!(remaining > limit && matches!(e, DecodeError::TooLarge(_)), "{} ({} bytes, limit {})", e, remaining, limit),
            }
        }
    }
}
