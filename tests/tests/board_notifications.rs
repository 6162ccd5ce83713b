//! Delivery state on the board (issue 14 §3): a fire incident notifies the monitoring room
//! (a generic webhook answering 200: `delivered`) and the estate supervisor (a webhook
//! answering 500: not delivered, retried, then `failed` at `max_attempts = 2`). The
//! incident view, in a real headless Chromium, shows each recipient's state in words with
//! the failure's reason — while the retry waits and once it failed for good — in en and
//! zh-CN, and never the webhooks' URLs. The receivers are real HTTP servers on loopback; the
//! failing one holds its second answer until the test has seen the "retrying" state, so the
//! test waits on states, never on time. Screenshots as board.rs writes them.

// The harness is shared with board.rs; this file uses part of it.
#![allow(dead_code)]

mod common;
#[path = "board/mod.rs"]
mod harness;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use gatehouse_sim::scenario::EstateSpec;
use harness::{
    browser::{Driver, Page, tid},
    system::{SERIAL, Sut, get_json, open_board_as, post_json, wait_live},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

const OPERATOR: &str = "browser-notifications";
const WAIT: Duration = Duration::from_secs(20);
const SUPERVISOR: &str = "Riverside Gardens estate supervisor";
const MONITORING: &str = "Riverside Gardens monitoring room";

/// A webhook receiver on a loopback port: answers every request with `status`; from the
/// `hold_from`-th request on (1-based), only once the test adds a permit to `gate`.
struct Receiver {
    url: String,
    requests: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Receiver {
    async fn start(status: &'static str, hold_from: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a receiver");
        let url = format!(
            "http://{}/hook/secret-token-in-the-url",
            listener.local_addr().expect("receiver address")
        );
        let requests = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (n, g) = (requests.clone(), gate.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (n, g) = (n.clone(), g.clone());
                tokio::spawn(async move {
                    if read_request(sock, status, &n, hold_from, &g).await.is_none() {
                        eprintln!("receiver: a request ended early");
                    }
                });
            }
        });
        Receiver { url, requests, gate }
    }

    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one HTTP/1.1 request (head and `content-length` body) and answers `status`.
async fn read_request(
    mut sock: TcpStream,
    status: &str,
    n: &AtomicUsize,
    hold_from: usize,
    gate: &Semaphore,
) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let got = sock.read(&mut chunk).await.ok()?;
        if got == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..got]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let got = sock.read(&mut chunk).await.ok()?;
        if got == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..got]);
    }
    let nth = n.fetch_add(1, Ordering::SeqCst) + 1;
    if nth >= hold_from {
        gate.acquire().await.ok()?.forget();
    }
    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    sock.write_all(answer.as_bytes()).await.ok()?;
    sock.shutdown().await.ok()
}

/// The scenario's hub for `estate-a` with the two roster entries on the receivers and
/// `[notify]` retrying once after a second.
fn edit(toml: String, ok: &str, failing: &str) -> String {
    let log = |name: &str| format!("name = \"{name}\"\nchannel = \"log\"");
    let to = |name: &str, url: &str| format!("name = \"{name}\"\nchannel = \"{url}\"");
    assert!(
        toml.contains(&log(SUPERVISOR)) && toml.contains(&log(MONITORING)),
        "{toml}"
    );
    let toml = toml
        .replace(&log(SUPERVISOR), &to(SUPERVISOR, failing))
        .replace(&log(MONITORING), &to(MONITORING, ok));
    toml + "\n[notify]\nwebhook_secret = \"board-notifications-test-secret\"\nmax_attempts = 2\n\
            retry_initial_s = 1\nretry_max_s = 1\ntimeout_s = 30\n"
}

/// The notification of `incident` to `recipient` as the API lists it.
async fn notification(sut: &Sut, incident: i64, recipient: &str) -> Option<Value> {
    let d = get_json(&format!("{}/api/v1/incidents/{incident}", sut.api)).await;
    d["notifications"]
        .as_array()?
        .iter()
        .find(|n| n["recipient"] == recipient)
        .cloned()
}

