//! Answering a page (issue 14 §2) through a running hub: the answer link a generic webhook
//! receives (taken from the body, as a person would tap it), shown without acting, answered
//! once and then refused; tampered, expired and garbage links refused; an SMS reply from the
//! recipient's number; links that survive a restart. Real HTTP on loopback, real SQLite, a
//! manual clock.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_hub::{ManualClock, RunningHub};
use serde_json::{Value, json};

mod common;

use common::{ESTATE_A, WAIT, get, http};

const T0: i64 = 1_764_000_000_000;
const INBOUND: &str = "sms-inbound-token-0123456789";

/// Bodies posted to the receiver.
type Received = Arc<Mutex<Vec<Value>>>;

/// A generic webhook receiver on loopback: `/hook` keeps each JSON body, `/sms` each SMS
/// gateway request's text.
async fn receiver() -> (std::net::SocketAddr, Received) {
    let got: Received = Arc::default();
    let keep = got.clone();
    // Both a webhook's body and an SMS gateway request are JSON: kept alike.
    let keep_json = axum::routing::post(move |body: axum::body::Bytes| {
        let keep = keep.clone();
        async move {
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                keep.lock().unwrap().push(v);
            }
            axum::http::StatusCode::OK
        }
    });
    let app = axum::Router::new()
        .route("/hook", keep_json.clone())
        .route("/sms", keep_json);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, got)
}

fn roster(addr: std::net::SocketAddr) -> String {
    format!(
        r#"
[[roster]]
estate = "estate-a"
role = "monitoring_room"
name = "Monitoring room A"
channel = "http://{addr}/hook"
secret = "webhook-secret-0123456789"
language = "en"

[[roster]]
estate = "estate-a"
role = "supervisor"
name = "Supervisor Zhang"
channel = "http://{addr}/hook"
secret = "webhook-secret-0123456789"

[[roster]]
role = "duty_manager"
name = "Duty manager Li"
channel = "log"
"#
    )
}

async fn start(db: &Path, clock: &ManualClock, rest: &str) -> RunningHub {
    common::start_at(common::config(db, &format!("{ESTATE_A}{rest}")), clock).await
}

/// Opens a fire incident (the built-in policy: monitoring room and supervisor at once, the
/// duty manager after 60 s unacknowledged) and runs the first steps.
async fn open_fire(hub: &RunningHub) -> i64 {
    let (status, inc) = http(
        hub,
        "POST",
        "/api/v1/incidents",
        Some(json!({"estate": "estate-a", "area": "block 7", "category": "fire",
                    "title": "Smoke on floor 12", "operator": "wang"})),
    )
    .await;
    assert_eq!(status, 201, "{inc}");
    hub.tick_now().await.unwrap();
    inc["id"].as_i64().unwrap()
}

async fn eventually<F: FnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The answer link the receiver got for `recipient`.
async fn link_of(got: &Received, recipient: &str) -> String {
    eventually(&format!("{recipient}'s notification"), || {
        got.lock().unwrap().iter().any(|b| b["recipient"] == recipient)
    })
    .await;
    let bodies = got.lock().unwrap();
    let body = bodies.iter().find(|b| b["recipient"] == recipient).unwrap();
    assert!(body["answer_expires_at"].is_string(), "{body}");
    body["answer_url"].as_str().expect("an answer link").to_owned()
}

/// Polls `f` until it answers (10 s at most: the deliverer sends on its own time).
async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting")
}

async fn detail(hub: &RunningHub, id: i64) -> Value {
    get(hub, &format!("/api/v1/incidents/{id}")).await
}

