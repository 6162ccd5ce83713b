//! Alarm book, incidents, escalation and notifications through a running hub: real gRPC in,
//! real HTTP out, real SQLite, a manual clock advanced by hand (no sleeping through waits).

use std::path::Path;
use std::sync::{Arc, Mutex};

use gatehouse_hub::{HubConfig, ManualClock, RunningHub};
use gatehouse_proto::{
    Direction, DoorEvent, DoorEventType, FireEvent, FireEventType, PointReading, Quality, VehicleEvent, event::Body,
};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

mod common;

use common::{Link, WAIT, eventually, get, http};

const GW: &str = "gw-1";
const ESTATE: &str = "estate-a";
const SECRET: &str = "test-secret-0123456789";
const T0: i64 = 1_764_000_000_000;

const ROSTER: &str = r#"
[[roster]]
estate = "estate-a"
role = "monitoring_room"
name = "Monitoring room A"
channel = "log"

[[roster]]
estate = "estate-a"
role = "supervisor"
name = "Supervisor Zhang"
channel = "log"

[[roster]]
role = "duty_manager"
name = "Duty manager Li"
channel = "log"

[[roster]]
estate = "estate-a"
role = "patrol_post"
name = "Patrol post A"
channel = "log"

[[roster]]
estate = "estate-a"
role = "facility_team"
name = "Facility team"
channel = "log"

[[rules.points]]
point = "pump1_fault"
when = true
priority = "P3"
message = "Duty pump tripped"
"#;

fn config(db: &Path, extra: &str) -> HubConfig {
    common::with_admin(
        HubConfig::from_toml(&format!(
            r#"
[hub]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
database = "{}"
hub_id = "hub-test"

[tls]
plaintext = true

[[gateways]]
id = "gw-1"
estate = "estate-a"

[[estates]]
id = "estate-a"
name = "Riverside Gardens"

[[estates]]
id = "estate-b"
name = "Hillside Court"

[notify]
webhook_secret = "{SECRET}"
{extra}
"#,
            common::db::database_url(db)
        ))
        .expect("test configuration is valid"),
    )
}

async fn start(db: &Path, clock: &ManualClock, extra: &str) -> RunningHub {
    gatehouse_hub::start_with_clock(config(db, extra), Arc::new(clock.clone()))
        .await
        .expect("hub starts")
}

async fn connect(hub: &RunningHub) -> Link {
    Link::connect(hub, GW, ESTATE, &["door-1", "panel-1", "plc-1"]).await
}

fn fire(t: FireEventType, zone: &str) -> Body {
    Body::Fire(FireEvent {
        r#type: t as i32,
        zone: zone.into(),
        ..Default::default()
    })
}

fn forced(door: &str) -> Body {
    Body::Door(DoorEvent {
        r#type: DoorEventType::Forced as i32,
        door: door.into(),
        seconds: 0,
    })
}

fn pump(value: f64) -> Body {
    Body::Point(PointReading {
        point: "pump1_fault".into(),
        value,
        quality: Quality::Good as i32,
        ..Default::default()
    })
}

async fn post(hub: &RunningHub, path: &str, body: Value) -> (u16, Value) {
    http(hub, "POST", path, Some(body)).await
}

fn list(v: &Value) -> &Vec<Value> {
    v.as_array().expect("a JSON array")
}

async fn notifications(hub: &RunningHub, incident: i64) -> Vec<Value> {
    list(&get(hub, &format!("/api/v1/notifications?incident={incident}")).await).clone()
}

fn roles(ns: &[Value]) -> Vec<String> {
    ns.iter().map(|n| n["role"].as_str().unwrap().to_owned()).collect()
}

