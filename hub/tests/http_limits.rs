//! Per-request limits of the hub's HTTP API on loopback (issue 12 §6): an oversized body is
//! answered 413 in the API's JSON shape, a body trickled one byte a second is cut at the
//! request timeout, and the live stream's subscribers are capped in total (503) and per source
//! (429) — each counted on `/metrics` while other clients are served and other subscribers
//! keep streaming. (Header timeouts and connection caps: `limits.rs`.)
//!
//! Several source addresses on one machine: Linux routes all of 127.0.0.0/8 to loopback.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Link, WAIT};
use gatehouse_hub::{HubConfig, RunningHub};
use gatehouse_proto::{DoorEvent, DoorEventType, event::Body};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

fn config(db: &Path, limits: &str) -> HubConfig {
    common::config(db, &format!("{}\n[limits.http]\n{limits}\n", common::ESTATE_A))
}

async fn metrics_text(hub: &RunningHub) -> String {
    let r = reqwest::get(format!("http://{}/metrics", hub.http_addr()))
        .await
        .expect("metrics answer");
    r.text().await.expect("metrics text")
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
        .parse()
        .expect("a number")
}

/// An HTTP client whose connections come from the loopback address `from`.
fn client_from(from: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", common::ADMIN_TOKEN).parse().expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .local_address(from.parse::<IpAddr>().expect("address"))
        .build()
        .expect("client")
}

