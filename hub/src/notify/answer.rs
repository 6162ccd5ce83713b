//! Answering a page (pure): the signed, expiring link token a notification carries, the SMS
//! reply code, and the reply text people send back.
//!
//! A token is `base64url(<notification id>.<expires ms>)` `.` `base64url(HMAC-SHA256(key,
//! domain ‖ payload))`: the link is the credential, so it is refused when its MAC does not
//! verify (compared in constant time) or its time is up. Whether it was already used is
//! the row's business (the writer checks it).
//!
//! Invariant: nothing here panics, whatever the input (a token or a reply comes from anyone
//! on the network).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Separates answer-link MACs from any other use of the key.
const LINK_DOMAIN: &[u8] = b"gatehouse answer link v1\n";
const REPLY_DOMAIN: &[u8] = b"gatehouse reply code v1\n";
/// Longer tokens are refused before any decoding (an id and a time, and a 32-byte MAC, fit
/// well within it).
const MAX_TOKEN: usize = 200;
/// Reply-code characters: no 0/O, 1/I, so that a code read aloud or retyped survives. 32 of
/// them, so a byte modulo 32 has no bias.
pub const REPLY_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
pub const REPLY_CODE_LEN: usize = 6;

/// The key answer links and reply codes are signed with. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkKey(Vec<u8>);

impl LinkKey {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        LinkKey(bytes.into())
    }

    fn mac(&self, domain: &[u8], payload: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(domain);
        mac.update(payload);
        mac
    }
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(<redacted>)")
    }
}

/// Why a link is refused before its row is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a token we signed (tampered, truncated, garbage): 403.
    #[error("this link is not valid")]
    Forged,
    /// Signed by us, but its time is up: 410.
    #[error("this link has expired")]
    Expired,
}

/// What a verified token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkClaim {
    pub notification_id: i64,
    pub expires_at_ms: i64,
}

/// A person's answer to a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Acknowledged,
    OnTheWay,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Acknowledged => "acknowledged",
            Answer::OnTheWay => "on_the_way",
        }
    }

    pub fn parse(s: &str) -> Option<Answer> {
        match s.trim() {
            "acknowledged" => Some(Answer::Acknowledged),
            "on_the_way" => Some(Answer::OnTheWay),
            _ => None,
        }
    }
}

/// How the answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerVia {
    Link,
    SmsReply,
}

impl AnswerVia {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerVia::Link => "link",
            AnswerVia::SmsReply => "sms_reply",
        }
    }
}

/// The timeline's line for an answer, naming the person.
pub fn timeline_text(name: &str, answer: Answer, via: AnswerVia) -> String {
    let via = match via {
        AnswerVia::Link => "via link",
        AnswerVia::SmsReply => "via SMS reply",
    };
    match answer {
        Answer::Acknowledged => format!("{name} acknowledged {via}"),
        Answer::OnTheWay => format!("{name} is on the way ({via})"),
    }
}

/// The token of notification `id`'s link, working until `expires_at_ms`.
pub fn sign(key: &LinkKey, id: i64, expires_at_ms: i64) -> String {
    let payload = format!("{id}.{expires_at_ms}");
    let tag = key.mac(LINK_DOMAIN, payload.as_bytes()).finalize().into_bytes();
    format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag))
}

/// Checks a token: signed with `key` (constant-time), and not expired at `now`.
pub fn verify(token: &str, key: &LinkKey, now: i64) -> Result<LinkClaim, Refusal> {
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err(Refusal::Forged);
    }
    let (payload, tag) = token.split_once('.').ok_or(Refusal::Forged)?;
    // The strict decoder refuses non-canonical trailing bits: one changed character never
    // decodes to the same bytes.
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Refusal::Forged)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| Refusal::Forged)?;
    key.mac(LINK_DOMAIN, &payload)
        .verify_slice(&tag)
        .map_err(|_| Refusal::Forged)?;
    // Signed by us, so well-formed; parsed defensively all the same.
    let text = std::str::from_utf8(&payload).map_err(|_| Refusal::Forged)?;
    let (id, expires) = text.split_once('.').ok_or(Refusal::Forged)?;
    let notification_id = id.parse::<i64>().map_err(|_| Refusal::Forged)?;
    let expires_at_ms = expires.parse::<i64>().map_err(|_| Refusal::Forged)?;
    if now >= expires_at_ms {
        return Err(Refusal::Expired);
    }
    Ok(LinkClaim {
        notification_id,
        expires_at_ms,
    })
}

/// The reply code of notification `id`, `attempt` 0, 1, … (a later attempt when an earlier
/// code is taken by another pending row): derived from the key, so nobody can guess it.
pub fn reply_code(key: &LinkKey, id: i64, attempt: u32) -> String {
    let payload = format!("{id}.{attempt}");
    let tag = key.mac(REPLY_DOMAIN, payload.as_bytes()).finalize().into_bytes();
    tag.iter()
        .take(REPLY_CODE_LEN)
        .map(|b| char::from(REPLY_ALPHABET[usize::from(b % 32)]))
        .collect()
}

