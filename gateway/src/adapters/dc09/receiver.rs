//! The receiver's decisions, as a pure state machine with the clock passed in: which
//! answer a frame gets, which events it yields, which panels have gone quiet.
//!
//! Answers (ANSI/SIA DC-09 §5.5, receiver responses):
//! - `ACK`: the frame is good and its events are stored (the shell commits them to the
//!   outbox before it sends the ACK). A `NULL` poll is ACKed as a heartbeat. A repeat of
//!   a frame already accepted (same account, sequence number and content: the sender did
//!   not get our ACK) is ACKed again and yields nothing. An encrypted frame gets an
//!   encrypted ACK carrying the receiver's time.
//! - `NAK` (standard layout, never encrypted, with the receiver's time): the timestamp is
//!   outside +20 / −40 s of the receiver's clock, or the frame arrived damaged (CRC or
//!   length wrong). The sender retries, after correcting its clock from the NAK.
//! - `DUH`: the frame is intact but cannot be accepted — unknown account, encrypted frame
//!   for an account without a key or that does not decrypt with its key, plain frame for
//!   an account that has a key, unsupported ID token, data that is not Contact ID / SIA DCS.
//!   The sender does not retry the same receiver with it.
//! - Nothing: bytes that are not a DC-09 frame at all, and `ACK`/`NAK`/`DUH` sent to us.

use std::collections::{HashMap, VecDeque};

use super::{
    cid,
    crypto::Key,
    frame::{self, FrameError, Payload, Token},
    sia,
};
use crate::adapters::fire::FireSignal;
/// What became of a frame (a metric label, defined in the metrics leaf).
pub use crate::metrics::Dc09Verdict as Verdict;

/// A message's timestamp may be this far ahead of the receiver's clock…
pub const MAX_AHEAD_MS: i64 = 20_000;
/// …and this far behind it.
pub const MAX_BEHIND_MS: i64 = 40_000;
/// Accepted (sequence, content) pairs remembered per account, to ACK repeats without
/// storing them twice.
const REMEMBERED: usize = 64;
/// How long a remembered frame counts as a repeat.
const REPEAT_WINDOW_MS: i64 = 15 * 60_000;

/// The answer each verdict is given. The verdicts themselves are metric labels, so they
/// live in the metrics leaf; what they mean on the wire is decided here.
impl Verdict {
    /// The answer this verdict is given.
    pub fn answer(self) -> Option<Token> {
        match self {
            Verdict::Accepted | Verdict::Poll | Verdict::Duplicate => Some(Token::Ack),
            Verdict::BadCrc | Verdict::BadLength | Verdict::StaleTimestamp => Some(Token::Nak),
            Verdict::Malformed => None,
            _ => Some(Token::Duh),
        }
    }
}

/// One configured account: the fire panel it is, its key, its supervision interval.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    pub account: String,
    pub device_id: String,
    pub key: Option<Key>,
    pub supervision_ms: i64,
}

/// Events of an accepted frame, to commit before the ACK goes out.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub account: String,
    pub device_id: String,
    pub seq: String,
    fingerprint: u64,
    /// The panel was reported offline (or never online): an `online` status goes first.
    pub came_online: bool,
    /// When it happened: the frame's timestamp, else the receive time.
    pub occurred_ms: i64,
    pub signals: Vec<FireSignal>,
}

/// A frame's fate: the answer to send (after committing `accepted`, if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub reply: Option<Vec<u8>>,
    pub accepted: Option<Accepted>,
    /// What went wrong, for the log (names account and sequence where known).
    pub detail: Option<String>,
    /// The account the frame claimed, when it got that far.
    pub account: Option<String>,
}

#[derive(Debug)]
struct AccountState {
    cfg: AccountConfig,
    recent: VecDeque<(String, u64, i64)>,
    last_heard_ms: i64,
    /// `None` until the first report.
    reported_online: Option<bool>,
}

/// The receiver: accounts and what it remembers of each.
#[derive(Debug)]
pub struct Receiver {
    accounts: HashMap<String, AccountState>,
}

impl Receiver {
    /// `now_ms` starts every panel's supervision clock: one that never reports is
    /// offline after its interval.
    pub fn new(accounts: Vec<AccountConfig>, now_ms: i64) -> Self {
        let accounts = accounts
            .into_iter()
            .map(|cfg| {
                (
                    cfg.account.clone(),
                    AccountState {
                        cfg,
                        recent: VecDeque::new(),
                        last_heard_ms: now_ms,
                        reported_online: None,
                    },
                )
            })
            .collect();
        Self { accounts }
    }