/// Brings the notifications table into the window, so the screenshot shows it.
async fn show_table(page: &Page) {
    page.js(
        "document.querySelector(arguments[0]).scrollIntoView({block: 'center'}); return true;",
        vec![json!(tid("notifications"))],
    )
    .await;
}

fn row_of(role: &str) -> String {
    format!("{}[data-role=\"{role}\"]", tid("notification-row"))
}

/// Waits until the row of `role` has `data-status = status` and its text contains `text`.
async fn wait_row(page: &Page, what: &str, role: &str, status: &str, text: &str) -> String {
    let v = page
        .wait_js(
            what,
            WAIT,
            "const r = document.querySelector(arguments[0]); \
             return r && r.dataset.status === arguments[1] && r.innerText.includes(arguments[2]) && r.innerText;",
            vec![json!(row_of(role)), json!(status), json!(text)],
        )
        .await;
    v.as_str().unwrap_or_default().to_owned()
}

/// The page shows no raw i18n key and no webhook URL (they carry tokens).
async fn no_keys_or_urls(page: &Page, sut: &Sut, urls: &[&str], lang: &str) {
    let mut keys = Vec::new();
    for file in ["en.json", "zh-CN.json"] {
        if let Some(Value::Object(m)) = harness::system::try_get_json(&format!("{}/board/i18n/{file}", sut.api)).await {
            keys.extend(m.keys().cloned());
        }
    }
    assert!(!keys.is_empty(), "the hub serves the labels");
    let found = page
        .js(
            "const text = document.body.innerText; return arguments[0].filter((k) => text.includes(k));",
            vec![json!(
                [keys, urls.iter().map(|u| u.to_string()).collect::<Vec<_>>()].concat()
            )],
        )
        .await;
    assert_eq!(found, json!([]), "the incident view ({lang}) shows keys or URLs");
    let text = page.js("return document.body.innerText;", vec![]).await;
    assert!(
        !text.to_string().contains("secret-token-in-the-url"),
        "a webhook's token on the page ({lang})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_view_shows_each_notifications_delivery_state() {
    let _one = SERIAL.lock().await;
    let ok = Receiver::start("200 OK", usize::MAX).await;
    // The first attempt fails at once; the retry is held until the page showed it waiting.
    let failing = Receiver::start("500 Internal Server Error", 2).await;
    let sut = Sut::start_hub_only(&[EstateSpec::new("estate-a", "Riverside Gardens")], |t| {
        edit(t, &ok.url, &failing.url)
    })
    .await;
    // A fire: the monitoring room and the supervisor are notified at once.
    let opened = post_json(
        &format!("{}/api/v1/incidents", sut.api),
        json!({"estate": "estate-a", "area": "block-3", "category": "fire", "title": "Smoke in block 3"}),
    )
    .await;
    let id = opened["id"].as_i64().expect("the incident's id");

    // The API first: delivered on one side; not delivered, waiting for its retry, on the other.
    let delivered = common::eventually("the monitoring room's delivery", WAIT, || async {
        notification(&sut, id, MONITORING)
            .await
            .filter(|n| n["status"] == "delivered")
    })
    .await;
    assert_eq!(delivered["channel"], "webhook", "{delivered}");
    assert!(
        delivered["delivered_at"].is_string() && delivered["sent_at"].is_string(),
        "{delivered}"
    );
    let retrying = common::eventually("the supervisor's first failure", WAIT, || async {
        notification(&sut, id, SUPERVISOR)
            .await
            .filter(|n| n["status"] == "pending" && n["attempts"] == 1)
    })
    .await;
    assert_eq!(retrying["last_error"], "webhook answered HTTP 500", "{retrying}");
    assert!(retrying["next_attempt_at"].is_string(), "{retrying}");
    assert!(
        !retrying.to_string().contains("secret-token"),
        "the URL stays out of the API: {retrying}"
    );

    let driver = Driver::start();
    let page = open_board_as(
        &driver,
        &sut,
        "notifications",
        OPERATOR,
        "en",
        &format!("#/incidents/{id}"),
    )
    .await;
    page.wait_css("the notifications table", WAIT, &tid("notifications"))
        .await;
    let ok_row = wait_row(
        &page,
        "the monitoring room delivered",
        "monitoring_room",
        "delivered",
        "delivered ",
    )
    .await;
    assert!(ok_row.contains(MONITORING) && ok_row.contains("webhook"), "{ok_row}");
    let waiting = wait_row(
        &page,
        "the supervisor's retry waiting (en)",
        "supervisor",
        "pending",
        "not delivered: webhook answered HTTP 500; retry at",
    )
    .await;
    assert!(
        waiting.contains(SUPERVISOR) && waiting.contains("(supervisor)"),
        "{waiting}"
    );
    show_table(&page).await;
    page.shot("incident-retrying", "en").await;
    // The retry reached the receiver and waits there: nothing has failed for good yet.
    common::eventually("the retry at the receiver", WAIT, || async {
        (failing.count() >= 2).then_some(())
    })
    .await;
    failing.gate.add_permits(1);

    let failed = wait_row(
        &page,
        "the supervisor's notification failed (en)",
        "supervisor",
        "failed",
        "failed: webhook answered HTTP 500",
    )
    .await;
    let attempts = page
        .js(
            "return document.querySelector(arguments[0]).children[3].innerText;",
            vec![json!(row_of("supervisor"))],
        )
        .await;
    assert_eq!(attempts, json!("2"), "two attempts shown: {failed}");
    no_keys_or_urls(&page, &sut, &[&ok.url, &failing.url], "en").await;
    show_table(&page).await;
    page.shot("incident", "en").await;

    // The same view in Chinese, live as before.
    page.js("localStorage.setItem('gh.lang', 'zh-CN'); return true;", vec![])
        .await;
    page.client.refresh().await.expect("reload in zh-CN");
    wait_live(&page).await;
    wait_row(&page, "送达 (zh-CN)", "monitoring_room", "delivered", "已送达 ").await;
    wait_row(
        &page,
        "发送失败 (zh-CN)",
        "supervisor",
        "failed",
        "发送失败：webhook answered HTTP 500",
    )
    .await;
    let head = page
        .text(&format!("{} thead", tid("notifications")))
        .await
        .unwrap_or_default();
    assert!(head.contains("接收人") && head.contains("尝试次数"), "{head}");
    no_keys_or_urls(&page, &sut, &[&ok.url, &failing.url], "zh-CN").await;
    show_table(&page).await;
    page.shot("incident", "zh-CN").await;
    page.assert_console_clean("the incident's notifications").await;

    // `GET /notifications` filters by every status.
    let api = |q: String| format!("{}/api/v1/notifications?incident={id}&{q}", sut.api);
    let failed = get_json(&api("status=failed".into())).await;
    assert!(
        failed
            .as_array()
            .is_some_and(|l| l.len() == 1 && l[0]["recipient"] == SUPERVISOR),
        "{failed}"
    );
    let delivered = get_json(&api("status=delivered".into())).await;
    assert!(
        delivered
            .as_array()
            .is_some_and(|l| l.iter().any(|n| n["recipient"] == MONITORING)),
        "{delivered}"
    );
    for s in ["sent", "digested", "pending"] {
        let l = get_json(&api(format!("status={s}"))).await;
        assert!(
            l.as_array().is_some_and(|l| l.iter().all(|n| n["status"] == s)),
            "{s}: {l}"
        );
    }
    let bad = common::authed_get(api("status=bounced".into()))
        .await
        .expect("GET answers");
    assert_eq!(bad.status().as_u16(), 400, "an unknown status is refused");
    assert_eq!(ok.count(), 1, "the monitoring room's webhook was called once");
    assert_eq!(failing.count(), 2, "max_attempts = 2");

    names_by_role(&sut, id).await;
    later_states(&page, &sut, id).await;
    page.client.clone().close().await.ok();
    sut.stop().await;
}

/// A supervisor (the page above) sees recipients' names in clear; an operator sees initials
/// in the notifications of the incident's detail (README "Residents' privacy").
async fn names_by_role(sut: &Sut, incident: i64) {
    let op = gatehouse_sim::credentials::login("operator").expect("the demo's operator");
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{}/api/v1/login", sut.api))
        .json(&json!({"user": op.user, "password": op.password}))
        .send()
        .await
        .expect("login answers")
        .json()
        .await
        .expect("login JSON");
    let token = login["token"].as_str().expect("an operator's session");
    let d: Value = client
        .get(format!("{}/api/v1/incidents/{incident}", sut.api))
        .bearer_auth(token)
        .send()
        .await
        .expect("detail answers")
        .json()
        .await
        .expect("detail JSON");
    let notes = d["notifications"].as_array().expect("notifications");
    assert!(notes.len() >= 2, "{d}");
    for n in notes {
        assert!(
            n["recipient"].as_str().is_some_and(|r| !r.contains("Gardens")),
            "an operator sees initials: {n}"
        );
        assert!(!n["body"].to_string().contains(SUPERVISOR), "{n}");
    }
}

/// (role, channel, status, held, next attempt, answer, answer_via) of a written row.
type LaterRow = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    i64,
    Option<&'static str>,
    Option<&'static str>,
);

