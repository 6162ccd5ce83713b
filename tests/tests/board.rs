//! The board in a real headless Chromium (chromedriver + fantoccini) against a real hub, real
//! gateways and simulated devices over MQTT and Modbus: it loads in both languages, shows
//! device events live, and the operator's clicks (acknowledge, checklist and transitions,
//! device commands) reach the hub's API; a cut stream catches up with no gap; the P1 cue
//! repeats until acknowledged. One browser at a time (`SERIAL`). Screenshots of every view go
//! to `$GATEHOUSE_ARTIFACTS`, else `target/board-artifacts/`, named `<test>-<view>-<lang>.png`.
//! The load figures (200 estates, 1,000 alarms) are `board_figures_*`.

// `board/` holds the harness; a `board` module would clash with this file's own name.
mod common;
#[path = "board/mod.rs"]
mod harness;

use std::{collections::BTreeSet, time::Duration};

use gatehouse_sim::scenario::{EstateSpec, demo_estates};
use harness::{
    browser::{Driver, Page, tid},
    figures,
    system::{SERIAL, Sut, get_json, open_board_as, open_page, wait_live},
};
use serde_json::{Value, json};

/// The user the page signs in as: what the API records.
const OPERATOR: &str = "browser-test";
const WAIT: Duration = Duration::from_secs(20);

/// Riverside Gardens without its gate-post rota: an empty post would raise its own alarm
/// after the grace period and join the door's incident halfway through a test.
fn plain_estate() -> EstateSpec {
    EstateSpec::new("estate-a", "Riverside Gardens")
}

/// Opens the board as `OPERATOR` in `lang` at `hash`, its stream live.
async fn board(driver: &Driver, sut: &Sut, test: &'static str, lang: &str, hash: &str) -> Page {
    open_board_as(driver, sut, test, OPERATOR, lang, hash).await
}

async fn not_reloaded(page: &Page) {
    let v = page.js("return window.__browserTest === 1;", vec![]).await;
    assert_eq!(
        v,
        json!(true),
        "the page reloaded; the board must apply changes in place"
    );
}

fn row(alarm: i64) -> String {
    format!("{}[data-alarm-id=\"{alarm}\"]", tid("alarm-row"))
}

