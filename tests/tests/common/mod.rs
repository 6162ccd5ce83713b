//! Shared pieces of the end-to-end tests: a hub on loopback with its database in a temporary
//! directory, polling with a deadline, and reading what the hub durably stored.

#![allow(dead_code)]

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use gatehouse_hub::RunningHub;
use gatehouse_proto as pb;
use gatehouse_sim::scenario::{EstateSpec, start_hub};
use prost::Message;
use serde_json::Value;
use sqlx::{Row, sqlite::SqliteConnectOptions};

pub struct TestHub {
    pub hub: RunningHub,
    pub base: String,
    pub db: PathBuf,
}

pub async fn hub(dir: &Path, estates: &[EstateSpec]) -> TestHub {
    hub_on(dir, estates, "127.0.0.1:0".parse().expect("addr")).await
}

pub async fn hub_on(dir: &Path, estates: &[EstateSpec], http: SocketAddr) -> TestHub {
    let hub = start_hub(http, dir, estates).await.expect("hub starts");
    TestHub {
        base: format!("http://{}", hub.http_addr()),
        db: dir.join("hub.db"),
        hub,
    }
}

/// Polls `check` every 100 ms until it yields a value, or fails the test naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An HTTP client that sends the simulators' API token (a supervisor of every estate),
/// which every hub the scenario starts is configured with.
pub fn client() -> reqwest::Client {
    gatehouse_sim::credentials::client().expect("the simulators' API token")
}

/// `GET url` with the API token.
pub async fn authed_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    client().get(url).send().await
}

/// `GET /api/v1/alarms?{query}`.
pub async fn alarms(base: &str, query: &str) -> Vec<Value> {
    let url = format!("{base}/api/v1/alarms?{query}");
    let resp = authed_get(&url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.json().await.expect("alarm list is JSON")
}

/// The first alarm matching `pred`, if the hub lists one.
pub async fn find_alarm(base: &str, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    alarms(base, "").await.into_iter().find(|a| pred(a))
}

/// Every event the hub stored for `gateway_id`, in sequence order, read from its database.
pub async fn stored_events(db: &Path, gateway_id: &str) -> Vec<pb::Event> {
    let options = SqliteConnectOptions::new().filename(db).read_only(true);
    let mut conn = sqlx::ConnectOptions::connect(&options).await.expect("open hub db");
    let rows = sqlx::query("SELECT seq, payload FROM events WHERE gateway_id = $1 ORDER BY seq")
        .bind(gateway_id)
        .fetch_all(&mut conn)
        .await
        .expect("read events");
    rows.into_iter()
        .map(|r| {
            let seq: i64 = r.get(0);
            let bytes: Vec<u8> = r.get(1);
            let mut e = pb::Event::decode(bytes.as_slice()).expect("stored event decodes");
            e.seq = seq as u64;
            e
        })
        .collect()
}

pub fn intercom_call_id(e: &pb::Event) -> Option<&str> {
    match &e.body {
        Some(pb::event::Body::Intercom(i)) => Some(i.call_id.as_str()),
        _ => None,
    }
}