/// The states this branch's deliverer does not make yet (digests, quiet hours, answers by
/// link or SMS reply, robot / e-mail / SMS channels), written as their rows would be: the
/// page renders them from the API's fields. Written straight into the hub's database (WAL:
/// the hub keeps running); none is due, so the deliverer leaves them alone.
async fn later_states(page: &Page, sut: &Sut, incident: i64) {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(sut.db())
        .busy_timeout(Duration::from_secs(5));
    let mut conn = sqlx::ConnectOptions::connect(&options)
        .await
        .expect("open the hub's db");
    let now: i64 = sqlx::query_scalar("SELECT MAX(created_at_ms) FROM notifications")
        .fetch_one(&mut conn)
        .await
        .expect("a notification's time");
    let later = now + 10 * 60_000;
    let rows: [LaterRow; 5] = [
        (
            "duty_manager",
            "robot:ops-wecom",
            "pending",
            Some("digest"),
            later,
            None,
            None,
        ),
        (
            "patrol_post",
            "sms:+8613800000000",
            "pending",
            Some("quiet_hours"),
            later,
            None,
            None,
        ),
        (
            "facility_team",
            "mailto:facility@example.com",
            "digested",
            None,
            later,
            None,
            None,
        ),
        (
            "gate_post",
            "robot:gate-dingtalk",
            "delivered",
            None,
            now,
            Some("acknowledged"),
            Some("link"),
        ),
        (
            "gate_post",
            "sms:+8613900000000",
            "sent",
            None,
            now,
            Some("on_the_way"),
            Some("sms_reply"),
        ),
    ];
    // Enough older ones that the view counts the oldest instead of listing them.
    for i in 0..48 {
        sqlx::query(
            "INSERT INTO notifications (incident_id, kind, role, recipient, channel, body, status, attempts, \
             next_attempt_at_ms, created_at_ms, delivered_at_ms) \
             VALUES ($1, 'escalation', 'monitoring_room', $2, 'log', '{}', 'delivered', 1, $3, $3, $3)",
        )
        .bind(incident)
        .bind(format!("Earlier {i}"))
        .bind(now)
        .execute(&mut conn)
        .await
        .expect("a notification written");
    }
    let mut ids = Vec::new();
    for (role, channel, status, held, next, answer, via) in rows {
        let done = matches!(status, "sent" | "delivered").then_some(now);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO notifications (incident_id, kind, role, recipient, channel, body, status, attempts, \
             next_attempt_at_ms, created_at_ms, priority, urgent, language, held, digest_id, sent_at_ms, \
             delivered_at_ms, answer, answered_at_ms, answer_via) \
             VALUES ($1, 'escalation', $2, $3, $4, '{}', $5, $6, $7, $8, 'P1', FALSE, 'en', $9, $10, $11, $12, $13, $14, $15) \
             RETURNING id",
        )
        .bind(incident)
        .bind(role)
        .bind(format!("Later {role} {}", ids.len()))
        .bind(channel)
        .bind(status)
        .bind(i64::from(done.is_some()))
        .bind(next)
        .bind(now)
        .bind(held)
        .bind((status == "digested").then(|| ids.first().copied()).flatten())
        .bind(done)
        .bind((status == "delivered").then_some(now))
        .bind(answer)
        .bind(answer.map(|_| now))
        .bind(via)
        .fetch_one(&mut conn)
        .await
        .expect("a notification written");
        ids.push(id);
    }
    // HH:MM of `now` on the estate's clock (Asia/Shanghai: UTC+8, no daylight saving).
    let local_min = (now / 1000 + 8 * 3600) / 60;
    let at = format!("{:02}:{:02}", (local_min / 60) % 24, local_min % 60);
    for lang in ["en", "zh-CN"] {
        page.js(
            "localStorage.setItem('gh.lang', arguments[0]); return true;",
            vec![json!(lang)],
        )
        .await;
        page.client.refresh().await.expect("reload");
        wait_live(page).await;
        let expect: [(&str, &str); 5] = if lang == "en" {
            [
                ("ops-wecom", "held for digest until "),
                ("SMS", "held for quiet hours until "),
                ("e-mail", &format!("in digest #{}", ids[0])),
                ("gate-dingtalk", &format!("acknowledged by link {at}")),
                ("SMS", &format!("on the way (SMS reply) {at}")),
            ]
        } else {
            [
                ("ops-wecom", "合并摘要，"),
                ("短信", "免打扰时段，"),
                ("电子邮件", &format!("已并入摘要 #{}", ids[0])),
                ("gate-dingtalk", &format!("已确认（链接）{at}")),
                ("短信", &format!("正在赶往（短信回复）{at}")),
            ]
        };
        for (id, (channel, text)) in ids.iter().zip(expect) {
            let css = format!("{}[data-notification-id=\"{id}\"]", tid("notification-row"));
            let row = page
                .wait_js(
                    &format!("notification {id} ({lang})"),
                    WAIT,
                    "const r = document.querySelector(arguments[0]); return r && r.innerText;",
                    vec![json!(css)],
                )
                .await;
            let row = row.as_str().unwrap_or_default();
            assert!(
                row.contains(channel) && row.contains(text),
                "{lang}: {row:?} lacks {channel:?} / {text:?}"
            );
        }
        show_table(page).await;
        page.shot("incident-later-states", lang).await;
    }
    // 2 + 48 + 5 rows: the newest 50 listed, the 5 oldest counted, then shown on request.
    let more = page.text(&tid("notifications-more")).await.unwrap_or_default();
    assert!(more.contains("另有 5 条"), "{more:?}");
    page.click("show all", &format!("{} button", tid("notifications-more")))
        .await;
    page.wait_js(
        "all 55 notifications listed",
        WAIT,
        "return document.querySelectorAll(arguments[0]).length === 55 && !document.querySelector(arguments[1]);",
        vec![json!(tid("notification-row")), json!(tid("notifications-more"))],
    )
    .await;
    page.assert_console_clean("the later states").await;
}
