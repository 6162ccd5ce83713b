//! DC-09: frames built by the encoder parse back to what they were built from (plain and
//! encrypted, all three key sizes); one damaged byte is never read as another frame; a
//! stream of frames with noise between them, cut anywhere, splits back into the same
//! frames; Contact ID and SIA DCS data built from their fields parse back to them; and the
//! receiver never accepts what is not a configured panel's intact frame.

use gatehouse_gateway::adapters::dc09::{
    cid,
    crypto::Key,
    frame::{self, Content, FrameError, MAX_FRAME, Message, Payload, Split, Token},
    receiver::{AccountConfig, Receiver, Verdict},
    sia,
};
use proptest::prelude::*;

use crate::cases;

/// 2025-11-26T00:07:00Z: the receiver's clock in these tests.
const T0: i64 = 1_764_115_620_000;

fn token() -> impl Strategy<Value = Token> {
    prop_oneof![Just(Token::AdmCid), Just(Token::SiaDcs), Just(Token::Null)]
}

/// A sender's message with every optional part exercised. Data and extended data use
/// the printable ASCII a frame may carry there (no brackets in the data, no `]` in an
/// extended block); timestamps are whole seconds (the wire has no milliseconds) within
/// the four-digit years the format writes.
fn message() -> impl Strategy<Value = Message> {
    (
        token(),
        0u16..10_000,
        "[0-9A-F]{3,16}",
        proptest::option::of("[0-9A-F]{1,6}"),
        proptest::option::of("[0-9A-F]{1,6}"),
        "[ -Z^-~\\\\]{0,60}",
        proptest::collection::vec("[ -\\\\^-~]{0,20}", 0..3),
        proptest::option::of(0i64..253_402_300_799),
    )
        .prop_map(|(token, seq, account, receiver, line, data, extended, ts)| {
            let mut m = Message::new(token, seq, &account, &data);
            m.receiver = receiver;
            m.line = line;
            m.extended = extended;
            m.timestamp_ms = ts.map(|s| s * 1000);
            m
        })
}

/// An AES key's bytes: 128, 192 or 256 bits.
fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(16usize), Just(24), Just(32)].prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n))
}

fn key() -> impl Strategy<Value = Key> {
    key_bytes().prop_map(|bytes| Key::new(bytes).expect("16, 24 or 32 bytes"))
}

/// What `parse` must give back for a plain `m`.
fn expected_content(m: &Message) -> Content {
    Content {
        data: m.data.clone(),
        extended: m.extended.clone(),
        timestamp_ms: m.timestamp_ms,
    }
}

fn assert_header(f: &frame::Frame, m: &Message) -> Result<(), TestCaseError> {
    prop_assert_eq!(f.token, m.token);
    prop_assert_eq!(&f.seq, &m.seq);
    prop_assert_eq!(&f.receiver, &m.receiver);
    prop_assert_eq!(&f.line, &m.line);
    prop_assert_eq!(&f.account, &m.account);
    Ok(())
}

/// Drives `split` over `buf` as the TCP shell does, returning the candidate frames and
/// checking on the way that every step makes progress within the buffer (the shell drains
/// what `split` says: a zero or an overlong length would spin or panic it).
fn split_all(buf: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) -> Result<(), TestCaseError> {
    loop {
        match frame::split(buf) {
            Split::NeedMore => return Ok(()),
            Split::Skip { len, garbage } => {
                prop_assert!(len > 0 && len <= buf.len(), "skip {} of {}", len, buf.len());
                prop_assert!(garbage <= len);
                buf.drain(..len);
            }
            Split::Frame(len) => {
                prop_assert!(len > 0 && len <= buf.len(), "frame {} of {}", len, buf.len());
                out.push(buf.drain(..len).collect());
            }
        }
    }
}

fn receiver(key: Option<Key>) -> Receiver {
    Receiver::new(
        vec![AccountConfig {
            account: "1234".into(),
            device_id: "fire-panel-1".into(),
            key,
            supervision_ms: 180_000,
        }],
        T0,
    )
}