async fn only_incident(hub: &RunningHub) -> i64 {
    let incidents = get(hub, "/api/v1/incidents").await;
    assert_eq!(list(&incidents).len(), 1, "{incidents}");
    incidents[0]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn unacknowledged_fire_alarm_escalates_to_duty_manager_after_sixty_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock, ROSTER).await;
    let mut link = connect(&hub).await;
    link.send(vec![("panel-1", "block 3", fire(FireEventType::FireAlarm, "3"))])
        .await;
    let id = only_incident(&hub).await;
    let detail = get(&hub, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(detail["category"], "fire");
    assert_eq!(detail["priority"], "P1");
    assert_eq!(detail["state"], "discovered");
    assert_eq!(list(&detail["procedure"]).len(), 6);
    assert_eq!(detail["procedure"][1]["step_id"], "call_119");

    hub.tick_now().await.unwrap();
    assert_eq!(roles(&notifications(&hub, id).await), ["monitoring_room", "supervisor"]);
    clock.advance_s(59);
    hub.tick_now().await.unwrap();
    assert_eq!(notifications(&hub, id).await.len(), 2, "not yet at 59 s");
    clock.advance_s(1);
    hub.tick_now().await.unwrap();
    let ns = notifications(&hub, id).await;
    assert_eq!(roles(&ns), ["monitoring_room", "supervisor", "duty_manager"]);
    assert_eq!(ns[2]["recipient"], "Duty manager Li");
    assert_eq!(ns[2]["body"]["incident"]["id"], id);
    let detail = get(&hub, &format!("/api/v1/incidents/{id}")).await;
    let outcomes: Vec<&str> = list(&detail["escalation"]["steps"])
        .iter()
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["fired", "fired", "fired"]);
    let timeline: Vec<&str> = list(&detail["timeline"])
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert!(
        timeline.iter().any(|t| t.contains("step 3 (duty_manager) fired")),
        "{timeline:?}"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn acknowledging_the_fire_alarm_within_sixty_seconds_stops_the_escalation() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock, ROSTER).await;
    let mut link = connect(&hub).await;
    link.send(vec![("panel-1", "block 3", fire(FireEventType::FireAlarm, "3"))])
        .await;
    let id = only_incident(&hub).await;
    hub.tick_now().await.unwrap();
    clock.advance_s(20);
    let alarm = get(&hub, "/api/v1/alarms").await[0]["id"].as_i64().unwrap();
    let (status, a) = post(
        &hub,
        &format!("/api/v1/alarms/{alarm}/ack"),
        json!({"operator": "wang"}),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["active"], true, "a fire alarm stays active until the panel resets");
    clock.advance_s(120);
    hub.tick_now().await.unwrap();
    assert_eq!(roles(&notifications(&hub, id).await), ["monitoring_room", "supervisor"]);
    let detail = get(&hub, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(detail["acknowledged"], true);
    assert_eq!(detail["acknowledged_by"], "test-admin");
    assert_eq!(detail["escalation"]["steps"][2]["outcome"], "stopped: acknowledged");
    hub.shutdown().await;
}

#[tokio::test]
async fn hub_restarted_mid_policy_fires_no_step_twice_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let clock = ManualClock::new(T0);
    let policy = r#"
[[escalation.policies]]
category = "fire"
steps = [
  { role = "monitoring_room" },
  { role = "supervisor", wait_s = 30 },
  { role = "duty_manager", wait_s = 30 },
]
"#;
    let extra = format!("{ROSTER}{policy}");
    let hub = start(&db, &clock, &extra).await;
    let mut link = connect(&hub).await;
    link.send(vec![("panel-1", "block 3", fire(FireEventType::FireAlarm, "3"))])
        .await;
    let id = only_incident(&hub).await;
    hub.tick_now().await.unwrap();
    clock.advance_s(30);
    hub.tick_now().await.unwrap();
    assert_eq!(roles(&notifications(&hub, id).await), ["monitoring_room", "supervisor"]);
    drop(link);
    hub.shutdown().await;

    // Down while the duty manager's step falls due; a later edit of the policy must not matter.
    clock.advance_s(90);
    let edited = extra.replace("wait_s = 30 },\n]", "wait_s = 3000 },\n]");
    let hub = start(&db, &clock, &edited).await;
    hub.tick_now().await.unwrap();
    hub.tick_now().await.unwrap();
    clock.advance_s(10);
    hub.tick_now().await.unwrap();
    assert_eq!(
        roles(&notifications(&hub, id).await),
        ["monitoring_room", "supervisor", "duty_manager"]
    );
    let detail = get(&hub, &format!("/api/v1/incidents/{id}")).await;
    let steps = list(&detail["escalation"]["steps"]);
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().all(|s| s["outcome"] == "fired"), "{steps:?}");
    hub.shutdown().await;
}