    /// Decides what a frame gets. `pad` yields pad characters for an encrypted ACK.
    pub fn handle(&self, bytes: &[u8], now_ms: i64, pad: &mut dyn FnMut() -> u8) -> Outcome {
        let refuse = |verdict: Verdict, reply: Option<Vec<u8>>, detail: String, account: Option<String>| Outcome {
            verdict,
            reply,
            accepted: None,
            detail: Some(detail),
            account,
        };
        let frame = match frame::parse(bytes) {
            Ok(f) => f,
            Err(e) => {
                let verdict = match e {
                    FrameError::Crc { .. } => Verdict::BadCrc,
                    FrameError::Length { .. } => Verdict::BadLength,
                    FrameError::Framing(_) => Verdict::Malformed,
                    _ => Verdict::Unsupported,
                };
                let reply = match verdict.answer() {
                    Some(Token::Nak) => Some(frame::nak(now_ms)),
                    // A header we cannot read cannot be echoed in a DUH; content errors
                    // of a readable header are caught after the header parsed, below.
                    _ => None,
                };
                return refuse(verdict, reply, e.to_string(), None);
            }
        };
        let account = Some(frame.account.clone());
        let duh = |verdict: Verdict, detail: String| refuse(verdict, Some(frame::duh(&frame)), detail, account.clone());
        if matches!(frame.token, Token::Ack | Token::Nak | Token::Duh) {
            return refuse(
                Verdict::Malformed,
                None,
                format!(
                    "account {} seq {}: a receiver does not answer a {}",
                    frame.account,
                    frame.seq,
                    frame.token.as_str()
                ),
                account,
            );
        }
        let Some(state) = self.accounts.get(&frame.account) else {
            return duh(
                Verdict::UnknownAccount,
                format!(
                    "account {} seq {}: not configured on this gateway",
                    frame.account, frame.seq
                ),
            );
        };
        let content = match (&frame.payload, &state.cfg.key) {
            (Payload::Plain(_), Some(_)) => {
                return duh(
                    Verdict::PlaintextRefused,
                    format!(
                        "account {} seq {}: plain frame for an account with a key",
                        frame.account, frame.seq
                    ),
                );
            }
            (Payload::Plain(c), None) => c.clone(),
            (Payload::Encrypted(_), None) => {
                return duh(
                    Verdict::KeyMissing,
                    format!(
                        "account {} seq {}: encrypted frame for an account without a key",
                        frame.account, frame.seq
                    ),
                );
            }
            (Payload::Encrypted(cipher), Some(key)) => match frame::open(&frame, cipher, key) {
                Ok(c) => c,
                Err(e) => return duh(Verdict::DecryptFailed, e.to_string()),
            },
        };
        if let Some(ts) = content.timestamp_ms
            && !(-MAX_BEHIND_MS..=MAX_AHEAD_MS).contains(&(ts - now_ms))
        {
            return refuse(
                Verdict::StaleTimestamp,
                Some(frame::nak(now_ms)),
                format!(
                    "account {} seq {}: timestamp {} is {} s off the receiver's clock (allowed +20/−40 s)",
                    frame.account,
                    frame.seq,
                    frame::format_timestamp(ts),
                    (ts - now_ms) / 1000
                ),
                account,
            );
        }
        if let Some(inner) = cid::data_account(&content.data)
            && inner != frame.account
        {
            return duh(
                Verdict::AccountMismatch,
                format!(
                    "account {} seq {}: data names account {inner}",
                    frame.account, frame.seq
                ),
            );
        }
        let signals = match frame.token {
            Token::Null => Vec::new(),
            Token::AdmCid => match cid::parse(&content.data) {
                Ok(ev) => vec![cid::map(&ev)],
                Err(e) => {
                    return duh(
                        Verdict::Unsupported,
                        format!("account {} seq {}: {e}", frame.account, frame.seq),
                    );
                }
            },
            Token::SiaDcs => match sia::parse(&content.data) {
                Ok(evs) => evs.iter().flat_map(sia::map).collect(),
                Err(e) => {
                    return duh(
                        Verdict::Unsupported,
                        format!("account {} seq {}: {e}", frame.account, frame.seq),
                    );
                }
            },
            Token::Ack | Token::Nak | Token::Duh => Vec::new(),
        };
        let fingerprint = fingerprint(frame.token, &content.data, &content.extended);
        let repeat = state
            .recent
            .iter()
            .any(|(seq, fp, at)| *seq == frame.seq && *fp == fingerprint && now_ms - at <= REPEAT_WINDOW_MS);
        let verdict = if frame.token == Token::Null {
            Verdict::Poll
        } else if repeat {
            Verdict::Duplicate
        } else {
            Verdict::Accepted
        };
        let reply = frame::ack(&frame, state.cfg.key.as_ref(), now_ms, pad);
        let signals = if verdict == Verdict::Duplicate {
            Vec::new()
        } else {
            signals
        };
        Outcome {
            verdict,
            reply: Some(reply),
            accepted: Some(Accepted {
                account: frame.account.clone(),
                device_id: state.cfg.device_id.clone(),
                seq: frame.seq.clone(),
                fingerprint,
                came_online: state.reported_online != Some(true),
                occurred_ms: content.timestamp_ms.unwrap_or(now_ms),
                signals,
            }),
            detail: None,
            account,
        }
    }

