//! Property ("fuzz-style") tests of the hub's parsers of bytes from the network or a file
//! (issue 12 §6): protobuf `Uplink`/`Event` decoding and, through a real hub over real
//! gRPC, the Hello and batch checks and the ingest of arbitrary events; the configuration
//! file (`deploy/hub.toml` mutated, and arbitrary text); the CSV rota import.
//!
//! Each property asserts more than "no panic" where it can: what decodes re-encodes to the
//! same message, the hub answers every Hello with a Welcome or a clear refusal and keeps
//! serving, a rota that parses formats and parses back to the same rows. Case counts keep
//! the file to seconds on two cores (`PROPTEST_CASES` raises them); the `fuzz/` crate runs
//! the pure parsers for longer under cargo-fuzz.

mod common;

use std::path::Path;

use common::{Link, WAIT};
use gatehouse_hub::{HubConfig, ManualClock, RunningHub, rota::csv};
use gatehouse_proto::{
    self as pb, Downlink, Event, EventBatch, Hello, Uplink, downlink, event::Body,
    gateway_link_client::GatewayLinkClient, uplink,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

/// The case count of a property, overridable with `PROPTEST_CASES`.
fn cases(n: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(n),
        ..Config::default()
    }
}

// ---- protobuf ----

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn arbitrary_bytes_decode_as_uplink_and_event_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(u) = Uplink::decode(bytes.as_slice()) {
            prop_assert_eq!(Uplink::decode(u.encode_to_vec().as_slice()).map_err(|e| TestCaseError::fail(e.to_string()))?, u);
        }
        if let Ok(e) = Event::decode(bytes.as_slice()) {
            prop_assert_eq!(Event::decode(e.encode_to_vec().as_slice()).map_err(|e| TestCaseError::fail(e.to_string()))?, e);
        }
    }
}

/// Text of every kind: empty, long, control characters, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,12}",
        1 => "[\\x00-\\x1f]{1,4}",
        1 => Just(String::new()),
        1 => "[a-z]{100,300}",
    ]
}

/// An event whose fields are anything the wire can carry (enum numbers outside the enum
/// included); the caller sets gateway, estate and sequence.
fn event() -> impl Strategy<Value = Event> {
    let body = prop_oneof![
        (text(), any::<i32>(), text(), text()).prop_map(|(door, result, credential, reason)| Body::Access(
            pb::AccessEvent {
                door,
                result,
                credential,
                reason
            }
        )),
        (any::<i32>(), text(), any::<u32>()).prop_map(|(r#type, door, seconds)| Body::Door(pb::DoorEvent {
            r#type,
            door,
            seconds
        })),
        (text(), text(), any::<i32>(), any::<bool>(), text()).prop_map(|(lane, plate, direction, resident, pass)| {
            Body::Vehicle(pb::VehicleEvent {
                lane,
                plate,
                direction,
                resident,
                pass,
            })
        }),
        (any::<i32>(), text(), text(), text(), any::<u32>(), text()).prop_map(
            |(r#type, call_id, from, to, seconds, door)| {
                Body::Intercom(pb::IntercomEvent {
                    r#type,
                    call_id,
                    from,
                    to,
                    seconds,
                    door,
                })
            }
        ),
        (any::<i32>(), text(), text(), text(), text(), text()).prop_map(|(r#type, l, zone, point, text, raw_code)| {
            Body::Fire(pb::FireEvent {
                r#type,
                r#loop: l,
                zone,
                point,
                text,
                raw_code,
            })
        }),
        (any::<bool>(), text()).prop_map(|(online, reason)| Body::Status(pb::DeviceStatus { online, reason })),
        proptest::collection::vec(any::<u8>(), 0..60).prop_map(|bytes| {
            // Whatever arbitrary bytes decode to, when they decode to a body at all.
            Event::decode(bytes.as_slice())
                .ok()
                .and_then(|e| e.body)
                .unwrap_or(Body::Status(pb::DeviceStatus::default()))
        }),
    ];
    (
        text(),
        prop_oneof![Just("door-1".to_string()), text()],
        any::<i32>(),
        text(),
        prop_oneof![Just(0i64), any::<i64>(), 1_700_000_000_000i64..1_900_000_000_000],
        any::<i64>(),
        proptest::option::of(body),
    )
        .prop_map(
            |(event_id, device_id, device_kind, area, occurred_at_ms, received_at_ms, body)| Event {
                event_id,
                device_id,
                device_kind,
                area,
                occurred_at_ms,
                received_at_ms,
                body,
                ..Default::default()
            },
        )
}

