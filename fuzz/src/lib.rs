//! The bodies of the cargo-fuzz targets (`fuzz_targets/*.rs` call one each). Each takes
//! any bytes and panics only when the parser breaks a promise: a panic inside the parser,
//! or a property that must hold for every input (a built frame parses back, a decoded
//! message re-encodes to the same, an answer is itself a valid frame, …).
//!
//! Kept free of libfuzzer so that `gateway/tests/fuzz_targets.rs` compiles this file and
//! runs every target on stable, in CI: the targets cannot rot while nightly is absent.
//! A crash cargo-fuzz finds becomes a named `#[test]` next to the parser's property tests
//! (`gateway/tests/fuzz_parsers/`, `hub/tests/fuzz_parsers.rs`) and is fixed at the source.

use std::sync::OnceLock;

use gatehouse_gateway::{
    adapters::{
        dc09::{
            cid,
            crypto::Key,
            frame::{self, Split},
            receiver::{AccountConfig, Receiver},
            sia,
        },
        modbus::{
            config::{Order, PointConfig, Table, ValueType},
            decode,
        },
        mqtt::{
            translate,
            vendor::{self, VendorRouter},
        },
    },
    config::Config,
    registry::{DeviceInfo, DeviceKind, Registry},
};
use gatehouse_hub::{HubConfig, rota::csv};
use gatehouse_proto as pb;
use prost::Message as _;

/// The receiver's clock: 2025-11-26T00:07:00Z.
const T0: i64 = 1_764_115_620_000;

fn pad() -> impl FnMut() -> u8 {
    let mut n = 0u8;
    move || {
        n = n.wrapping_add(29);
        n
    }
}

/// DC-09 frames and streams: `parse`, the TCP splitter driven as the shell drives it, and
/// the receiver (a plain and an encrypted account). Every answer the receiver gives is a
/// frame that parses; the splitter always makes progress inside the buffer.
pub fn dc09_frame(data: &[u8]) {
    let _ = frame::parse(data);
    let mut buf = data.to_vec();
    loop {
        match frame::split(&buf) {
            Split::NeedMore => break,
            Split::Skip { len, garbage } => {
                assert!(
                    len > 0 && len <= buf.len() && garbage <= len,
                    "skip {len} of {}",
                    buf.len()
                );
                buf.drain(..len);
            }
            Split::Frame(len) => {
                assert!(len > 0 && len <= buf.len(), "frame {len} of {}", buf.len());
                let candidate: Vec<u8> = buf.drain(..len).collect();
                let _ = frame::parse(&candidate);
            }
        }
    }
    static RECEIVER: OnceLock<Receiver> = OnceLock::new();
    let receiver = RECEIVER.get_or_init(|| {
        let key = Key::from_text("estate-a-panel01").ok();
        Receiver::new(
            vec![
                AccountConfig {
                    account: "1234".into(),
                    device_id: "fire-panel-1".into(),
                    key: None,
                    supervision_ms: 180_000,
                },
                AccountConfig {
                    account: "5678".into(),
                    device_id: "fire-panel-2".into(),
                    key,
                    supervision_ms: 60_000,
                },
            ],
            T0,
        )
    });
    let outcome = receiver.handle(data, T0, &mut pad());
    if let Some(reply) = &outcome.reply {
        assert!(
            frame::parse(reply).is_ok(),
            "the receiver's answer {reply:?} does not parse"
        );
    }
}

/// Contact ID and SIA DCS data (the text inside a frame's brackets).
pub fn dc09_data(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(ev) = cid::parse(&text) {
        assert!(matches!(ev.qualifier, 1 | 3 | 6) && ev.code < 1000);
        let _ = cid::map(&ev);
    }
    let _ = cid::data_account(&text);
    if let Ok(evs) = sia::parse(&text) {
        assert!(!evs.is_empty());
        for ev in &evs {
            assert!(!sia::map(ev).is_empty());
        }
    }
}

/// MQTT device-profile payloads: the first byte picks the device kind; a translated
/// payload is always a body of that kind.
pub fn mqtt_payload(data: &[u8]) {
    let Some((&first, payload)) = data.split_first() else {
        return;
    };
    let kind = [
        DeviceKind::Door,
        DeviceKind::Intercom,
        DeviceKind::FirePanel,
        DeviceKind::Modbus,
    ][usize::from(first % 4)];
    let device = DeviceInfo {
        id: "d1".into(),
        kind,
        area: "main-gate".into(),
    };
    if let Ok((_, body)) = translate::translate_event(&device, payload, 1_000, 16 * 1024) {
        use pb::event::Body;
        let fits = matches!(
            (kind, &body),
            (DeviceKind::Door, Body::Access(_) | Body::Door(_) | Body::Vehicle(_))
                | (DeviceKind::Intercom, Body::Intercom(_))
                | (DeviceKind::FirePanel, Body::Fire(_))
        );
        assert!(fits, "{kind:?} produced {body:?}");
    }
    let _ = translate::translate_status(payload);
    let _ = translate::translate_command_result(payload);
    let _ = translate::parse_topic(&String::from_utf8_lossy(payload));
}