    /// Records an accepted frame once its events are committed.
    pub fn commit(&mut self, accepted: &Accepted, now_ms: i64) {
        let Some(state) = self.accounts.get_mut(&accepted.account) else {
            return;
        };
        state.last_heard_ms = now_ms;
        state.reported_online = Some(true);
        if !state
            .recent
            .iter()
            .any(|(s, fp, _)| *s == accepted.seq && *fp == accepted.fingerprint)
        {
            if state.recent.len() >= REMEMBERED {
                state.recent.pop_front();
            }
            state
                .recent
                .push_back((accepted.seq.clone(), accepted.fingerprint, now_ms));
        }
    }

    /// Panels whose supervision interval has passed since they were last heard: each is
    /// reported offline once (device id, reason), until it is heard again.
    pub fn supervise(&mut self, now_ms: i64) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for state in self.accounts.values_mut() {
            let quiet = now_ms - state.last_heard_ms;
            if quiet >= state.cfg.supervision_ms && state.reported_online != Some(false) {
                state.reported_online = Some(false);
                out.push((
                    state.cfg.device_id.clone(),
                    format!(
                        "DC-09 account {} silent for {} s (supervision {} s)",
                        state.cfg.account,
                        quiet / 1000,
                        state.cfg.supervision_ms / 1000
                    ),
                ));
            }
        }
        out.sort();
        out
    }

    /// Devices currently reported offline.
    pub fn offline_count(&self) -> usize {
        self.accounts
            .values()
            .filter(|s| s.reported_online == Some(false))
            .count()
    }
}

