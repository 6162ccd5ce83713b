//! Connection limits of the hub on loopback (issue 9, defect 7): idle, silent and slow
//! connections are closed after their timeouts, one source address cannot hold more than its
//! share, and meanwhile a real operator and a real gateway are served.
//!
//! Several source addresses on one machine: Linux routes all of 127.0.0.0/8 to loopback, so
//! a client socket bound to 127.0.0.2 is a second host as far as the hub can tell.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Link, WAIT};
use gatehouse_hub::{HubConfig, RunningHub};
use gatehouse_proto::{DoorEvent, DoorEventType, event::Body};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn config(db: &Path, limits: &str) -> HubConfig {
    common::with_admin(
        HubConfig::from_toml(&format!(
            r#"
[hub]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
database = "{}"

[tls]
plaintext = true

[[gateways]]
id = "gw-1"
estate = "estate-a"

[[estates]]
id = "estate-a"
name = "Riverside Gardens"

{limits}
"#,
            common::db::database_url(db)
        ))
        .expect("test configuration is valid"),
    )
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().expect("address"), 0))
        .expect("bind a loopback source address");
    socket.connect(to).await.expect("TCP connects")
}

/// Waits until the hub has closed `stream` (EOF or reset), reading and discarding anything
/// it sends first; `false` if it is still open at `deadline`.
async fn closed_by_peer(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn metrics_text(hub: &RunningHub) -> String {
    let r = common::admin_client()
        .get(format!("http://{}/metrics", hub.http_addr()))
        .send()
        .await
        .expect("metrics answer");
    assert_eq!(r.status(), 200);
    r.text().await.expect("metrics text")
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
        .parse()
        .expect("a number")
}

#[tokio::test]
async fn idle_and_slowloris_http_connections_are_closed_and_one_source_is_capped_while_an_operator_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let hub = gatehouse_hub::start(config(
        &dir.path().join("hub.db"),
        "[limits.http]\nmax_connections = 64\nmax_connections_per_source = 4\nheader_timeout_s = 2\n",
    ))
    .await
    .expect("hub starts");
    let addr = hub.http_addr();
    let started = Instant::now();

    // Ten idle connections from one address: four are held, six closed at accept.
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(connect_from("127.0.0.2", addr).await);
    }
    // A slowloris client from another address: one header byte a second.
    let mut slow = connect_from("127.0.0.3", addr).await;
    let head = b"GET /api/v1/alarms HTTP/1.1\r\nHost: hub\r\nX-Slow: 1\r\n\r\n";
    let slowloris = tokio::spawn(async move {
        for (i, b) in head.iter().enumerate() {
            if slow.write_all(&[*b]).await.is_err() {
                return Some(i);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        None
    });

    // Meanwhile an operator is served, on a fresh connection and again on a kept-alive one.
    let client = common::admin_client();
    for _ in 0..3 {
        let r = client
            .get(format!("http://{addr}/api/v1/alarms"))
            .send()
            .await
            .expect("the operator's request is answered");
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(8);
    for (i, stream) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_peer(stream, deadline).await,
            "idle connection {i} is still open {:?} after it connected",
            started.elapsed()
        );
    }
    let cut_after = tokio::time::timeout(Duration::from_secs(10), slowloris)
        .await
        .expect("the slowloris client is stopped")
        .expect("slowloris task");
    let sent = cut_after.expect("the hub closed the slowloris connection before its head was complete");
    assert!(
        sent < head.len() / 2,
        "the slowloris client sent {sent} bytes before it was cut"
    );

    let text = metrics_text(&hub).await;
    assert!(
        metric(
            &text,
            "gatehouse_hub_connections_refused_total{listener=\"http\",reason=\"max_connections_per_source\"}"
        ) >= 6.0
    );
    assert!(
        metric(
            &text,
            "gatehouse_hub_connections_cut_total{listener=\"http\",reason=\"header_timeout\"}"
        ) >= 5.0
    );
    println!(
        "idle and slowloris connections closed within {:?}\n{}",
        started.elapsed(),
        text.lines()
            .filter(|l| l.starts_with("gatehouse_hub_connections"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn silent_grpc_connections_are_closed_after_the_handshake_timeout_while_a_gateway_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let hub = gatehouse_hub::start(config(
        &dir.path().join("hub.db"),
        "[limits.grpc]\nmax_connections = 32\nmax_connections_per_source = 6\nhandshake_timeout_s = 1\n",
    ))
    .await
    .expect("hub starts");
    let addr = hub.grpc_addr();

    // Nine connections that never send the HTTP/2 preface, from one address: six held until
    // the handshake timeout, three closed at accept.
    let mut silent = Vec::new();
    for _ in 0..9 {
        silent.push(connect_from("127.0.0.2", addr).await);
    }

    // A gateway connects meanwhile, delivers, and outlives the handshake timeout.
    let mut link = Link::connect(&hub, "gw-1", "estate-a", &["door-1"]).await;
    let forced = || {
        Body::Door(DoorEvent {
            r#type: DoorEventType::Forced as i32,
            door: "main gate".into(),
            seconds: 0,
        })
    };
    link.send(vec![("door-1", "main gate", forced())]).await;

    let deadline = Instant::now() + WAIT;
    for (i, stream) in silent.iter_mut().enumerate() {
        assert!(
            closed_by_peer(stream, deadline).await,
            "silent gRPC connection {i} is still open"
        );
    }
    // Past the handshake timeout, the gateway's stream is still served.
    link.send(vec![("door-1", "main gate", forced())]).await;

    let text = metrics_text(&hub).await;
    assert!(
        metric(
            &text,
            "gatehouse_hub_connections_cut_total{listener=\"grpc\",reason=\"handshake_timeout\"}"
        ) >= 6.0
    );
    assert!(
        metric(
            &text,
            "gatehouse_hub_connections_refused_total{listener=\"grpc\",reason=\"max_connections_per_source\"}"
        ) >= 3.0
    );
    assert_eq!(
        metric(&text, "gatehouse_hub_connections_open{listener=\"grpc\"}"),
        1.0,
        "only the gateway's connection is left"
    );
    hub.shutdown().await;
}