#[tokio::test]
async fn close_is_refused_while_a_mandatory_step_is_open_and_allowed_with_a_supervisor_override() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock, ROSTER).await;
    let (status, inc) = post(
        &hub,
        "/api/v1/incidents",
        json!({"estate": ESTATE, "area": "block 7", "category": "fire", "title": "Resident reports smoke on floor 12", "operator": "wang"}),
    )
    .await;
    assert_eq!(status, 201, "{inc}");
    let id = inc["id"].as_i64().unwrap();
    assert_eq!(inc["opened_by"], "test-admin");
    assert_eq!(
        inc["next"],
        json!(["assessed"]),
        "the detail names the legal transitions"
    );
    let to = |state: &str| json!({"to": state, "actor": "wang", "note": format!("now {state}")});
    let path = format!("/api/v1/incidents/{id}/transition");

    let (status, e) = post(&hub, &path, to("closed")).await;
    assert_eq!(status, 409, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("discovered → closed"), "{e}");
    let (status, e) = post(&hub, &path, json!({"to": "burning"})).await;
    assert_eq!(status, 400, "{e}");
    let (status, assessed) = post(&hub, &path, to("assessed")).await;
    assert_eq!(status, 200, "{assessed}");
    assert_eq!(assessed["next"], json!(["reported", "false_alarm"]), "{assessed}");
    let (status, e) = post(&hub, &path, to("false_alarm")).await;
    assert_eq!(status, 422, "a false alarm needs a reason: {e}");
    for s in ["reported", "on_site", "recorded"] {
        let (status, body) = post(&hub, &path, to(s)).await;
        assert_eq!(status, 200, "{s}: {body}");
    }
    for step in ["confirm_location", "2", "notify_centre"] {
        let (status, body) = post(
            &hub,
            &format!("/api/v1/incidents/{id}/steps/{step}/done"),
            json!({"actor": "wang"}),
        )
        .await;
        assert_eq!(status, 200, "{step}: {body}");
    }
    let (status, e) = post(&hub, &format!("/api/v1/incidents/{id}/steps/call_119/done"), json!({})).await;
    assert_eq!(status, 409, "done twice: {e}");
    let (status, e) = post(&hub, &format!("/api/v1/incidents/{id}/steps/nope/done"), json!({})).await;
    assert_eq!(status, 404, "{e}");

    let (status, e) = post(&hub, &path, to("closed")).await;
    assert_eq!(status, 409, "{e}");
    let detail = e["detail"].as_str().unwrap();
    assert!(
        detail.contains("evacuation_broadcast") && detail.contains("account_residents"),
        "{e}"
    );
    let (status, e) = post(
        &hub,
        &path,
        json!({"to": "closed", "override": {"supervisor": "Zhang"}}),
    )
    .await;
    assert_eq!(status, 422, "an override needs a reason: {e}");
    let (status, closed) = post(
        &hub,
        &path,
        json!({"to": "closed", "actor": "wang", "override": {"supervisor": "Zhang", "reason": "brigade confirmed: burnt food, no fire"}}),
    )
    .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["state"], "closed");
    // The override is the caller's (here the placeholder principal until sign-in), never the
    // name in the request.
    assert_eq!(closed["override_by"], "test-admin");
    let skipped: Vec<&str> = list(&closed["procedure"])
        .iter()
        .filter(|s| s["status"] == "skipped")
        .map(|s| s["step_id"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["evacuation_broadcast", "meet_brigade", "account_residents"]);
    let ns = notifications(&hub, id).await;
    assert!(
        ns.iter()
            .any(|n| n["kind"] == "supervisor" && n["role"] == "supervisor"),
        "{ns:?}"
    );
    assert!(
        closed["escalation"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| !s["outcome"].is_null())
    );
    let (status, e) = post(
        &hub,
        &format!("/api/v1/incidents/{id}/steps/meet_brigade/done"),
        json!({}),
    )
    .await;
    assert_eq!(status, 409, "{e}");

    // The ordinary way: every mandatory step done and no alarm active closes without override.
    let (_, other) = post(
        &hub,
        "/api/v1/incidents",
        json!({"estate": ESTATE, "category": "other", "title": "Walk-in report"}),
    )
    .await;
    let oid = other["id"].as_i64().unwrap();
    let opath = format!("/api/v1/incidents/{oid}/transition");
    for s in ["assessed", "reported", "on_site", "recorded"] {
        assert_eq!(post(&hub, &opath, to(s)).await.0, 200);
    }
    for step in ["assess", "report_supervisor", "record"] {
        assert_eq!(
            post(&hub, &format!("/api/v1/incidents/{oid}/steps/{step}/done"), json!({}))
                .await
                .0,
            200
        );
    }
    let (status, body) = post(&hub, &opath, to("closed")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = post(&hub, &opath, to("assessed")).await;
    assert_eq!(status, 409);
    hub.shutdown().await;
}

#[tokio::test]
async fn five_hundred_alarms_from_one_estate_within_a_minute_flood_and_group_instead_of_notifying_each() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock, ROSTER).await;
    let mut link = connect(&hub).await;
    let areas = ["main gate", "car park", "block 1", "block 2", "block 3"];
    let doors: Vec<String> = (0..500).map(|i| format!("D{i}")).collect();
    for chunk in 0..10 {
        let batch = (0..50)
            .map(|i| {
                let n = chunk * 50 + i;
                ("door-1", areas[n % areas.len()], forced(&doors[n]))
            })
            .collect();
        link.send(batch).await;
        clock.advance_s(5);
        hub.tick_now().await.unwrap();
    }
    let alarms = get(&hub, "/api/v1/alarms?limit=1000").await;
    assert_eq!(list(&alarms).len(), 500);
    let kpi = get(&hub, "/api/v1/kpi/alarms?hours=1").await;
    assert_eq!(kpi["flood"]["active"], true, "{kpi}");
    assert_eq!(kpi["alarms"], 500);
    assert_eq!(kpi["priority_mix"]["P2"]["count"], 500);
    let incidents = get(&hub, "/api/v1/incidents").await;
    assert!(list(&incidents).len() <= areas.len(), "grouped: {incidents}");
    let all = list(&get(&hub, "/api/v1/notifications").await).clone();
    assert!(all.len() <= areas.len() + 1, "not 500 notifications: {}", all.len());
    assert_eq!(
        all.iter().filter(|n| n["kind"] == "flood").count(),
        1,
        "flood announced once"
    );

    // Quiet for ten minutes: the flood ends.
    clock.advance_s(601);
    hub.tick_now().await.unwrap();
    let kpi = get(&hub, "/api/v1/kpi/alarms?hours=1").await;
    assert_eq!(kpi["flood"]["active"], false, "{kpi}");
    assert!(kpi["flood"]["share_of_time"].as_f64().unwrap() > 0.1);
    hub.shutdown().await;
}