async fn alarm_by_id(sut: &Sut, id: i64) -> Value {
    let list = get_json(&format!("{}/api/v1/alarms?ids={id}", sut.api)).await;
    list.as_array()
        .and_then(|l| l.iter().find(|a| a["id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("alarm {id} not listed"))
}

/// The i18n keys the hub serves (`/board/i18n/*.json`): any of them shown verbatim is a
/// label missing in the page's language.
async fn i18n_keys(sut: &Sut) -> Vec<String> {
    let mut keys = BTreeSet::new();
    for file in ["en.json", "zh-CN.json"] {
        let url = format!("{}/board/i18n/{file}", sut.api);
        if let Some(Value::Object(m)) = harness::system::try_get_json(&url).await {
            keys.extend(m.keys().cloned());
        }
    }
    assert!(!keys.is_empty(), "the hub serves no /board/i18n/en.json");
    keys.into_iter().collect()
}

/// Each view of the board: its hash, what shows it rendered, and its artifact name.
fn views(incident: i64) -> Vec<(String, String, &'static str)> {
    vec![
        ("#/overview".into(), tid("estate-tile"), "overview"),
        ("#/alarms".into(), tid("alarm-row"), "alarms"),
        ("#/incidents".into(), tid("incident-row"), "incidents"),
        (format!("#/incidents/{incident}"), tid("incident-state"), "incident"),
        ("#/coverage".into(), tid("coverage-cell"), "coverage"),
        ("#/devices".into(), tid("device-row"), "devices"),
        // The pump room: Modbus readings, so its trend chart has lines.
        (
            "#/devices/estate-a/pump-room-1".into(),
            format!("{} canvas", tid("trend-chart")),
            "device",
        ),
        ("#/kpi".into(), tid("kpi-chart"), "kpi"),
        ("#/estates/estate-a".into(), tid("alarm-row"), "estate"),
    ]
}

/// Visits every view in the page's current language: each renders, shows no raw i18n key,
/// and is written as a screenshot.
async fn tour(page: &Page, incident: i64, lang: &str, keys: &[String]) {
    for (hash, ready, name) in views(incident) {
        page.route(&hash).await;
        page.wait_css(&format!("the {name} view ({lang})"), WAIT, &ready).await;
        let raw = page
            .js(
                "const text = document.body.innerText; \
                 return arguments[0].filter((k) => text.includes(k));",
                vec![json!(keys)],
            )
            .await;
        page.shot(name, lang).await;
        assert_eq!(raw, json!([]), "{name} ({lang}) shows i18n keys instead of labels");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_loads_in_both_languages_and_every_view_renders() {
    let _one = SERIAL.lock().await;
    let specs = demo_estates();
    let sut = Sut::start(&specs[..2]).await;
    let (a, b) = (sut.estate("estate-a"), sut.estate("estate-b"));
    a.door.forced("main-gate-east").await.expect("forced door");
    // The duty pump trips: its readings change, so the pump room's trend has lines to draw.
    a.pump_room.trip_pump(1);
    b.fire_panel
        .fire_alarm(3, "Block 3 12F corridor smoke detector")
        .await
        .expect("fire");
    let door = sut
        .alarm("the forced door", |a| a["condition"] == "door_forced:main-gate-east")
        .await;
    sut.alarm("the fire alarm", |a| a["priority"] == "P1").await;
    let incident = common::eventually("the door's incident", WAIT, || async {
        alarm_by_id(&sut, door["id"].as_i64()?).await["incident_id"].as_i64()
    })
    .await;
    let keys = i18n_keys(&sut).await;
    let driver = Driver::start();
    let page = board(&driver, &sut, "loads", "zh-CN", "#/overview").await;

    // Chinese first (the default for a fresh browser).
    let live = page.text(&tid("live-status")).await.unwrap_or_default();
    assert!(live.contains("实时"), "live status in zh-CN: {live:?}");
    let chinese = page
        .js("return /[\\u4e00-\\u9fff]/.test(document.body.innerText);", vec![])
        .await;
    assert_eq!(chinese, json!(true), "the labels are Chinese");
    let worst = page
        .wait_css(
            "estate-b's tile showing its P1",
            WAIT,
            &format!("{}[data-estate=\"estate-b\"][data-worst=\"P1\"]", tid("estate-tile")),
        )
        .await;
    assert!(worst.is_displayed().await.unwrap_or(false));
    tour(&page, incident, "zh-CN", &keys).await;

    page.click("the language toggle", &tid("lang-toggle")).await;
    page.wait_js(
        "the header in English",
        WAIT,
        "const l = document.querySelector('[data-testid=\"live-status\"]'); \
         const n = document.querySelector('[data-testid=\"nav-alarms\"]'); \
         return l && /live/i.test(l.textContent) && n && !/[\\u4e00-\\u9fff]/.test(n.textContent);",
        vec![],
    )
    .await;
    tour(&page, incident, "en", &keys).await;
    page.assert_console_clean("while touring the views").await;
    page.client.clone().close().await.ok();
    sut.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_event_appears_live_and_is_acknowledged_from_the_page() {
    let _one = SERIAL.lock().await;
    let sut = Sut::start(&[plain_estate()]).await;
    let driver = Driver::start();
    let page = board(&driver, &sut, "live", "zh-CN", "#/alarms").await;

    let published = tokio::time::Instant::now();
    sut.estate("estate-a")
        .door
        .forced("main-gate-east")
        .await
        .expect("forced door");
    let alarm = sut
        .alarm("the forced door", |a| a["condition"] == "door_forced:main-gate-east")
        .await;
    let id = alarm["id"].as_i64().expect("alarm id");
    page.wait_css("the new alarm's row", WAIT, &row(id)).await;
    println!("forced door → its row on the board: {:?}", published.elapsed());
    not_reloaded(&page).await;
    assert_eq!(page.attr(&row(id), "data-priority").await.as_deref(), Some("P2"));
    assert_eq!(page.attr(&row(id), "data-state").await.as_deref(), Some("unack_active"));
    page.shot("alarm-raised", "zh-CN").await;

    page.click(
        "the row's acknowledge button",
        &format!("{} {}", row(id), tid("alarm-ack")),
    )
    .await;
    let acked = common::eventually("the acknowledgement in the API", WAIT, || async {
        let a = alarm_by_id(&sut, id).await;
        (a["acknowledged"] == true).then_some(a)
    })
    .await;
    assert_eq!(
        acked["acked_by"], OPERATOR,
        "the API records who acknowledged in the page"
    );
    // A forced door is latched: the acknowledgement clears it and it leaves the board.
    page.wait_js(
        "the acknowledged alarm leaving the unacknowledged state on the page",
        WAIT,
        "const r = document.querySelector(arguments[0]); \
         return !r || !r.dataset.state.startsWith('unack');",
        vec![json!(row(id))],
    )
    .await;
    not_reloaded(&page).await;
    page.shot("alarm-acknowledged", "zh-CN").await;
    page.assert_console_clean("on the alarm board").await;
    page.client.clone().close().await.ok();
    sut.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_p1_cue_repeats_until_the_alarm_is_acknowledged_in_the_page() {
    let _one = SERIAL.lock().await;
    let sut = Sut::start(&[EstateSpec::new("estate-b", "Lakeview Court")]).await;
    let driver = Driver::start();
    let page = board(&driver, &sut, "sound", "zh-CN", "#/alarms").await;
    let plays = r#"return (window.__gh && window.__gh.soundKinds && window.__gh.soundKinds.fire) || 0;"#;
    assert_eq!(page.js(plays, vec![]).await, json!(0), "no cue before any P1");

    sut.estate("estate-b")
        .fire_panel
        .fire_alarm(3, "Block 3 12F corridor smoke detector")
        .await
        .expect("fire");
    let fire = sut.alarm("the fire alarm", |a| a["priority"] == "P1").await;
    let id = fire["id"].as_i64().expect("alarm id");
    page.wait_css("the fire alarm's row", WAIT, &row(id)).await;
    // The cue sounds, then sounds again while nobody acknowledges.
    let first = page
        .wait_js(
            "the fire cue",
            WAIT,
            &format!("const n = (() => {{ {plays} }})(); return n >= 1 ? n : null;"),
            vec![],
        )
        .await;
    let t1 = tokio::time::Instant::now();
    let again = page
        .wait_js(
            "the fire cue repeating",
            WAIT,
            &format!("const n = (() => {{ {plays} }})(); return n > arguments[0] ? n : null;"),
            vec![first.clone()],
        )
        .await;
    let period = t1.elapsed();
    println!("P1 fire cue: plays {first} → {again}, repeat ≈ {period:?}");

    page.click(
        "the fire alarm's acknowledge button",
        &format!("{} {}", row(id), tid("alarm-ack")),
    )
    .await;
    common::eventually("the acknowledgement in the API", WAIT, || async {
        (alarm_by_id(&sut, id).await["acknowledged"] == true).then_some(())
    })
    .await;
    page.wait_js(
        "the row acknowledged",
        WAIT,
        "const r = document.querySelector(arguments[0]); return !!r && r.dataset.state === 'ack_active';",
        vec![json!(row(id))],
    )
    .await;
    let after_ack = page.js(plays, vec![]).await;
    // Silence is shown by waiting out two repeat periods (the cue's period measured above).
    tokio::time::sleep(period * 2 + Duration::from_millis(500)).await;
    let later = page.js(plays, vec![]).await;
    assert_eq!(later, after_ack, "the cue stops once the P1 is acknowledged");
    page.assert_console_clean("while sounding").await;
    page.client.clone().close().await.ok();
    sut.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_checklist_is_completed_and_the_incident_closed_from_the_page() {
    let _one = SERIAL.lock().await;
    let sut = Sut::start(&[plain_estate()]).await;
    sut.estate("estate-a")
        .door
        .forced("main-gate-east")
        .await
        .expect("forced door");
    let alarm = sut
        .alarm("the forced door", |a| a["condition"] == "door_forced:main-gate-east")
        .await;
    let alarm_id = alarm["id"].as_i64().expect("alarm id");
    let id = common::eventually("the door's incident", WAIT, || async {
        alarm_by_id(&sut, alarm_id).await["incident_id"].as_i64()
    })
    .await;
    let driver = Driver::start();
    let page = board(&driver, &sut, "incident", "zh-CN", "#/alarms").await;
    // The door's alarm is acknowledged first (latched: that clears it), so nothing keeps
    // the incident from closing.
    page.click(
        "the door alarm's acknowledge button",
        &format!("{} {}", row(alarm_id), tid("alarm-ack")),
    )
    .await;
    common::eventually("the door alarm acknowledged", WAIT, || async {
        (alarm_by_id(&sut, alarm_id).await["acknowledged"] == true).then_some(())
    })
    .await;

    page.click("the incidents link", &tid("nav-incidents")).await;
    page.click(
        "the incident's row",
        &format!("{}[data-incident-id=\"{id}\"]", tid("incident-row")),
    )
    .await;
    page.wait_css("the incident view", WAIT, &tid("incident-state")).await;
    page.wait_css("its checklist", WAIT, &tid("step")).await;
    page.shot("incident-open", "zh-CN").await;

    // Every step of the checklist, done from the page.
    let steps = page
        .js(
            "return [...document.querySelectorAll('[data-testid=\"step\"]')].map((s) => s.dataset.stepId);",
            vec![],
        )
        .await;
    let steps: Vec<String> = serde_json::from_value(steps).expect("step ids");
    assert!(!steps.is_empty(), "the incident has a checklist");
    for step in &steps {
        let css = format!("{}[data-step-id=\"{step}\"]", tid("step"));
        page.click(
            &format!("step {step}'s done button"),
            &format!("{css} {}", tid("step-done")),
        )
        .await;
        page.answer_dialog(WAIT, &[("note", "checked on CCTV")], "checked")
            .await;
        page.wait_css(
            &format!("step {step} done"),
            WAIT,
            &format!("{css}[data-done=\"true\"]"),
        )
        .await;
    }
    // Then the workflow, one legal transition at a time, to closed.
    let path = ["assessed", "reported", "on_site", "recorded", "closed"];
    for _ in 0..path.len() + 1 {
        let state = page.text(&tid("incident-state")).await.unwrap_or_default();
        if get_json(&format!("{}/api/v1/incidents/{id}", sut.api)).await["state"] == "closed" {
            break;
        }
        let mut clicked = None;
        for to in path {
            let css = tid(&format!("transition-{to}"));
            if page.count(&css).await > 0 {
                page.click(&format!("transition to {to}"), &css).await;
                page.answer_dialog(WAIT, &[], "handled by the gate-house operator")
                    .await;
                clicked = Some(to);
                break;
            }
        }
        let to = clicked.unwrap_or_else(|| panic!("no legal transition offered from {state:?}"));
        common::eventually(&format!("the incident {to} in the API"), WAIT, || async {
            let d = get_json(&format!("{}/api/v1/incidents/{id}", sut.api)).await;
            (d["state"] == to).then_some(())
        })
        .await;
        page.wait_js(
            &format!("the page showing {to}"),
            WAIT,
            "const s = document.querySelector('[data-testid=\"incident-state\"]'); return !!s && s.textContent !== arguments[0];",
            vec![json!(state)],
        )
        .await;
    }
    let detail = get_json(&format!("{}/api/v1/incidents/{id}", sut.api)).await;
    assert_eq!(detail["state"], "closed", "{detail}");
    assert!(
        detail["override_by"].is_null(),
        "closed without a supervisor's override: {detail}"
    );
    let procedure = detail["procedure"].as_array().expect("procedure");
    assert!(
        procedure.iter().all(|s| s["status"] == "done"),
        "every step done from the page: {procedure:?}"
    );
    assert!(
        detail["timeline"]
            .as_array()
            .is_some_and(|t| t.iter().any(|e| e.to_string().contains(OPERATOR))),
        "the timeline names the page's operator"
    );
    page.wait_css("the closed incident's timeline", WAIT, &tid("timeline-entry"))
        .await;
    not_reloaded(&page).await;
    page.shot("incident-closed", "zh-CN").await;
    page.assert_console_clean("while working the incident").await;
    page.client.clone().close().await.ok();
    sut.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_from_the_page_reaches_the_device_and_its_result_shows() {
    let _one = SERIAL.lock().await;
    let sut = Sut::start(&[plain_estate()]).await;
    let driver = Driver::start();
    let page = board(&driver, &sut, "command", "en", "#/devices/estate-a/door-main-gate").await;
    page.click("the device's command button", &tid("device-command")).await;
    page.answer_dialog(WAIT, &[("choice", "~unlock")], "gate-house test")
        .await;
    // A second confirmation, where the page asks for one.
    let sent = tokio::time::Instant::now();
    let result = format!("{}[data-state=\"ok\"]", tid("command-result"));
    loop {
        if page.count(&result).await > 0 {
            break;
        }
        if page.dialog_open().await {
            page.answer_dialog(WAIT, &[], "gate-house test").await;
        }
        assert!(sent.elapsed() < WAIT, "no command-result reached ok within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let command_id = page
        .attr(&result, "data-command-id")
        .await
        .expect("the result names its command");
    println!("unlock from the page → ok on the page: {:?}", sent.elapsed());
    let command = get_json(&format!("{}/api/v1/commands/{command_id}", sut.api)).await;
    assert_eq!(command["state"], "ok", "{command}");
    assert_eq!(command["device"], "door-main-gate", "{command}");
    assert_eq!(command["action"], "unlock", "{command}");
    assert_eq!(command["operator"], OPERATOR, "{command}");
    // The simulated door controller's own answer: it received the command and did it.
    assert_eq!(command["detail"], "unlock done", "{command}");
    not_reloaded(&page).await;
    page.shot("command-ok", "en").await;
    page.assert_console_clean("while commanding").await;
    page.client.clone().close().await.ok();
    sut.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_stream_is_cut_the_board_catches_up_with_no_gap() {
    let _one = SERIAL.lock().await;
    let sut = Sut::start(&[plain_estate()]).await;
    let door = &sut.estate("estate-a").door;
    door.forced("before-the-cut").await.expect("forced door");
    let before = sut
        .alarm("the first alarm", |a| a["condition"] == "door_forced:before-the-cut")
        .await;
    let driver = Driver::start();
    let page = board(&driver, &sut, "catchup", "zh-CN", "#/alarms").await;
    page.wait_css("the first alarm's row", WAIT, &row(before["id"].as_i64().expect("id")))
        .await;
    let reloads = page
        .js("return window.__gh ? window.__gh.reloads : null;", vec![])
        .await;

    sut.proxy.cut();
    page.wait_css(
        "the page noticing the cut",
        WAIT,
        &format!("{}[data-state=\"reconnecting\"]", tid("live-status")),
    )
    .await;
    page.shot("reconnecting", "zh-CN").await;
    let doors = ["cut-1", "cut-2", "cut-3", "cut-4", "cut-5"];
    let mut missed = Vec::new();
    for d in doors {
        door.forced(d).await.expect("forced door during the cut");
        let a = sut
            .alarm("an alarm raised during the cut", |a| {
                a["condition"] == format!("door_forced:{d}").as_str()
            })
            .await;
        missed.push(a["id"].as_i64().expect("id"));
    }
    sut.proxy.restore();
    wait_live(&page).await;
    for id in &missed {
        page.wait_css("an alarm raised during the cut", WAIT, &row(*id)).await;
    }
    // No gap and nothing extra: the rows are exactly the hub's standing alarms.
    let standing = get_json(&format!("{}/api/v1/alarms?state=standing&limit=5000", sut.api)).await;
    let want: BTreeSet<i64> = standing
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["id"].as_i64())
        .collect();
    let shown = page
        .js(
            "return [...document.querySelectorAll('[data-testid=\"alarm-row\"]')].map((r) => Number(r.dataset.alarmId));",
            vec![],
        )
        .await;
    let shown: BTreeSet<i64> = serde_json::from_value(shown).expect("row ids");
    assert_eq!(shown, want, "after the cut the board shows exactly the standing alarms");
    not_reloaded(&page).await;
    let requests = sut.proxy.stream_requests();
    let resumed = requests.last().cloned().unwrap_or_default();
    let reloads_after = page
        .js("return window.__gh ? window.__gh.reloads : null;", vec![])
        .await;
    println!(
        "stream requests: {}; the page's reloads of every list {reloads} → {reloads_after}",
        requests.len(),
    );
    // The shell's counter (`window.__gh.reloads`, where it keeps one): the hub replayed what
    // was missed, so the page had no reason to re-read its lists.
    assert_eq!(
        reloads_after, reloads,
        "caught up by replay, not by reloading every list"
    );
    assert!(requests.len() >= 2, "the page reconnected its stream: {requests:?}");
    let lower = resumed.to_ascii_lowercase();
    assert!(
        lower.contains("last-event-id:") || lower.contains("after="),
        "the page resumed its stream from the last event it saw: {resumed}"
    );
    page.shot("caught-up", "zh-CN").await;
    // The failed requests of the cut are the only console errors allowed.
    let errors: Vec<String> = page
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !e.contains("net::ERR_") && !e.contains("Failed to load resource"))
        .collect();
    assert!(errors.is_empty(), "console errors around the cut: {errors:#?}");
    page.client.clone().close().await.ok();
    sut.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_figures_with_200_estates_and_1000_standing_alarms() {
    let _one = SERIAL.lock().await;
    figures::run().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_the_right_one_opens_the_board_and_sign_out_ends_the_session() {
    let _one = SERIAL.lock().await;
    let sut = Sut::start(&[plain_estate()]).await;
    let driver = Driver::start();
    let op = gatehouse_sim::credentials::login("operator").expect("the demo operator");
    let page = open_page(&driver, &sut, "signin", "#/overview").await;

    let field = |id: &'static str| {
        let page = &page;
        async move { page.wait_css(id, WAIT, &tid(id)).await }
    };
    field("signin-user")
        .await
        .send_keys(op.user)
        .await
        .expect("type the user");
    field("signin-password")
        .await
        .send_keys("not-the-password")
        .await
        .expect("type");
    page.click("sign in", &tid("signin-submit")).await;
    page.wait_css(
        "the sign-in error",
        WAIT,
        &format!("{}:not([hidden])", tid("signin-error")),
    )
    .await;
    assert_eq!(page.count(&tid("live-status")).await, 0, "no board before sign-in");

    field("signin-password")
        .await
        .send_keys(&op.password)
        .await
        .expect("type");
    page.click("sign in", &tid("signin-submit")).await;
    wait_live(&page).await;
    let who = page.text(&tid("operator-name")).await.unwrap_or_default();
    assert!(who.contains(op.user), "the header names the user: {who:?}");
    let session = page
        .client
        .get_named_cookie("gatehouse_session")
        .await
        .expect("the session cookie")
        .value()
        .to_owned();

    page.click("sign out", &tid("sign-out")).await;
    page.wait_css("the sign-in form again", WAIT, &tid("signin-form")).await;
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/me", sut.api))
        .header("cookie", format!("gatehouse_session={session}"))
        .send()
        .await
        .expect("GET /me answers");
    assert_eq!(r.status().as_u16(), 401, "the old session is refused");
    sut.stop().await;
}