// ---- a real hub over real gRPC ----

/// Opens a `GatewayLink.Connect` stream whose first message is `first`; returns the sender
/// and the hub's first answer (a message, the end of the stream, or the refusal status).
async fn open(
    hub: &RunningHub,
    first: Uplink,
) -> (
    mpsc::Sender<Uplink>,
    Option<tonic::Streaming<Downlink>>,
    Result<Option<Downlink>, tonic::Status>,
) {
    let channel = Endpoint::from_shared(format!("http://{}", hub.grpc_addr()))
        .expect("endpoint")
        .connect()
        .await
        .expect("the hub accepts connections");
    let (tx, rx) = mpsc::channel(4);
    tx.send(first).await.expect("queued");
    match GatewayLinkClient::new(channel).connect(ReceiverStream::new(rx)).await {
        Ok(resp) => {
            let mut stream = resp.into_inner();
            let answer = tokio::time::timeout(WAIT, stream.message())
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("the hub did not answer")));
            (tx, Some(stream), answer)
        }
        Err(status) => (tx, None, Err(status)),
    }
}

fn hello(gateway: &str, estate: &str) -> Uplink {
    Uplink {
        msg: Some(uplink::Msg::Hello(Hello {
            gateway_id: gateway.into(),
            estate_id: estate.into(),
            software_version: "fuzz".into(),
            devices: vec![pb::DeviceInfo {
                device_id: "door-1".into(),
                kind: pb::DeviceKind::Door as i32,
                area: "main gate".into(),
            }],
            last_seq: 0,
            outbox_depth: 0,
        })),
    }
}

/// The hub still serves: a gateway's Hello is welcomed and `/healthz` answers.
async fn still_serving(hub: &RunningHub) {
    let link = Link::connect(hub, "gw-probe", "estate-a", &["door-1"]).await;
    drop(link);
    let (status, _) = common::http(hub, "GET", "/healthz", None).await;
    assert_eq!(status, 200, "the hub's HTTP side still answers");
}

/// A first message that is a Hello of any shape, or anything else an Uplink can be.
fn first_message() -> impl Strategy<Value = Uplink> {
    prop_oneof![
        3 => (
            prop_oneof![Just("gw-fuzz".to_string()), text()],
            prop_oneof![Just("estate-a".to_string()), text()],
            text(),
            proptest::collection::vec((text(), any::<i32>(), text()), 0..4),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(gateway_id, estate_id, software_version, devices, last_seq, outbox_depth)| Uplink {
                msg: Some(uplink::Msg::Hello(Hello {
                    gateway_id,
                    estate_id,
                    software_version,
                    devices: devices.into_iter().map(|(device_id, kind, area)| pb::DeviceInfo { device_id, kind, area }).collect(),
                    last_seq,
                    outbox_depth,
                })),
            }),
        1 => proptest::collection::vec(any::<u8>(), 0..120).prop_map(|b| Uplink::decode(b.as_slice()).unwrap_or_default()),
    ]
}

fn hub_config(db: &Path) -> HubConfig {
    let gateways = "[[gateways]]\nid = \"gw-fuzz\"\nestate = \"estate-a\"\n\n[[gateways]]\nid = \"gw-probe\"\nestate = \"estate-a\"\n\n";
    common::config(db, &format!("{gateways}{}", common::ESTATE_A))
}

