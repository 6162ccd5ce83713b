//! The rota through a running hub: real gRPC in (badges at post readers and patrol
//! checkpoints), real HTTP out, real SQLite, a manual clock advanced by hand.

use std::path::Path;
use std::sync::Arc;

use gatehouse_hub::{HubConfig, ManualClock, RunningHub};
use gatehouse_proto::{AccessEvent, AccessResult, DoorEvent, DoorEventType, event::Body};
use serde_json::{Value, json};

mod common;

use common::{Link, get, http};

const GW: &str = "gw-a";

/// 2026-11-25 21:00 in Shanghai: an hour into the night shift.
fn t0() -> i64 {
    chrono::DateTime::parse_from_rfc3339("2026-11-25T21:00:00+08:00")
        .unwrap()
        .timestamp_millis()
}

fn ms(rfc: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc).unwrap().timestamp_millis()
}

const ROTA: &str = r#"
[rota]
grace_s = 300

[[posts]]
estate = "estate-a"
id = "a-gate"
kind = "gate"
area = "main gate"
readers = ["door-1"]
shifts = ["night"]

[[posts]]
estate = "estate-a"
id = "a-patrol"
kind = "patrol"
area = "grounds"
shifts = ["night"]

[[posts]]
estate = "estate-b"
id = "b-gate"
kind = "gate"
shifts = ["day"]

[[guards]]
id = "g-wang"
name = "Wang Fang"
home_estate = "estate-a"
credentials = ["card-wang"]

[[guards]]
id = "g-li"
name = "Li Wei"
home_estate = "estate-a"
credentials = ["card-li"]

[[guards]]
id = "g-zhao"
name = "Zhao Lei"
home_estate = "estate-a"
credentials = ["card-zhao"]

[[guards]]
id = "g-chen"
name = "Chen Jie"
home_estate = "estate-a"
credentials = ["card-chen"]

[[patrol_routes]]
estate = "estate-a"
id = "night-round"
post = "a-patrol"
checkpoints = ["cp-1", "cp-2", "cp-3"]
period_min = 120
tour_min = 30
tolerance_min = 5

[[roster]]
estate = "estate-a"
role = "supervisor"
name = "Supervisor Zhang"
channel = "log"

[[roster]]
estate = "estate-a"
role = "patrol_post"
name = "Static patrol post"
channel = "log"
"#;

fn config(db: &Path) -> HubConfig {
    common::with_admin(
        HubConfig::from_toml(&format!(
            r#"
[hub]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
database = "{}"

[tls]
plaintext = true

[[gateways]]
id = "gw-a"
estate = "estate-a"

[[estates]]
id = "estate-a"
name = "Riverside Gardens"
timezone = "Asia/Shanghai"

[[estates]]
id = "estate-b"
name = "Hillside Court"
timezone = "Asia/Shanghai"
{ROTA}
"#,
            common::db::database_url(db)
        ))
        .expect("test configuration is valid"),
    )
}

async fn start(db: &Path, clock: &ManualClock) -> RunningHub {
    gatehouse_hub::start_with_clock(config(db), Arc::new(clock.clone()))
        .await
        .expect("hub starts")
}

async fn connect(hub: &RunningHub) -> Link {
    Link::connect(hub, GW, "estate-a", &["door-1", "cp-1", "cp-2", "cp-3"]).await
}

/// A granted badge at a reader.
async fn badge(link: &mut Link, device: &str, card: &str) {
    let access = Body::Access(AccessEvent {
        door: "D1".into(),
        result: AccessResult::Granted as i32,
        credential: card.into(),
        reason: String::new(),
    });
    link.send(vec![(device, "main gate", access)]).await;
}

async fn post(hub: &RunningHub, path: &str, body: Value) -> Value {
    let (status, answer) = http(hub, "POST", path, Some(body)).await;
    assert!((200..300).contains(&status), "POST {path}: {status} {answer}");
    answer
}

async fn alarm(hub: &RunningHub, condition: &str) -> Option<Value> {
    let alarms = get(hub, "/api/v1/alarms").await;
    alarms
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["condition"] == condition)
        .cloned()
}

