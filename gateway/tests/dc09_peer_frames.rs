//! Frames written by an independent DC-09 implementation — the `siadc09` 1.0.1 sender
//! (PyPI, "SIA DC-09-2026 primitives"; generated with `message.EventMessage(...).encode(...)`
//! at 2025-11-26T00:07:00Z), including the example frame of its documentation — read by
//! the receiver's pure core exactly as a panel's would be.

use gatehouse_gateway::adapters::{
    dc09::{
        crypto::Key,
        frame::{self, Token},
        receiver::{AccountConfig, Receiver, Verdict},
    },
    fire::FireKind,
};

/// 2025-11-26T00:07:00Z, the frames' timestamp.
const T0: i64 = 1_764_115_620_000;

fn receiver() -> Receiver {
    let account = |account: &str, device: &str, key: Option<&str>| AccountConfig {
        account: account.into(),
        device_id: device.into(),
        key: key.map(|k| Key::from_hex(k).expect("key")),
        supervision_ms: 180_000,
    };
    Receiver::new(
        vec![
            account("1234", "fire-panel-1", None),
            account("5678", "fire-panel-2", Some("000102030405060708090a0b0c0d0e0f")),
            account(
                "9ABC",
                "fire-panel-3",
                Some("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
            ),
            account("123456A", "fire-panel-4", None),
        ],
        T0,
    )
}

/// (kind, zone, raw code) of each event a frame yields.
type Signals = Vec<(Option<FireKind>, String, String)>;

fn accept(bytes: &[u8], at: i64) -> (Verdict, Signals, Token) {
    let o = receiver().handle(bytes, at, &mut || b'0');
    let answer = frame::parse(o.reply.as_deref().expect("answered"))
        .expect("valid answer")
        .token;
    let signals = o
        .accepted
        .map(|a| a.signals.into_iter().map(|s| (s.kind, s.zone, s.raw_code)).collect())
        .unwrap_or_default();
    (o.verdict, signals, answer)
}

#[test]
fn plain_contact_id_and_sia_dcs_from_siadc09() {
    let cid = b"\n5DA7003B\"ADM-CID\"0001L0#1234[#1234|1110 01 017]_00:07:00,11-26-2025\r";
    assert_eq!(
        accept(cid, T0),
        (
            Verdict::Accepted,
            vec![(Some(FireKind::FireAlarm), "17".into(), "1110".into())],
            Token::Ack
        )
    );
    let sia = b"\n604F0039\"SIA-DCS\"0002L0#1234[#1234|Nri1/FA17]_00:07:00,11-26-2025\r";
    assert_eq!(
        accept(sia, T0 + 10_000),
        (
            Verdict::Accepted,
            vec![(Some(FireKind::FireAlarm), "17".into(), "FA".into())],
            Token::Ack
        )
    );
    // A minute later the same frame is stale: NAK.
    assert_eq!(accept(cid, T0 + 60_000).0, Verdict::StaleTimestamp);
}

#[test]
fn encrypted_frames_from_siadc09_with_its_padding() {
    // AES-128, 16–31 pad bytes before the '|' as DC-09-2026 5.4.4.3 asks, lower-case hex.
    let restore = b"\n73DB0096\"*ADM-CID\"0003L0#5678[827eb5a5213a48e37dedb17ea6a0aaade2cca4d917188b7fe1e97d25acc52ab58f7ef738ab329eb4587d90accdd2fdd7edb6da6f4da1d12c435b25d035c6cb94\r";
    assert_eq!(
        accept(restore, T0),
        (
            Verdict::Accepted,
            vec![(Some(FireKind::FireAlarmRestore), "17".into(), "3110".into())],
            Token::Ack
        )
    );
    // AES-256 NULL poll (no '|' after the pad: there is no data).
    let poll = b"\nC0BE0073\"*NULL\"0004L0#9ABC[04d4adc157a1e4bdacf85495c458e68d9ec905507a4582ad2d6b7c35cbb390a2f11e1c2b7a1a17fd3dc9d4402f662ae2\r";
    assert_eq!(accept(poll, T0), (Verdict::Poll, vec![], Token::Ack));
}

#[test]
fn the_documented_example_frame_of_siadc09() {
    // siadc09/__init__.py: receiver R579BDF, prefix L789ABC, account #123456A, extended data.
    let example = b"\n8C860043\"SIA-DCS\"9876R579BDFL789ABC#123456A[#123456A|NFA129][M1234567890AB]\r";
    let f = frame::parse(example).expect("valid");
    assert_eq!(
        (
            f.seq.as_str(),
            f.receiver.as_deref(),
            f.line.as_deref(),
            f.account.as_str()
        ),
        ("9876", Some("579BDF"), Some("789ABC"), "123456A")
    );
    let (verdict, signals, answer) = accept(example, T0);
    assert_eq!((verdict, answer), (Verdict::Accepted, Token::Ack));
    assert_eq!(signals, vec![(Some(FireKind::FireAlarm), "129".into(), "FA".into())]);
}