/// An SMS reply: `ACK <code>` or `确认 <code>` acknowledges, `OMW <code>` says on my way
/// (case-insensitive; spaces, full-width spaces and tabs between). `None` when it is not one.
pub fn parse_reply(text: &str) -> Option<(Answer, String)> {
    let mut words = text
        .split(|c: char| c.is_whitespace() || c == '\u{3000}')
        .filter(|w| !w.is_empty());
    let verb = words.next()?;
    let code = words.next()?;
    if words.next().is_some() {
        return None;
    }
    let answer = match verb.to_uppercase().as_str() {
        "ACK" | "确认" => Answer::Acknowledged,
        "OMW" => Answer::OnTheWay,
        _ => return None,
    };
    let code = code.to_ascii_uppercase();
    let valid = code.len() == REPLY_CODE_LEN && code.bytes().all(|b| REPLY_ALPHABET.contains(&b));
    valid.then_some((answer, code))
}

/// Constant-time comparison of two byte strings (bearer tokens): HMAC both under a fixed
/// key and verify one tag against the other, so neither length nor content leaks by timing.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let key = LinkKey::new(b"gatehouse bearer comparison".to_vec());
    let tag = key.mac(b"", expected).finalize().into_bytes();
    key.mac(b"", given).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> LinkKey {
        LinkKey::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let t = sign(&key(), 42, 1_000);
        assert_eq!(
            verify(&t, &key(), 999),
            Ok(LinkClaim {
                notification_id: 42,
                expires_at_ms: 1_000
            })
        );
        assert_eq!(verify(&t, &key(), 1_000), Err(Refusal::Expired));
    }

    #[test]
    fn another_key_a_changed_character_or_a_moved_id_is_forged() {
        let t = sign(&key(), 42, 1_000);
        assert_eq!(verify(&t, &LinkKey::new(b"other".to_vec()), 0), Err(Refusal::Forged));
        for i in 0..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(b).unwrap();
            if changed != t {
                assert_eq!(verify(&changed, &key(), 0), Err(Refusal::Forged), "position {i}");
            }
        }
        let (_, mac) = t.split_once('.').unwrap();
        let moved = format!("{}.{mac}", URL_SAFE_NO_PAD.encode("43.1000"));
        assert_eq!(verify(&moved, &key(), 0), Err(Refusal::Forged));
        let later = format!("{}.{mac}", URL_SAFE_NO_PAD.encode("42.99999999"));
        assert_eq!(verify(&later, &key(), 0), Err(Refusal::Forged));
    }

    #[test]
    fn garbage_is_forged() {
        for g in [
            "",
            ".",
            "..",
            "abc",
            "a.b",
            "%%.%%",
            &"A".repeat(10_000),
            "NDIuMTAwMA.",
            "é.é",
        ] {
            assert_eq!(verify(g, &key(), 0), Err(Refusal::Forged), "{g:?}");
        }
    }

    #[test]
    fn reply_codes_use_the_unambiguous_alphabet_and_differ_by_attempt() {
        let a = reply_code(&key(), 7, 0);
        assert_eq!(a.len(), REPLY_CODE_LEN);
        assert!(a.bytes().all(|b| REPLY_ALPHABET.contains(&b)), "{a}");
        assert!(!a.contains(['0', 'O', '1', 'I']));
        assert_ne!(a, reply_code(&key(), 7, 1));
        assert_eq!(a, reply_code(&key(), 7, 0));
    }

    #[test]
    fn replies_parse_in_either_language_and_case() {
        assert_eq!(parse_reply("ACK 7K3Q9P"), Some((Answer::Acknowledged, "7K3Q9P".into())));
        assert_eq!(parse_reply("  omw\t7k3q9p "), Some((Answer::OnTheWay, "7K3Q9P".into())));
        assert_eq!(
            parse_reply("确认\u{3000}7K3Q9P"),
            Some((Answer::Acknowledged, "7K3Q9P".into()))
        );
        assert_eq!(parse_reply("ACK"), None);
        assert_eq!(parse_reply("ACK 7K3Q9P extra"), None);
        assert_eq!(parse_reply("ACK 0K3Q9P"), None, "0 is not in the alphabet");
        assert_eq!(parse_reply("YES 7K3Q9P"), None);
    }

    #[test]
    fn bearer_comparison() {
        assert!(same_secret(b"token-abc", b"token-abc"));
        assert!(!same_secret(b"token-abd", b"token-abc"));
        assert!(!same_secret(b"", b"token-abc"));
    }

    #[test]
    fn the_key_never_prints() {
        assert_eq!(format!("{:?}", key()), "LinkKey(<redacted>)");
    }

    proptest! {
        #[test]
        fn verify_never_panics(s in ".{0,300}", now in any::<i64>()) {
            let _ = verify(&s, &key(), now);
        }

        #[test]
        fn verify_never_panics_on_token_shaped_input(a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,80}") {
            let token = format!("{a}.{b}");
            prop_assert!(verify(&token, &key(), 0).is_err());
        }

        #[test]
        fn every_signed_token_round_trips(id in any::<i64>(), exp in any::<i64>(), now in any::<i64>()) {
            let t = sign(&key(), id, exp);
            let r = verify(&t, &key(), now);
            if now >= exp {
                prop_assert_eq!(r, Err(Refusal::Expired));
            } else {
                prop_assert_eq!(r, Ok(LinkClaim { notification_id: id, expires_at_ms: exp }));
            }
        }

        #[test]
        fn parse_reply_never_panics(s in ".{0,100}") {
            let _ = parse_reply(&s);
        }
    }
}