async fn assign(hub: &RunningHub, post_id: &str, date: &str, shift: &str, guard: &str) {
    post(
        hub,
        "/api/v1/rota/assignments",
        json!({"post": post_id, "date": date, "shift": shift, "guard": guard}),
    )
    .await;
}

#[tokio::test]
async fn sick_call_at_night_opens_a_gap_alarms_after_grace_proposes_a_rested_guard_and_accepting_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let mut link = connect(&hub).await;
    // Tonight: Wang on the gate, Chen on patrol. Li worked the day at estate B until 20:00.
    assign(&hub, "a-gate", "2026-11-25", "night", "g-wang").await;
    assign(&hub, "a-patrol", "2026-11-25", "night", "g-chen").await;
    assign(&hub, "b-gate", "2026-11-25", "day", "g-li").await;
    badge(&mut link, "door-1", "card-wang").await;
    post(
        &hub,
        "/api/v1/rota/check-in",
        json!({"guard": "g-chen", "post": "a-patrol"}),
    )
    .await;
    hub.tick_now().await.unwrap();
    let cov = get(&hub, "/api/v1/coverage?estate=estate-a").await;
    let gate = &cov["estates"][0]["posts"][0];
    assert_eq!(
        (gate["post"].as_str(), gate["status"].as_str()),
        (Some("a-gate"), Some("covered")),
        "{cov}"
    );
    assert_eq!(gate["present"][0]["guard"], "g-wang");

    // 22:10: Wang calls in sick and leaves.
    clock.advance_s(70 * 60);
    post(
        &hub,
        "/api/v1/rota/absences",
        json!({"guard": "g-wang", "reason": "sick", "operator": "centre"}),
    )
    .await;
    hub.tick_now().await.unwrap();
    let gap_id = format!("a-gate@{}", ms("2026-11-25T20:00:00+08:00"));
    let gaps = get(&hub, "/api/v1/rota/gaps?estate=estate-a").await;
    let gap = gaps
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == gap_id.as_str())
        .expect("the gate's gap")
        .clone();
    assert_eq!(
        (gap["need"].as_i64(), gap["alarmed"].as_bool()),
        (Some(1), Some(false)),
        "{gap}"
    );
    assert!(
        alarm(&hub, "post_unattended:a-gate").await.is_none(),
        "no alarm within the grace period"
    );

    // After the grace period: a P2 alarm (and an incident: P2 security).
    clock.advance_s(301);
    hub.tick_now().await.unwrap();
    let a = alarm(&hub, "post_unattended:a-gate")
        .await
        .expect("post unattended alarm");
    assert_eq!(
        (a["priority"].as_str(), a["active"].as_bool()),
        (Some("P2"), Some(true)),
        "{a}"
    );

    // The proposal: Zhao (rested), never Li (one hour after a 12-hour day).
    let sol = get(&hub, &format!("/api/v1/rota/proposals?gap={gap_id}")).await;
    let props = sol["proposals"].as_array().unwrap();
    let best = props
        .iter()
        .find(|p| p["recommended"] == true)
        .expect("a recommended proposal");
    assert_eq!(best["guard"], "g-zhao", "{sol}");
    assert_eq!(best["kind"], "off_duty");
    assert!(
        best["rules"]["travel"].is_i64() && best["score"].is_i64(),
        "scored rule by rule: {best}"
    );
    assert!(best["hard"]["rest_before_h"].is_null() || best["hard"]["rest_before_h"].as_f64().unwrap() >= 12.0);
    assert!(
        props.iter().all(|p| p["guard"] != "g-li" && p["guard"] != "g-wang"),
        "{sol}"
    );

    // Accepting it: assigned, notified, audited; the gap waits for the badge.
    let id = best["id"].as_str().unwrap();
    let accepted = post(
        &hub,
        &format!("/api/v1/rota/proposals/{id}/accept"),
        json!({"operator": "centre"}),
    )
    .await;
    assert!(accepted["assignment"].as_i64().is_some());
    let notes = get(&hub, "/api/v1/notifications").await;
    assert!(
        notes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "cover" && n["recipient"] == "Zhao Lei"),
        "{notes}"
    );
    let (status, _) = http(
        &hub,
        "POST",
        &format!("/api/v1/rota/proposals/{id}/accept"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 409, "a covered gap cannot be accepted twice");
    assert!(alarm(&hub, "post_unattended:a-gate").await.unwrap()["active"] == true);

    // Zhao arrives and badges in: the alarm clears and the gap closes.
    clock.advance_s(20 * 60);
    badge(&mut link, "door-1", "card-zhao").await;
    let a = alarm(&hub, "post_unattended:a-gate").await.unwrap();
    assert_eq!(a["active"], false, "{a}");
    let gaps = get(&hub, "/api/v1/rota/gaps?estate=estate-a").await;
    assert!(
        gaps.as_array().unwrap().iter().all(|g| g["id"] != gap_id.as_str()),
        "{gaps}"
    );
    let kpi = get(&hub, "/api/v1/kpi/coverage?hours=2").await;
    assert!(kpi["coverage_share"].as_f64().unwrap() < 1.0, "{kpi}");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_guard_pulled_on_site_by_an_incident_opens_a_gap_on_their_post() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let mut link = connect(&hub).await;
    assign(&hub, "a-gate", "2026-11-25", "night", "g-wang").await;
    badge(&mut link, "door-1", "card-wang").await;
    hub.tick_now().await.unwrap();
    let inc = post(
        &hub,
        "/api/v1/incidents",
        json!({"estate": "estate-a", "area": "car park", "category": "intrusion", "title": "Person climbing the fence"}),
    )
    .await;
    let iid = inc["id"].as_i64().unwrap();
    for to in ["assessed", "reported"] {
        post(
            &hub,
            &format!("/api/v1/incidents/{iid}/transition"),
            json!({"to": to, "actor": "centre"}),
        )
        .await;
    }
    post(
        &hub,
        &format!("/api/v1/incidents/{iid}/transition"),
        json!({"to": "on_site", "actor": "g-wang"}),
    )
    .await;
    let cov = get(&hub, "/api/v1/coverage?estate=estate-a").await;
    let gate = cov["estates"][0]["posts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["post"] == "a-gate")
        .unwrap()
        .clone();
    assert_eq!(gate["status"], "empty", "{cov}");
    assert!(gate["gap"]["id"].is_string(), "{gate}");
    let gaps = get(&hub, "/api/v1/rota/gaps").await;
    assert!(
        gaps.as_array()
            .unwrap()
            .iter()
            .any(|g| g["post"] == "a-gate" && g["kind"] == "unattended")
    );
    let detail = get(&hub, &format!("/api/v1/incidents/{iid}")).await;
    assert!(
        detail["timeline"].to_string().contains("pulled off post a-gate"),
        "{detail}"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_patrol_that_skips_a_checkpoint_raises_the_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let mut link = connect(&hub).await;
    post(
        &hub,
        "/api/v1/rota/check-in",
        json!({"guard": "g-chen", "post": "a-patrol"}),
    )
    .await;
    hub.tick_now().await.unwrap();
    let tours = get(&hub, "/api/v1/rota/patrols?route=night-round").await;
    let tour = &tours[0];
    assert_eq!(tour["status"], "running", "{tours}");
    let order: Vec<String> = tour["route_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order.len(), 3);
    // Checkpoints at 10, 20 and 30 minutes; the second is skipped.
    clock.advance_s(10 * 60);
    badge(&mut link, &order[0], "card-chen").await;
    clock.advance_s(20 * 60);
    badge(&mut link, &order[2], "card-chen").await;
    hub.tick_now().await.unwrap();
    let missed = alarm(&hub, "patrol_missed:night-round")
        .await
        .expect("missed checkpoint alarm");
    assert_eq!(missed["priority"], "P2");
    assert!(missed["message"].as_str().unwrap().contains(&order[1]), "{missed}");
    clock.advance_s(6 * 60);
    hub.tick_now().await.unwrap();
    let tours = get(&hub, "/api/v1/rota/patrols?route=night-round").await;
    assert_eq!(tours[0]["status"], "missed", "{tours}");
    assert_eq!(tours[0]["scans"].as_array().unwrap().len(), 2);
    assert_eq!(tours[0]["guard"], "g-chen");
    post(
        &hub,
        &format!("/api/v1/rota/patrols/{}/record", tours[0]["id"]),
        json!({"findings": "gate to the pump room unlocked", "actions": "locked it", "by": "Chen Jie"}),
    )
    .await;
    let tours = get(&hub, "/api/v1/rota/patrols?route=night-round").await;
    assert_eq!(tours[0]["actions"], "locked it");
    hub.shutdown().await;
}

#[tokio::test]
async fn the_handover_sheet_lists_what_was_open_and_roles_resolve_to_the_guard_on_post() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let mut link = connect(&hub).await;
    post(
        &hub,
        "/api/v1/rota/check-in",
        json!({"guard": "g-chen", "post": "a-patrol"}),
    )
    .await;
    post(
        &hub,
        "/api/v1/rota/notes",
        json!({"post": "a-gate", "text": "Barrier 2 sticks; ticket raised", "author": "Wang Fang"}),
    )
    .await;
    // A forced door: an intrusion incident, whose first step pages the patrol post.
    let forced = Body::Door(DoorEvent {
        r#type: DoorEventType::Forced as i32,
        door: "D1".into(),
        seconds: 0,
    });
    link.send(vec![("door-1", "main gate", forced)]).await;
    hub.tick_now().await.unwrap();
    let notes = get(&hub, "/api/v1/notifications").await;
    let patrol: Vec<&Value> = notes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "patrol_post")
        .collect();
    assert_eq!(patrol.len(), 1, "{notes}");
    assert_eq!(
        patrol[0]["recipient"], "Chen Jie",
        "the rota's guard on post, not the static roster"
    );

    // The next night shift starts: a sheet per post listing the open alarm, incident, note.
    clock.set_ms(ms("2026-11-26T20:00:30+08:00"));
    hub.tick_now().await.unwrap();
    let sheets = get(&hub, "/api/v1/rota/handovers?estate=estate-a&unacknowledged=true").await;
    let sheet = sheets
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["post"] == "a-gate" && s["shift_start"] == "2026-11-26T12:00:00.000Z")
        .expect("tonight's gate sheet")
        .clone();
    let text = sheet["sheet"].to_string();
    assert!(!sheet["sheet"]["open_alarms"].as_array().unwrap().is_empty(), "{sheet}");
    assert!(
        sheet["sheet"]["open_incidents"].as_array().unwrap().len() == 1,
        "{sheet}"
    );
    assert!(text.contains("Barrier 2 sticks"), "{sheet}");
    post(
        &hub,
        &format!("/api/v1/rota/handovers/{}/ack", sheet["id"]),
        json!({"guard": "g-zhao"}),
    )
    .await;
    let open = get(&hub, "/api/v1/rota/handovers?estate=estate-a&unacknowledged=true").await;
    assert!(open.as_array().unwrap().iter().all(|s| s["id"] != sheet["id"]));
    hub.shutdown().await;
}