fn pad() -> impl FnMut() -> u8 {
    let mut n = 0u8;
    move || {
        n = n.wrapping_add(29);
        n
    }
}

/// Contact ID data for `1234`: qualifier, code, group, zone.
fn cid_data() -> impl Strategy<Value = (u8, u16, u8, u16, bool)> {
    (
        prop_oneof![Just(1u8), Just(3), Just(6)],
        0u16..1000,
        0u8..100,
        0u16..1000,
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn plain_frames_parse_back_to_the_message(m in message()) {
        let bytes = frame::encode(&m);
        // The length field has three hex digits: the encoder's output is only a frame
        // while the body fits (the generator stays well inside).
        prop_assume!(bytes.len() <= MAX_FRAME);
        let f = frame::parse(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&bytes))))?;
        assert_header(&f, &m)?;
        prop_assert!(!f.encrypted);
        prop_assert_eq!(f.payload, Payload::Plain(expected_content(&m)));
        // Field quirks the parser tolerates: trailing NULs and a trailing LF.
        let mut padded = bytes.clone();
        padded.extend_from_slice(b"\n\0\0");
        prop_assert_eq!(frame::parse(&padded), frame::parse(&bytes));
    }

    #[test]
    fn encrypted_frames_open_with_their_key_and_only_with_it(m in message(), raw in key_bytes(), other in key_bytes()) {
        prop_assume!(raw != other);
        let key = Key::new(raw).expect("key");
        let other = Key::new(other).expect("key");
        let bytes = frame::encode_encrypted(&m, &key, T0, &mut pad());
        prop_assume!(bytes.len() <= MAX_FRAME);
        let f = frame::parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        assert_header(&f, &m)?;
        prop_assert!(f.encrypted);
        let Payload::Encrypted(cipher) = &f.payload else {
            return Err(TestCaseError::fail("an encrypted frame parsed as plain"));
        };
        let mut want = expected_content(&m);
        // An encrypted frame always carries a timestamp: the sender's clock stands in.
        want.timestamp_ms = Some(m.timestamp_ms.unwrap_or(T0 / 1000 * 1000));
        prop_assert_eq!(frame::open(&f, cipher, &key), Ok(want));
        // Another key gives garbage that fails the plaintext checks (the chance of
        // passing them is far below one in 2^64).
        prop_assert!(
            matches!(frame::open(&f, cipher, &other), Err(FrameError::Decrypt { .. })),
            "opened with another key"
        );
    }

    #[test]
    fn one_damaged_byte_is_never_read_as_another_frame(m in message(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let bytes = frame::encode(&m);
        prop_assume!(bytes.len() <= MAX_FRAME);
        let good = frame::parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut bad = bytes.clone();
        let i = at.index(bad.len());
        bad[i] ^= flip;
        match frame::parse(&bad) {
            // Only a change the format cannot see is read: the case of a hex digit in the
            // CRC or the length field (`a` and `A` are the same digit).
            Ok(f) => {
                prop_assert_eq!(&f, &good, "byte {} changed {:?} → {:?}", i, bytes[i] as char, bad[i] as char);
                prop_assert!((1..9).contains(&i) && bytes[i].eq_ignore_ascii_case(&bad[i]));
            }
            // A change inside the CRC-covered body is caught by the CRC or the length.
            Err(e) if i >= 9 && i + 1 < bytes.len() => prop_assert!(
                matches!(e, FrameError::Crc { .. } | FrameError::Length { .. } | FrameError::Framing(_)),
                "byte {} damaged gave {:?}", i, e
            ),
            Err(_) => {}
        }
    }

    #[test]
    fn a_stream_of_frames_and_noise_cut_anywhere_splits_into_the_same_frames(
        msgs in proptest::collection::vec(message(), 1..5),
        noise in proptest::collection::vec(proptest::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..12), 5),
        cuts in proptest::collection::vec(1usize..200, 1..10),
    ) {
        let frames: Vec<Vec<u8>> = msgs.iter().map(frame::encode).filter(|f| f.len() <= MAX_FRAME).collect();
        let mut stream = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            stream.extend_from_slice(&noise[i % noise.len()]);
            stream.extend_from_slice(f);
        }
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut rest = stream.as_slice();
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().expect("cycle")).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            split_all(&mut buf, &mut got)?;
        }
        // Every frame is found whole, in order; noise never becomes a frame that parses.
        let parsed: Vec<_> = got.iter().filter_map(|g| frame::parse(g).ok()).collect();
        let want: Vec<_> = frames.iter().map(|f| frame::parse(f).expect("built frames parse")).collect();
        prop_assert_eq!(parsed, want);
    }

    #[test]
    fn split_always_makes_progress_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut buf = bytes;
        let mut out = Vec::new();
        split_all(&mut buf, &mut out)?;
        for f in &out {
            prop_assert_eq!(f.first(), Some(&b'\n'));
            prop_assert_eq!(f.last(), Some(&b'\r'));
            let _ = frame::parse(f);
        }
    }

    #[test]
    fn timestamps_format_and_parse_back(secs in 0i64..253_402_300_799) {
        let text = frame::format_timestamp(secs * 1000);
        prop_assert_eq!(frame::parse_timestamp(&text[1..]), Some(secs * 1000));
    }

    #[test]
    fn timestamp_text_never_panics(text in "[0-9:,\\-]{0,24}|.{0,24}") {
        if let Some(ms) = frame::parse_timestamp(&text) {
            // Whatever parses formats back to a timestamp that parses to the same instant.
            prop_assert_eq!(frame::parse_timestamp(&frame::format_timestamp(ms)[1..]), Some(ms));
        }
    }

    #[test]
    fn contact_id_data_parses_back_to_its_fields((q, code, group, zone, spaces) in cid_data()) {
        let data = if spaces {
            format!("#1234|{q}{code:03} {group:02} {zone:03}")
        } else {
            format!("#1234|{q}{code:03}{group:02}{zone:03}")
        };
        let ev = cid::parse(&data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(ev.clone(), cid::CidEvent { qualifier: q, code, group: format!("{group:02}"), zone: format!("{zone:03}") });
        prop_assert_eq!(cid::data_account(&data), Some("1234"));
        let signal = cid::map(&ev);
        prop_assert_eq!(signal.raw_code, format!("{q}{code:03}"));
        prop_assert_eq!(signal.zone, zone.to_string());
        // A restore is only ever a restore kind, a new event never is.
        if let (Some(kind), Some((new_kind, _))) = (signal.kind, cid::describe(code)) {
            match q {
                3 => prop_assert_eq!(Some(kind), cid::restore_of(new_kind)),
                _ => prop_assert_eq!(kind, new_kind),
            }
        }
    }

    #[test]
    fn contact_id_and_sia_never_panic_on_any_text(text in ".{0,80}|[#|0-9 A-Za-z/^]{0,80}") {
        if let Ok(ev) = cid::parse(&text) {
            prop_assert!(matches!(ev.qualifier, 1 | 3 | 6));
            prop_assert!(ev.code < 1000);
            let _ = cid::map(&ev);
        }
        let _ = cid::data_account(&text);
        if let Ok(evs) = sia::parse(&text) {
            prop_assert!(!evs.is_empty());
            for ev in &evs {
                prop_assert_eq!(ev.code.len(), 2);
                prop_assert!(!sia::map(ev).is_empty());
            }
        }
    }

    #[test]
    fn sia_data_parses_back_to_its_events(
        area in proptest::option::of(0u16..100),
        point in proptest::option::of(0u16..1000),
        events in proptest::collection::vec(("[A-Z]{2}", 0u16..10_000), 1..4),
        text in proptest::option::of("[ -Z\\\\^-{}~]{1,30}"),
    ) {
        let mut block = String::from("#1234|N");
        if let Some(a) = area { block.push_str(&format!("ri{a:02}/")); }
        if let Some(p) = point { block.push_str(&format!("pi{p:03}/")); }
        let codes: Vec<String> = events.iter().map(|(c, n)| format!("{c}{n:03}")).collect();
        block.push_str(&codes.join("/"));
        // Free text is a block of its own; it may not hold the block separator.
        let text = text.map(|t| t.replace('|', "")).filter(|t| !t.trim().is_empty());
        if let Some(t) = &text { block.push_str(&format!("|A{t}")); }
        let got = sia::parse(&block).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got.len(), events.len());
        for (ev, (code, n)) in got.iter().zip(&events) {
            prop_assert_eq!(&ev.code, code);
            prop_assert_eq!(&ev.address, &n.to_string());
            prop_assert_eq!(&ev.area, &area.map(|a| a.to_string()).unwrap_or_default());
            prop_assert_eq!(&ev.point, &point.map(|p| p.to_string()).unwrap_or_default());
            prop_assert_eq!(&ev.text, &text.as_deref().map(str::trim).unwrap_or_default().to_string());
        }
    }

    #[test]
    fn the_receiver_accepts_a_panels_intact_frame_and_refuses_it_damaged(
        (q, code, group, zone, _) in cid_data(), seq in 0u16..10_000, encrypted in any::<bool>(),
        key in key(), at in any::<prop::sample::Index>(), flip in 1u8..=255,
    ) {
        let msg = Message::new(Token::AdmCid, seq, "1234", &format!("#1234|{q}{code:03} {group:02} {zone:03}"))
            .with_timestamp(T0);
        let (r, bytes) = if encrypted {
            (receiver(Some(key.clone())), frame::encode_encrypted(&msg, &key, T0, &mut pad()))
        } else {
            (receiver(None), frame::encode(&msg))
        };
        let o = r.handle(&bytes, T0, &mut pad());
        prop_assert_eq!(o.verdict, Verdict::Accepted, "{:?}", o.detail);
        let accepted = o.accepted.expect("accepted");
        prop_assert_eq!(accepted.signals.len(), 1);
        prop_assert_eq!(&accepted.signals[0].raw_code, &format!("{q}{code:03}"));
        // The ACK parses and answers this frame.
        let ack = frame::parse(&o.reply.expect("an ACK")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!((ack.token, ack.seq.as_str(), ack.account.as_str()), (Token::Ack, msg.seq.as_str(), "1234"));

        let mut bad = bytes.clone();
        let i = at.index(bad.len());
        bad[i] ^= flip;
        let o = r.handle(&bad, T0, &mut pad());
        if o.accepted.is_some() {
            // Only an invisible change (hex digit case in CRC/length) keeps it acceptable.
            prop_assert!((1..9).contains(&i) && bytes[i].eq_ignore_ascii_case(&bad[i]), "damaged byte {} accepted", i);
        } else {
            prop_assert_ne!(o.verdict, Verdict::Accepted);
        }
    }

    #[test]
    fn the_receiver_never_panics_on_frames_with_any_body(body in proptest::collection::vec(any::<u8>(), 0..200), bin in any::<bool>()) {
        // A correct CRC and length around arbitrary bytes: everything past the framing
        // checks is reached.
        let crc = crc(&body);
        let mut bytes = vec![b'\n'];
        if bin { bytes.extend_from_slice(&crc.to_be_bytes()); } else { bytes.extend_from_slice(format!("{crc:04X}").as_bytes()); }
        bytes.extend_from_slice(format!("{:04X}", body.len()).as_bytes());
        bytes.extend_from_slice(&body);
        bytes.push(b'\r');
        for r in [receiver(None), receiver(Some(Key::from_text("estate-a-panel01").expect("key")))] {
            let o = r.handle(&bytes, T0, &mut pad());
            if let Some(reply) = &o.reply {
                // Whatever the receiver answers is itself a valid frame.
                prop_assert!(frame::parse(reply).is_ok());
            }
        }
    }
}

fn crc(bytes: &[u8]) -> u16 {
    gatehouse_gateway::adapters::dc09::crc::crc16_arc(bytes)
}
