//! The SIA DC-09 receiver inside a running gateway, over real TCP and UDP sockets on
//! loopback: each kind of frame gets the answer the standard gives it, accepted events are
//! in the outbox before the ACK, nothing is mis-mapped or stored twice.
//!
//! Frames are built with the gateway's own `dc09::frame` builder (as the simulator does)
//! and, for the published examples, taken byte for byte.

use std::{net::SocketAddr, time::Duration};

use gatehouse_gateway::{
    RunningGateway,
    adapters::dc09::{
        crypto::Key,
        frame::{self, Message, Payload, Token},
        receiver::Verdict,
    },
    config::Config,
};
use gatehouse_proto::{self as pb, FireEventType, event::Body};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    time::timeout,
};

const KEY: &str = "estate-a-panel01";

fn config(dir: &std::path::Path, supervision_s: u64) -> Config {
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

[[devices]]
id = "fire-panel-1"
kind = "fire_panel"
area = "fire-control-room"
[devices.dc09]
account = "1234"

[[devices]]
id = "fire-panel-2"
kind = "fire_panel"
area = "block-b"
[devices.dc09]
account = "5678"
key = "{KEY}"
supervision_s = {supervision_s}
"#,
        dir.display()
    ))
    .expect("test configuration")
}

async fn start(supervision_s: u64) -> (RunningGateway, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gatehouse_gateway::start(config(dir.path(), supervision_s))
        .await
        .expect("gateway starts");
    let addr = gw.dc09_addr.expect("DC-09 listening");
    (gw, addr, dir)
}

/// Sends frames on one TCP connection; returns each answer's bytes.
async fn tcp_exchange(addr: SocketAddr, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut answers = Vec::new();
    for f in frames {
        stream.write_all(f).await.expect("send");
        answers.push(read_frame(&mut stream).await);
    }
    answers
}

async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    timeout(Duration::from_secs(5), async {
        loop {
            let n = stream.read(&mut byte).await.expect("read");
            assert!(n > 0, "connection closed before an answer");
            buf.push(byte[0]);
            if byte[0] == b'\r' && buf.first() == Some(&b'\n') {
                return;
            }
        }
    })
    .await
    .expect("an answer within 5 s");
    buf
}

async fn no_answer_tcp(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    let mut buf = [0u8; 64];
    match timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
        Err(_) => {}
        Ok(r) => assert!(matches!(r, Ok(0)), "expected no answer, got {r:?}"),
    }
}

async fn udp_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.send_to(bytes, addr).await.expect("send");
    let mut buf = vec![0u8; 4096];
    let (n, _) = timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("a UDP answer within 5 s")
        .expect("recv");
    buf.truncate(n);
    buf
}

fn token(answer: &[u8]) -> Token {
    frame::parse(answer)
        .expect("the gateway's answers are valid frames")
        .token
}

async fn stored(gw: &RunningGateway) -> Vec<pb::Event> {
    gw.outbox.read_after(0, 1000).await.expect("outbox readable")
}

fn fires(events: &[pb::Event]) -> Vec<(i32, String, String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            Some(Body::Fire(f)) => Some((f.r#type, e.device_id.clone(), f.zone.clone(), f.raw_code.clone())),
            _ => None,
        })
        .collect()
}

fn cid(account: &str, seq: u16, code: &str) -> Message {
    Message::new(Token::AdmCid, seq, account, &format!("#{account}|{code}")).with_timestamp(pb::now_ms())
}