#[tokio::test]
async fn csv_round_trips_and_the_weekly_plan_fills_every_seat_without_breaking_a_rule() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let url = format!("http://{}/api/v1/rota/import", hub.http_addr());
    let csv = "date,estate,post,shift,guard\n2026-11-27,estate-a,a-gate,night,g-zhao\n2026-11-27,estate-a,a-patrol,night,g-li\n";
    let r = common::admin_client().post(url).body(csv).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let url = format!(
        "http://{}/api/v1/rota/export?from=2026-11-27T00:00:00%2B08:00&to=2026-11-28T12:00:00%2B08:00",
        hub.http_addr()
    );
    let exported = common::admin_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(exported, csv);
    let plan = post(
        &hub,
        "/api/v1/rota/plan",
        json!({"week": "2026-11-30", "time_budget_ms": 200, "estates": ["estate-a"]}),
    )
    .await;
    // Two night posts × 7 nights = 14 seats for 4 guards: each may work at most 4 nights in a
    // row and 60 h; every seat can be filled.
    assert_eq!(plan["seats"], 14, "{plan}");
    assert_eq!(plan["last"]["unfilled"], 0, "{plan}");
    assert!(plan["last"]["score"].as_i64() <= plan["first"]["score"].as_i64());
    hub.shutdown().await;
}
