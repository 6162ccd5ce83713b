//! Pacing of notifications (issue 14 §3) through a running hub: a flood becomes one message
//! per interval per recipient while P1 goes at once; quiet hours hold P3 first notices until
//! morning unless escalated. Real gRPC in, a real webhook receiver on loopback out, real
//! SQLite, a manual clock advanced by hand.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_hub::{HubConfig, ManualClock, RunningHub};
use gatehouse_proto::{FireEvent, FireEventType, PointReading, Quality, event::Body};
use serde_json::{Value, json};

mod common;

use common::{Link, WAIT, eventually, get, http};

const SECRET: &str = "test-secret-0123456789";
/// 2025-11-24 15:00 UTC: 23:00 in Asia/Shanghai.
const T23: i64 = 1_764_000_000_000 - 3_600_000;

fn config(db: &Path, rest: &str) -> HubConfig {
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
timezone = "Asia/Shanghai"

[alarms]
flood_start_above = 1000

[incidents]
response_target_s = 86400
progress_limit_s = 86400

[notify]
webhook_secret = "{SECRET}"

{rest}
"#,
            common::db::database_url(db)
        ))
        .expect("test configuration is valid"),
    )
}

async fn start(db: &Path, clock: &ManualClock, rest: &str) -> RunningHub {
    gatehouse_hub::start_with_clock(config(db, rest), Arc::new(clock.clone()))
        .await
        .expect("hub starts")
}

fn point(name: &str) -> Body {
    Body::Point(PointReading {
        point: name.into(),
        value: 1.0,
        quality: Quality::Good as i32,
        ..Default::default()
    })
}

fn fire() -> Body {
    Body::Fire(FireEvent {
        r#type: FireEventType::FireAlarm as i32,
        zone: "3".into(),
        ..Default::default()
    })
}

/// Every POST the receiver got: (path, body), in arrival order.
type Posts = Arc<Mutex<Vec<(String, Value)>>>;

/// A generic webhook receiver on loopback: `/hook/<recipient>`, answers 200, keeps each body.
async fn receiver(posts: Posts) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/hook/{who}",
        axum::routing::post(
            move |axum::extract::Path(who): axum::extract::Path<String>, body: axum::body::Bytes| {
                let posts = posts.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    posts.lock().unwrap().push((who, v));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn posts_to(posts: &Posts, who: &str) -> Vec<Value> {
    posts
        .lock()
        .unwrap()
        .iter()
        .filter(|(w, _)| w == who)
        .map(|(_, b)| b.clone())
        .collect()
}

async fn wait_posts(posts: &Posts, who: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} messages to {who}"), || async {
        posts_to(posts, who).len() >= n
    })
    .await;
    posts_to(posts, who)
}

async fn notifications(hub: &RunningHub, query: &str) -> Vec<Value> {
    get(hub, &format!("/api/v1/notifications?limit=1000{query}"))
        .await
        .as_array()
        .expect("a JSON array")
        .clone()
}

/// The incident of the alarm raised on `point`.
async fn incident_of(hub: &RunningHub, point: &str) -> i64 {
    let incidents = get(hub, "/api/v1/incidents?limit=1000").await;
    for i in incidents.as_array().unwrap() {
        let id = i["id"].as_i64().unwrap();
        let detail = get(hub, &format!("/api/v1/incidents/{id}")).await;
        if detail.to_string().contains(point) {
            return id;
        }
    }
    panic!("no incident for {point}: {incidents}");
}

fn incident_id(body: &Value) -> i64 {
    body["incident"]["id"].as_i64().expect("about an incident")
}

fn rfc(ms: i64) -> String {
    gatehouse_hub::alarms::rfc3339(ms)
}