/// One hub for all cases (starting one per case would cost more than the cases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_answers_any_hello_and_any_batch_and_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_764_115_620_000);
    let hub = common::start_at(hub_config(&dir.path().join("hub.db")), &clock).await;
    let handle = tokio::runtime::Handle::current();

    // Any first message: a Welcome (then the Hello was a valid one of this estate) or a
    // refusal with a status, within the timeout; never a hang or a dropped hub.
    let hub_ref = &hub;
    let mut runner = TestRunner::new(cases(48));
    let result = tokio::task::block_in_place(|| {
        // The failing case as text: a TestError holding a whole Uplink is large.
        runner
            .run(&first_message(), |first| {
                // Only a configured gateway (`[[gateways]]`) of its own estate is welcomed.
                let is_hello = matches!(&first.msg, Some(uplink::Msg::Hello(h)) if h.estate_id == "estate-a" && h.gateway_id == "gw-fuzz");
                let (_, _, answer) = handle.block_on(open(hub_ref, first));
                match answer {
                    Ok(Some(Downlink {
                        msg: Some(downlink::Msg::Welcome(_)),
                    })) => prop_assert!(is_hello, "only a Hello of a configured gateway of its estate is welcomed"),
                    Ok(other) => {
                        return Err(TestCaseError::fail(format!(
                            "first answer must be a Welcome or a refusal: {other:?}"
                        )));
                    }
                    Err(status) => prop_assert!(
                        status.code() != tonic::Code::DeadlineExceeded && status.code() != tonic::Code::Unknown,
                        "{status:?}"
                    ),
                }
                Ok(())
            })
            .map_err(|e| e.to_string())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    still_serving(&hub).await;

    // Any batch after a valid Hello: the hub acknowledges it, refuses it in a Rejection, or
    // closes the stream with a status; and afterwards it still serves.
    let mut runner = TestRunner::new(cases(48));
    let batch = (proptest::collection::vec(event(), 1..4), any::<bool>(), any::<u8>());
    let result = tokio::task::block_in_place(|| {
        // The failing case as text: a TestError holding a whole Uplink is large.
        runner
            .run(&batch, |(mut events, foreign, seq_mode)| {
                handle.block_on(async {
                    let (tx, stream, welcome) = open(hub_ref, hello("gw-fuzz", "estate-a")).await;
                    let last = match welcome {
                        Ok(Some(Downlink {
                            msg: Some(downlink::Msg::Welcome(w)),
                        })) => w.last_seq,
                        other => return Err(TestCaseError::fail(format!("a valid Hello is welcomed: {other:?}"))),
                    };
                    let mut stream = stream.expect("stream");
                    for (i, e) in events.iter_mut().enumerate() {
                        e.gateway_id = "gw-fuzz".into();
                        e.estate_id = "estate-a".into();
                        e.seq = match seq_mode % 4 {
                            // Mostly the next numbers, so the events reach the writer.
                            0 | 1 => last + 1 + i as u64,
                            2 => u64::from(seq_mode) * (i as u64),
                            _ => u64::MAX - i as u64,
                        };
                    }
                    if foreign {
                        events[0].gateway_id = "gw-other".into();
                    }
                    tx.send(Uplink {
                        msg: Some(uplink::Msg::Events(EventBatch { events: events.clone() })),
                    })
                    .await
                    .expect("queued");
                    let answer = tokio::time::timeout(WAIT, stream.message())
                        .await
                        .map_err(|_| TestCaseError::fail("the hub did not answer a batch"))?;
                    match answer {
                        Ok(Some(Downlink {
                            msg: Some(downlink::Msg::Ack(a)),
                        })) => {
                            prop_assert!(!foreign, "a batch naming another gateway is never acknowledged");
                            prop_assert_eq!(a.through_seq, events.iter().map(|e| e.seq).max().unwrap_or(0));
                        }
                        Ok(Some(Downlink {
                            msg: Some(downlink::Msg::Rejection(_)),
                        })) => {}
                        Ok(other) => return Err(TestCaseError::fail(format!("unexpected answer {other:?}"))),
                        Err(status) => prop_assert!(
                            matches!(
                                status.code(),
                                tonic::Code::InvalidArgument
                                    | tonic::Code::FailedPrecondition
                                    | tonic::Code::OutOfRange
                                    | tonic::Code::ResourceExhausted
                            ),
                            "{:?}",
                            status
                        ),
                    }
                    Ok(())
                })
            })
            .map_err(|e| e.to_string())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    still_serving(&hub).await;
    hub.shutdown().await;
}

// ---- configuration ----

fn shipped_hub_toml() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/hub.toml")).expect("deploy/hub.toml")
}

fn odd_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551615".to_string()),
        Just("1e309".to_string()),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        Just("\"\"".to_string()),
        Just("false".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("\"P9\"".to_string()),
        Just("\"25:61\"".to_string()),
        Just("\"Mars/Olympus\"".to_string()),
        Just("\"sqlite://\"".to_string()),
        "\\PC{0,16}".prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
    ]
}

/// Line edits: delete, duplicate, replace a value, flip a byte.
fn mutate(text: &str, edits: &[(u8, prop::sample::Index, String, u8)]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for (op, at, value, flip) in edits {
        if lines.is_empty() {
            break;
        }
        let n = at.index(lines.len());
        match op % 4 {
            0 => {
                lines.remove(n);
            }
            1 => lines.insert(n, lines[n].clone()),
            2 => {
                let assignments: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
                if !assignments.is_empty() {
                    let i = assignments[at.index(assignments.len())];
                    let key = lines[i].split(" = ").next().unwrap_or_default().to_string();
                    lines[i] = format!("{key} = {value}");
                }
            }
            _ => {
                let mut bytes = lines.join("\n").into_bytes();
                let i = at.index(bytes.len().max(1)).min(bytes.len().saturating_sub(1));
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= flip.max(&1);
                }
                lines = String::from_utf8_lossy(&bytes).lines().map(String::from).collect();
            }
        }
    }
    lines.join("\n")
}

