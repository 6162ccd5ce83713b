//! Chat robots (issue 14): an incident opened through the API escalates to a supervisor and a
//! facility team whose roster channels are `robot:<name>`; each robot posts to a receiver
//! started here on loopback over https (its certificate minted by rcgen under a CA made now,
//! trusted through the robot's `ca_file` or `notify.ca_file`).
//!
//! The receivers are written from the platforms' documentation, not from our code: the
//! DingTalk one checks `timestamp` (ms, within an hour) and recomputes `sign` =
//! base64(HmacSHA256(secret, timestamp + "\n" + secret)) from the query; the Feishu one checks
//! the body's `timestamp` (s) and `sign` = base64(HmacSHA256(timestamp + "\n" + secret, ""));
//! WeCom, Slack and Teams check their payload shapes. Each answers as its platform does —
//! including the error a platform answers with HTTP 200 (DingTalk 310000 "sign not match"),
//! which leaves the row pending with the reason, retried with backoff, the URL (the token)
//! nowhere in it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{eventually, http, metric, notifications};
use gatehouse_hub::{ManualClock, RunningHub};
use hmac::{KeyInit, Mac};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

const T0: i64 = 1_764_000_000_000;
const DING_SECRET: &str = "SECd1n9t4lk-test-secret-0123456789";
const FEISHU_SECRET: &str = "feishu-test-secret-0123456789";
const DING_TOKEN: &str = "dingaccesstoken0123456789";
const WECOM_KEY: &str = "wecomkey-0123456789abcdef";
const FEISHU_HOOK: &str = "feishuhook-0123456789abcdef";
const SLACK_TOKEN: &str = "slacktoken0123456789abcdef";
const TEAMS_SIG: &str = "teamssig0123456789abcdef";

/// A CA (its PEM written to `dir/ca.pem`) and a server certificate for 127.0.0.1 under it.
fn mint(dir: &Path) -> (PathBuf, rustls::ServerConfig) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Gatehouse test robots CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (ca_file, server)
}

/// What a receiver took: the platform, whether the request was right by the platform's
/// documentation (or why not), and every text of the payload joined.
#[derive(Debug, Clone)]
struct Call {
    platform: &'static str,
    problem: Option<String>,
    text: String,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// Every string leaf of a JSON value, newline-separated (the text people would read).
fn texts(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
        Value::Object(o) => o.values().for_each(|x| texts(x, out)),
        _ => {}
    }
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(msg);
    B64.encode(mac.finalize().into_bytes())
}

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn dingtalk(uri: &Uri, body: &Value) -> Result<(), String> {
    let query: Vec<(String, String)> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if param("access_token").as_deref() != Some(DING_TOKEN) {
        return Err("access_token".into());
    }
    let ts = param("timestamp").ok_or("no timestamp")?;
    let ts_ms: i64 = ts.parse().map_err(|_| "timestamp is not ms")?;
    if (now_ms() - ts_ms).abs() > 3_600_000 {
        return Err("timestamp not within one hour".into());
    }
    let want = hmac_b64(DING_SECRET.as_bytes(), format!("{ts}\n{DING_SECRET}").as_bytes());
    if param("sign").as_deref() != Some(want.as_str()) {
        return Err("sign not match".into());
    }
    if body["msgtype"] != "markdown" || !body["markdown"]["title"].is_string() || !body["markdown"]["text"].is_string()
    {
        return Err("not a markdown message".into());
    }
    Ok(())
}

fn feishu(body: &Value) -> Result<(), String> {
    let ts = body["timestamp"].as_str().ok_or("timestamp is not a string")?;
    let ts_s: i64 = ts.parse().map_err(|_| "timestamp is not seconds")?;
    if (now_ms() / 1000 - ts_s).abs() > 3600 {
        return Err("timestamp not within one hour".into());
    }
    let want = hmac_b64(format!("{ts}\n{FEISHU_SECRET}").as_bytes(), b"");
    if body["sign"].as_str() != Some(want.as_str()) {
        return Err("sign match fail".into());
    }
    let ok = match body["msg_type"].as_str() {
        Some("interactive") => body["card"].is_object(),
        Some("post") => body["content"]["post"].is_object(),
        Some("text") => body["content"]["text"].is_string(),
        _ => false,
    };
    if !ok {
        return Err("msg_type and content do not match".into());
    }
    Ok(())
}