/// FNV-1a over the parts of a frame that make it the same message (not its timestamp:
/// a sender may restamp a retransmission).
fn fingerprint(token: Token, data: &str, extended: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    eat(token.as_str().as_bytes());
    eat(data.as_bytes());
    for x in extended {
        eat(x.as_bytes());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::{dc09::frame::Message, fire::FireKind};

    const T0: i64 = 1_764_115_620_000;

    fn receiver() -> Receiver {
        Receiver::new(
            vec![
                AccountConfig {
                    account: "1234".into(),
                    device_id: "fire-panel-1".into(),
                    key: None,
                    supervision_ms: 180_000,
                },
                AccountConfig {
                    account: "5678".into(),
                    device_id: "fire-panel-2".into(),
                    key: Some(Key::from_text("estate-a-panel01").expect("key")),
                    supervision_ms: 60_000,
                },
            ],
            T0,
        )
    }

    fn answer(o: &Outcome) -> Option<Token> {
        o.reply
            .as_ref()
            .map(|r| frame::parse(r).expect("our answers parse").token)
    }

    fn zero() -> impl FnMut() -> u8 {
        || b'0'
    }

    #[test]
    fn each_kind_of_frame_gets_the_standard_answer() {
        let r = receiver();
        let key = Key::from_text("estate-a-panel01").expect("key");
        let wrong = Key::from_text("estate-a-panel02").expect("key");
        let cid = |acct: &str, seq| Message::new(Token::AdmCid, seq, acct, &format!("#{acct}|1110 01 017"));
        let mut bad_crc = frame::encode(&cid("1234", 1));
        let stated = std::str::from_utf8(&bad_crc[1..5])
            .ok()
            .and_then(|s| u16::from_str_radix(s, 16).ok());
        bad_crc[1..5].copy_from_slice(format!("{:04X}", stated.expect("hex CRC") ^ 0x0101).as_bytes());
        let mut bad_len = frame::encode(&cid("1234", 1));
        bad_len[8] = b'F';
        let cases: Vec<(&str, Vec<u8>, Verdict, Option<Token>)> = vec![
            (
                "valid",
                frame::encode(&cid("1234", 1).with_timestamp(T0)),
                Verdict::Accepted,
                Some(Token::Ack),
            ),
            (
                "no timestamp",
                frame::encode(&cid("1234", 2)),
                Verdict::Accepted,
                Some(Token::Ack),
            ),
            (
                "poll",
                frame::encode(&Message::new(Token::Null, 3, "1234", "")),
                Verdict::Poll,
                Some(Token::Ack),
            ),
            ("bad CRC", bad_crc, Verdict::BadCrc, Some(Token::Nak)),
            ("wrong length", bad_len, Verdict::BadLength, Some(Token::Nak)),
            (
                "stale",
                frame::encode(&cid("1234", 4).with_timestamp(T0 - 41_000)),
                Verdict::StaleTimestamp,
                Some(Token::Nak),
            ),
            (
                "ahead",
                frame::encode(&cid("1234", 4).with_timestamp(T0 + 21_000)),
                Verdict::StaleTimestamp,
                Some(Token::Nak),
            ),
            (
                "edge behind",
                frame::encode(&cid("1234", 5).with_timestamp(T0 - 40_000)),
                Verdict::Accepted,
                Some(Token::Ack),
            ),
            (
                "unknown account",
                frame::encode(&cid("9999", 1)),
                Verdict::UnknownAccount,
                Some(Token::Duh),
            ),
            (
                "encrypted ok",
                frame::encode_encrypted(&cid("5678", 1), &key, T0, &mut zero()),
                Verdict::Accepted,
                Some(Token::Ack),
            ),
            (
                "wrong key",
                frame::encode_encrypted(&cid("5678", 2), &wrong, T0, &mut zero()),
                Verdict::DecryptFailed,
                Some(Token::Duh),
            ),
            (
                "plain for keyed",
                frame::encode(&cid("5678", 3)),
                Verdict::PlaintextRefused,
                Some(Token::Duh),
            ),
            (
                "encrypted for keyless",
                frame::encode_encrypted(&cid("1234", 6), &key, T0, &mut zero()),
                Verdict::KeyMissing,
                Some(Token::Duh),
            ),
            (
                "other account inside",
                frame::encode(&Message::new(Token::AdmCid, 7, "1234", "#4321|1110 01 017")),
                Verdict::AccountMismatch,
                Some(Token::Duh),
            ),
            (
                "not Contact ID",
                frame::encode(&Message::new(Token::AdmCid, 8, "1234", "#1234|hello")),
                Verdict::Unsupported,
                Some(Token::Duh),
            ),
            (
                "an ACK",
                frame::encode(&Message::new(Token::Ack, 8, "1234", "")),
                Verdict::Malformed,
                None,
            ),
            ("noise", b"GET / HTTP/1.1\r\n".to_vec(), Verdict::Malformed, None),
        ];
        for (name, bytes, verdict, token) in cases {
            let o = r.handle(&bytes, T0, &mut zero());
            assert_eq!((o.verdict, answer(&o)), (verdict, token), "{name}: {:?}", o.detail);
            let stored = o.accepted.as_ref().map_or(0, |a| a.signals.len());
            let want = usize::from(verdict == Verdict::Accepted);
            assert_eq!(stored, want, "{name}: nothing is stored unless accepted");
        }
    }

    #[test]
    fn answers_echo_the_frame_and_nak_carries_the_receivers_time() {
        let r = receiver();
        let msg = Message::new(Token::AdmCid, 42, "1234", "#1234|1110 01 017").with_receiver("3");
        let o = r.handle(&frame::encode(&msg), T0, &mut zero());
        let ack = frame::parse(o.reply.as_deref().expect("reply")).expect("ack");
        assert_eq!(
            (
                ack.seq.as_str(),
                ack.receiver.as_deref(),
                ack.line.as_deref(),
                ack.account.as_str()
            ),
            ("0042", Some("3"), Some("0"), "1234")
        );
        let o = r.handle(&frame::encode(&msg.with_timestamp(T0 - 3_600_000)), T0, &mut zero());
        let nak = frame::parse(o.reply.as_deref().expect("reply")).expect("nak");
        let Payload::Plain(c) = nak.payload else {
            panic!("a NAK is plain")
        };
        assert_eq!((nak.seq.as_str(), c.timestamp_ms), ("0000", Some(T0)));
        // An encrypted frame's ACK is encrypted, with the receiver's time inside.
        let key = Key::from_text("estate-a-panel01").expect("key");
        let enc = frame::encode_encrypted(&Message::new(Token::Null, 9, "5678", ""), &key, T0 + 5_000, &mut zero());
        let o = r.handle(&enc, T0 + 6_000, &mut zero());
        let ack = frame::parse(o.reply.as_deref().expect("reply")).expect("ack");
        assert!(ack.encrypted);
        let Payload::Encrypted(c) = &ack.payload else {
            panic!("encrypted")
        };
        assert_eq!(
            frame::open(&ack, c, &key).expect("opens").timestamp_ms,
            Some(T0 + 6_000)
        );
    }

    #[test]
    fn a_replayed_sequence_is_acked_again_and_stored_once() {
        let mut r = receiver();
        let bytes = frame::encode(&Message::new(Token::AdmCid, 7, "1234", "#1234|1110 01 017").with_timestamp(T0));
        let first = r.handle(&bytes, T0, &mut zero());
        assert_eq!(first.verdict, Verdict::Accepted);
        let a = first.accepted.expect("accepted");
        assert_eq!(a.signals[0].kind, Some(FireKind::FireAlarm));
        assert!(a.came_online);
        r.commit(&a, T0);
        let again = r.handle(&bytes, T0 + 2_000, &mut zero());
        assert_eq!((again.verdict, answer(&again)), (Verdict::Duplicate, Some(Token::Ack)));
        assert!(again.accepted.expect("still acked").signals.is_empty());
        // Same sequence number, different content (the sender restarted its count): new.
        let other = frame::encode(&Message::new(Token::AdmCid, 7, "1234", "#1234|3110 01 017").with_timestamp(T0));
        assert_eq!(r.handle(&other, T0 + 3_000, &mut zero()).verdict, Verdict::Accepted);
        // Not committed (the outbox failed): the retry is not a repeat.
        let r2 = receiver();
        let _ = r2.handle(&bytes, T0, &mut zero());
        assert_eq!(r2.handle(&bytes, T0 + 1_000, &mut zero()).verdict, Verdict::Accepted);
    }

    #[test]
    fn a_panel_that_stops_polling_goes_offline_once_and_online_on_its_next_frame() {
        let mut r = receiver();
        assert!(r.supervise(T0 + 59_000).is_empty());
        // fire-panel-2 (60 s) was never heard: offline after its interval.
        let off = r.supervise(T0 + 60_000);
        assert_eq!(off.len(), 1);
        assert_eq!(off[0].0, "fire-panel-2");
        assert!(r.supervise(T0 + 61_000).is_empty(), "reported once");
        let poll = frame::encode(&Message::new(Token::Null, 1, "1234", ""));
        let o = r.handle(&poll, T0 + 100_000, &mut zero());
        let a = o.accepted.expect("poll accepted");
        assert!(a.came_online);
        r.commit(&a, T0 + 100_000);
        assert!(
            !r.handle(&poll, T0 + 110_000, &mut zero())
                .accepted
                .expect("poll")
                .came_online
        );
        assert!(r.supervise(T0 + 279_000).is_empty(), "fire-panel-1 polled at +100 s");
        assert_eq!(
            r.supervise(T0 + 280_000),
            vec![(
                "fire-panel-1".to_string(),
                "DC-09 account 1234 silent for 180 s (supervision 180 s)".to_string()
            )]
        );
        assert_eq!(r.offline_count(), 2);
    }

    proptest::proptest! {
        #[test]
        fn the_parser_and_receiver_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let r = receiver();
            let _ = frame::parse(&bytes);
            let _ = frame::split(&bytes);
            let _ = r.handle(&bytes, T0, &mut zero());
        }

        #[test]
        fn framed_garbage_never_panics_and_is_never_accepted(body in "[ -~]{0,120}", bin in proptest::bool::ANY) {
            let r = receiver();
            let crc = super::super::crc::crc16_arc(body.as_bytes());
            let mut bytes = vec![b'\n'];
            if bin { bytes.extend_from_slice(&crc.to_be_bytes()); } else { bytes.extend_from_slice(format!("{crc:04X}").as_bytes()); }
            bytes.extend_from_slice(format!("{:04X}", body.len()).as_bytes());
            bytes.extend_from_slice(body.as_bytes());
            bytes.push(b'\r');
            let o = r.handle(&bytes, T0, &mut zero());
            // Random text is never taken as a configured panel's frame.
            proptest::prop_assert!(o.accepted.is_none());
        }
    }
}