#[tokio::test]
async fn a_flood_is_digested_to_one_message_per_interval_while_p1_fire_goes_at_once() {
    let posts = Posts::default();
    let addr = receiver(posts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T23);
    let rules: String = (0..40)
        .map(|i| format!("[[rules.points]]\npoint = \"pump{i}_fault\"\nwhen = true\npriority = \"P3\"\n\n"))
        .collect();
    // One person in two roles: the plant faults (facility team) and the fire (monitoring
    // room) reach the same phone, so they share one pace.
    let rest = format!(
        r#"
[[roster]]
estate = "estate-a"
role = "facility_team"
name = "Ops desk"
channel = "http://{addr}/hook/ops"

[[roster]]
estate = "estate-a"
role = "monitoring_room"
name = "Ops desk"
channel = "http://{addr}/hook/ops"

{rules}"#
    );
    let hub = start(&dir.path().join("hub.db"), &clock, &rest).await;
    let mut link = Link::connect(&hub, "gw-1", "estate-a", &["plc-1", "panel-1"]).await;

    // 40 P3 faults, one a second; a P1 fire at 20 s.
    for i in 0..40 {
        if i == 20 {
            // The 19 since the first are held (so the fire below is decided on its own).
            eventually("19 notifications held", || async {
                let held = notifications(&hub, "&status=pending").await;
                held.len() == 19 && held.iter().all(|n| n["held"] == "digest")
            })
            .await;
            link.send(vec![("panel-1", "block 3", fire())]).await;
            hub.tick_now().await.unwrap();
            let got = wait_posts(&posts, "ops", 2).await;
            assert_eq!(got[1]["incident"]["priority"], "P1", "the fire goes at once: {got:?}");
            assert!(got[1]["items"].is_null(), "alone, not in a digest");
        }
        link.send(vec![(
            "plc-1",
            &format!("plant room {i}"),
            point(&format!("pump{i}_fault")),
        )])
        .await;
        hub.tick_now().await.unwrap();
        if i == 0 {
            let got = wait_posts(&posts, "ops", 1).await;
            assert_eq!(got[0]["incident"]["priority"], "P3", "the first goes at once");
        }
        clock.advance_s(1);
    }
    // At 40 s: the other 39 wait — those queued before the fire until the first send's
    // interval ends (60 s), the later ones until the fire's (20 s + 60 s).
    eventually("39 notifications held for the digest", || async {
        let held = notifications(&hub, "&status=pending").await;
        held.len() == 39 && held.iter().all(|n| n["held"] == "digest")
    })
    .await;
    let until: Vec<(String, String)> = notifications(&hub, "&status=pending")
        .await
        .iter()
        .map(|n| {
            (
                n["created_at"].as_str().unwrap().to_owned(),
                n["next_attempt_at"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (created, next) in &until {
        let expected = if *created < rfc(T23 + 20_000) {
            T23 + 60_000
        } else {
            T23 + 80_000
        };
        assert_eq!(*next, rfc(expected), "queued at {created}");
    }
    assert_eq!(posts_to(&posts, "ops").len(), 2);

    // At 60 s the first send's interval is over but the fire's still runs: re-held, not sent.
    clock.advance_s(20);
    eventually("the claim at 60 s", || async {
        let held = notifications(&hub, "&status=pending").await;
        held.len() == 39
            && held
                .iter()
                .all(|n| n["held"] == "digest" && n["next_attempt_at"] == rfc(T23 + 80_000))
    })
    .await;
    assert_eq!(posts_to(&posts, "ops").len(), 2, "nothing more within the interval");

    clock.advance_s(20);
    let got = wait_posts(&posts, "ops", 3).await;
    let digest = &got[2];
    assert_eq!(digest["kind"], "digest");
    assert_eq!(digest["text"], "39 updates");
    let items = digest["items"].as_array().unwrap();
    assert_eq!(items.len(), 39);
    assert!(items.iter().all(|i| i["incident"]["priority"] == "P3"));
    // Nothing lost, nothing twice: the first alone and the digest carry all 40 incidents.
    let mut carried: Vec<i64> = items.iter().map(incident_id).collect();
    carried.push(incident_id(&got[0]));
    carried.sort_unstable();
    carried.dedup();
    assert_eq!(carried.len(), 40);
    // Oldest first.
    let ids: Vec<i64> = items.iter().map(|i| i["notification_id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // The members take the digest's outcome, and name it.
    let digest_id = digest["notification_id"].as_i64().unwrap();
    eventually("the members delivered", || async {
        notifications(&hub, "&status=delivered")
            .await
            .iter()
            .filter(|n| n["digest_id"] == digest_id)
            .count()
            == 39
    })
    .await;
    let all = notifications(&hub, "").await;
    let d = all.iter().find(|n| n["id"] == digest_id).unwrap();
    assert_eq!(
        (d["kind"].as_str(), d["status"].as_str()),
        (Some("digest"), Some("delivered"))
    );
    assert_eq!(d["sent_at"], rfc(T23 + 80_000));
    let member = ids[0];
    let m = all.iter().find(|n| n["id"] == member).unwrap();
    assert_eq!(m["held"], Value::Null);
    let detail = get(&hub, &format!("/api/v1/incidents/{}", m["incident_id"])).await;
    let texts: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains(&format!("sent in digest #{digest_id}"))),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains(&format!("delivered in digest #{digest_id}"))),
        "{texts:?}"
    );
    assert_eq!(posts_to(&posts, "ops").len(), 3);
    hub.shutdown().await;
}

#[tokio::test]
async fn quiet_hours_hold_p3_until_morning_but_not_p2_or_an_escalation() {
    let posts = Posts::default();
    let addr = receiver(posts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T23);
    let rest = format!(
        r#"
[[roster]]
estate = "estate-a"
role = "facility_team"
name = "Facility team"
channel = "http://{addr}/hook/facility"
quiet_hours = "22:00-07:00"

[[rules.points]]
point = "pump1_fault"
when = true
priority = "P3"

[[rules.points]]
point = "pump2_fault"
when = true
priority = "P3"

[[rules.points]]
point = "tank_alarm"
when = true
priority = "P2"

# A P2 plant alarm opens an `other` incident: the facility team hears of it.
[[escalation.policies]]
category = "other"
priority = "P2"
steps = [{{ role = "facility_team" }}]
"#
    );
    let hub = start(&dir.path().join("hub.db"), &clock, &rest).await;
    let mut stream = common::admin_client()
        .get(format!("http://{}/api/v1/stream", hub.http_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut link = Link::connect(&hub, "gw-1", "estate-a", &["plc-1"]).await;

    // 23:00 local: a P3 plant fault is held until 07:00.
    link.send(vec![("plc-1", "pump room 1", point("pump1_fault"))]).await;
    hub.tick_now().await.unwrap();
    let a = incident_of(&hub, "pump1_fault").await;
    let seven = T23 + 8 * 3_600_000;
    eventually("the P3 held for quiet hours", || async {
        let ns = notifications(&hub, &format!("&incident={a}")).await;
        ns.len() == 1 && ns[0]["held"] == "quiet_hours"
    })
    .await;
    let ns = notifications(&hub, &format!("&incident={a}")).await;
    assert_eq!(ns[0]["status"], "pending");
    assert_eq!(ns[0]["next_attempt_at"], rfc(seven));
    let detail = get(&hub, &format!("/api/v1/incidents/{a}")).await;
    assert!(
        detail["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["text"].as_str().unwrap().contains("held for quiet hours until 07:00")),
        "{detail}"
    );
    assert!(posts_to(&posts, "facility").is_empty());
    // Acknowledged: its reminders stop, its first notice still waits for the morning.
    let alarm = detail["alarms"][0]["id"].as_i64().expect("the incident's alarm");
    let (status, _) = http(&hub, "POST", &format!("/api/v1/alarms/{alarm}/ack"), Some(json!({}))).await;
    assert_eq!(status, 200);

    // 23:01: a P2 goes at once.
    clock.advance_s(60);
    link.send(vec![("plc-1", "tank room", point("tank_alarm"))]).await;
    hub.tick_now().await.unwrap();
    let got = wait_posts(&posts, "facility", 1).await;
    assert_eq!(got[0]["incident"]["priority"], "P2");

    // 23:02: another P3 fault, held; its reminder at 23:12 (escalation step 1) is sent at
    // once and brings the held first notice with it, in one digest.
    clock.advance_s(60);
    link.send(vec![("plc-1", "pump room 2", point("pump2_fault"))]).await;
    hub.tick_now().await.unwrap();
    let b = incident_of(&hub, "pump2_fault").await;
    eventually("the second P3 held", || async {
        let ns = notifications(&hub, &format!("&incident={b}")).await;
        ns.len() == 1 && ns[0]["held"] == "quiet_hours"
    })
    .await;
    clock.advance_s(600);
    hub.tick_now().await.unwrap();
    let got = wait_posts(&posts, "facility", 2).await;
    let digest = &got[1];
    assert_eq!(digest["kind"], "digest", "{digest}");
    let items = digest["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{digest}");
    assert!(items.iter().all(|i| incident_id(i) == b), "{digest}");
    eventually("the held notice delivered with the escalation", || async {
        let ns = notifications(&hub, &format!("&incident={b}")).await;
        ns.len() == 2 && ns.iter().all(|n| n["status"] == "delivered" && n["digest_id"].is_i64())
    })
    .await;
    let detail = get(&hub, &format!("/api/v1/incidents/{b}")).await;
    let alarm = detail["alarms"][0]["id"].as_i64().expect("the incident's alarm");
    let (status, _) = http(&hub, "POST", &format!("/api/v1/alarms/{alarm}/ack"), Some(json!({}))).await;
    assert_eq!(status, 200);

    // Still quiet at 06:59; at 07:00 the first fault's notice goes.
    clock.set_ms(seven - 60_000);
    hub.tick_now().await.unwrap();
    let ns = notifications(&hub, &format!("&incident={a}")).await;
    assert_eq!(ns[0]["held"], "quiet_hours");
    clock.set_ms(seven);
    hub.tick_now().await.unwrap();
    let got = wait_posts(&posts, "facility", 3).await;
    assert_eq!(incident_id(&got[2]), a, "{:?}", got[2]);
    assert!(got[2]["items"].is_null());
    eventually("the morning notice delivered", || async {
        let ns = notifications(&hub, &format!("&incident={a}")).await;
        ns[0]["status"] == "delivered" && ns[0]["held"].is_null()
    })
    .await;
    let ns = notifications(&hub, &format!("&incident={a}")).await;
    assert_eq!(ns[0]["sent_at"], rfc(seven));
    assert_eq!(
        posts_to(&posts, "facility").len(),
        3,
        "{:?}",
        posts_to(&posts, "facility")
    );

    // The board heard of the holds and the digest on the live stream.
    let mut seen = String::new();
    while !(seen.contains("\"change\":\"held\"") && seen.contains("\"change\":\"digested\"")) {
        let chunk = tokio::time::timeout(WAIT, stream.chunk())
            .await
            .expect("stream events")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"held\":\"quiet_hours\""), "{seen}");
    drop(stream);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_digest_that_fails_for_good_fails_its_members_with_its_reason() {
    // A receiver that refuses everything.
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T23);
    let rules: String = (0..3)
        .map(|i| format!("[[rules.points]]\npoint = \"pump{i}_fault\"\nwhen = true\npriority = \"P3\"\n\n"))
        .collect();
    let rest = format!(
        r#"
[[roster]]
estate = "estate-a"
role = "facility_team"
name = "Facility team"
channel = "http://{addr}/hook"

{rules}"#
    );
    let hub = start(&dir.path().join("hub.db"), &clock, &rest).await;
    let mut link = Link::connect(&hub, "gw-1", "estate-a", &["plc-1"]).await;
    for i in 0..3 {
        link.send(vec![(
            "plc-1",
            &format!("plant room {i}"),
            point(&format!("pump{i}_fault")),
        )])
        .await;
        hub.tick_now().await.unwrap();
        if i == 0 {
            eventually("the first attempt", || async {
                notifications(&hub, "").await[0]["attempts"] == 1
            })
            .await;
        }
    }
    eventually("two held for the digest", || async {
        notifications(&hub, "")
            .await
            .iter()
            .filter(|n| n["held"] == "digest")
            .count()
            == 2
    })
    .await;
    // The digest goes at 60 s and fails; it retries (not paced) until its attempts run out.
    clock.advance_s(60);
    let mut tries = 0;
    let digest = loop {
        tries += 1;
        assert!(tries < 400, "the digest never failed for good");
        let all = notifications(&hub, "").await;
        if let Some(d) = all.iter().find(|n| n["kind"] == "digest" && n["status"] == "failed") {
            break d.clone();
        }
        clock.advance_s(300);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let id = digest["id"].as_i64().unwrap();
    assert!(digest["last_error"].as_str().unwrap().contains("503"), "{digest}");
    eventually("the members failed with the digest", || async {
        let members: Vec<Value> = notifications(&hub, "")
            .await
            .into_iter()
            .filter(|n| n["digest_id"] == id)
            .collect();
        members.len() == 2
            && members
                .iter()
                .all(|m| m["status"] == "failed" && m["last_error"].as_str().is_some_and(|e| e.contains("503")))
    })
    .await;
    let member = notifications(&hub, "")
        .await
        .into_iter()
        .find(|n| n["digest_id"] == id)
        .unwrap();
    let detail = get(&hub, &format!("/api/v1/incidents/{}", member["incident_id"])).await;
    assert!(
        detail["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["text"].as_str().unwrap().contains(&format!("FAILED in digest #{id}"))),
        "{detail}"
    );
    hub.shutdown().await;
}
