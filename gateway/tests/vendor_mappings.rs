//! The vendor JSON mappings shipped in `deploy/vendor/` load into a gateway configuration,
//! translate their formats' documented payloads into the right canonical events, refuse
//! what they do not map (counted by reason), and work end to end through the embedded
//! broker.

use std::{path::Path, time::Duration};

use gatehouse_gateway::{
    adapters::mqtt::vendor::{self, VendorRouter},
    config::Config,
    metrics::RejectReason,
};
use gatehouse_proto::{self as pb, AccessResult, DoorEventType, event::Body};
use serde_json::{Value, json};

const BASE: &str = r#"
[gateway]
id = "gw-vendor"
estate = "estate-a"
data_dir = "DATA_DIR"
hubs = ["http://127.0.0.1:1"]

[uplink]
plaintext = true

[mqtt]
listen = "MQTT_LISTEN"

[[devices]]
id = "door-east"
kind = "door"
area = "east-gate"
[devices.vendor]
mapping = "uhppoted-mqtt"
topic = "uhppoted/gateway/events"
device_key = "405419896"

[[devices]]
id = "door-west"
kind = "door"
area = "west-gate"
[devices.vendor]
mapping = "uhppoted-mqtt"
topic = "uhppoted/gateway/events"
device_key = "303986753"

[[devices]]
id = "door-lobby-b3"
kind = "door"
area = "block-3-lobby"
[devices.vendor]
mapping = "hikvision-isapi-acs"
topic = "hikvision/acs/events"
device_key = "192.168.1.64"
"#;

/// The base configuration with every snippet of `deploy/vendor/` appended.
fn config(data_dir: &Path, mqtt_listen: &str) -> Config {
    let mut text = BASE
        .replace("DATA_DIR", &data_dir.display().to_string())
        .replace("MQTT_LISTEN", mqtt_listen);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/vendor");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("deploy/vendor exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 2, "at least two vendor mappings ship");
    for path in names {
        text.push('\n');
        text.push_str(&std::fs::read_to_string(&path).expect("readable"));
    }
    Config::from_toml(&text).unwrap_or_else(|e| panic!("the shipped vendor mappings load: {e}"))
}

fn translate(
    router: &VendorRouter,
    config: &Config,
    topic: &str,
    payload: &Value,
) -> Result<(String, i64, Body), RejectReason> {
    let registry = gatehouse_gateway::registry::Registry::from_config(config);
    let (binding, mapping) = router.route(topic, payload).map_err(|r| r.reason)?;
    let device = registry.get(&binding.device_id).expect("bound device is registered");
    vendor::translate(mapping, device, payload, 1_000)
        .map(|(ts, body)| (binding.device_id.clone(), ts, body))
        .map_err(|r| r.reason)
}

/// An event record in the shape uhppoted-mqtt documents (documentation/commands/get-status.md,
/// get-events.md), published on its events topic wrapped in {"message": {"event": …}}.
fn uhppoted(
    device_id: u32,
    event_type: u8,
    granted: bool,
    door: u8,
    card: u32,
    reason: u8,
    reason_text: &str,
) -> Value {
    json!({"message": {"event": {
        "access-granted": granted,
        "card-number": card,
        "device-id": device_id,
        "direction": 1,
        "direction-text": "in",
        "door-id": door,
        "event-id": 69,
        "event-reason": reason,
        "event-reason-text": reason_text,
        "event-type": event_type,
        "event-type-text": match event_type { 1 => "card swipe", 2 => "door", _ => "alarm" },
        "timestamp": "2021-08-10 10:28:32 PDT"
    }}})
}

/// An ISAPI EventNotificationAlert for an AccessControllerEvent, with the fields Hikvision's
/// ISAPI access-control guide gives it (values ours).
fn hikvision(major: u32, minor: u32, extra: Value) -> Value {
    let mut ace = json!({
        "deviceName": "Lobby B3",
        "majorEventType": major,
        "subEventType": minor,
        "cardReaderKind": 1,
        "cardReaderNo": 1,
        "doorNo": 1,
        "verifyNo": 173,
        "serialNo": 1418,
        "currentVerifyMode": "cardOrFace",
        "frontSerialNo": 1417,
        "attendanceStatus": "undefined",
        "label": "",
        "mask": "no",
        "picturesNumber": 0
    });
    if let (Some(a), Some(e)) = (ace.as_object_mut(), extra.as_object()) {
        a.extend(e.clone());
    }
    json!({
        "ipAddress": "192.168.1.64",
        "portNo": 80,
        "protocol": "HTTP",
        "macAddress": "44:47:cc:1a:2b:3c",
        "channelID": 1,
        "dateTime": "2026-11-26T02:47:00+08:00",
        "activePostCount": 1,
        "eventType": "AccessControllerEvent",
        "eventState": "active",
        "eventDescription": "Access Controller Event",
        "AccessControllerEvent": ace
    })
}