#[tokio::test]
async fn an_oversized_body_is_answered_413_as_json_and_counted_while_a_small_one_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let hub = gatehouse_hub::start(config(&dir.path().join("hub.db"), "max_body_bytes = 1024"))
        .await
        .expect("hub starts");
    // Opening an incident: its estate is read from the body before anything else (the route's
    // authorization), so the body's size is checked first.
    let big_url = format!("http://{}/api/v1/incidents", hub.http_addr());
    let url = format!("http://{}/api/v1/alarms/1/ack", hub.http_addr());
    let big = serde_json::json!({ "estate": "estate-a", "title": "x".repeat(4096) });
    let r = common::admin_client().post(&big_url).json(&big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(
        r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = r.json().await.expect("a JSON error");
    assert_eq!(body["error"], "request body too large", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("1024"), "{body}");

    // A body under the limit goes on to the handler (no such alarm: 404).
    let r = common::admin_client()
        .post(&url)
        .json(&serde_json::json!({ "operator": "wang" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let text = metrics_text(&hub).await;
    assert_eq!(
        metric(
            &text,
            "gatehouse_hub_connections_cut_total{listener=\"http\",reason=\"body_too_large\"}"
        ),
        1.0
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_body_trickled_one_byte_a_second_is_cut_at_the_request_timeout_while_another_client_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let hub = gatehouse_hub::start(config(
        &dir.path().join("hub.db"),
        "request_timeout_s = 2\nheader_timeout_s = 10",
    ))
    .await
    .expect("hub starts");
    let addr = hub.http_addr();
    let started = Instant::now();

    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new("127.0.0.2".parse().unwrap(), 0)).unwrap();
    let slow = socket.connect(addr).await.unwrap();
    let (mut read, mut write) = slow.into_split();
    write
        .write_all(
            format!(
                "POST /api/v1/incidents HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n",
                common::ADMIN_TOKEN
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for i in 0..200 {
            if write.write_all(b" ").await.is_err() {
                return Some(i);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        None
    });

    // Meanwhile another client is served, more than once.
    for _ in 0..3 {
        let r = client_from("127.0.0.3")
            .get(format!("http://{addr}/api/v1/alarms"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The trickling client gets a 503 with the API's JSON error at the request timeout.
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(8);
    while !String::from_utf8_lossy(&answer).contains("}") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 503"), "after {took:?}: {answer:?}");
    assert!(answer.contains("the request took too long"), "{answer}");
    assert!(took < Duration::from_secs(6), "cut after {took:?}");
    // The connection is closed with it: the trickler cannot go on holding it.
    let sent = tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .expect("the trickling client is stopped")
        .unwrap()
        .expect("its connection was closed");
    assert!(sent < 15, "the trickling client sent {sent} bytes of its body");

    let text = metrics_text(&hub).await;
    assert!(
        metric(
            &text,
            "gatehouse_hub_connections_cut_total{listener=\"http\",reason=\"request_timeout\"}"
        ) >= 1.0
    );
    hub.shutdown().await;
}

/// A live-stream subscription from `from`: the status and, if 200, the open response.
async fn subscribe(hub: &RunningHub, from: &str) -> (u16, reqwest::Response) {
    let r = client_from(from)
        .get(format!("http://{}/api/v1/stream", hub.http_addr()))
        .send()
        .await
        .expect("the stream answers");
    (r.status().as_u16(), r)
}

/// Reads `r` until its text contains `what`.
async fn read_until(r: &mut reqwest::Response, what: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(what) {
        let chunk = tokio::time::timeout(WAIT, r.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {what:?} within {WAIT:?}; got {seen:?}"))
            .expect("stream chunk")
            .expect("the stream is still open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

#[tokio::test]
async fn stream_subscribers_are_capped_in_total_and_per_source_while_admitted_ones_keep_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let hub = gatehouse_hub::start(config(
        &dir.path().join("hub.db"),
        "max_stream_subscribers = 3\nmax_stream_subscribers_per_source = 2",
    ))
    .await
    .expect("hub starts");

    let (s, mut a1) = subscribe(&hub, "127.0.0.2").await;
    assert_eq!(s, 200);
    let (s, a2) = subscribe(&hub, "127.0.0.2").await;
    assert_eq!(s, 200);
    // A third from the same address: 429, with a JSON reason and a Retry-After.
    let (s, r) = subscribe(&hub, "127.0.0.2").await;
    assert_eq!(s, 429);
    assert!(r.headers().contains_key(reqwest::header::RETRY_AFTER));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "too many stream subscribers", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("per_source"), "{body}");

    let (s, mut b1) = subscribe(&hub, "127.0.0.3").await;
    assert_eq!(s, 200);
    // Every place taken: 503 for a newcomer from anywhere.
    let (s, r) = subscribe(&hub, "127.0.0.4").await;
    assert_eq!(s, 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("max_stream_subscribers"),
        "{body}"
    );

    // Ordinary requests are still served, and the admitted subscribers keep streaming.
    assert_eq!(common::http(&hub, "GET", "/api/v1/alarms", None).await.0, 200);
    read_until(&mut a1, "event: hello").await;
    read_until(&mut b1, "event: hello").await;
    let mut link = Link::connect(&hub, "gw-1", "estate-a", &["door-1"]).await;
    link.send(vec![(
        "door-1",
        "main gate",
        Body::Door(DoorEvent {
            r#type: DoorEventType::Forced as i32,
            door: "main gate".into(),
            seconds: 0,
        }),
    )])
    .await;
    read_until(&mut a1, "event: alarm").await;
    read_until(&mut b1, "event: alarm").await;

    // A subscriber that leaves frees its place.
    drop(a2);
    let deadline = Instant::now() + WAIT;
    let mut c1 = loop {
        let (s, r) = subscribe(&hub, "127.0.0.4").await;
        if s == 200 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the place of a closed subscriber never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    read_until(&mut c1, "event: hello").await;

    let text = metrics_text(&hub).await;
    assert!(
        metric(
            &text,
            "gatehouse_hub_connections_refused_total{listener=\"stream\",reason=\"max_connections_per_source\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &text,
            "gatehouse_hub_connections_refused_total{listener=\"stream\",reason=\"max_connections\"}"
        ) >= 1.0
    );
    assert_eq!(
        metric(&text, "gatehouse_hub_connections_open{listener=\"stream\"}"),
        3.0
    );
    hub.shutdown().await;
}
