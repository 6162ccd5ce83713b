//! How the board copes with a region: a hub with 200 estates and 1,000 standing alarms
//! (raised through 200 real gRPC gateway streams), the alarm board and the overview open in
//! Chromium, then 200 changes (100 new alarms, 100 acknowledgements) streamed in while the
//! page records its frames. Prints the figures; asserts only that every alarm is there.

use std::{collections::BTreeSet, time::Duration};

use gatehouse_proto::DeviceKind;
use gatehouse_sim::scenario::{EstateSpec, start_hub};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{
    browser::{Driver, Page, tid},
    gateways::{self, BARRIER, DOORS, PANEL, SynthGateway},
    proxy::CutProxy,
    system::{BOARD_PASSWORD, ensure_user, get_json, post_json, sign_in, wait_live},
};
use crate::common::eventually;

const ESTATES: usize = 200;
const PER_ESTATE: usize = 5;
const CHANGES: usize = 200;

fn estate_id(i: usize) -> String {
    format!("estate-{i:03}")
}

/// The five alarms each estate raises: two forced doors and a held-open door (P2), an
/// unregistered vehicle (P4), and a fire alarm (P1) at every tenth estate, a third forced
/// door elsewhere.
fn initial_events(i: usize) -> Vec<(&'static str, DeviceKind, gatehouse_proto::event::Body)> {
    let mut v = vec![
        (DOORS[0], DeviceKind::Door, gateways::forced("east")),
        (DOORS[1], DeviceKind::Door, gateways::forced("west")),
        (DOORS[0], DeviceKind::Door, gateways::held_open("lobby")),
        (BARRIER, DeviceKind::Door, gateways::unregistered_vehicle("L1")),
    ];
    v.push(if i.is_multiple_of(10) {
        (PANEL, DeviceKind::FirePanel, gateways::fire("7"))
    } else {
        (DOORS[1], DeviceKind::Door, gateways::forced("service"))
    });
    v
}

