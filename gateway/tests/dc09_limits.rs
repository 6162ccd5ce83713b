//! The DC-09 receiver cannot be locked by idle TCP connections (issue 9, defect 7): one
//! address holds at most its share, a full table makes room by closing the longest idle
//! connection, idle connections are closed after the idle timeout, and a real panel's fire
//! alarm on a new connection is ACKed (and stored) while hundreds of idle ones are held.
//!
//! Several source addresses on one machine: Linux routes all of 127.0.0.0/8 to loopback.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use gatehouse_gateway::adapters::dc09::conns::Closed;
use gatehouse_gateway::adapters::dc09::frame::{self, Message, Token};
use gatehouse_gateway::config::Config;
use gatehouse_proto::{self as pb, event::Body};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

fn config(dir: &std::path::Path) -> Config {
    Config::from_toml(&format!(
        r#"
[gateway]
id = "gw-dc09"
estate = "estate-a"
data_dir = "{}"
hubs = ["http://127.0.0.1:1"]

[uplink]
plaintext = true

[dc09]
listen = "127.0.0.1:0"
idle_timeout_s = 3
max_connections = 200
max_connections_per_source = 4

[[devices]]
id = "fire-panel-1"
kind = "fire_panel"
area = "fire-control-room"
[devices.dc09]
account = "1234"
"#,
        dir.display()
    ))
    .expect("test configuration")
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("bind a loopback source address");
    socket.connect(to).await.expect("TCP connects")
}

/// Whether the gateway closes `stream` (EOF or reset) before `deadline`.
async fn closed_by_peer(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn answer(stream: &mut TcpStream) -> Token {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    timeout(Duration::from_secs(5), async {
        loop {
            let n = stream.read(&mut byte).await.expect("read the answer");
            assert!(n > 0, "connection closed before an answer");
            buf.push(byte[0]);
            if byte[0] == b'\r' && buf.first() == Some(&b'\n') {
                return;
            }
        }
    })
    .await
    .expect("an answer within 5 s");
    frame::parse(&buf).expect("a valid answer frame").token
}

#[tokio::test]
async fn idle_connections_do_not_lock_out_a_real_panel_and_are_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gatehouse_gateway::start(config(dir.path()))
        .await
        .expect("gateway starts");
    let addr = gw.dc09_addr.expect("DC-09 listening");
    let started = Instant::now();

    // Twelve from one address: four are held, eight refused at once.
    let mut from_one = Vec::new();
    for _ in 0..12 {
        from_one.push(connect_from("127.0.0.2".parse().unwrap(), addr).await);
    }
    // Then 200 from fifty more addresses: the table (200) fills; the oldest make room.
    let mut idle = Vec::new();
    for host in 1..=50u8 {
        for _ in 0..4 {
            idle.push(connect_from(IpAddr::from([127, 0, 1, host]), addr).await);
        }
    }
    // Wait until the gateway has taken them all in (the table is full).
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.metrics.dc09_conns.open() < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.metrics.dc09_conns.open(), 200, "the idle connections fill the table");

    // A real panel, on a new connection, while 200 idle ones are held: ACKed and stored.
    let sent_at = Instant::now();
    let mut panel = connect_from("127.0.0.1".parse().unwrap(), addr).await;
    let alarm = Message::new(Token::AdmCid, 1, "1234", "#1234|1110 01 017").with_timestamp(pb::now_ms());
    panel.write_all(&frame::encode(&alarm)).await.expect("send the alarm");
    assert_eq!(answer(&mut panel).await, Token::Ack);
    println!(
        "fire alarm ACKed {:?} after it was sent, with 200 idle connections held",
        sent_at.elapsed()
    );
    let stored = gw.outbox.read_after(0, 100).await.expect("outbox readable");
    assert!(
        stored
            .iter()
            .any(|e| matches!(&e.body, Some(Body::Fire(f)) if f.zone == "17")),
        "the fire alarm is in the outbox: {stored:?}"
    );

    // Every idle connection is closed: refused, evicted, or by the idle timeout (3 s).
    let deadline = started + Duration::from_secs(12);
    for (i, stream) in from_one.iter_mut().chain(idle.iter_mut()).enumerate() {
        assert!(
            closed_by_peer(stream, deadline).await,
            "idle connection {i} still open {:?} after the first connected",
            started.elapsed()
        );
    }
    let m = &gw.metrics.dc09_conns;
    assert!(
        m.closed(Closed::PerSourceCap) >= 8,
        "{}",
        m.closed(Closed::PerSourceCap)
    );
    assert!(m.closed(Closed::Evicted) >= 5, "{}", m.closed(Closed::Evicted));
    assert!(m.closed(Closed::Idle) >= 150, "{}", m.closed(Closed::Idle));
    let text = gw.metrics.render();
    assert!(text.contains("gatehouse_gateway_dc09_connections_closed_total{reason=\"idle_timeout\"}"));
    assert!(gw.health.live(), "{:?}", gw.health.failures());
    gw.shutdown().await;
}