#[tokio::test]
async fn chattering_pump_contact_notifies_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock, ROSTER).await;
    let mut link = connect(&hub).await;
    link.send(vec![("plc-1", "pump room", pump(1.0))]).await;
    hub.tick_now().await.unwrap();
    let id = only_incident(&hub).await;
    let alarm = get(&hub, "/api/v1/alarms").await[0]["id"].as_i64().unwrap();
    assert_eq!(
        post(&hub, &format!("/api/v1/alarms/{alarm}/ack"), json!({})).await.0,
        200
    );
    for _ in 0..5 {
        clock.advance_s(4);
        link.send(vec![("plc-1", "pump room", pump(0.0))]).await;
        clock.advance_s(4);
        link.send(vec![("plc-1", "pump room", pump(1.0))]).await;
        hub.tick_now().await.unwrap();
    }
    let a = &get(&hub, "/api/v1/alarms").await[0];
    assert_eq!(a["chattering"], true, "{a}");
    assert_eq!(a["activations"], 6);
    let detail = get(&hub, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(detail["category"], "pump_flooding");
    assert_eq!(
        roles(&notifications(&hub, id).await),
        ["facility_team"],
        "one notification, not one per activation"
    );
    let history = get(&hub, &format!("/api/v1/alarms/{alarm}/history")).await;
    assert!(list(&history).iter().any(|h| h["change"] == "chattering"));
    hub.shutdown().await;
}