fn wecom(uri: &Uri, body: &Value) -> Result<(), String> {
    if !uri.query().unwrap_or("").contains(&format!("key={WECOM_KEY}")) {
        return Err("invalid webhook url".into());
    }
    let content = body["markdown"]["content"].as_str().ok_or("no markdown.content")?;
    if body["msgtype"] != "markdown" || content.len() > 4096 {
        return Err("not a markdown message of at most 4096 bytes".into());
    }
    Ok(())
}

fn slack(body: &Value) -> Result<(), String> {
    let blocks = body["blocks"].as_array().ok_or("no blocks")?;
    if !body["text"].is_string() || blocks.is_empty() || blocks.len() > 50 {
        return Err("invalid_payload".into());
    }
    for b in blocks {
        let kind = b["type"].as_str().unwrap_or("");
        let text = &b["text"];
        let ok = match kind {
            "header" => text["type"] == "plain_text" && text["text"].as_str().is_some_and(|t| t.chars().count() <= 150),
            "section" => text["type"] == "mrkdwn" && text["text"].as_str().is_some_and(|t| t.chars().count() <= 3000),
            _ => false,
        };
        if !ok {
            return Err(format!("invalid_blocks: {b}"));
        }
    }
    Ok(())
}

fn teams(body: &Value, incident_link: &str) -> Result<(), String> {
    let a = &body["attachments"][0];
    let card = &a["content"];
    if body["type"] != "message"
        || a["contentType"] != "application/vnd.microsoft.card.adaptive"
        || card["type"] != "AdaptiveCard"
        || !card["version"].is_string()
        || !card["$schema"].is_string()
        || card["body"].as_array().is_none_or(|b| b.is_empty())
    {
        return Err("not a message with an Adaptive Card".into());
    }
    let actions = card["actions"].as_array().ok_or("no actions")?;
    if !actions
        .iter()
        .any(|x| x["type"] == "Action.OpenUrl" && x["url"].as_str().is_some_and(|u| u.contains(incident_link)))
    {
        return Err("no Action.OpenUrl to the incident".into());
    }
    Ok(())
}