fn loads_or_says_why(text: &str) -> Result<(), TestCaseError> {
    match HubConfig::from_toml(text) {
        Ok(c) => {
            // What loads is valid through and through: the derived parts build too.
            let _ = c.database_url();
            let _ = c.rota_model();
        }
        Err(e) => prop_assert!(
            e.to_string().trim().len() > 10,
            "an error says what: {:?}",
            e.to_string()
        ),
    }
    Ok(())
}

#[test]
fn the_shipped_hub_configuration_loads() {
    HubConfig::from_toml(&shipped_hub_toml()).unwrap_or_else(|e| panic!("deploy/hub.toml: {e}"));
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn a_mutated_hub_configuration_loads_or_says_why(
        edits in proptest::collection::vec((any::<u8>(), any::<prop::sample::Index>(), odd_value(), any::<u8>()), 1..4),
    ) {
        loads_or_says_why(&mutate(&shipped_hub_toml(), &edits))?;
    }

    #[test]
    fn arbitrary_text_as_hub_configuration_loads_or_says_why(text in "\\PC{0,200}|[\\[\\]a-z_=\" .0-9\n]{0,200}") {
        loads_or_says_why(&text)?;
    }
}

// ---- CSV rota import ----

fn csv_field() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9-]{1,10}",
        1 => "\\PC{1,10}",
        1 => "[a-z ,\"#]{1,10}",
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn arbitrary_bytes_as_a_rota_parse_or_name_the_line(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        // The API hands the parser text; bytes that are not UTF-8 never reach it.
        let text = String::from_utf8_lossy(&bytes);
        match csv::parse(&text) {
            Ok(rows) => {
                for r in &rows {
                    for f in [&r.estate, &r.post, &r.shift, &r.guard] {
                        prop_assert!(!f.is_empty() && f.trim() == f.as_str());
                    }
                }
                // What parses formats and parses back to the same rows.
                prop_assert_eq!(csv::parse(&csv::format(&rows)), Ok(rows));
            }
            Err(e) => prop_assert!(e.starts_with("line "), "{}", e),
        }
    }

    #[test]
    fn rota_rows_with_any_text_format_and_parse_back(
        rows in proptest::collection::vec((0u32..3000, csv_field(), csv_field(), csv_field(), csv_field()), 0..6),
        crlf in any::<bool>(),
    ) {
        let rows: Vec<csv::Row> = rows
            .into_iter()
            .filter_map(|(day, estate, post, shift, guard)| {
                let [estate, post, shift, guard] = [estate, post, shift, guard].map(|s| s.trim().to_string());
                if [&estate, &post, &shift, &guard].iter().any(|s| s.is_empty()) {
                    return None;
                }
                Some(csv::Row {
                    date: chrono::NaiveDate::from_ymd_opt(2025, 1, 1)? + chrono::Days::new(u64::from(day)),
                    estate, post, shift, guard,
                })
            })
            .collect();
        let mut text = csv::format(&rows);
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        prop_assert_eq!(csv::parse(&text), Ok(rows));
    }
}