fn door(body: &Body) -> (DoorEventType, String) {
    match body {
        Body::Door(d) => (d.r#type(), d.door.clone()),
        other => panic!("expected a door event, got {other:?}"),
    }
}

fn access(body: &Body) -> (AccessResult, String, String, String) {
    match body {
        Body::Access(a) => (a.result(), a.door.clone(), a.credential.clone(), a.reason.clone()),
        other => panic!("expected an access event, got {other:?}"),
    }
}

#[test]
fn uhppoted_mqtt_events_become_canonical_door_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "127.0.0.1:18830");
    let router = VendorRouter::from_config(&config);
    let topic = "uhppoted/gateway/events";

    let (dev, ts, body) = translate(
        &router,
        &config,
        topic,
        &uhppoted(405419896, 3, false, 2, 0, 38, "forced open"),
    )
    .expect("forced");
    assert_eq!(
        (dev.as_str(), ts),
        ("door-east", 1_000),
        "receive time stands in for the PDT timestamp"
    );
    assert_eq!(door(&body), (DoorEventType::Forced, "2".into()));

    let (dev, _, body) = translate(
        &router,
        &config,
        topic,
        &uhppoted(303986753, 2, false, 4, 0, 37, "door open too long"),
    )
    .expect("held");
    assert_eq!(dev, "door-west");
    assert_eq!(door(&body), (DoorEventType::HeldOpen, "4".into()));

    let (_, _, body) = translate(
        &router,
        &config,
        topic,
        &uhppoted(405419896, 1, true, 1, 8165538, 1, "swipe"),
    )
    .expect("swipe");
    assert_eq!(
        access(&body),
        (AccessResult::Granted, "1".into(), "8165538".into(), "swipe".into())
    );
    let (_, _, body) = translate(
        &router,
        &config,
        topic,
        &uhppoted(405419896, 1, false, 1, 8165539, 6, "no access rights"),
    )
    .expect("denied");
    assert_eq!(access(&body).0, AccessResult::Denied);

    // The documented get-status sample: a remote door opening is no canonical door event.
    let documented = json!({"message": {"event": {
        "access-granted": true, "card-number": 8165537, "device-id": 405419896, "direction": 1,
        "direction-text": "in", "door-id": 1, "event-id": 69, "event-reason": 44,
        "event-reason-text": "remote open door", "event-type": 2, "event-type-text": "door",
        "timestamp": "2021-08-10 10:28:32 PDT"}}});
    assert_eq!(
        translate(&router, &config, topic, &documented).err(),
        Some(RejectReason::UnknownType)
    );
    // A controller nobody configured is never mapped to a device by guess.
    assert_eq!(
        translate(
            &router,
            &config,
            topic,
            &uhppoted(111111111, 3, false, 1, 0, 38, "forced open")
        )
        .err(),
        Some(RejectReason::UnknownDevice)
    );
}