pub async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let specs: Vec<EstateSpec> = (0..ESTATES)
        .map(|i| EstateSpec::new(&estate_id(i), &format!("Estate {i:03}")))
        .collect();
    let hub = start_hub("127.0.0.1:0".parse().expect("addr"), dir.path(), &specs)
        .await
        .expect("hub starts");
    let api = format!("http://{}", hub.http_addr());
    let started = tokio::time::Instant::now();
    let mut set = JoinSet::new();
    for i in 0..ESTATES {
        let grpc = hub.grpc_addr();
        set.spawn(async move {
            let mut gw = SynthGateway::connect(grpc, &estate_id(i)).await?;
            gw.send(initial_events(i)).await?;
            anyhow::Ok((i, gw))
        });
    }
    let mut gws: Vec<Option<SynthGateway>> = (0..ESTATES).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, gw) = r.expect("gateway task").expect("a synthetic gateway's first batch");
        gws[i] = Some(gw);
    }
    let mut gws: Vec<SynthGateway> = gws.into_iter().map(|g| g.expect("every gateway")).collect();
    let total = ESTATES * PER_ESTATE;
    let standing = |api: String| async move {
        get_json(&format!("{api}/api/v1/alarms?state=standing&limit=5000"))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    eventually("1,000 standing alarms", Duration::from_secs(60), || async {
        (standing(api.clone()).await.len() == total).then_some(())
    })
    .await;
    let loaded = started.elapsed();
    let proxy = CutProxy::start(hub.http_addr()).await;
    let driver = Driver::start();
    let page = Page {
        client: driver.session().await,
        base: proxy.base(),
        test: "figures",
    };

    // Signed in first (the sign-in page, then a login from it sets the session cookie).
    // (At another URL than the one below, so that one is a full load, not a hash change.)
    ensure_user(&api, "board-figures").await;
    page.goto("?signin").await;
    assert_eq!(sign_in(&page, "board-figures", BOARD_PASSWORD).await, 200);
    // The sign-in page's refused GET /me is expected; the load checks start after it.
    let _ = page.console_errors().await;

    // Cold load: navigation start → every standing alarm on the alarm board.
    page.goto("#/alarms").await;
    let cold = page
        .client
        .execute_async(WAIT_ROWS, vec![json!(total), json!(false)])
        .await
        .expect("the alarm board renders");
    wait_live(&page).await;
    page.shot("alarms-1000", "zh-CN").await;
    let rows_in_dom = page.count(&tid("alarm-row")).await;
    let after_cold = accounted(&page).await;
    assert_eq!(
        after_cold, total,
        "every standing alarm is a row or counted as not shown"
    );

    // Overview → alarm board, with the store already loaded.
    page.route("#/overview").await;
    page.wait_css("the overview", Duration::from_secs(20), &tid("estate-tile"))
        .await;
    let switch_alarms = page
        .client
        .execute_async(WAIT_ROWS, vec![json!(total), json!("#/alarms")])
        .await
        .expect("back to the alarm board");
    let alarms_stream = stream_changes(&page, &api, &mut gws, 0).await;
    let shown = accounted(&page).await;
    let want = standing(api.clone()).await.len();
    assert_eq!(shown, want, "after the stream every standing alarm is a row or counted");
    assert_eq!(want, total, "100 raised, 100 acknowledged and cleared");
    let heap_alarms = page.js(HEAP, vec![]).await;
    page.shot("alarms-after-stream", "zh-CN").await;

    page.route("#/alarms").await;
    let switch_overview = page
        .client
        .execute_async(WAIT_TILES, vec![json!(ESTATES), json!("#/overview")])
        .await
        .expect("the overview renders");
    let overview_stream = stream_changes(&page, &api, &mut gws, 100).await;
    let heap_overview = page.js(HEAP, vec![]).await;
    page.shot("overview-200", "zh-CN").await;
    let tiles = page.count(&tid("estate-tile")).await;
    assert_eq!(tiles, ESTATES, "one tile per estate");

    println!(
        "\n── board figures: {ESTATES} estates, {total} standing alarms, headless Chromium 1600×1000 ──\n\
         hub loaded through {ESTATES} gRPC gateway streams in {loaded:.1?}\n\
         alarm board  cold load (navigation start → {total} rows accounted)  {:>7.0} ms \
         ({rows_in_dom} rows in the DOM, {} counted as not shown)\n\
         alarm board  overview → alarm board, store loaded                 {:>7.0} ms\n\
         alarm board  {}\n\
         alarm board  JS heap after                                        {}\n\
         overview     alarm board → {ESTATES} tiles                            {:>7.0} ms\n\
         overview     {}\n\
         overview     JS heap after                                        {}\n\
         ──",
        cold.as_f64().unwrap_or(f64::NAN),
        after_cold - rows_in_dom,
        switch_alarms.as_f64().unwrap_or(f64::NAN),
        alarms_stream,
        mb(&heap_alarms),
        switch_overview.as_f64().unwrap_or(f64::NAN),
        overview_stream,
        mb(&heap_overview),
    );
    // Without a rota the hub answers `/coverage` with 404 (its contract), which Chromium
    // logs as a failed load; nothing else may be logged.
    let errors: Vec<String> = page
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !(e.contains("/api/v1/coverage") && e.contains("404")))
        .collect();
    assert!(errors.is_empty(), "console errors under load: {errors:#?}");
    page.client.clone().close().await.ok();
    drop(gws);
    hub.shutdown().await;
}

