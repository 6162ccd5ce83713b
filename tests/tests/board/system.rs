//! The system under test for the board: a real hub, real gateways with simulated devices
//! over MQTT and Modbus (as `gatehouse-sim demo` wires them), the browser reaching the hub
//! through a relay the test can cut, and a lock that keeps one browser at a time.

use std::time::Duration;

use gatehouse_hub::RunningHub;
use gatehouse_sim::scenario::{EstateSpec, SimEstate, start_estate, start_hub};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::{
    browser::{Driver, Page, tid},
    proxy::CutProxy,
};
use crate::common::eventually;

/// Browser tests take one at a time: two Chromiums at once on a small machine make every
/// wait slower and prove nothing more.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Sut {
    pub hub: RunningHub,
    /// The hub's HTTP API, straight (the test's own reads and writes).
    pub api: String,
    pub estates: Vec<SimEstate>,
    /// What the browser talks to.
    pub proxy: CutProxy,
    // The hub's and gateways' files; removed when the test ends.
    _dir: TempDir,
}

impl Sut {
    /// A hub and `specs`' estates, each gateway connected and its door controller online.
    pub async fn start(specs: &[EstateSpec]) -> Sut {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = start_hub("127.0.0.1:0".parse().expect("addr"), dir.path(), specs)
            .await
            .expect("hub starts");
        let api = format!("http://{}", hub.http_addr());
        let mut estates = Vec::new();
        for spec in specs {
            let e = start_estate(spec.clone(), hub.grpc_addr(), dir.path())
                .await
                .unwrap_or_else(|e| panic!("estate {}: {e:#}", spec.id));
            estates.push(e);
        }
        let links = hub.links();
        for spec in specs {
            let gw = format!("gw-{}", spec.id);
            eventually(&format!("{gw} connected"), Duration::from_secs(20), || async {
                links.is_connected(&gw).then_some(())
            })
            .await;
        }
        let proxy = CutProxy::start(hub.http_addr()).await;
        Sut {
            hub,
            api,
            estates,
            proxy,
            _dir: dir,
        }
    }

    pub fn estate(&self, id: &str) -> &SimEstate {
        self.estates
            .iter()
            .find(|e| e.spec.id == id)
            .unwrap_or_else(|| panic!("no estate {id}"))
    }

    /// The first alarm the hub lists matching `pred`, once there is one.
    pub async fn alarm(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(what, Duration::from_secs(20), || async {
            let list = try_get_json(&format!("{}/api/v1/alarms?limit=5000", self.api)).await?;
            list.as_array()?.iter().find(|a| pred(a)).cloned()
        })
        .await
    }

    pub async fn stop(self) {
        for e in self.estates {
            e.gateway.shutdown().await;
            e.pump_room.shutdown();
        }
        self.hub.shutdown().await;
    }
}

pub async fn try_get_json(url: &str) -> Option<Value> {
    let resp = crate::common::authed_get(url).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

pub async fn get_json(url: &str) -> Value {
    let resp = crate::common::authed_get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "GET {url}: {status} {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

pub async fn post_json(url: &str, body: Value) -> Value {
    let resp = crate::common::client()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "POST {url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Opens the board at `hash` in a fresh session and waits until its stream is live.
pub async fn open_board(driver: &Driver, sut: &Sut, test: &'static str, hash: &str) -> Page {
    let page = Page {
        client: driver.session().await,
        base: sut.proxy.base(),
        test,
    };
    page.goto(hash).await;
    wait_live(&page).await;
    page
}

/// Opens the board as `operator` (what the API records) in `lang` at `hash`, its stream live,
/// and marks the document so [`not_reloaded`] can tell it was never reloaded.
pub async fn open_board_as(
    driver: &Driver,
    sut: &Sut,
    test: &'static str,
    operator: &str,
    lang: &str,
    hash: &str,
) -> Page {
    let page = open_board(driver, sut, test, hash).await;
    page.js(
        "localStorage.setItem('gh.operator', arguments[0]); localStorage.setItem('gh.lang', arguments[1]); return true;",
        vec![json!(operator), json!(lang)],
    )
    .await;
    page.client.refresh().await.expect("reload with the operator's name");
    wait_live(&page).await;
    // A marker that survives only as long as the document does: no reload after this.
    page.js("window.__browserTest = 1; return true;", vec![]).await;
    page
}

pub async fn wait_live(page: &Page) {
    page.wait_css(
        "the live stream open (live-status live)",
        Duration::from_secs(20),
        &format!("{}[data-state=\"live\"]", tid("live-status")),
    )
    .await;
}
