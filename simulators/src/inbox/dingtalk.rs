//! The DingTalk custom robot's side of a webhook (自定义机器人, "加签" security setting), written
//! from DingTalk's documentation: the sender adds `timestamp` (ms) and `sign` to the robot's
//! URL, where `sign` = urlEncode(base64(HMAC-SHA256(key = secret, msg = timestamp + "\n" +
//! secret))) and the timestamp is within an hour of the receiver's clock; the body is a JSON
//! message (`text`, `markdown`, `link`, `actionCard`). Pure: no I/O, the clock is passed in.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// DingTalk's error code for a signature (or its timestamp) that does not check out.
pub const ERR_SIGN: i64 = 310_000;
/// DingTalk's error code for an unknown `access_token`.
pub const ERR_TOKEN: i64 = 300_001;
/// DingTalk's error code for a missing or unreadable JSON body.
pub const ERR_JSON: i64 = 40_035;

/// How far a request's timestamp may be from the receiver's clock.
pub const MAX_SKEW_MS: i64 = 3_600_000;

/// What the robot was set up with.
#[derive(Clone)]
pub struct RobotKeys {
    pub access_token: String,
    /// The `SEC…` signing secret.
    pub secret: String,
}

impl std::fmt::Debug for RobotKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RobotKeys(<redacted>)")
    }
}

fn mac(secret: &str, timestamp: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(secret.as_bytes());
    mac
}

/// The `sign` value before URL encoding (what a query parser hands the receiver).
pub fn sign(secret: &str, timestamp: &str) -> String {
    STANDARD.encode(mac(secret, timestamp).finalize().into_bytes())
}

/// Why a request did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Token,
    MissingSign,
    BadTimestamp,
    Stale { skew_ms: i64 },
    SignMismatch,
}

impl Refusal {
    pub fn errcode(&self) -> i64 {
        match self {
            Refusal::Token => ERR_TOKEN,
            _ => ERR_SIGN,
        }
    }

    pub fn errmsg(&self) -> String {
        match self {
            Refusal::Token => "token is not exist".into(),
            Refusal::MissingSign => "sign not match, more: [timestamp and sign are required]".into(),
            Refusal::BadTimestamp => "sign not match, more: [timestamp is not a number of milliseconds]".into(),
            Refusal::Stale { skew_ms } => {
                format!(
                    "sign not match, more: [timestamp is {} s from now, over 1 hour]",
                    skew_ms / 1000
                )
            }
            Refusal::SignMismatch => "sign not match".into(),
        }
    }
}

/// Checks a request's query parameters (already percent-decoded) against `keys` at `now_ms`.
pub fn verify(
    keys: &RobotKeys,
    access_token: Option<&str>,
    timestamp: Option<&str>,
    sign: Option<&str>,
    now_ms: i64,
) -> Result<(), Refusal> {
    if !constant_eq(access_token.unwrap_or("").as_bytes(), keys.access_token.as_bytes()) {
        return Err(Refusal::Token);
    }
    let (Some(ts), Some(sign)) = (timestamp, sign) else {
        return Err(Refusal::MissingSign);
    };
    let ms: i64 = ts.parse().map_err(|_| Refusal::BadTimestamp)?;
    let skew_ms = now_ms.saturating_sub(ms).saturating_abs();
    if skew_ms > MAX_SKEW_MS {
        return Err(Refusal::Stale { skew_ms });
    }
    let given = STANDARD.decode(sign).map_err(|_| Refusal::SignMismatch)?;
    mac(&keys.secret, ts)
        .verify_slice(&given)
        .map_err(|_| Refusal::SignMismatch)
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A message's kind, title and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub msgtype: String,
    pub title: Option<String>,
    pub text: String,
}