#[tokio::test]
async fn shelved_alarm_returns_at_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock, ROSTER).await;
    let mut link = connect(&hub).await;
    link.send(vec![("panel-1", "block 3", fire(FireEventType::Fault, "5"))])
        .await;
    let alarm = get(&hub, "/api/v1/alarms?category=fire").await[0]["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/alarms/{alarm}/shelve");
    let (status, e) = post(&hub, &path, json!({"minutes": 30})).await;
    assert_eq!(status, 422, "a reason is required: {e}");
    let (status, e) = post(&hub, &path, json!({"minutes": 100000, "reason": "x"})).await;
    assert_eq!(status, 422, "{e}");
    let (status, e) = post(
        &hub,
        "/api/v1/alarms/99999/shelve",
        json!({"minutes": 5, "reason": "x"}),
    )
    .await;
    assert_eq!(status, 404, "{e}");
    let (status, a) = post(
        &hub,
        &path,
        json!({"minutes": 30, "reason": "loop 2 under repair", "operator": "wang"}),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["shelved"], true);
    assert_eq!(a["shelved_by"], "test-admin");
    clock.advance_s(29 * 60);
    hub.tick_now().await.unwrap();
    assert_eq!(get(&hub, "/api/v1/alarms?category=fire").await[0]["shelved"], true);
    clock.advance_s(60);
    hub.tick_now().await.unwrap();
    let a = &get(&hub, "/api/v1/alarms?category=fire").await[0];
    assert_eq!(a["shelved"], false, "{a}");
    assert_eq!(a["active"], true);
    let history = get(&hub, &format!("/api/v1/alarms/{alarm}/history")).await;
    let changes: Vec<&str> = list(&history).iter().map(|h| h["change"].as_str().unwrap()).collect();
    assert_eq!(changes, ["raised", "shelved", "unshelved"]);
    hub.shutdown().await;
}

#[derive(Default)]
struct Received {
    calls: Vec<(String, bool, String)>,
}