#[test]
fn hikvision_access_controller_events_become_canonical_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "127.0.0.1:18830");
    let router = VendorRouter::from_config(&config);
    let topic = "hikvision/acs/events";
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-26T02:47:00+08:00")
        .expect("rfc3339")
        .timestamp_millis();

    let (dev, ts, body) = translate(&router, &config, topic, &hikvision(5, 0x1b, json!({}))).expect("forced");
    assert_eq!((dev.as_str(), ts), ("door-lobby-b3", at), "dateTime is the event time");
    assert_eq!(door(&body), (DoorEventType::Forced, "1".into()));
    let (_, _, body) = translate(&router, &config, topic, &hikvision(5, 0x1c, json!({}))).expect("held");
    assert_eq!(door(&body).0, DoorEventType::HeldOpen);
    let (_, _, body) = translate(&router, &config, topic, &hikvision(1, 0x404, json!({}))).expect("tamper");
    assert_eq!(door(&body), (DoorEventType::Tamper, String::new()));
    let (_, _, body) = translate(
        &router,
        &config,
        topic,
        &hikvision(5, 0x01, json!({"cardNo": "1234567890"})),
    )
    .expect("card");
    assert_eq!(
        access(&body),
        (
            AccessResult::Granted,
            "1".into(),
            "1234567890".into(),
            "valid card".into()
        )
    );
    let (_, _, body) = translate(
        &router,
        &config,
        topic,
        &hikvision(5, 0x4b, json!({"employeeNoString": "E0042", "name": "resident"})),
    )
    .expect("face");
    assert_eq!(
        access(&body),
        (
            AccessResult::Granted,
            "1".into(),
            "E0042".into(),
            "face authenticated".into()
        )
    );
    let (_, _, body) =
        translate(&router, &config, topic, &hikvision(5, 0x09, json!({"cardNo": "999"}))).expect("invalid card");
    assert_eq!(
        access(&body),
        (AccessResult::Denied, "1".into(), "999".into(), "invalid card".into())
    );
    let (_, _, body) = translate(&router, &config, topic, &hikvision(5, 0x4c, json!({}))).expect("face fail");
    assert_eq!(
        access(&body),
        (
            AccessResult::Denied,
            "1".into(),
            String::new(),
            "face authentication failed".into()
        )
    );

    // A door-closed notice (minor 0x1A) maps to nothing: refused as an unknown type.
    assert_eq!(
        translate(&router, &config, topic, &hikvision(5, 0x1a, json!({}))).err(),
        Some(RejectReason::UnknownType)
    );
    let mut elsewhere = hikvision(5, 0x1b, json!({}));
    elsewhere["ipAddress"] = json!("10.0.0.9");
    assert_eq!(
        translate(&router, &config, topic, &elsewhere).err(),
        Some(RejectReason::UnknownDevice)
    );
}

#[test]
fn bad_vendor_configuration_is_refused_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = {
        let _ = config(dir.path(), "127.0.0.1:18830");
        let mut t = BASE
            .replace("DATA_DIR", "/tmp/x")
            .replace("MQTT_LISTEN", "127.0.0.1:18830");
        for f in ["uhppoted-mqtt.toml", "hikvision-isapi.toml"] {
            t.push_str(
                &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/vendor").join(f))
                    .expect("snippet"),
            );
        }
        t
    };
    let cases = [
        (
            "mapping = \"uhppoted-mqtt\"",
            "mapping = \"nope\"",
            "not a [[vendor_mappings]] name",
        ),
        ("device_key = \"303986753\"", "", "each need a vendor.device_key"),
        (
            "topic = \"hikvision/acs/events\"",
            "topic = \"#\"",
            "overlaps the device profile",
        ),
        (
            "type = \"door_forced\"",
            "type = \"door_exploded\"",
            "not a profile type",
        ),
    ];
    for (from, to, needle) in cases {
        assert!(good.contains(from), "setup: {from}");
        let err = Config::from_toml(&good.replacen(from, to, 1))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains(needle),
            "{to:?} should be refused with {needle:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_vendor_publish_through_the_embedded_broker_reaches_the_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    // uhppoted-mqtt logs in as one of the doors it publishes for: the doors sharing its
    // topic are one controller's.
    let password = "uhppoted-bridge-password";
    let mut cfg = config(dir.path(), &format!("127.0.0.1:{port}"));
    for d in cfg.devices.iter_mut().filter(|d| d.id == "door-east") {
        d.mqtt_password_hash =
            Some(gatehouse_gateway::adapters::mqtt::auth::hash_password(password.as_bytes()).expect("hash"));
    }
    let gw = gatehouse_gateway::start(cfg).await.expect("gateway starts");
    let mut opts = rumqttc::MqttOptions::new("uhppoted-mqtt", "127.0.0.1", port);
    opts.set_credentials("door-east", password);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 16);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let forced = uhppoted(405419896, 3, false, 2, 0, 38, "forced open");
    client
        .publish(
            "uhppoted/gateway/events",
            rumqttc::QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&forced).expect("json"),
        )
        .await
        .expect("publish");
    client
        .publish(
            "uhppoted/gateway/events",
            rumqttc::QoS::AtLeastOnce,
            false,
            b"{not json".to_vec(),
        )
        .await
        .expect("publish");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events: Vec<pb::Event> = gw.outbox.read_after(0, 100).await.expect("outbox");
        let door_events: Vec<_> = events
            .iter()
            .filter(|e| matches!(e.body, Some(Body::Door(_))))
            .collect();
        if let Some(e) = door_events.first() {
            assert_eq!((e.device_id.as_str(), e.area.as_str()), ("door-east", "east-gate"));
            assert_eq!(
                door(e.body.as_ref().expect("body")),
                (DoorEventType::Forced, "2".into())
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the vendor event reached the outbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gw.metrics.rejected(RejectReason::MalformedJson) != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the malformed vendor publish is counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.shutdown().await;
}