/// Answers as the platform does, the error when the request is not right by its documentation.
fn answer(platform: &str, problem: &Option<String>) -> axum::response::Response {
    let (status, body) = match (platform, problem) {
        ("dingtalk", None) => (StatusCode::OK, json!({"errcode": 0, "errmsg": "ok"}).to_string()),
        ("dingtalk", Some(p)) if p.contains("sign") || p.contains("timestamp") => (
            StatusCode::OK,
            json!({"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}).to_string(),
        ),
        ("dingtalk", Some(p)) => (StatusCode::OK, json!({"errcode": 300001, "errmsg": p}).to_string()),
        ("wecom", None) => (StatusCode::OK, json!({"errcode": 0, "errmsg": "ok"}).to_string()),
        ("wecom", Some(p)) => (StatusCode::OK, json!({"errcode": 93000, "errmsg": p}).to_string()),
        ("feishu", None) => (StatusCode::OK, json!({"code": 0, "msg": "success", "data": {}}).to_string()),
        ("feishu", Some(p)) => (StatusCode::OK, json!({"code": 19021, "msg": p, "data": {}}).to_string()),
        ("slack", None) => (StatusCode::OK, "ok".to_owned()),
        ("slack", Some(p)) => (StatusCode::BAD_REQUEST, p.clone()),
        ("teams", None) => (StatusCode::ACCEPTED, String::new()),
        (_, Some(p)) => (StatusCode::BAD_REQUEST, p.clone()),
        (_, None) => (StatusCode::NOT_FOUND, String::new()),
    };
    (status, body).into_response()
}

fn receiver_app(calls: Calls, incident_link: Arc<Mutex<String>>) -> axum::Router {
    axum::Router::new().fallback(move |uri: Uri, body: axum::body::Bytes| {
        let calls = calls.clone();
        let incident_link = incident_link.lock().unwrap().clone();
        async move {
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let path = uri.path();
            let (platform, verdict) = if path.starts_with("/ding/robot/send") {
                ("dingtalk", dingtalk(&uri, &json))
            } else if path.starts_with("/wecom/cgi-bin/webhook/send") {
                ("wecom", wecom(&uri, &json))
            } else if path == format!("/feishu/open-apis/bot/v2/hook/{FEISHU_HOOK}") {
                ("feishu", feishu(&json))
            } else if path == format!("/slack/services/T0/B0/{SLACK_TOKEN}") {
                ("slack", slack(&json))
            } else if path.starts_with("/teams/workflows") && uri.query().unwrap_or("").contains(TEAMS_SIG) {
                ("teams", teams(&json, &incident_link))
            } else {
                ("unknown", Err(format!("no robot at {path}")))
            };
            let problem = verdict.err();
            let mut text = String::new();
            texts(&json, &mut text);
            calls.lock().unwrap().push(Call {
                platform,
                problem: problem.clone(),
                text,
            });
            answer(platform, &problem)
        }
    })
}

/// `[notify]` with the five robots at `addr` (DingTalk trusting the CA through
/// `notify.ca_file`, the others through their own `ca_file`), a roster (supervisors:
/// DingTalk in Chinese, Slack in English; facility team: WeCom and Feishu in Chinese, Teams
/// in English) and a fire policy: supervisors first, the facility team 30 s later.
fn config(db: &Path, ca: &Path, addr: std::net::SocketAddr, ding_secret: &str) -> gatehouse_hub::HubConfig {
    let ca = ca.display();
    let base = format!("https://{addr}");
    let rest = format!(
        r#"{estate}
[notify]
ca_file = "{ca}"

[[notify.robots]]
name = "duty-ding"
kind = "dingtalk"
url = "{base}/ding/robot/send?access_token={DING_TOKEN}"
secret = "{ding_secret}"

[[notify.robots]]
name = "ops-slack"
kind = "slack"
url = "{base}/slack/services/T0/B0/{SLACK_TOKEN}"
ca_file = "{ca}"

[[notify.robots]]
name = "facility-wecom"
kind = "wecom"
url = "{base}/wecom/cgi-bin/webhook/send?key={WECOM_KEY}"
ca_file = "{ca}"

[[notify.robots]]
name = "facility-feishu"
kind = "feishu"
url = "{base}/feishu/open-apis/bot/v2/hook/{FEISHU_HOOK}"
secret = "{FEISHU_SECRET}"
ca_file = "{ca}"

[[notify.robots]]
name = "facility-teams"
kind = "teams"
url = "{base}/teams/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig={TEAMS_SIG}"
ca_file = "{ca}"

[[roster]]
estate = "estate-a"
role = "supervisor"
name = "Supervisor Wang"
channel = "robot:duty-ding"
language = "zh-CN"

[[roster]]
estate = "estate-a"
role = "supervisor"
name = "Supervisor Smith"
channel = "robot:ops-slack"
language = "en"

[[roster]]
estate = "estate-a"
role = "facility_team"
name = "Facility WeCom"
channel = "robot:facility-wecom"
language = "zh-CN"

[[roster]]
estate = "estate-a"
role = "facility_team"
name = "Facility Feishu"
channel = "robot:facility-feishu"
language = "zh-CN"

[[roster]]
estate = "estate-a"
role = "facility_team"
name = "Facility Teams"
channel = "robot:facility-teams"
language = "en"

[[escalation.policies]]
category = "fire"
steps = [
  {{ role = "supervisor" }},
  {{ role = "facility_team", wait_s = 30 }},
]
"#,
        estate = common::ESTATE_A,
    );
    common::config(db, &rest)
}

/// Opens a P1 fire incident through the API; returns its id.
async fn open_incident(hub: &RunningHub) -> i64 {
    let (status, inc) = http(
        hub,
        "POST",
        "/api/v1/incidents",
        Some(
            json!({"estate": "estate-a", "area": "Block 7 stairwell", "category": "fire", "priority": "P1",
            "title": "Smoke on floor 12", "operator": "wang"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{inc}");
    inc["id"].as_i64().expect("an id")
}

/// Fails at once, naming it, when a receiver found a request against its platform's rules.
fn refused_nothing(calls: &Calls) {
    if let Some(c) = calls.lock().unwrap().iter().find(|c| c.problem.is_some()) {
        panic!("{} refused the request: {:?}", c.platform, c.problem);
    }
}

#[tokio::test]
async fn every_robot_receives_the_incident_in_its_format_signed_and_in_the_recipients_language() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, server) = mint(dir.path());
    let calls: Calls = Arc::default();
    let link = Arc::new(Mutex::new(String::new()));
    let addr = common::https_server(server, receiver_app(calls.clone(), link.clone()), || {}).await;
    let clock = ManualClock::new(T0);
    let hub = common::start_at(config(&dir.path().join("hub.db"), &ca_file, addr, DING_SECRET), &clock).await;
    let id = open_incident(&hub).await;
    let incident_link = format!("http://{}/#/incidents/{id}", hub.http_addr());
    *link.lock().unwrap() = incident_link.clone();

    hub.tick_now().await.unwrap();
    eventually("the supervisors' robots delivered", || async {
        refused_nothing(&calls);
        let ns = notifications(&hub).await;
        ns.len() == 2 && ns.iter().all(|n| n["status"] == "delivered")
    })
    .await;
    clock.advance_s(30);
    hub.tick_now().await.unwrap();
    eventually("the facility team's robots delivered", || async {
        refused_nothing(&calls);
        let ns = notifications(&hub).await;
        ns.len() == 5 && ns.iter().all(|n| n["status"] == "delivered")
    })
    .await;

    let calls = calls.lock().unwrap().clone();
    let mut platforms: Vec<_> = calls.iter().map(|c| c.platform).collect();
    platforms.sort_unstable();
    assert_eq!(
        platforms,
        ["dingtalk", "feishu", "slack", "teams", "wecom"],
        "one call each"
    );
    for c in &calls {
        assert_eq!(
            c.problem, None,
            "{}: the request breaks the platform's rules",
            c.platform
        );
        let wants: &[&str] = match c.platform {
            "dingtalk" | "wecom" | "feishu" => &[
                "Riverside Gardens",
                "P1 紧急",
                "Smoke on floor 12",
                "Block 7 stairwell",
                "已发现",
            ],
            _ => &[
                "Riverside Gardens",
                "P1 Critical",
                "Smoke on floor 12",
                "Block 7 stairwell",
                "discovered",
            ],
        };
        for want in wants.iter().chain([&incident_link.as_str()]) {
            assert!(c.text.contains(want), "{}: {want:?} missing in\n{}", c.platform, c.text);
        }
        let other_language = if wants[1] == "P1 紧急" { "Critical" } else { "紧急" };
        assert!(
            !c.text.contains(other_language),
            "{}: one language\n{}",
            c.platform,
            c.text
        );
    }
    for platform in ["dingtalk", "feishu", "slack", "teams", "wecom"] {
        assert_eq!(
            metric(
                &hub,
                &format!("gatehouse_hub_notification_attempts_total{{channel=\"{platform}\",result=\"delivered\"}}")
            )
            .await,
            1.0,
            "{platform}"
        );
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn a_platform_error_in_a_200_answer_keeps_the_row_pending_with_the_reason_and_no_url() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, server) = mint(dir.path());
    let calls: Calls = Arc::default();
    let addr = common::https_server(server, receiver_app(calls.clone(), Arc::default()), || {}).await;
    let clock = ManualClock::new(T0);
    // Our DingTalk robot signs with a secret the receiver does not know: DingTalk answers
    // HTTP 200 with errcode 310000.
    let hub = common::start_at(
        config(
            &dir.path().join("hub.db"),
            &ca_file,
            addr,
            "SECnot-the-robots-secret-0123456789",
        ),
        &clock,
    )
    .await;
    open_incident(&hub).await;
    hub.tick_now().await.unwrap();
    let ding = |ns: &[Value]| ns.iter().find(|n| n["channel"] == "robot:duty-ding").cloned();
    eventually("the DingTalk attempt recorded", || async {
        ding(&notifications(&hub).await).is_some_and(|n| n["attempts"] == 1)
    })
    .await;
    let n = ding(&notifications(&hub).await).unwrap();
    assert_eq!(n["status"], "pending", "{n}");
    let error = n["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("dingtalk") && error.contains("310000") && error.contains("sign not match"),
        "the reason names the platform's code and message: {error}"
    );
    for secret in [DING_TOKEN, &addr.to_string(), "/ding/robot/send", "SECnot"] {
        assert!(!error.contains(secret), "{secret:?} in the reason: {error}");
    }
    assert_eq!(
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.platform == "dingtalk")
            .count(),
        1
    );

    // Retried on the notify backoff (retry_initial_s = 5 s), refused again, still kept.
    clock.advance_s(5);
    eventually("the retry recorded", || async {
        ding(&notifications(&hub).await).is_some_and(|n| n["attempts"] == 2)
    })
    .await;
    let n = ding(&notifications(&hub).await).unwrap();
    assert_eq!(n["status"], "pending", "{n}");
    assert_eq!(
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.platform == "dingtalk")
            .count(),
        2
    );
    assert_eq!(
        metric(
            &hub,
            "gatehouse_hub_notification_attempts_total{channel=\"dingtalk\",result=\"refused\"}"
        )
        .await,
        2.0
    );
    // The Slack robot, same step, same receiver, is not held up by DingTalk's refusal.
    let slack = notifications(&hub)
        .await
        .into_iter()
        .find(|n| n["channel"] == "robot:ops-slack")
        .unwrap();
    assert_eq!(slack["status"], "delivered", "{slack}");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_robot_whose_certificate_is_not_trusted_fails_as_tls_with_no_url_in_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, server) = mint(dir.path());
    let calls: Calls = Arc::default();
    let addr = common::https_server(server, receiver_app(calls.clone(), Arc::default()), || {}).await;
    let clock = ManualClock::new(T0);
    // Neither notify.ca_file nor the robots' own: the system's roots do not know the test CA.
    let mut cfg = config(&dir.path().join("hub.db"), &ca_file, addr, DING_SECRET);
    cfg.notify.ca_file = None;
    for r in &mut cfg.notify.robots {
        r.ca_file = None;
    }
    let hub = common::start_at(cfg, &clock).await;
    open_incident(&hub).await;
    hub.tick_now().await.unwrap();
    eventually("both supervisors' attempts recorded", || async {
        let ns = notifications(&hub).await;
        ns.len() == 2 && ns.iter().all(|n| n["attempts"] == 1)
    })
    .await;
    for n in notifications(&hub).await {
        assert_eq!(n["status"], "pending", "{n}");
        let error = n["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("TLS handshake failed"), "{error}");
        for secret in [DING_TOKEN, SLACK_TOKEN, &addr.to_string()] {
            assert!(!error.contains(secret), "{secret:?} in the reason: {error}");
        }
    }
    assert!(calls.lock().unwrap().is_empty(), "nothing reached a receiver");
    for platform in ["dingtalk", "slack"] {
        assert_eq!(
            metric(
                &hub,
                &format!("gatehouse_hub_notification_attempts_total{{channel=\"{platform}\",result=\"tls_error\"}}")
            )
            .await,
            1.0,
            "{platform}"
        );
    }
    hub.shutdown().await;
}
