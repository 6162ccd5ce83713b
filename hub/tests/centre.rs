//! The gRPC `CommandCentre` of a running hub: real gRPC over loopback (a tonic client, and
//! an outside one — Python grpcio with stubs generated from the proto at run time), a
//! gateway's stream played by hand, real SQLite, real HTTP where the test sets the scene.
//!
//! The Python case needs `python3` with `grpcio` and `grpcio-tools` (`.ci/setup`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use gatehouse_hub::{ManualClock, RunningHub};
use gatehouse_proto::command_centre_client::CommandCentreClient;
use gatehouse_proto::{
    AcknowledgeAlarmRequest, AlarmUpdate, CompleteStepRequest, DeviceKind, DoorEvent, DoorEventType, Downlink,
    IncidentUpdate, SendCommandRequest, ShelveAlarmRequest, SupervisorOverride, TransitionIncidentRequest,
    WatchAlarmsRequest, WatchIncidentsRequest, alarm_update, downlink, event::Body, incident_update,
};
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Streaming};

mod common;

use common::{Link, WAIT, get, http};

const GW: &str = "gw-1";
const ESTATE: &str = "estate-a";
const T0: i64 = 1_764_000_000_000;

async fn start(db: &Path) -> RunningHub {
    common::start_at(common::config(db, common::ESTATES_AB), &ManualClock::new(T0)).await
}

async fn connect(hub: &RunningHub) -> Link {
    Link::connect_kinds(
        hub,
        GW,
        ESTATE,
        &[
            ("door-1", DeviceKind::Door),
            ("door-2", DeviceKind::Door),
            ("door-3", DeviceKind::Door),
        ],
    )
    .await
}