/// Answers (one CR-terminated frame each) read from `stream` until it is quiet for `quiet`.
async fn count_answers(stream: &mut TcpStream, quiet: Duration) -> usize {
    let mut n = 0;
    let mut buf = [0u8; 4096];
    while let Ok(Ok(read)) = timeout(quiet, stream.read(&mut buf)).await {
        if read == 0 {
            break;
        }
        n += buf[..read].iter().filter(|b| **b == b'\r').count();
    }
    n
}

#[tokio::test]
async fn a_source_flooding_frames_is_rate_limited_and_counted_while_another_panel_is_acked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    let dc09 = config.dc09.as_mut().expect("[dc09] configured");
    dc09.max_frames_per_s = 2;
    dc09.frame_burst = 5;
    let gw = gatehouse_gateway::start(config).await.expect("gateway starts");
    let addr = gw.dc09_addr.expect("DC-09 listening");

    // Forty valid polls at once from one address: the burst (5) is answered, plus what the
    // rate gives back meanwhile; the rest are dropped unanswered.
    let mut flood = connect_from("127.0.0.2".parse().unwrap(), addr).await;
    let mut frames = Vec::new();
    for seq in 1..=40 {
        frames.extend(frame::encode(
            &Message::new(Token::Null, seq, "1234", "").with_timestamp(pb::now_ms()),
        ));
    }
    flood.write_all(&frames).await.expect("send the flood");
    let answered = count_answers(&mut flood, Duration::from_millis(1500)).await;
    assert!((5..=10).contains(&answered), "{answered} of 40 frames answered");
    let dropped = gw.metrics.dc09_rate_limited.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped >= 30, "{dropped} frames counted as rate-limited");

    // A panel at another address is ACKed at once, and its alarm stored.
    let mut panel = connect_from("127.0.0.1".parse().unwrap(), addr).await;
    let alarm = Message::new(Token::AdmCid, 41, "1234", "#1234|1110 01 018").with_timestamp(pb::now_ms());
    panel.write_all(&frame::encode(&alarm)).await.expect("send the alarm");
    assert_eq!(answer(&mut panel).await, Token::Ack);
    let stored = gw.outbox.read_after(0, 100).await.expect("outbox readable");
    assert!(
        stored
            .iter()
            .any(|e| matches!(&e.body, Some(Body::Fire(f)) if f.zone == "18")),
        "the fire alarm is in the outbox"
    );
    assert!(
        gw.metrics
            .render()
            .contains(&format!("gatehouse_gateway_dc09_rate_limited_total {dropped}"))
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_frame_over_max_frame_bytes_is_dropped_and_counted_and_the_next_one_is_acked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.dc09.as_mut().expect("[dc09] configured").max_frame_bytes = 100;
    let gw = gatehouse_gateway::start(config).await.expect("gateway starts");
    let addr = gw.dc09_addr.expect("DC-09 listening");

    let mut panel = connect_from("127.0.0.1".parse().unwrap(), addr).await;
    let long = Message::new(
        Token::AdmCid,
        1,
        "1234",
        &format!("#1234|1110 01 019{}", " ".repeat(120)),
    )
    .with_timestamp(pb::now_ms());
    let bytes = frame::encode(&long);
    assert!(bytes.len() > 100);
    panel.write_all(&bytes).await.expect("send the long frame");
    assert_eq!(
        count_answers(&mut panel, Duration::from_millis(700)).await,
        0,
        "no answer"
    );
    assert_eq!(gw.metrics.dc09_oversized.load(std::sync::atomic::Ordering::Relaxed), 1);

    let alarm = Message::new(Token::AdmCid, 2, "1234", "#1234|1110 01 017").with_timestamp(pb::now_ms());
    panel.write_all(&frame::encode(&alarm)).await.expect("send the alarm");
    assert_eq!(answer(&mut panel).await, Token::Ack);
    assert!(gw.metrics.render().contains("gatehouse_gateway_dc09_oversized_total 1"));
    gw.shutdown().await;
}
