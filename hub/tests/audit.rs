//! The audit log through a running hub: real HTTP and gRPC in, a gateway's stream played by
//! hand, real SQLite (or PostgreSQL). Every operator action leaves one row naming who (the caller's token,
//! its role, its address), what and on what; the hash chain verifies; a row edited, deleted
//! or swapped with plain SQL while the hub is stopped is found by the real
//! `gatehouse-hub audit verify` and by `GET /api/v1/audit/verify`; the log is the admins'.

use std::path::Path;
use std::sync::Arc;

use gatehouse_hub::audit::{Actor, AuditEntry};
use gatehouse_hub::{HubConfig, ManualClock, RunningHub};
use gatehouse_proto::command_centre_client::CommandCentreClient;
use gatehouse_proto::event::Body;
use gatehouse_proto::{AcknowledgeAlarmRequest, DeviceKind, DoorEvent, DoorEventType, Downlink, downlink};
use serde_json::{Value, json};
use tonic::transport::Endpoint;

mod common;

use common::Link;

const ADMIN: &str = "admin-token-0123456789";
const SUPERVISOR: &str = "supervisor-token-0123456789";
const OPERATOR: &str = "operator-token-0123456789";

fn t0() -> i64 {
    chrono::DateTime::parse_from_rfc3339("2026-11-25T21:00:00+08:00")
        .unwrap()
        .timestamp_millis()
}

fn ms(rfc: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc).unwrap().timestamp_millis()
}

fn tokens() -> String {
    use gatehouse_hub::auth::token_sha256;
    format!(
        "[[api_tokens]]\nname = \"ada\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n\n\
         [[api_tokens]]\nname = \"sam\"\nrole = \"supervisor\"\ntoken_sha256 = \"{}\"\n\n\
         [[api_tokens]]\nname = \"olga\"\nrole = \"operator\"\ntoken_sha256 = \"{}\"\n",
        token_sha256(ADMIN),
        token_sha256(SUPERVISOR),
        token_sha256(OPERATOR)
    )
}

const ROTA: &str = r#"
[[estates]]
id = "estate-a"
name = "Riverside Gardens"
timezone = "Asia/Shanghai"

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

[[guards]]
id = "g-wang"
name = "Wang Fang"
home_estate = "estate-a"
credentials = ["card-wang"]

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
checkpoints = ["cp-1", "cp-2"]
period_min = 120
tour_min = 30
tolerance_min = 5
"#;

fn config(db: &Path) -> HubConfig {
    common::config(db, &format!("{ROTA}\n{}", tokens()))
}

async fn start(db: &Path, clock: &ManualClock) -> RunningHub {
    gatehouse_hub::start_with_clock(config(db), Arc::new(clock.clone()))
        .await
        .expect("hub starts")
}