async fn webhook_receiver(state: Arc<Mutex<Received>>) -> std::net::SocketAddr {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let sig = headers
                    .get("x-gatehouse-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(&body);
                let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                let mut s = state.lock().unwrap();
                s.calls
                    .push((String::from_utf8_lossy(&body).into_owned(), sig == expected, sig));
                if s.calls.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn real_webhook_receiver_gets_signed_notifications_and_gets_them_again_after_answering_500() {
    let received = Arc::new(Mutex::new(Received::default()));
    let addr = webhook_receiver(received.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let roster = format!(
        r#"
[[roster]]
estate = "estate-a"
role = "facility_team"
name = "Facility chat"
channel = "http://{addr}/hook"

[[rules.points]]
point = "pump1_fault"
when = true
priority = "P3"
"#
    );
    let hub = start(&dir.path().join("hub.db"), &clock, &roster).await;
    let mut link = connect(&hub).await;
    link.send(vec![("plc-1", "pump room", pump(1.0))]).await;
    hub.tick_now().await.unwrap();
    let id = only_incident(&hub).await;

    let n = received.clone();
    eventually("the first delivery", || {
        let n = n.clone();
        async move { !n.lock().unwrap().calls.is_empty() }
    })
    .await;
    eventually("the failed attempt recorded", || async {
        let ns = notifications(&hub, id).await;
        ns.len() == 1 && ns[0]["attempts"] == 1
    })
    .await;
    let ns = notifications(&hub, id).await;
    assert_eq!(ns[0]["status"], "pending");
    assert_eq!(ns[0]["channel"], "webhook");
    assert!(ns[0]["last_error"].as_str().unwrap().contains("500"), "{ns:?}");

    clock.advance_s(5);
    eventually("the retry delivered", || async {
        notifications(&hub, id).await[0]["status"] == "delivered"
    })
    .await;
    let calls = received.lock().unwrap().calls.clone();
    assert_eq!(calls.len(), 2);
    assert!(
        calls.iter().all(|(_, ok, sig)| *ok && sig.starts_with("sha256=")),
        "{calls:?}"
    );
    assert_eq!(calls[0].0, calls[1].0, "the same body each time");
    let body: Value = serde_json::from_str(&calls[0].0).unwrap();
    assert_eq!(body["incident"]["id"], id);
    assert_eq!(body["role"], "facility_team");
    let detail = get(&hub, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(detail["notifications"][0]["attempts"], 2);
    let texts: Vec<&str> = list(&detail["timeline"])
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert!(texts.iter().any(|t| t.contains("attempt 1 failed")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("delivered (attempt 2)")), "{texts:?}");
    hub.shutdown().await;
}

#[tokio::test]
async fn acknowledge_and_clear_racing_leave_a_consistent_state() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = Arc::new(start(&dir.path().join("hub.db"), &clock, ROSTER).await);
    let mut link = connect(&hub).await;
    link.send(
        (0..40)
            .map(|z| ("panel-1", "block 3", fire(FireEventType::FireAlarm, &z.to_string())))
            .collect(),
    )
    .await;
    let ids: Vec<i64> = list(&get(&hub, "/api/v1/alarms").await)
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 40);
    let acks = ids.iter().map(|id| {
        let hub = hub.clone();
        let id = *id;
        tokio::spawn(async move {
            post(&hub, &format!("/api/v1/alarms/{id}/ack"), json!({"operator": "op"}))
                .await
                .0
        })
    });
    let acks: Vec<_> = acks.collect();
    link.send(vec![("panel-1", "block 3", fire(FireEventType::Reset, ""))])
        .await;
    for a in acks {
        assert_eq!(a.await.unwrap(), 200);
    }
    for a in list(&get(&hub, "/api/v1/alarms").await) {
        assert_eq!(
            (a["active"].as_bool(), a["acknowledged"].as_bool()),
            (Some(false), Some(true)),
            "{a}"
        );
        let id = a["id"].as_i64().unwrap();
        let history = get(&hub, &format!("/api/v1/alarms/{id}/history")).await;
        let mut changes: Vec<&str> = list(&history).iter().map(|h| h["change"].as_str().unwrap()).collect();
        changes.sort();
        assert_eq!(changes, ["acknowledged", "cleared", "raised"], "alarm {id}");
    }
    assert!(
        get(&hub, "/api/v1/alarms?state=standing")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    Arc::try_unwrap(hub).unwrap().shutdown().await;
}

#[tokio::test]
async fn stream_sends_alarm_incident_and_notification_changes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock, ROSTER).await;
    let mut response = common::admin_client()
        .get(format!("http://{}/api/v1/stream", hub.http_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    while !seen.contains("event: hello") {
        let chunk = tokio::time::timeout(WAIT, response.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let mut link = connect(&hub).await;
    link.send(vec![("panel-1", "block 3", fire(FireEventType::FireAlarm, "3"))])
        .await;
    hub.tick_now().await.unwrap();
    while !(seen.contains("event: alarm") && seen.contains("event: incident") && seen.contains("event: notification")) {
        let chunk = tokio::time::timeout(WAIT, response.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"change\":\"raised\""), "{seen}");
    assert!(seen.contains("\"change\":\"opened\""), "{seen}");
    hub.shutdown().await;
}

#[tokio::test]
async fn silent_gateway_raises_one_p4_alarm_not_one_per_device() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let clock = ManualClock::new(T0);
    let hub = start(&db, &clock, ROSTER).await;
    let link = connect(&hub).await;
    clock.advance_s(31);
    hub.tick_now().await.unwrap();
    let alarms = get(&hub, "/api/v1/alarms?state=active").await;
    assert_eq!(list(&alarms).len(), 1, "{alarms}");
    assert_eq!(alarms[0]["condition"], "gateway_silent");
    assert_eq!(alarms[0]["priority"], "P4");
    let pool = common::db::inspect_at(&db).await;
    let unknown: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE state_unknown = TRUE")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(unknown, 3);
    link.heartbeat().await;
    eventually("the silence alarm cleared", || async {
        get(&hub, "/api/v1/alarms?state=active")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    hub.shutdown().await;
}

#[tokio::test]
async fn unregistered_vehicle_raises_p4_and_the_kpi_reports_the_registration_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock, ROSTER).await;
    let mut link = connect(&hub).await;
    let car = |resident: bool, pass: &str| {
        Body::Vehicle(VehicleEvent {
            lane: "in-1".into(),
            plate: "沪A12345".into(),
            direction: Direction::In as i32,
            resident,
            pass: pass.into(),
        })
    };
    link.send(vec![
        ("barrier-1", "vehicle gate", car(true, "")),
        ("barrier-1", "vehicle gate", car(false, "V-17")),
        ("barrier-1", "vehicle gate", car(false, "")),
    ])
    .await;
    let alarms = get(&hub, "/api/v1/alarms").await;
    assert_eq!(list(&alarms).len(), 1);
    assert_eq!(alarms[0]["priority"], "P4");
    assert!(
        !alarms[0]["message"].as_str().unwrap().contains("12345"),
        "no plate in the alarm"
    );
    assert!(get(&hub, "/api/v1/incidents").await.as_array().unwrap().is_empty());
    let kpi = get(&hub, "/api/v1/kpi/alarms").await;
    let a = &kpi["vehicle_registration"][0];
    assert_eq!(
        (a["estate"].as_str(), a["entries"].as_i64(), a["registered"].as_i64()),
        (Some(ESTATE), Some(3), Some(2))
    );
    assert_eq!(a["meets_target"], false);
    assert_eq!(kpi["top_ten"][0]["priority"], "P4");
    assert_eq!(kpi["command_centre"], "hub-test");
    let (status, e) = http(&hub, "GET", "/api/v1/kpi/alarms?hours=0", None).await;
    assert_eq!(status, 400, "{e}");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_device_in_maintenance_raises_suppressed_alarms_that_open_no_incident_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock, ROSTER).await;
    let mut link = connect(&hub).await;
    let path = "/api/v1/devices/door-1/maintenance";
    let (status, e) = post(&hub, path, json!({"reason": "x"})).await;
    assert_eq!(status, 400, "the estate is required: {e}");
    let (status, e) = post(&hub, path, json!({"estate": ESTATE})).await;
    assert_eq!(status, 422, "a reason is required: {e}");
    let (status, list_now) = post(
        &hub,
        path,
        json!({"estate": ESTATE, "reason": "replacing the lock", "operator": "zhao", "minutes": 60}),
    )
    .await;
    assert_eq!(status, 200, "{list_now}");
    assert_eq!(list_now[0]["device"], "door-1");

    // Forced while the technician works on it: booked, suppressed, no incident, nobody paged.
    link.send(vec![("door-1", "main gate", forced("D1"))]).await;
    let alarm = &get(&hub, "/api/v1/alarms?category=security").await[0];
    assert_eq!(alarm["suppressed"], true, "{alarm}");
    assert_eq!(alarm["incident_id"], Value::Null);
    assert!(list(&get(&hub, "/api/v1/incidents").await).is_empty());
    let id = alarm["id"].as_i64().unwrap();
    let history = get(&hub, &format!("/api/v1/alarms/{id}/history")).await;
    assert!(
        list(&history)
            .iter()
            .any(|h| h["note"].as_str().is_some_and(|n| n.contains("maintenance"))),
        "{history}"
    );

    // The window passes: the next forced door is a real one.
    clock.advance_s(61 * 60);
    assert!(list(&get(&hub, "/api/v1/devices/maintenance").await).is_empty());
    link.send(vec![("door-1", "main gate", forced("D2"))]).await;
    let incidents = get(&hub, "/api/v1/incidents").await;
    assert_eq!(list(&incidents).len(), 1, "{incidents}");
    let (status, e) = post(&hub, path, json!({"estate": ESTATE, "on": false})).await;
    assert_eq!(status, 409, "an expired maintenance is over already: {e}");
    hub.shutdown().await;
}