/// The vendor mappings shipped in `deploy/vendor/`, on any JSON published on their topics.
pub fn vendor_mapping(data: &[u8]) {
    static SETUP: OnceLock<(Config, VendorRouter, Registry)> = OnceLock::new();
    let (_, router, registry) = SETUP.get_or_init(|| {
        let text = format!(
            "{}\n{}\n{}",
            r#"
[gateway]
id = "gw-fuzz"
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
            include_str!("../../deploy/vendor/uhppoted-mqtt.toml"),
            include_str!("../../deploy/vendor/hikvision-isapi.toml"),
        );
        let config = match Config::from_toml(&text) {
            Ok(c) => c,
            Err(e) => panic!("the shipped vendor mappings load: {e}"),
        };
        let router = VendorRouter::from_config(&config);
        let registry = Registry::from_config(&config);
        (config, router, registry)
    });
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for topic in ["uhppoted/gateway/events", "hikvision/acs/events"] {
        let Ok((binding, mapping)) = router.route(topic, &payload) else {
            continue;
        };
        let _ = mapping.to_profile(&payload);
        let Some(device) = registry.get(&binding.device_id) else {
            panic!("bound device {:?} is not registered", binding.device_id);
        };
        let _ = vendor::translate(mapping, device, &payload, 1_000);
    }
}

/// Modbus register decoding: the first bytes pick the type, orders, bit, scale and offset;
/// the rest are the registers. A decoded value is finite, a bool is 0 or 1.
pub fn modbus_decode(data: &[u8]) {
    if data.len() < 19 {
        return;
    }
    let (head, rest) = data.split_at(19);
    const TYPES: [ValueType; 9] = [
        ValueType::Bool,
        ValueType::U16,
        ValueType::I16,
        ValueType::U32,
        ValueType::I32,
        ValueType::F32,
        ValueType::U64,
        ValueType::I64,
        ValueType::F64,
    ];
    let f64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[i..i + 8]);
        f64::from_le_bytes(b)
    };
    let order = |b: u8| if b & 1 == 0 { Order::Big } else { Order::Little };
    let value_type = TYPES[usize::from(head[0]) % TYPES.len()];
    let point = PointConfig {
        name: "p".into(),
        table: Table::Holding,
        address: 0,
        value_type,
        word_order: order(head[1]),
        byte_order: order(head[1] >> 1),
        bit: (head[2] & 0x80 == 0).then_some(head[2] & 0x7F),
        scale: f64_at(3),
        offset: f64_at(11),
        unit: String::new(),
        deadband: 0.0,
        writable: true,
    };
    let words: Vec<u16> = rest.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    if let Ok(v) = decode::decode(&words, &point) {
        assert!(v.is_finite());
        if value_type == ValueType::Bool {
            assert!(v == 0.0 || v == 1.0);
        }
    }
    let bits: Vec<bool> = rest.iter().map(|b| b & 1 == 1).collect();
    let _ = decode::decode_bit(&bits, &point);
    let _ = decode::encode(point.scale, &point);
}

/// What a gateway sends the hub: an `Uplink` or an `Event` that decodes re-encodes to a
/// message that decodes to the same value.
pub fn proto_uplink(data: &[u8]) {
    if let Ok(u) = pb::Uplink::decode(data) {
        assert_eq!(pb::Uplink::decode(u.encode_to_vec().as_slice()).ok(), Some(u));
    }
    if let Ok(e) = pb::Event::decode(data) {
        assert_eq!(pb::Event::decode(e.encode_to_vec().as_slice()).ok(), Some(e));
    }
}

/// What the hub sends a gateway: a `Downlink` that decodes re-encodes to the same.
pub fn proto_downlink(data: &[u8]) {
    if let Ok(d) = pb::Downlink::decode(data) {
        assert_eq!(pb::Downlink::decode(d.encode_to_vec().as_slice()).ok(), Some(d));
    }
}

/// The gateway's configuration file: `Ok` or an error that says what.
pub fn gateway_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::from_toml(text) {
        assert!(!e.to_string().is_empty());
    }
}

/// The hub's configuration file: `Ok` (and its derived parts build) or an error that says
/// what.
pub fn hub_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match HubConfig::from_toml(text) {
        Ok(c) => {
            let _ = c.database_url();
            let _ = c.rota_model();
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// The CSV rota import: what parses formats and parses back to the same rows; an error
/// names its line.
pub fn rota_csv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match csv::parse(text) {
        Ok(rows) => assert_eq!(csv::parse(&csv::format(&rows)), Ok(rows)),
        Err(e) => assert!(e.starts_with("line "), "{e}"),
    }
}
