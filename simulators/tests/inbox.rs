//! The facility inbox over real HTTP on loopback: a request signed as DingTalk's documentation
//! says is verified; a wrong signature, a stale timestamp or a wrong token is kept but marked
//! unverified and answered with DingTalk's error code; bad bodies are refused and not kept.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use gatehouse_sim::inbox::{Inbox, MAX_BODY, MAX_MESSAGES, RobotKeys};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const TOKEN: &str = "b1f0c0ffee";
const SECRET: &str = "SEC0123456789abcdef";

/// The signature exactly as the documentation's sample computes it, URL-encoded for the query.
fn doc_sign(secret: &str, timestamp: i64) -> String {
    let string_to_sign = format!("{timestamp}\n{secret}");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(string_to_sign.as_bytes());
    let b64 = STANDARD.encode(mac.finalize().into_bytes());
    url::form_urlencoded::byte_serialize(b64.as_bytes()).collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn inbox() -> Inbox {
    Inbox::start(
        "127.0.0.1:0".parse().unwrap(),
        RobotKeys {
            access_token: TOKEN.into(),
            secret: SECRET.into(),
        },
    )
    .await
    .expect("inbox")
}

async fn post(inbox: &Inbox, query: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/robot/send?{query}", inbox.addr()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn markdown(title: &str, text: &str) -> String {
    json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}}).to_string()
}

async fn listed(inbox: &Inbox) -> Vec<Value> {
    let v: Value = reqwest::get(inbox.url()).await.unwrap().json().await.unwrap();
    v["messages"].as_array().expect("messages").clone()
}

#[tokio::test]
async fn a_documented_signature_verifies_and_the_message_is_listed() {
    let inbox = inbox().await;
    let ts = now_ms();
    let q = format!("access_token={TOKEN}&timestamp={ts}&sign={}", doc_sign(SECRET, ts));
    let (status, answer) = post(&inbox, &q, markdown("P3 Lakeview Court", "### Duty pump tripped\nmore")).await;
    assert_eq!((status, answer), (200, json!({"errcode": 0, "errmsg": "ok"})));
    let (status, answer) = post(
        &inbox,
        &q,
        json!({"msgtype": "text", "text": {"content": "plain"}}).to_string(),
    )
    .await;
    assert_eq!((status, answer["errcode"].clone()), (200, json!(0)));

    let list = listed(&inbox).await;
    assert_eq!(list.len(), 2);
    let first = &list[0];
    assert_eq!(first["channel"], "dingtalk");
    assert_eq!(first["signature_verified"], true);
    assert_eq!(first["title"], "P3 Lakeview Court");
    assert_eq!(first["text"], "### Duty pump tripped\nmore");
    assert!(first.get("refused").is_none(), "{first}");
    let at = first["received_at"].as_str().expect("received_at");
    chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339");
    // Newest last.
    assert_eq!(list[1]["text"], "plain");
    assert_eq!(list[1]["title"], Value::Null);
    assert_eq!(inbox.messages()[0].first_line(), "### Duty pump tripped");
}

#[tokio::test]
async fn wrong_signatures_stale_timestamps_and_wrong_tokens_are_kept_unverified() {
    let inbox = inbox().await;
    let ts = now_ms();
    let cases = [
        // Signed with another secret.
        (
            format!("access_token={TOKEN}&timestamp={ts}&sign={}", doc_sign("SECother", ts)),
            310000,
        ),
        // Correctly signed, but two hours old.
        {
            let old = ts - 2 * 3_600_000;
            (
                format!("access_token={TOKEN}&timestamp={old}&sign={}", doc_sign(SECRET, old)),
                310000,
            )
        },
        // The signature of another timestamp.
        (
            format!(
                "access_token={TOKEN}&timestamp={}&sign={}",
                ts + 1,
                doc_sign(SECRET, ts)
            ),
            310000,
        ),
        // No signature at all.
        (format!("access_token={TOKEN}"), 310000),
        // Correctly signed, wrong token.
        (
            format!("access_token=other&timestamp={ts}&sign={}", doc_sign(SECRET, ts)),
            300001,
        ),
    ];
    for (q, code) in &cases {
        let (status, answer) = post(&inbox, q, markdown("t", q)).await;
        assert_eq!(status, 200, "{q}");
        assert_eq!(answer["errcode"], *code, "{q}: {answer}");
        assert!(answer["errmsg"].as_str().is_some_and(|m| !m.is_empty()));
        if *code == 310000 {
            assert!(
                answer["errmsg"].as_str().unwrap().starts_with("sign not match"),
                "{answer}"
            );
        }
        // Neither the secret nor the token is echoed.
        let said = answer.to_string();
        assert!(!said.contains(SECRET) && !said.contains(TOKEN), "{said}");
    }
    let list = listed(&inbox).await;
    assert_eq!(list.len(), cases.len());
    for m in &list {
        assert_eq!(m["signature_verified"], false, "{m}");
        assert!(m["refused"].as_str().is_some(), "{m}");
    }
}