/// Streams 200 changes — 100 new forced doors (gateways `first..first+100`) and 100
/// acknowledgements of forced doors of the other half — at about 50 a second, while the page
/// records its frames; returns the figures as one line.
async fn stream_changes(page: &Page, api: &str, gws: &mut [SynthGateway], first: usize) -> String {
    let half = CHANGES / 2;
    let other = (first + half) % ESTATES;
    let all = get_json(&format!("{api}/api/v1/alarms?state=standing&limit=5000")).await;
    let to_ack: Vec<i64> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            let e = a["estate"].as_str().unwrap_or_default();
            a["condition"] == "door_forced:east" && (other..other + half).any(|i| estate_id(i) == e)
        })
        .filter_map(|a| a["id"].as_i64())
        .collect();
    assert_eq!(to_ack.len(), half, "one forced east door per estate to acknowledge");
    page.js(START_FRAMES, vec![]).await;
    let began = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for k in 0..half {
        tick.tick().await;
        let gw = &mut gws[first + k];
        let door = format!("stream-{first}-{k}");
        gw.send(vec![(DOORS[0], DeviceKind::Door, gateways::forced(&door))])
            .await
            .expect("a streamed alarm");
        tick.tick().await;
        post_json(
            &format!("{api}/api/v1/alarms/{}/ack", to_ack[k]),
            json!({"operator": "load"}),
        )
        .await;
    }
    let sent_in = began.elapsed();
    // Applied when the page's store holds exactly the hub's standing alarms again.
    let want = get_json(&format!("{api}/api/v1/alarms?state=standing&limit=5000")).await;
    let want: BTreeSet<i64> = want
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["id"].as_i64())
        .collect();
    page.wait_js(
        "the page's store matching the hub after the stream",
        Duration::from_secs(30),
        STORE_MATCHES,
        vec![json!(want)],
    )
    .await;
    let applied_in = began.elapsed();
    let f = page.js(STOP_FRAMES, vec![]).await;
    format!(
        "{CHANGES} changes sent in {sent_in:.1?}, all applied after {applied_in:.1?}; frames {} \
         p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms, {} over 50 ms",
        f["n"],
        f["p50"].as_f64().unwrap_or(f64::NAN),
        f["p95"].as_f64().unwrap_or(f64::NAN),
        f["max"].as_f64().unwrap_or(f64::NAN),
        f["over50"],
    )
}

/// Rows on the alarm board plus its "not shown" count.
async fn accounted(page: &Page) -> usize {
    let v = page.js(ACCOUNTED, vec![]).await;
    v.as_u64().unwrap_or(0) as usize
}

fn mb(heap: &Value) -> String {
    match heap.as_f64() {
        Some(b) => format!("{:.1} MB", b / 1_048_576.0),
        None => "n/a (performance.memory absent)".into(),
    }
}

const ACCOUNTED: &str = r#"
const rows = document.querySelectorAll('[data-testid="alarm-row"]').length;
const h = document.querySelector('[data-testid="alarm-hidden-count"]');
let hidden = 0;
if (h) hidden = Number(h.dataset.count ?? (h.textContent.match(/\d+/) || ['0'])[0]) || 0;
return rows + hidden;
"#;

/// execute_async(total, hashOrFalse, done): switches to the hash (when given) and answers
/// the ms until rows + "not shown" reach `total` (from navigation start when no hash).
const WAIT_ROWS: &str = r#"
const [total, hash, done] = arguments;
const t0 = hash ? performance.now() : 0;
if (hash) location.hash = hash;
const count = () => {
  const rows = document.querySelectorAll('[data-testid="alarm-row"]').length;
  const h = document.querySelector('[data-testid="alarm-hidden-count"]');
  const hidden = h ? Number(h.dataset.count ?? (h.textContent.match(/\d+/) || ['0'])[0]) || 0 : 0;
  return rows + hidden;
};
const check = () => count() >= total ? done(performance.now() - t0) : requestAnimationFrame(check);
check();
"#;

const WAIT_TILES: &str = r#"
const [total, hash, done] = arguments;
const t0 = performance.now();
location.hash = hash;
const check = () => document.querySelectorAll('[data-testid="estate-tile"]').length >= total
  ? done(performance.now() - t0) : requestAnimationFrame(check);
check();
"#;

const START_FRAMES: &str = r#"
window.__frames = []; window.__recording = true;
let last = null;
const f = (t) => { if (last !== null) window.__frames.push(t - last); last = t; if (window.__recording) requestAnimationFrame(f); };
requestAnimationFrame(f);
return true;
"#;

const STOP_FRAMES: &str = r#"
window.__recording = false;
const d = [...window.__frames].sort((a, b) => a - b);
const q = (p) => d.length ? d[Math.min(d.length - 1, Math.floor(p * d.length))] : null;
return { n: d.length, p50: q(0.5), p95: q(0.95), max: d.length ? d[d.length - 1] : null,
         over50: d.filter((x) => x > 50).length };
"#;

const STORE_MATCHES: &str = r#"
const want = arguments[0];
const s = window.__ghctx && window.__ghctx.store;
if (!s) return window.__gh && window.__gh.storeAlarms === want.length;
if (s.alarms.size !== want.length) return null;
return want.every((id) => s.alarms.has(id));
"#;

const HEAP: &str = "return performance.memory ? performance.memory.usedJSHeapSize : null;";
