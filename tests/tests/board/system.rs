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

    /// A hub alone (no gateways: its incidents are opened through the API) whose
    /// configuration is the scenario's for `specs` passed through `edit` — a test's own
    /// roster channels or `[notify]` keys.
    // board.rs, which shares this harness, starts full systems only.
    #[allow(dead_code)]
    pub async fn start_hub_only(specs: &[EstateSpec], edit: impl FnOnce(String) -> String) -> Sut {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = format!("sqlite://{}", dir.path().join("hub.db").display());
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let toml = gatehouse_sim::scenario::hub_toml(any, any, &db, specs).expect("the scenario's hub.toml");
        let config = gatehouse_hub::config::HubConfig::from_toml(&edit(toml)).expect("the edited hub.toml");
        let hub = gatehouse_hub::start(config).await.expect("hub starts");
        let api = format!("http://{}", hub.http_addr());
        let proxy = CutProxy::start(hub.http_addr()).await;
        Sut {
            hub,
            api,
            estates: Vec::new(),
            proxy,
            _dir: dir,
        }
    }

    /// The hub's SQLite database (both constructors keep it at `<dir>/hub.db`).
    #[allow(dead_code)]
    pub fn db(&self) -> std::path::PathBuf {
        self._dir.path().join("hub.db")
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

/// The password of the board users the tests sign in as (made through the admin API).
pub const BOARD_PASSWORD: &str = "board-test-password";

/// Makes user `name` (a supervisor of every estate, password [`BOARD_PASSWORD`]) through the
/// admin API, signed in as the scenario's admin; an existing one is kept.
pub async fn ensure_user(api: &str, name: &str) {
    let admin = gatehouse_sim::credentials::login("admin").expect("the demo admin");
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{api}/api/v1/login"))
        .json(&json!({"user": admin.user, "password": admin.password}))
        .send()
        .await
        .expect("login answers")
        .json()
        .await
        .expect("login JSON");
    let token = login["token"].as_str().expect("an admin session").to_owned();
    let r = client
        .post(format!("{api}/api/v1/users"))
        .bearer_auth(token)
        .json(&json!({"name": name, "role": "supervisor", "password": BOARD_PASSWORD}))
        .send()
        .await
        .expect("POST /users answers");
    assert!(
        r.status().is_success() || r.status().as_u16() == 409,
        "creating {name}: {}",
        r.status()
    );
}

/// Signs the page in as `user` (the hub sets the session cookie), as the sign-in form does.
pub async fn sign_in(page: &Page, user: &str, password: &str) -> u64 {
    page.js(
        "var x = new XMLHttpRequest(); x.open('POST', '/api/v1/login', false); \
         x.setRequestHeader('content-type', 'application/json'); \
         x.send(JSON.stringify({user: arguments[0], password: arguments[1]})); return x.status;",
        vec![json!(user), json!(password)],
    )
    .await
    .as_u64()
    .unwrap_or(0)
}

/// Opens the board at `hash` in a fresh browser session, not signed in.
pub async fn open_page(driver: &Driver, sut: &Sut, test: &'static str, hash: &str) -> Page {
    let page = Page {
        client: driver.session().await,
        base: sut.proxy.base(),
        test,
    };
    page.goto(hash).await;
    page
}

async fn open_signed_in(driver: &Driver, sut: &Sut, test: &'static str, user: &str, hash: &str) -> Page {
    ensure_user(&sut.api, user).await;
    let page = open_page(driver, sut, test, hash).await;
    assert_eq!(sign_in(&page, user, BOARD_PASSWORD).await, 200, "{user} signs in");
    page.client.refresh().await.expect("reload signed in");
    wait_live(&page).await;
    // The first load's GET /me was refused (401) before sign-in, as intended: drop the
    // console's note of it so the tests' clean-console checks see only what follows.
    let _ = page.console_errors().await;
    page
}

/// Opens the board signed in as `operator` (a user name: what the API records) in `lang` at
/// `hash`, its stream live, and marks the document so [`not_reloaded`] can tell it was never
/// reloaded.
pub async fn open_board_as(
    driver: &Driver,
    sut: &Sut,
    test: &'static str,
    operator: &str,
    lang: &str,
    hash: &str,
) -> Page {
    let page = open_signed_in(driver, sut, test, operator, hash).await;
    page.js(
        "localStorage.setItem('gh.lang', arguments[0]); return true;",
        vec![json!(lang)],
    )
    .await;
    page.client.refresh().await.expect("reload in the language");
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