/// One HTTP call with `Authorization: Bearer <token>`.
async fn call(hub: &RunningHub, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("http://{}{path}", hub.http_addr());
    let client = reqwest::Client::new();
    let mut req = client
        .request(method.parse().unwrap(), url)
        .header("authorization", format!("Bearer {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("HTTP request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A supervisor's action that must succeed.
async fn act(hub: &RunningHub, method: &str, path: &str, body: Value) -> Value {
    let (status, answer) = call(hub, SUPERVISOR, method, path, Some(body)).await;
    assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
    answer
}

async fn audit_rows(hub: &RunningHub) -> Vec<Value> {
    let (status, page) = call(hub, ADMIN, "GET", "/api/v1/audit?limit=5000", None).await;
    assert_eq!(status, 200, "{page}");
    page["rows"].as_array().unwrap().clone()
}

async fn verify_endpoint(hub: &RunningHub) -> Value {
    let (status, v) = call(hub, ADMIN, "GET", "/api/v1/audit/verify", None).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn forced(door: &str) -> Body {
    Body::Door(DoorEvent {
        r#type: DoorEventType::Forced as i32,
        door: door.into(),
        seconds: 0,
    })
}

async fn alarm_of(hub: &RunningHub, device: &str) -> i64 {
    let (_, alarms) = call(hub, SUPERVISOR, "GET", "/api/v1/alarms", None).await;
    alarms
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["device"] == device)
        .unwrap_or_else(|| panic!("an alarm on {device}: {alarms}"))["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn every_operator_action_leaves_one_row_naming_its_caller_and_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let mut link = Link::connect_kinds(
        &hub,
        "gw-1",
        "estate-a",
        &[
            ("door-1", DeviceKind::Door),
            ("door-2", DeviceKind::Door),
            ("door-3", DeviceKind::Door),
            ("door-4", DeviceKind::Door),
            ("cp-1", DeviceKind::Unspecified),
            ("cp-2", DeviceKind::Unspecified),
        ],
    )
    .await;
    let mut expected: Vec<(&str, String)> = Vec::new();

    // Alarms: acknowledge, shelve, out of service.
    link.send(vec![
        ("door-1", "main gate", forced("D1")),
        ("door-2", "car park", forced("D2")),
        ("door-3", "block 7", forced("D3")),
    ])
    .await;
    let (a1, a2, a3) = (
        alarm_of(&hub, "door-1").await,
        alarm_of(&hub, "door-2").await,
        alarm_of(&hub, "door-3").await,
    );
    act(
        &hub,
        "POST",
        &format!("/api/v1/alarms/{a1}/ack"),
        json!({"note": "seen"}),
    )
    .await;
    expected.push(("alarm.acknowledge", format!("alarm:{a1}")));
    act(
        &hub,
        "POST",
        &format!("/api/v1/alarms/{a2}/shelve"),
        json!({"minutes": 30, "reason": "door contractor on site"}),
    )
    .await;
    expected.push(("alarm.shelve", format!("alarm:{a2}")));
    act(
        &hub,
        "POST",
        &format!("/api/v1/alarms/{a3}/out-of-service"),
        json!({"out_of_service": true, "reason": "sensor replaced"}),
    )
    .await;
    expected.push(("alarm.out_of_service", format!("alarm:{a3}")));

    // A device into maintenance.
    act(
        &hub,
        "POST",
        "/api/v1/devices/door-3/maintenance",
        json!({"estate": "estate-a", "reason": "new lock", "minutes": 60}),
    )
    .await;
    expected.push(("device.maintenance", "device:estate-a/door-3".into()));

    // An incident opened, moved and a step done.
    let inc = act(
        &hub,
        "POST",
        "/api/v1/incidents",
        json!({"estate": "estate-a", "area": "block 7", "category": "fire", "title": "Smoke on floor 12"}),
    )
    .await;
    let iid = inc["id"].as_i64().unwrap();
    expected.push(("incident.open", format!("incident:{iid}")));
    act(
        &hub,
        "POST",
        &format!("/api/v1/incidents/{iid}/transition"),
        json!({"to": "assessed"}),
    )
    .await;
    expected.push(("incident.transition", format!("incident:{iid}")));
    act(
        &hub,
        "POST",
        &format!("/api/v1/incidents/{iid}/steps/confirm_location/done"),
        json!({}),
    )
    .await;
    expected.push(("incident.step", format!("incident:{iid}")));
    // Refused actions leave nothing.
    let before = audit_rows(&hub).await.len();
    let (status, e) = call(
        &hub,
        SUPERVISOR,
        "POST",
        &format!("/api/v1/incidents/{iid}/transition"),
        Some(json!({"to": "closed"})),
    )
    .await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(audit_rows(&hub).await.len(), before, "a refused action is not audited");

    // A device command sent, and one refused for its device.
    let c = act(
        &hub,
        "POST",
        "/api/v1/devices/door-1/commands",
        json!({"estate": "estate-a", "action": "unlock", "args": {"door": "D1"}, "operator": "sam",
               "reason": "resident locked out"}),
    )
    .await;
    match link.next().await {
        Ok(Some(Downlink {
            msg: Some(downlink::Msg::Command(_)),
        })) => {}
        other => panic!("expected the command on the link, got {other:?}"),
    }
    expected.push(("command.send", "device:estate-a/door-1".into()));
    let (status, e) = call(
        &hub,
        SUPERVISOR,
        "POST",
        "/api/v1/devices/door-1/commands",
        Some(json!({"estate": "estate-a", "action": "launch", "operator": "sam"})),
    )
    .await;
    // An action the device's kind does not take is refused, and the refusal is recorded (an
    // unknown device never reaches the action: 404 by the route's check).
    assert_eq!(status, 422, "{e}");
    expected.push(("command.refused", "device:estate-a/door-1".into()));

    // The rota: assignment added and removed, check-in (a patrol tour starts), patrol
    // record, check-out, absence, a cover proposal accepted, a note, import, plan, handover.
    let assigned = act(
        &hub,
        "POST",
        "/api/v1/rota/assignments",
        json!({"post": "a-patrol", "date": "2026-11-25", "shift": "night", "guard": "g-zhao"}),
    )
    .await;
    let slot = assigned["slot"].as_str().unwrap().to_owned();
    expected.push(("rota.assign", format!("slot:{slot}")));
    let assignment = assigned["id"].as_i64().unwrap();
    act(
        &hub,
        "DELETE",
        &format!("/api/v1/rota/assignments/{assignment}"),
        json!({}),
    )
    .await;
    expected.push(("rota.unassign", format!("assignment:{assignment}")));
    act(
        &hub,
        "POST",
        "/api/v1/rota/check-in",
        json!({"guard": "g-chen", "post": "a-patrol"}),
    )
    .await;
    expected.push(("rota.check_in", "guard:g-chen".into()));
    hub.tick_now().await.unwrap();
    let (_, tours) = call(&hub, SUPERVISOR, "GET", "/api/v1/rota/patrols?route=night-round", None).await;
    let tour = tours[0]["id"].as_i64().unwrap_or_else(|| panic!("a tour: {tours}"));
    act(
        &hub,
        "POST",
        &format!("/api/v1/rota/patrols/{tour}/record"),
        json!({"findings": "pump room unlocked", "actions": "locked it", "by": "Chen Jie"}),
    )
    .await;
    expected.push(("rota.patrol_record", format!("tour:{tour}")));
    act(&hub, "POST", "/api/v1/rota/check-out", json!({"guard": "g-chen"})).await;
    expected.push(("rota.check_out", "guard:g-chen".into()));

    act(
        &hub,
        "POST",
        "/api/v1/rota/assignments",
        json!({"post": "a-gate", "date": "2026-11-25", "shift": "night", "guard": "g-wang"}),
    )
    .await;
    act(
        &hub,
        "POST",
        "/api/v1/rota/absences",
        json!({"guard": "g-wang", "reason": "sick"}),
    )
    .await;
    expected.push(("rota.absence", "guard:g-wang".into()));
    hub.tick_now().await.unwrap();
    let gap = format!("a-gate@{}", ms("2026-11-25T20:00:00+08:00"));
    let (_, sol) = call(
        &hub,
        SUPERVISOR,
        "GET",
        &format!("/api/v1/rota/proposals?gap={gap}"),
        None,
    )
    .await;
    let proposal = sol["proposals"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a proposal: {sol}"))
        .to_owned();
    act(
        &hub,
        "POST",
        &format!("/api/v1/rota/proposals/{proposal}/accept"),
        json!({}),
    )
    .await;
    expected.push(("rota.proposal_accept", format!("proposal:{proposal}")));
    act(
        &hub,
        "POST",
        "/api/v1/rota/notes",
        json!({"post": "a-gate", "text": "Barrier 2 sticks", "author": "Wang Fang"}),
    )
    .await;
    expected.push(("rota.note", "post:a-gate".into()));
    let url = format!("http://{}/api/v1/rota/import", hub.http_addr());
    let r = reqwest::Client::new()
        .post(url)
        .header("authorization", format!("Bearer {SUPERVISOR}"))
        .body("date,estate,post,shift,guard\n2026-11-27,estate-a,a-gate,night,g-zhao\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    expected.push(("rota.import", "rota".into()));
    act(
        &hub,
        "POST",
        "/api/v1/rota/plan",
        json!({"week": "2026-11-30", "time_budget_ms": 100, "estates": ["estate-a"], "publish": true}),
    )
    .await;
    expected.push(("rota.plan", "rota".into()));
    clock.set_ms(ms("2026-11-26T20:00:30+08:00"));
    hub.tick_now().await.unwrap();
    let (_, sheets) = call(
        &hub,
        SUPERVISOR,
        "GET",
        "/api/v1/rota/handovers?estate=estate-a&unacknowledged=true",
        None,
    )
    .await;
    let sheet = sheets[0]["id"].as_i64().unwrap_or_else(|| panic!("a sheet: {sheets}"));
    act(
        &hub,
        "POST",
        &format!("/api/v1/rota/handovers/{sheet}/ack"),
        json!({"guard": "g-zhao"}),
    )
    .await;
    expected.push(("rota.handover_ack", format!("handover:{sheet}")));

    let rows = audit_rows(&hub).await;
    for (action, target) in &expected {
        let found: Vec<&Value> = rows
            .iter()
            .filter(|r| r["action"] == *action && r["target"] == target.as_str())
            .collect();
        assert_eq!(found.len(), 1, "one {action} on {target}: {rows:#?}");
        let r = found[0];
        assert_eq!(
            (r["actor"].as_str(), r["role"].as_str(), r["source"].as_str()),
            (Some("sam"), Some("supervisor"), Some("127.0.0.1")),
            "{r}"
        );
    }
    // A name in a body is never recorded: the action is the caller's (nothing `named`).
    let shelve = rows.iter().find(|r| r["action"] == "alarm.shelve").unwrap();
    assert_eq!(shelve["detail"]["reason"], "door contractor on site", "{shelve}");
    assert!(shelve["detail"].get("named").is_none(), "{shelve}");
    let sent = rows.iter().find(|r| r["action"] == "command.send").unwrap();
    assert_eq!(sent["detail"]["command"], c["id"], "{sent}");
    assert!(
        sent["detail"].get("named").is_none(),
        "the body named the caller: {sent}"
    );
    let seqs: Vec<i64> = rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=rows.len() as i64).collect::<Vec<_>>(), "no gaps");

    // The gRPC front door: the caller is the token's principal.
    link.send(vec![("door-4", "bike store", forced("D4"))]).await;
    let a4 = alarm_of(&hub, "door-4").await;
    let mut centre = CommandCentreClient::new(
        Endpoint::from_shared(format!("http://{}", hub.grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let mut ack = tonic::Request::new(AcknowledgeAlarmRequest {
        alarm_id: a4,
        operator: "console".into(),
        note: String::new(),
    });
    ack.metadata_mut()
        .insert("authorization", format!("Bearer {SUPERVISOR}").parse().unwrap());
    centre.acknowledge_alarm(ack).await.expect("acknowledged over gRPC");
    let rows = audit_rows(&hub).await;
    let r = rows
        .iter()
        .find(|r| r["action"] == "alarm.acknowledge" && r["target"] == format!("alarm:{a4}").as_str())
        .unwrap_or_else(|| panic!("the gRPC ack: {rows:#?}"));
    assert_eq!(
        (r["actor"].as_str(), r["role"].as_str(), r["source"].as_str()),
        (Some("sam"), Some("supervisor"), Some("127.0.0.1")),
        "{r}"
    );

    // The API for sign-in: a login and a failed login, through the writer.
    let writer = hub.writer();
    let ip = Some("10.1.2.3".parse().unwrap());
    writer
        .audit(
            Actor::new("olga", "operator", ip),
            AuditEntry::login("olga", json!({"via": "password"})),
        )
        .await
        .unwrap();
    writer
        .audit(
            Actor::new("mallory", "none", ip),
            AuditEntry::login_failed("mallory", json!({"why": "unknown user"})),
        )
        .await
        .unwrap();
    let rows = audit_rows(&hub).await;
    let failed = rows.iter().find(|r| r["action"] == "auth.login_failed").unwrap();
    assert_eq!(
        (
            failed["actor"].as_str(),
            failed["target"].as_str(),
            failed["source"].as_str()
        ),
        (Some("mallory"), Some("user:mallory"), Some("10.1.2.3"))
    );

    let v = verify_endpoint(&hub).await;
    assert_eq!(v["intact"], true, "{v}");
    assert_eq!(v["rows"].as_u64(), Some(rows.len() as u64), "{v}");
    assert_eq!(v["head"], rows.last().unwrap()["hash"]);
    hub.shutdown().await;
}

#[tokio::test]
async fn the_log_is_for_admins() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    for token in [OPERATOR, SUPERVISOR] {
        for path in ["/api/v1/audit", "/api/v1/audit/verify"] {
            let (status, e) = call(&hub, token, "GET", path, None).await;
            assert_eq!(status, 403, "{path}: {e}");
            assert_eq!(e["error"], "forbidden", "{e}");
        }
    }
    let (status, e) = call(&hub, "wrong-token", "GET", "/api/v1/audit", None).await;
    assert_eq!(status, 401, "{e}");
    let (status, page) = call(&hub, ADMIN, "GET", "/api/v1/audit?actor=sam&action=alarm.shelve", None).await;
    assert_eq!((status, page["rows"].clone()), (200, json!([])), "{page}");
    let (status, e) = call(&hub, ADMIN, "GET", "/api/v1/audit?limit=0", None).await;
    assert_eq!(status, 400, "{e}");
    hub.shutdown().await;
}

/// Runs the real `gatehouse-hub audit verify` on `db`.
fn verify_binary(db: &Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-hub"))
        .args(["audit", "verify", "--database"])
        .arg(common::db::database_url(db))
        .env("RUST_LOG", "warn")
        .output()
        .expect("gatehouse-hub runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Plain SQL on the database, as someone with access to the disk (or the server) would.
async fn tamper(db: &Path, statements: &[&str]) {
    let pool = common::db::inspect_at(db).await;
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(*s)).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

#[tokio::test]
async fn an_edited_deleted_or_swapped_row_is_found_by_the_command_and_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let db = dir.path().join("hub.db");
    let hub = start(&db, &clock).await;
    for title in ["one", "two", "three", "four", "five"] {
        act(
            &hub,
            "POST",
            "/api/v1/incidents",
            json!({"estate": "estate-a", "area": "block 7", "category": "other", "title": title}),
        )
        .await;
    }
    assert_eq!(verify_endpoint(&hub).await["intact"], true);
    hub.shutdown().await;

    let (ok, text) = verify_binary(&db);
    assert!(ok, "{text}");
    assert!(text.contains("5 rows, chain intact"), "{text}");

    let cases: [(&str, &[&str], &str, Value); 3] = [
        (
            "edited",
            &["UPDATE audit SET actor = 'mallory' WHERE seq = 3"],
            "row 3 was edited",
            json!({"seq": 3, "problem": "edited"}),
        ),
        (
            "deleted",
            &["DELETE FROM audit WHERE seq = 2"],
            "row 2 was deleted",
            json!({"seq": 3, "problem": "deleted", "from": 2, "to": 2}),
        ),
        (
            "swapped",
            &[
                "UPDATE audit SET seq = -1 WHERE seq = 2",
                "UPDATE audit SET seq = 2 WHERE seq = 4",
                "UPDATE audit SET seq = 4 WHERE seq = -1",
            ],
            "row 2 was reordered (it was written as row 4)",
            json!({"seq": 2, "problem": "reordered", "written_as": 4}),
        ),
    ];
    for (name, statements, message, first_bad) in cases {
        let copy = dir.path().join(format!("{name}.db"));
        common::db::copy(&db, &copy).await;
        tamper(&copy, statements).await;
        let (ok, text) = verify_binary(&copy);
        assert!(!ok, "{name}: verify must fail: {text}");
        assert!(text.contains(message), "{name}: {text}");

        let hub = start(&copy, &clock).await;
        let v = verify_endpoint(&hub).await;
        assert_eq!(v["intact"], false, "{name}: {v}");
        assert_eq!(v["first_bad"], first_bad, "{name}: {v}");
        assert!(v["message"].as_str().unwrap().contains(message), "{name}: {v}");
        hub.shutdown().await;
    }
}