fn timeline(d: &Value) -> Vec<String> {
    d["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// A client with no credentials, as a phone's browser.
fn phone() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn tap(url: &str, answer: &str) -> (u16, String) {
    let r = phone()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("answer={answer}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn status_of_get(url: &str) -> u16 {
    phone().get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_link_shows_the_incident_without_acting_answers_once_and_stops_the_escalation() {
    let (addr, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock, &roster(addr)).await;
    let id = open_fire(&hub).await;
    let room = link_of(&got, "Monitoring room A").await;
    let zhang = link_of(&got, "Supervisor Zhang").await;
    assert!(room.starts_with(&format!("http://{}/n/", hub.http_addr())), "{room}");
    assert_ne!(room, zhang, "each notification has its own link");

    // GET shows the incident in the recipient's language and records nothing.
    let r = phone().get(&room).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let page = r.text().await.unwrap();
    for expected in [
        "Smoke on floor 12",
        "Riverside Gardens",
        "P1",
        "block 7",
        "Acknowledge",
        "On my way",
    ] {
        assert!(page.contains(expected), "{expected:?} in {page}");
    }
    assert!(!page.contains("src="), "no external assets: {page}");
    let zh = phone().get(&zhang).send().await.unwrap().text().await.unwrap();
    assert!(zh.contains("确认") && zh.contains("正在赶来"), "{zh}");
    assert_eq!(detail(&hub, id).await["acknowledged"], false, "GET never acts");

    // POST acknowledges as that person; the duty manager's step is stopped.
    let (status, page) = tap(&room, "acknowledged").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("acknowledged"), "{page}");
    let d = detail(&hub, id).await;
    assert_eq!(d["acknowledged"], true);
    assert_eq!(d["acknowledged_by"], "Monitoring room A");
    assert!(
        timeline(&d)
            .iter()
            .any(|t| t == "Monitoring room A acknowledged via link"),
        "{:?}",
        timeline(&d)
    );
    clock.advance_s(120);
    hub.tick_now().await.unwrap();
    let d = detail(&hub, id).await;
    let ns = d["notifications"].as_array().unwrap();
    assert_eq!(ns.len(), 2, "no duty manager: {ns:?}");
    assert_eq!(d["escalation"]["steps"][2]["outcome"], "stopped: acknowledged");
    let answered = ns.iter().find(|n| n["recipient"] == "Monitoring room A").unwrap();
    assert_eq!(answered["answer"], "acknowledged");
    assert_eq!(answered["answer_via"], "link");
    assert!(answered["answered_at"].is_string());

    // The same link again: refused, whichever way it is opened.
    assert_eq!(tap(&room, "acknowledged").await.0, 409);
    assert_eq!(tap(&room, "on_the_way").await.0, 409);
    assert_eq!(status_of_get(&room).await, 409);

    // Another notification's link still works, as JSON.
    let r = phone()
        .post(&zhang)
        .header("accept", "application/json")
        .json(&json!({"answer": "on_the_way"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["recorded"], "on_the_way");
    assert_eq!(v["incident_id"], id);
    let d = detail(&hub, id).await;
    assert_eq!(
        d["acknowledged_by"], "Monitoring room A",
        "the first acknowledgement stands"
    );
    assert!(
        timeline(&d)
            .iter()
            .any(|t| t == "Supervisor Zhang is on the way (via link)"),
        "{:?}",
        timeline(&d)
    );
    let r = phone()
        .post(&zhang)
        .header("accept", "application/json")
        .json(&json!({"answer": "acknowledged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());

    // The audit log names the person, acting through a notification.
    let audit = get(&hub, "/api/v1/audit?action=notification.answer").await;
    let rows = audit["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{audit}");
    assert_eq!(rows[0]["actor"], "Monitoring room A");
    assert_eq!(rows[0]["role"], "notification");
    assert_eq!(rows[0]["detail"]["answer"], "acknowledged");
    assert_eq!(rows[1]["actor"], "Supervisor Zhang");

    // No `[notify.sms]`: the SMS inbound endpoint is closed.
    let r = phone()
        .post(format!("http://{}/api/v1/notify/sms/inbound", hub.http_addr()))
        .bearer_auth(INBOUND)
        .json(&json!({"from": "+8613800000001", "text": "ACK 234567"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    hub.shutdown().await;
}

#[tokio::test]
async fn tampered_garbage_and_expired_links_are_refused_never_with_a_500() {
    let (addr, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let rest = format!("{}\n[notify]\nanswer_link_ttl_s = 600\n", roster(addr));
    let hub = start(&dir.path().join("hub.db"), &clock, &rest).await;
    let id = open_fire(&hub).await;
    let room = link_of(&got, "Monitoring room A").await;
    let zhang = link_of(&got, "Supervisor Zhang").await;
    let (base, token) = room.rsplit_once('/').unwrap();
    let (payload, mac) = token.split_once('.').unwrap();

    // One character of the MAC changed.
    let mut changed = mac.to_owned().into_bytes();
    let last = changed.len() - 5;
    changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
    let changed = String::from_utf8(changed).unwrap();
    assert_eq!(tap(&format!("{base}/{payload}.{changed}"), "acknowledged").await.0, 403);
    // Another notification's id (and a later expiry) under the old MAC.
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let (nid, exp) = text.split_once('.').unwrap();
    let other = URL_SAFE_NO_PAD.encode(format!("{}.{exp}", nid.parse::<i64>().unwrap() + 1));
    assert_eq!(tap(&format!("{base}/{other}.{mac}"), "acknowledged").await.0, 403);
    let later = URL_SAFE_NO_PAD.encode(format!("{nid}.{}", exp.parse::<i64>().unwrap() + 3_600_000));
    assert_eq!(tap(&format!("{base}/{later}.{mac}"), "acknowledged").await.0, 403);
    // Garbage.
    for g in ["x", "x.y", "a..b", "%00%FF", "%E2%80%AE.abc", &"A".repeat(3000)] {
        assert_eq!(tap(&format!("{base}/{g}"), "acknowledged").await.0, 403, "{g}");
        assert_eq!(status_of_get(&format!("{base}/{g}")).await, 403, "{g}");
    }
    // Not an answer at all: refused before the link is looked at.
    assert_eq!(tap(&room, "maybe").await.0, 400);
    let r = phone()
        .post(&room)
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(detail(&hub, id).await["acknowledged"], false, "nothing was recorded");

    // Expired: past `answer_link_ttl_s`.
    clock.advance_s(600);
    assert_eq!(status_of_get(&room).await, 410);
    assert_eq!(tap(&room, "acknowledged").await.0, 410);
    let r = phone()
        .post(&zhang)
        .header("accept", "application/json")
        .json(&json!({"answer": "acknowledged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    assert_eq!(detail(&hub, id).await["acknowledged"], false);
    hub.shutdown().await;
}

#[tokio::test]
async fn an_sms_reply_from_the_recipients_number_acknowledges_as_them() {
    let (addr, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let rest = format!(
        r#"
[[roster]]
estate = "estate-a"
role = "monitoring_room"
name = "Guard Chen"
channel = "sms:+8613800000001"

[[roster]]
estate = "estate-a"
role = "supervisor"
name = "Supervisor Zhang"
channel = "log"

[notify.sms]
url = "http://{addr}/sms"
body = '{{"to": "{{to}}", "text": "{{text}}"}}'
inbound_token = "{INBOUND}"
"#
    );
    let hub = start(&dir.path().join("hub.db"), &clock, &rest).await;
    let id = open_fire(&hub).await;
    let d = detail(&hub, id).await;
    let ns = d["notifications"].as_array().unwrap();
    let sms = ns
        .iter()
        .find(|n| n["recipient"] == "Guard Chen")
        .expect("an SMS notification");
    // The code as the person reads it: in the SMS the gateway was asked to send ("… ACK
    // <code> …"). The API never shows it (it answers as the recipient).
    assert!(sms["body"]["reply_code"].is_null(), "the API hides the reply code");
    assert!(sms["body"]["answer_url"].is_null(), "the API hides the answer link");
    let text = wait_for(|| {
        got.lock()
            .unwrap()
            .iter()
            .find(|v| v["to"] == "+8613800000001")
            .and_then(|v| v["text"].as_str().map(str::to_owned))
    })
    .await;
    let code = text
        .split_whitespace()
        .skip_while(|w| *w != "ACK")
        .nth(1)
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned())
        .unwrap_or_else(|| panic!("a reply code in the SMS: {text}"));
    assert!(text.contains("/n/"), "the SMS carries the answer link: {text}");
    assert_eq!(code.len(), 6);
    assert!(!code.contains(['0', 'O', '1', 'I']), "{code}");
    let log = ns.iter().find(|n| n["recipient"] == "Supervisor Zhang").unwrap();
    assert_eq!(log["channel"], "log");

    let inbound = format!("http://{}/api/v1/notify/sms/inbound", hub.http_addr());
    let reply = |token: &'static str, from: &str, text: &str| {
        phone()
            .post(&inbound)
            .bearer_auth(token)
            .json(&json!({"from": from, "text": text}))
            .send()
    };
    assert_eq!(
        reply("wrong", "+8613800000001", &format!("ACK {code}"))
            .await
            .unwrap()
            .status(),
        401
    );
    let r = phone()
        .post(&inbound)
        .json(&json!({"from": "+8613800000001", "text": format!("ACK {code}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no bearer token");
    let r = reply(INBOUND, "+8613900000009", &format!("ACK {code}")).await.unwrap();
    assert_eq!(r.status(), 404, "another number");
    assert!(
        r.json::<Value>().await.unwrap()["detail"]
            .as_str()
            .unwrap()
            .contains("not sent to this number")
    );
    let r = reply(INBOUND, "+8613800000001", "ACK 222222").await.unwrap();
    assert_eq!(r.status(), 404, "an unknown code");
    assert_eq!(detail(&hub, id).await["acknowledged"], false);

    // The right number, lower case, as a form (what many gateways post).
    let r = phone()
        .post(&inbound)
        .bearer_auth(INBOUND)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("from=%2B86%20138-0000-0001&text=ack+{}", code.to_lowercase()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["recorded"], "acknowledged");
    assert_eq!(v["via"], "sms_reply");
    let d = detail(&hub, id).await;
    assert_eq!(d["acknowledged_by"], "Guard Chen");
    assert!(
        timeline(&d)
            .iter()
            .any(|t| t == "Guard Chen acknowledged via SMS reply"),
        "{:?}",
        timeline(&d)
    );
    let n = d["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["recipient"] == "Guard Chen")
        .unwrap()
        .clone();
    assert_eq!(n["answer_via"], "sms_reply");
    let r = reply(INBOUND, "+8613800000001", &format!("OMW {code}")).await.unwrap();
    assert_eq!(r.status(), 409, "answered already");
    hub.shutdown().await;
}

#[tokio::test]
async fn links_survive_a_restart() {
    let (addr, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let clock = ManualClock::new(T0);
    let hub = start(&db, &clock, &roster(addr)).await;
    let id = open_fire(&hub).await;
    let room = link_of(&got, "Monitoring room A").await;
    let old = hub.http_addr();
    hub.shutdown().await;

    let hub = start(&db, &clock, &roster(addr)).await;
    // The new hub listens elsewhere (a port chosen at run time): the same token there.
    let token = room.rsplit_once('/').unwrap().1;
    let url = format!("http://{}/n/{token}", hub.http_addr());
    assert!(room.starts_with(&format!("http://{old}/n/")));
    let (status, page) = tap(&url, "on_the_way").await;
    assert_eq!(status, 200, "{page}");
    let d = detail(&hub, id).await;
    assert_eq!(d["acknowledged_by"], "Monitoring room A");
    assert!(
        timeline(&d)
            .iter()
            .any(|t| t == "Monitoring room A is on the way (via link)"),
        "{:?}",
        timeline(&d)
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_configured_link_secret_signs_the_links_and_a_short_one_stops_the_start() {
    let (addr, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    // Refused when the file is checked (the hub does not start).
    let mut config = common::config(&dir.path().join("short.db"), &format!("{ESTATE_A}{}", roster(addr)));
    config.notify.link_secret = Some(gatehouse_hub::notify::config::Secret::new("too-short"));
    let err = gatehouse_hub::start_with_clock(config, Arc::new(clock.clone()))
        .await
        .expect_err("a short link secret is refused");
    let message = err.to_string();
    assert!(message.contains("notify.link_secret"), "{message}");
    assert!(!message.contains("too-short"), "the secret is not echoed: {message}");

    // The same configured secret on two databases: a link of one names a row of the other
    // with another expiry, so it is refused there as forged.
    let secret = "a-link-secret-of-at-least-32-characters";
    let rest = format!("{}\n[notify]\nlink_secret = \"{secret}\"\n", roster(addr));
    let hub = start(&dir.path().join("one.db"), &clock, &rest).await;
    open_fire(&hub).await;
    let room = link_of(&got, "Monitoring room A").await;
    hub.shutdown().await;
    clock.advance_s(1);
    got.lock().unwrap().clear();
    let hub = start(&dir.path().join("two.db"), &clock, &rest).await;
    let id = open_fire(&hub).await;
    link_of(&got, "Monitoring room A").await;
    let token = room.rsplit_once('/').unwrap().1;
    let (status, _) = tap(&format!("http://{}/n/{token}", hub.http_addr()), "acknowledged").await;
    assert_eq!(status, 403);
    assert_eq!(detail(&hub, id).await["acknowledged"], false);
    hub.shutdown().await;
}