async fn channel(hub: &RunningHub) -> Channel {
    Endpoint::from_shared(format!("http://{}", hub.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connects")
}

/// Adds `authorization: Bearer <the test admin's token>` to every call.
fn admin_token(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let value = format!("Bearer {}", common::ADMIN_TOKEN)
        .parse()
        .map_err(|_| tonic::Status::internal("token header"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

type AdminInterceptor = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;
type Centre = CommandCentreClient<tonic::service::interceptor::InterceptedService<Channel, AdminInterceptor>>;

/// A CommandCentre client signed in as `test-admin`: who acted is always that name, whatever
/// the request's own operator field says.
async fn centre(hub: &RunningHub) -> Centre {
    CommandCentreClient::with_interceptor(channel(hub).await, admin_token as AdminInterceptor)
}

fn forced(door: &str) -> Body {
    Body::Door(DoorEvent {
        r#type: DoorEventType::Forced as i32,
        door: door.into(),
        seconds: 0,
    })
}

/// Raises a forced-door alarm on `device`.
async fn raise(link: &mut Link, device: &str) {
    link.send(vec![(device, "main gate", forced("D1"))]).await;
}

async fn next<T>(stream: &mut Streaming<T>) -> T {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("an update within the wait")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

async fn next_alarm(stream: &mut Streaming<AlarmUpdate>) -> alarm_update::Update {
    next(stream).await.update.expect("an update")
}

async fn next_incident(stream: &mut Streaming<IncidentUpdate>) -> incident_update::Update {
    next(stream).await.update.expect("an update")
}

/// Reads a whole snapshot (start, items, complete) and returns the start's reason and the items.
async fn alarm_snapshot(stream: &mut Streaming<AlarmUpdate>) -> (String, Vec<gatehouse_proto::Alarm>) {
    let reason = match next_alarm(stream).await {
        alarm_update::Update::SnapshotStart(s) => s.reason,
        other => panic!("expected the snapshot's start, got {other:?}"),
    };
    let mut items = Vec::new();
    loop {
        match next_alarm(stream).await {
            alarm_update::Update::Snapshot(a) => items.push(a),
            alarm_update::Update::SnapshotComplete(c) => {
                assert_eq!(c.count, items.len() as u64, "the marker counts the items");
                return (reason, items);
            }
            other => panic!("expected a snapshot item or its end, got {other:?}"),
        }
    }
}

/// The next change of alarm `id`, skipping changes of others.
async fn alarm_change(stream: &mut Streaming<AlarmUpdate>, id: i64) -> gatehouse_proto::AlarmChange {
    loop {
        match next_alarm(stream).await {
            alarm_update::Update::Change(c) if c.alarm.as_ref().is_some_and(|a| a.id == id) => return c,
            alarm_update::Update::Change(_) => {}
            other => panic!("expected a change, got {other:?}"),
        }
    }
}

/// The ids of the standing alarms, by HTTP.
async fn alarm_ids(hub: &RunningHub) -> Vec<i64> {
    let alarms = get(hub, "/api/v1/alarms?state=standing").await;
    let mut ids: Vec<i64> = alarms
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn watch_alarms_sends_the_snapshot_then_the_marker_then_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let mut link = connect(&hub).await;
    raise(&mut link, "door-1").await;
    let before = alarm_ids(&hub).await;
    assert_eq!(before.len(), 1);

    let mut client = centre(&hub).await;
    let mut watch = client
        .watch_alarms(WatchAlarmsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (reason, items) = alarm_snapshot(&mut watch).await;
    assert_eq!(reason, "connected");
    assert_eq!(items.len(), 1);
    let a = &items[0];
    assert_eq!(
        (a.id, a.estate_id.as_str(), a.device_id.as_str()),
        (before[0], ESTATE, "door-1")
    );
    assert!(a.active && !a.acknowledged, "{a:?}");
    assert_eq!(a.raised_at_ms, T0);
    assert_eq!(a.gateway_id, GW);
    assert!(a.incident_id > 0, "a forced door opens an incident: {a:?}");

    // Raised after the client connected: a change, the alarm as it stands.
    raise(&mut link, "door-2").await;
    let new_id = *alarm_ids(&hub).await.last().unwrap();
    assert_ne!(new_id, before[0]);
    let c = alarm_change(&mut watch, new_id).await;
    assert_eq!(c.change, "raised");
    let alarm = c.alarm.unwrap();
    assert_eq!(alarm.device_id, "door-2");
    assert!(alarm.active && !c.removed);

    // Acknowledged (over gRPC): the change says so. A forced door is latched, so its
    // acknowledgement also clears it, in the same commit: it no longer stands, and the
    // change, read after that commit, tells the watcher to drop it.
    let acked = client
        .acknowledge_alarm(AcknowledgeAlarmRequest {
            alarm_id: new_id,
            operator: "op-li".into(),
            note: "checked on camera".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(acked.acknowledged);
    assert_eq!(
        acked.acked_by, "test-admin",
        "who acted is the caller, not the request's operator field"
    );
    assert_eq!(acked.acked_at_ms, T0);
    let c = alarm_change(&mut watch, new_id).await;
    assert_eq!(c.change, "acknowledged");
    let alarm = c.alarm.unwrap();
    assert!(alarm.acknowledged && !alarm.active, "{alarm:?}");
    assert!(c.removed);
    assert!(!alarm_ids(&hub).await.contains(&new_id), "the HTTP API agrees");
    // The alarm raised before the watcher came is untouched and still stands.
    assert!(alarm_ids(&hub).await.contains(&before[0]));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_watch_of_one_estate_sees_only_its_alarms_and_an_unknown_estate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let mut link_a = connect(&hub).await;
    let mut link_b = Link::connect_kinds(&hub, "gw-b", "estate-b", &[("door-9", DeviceKind::Door)]).await;
    raise(&mut link_a, "door-1").await;

    let mut client = centre(&hub).await;
    let err = client
        .watch_alarms(WatchAlarmsRequest {
            estate_id: "estate-z".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    let mut watch = client
        .watch_alarms(WatchAlarmsRequest {
            estate_id: "estate-b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (_, items) = alarm_snapshot(&mut watch).await;
    assert!(
        items.is_empty(),
        "estate-a's alarm is not estate-b's business: {items:?}"
    );
    raise(&mut link_a, "door-2").await;
    raise(&mut link_b, "door-9").await;
    // The first change this watcher sees is estate-b's.
    match next_alarm(&mut watch).await {
        alarm_update::Update::Change(c) => {
            let a = c.alarm.unwrap();
            assert_eq!((a.estate_id.as_str(), a.device_id.as_str()), ("estate-b", "door-9"));
        }
        other => panic!("expected a change, got {other:?}"),
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn a_watcher_that_falls_behind_gets_a_fresh_snapshot_not_a_silent_gap() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let mut link = connect(&hub).await;
    // A small HTTP/2 stream window, so what the client does not read stays at the hub. Small:
    // h2's client counts unread DATA frames under 256 bytes (an update is about that) and
    // sends GOAWAY ENHANCE_YOUR_CALM past ~100 of them, which a 64 KiB window could hold.
    let small = Endpoint::from_shared(format!("http://{}", hub.grpc_addr()))
        .unwrap()
        .initial_stream_window_size(Some(8_192))
        .initial_connection_window_size(Some(65_535))
        .connect()
        .await
        .unwrap();
    let mut client = CommandCentreClient::with_interceptor(small, admin_token as AdminInterceptor);
    let mut watch = client
        .watch_alarms(WatchAlarmsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (_, items) = alarm_snapshot(&mut watch).await;
    assert!(items.is_empty());

    // Far more changes than the HTTP/2 windows, the watcher's queue and the hub's broadcast
    // ring (4096) hold, while the client reads nothing: its watcher falls behind.
    const DOORS: usize = 10_000;
    for chunk in (0..DOORS).collect::<Vec<_>>().chunks(1_000) {
        let events: Vec<(String, Body)> = chunk
            .iter()
            .map(|i| (format!("D{i}"), forced(&format!("D{i}"))))
            .collect();
        link.send(events.iter().map(|(_, b)| ("door-3", "main gate", b.clone())).collect())
            .await;
    }
    let standing = get(&hub, "/api/v1/alarms?state=standing&limit=5000").await;
    assert!(!standing.as_array().unwrap().is_empty());

    // Somewhere in what it reads now: a fresh snapshot, reason "lagged", that is whole.
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(tokio::time::Instant::now() < until, "no fresh snapshot came");
        match next_alarm(&mut watch).await {
            alarm_update::Update::SnapshotStart(s) => {
                assert_eq!(s.reason, "lagged");
                assert!(s.missed > 0);
                let mut count = 0u64;
                loop {
                    match next_alarm(&mut watch).await {
                        alarm_update::Update::Snapshot(_) => count += 1,
                        alarm_update::Update::SnapshotComplete(c) => {
                            assert_eq!(c.count, count);
                            assert!(count > 0);
                            break;
                        }
                        other => panic!("a snapshot is not interleaved with changes: {other:?}"),
                    }
                }
                break;
            }
            alarm_update::Update::Change(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn alarm_actions_answer_the_alarm_and_map_refusals_to_grpc_codes() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let mut link = connect(&hub).await;
    raise(&mut link, "door-1").await;
    raise(&mut link, "door-2").await;
    let ids = alarm_ids(&hub).await;
    let mut client = centre(&hub).await;
    let ack = |alarm_id: i64, operator: &str| AcknowledgeAlarmRequest {
        alarm_id,
        operator: operator.into(),
        note: String::new(),
    };

    let err = client.acknowledge_alarm(ack(999_999, "op")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    let a = client.acknowledge_alarm(ack(ids[0], "")).await.unwrap().into_inner();
    assert_eq!(a.acked_by, "test-admin", "who acted is the caller");
    let err = client.acknowledge_alarm(ack(ids[0], "op")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "acknowledged twice: {err}");

    let shelve = |minutes: i64, reason: &str| ShelveAlarmRequest {
        alarm_id: ids[1],
        minutes,
        reason: reason.into(),
        operator: "op-wang".into(),
    };
    let err = client.shelve_alarm(shelve(30, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "a shelve needs a reason: {err}");
    let err = client.shelve_alarm(shelve(0, "door repair")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "minutes out of range: {err}");
    let a = client
        .shelve_alarm(shelve(30, "door repair"))
        .await
        .unwrap()
        .into_inner();
    assert!(a.shelved);
    assert_eq!(a.shelved_until_ms, T0 + 30 * 60_000);
    assert_eq!(
        (a.shelved_by.as_str(), a.shelve_reason.as_str()),
        ("test-admin", "door repair")
    );
    // The same record the HTTP API shows.
    let http_alarm = get(&hub, "/api/v1/alarms?state=standing")
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == ids[1])
        .cloned()
        .unwrap();
    assert_eq!(http_alarm["shelved_by"], "test-admin");
    let err = client
        .shelve_alarm(ShelveAlarmRequest {
            alarm_id: 999_999,
            ..shelve(30, "x")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    hub.shutdown().await;
}

#[tokio::test]
async fn watch_incidents_sends_open_incidents_then_transitions_steps_and_the_close() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let (status, inc) = http(
        &hub,
        "POST",
        "/api/v1/incidents",
        Some(json!({"estate": ESTATE, "area": "block 7", "category": "fire", "title": "Smoke on floor 12", "operator": "wang"})),
    )
    .await;
    assert_eq!(status, 201, "{inc}");
    let id = inc["id"].as_i64().unwrap();

    let mut client = centre(&hub).await;
    let mut watch = client
        .watch_incidents(WatchIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    match next_incident(&mut watch).await {
        incident_update::Update::SnapshotStart(s) => assert_eq!(s.reason, "connected"),
        other => panic!("expected the start, got {other:?}"),
    }
    let snap = match next_incident(&mut watch).await {
        incident_update::Update::Snapshot(i) => i,
        other => panic!("expected the open incident, got {other:?}"),
    };
    assert_eq!(
        (snap.id, snap.state.as_str(), snap.category.as_str()),
        (id, "discovered", "fire")
    );
    assert_eq!(snap.opened_by, "test-admin", "who opened it is the caller");
    assert_eq!(snap.opened_at_ms, T0);
    assert!(snap.response_due_at_ms > T0);
    assert_eq!(snap.procedure.len(), inc["procedure"].as_array().unwrap().len());
    assert!(!snap.procedure.is_empty());
    match next_incident(&mut watch).await {
        incident_update::Update::SnapshotComplete(c) => assert_eq!(c.count, 1),
        other => panic!("expected the marker, got {other:?}"),
    }

    let to = |state: &str| TransitionIncidentRequest {
        incident_id: id,
        to: state.into(),
        actor: "wang".into(),
        note: format!("now {state}"),
        ..Default::default()
    };
    let err = client.transition_incident(to("closed")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("discovered → closed"), "{err}");
    let err = client.transition_incident(to("burning")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let err = client
        .transition_incident(TransitionIncidentRequest {
            incident_id: 999_999,
            ..to("assessed")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    let moved = client.transition_incident(to("assessed")).await.unwrap().into_inner();
    assert_eq!(moved.state, "assessed");
    let change = loop {
        if let incident_update::Update::Change(c) = next_incident(&mut watch).await
            && c.change == "transition"
        {
            break c;
        }
    };
    assert_eq!(change.incident.as_ref().unwrap().state, "assessed");
    assert!(!change.removed);
    let err = client.transition_incident(to("false_alarm")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "a false alarm needs a reason: {err}");

    let step = |step: &str, skipped: bool, note: &str| CompleteStepRequest {
        incident_id: id,
        step: step.into(),
        actor: "wang".into(),
        note: note.into(),
        skipped,
    };
    let first = snap.procedure[0].step_id.clone();
    let done = client
        .complete_step(step(&first, false, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.procedure[0].status, "done");
    assert_eq!(done.procedure[0].done_by, "test-admin");
    let err = client.complete_step(step(&first, false, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "done twice: {err}");
    let err = client.complete_step(step("nope", false, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    let err = client.complete_step(step("2", true, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "a skip needs a note: {err}");
    let skipped = client
        .complete_step(step("2", true, "brigade already called"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(skipped.procedure[1].status, "skipped");
    let change = loop {
        if let incident_update::Update::Change(c) = next_incident(&mut watch).await
            && c.change == "step"
        {
            break c;
        }
    };
    assert_eq!(change.incident.unwrap().procedure[0].status, "done");

    // Closed over open mandatory steps by a supervisor's override, which needs a reason;
    // the watcher is told to drop it.
    for state in ["reported", "on_site", "recorded"] {
        client.transition_incident(to(state)).await.unwrap();
    }
    let close = |reason: &str| TransitionIncidentRequest {
        supervisor_override: Some(SupervisorOverride {
            supervisor: "Zhang".into(),
            reason: reason.into(),
        }),
        ..to("closed")
    };
    let err = client.transition_incident(close("")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "an override needs a reason: {err}");
    let closed = client
        .transition_incident(close("brigade confirmed: burnt food"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.state, "closed");
    // The override is the caller's (here the placeholder principal until sign-in), never the
    // name in the request.
    assert_eq!(closed.override_by, "test-admin");
    assert!(closed.closed_at_ms > 0);
    let change = loop {
        if let incident_update::Update::Change(c) = next_incident(&mut watch).await
            && c.incident.as_ref().is_some_and(|i| i.state == "closed")
        {
            break c;
        }
    };
    assert!(change.removed, "a closed incident leaves the watched set");

    // A watch of estate-b: an empty snapshot, then only estate-b's incidents.
    let mut b = client
        .watch_incidents(WatchIncidentsRequest {
            estate_id: "estate-b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        next_incident(&mut b).await,
        incident_update::Update::SnapshotStart(_)
    ));
    match next_incident(&mut b).await {
        incident_update::Update::SnapshotComplete(c) => assert_eq!(c.count, 0),
        other => panic!("estate-a's incidents are not estate-b's business: {other:?}"),
    }
    for estate in [ESTATE, "estate-b"] {
        let (status, inc) = http(
            &hub,
            "POST",
            "/api/v1/incidents",
            Some(json!({"estate": estate, "category": "intrusion", "title": "Fence cut", "operator": "wang"})),
        )
        .await;
        assert_eq!(status, 201, "{inc}");
    }
    match next_incident(&mut b).await {
        incident_update::Update::Change(c) => assert_eq!(c.incident.unwrap().estate_id, "estate-b"),
        other => panic!("expected estate-b's incident, got {other:?}"),
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn send_command_records_it_and_hands_it_to_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let mut link = connect(&hub).await;
    let mut client = centre(&hub).await;
    let command = |device: &str, action: &str, operator: &str| SendCommandRequest {
        estate_id: ESTATE.into(),
        device_id: device.into(),
        action: action.into(),
        args: [("door".to_owned(), "D1".to_owned())].into(),
        operator: operator.into(),
        reason: "resident locked out".into(),
        incident_id: 0,
    };
    let c = client
        .send_command(command("door-1", "unlock", "op-li"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (c.state.as_str(), c.action.as_str(), c.device_kind.as_str()),
        ("sent", "unlock", "door")
    );
    assert_eq!(c.args.get("door").map(String::as_str), Some("D1"));
    assert_eq!(c.deadline_ms, T0 + 10_000);
    match link.next().await {
        Ok(Some(Downlink {
            msg: Some(downlink::Msg::Command(sent)),
        })) => assert_eq!(
            (sent.command_id, sent.device_id.as_str(), sent.action.as_str()),
            (format!("cmd-{}", c.id), "door-1", "unlock")
        ),
        other => panic!("expected the command at the gateway, got {other:?}"),
    }
    // The same record the HTTP API keeps.
    let stored: Value = get(&hub, &format!("/api/v1/commands/{}", c.id)).await;
    assert_eq!(stored["operator"], "test-admin");

    let err = client
        .send_command(command("door-404", "unlock", "op"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    let err = client.send_command(command("door-1", "reset", "op")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "a door cannot reset: {err}");
    // The request's operator field is not asked for: who asks is the caller.
    let err = client
        .send_command(SendCommandRequest {
            incident_id: 999_999,
            ..command("door-1", "unlock", "op")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "no such incident: {err}");
    hub.shutdown().await;
}

#[tokio::test]
async fn health_serves_the_command_centre_and_reflection_lists_it() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let r = HealthClient::new(channel(&hub).await)
        .check(HealthCheckRequest {
            service: "gatehouse.v1.CommandCentre".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status(), ServingStatus::Serving);

    let mut reflection = ServerReflectionClient::new(channel(&hub).await);
    let ask = |m: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "gatehouse.v1.CommandCentre".into(),
            )),
        ]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = next(&mut stream).await.message_response else {
        panic!("expected a service list")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"gatehouse.v1.CommandCentre"), "{names:?}");
    assert!(names.contains(&"gatehouse.v1.GatewayLink"), "{names:?}");
    let Some(MessageResponse::FileDescriptorResponse(files)) = next(&mut stream).await.message_response else {
        panic!("expected the file that defines the service")
    };
    assert!(!files.file_descriptor_proto.is_empty());
    hub.shutdown().await;
}

/// A line of the Python client, within the wait.
async fn py_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.recv())
        .await
        .expect("the Python client says something within a minute")
        .expect("the Python client is still running (it needs grpcio and grpcio-tools: bash .ci/setup)");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
}

#[tokio::test]
async fn a_python_grpcio_client_receives_the_snapshot_then_a_change_and_acknowledges() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let mut link = connect(&hub).await;
    raise(&mut link, "door-1").await;
    let first = alarm_ids(&hub).await[0];

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(manifest.join("tests/centre_client.py"))
        .arg(hub.grpc_addr().to_string())
        .arg(manifest.join("../proto/proto"))
        .env("GATEHOUSE_TOKEN", common::ADMIN_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python3 (with grpcio and grpcio-tools: .ci/setup)");
    let stdout = child.stdout.take().unwrap();
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    // The pipe is read on a thread of its own: a blocking read must not stall the runtime.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    assert_eq!(
        py_line(&mut lines).await,
        json!({"kind": "snapshot_start", "reason": "connected"})
    );
    let item = py_line(&mut lines).await;
    assert_eq!(
        (item["kind"].as_str(), item["id"].as_i64()),
        (Some("snapshot"), Some(first))
    );
    assert_eq!(item["device"], "door-1");
    assert_eq!(item["priority"], "P2");
    assert_eq!(
        py_line(&mut lines).await,
        json!({"kind": "snapshot_complete", "count": 1})
    );

    raise(&mut link, "door-2").await;
    // The raise, the client's acknowledgement, and its second try refused.
    let mut seen = Vec::new();
    let mut raised = None;
    let code = loop {
        let l = py_line(&mut lines).await;
        seen.push(l.clone());
        match l["kind"].as_str() {
            Some("change") if l["change"] == "raised" => raised = l["id"].as_i64(),
            Some("error") => break l["code"].clone(),
            Some("change" | "acked") => {}
            _ => panic!("unexpected line {l}: {seen:?}"),
        }
    };
    assert_eq!(code, "FAILED_PRECONDITION", "acknowledged twice: {seen:?}");
    let raised = raised.expect("the raise arrived as a change");
    assert_ne!(raised, first);
    assert!(
        seen.iter()
            .any(|l| l["kind"] == "acked" && l["id"] == raised && l["acked_by"] == "test-admin"),
        "{seen:?}"
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "the client saw its acknowledgement as a change and ended: {status}"
    );
    while let Ok(l) = lines.try_recv() {
        seen.push(serde_json::from_str(&l).unwrap());
    }
    assert!(
        seen.iter().any(|l| l["change"] == "acknowledged" && l["id"] == raised),
        "{seen:?}"
    );
    hub.shutdown().await;
}