#[tokio::test]
async fn contact_id_1110_zone_17_is_in_the_outbox_as_a_fire_alarm_before_the_ack() {
    let (gw, addr, _dir) = start(180).await;
    let answers = tcp_exchange(addr, &[frame::encode(&cid("1234", 1, "1110 01 017"))]).await;
    assert_eq!(token(&answers[0]), Token::Ack);
    // The ACK follows the commit: the event is already there.
    let events = stored(&gw).await;
    let fire: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            Some(Body::Fire(f)) => Some((e, f)),
            _ => None,
        })
        .collect();
    assert_eq!(fire.len(), 1, "{events:?}");
    let (e, f) = fire[0];
    assert_eq!(f.r#type(), FireEventType::FireAlarm);
    assert_eq!((f.zone.as_str(), f.raw_code.as_str()), ("17", "1110"));
    assert_eq!(
        (
            e.device_id.as_str(),
            e.area.as_str(),
            e.estate_id.as_str(),
            e.device_kind
        ),
        (
            "fire-panel-1",
            "fire-control-room",
            "estate-a",
            pb::DeviceKind::FirePanel as i32
        )
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.body, Some(Body::Status(s)) if s.online && e.device_id == "fire-panel-1")),
        "the first frame also reports the panel online"
    );
    assert_eq!(gw.metrics.dc09_frames(Verdict::Accepted), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn encrypted_frames_over_udp_and_tcp_restore_the_zone_and_get_encrypted_acks() {
    let (gw, addr, _dir) = start(180).await;
    let key = Key::from_text(KEY).expect("key");
    let mut pad = || fastrand::u8(0x21..0x7F);
    let alarm = frame::encode_encrypted(&cid("5678", 1, "1110 01 017"), &key, pb::now_ms(), &mut pad);
    let answer = udp_exchange(addr, &alarm).await;
    let ack = frame::parse(&answer).expect("valid answer");
    assert!(ack.encrypted && ack.token == Token::Ack, "{ack:?}");
    let Payload::Encrypted(c) = &ack.payload else {
        panic!("encrypted ACK")
    };
    let inner = frame::open(&ack, c, &key).expect("the ACK opens with the account's key");
    let skew = inner.timestamp_ms.expect("receiver time") - pb::now_ms();
    assert!(skew.abs() < 5_000, "ACK carries the receiver's time ({skew} ms)");
    // The SIA DCS restore of the same zone, over TCP.
    let restore_frame = frame::encode_encrypted(
        &Message::new(Token::SiaDcs, 2, "5678", "#5678|Nri1/FH17").with_timestamp(pb::now_ms()),
        &key,
        pb::now_ms(),
        &mut pad,
    );
    let answers = tcp_exchange(addr, &[restore_frame]).await;
    assert_eq!(token(&answers[0]), Token::Ack);
    let fires = fires(&stored(&gw).await);
    assert_eq!(
        fires,
        vec![
            (
                FireEventType::FireAlarm as i32,
                "fire-panel-2".into(),
                "17".into(),
                "1110".into()
            ),
            (
                FireEventType::FireAlarmRestore as i32,
                "fire-panel-2".into(),
                "17".into(),
                "FH".into()
            ),
        ]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn broken_stale_unknown_and_undecryptable_frames_are_answered_and_never_stored() {
    let (gw, addr, _dir) = start(180).await;
    let wrong = Key::from_text("estate-a-panel99").expect("key");
    let mut pad = || b'x';
    let good = frame::encode(&cid("1234", 10, "1110 01 017"));
    let mut bad_crc = good.clone();
    let crc = u16::from_str_radix(std::str::from_utf8(&bad_crc[1..5]).expect("ascii"), 16).expect("hex");
    bad_crc[1..5].copy_from_slice(format!("{:04X}", crc ^ 0x00F0).as_bytes());
    let mut bad_len = good.clone();
    let len = usize::from_str_radix(std::str::from_utf8(&bad_len[5..9]).expect("ascii"), 16).expect("hex");
    bad_len[5..9].copy_from_slice(format!("{:04X}", len + 1).as_bytes());
    let stale = frame::encode(&cid("1234", 11, "1110 01 017").with_timestamp(pb::now_ms() - 120_000));
    let unknown = frame::encode(&cid("9999", 12, "1110 01 017"));
    let wrong_key = frame::encode_encrypted(&cid("5678", 13, "1110 01 017"), &wrong, pb::now_ms(), &mut pad);
    let plain_for_keyed = frame::encode(&cid("5678", 14, "1110 01 017"));
    let cases: Vec<(&str, Vec<u8>, Token, Verdict)> = vec![
        ("bad CRC", bad_crc, Token::Nak, Verdict::BadCrc),
        ("wrong length", bad_len, Token::Nak, Verdict::BadLength),
        ("stale timestamp", stale, Token::Nak, Verdict::StaleTimestamp),
        ("unknown account", unknown, Token::Duh, Verdict::UnknownAccount),
        ("wrong key", wrong_key, Token::Duh, Verdict::DecryptFailed),
        (
            "plain frame for a keyed account",
            plain_for_keyed,
            Token::Duh,
            Verdict::PlaintextRefused,
        ),
    ];
    for (name, bytes, want, verdict) in &cases {
        let over_tcp = tcp_exchange(addr, std::slice::from_ref(bytes)).await;
        assert_eq!(token(&over_tcp[0]), *want, "{name} over TCP");
        let over_udp = udp_exchange(addr, bytes).await;
        assert_eq!(token(&over_udp), *want, "{name} over UDP");
        assert_eq!(gw.metrics.dc09_frames(*verdict), 2, "{name} counted");
    }
    // The NAK carries the receiver's time, so the panel can set its clock.
    let nak = frame::parse(&udp_exchange(addr, &cases[2].1).await).expect("NAK");
    let Payload::Plain(c) = nak.payload else {
        panic!("plain NAK")
    };
    assert!((c.timestamp_ms.expect("time") - pb::now_ms()).abs() < 5_000);
    // Noise gets no answer at all.
    no_answer_tcp(addr, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(fires(&stored(&gw).await).is_empty(), "nothing refused was stored");
    assert!(
        gw.metrics
            .render()
            .contains("gatehouse_gateway_dc09_frames_total{result=\"unknown_account\"} 2")
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_replayed_sequence_is_acked_again_and_stored_once() {
    let (gw, addr, _dir) = start(180).await;
    let first = frame::encode(&cid("1234", 42, "1373 01 002"));
    // The panel did not see our ACK and sends the same message again, restamped.
    let again = frame::encode(&cid("1234", 42, "1373 01 002"));
    let answers = tcp_exchange(addr, &[first, again.clone()]).await;
    assert_eq!((token(&answers[0]), token(&answers[1])), (Token::Ack, Token::Ack));
    assert_eq!(token(&udp_exchange(addr, &again).await), Token::Ack);
    let fires = fires(&stored(&gw).await);
    assert_eq!(
        fires,
        vec![(
            FireEventType::Fault as i32,
            "fire-panel-1".into(),
            "2".into(),
            "1373".into()
        )]
    );
    assert_eq!(gw.metrics.dc09_frames(Verdict::Duplicate), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_panel_that_stops_polling_goes_offline_and_comes_back_online_with_its_next_poll() {
    let (gw, addr, _dir) = start(2).await;
    let key = Key::from_text(KEY).expect("key");
    let mut pad = || b'p';
    let mut poll = |seq| {
        frame::encode_encrypted(
            &Message::new(Token::Null, seq, "5678", ""),
            &key,
            pb::now_ms(),
            &mut pad,
        )
    };
    assert_eq!(token(&udp_exchange(addr, &poll(1)).await), Token::Ack);
    let status = |events: &[pb::Event]| -> Vec<bool> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                Some(Body::Status(s)) if e.device_id == "fire-panel-2" => Some(s.online),
                _ => None,
            })
            .collect()
    };
    assert_eq!(status(&stored(&gw).await), vec![true]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while status(&stored(&gw).await) != vec![true, false] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "offline within the supervision interval"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        gw.metrics
            .dc09_panels_offline
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "only the panel with the 2 s interval (the other has 180 s)"
    );
    assert_eq!(token(&udp_exchange(addr, &poll(2)).await), Token::Ack);
    assert_eq!(status(&stored(&gw).await), vec![true, false, true]);
    assert_eq!(gw.metrics.dc09_frames(Verdict::Poll), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn published_example_frames_are_answered() {
    // Byte for byte from an independent implementation's tests (fioletoven/dc09,
    // common/src/dc09/message.tests.rs), with the account configured here.
    let (gw, addr, _dir) = start(180).await;
    let answers = tcp_exchange(
        addr,
        &[
            b"\n96ED0016\"SIA-DCS\"0001L0#1234[]\r".to_vec(),
            b"\nF4D20029\"SIA-DCS\"0001RF3L77#1234[#1234|NRR|Atest]\r".to_vec(),
        ],
    )
    .await;
    // An SIA-DCS frame with no event code is not understood: DUH.
    assert_eq!(token(&answers[0]), Token::Duh);
    // "RR" (power up) is not a fire code: ACKed, stored unmapped with its raw code.
    let ack = frame::parse(&answers[1]).expect("ack");
    assert_eq!(
        (ack.token, ack.receiver.as_deref(), ack.line.as_deref()),
        (Token::Ack, Some("F3"), Some("77"))
    );
    assert_eq!(
        fires(&stored(&gw).await),
        vec![(
            FireEventType::Unspecified as i32,
            "fire-panel-1".into(),
            "".into(),
            "RR".into()
        )]
    );
    gw.shutdown().await;
}