#[tokio::test]
async fn bad_bodies_are_refused_and_not_kept() {
    let inbox = inbox().await;
    let ts = now_ms();
    let q = format!("access_token={TOKEN}&timestamp={ts}&sign={}", doc_sign(SECRET, ts));
    for bad in [
        "{".to_string(),
        "not json".into(),
        json!({"msgtype": "markdown"}).to_string(),
        json!({"msgtype": "feedCard", "feedCard": {}}).to_string(),
        String::new(),
    ] {
        let (status, answer) = post(&inbox, &q, bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(answer["errcode"], 40035, "{bad}: {answer}");
    }
    // Over the body cap: refused with a JSON answer too.
    let big = markdown("t", &"x".repeat(MAX_BODY + 1));
    let (status, answer) = post(&inbox, &q, big).await;
    assert_eq!(status, 413);
    assert_eq!(answer["errcode"], 40035);
    // A query that is not form-encoded text does not break it either.
    let (status, _) = post(&inbox, "%ff%fe=%&&sign=%zz", markdown("t", "odd query")).await;
    assert_eq!(status, 200);
    let list = listed(&inbox).await;
    assert_eq!(list.len(), 1, "only the readable body was kept: {list:?}");
    assert_eq!(list[0]["signature_verified"], false);
}

#[tokio::test]
async fn keeps_the_last_thousand_and_wakes_a_waiter() {
    let inbox = inbox().await;
    let client = reqwest::Client::new();
    for i in 0..MAX_MESSAGES + 5 {
        let resp = client
            .post(format!("http://{}/robot/send", inbox.addr()))
            .body(json!({"msgtype": "text", "text": {"content": format!("m{i}")}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let list = listed(&inbox).await;
    assert_eq!(list.len(), MAX_MESSAGES);
    assert_eq!(list[0]["text"], "m5");
    assert_eq!(list[MAX_MESSAGES - 1]["text"], format!("m{}", MAX_MESSAGES + 4));
    // The demo's printer: what came after the first `seen`, of those still kept.
    let total = (MAX_MESSAGES + 5) as u64;
    let (now, all) = inbox.next(0).await;
    assert_eq!((now, all.len(), all[0].text.as_str()), (total, MAX_MESSAGES, "m5"));
    let (_, last) = inbox.next(total - 1).await;
    assert_eq!(
        last.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        [format!("m{}", total - 1)]
    );

    let nothing = inbox.wait_for(Duration::from_millis(50), |m| m.text == "later").await;
    assert!(nothing.is_none());
    let addr = inbox.addr();
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        reqwest::Client::new()
            .post(format!("http://{addr}/robot/send"))
            .body(json!({"msgtype": "text", "text": {"content": "later"}}).to_string())
            .send()
            .await
            .unwrap();
    });
    let got = inbox.wait_for(Duration::from_secs(30), |m| m.text == "later").await;
    assert_eq!(got.map(|m| m.text), Some("later".to_string()));
    later.await.unwrap();
}

#[tokio::test]
async fn the_demo_hub_configuration_sends_the_facility_team_to_the_inbox_robot() {
    use gatehouse_hub::{config::HubConfig, notify::config::RobotKind, roles::Lang};
    use gatehouse_sim::scenario::{FacilityRobot, demo_estates, hub_toml_full, hub_toml_with};

    let inbox = Inbox::start_random().await.expect("inbox");
    assert!(
        inbox
            .robot_url()
            .starts_with(&format!("http://{}/robot/send?access_token=", inbox.addr()))
    );
    assert!(inbox.secret().starts_with("SEC"));
    let robot = FacilityRobot {
        url: inbox.robot_url(),
        secret: inbox.secret().to_owned(),
    };
    let (grpc, http) = ("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
    let toml = hub_toml_full(grpc, http, "sqlite::memory:", &demo_estates(), None, Some(&robot)).unwrap();
    let config = HubConfig::from_toml(&toml).expect("the hub reads it");
    let robots = &config.notify.robots;
    assert_eq!(robots.len(), 1);
    assert_eq!(
        (robots[0].name.as_str(), robots[0].kind),
        ("facility", RobotKind::Dingtalk)
    );
    assert_eq!(
        robots[0].url.as_ref().map(|u| u.expose()),
        Some(inbox.robot_url().as_str())
    );
    assert_eq!(robots[0].secret.as_ref().map(|s| s.expose()), Some(inbox.secret()));
    let facility: Vec<_> = config
        .roster
        .iter()
        .filter(|r| r.role.as_str() == "facility_team")
        .collect();
    assert_eq!(facility.len(), 1);
    assert_eq!(facility[0].channel, "robot:facility");
    assert_eq!(facility[0].language, Some(Lang::ZhCn));

    // Without the robot (the tests' hubs) the facility team stays on the log.
    let plain = HubConfig::from_toml(&hub_toml_with(grpc, http, "sqlite::memory:", &demo_estates(), None).unwrap())
        .expect("the hub reads it");
    assert!(plain.notify.robots.is_empty());
    assert!(
        plain
            .roster
            .iter()
            .any(|r| r.role.as_str() == "facility_team" && r.channel == "log")
    );
}