/// Reads a robot message body; `Err` says what is wrong with it.
pub fn parse_body(body: &[u8]) -> Result<Content, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let msgtype = v["msgtype"].as_str().ok_or("missing msgtype")?;
    let field = |obj: &str, key: &str| v[obj][key].as_str().map(str::to_owned);
    let (title, text) = match msgtype {
        "text" => (None, field("text", "content")),
        "markdown" => (field("markdown", "title"), field("markdown", "text")),
        "link" => (field("link", "title"), field("link", "text")),
        "actionCard" => (field("actionCard", "title"), field("actionCard", "text")),
        other => return Err(format!("unsupported msgtype {other:?}")),
    };
    let text = text.ok_or_else(|| format!("{msgtype} message without its text"))?;
    Ok(Content {
        msgtype: msgtype.to_owned(),
        title,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> RobotKeys {
        RobotKeys {
            access_token: "tok".into(),
            secret: "SECabc".into(),
        }
    }

    #[test]
    fn sign_matches_the_documented_algorithm() {
        // Computed with the Python sample of DingTalk's documentation:
        // quote_plus(b64encode(hmac.new(b"secret", b"1700000000000\nsecret", sha256).digest())),
        // which gives "OuzzJR5%2BxZ4%2FEYwqtNt6sMYZQMTa%2FHEGvc9miJe7XzY%3D" (decoded below).
        assert_eq!(
            sign("secret", "1700000000000"),
            "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY="
        );
    }

    #[test]
    fn verify_checks_token_timestamp_window_and_signature() {
        let now = 1_700_000_000_000;
        let ts = now.to_string();
        let good = sign("SECabc", &ts);
        assert_eq!(verify(&keys(), Some("tok"), Some(&ts), Some(&good), now), Ok(()));
        // An hour either way is still fine; more is not, even correctly signed.
        assert_eq!(
            verify(&keys(), Some("tok"), Some(&ts), Some(&good), now + MAX_SKEW_MS),
            Ok(())
        );
        let old = (now - MAX_SKEW_MS - 1).to_string();
        assert!(matches!(
            verify(&keys(), Some("tok"), Some(&old), Some(&sign("SECabc", &old)), now),
            Err(Refusal::Stale { .. })
        ));
        assert_eq!(
            verify(&keys(), Some("nope"), Some(&ts), Some(&good), now),
            Err(Refusal::Token)
        );
        assert_eq!(verify(&keys(), None, Some(&ts), Some(&good), now), Err(Refusal::Token));
        assert_eq!(
            verify(&keys(), Some("tok"), Some(&ts), Some(&sign("SECother", &ts)), now),
            Err(Refusal::SignMismatch)
        );
        assert_eq!(
            verify(&keys(), Some("tok"), Some(&ts), Some("not base64!"), now),
            Err(Refusal::SignMismatch)
        );
        assert_eq!(
            verify(&keys(), Some("tok"), None, Some(&good), now),
            Err(Refusal::MissingSign)
        );
        assert_eq!(
            verify(&keys(), Some("tok"), Some("soon"), Some(&good), now),
            Err(Refusal::BadTimestamp)
        );
        // Extreme timestamps do not overflow.
        assert!(verify(&keys(), Some("tok"), Some(&i64::MIN.to_string()), Some(&good), i64::MAX).is_err());
        assert_eq!(Refusal::SignMismatch.errcode(), ERR_SIGN);
    }

    #[test]
    fn bodies_of_each_supported_type_are_read_and_bad_ones_refused() {
        let md = br#"{"msgtype":"markdown","markdown":{"title":"T","text":"**x**"}}"#;
        assert_eq!(
            parse_body(md),
            Ok(Content {
                msgtype: "markdown".into(),
                title: Some("T".into()),
                text: "**x**".into()
            })
        );
        let text = parse_body(br#"{"msgtype":"text","text":{"content":"hi"}}"#).unwrap();
        assert_eq!((text.title, text.text.as_str()), (None, "hi"));
        for bad in [
            &b"{"[..],
            b"[]",
            b"\"x\"",
            br#"{"msgtype":"feedCard"}"#,
            br#"{"msgtype":"markdown","markdown":{"title":"T"}}"#,
            br#"{"msgtype":"text","text":{"content":7}}"#,
            b"\xff\xfe",
        ] {
            assert!(parse_body(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
