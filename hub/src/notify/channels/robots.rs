//! Chat-group robots: WeCom, DingTalk, Feishu/Lark, Slack, Teams — each platform's message
//! format and signing scheme, and reading its answer (a platform that says HTTP 200 with an
//! error code refused the message).
//!
//! As documented by each platform:
//! - WeCom (企业微信) group robot, <https://developer.work.weixin.qq.com/document/path/91770>:
//!   `{"msgtype":"markdown","markdown":{"content":…}}`, content at most 4096 bytes (UTF-8),
//!   at most 20 messages a minute per robot; answer `{"errcode":0,"errmsg":"ok"}`, e.g.
//!   `93000` invalid webhook URL, `45009` over the rate limit (retried with backoff).
//! - DingTalk (钉钉) custom robot,
//!   <https://open.dingtalk.com/document/robots/customize-robot-security-settings>: with 加签,
//!   query parameters `timestamp` (ms) and `sign` = urlEncode(base64(HmacSHA256(key = secret,
//!   msg = timestamp + "\n" + secret))), the timestamp within one hour of DingTalk's clock;
//!   `msgtype` markdown `{title, text}`; answer `errcode` 0, e.g. `310000` "sign not match".
//! - Feishu / Lark custom bot, <https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot>:
//!   `timestamp` (s, a string) and `sign` = base64(HmacSHA256(key = timestamp + "\n" + secret,
//!   msg = "")) in the body; `msg_type` `interactive` (a card with a markdown element); answer
//!   `code` 0 (older deployments: `StatusCode`), e.g. `19021` sign match fail.
//! - Slack incoming webhooks, <https://api.slack.com/messaging/webhooks>: `{"text", "blocks"}`
//!   in mrkdwn (`&`, `<`, `>` escaped, links `<url|text>`); answer 200 `ok`, errors as 4xx with
//!   a word (`invalid_payload`, `no_service`).
//! - Microsoft Teams workflow webhooks ("When a Teams webhook request is received",
//!   <https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using>):
//!   Workflows take Adaptive Cards only (not the retired connectors' MessageCard): a `message`
//!   with one `application/vnd.microsoft.card.adaptive` attachment (version 1.4 renders
//!   everywhere Teams does); answer 202 Accepted.
//!
//! The URL carries the robot's token: it is kept as a [`Secret`] and never put in a reason or a
//! log line; reqwest's errors are stripped of it.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{ChannelSetupError, SendError, Sent};
use crate::notify::config::{RobotConfig, RobotKind, Secret, resolve_secret};
use crate::notify::message::{Message, link_words};
use crate::notify::outbox::WebhookResult;
use crate::notify::tls::{client_with_ca, error_chain, is_tls_failure};

/// WeCom's documented limit of a markdown message's content, in bytes.
const WECOM_MAX_BYTES: usize = 4096;
/// DingTalk and Feishu bound the request (about 20 KB); the text is cut well below.
const SIGNED_MAX_BYTES: usize = 16 * 1024;
/// Slack: a section's text is at most 3000 characters, a header's 150.
const SLACK_SECTION_MAX: usize = 3000;
const SLACK_HEADER_MAX: usize = 150;
/// The most of an answer read: platforms answer a few hundred bytes.
const ANSWER_MAX_BYTES: usize = 64 * 1024;

/// One configured robot.
#[derive(Debug)]
pub struct Robot {
    kind: RobotKind,
    /// The webhook URL (it carries the token).
    url: Secret,
    /// DingTalk's / Feishu's signing secret.
    secret: Option<Secret>,
    client: reqwest::Client,
}

impl Robot {
    /// `index` is its place in `[[notify.robots]]`, for error messages; `default_ca` is
    /// `notify.ca_file`, trusted when the robot names no `ca_file` of its own.
    pub fn build(
        index: usize,
        config: &RobotConfig,
        default_ca: Option<&Path>,
        timeout: Duration,
    ) -> Result<Robot, ChannelSetupError> {
        let key = |f: &str| format!("notify.robots[{index}].{f}");
        let invalid = |f: &str, detail: String| ChannelSetupError::Invalid { key: key(f), detail };
        let url = resolve_secret(&key("url"), config.url.as_ref(), config.url_env.as_deref())
            .map_err(|d| invalid("url", d))?
            .ok_or_else(|| invalid("url", "set url or url_env".into()))?;
        check_url(url.expose(), config.ca_file.is_some()).map_err(|d| invalid("url", d.into()))?;
        let secret = resolve_secret(&key("secret"), config.secret.as_ref(), config.secret_env.as_deref())
            .map_err(|d| invalid("secret", d))?;
        if config.kind.signed() && secret.is_none() {
            return Err(invalid(
                "secret",
                format!("a {} robot needs its signing secret", config.kind.as_str()),
            ));
        }
        let ca = config.ca_file.as_deref().or(default_ca);
        let client = client_with_ca(ca, timeout)?;
        Ok(Robot {
            kind: config.kind,
            url,
            secret,
            client,
        })
    }

    pub fn kind(&self) -> RobotKind {
        self.kind
    }

    /// Posts `msg` in the platform's format; `Delivered` when the platform says it took it.
    pub async fn send(&self, msg: &Message) -> Result<Sent, SendError> {
        let platform = self.kind.as_str();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut url = url::Url::parse(self.url.expose()).map_err(|_| {
            SendError::new(
                WebhookResult::Other,
                format!("{platform}: the robot's URL is not valid"),
            )
        })?;
        let secret = self.secret.as_ref().map(Secret::expose);
        let payload = match self.kind {
            RobotKind::Wecom => wecom_payload(msg),
            RobotKind::Dingtalk => {
                if let Some(secret) = secret {
                    let ts = now.as_millis().to_string();
                    // `append_pair` form-encodes: `+`, `/`, `=` of the base64 become %2B, %2F, %3D.
                    url.query_pairs_mut()
                        .append_pair("timestamp", &ts)
                        .append_pair("sign", &dingtalk_sign(&ts, secret));
                }
                dingtalk_payload(msg)
            }
            RobotKind::Feishu => {
                let mut p = feishu_payload(msg);
                if let Some(secret) = secret {
                    let ts = now.as_secs().to_string();
                    p["sign"] = Value::String(feishu_sign(&ts, secret));
                    p["timestamp"] = Value::String(ts);
                }
                p
            }
            RobotKind::Slack => slack_payload(msg),
            RobotKind::Teams => teams_payload(msg),
        };
        let sent = self.client.post(url).json(&payload).send().await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return Err(self.request_error(e)),
        };
        let status = response.status();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(c)) => {
                    let room = ANSWER_MAX_BYTES.saturating_sub(body.len());
                    body.extend_from_slice(&c[..c.len().min(room)]);
                    if body.len() >= ANSWER_MAX_BYTES {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(self.request_error(e)),
            }
        }
        let answer = String::from_utf8_lossy(&body);
        match judge(self.kind, status.as_u16(), &answer) {
            Ok(()) => Ok(Sent::Delivered),
            Err(why) => Err(SendError::new(
                WebhookResult::Refused,
                self.scrub(&format!("{platform} {why}")),
            )),
        }
    }

    fn request_error(&self, e: reqwest::Error) -> SendError {
        let platform = self.kind.as_str();
        let (result, why) = if e.is_timeout() {
            (WebhookResult::Unreachable, "request failed: timed out".to_owned())
        } else if is_tls_failure(&e) {
            (
                WebhookResult::Tls,
                format!(
                    "TLS handshake failed: {}; the robot's certificate must chain to the system's roots or to its ca_file",
                    error_chain(&e.without_url())
                ),
            )
        } else {
            (
                WebhookResult::Unreachable,
                format!("request failed: {}", error_chain(&e.without_url())),
            )
        };
        SendError::new(result, self.scrub(&format!("{platform}: {why}")))
    }

    /// A reason with the URL (and its query, which holds the token) taken out, in case an
    /// error or a platform's answer quoted it.
    fn scrub(&self, reason: &str) -> String {
        let url = self.url.expose();
        let mut out = reason.replace(url, "<robot>");
        if let Ok(u) = url::Url::parse(url) {
            if let Some(q) = u.query().filter(|q| q.len() >= 8) {
                out = out.replace(q, "<token>");
            }
            // Slack's and Teams' tokens are path segments.
            for seg in u.path_segments().into_iter().flatten().filter(|s| s.len() >= 16) {
                out = out.replace(seg, "<token>");
            }
        }
        if let Some(s) = &self.secret {
            out = out.replace(s.expose(), "<secret>");
        }
        out
    }
}

/// A robot's URL must be https (its token crosses the network), http only to loopback (a
/// relay or a test); a `ca_file` only makes sense with https. The reason never quotes the URL:
/// it is the robot's credential.
pub fn check_url(url: &str, has_ca_file: bool) -> Result<(), &'static str> {
    let u = url::Url::parse(url).map_err(|_| "not a URL")?;
    let loopback = match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match u.scheme() {
        "https" if u.host().is_some() => Ok(()),
        "http" if loopback && has_ca_file => Err("ca_file is for https:// robots only"),
        "http" if loopback => Ok(()),
        "http" => Err("must be https:// (http:// only to a loopback address)"),
        _ => Err("must be an https:// URL"),
    }
}

/// Whether the platform took the message: `Err` names the status or the platform's code and
/// message.
fn judge(kind: RobotKind, status: u16, answer: &str) -> Result<(), String> {
    let json: Option<Value> = serde_json::from_str(answer).ok();
    let field = |names: &[&str]| -> Option<Value> {
        let j = json.as_ref()?;
        names.iter().find_map(|n| j.get(*n).cloned())
    };
    let text_of = |v: Option<Value>| match v {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    if !(200..300).contains(&status) {
        let detail = match kind {
            RobotKind::Wecom | RobotKind::Dingtalk => text_of(field(&["errmsg"])),
            RobotKind::Feishu => text_of(field(&["msg", "StatusMessage"])),
            RobotKind::Slack | RobotKind::Teams => answer.to_owned(),
        };
        return Err(with_detail(format!("answered HTTP {status}"), &detail));
    }
    match kind {
        RobotKind::Wecom | RobotKind::Dingtalk => match field(&["errcode"]) {
            Some(c) if c.as_i64() == Some(0) => Ok(()),
            Some(c) => Err(with_detail(
                format!("answered errcode {}", text_of(Some(c))),
                &text_of(field(&["errmsg"])),
            )),
            None => Err(with_detail("answered without an errcode".into(), answer)),
        },
        RobotKind::Feishu => match field(&["code", "StatusCode"]) {
            Some(c) if c.as_i64() == Some(0) => Ok(()),
            Some(c) => Err(with_detail(
                format!("answered code {}", text_of(Some(c))),
                &text_of(field(&["msg", "StatusMessage"])),
            )),
            None => Err(with_detail("answered without a code".into(), answer)),
        },
        RobotKind::Slack if answer.trim() == "ok" => Ok(()),
        RobotKind::Slack => Err(with_detail(format!("answered HTTP {status}"), answer)),
        RobotKind::Teams => Ok(()),
    }
}

/// `what: detail`, the detail on one line and short (it is the platform's text).
fn with_detail(what: String, detail: &str) -> String {
    let detail: String = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    if detail.is_empty() {
        return what;
    }
    let cut: String = detail.chars().take(200).collect();
    format!("{what}: {cut}")
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn cut_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut n = max;
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

fn cut_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// DingTalk: base64(HmacSHA256(key = secret, msg = timestamp + "\n" + secret)), not yet
/// URL-encoded.
pub fn dingtalk_sign(timestamp_ms: &str, secret: &str) -> String {
    B64.encode(hmac_sha256(
        secret.as_bytes(),
        format!("{timestamp_ms}\n{secret}").as_bytes(),
    ))
}

/// Feishu: base64(HmacSHA256(key = timestamp + "\n" + secret, msg = "")).
pub fn feishu_sign(timestamp_s: &str, secret: &str) -> String {
    B64.encode(hmac_sha256(format!("{timestamp_s}\n{secret}").as_bytes(), b""))
}

fn wecom_payload(msg: &Message) -> Value {
    json!({"msgtype": "markdown", "markdown": {"content": cut_bytes(&msg.markdown, WECOM_MAX_BYTES)}})
}

fn dingtalk_payload(msg: &Message) -> Value {
    // DingTalk's markdown joins lines that end without two spaces.
    let text = msg.markdown.replace('\n', "  \n");
    json!({
        "msgtype": "markdown",
        "markdown": {"title": msg.title, "text": cut_bytes(&text, SIGNED_MAX_BYTES)},
    })
}

fn feishu_payload(msg: &Message) -> Value {
    json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {"title": {"tag": "plain_text", "content": msg.title}},
            "elements": [{"tag": "markdown", "content": cut_bytes(&msg.markdown, SIGNED_MAX_BYTES)}],
        },
    })
}

/// Slack's mrkdwn reserves `&`, `<` and `>`.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn slack_link(url: &str, text: &str) -> String {
    // `|` and `>` end the URL part of a link.
    let url = url.replace('|', "%7C").replace('>', "%3E");
    format!("<{}|{}>", slack_escape(&url), slack_escape(text))
}

fn slack_payload(msg: &Message) -> Value {
    let (incident, answer) = link_words(msg.language);
    let facts = msg
        .facts
        .iter()
        .map(|(k, v)| format!("*{}*: {}", slack_escape(k), slack_escape(v)))
        .collect::<Vec<_>>()
        .join("\n");
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut_chars(&msg.title, SLACK_HEADER_MAX)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut_chars(&facts, SLACK_SECTION_MAX)}}),
    ];
    let mut links = Vec::new();
    if let Some(u) = &msg.incident_url {
        links.push(slack_link(u, incident));
    }
    if let Some(u) = &msg.answer_url {
        links.push(slack_link(u, answer));
    }
    if let Some(h) = &msg.reply_hint {
        links.push(slack_escape(h));
    }
    if !links.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut_chars(&links.join("\n"), SLACK_SECTION_MAX)}}));
    }
    json!({"text": msg.title, "blocks": blocks})
}

fn teams_payload(msg: &Message) -> Value {
    let (incident, answer) = link_words(msg.language);
    let mut body = vec![
        json!({"type": "TextBlock", "text": msg.title, "weight": "Bolder", "size": "Medium", "wrap": true}),
        json!({"type": "FactSet", "facts": msg.facts.iter().map(|(k, v)| json!({"title": k, "value": v})).collect::<Vec<_>>()}),
    ];
    if let Some(h) = &msg.reply_hint {
        body.push(json!({"type": "TextBlock", "text": h, "wrap": true, "isSubtle": true}));
    }
    let mut actions = Vec::new();
    if let Some(u) = &msg.incident_url {
        actions.push(json!({"type": "Action.OpenUrl", "title": incident, "url": u}));
    }
    if let Some(u) = &msg.answer_url {
        actions.push(json!({"type": "Action.OpenUrl", "title": answer, "url": u}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": actions,
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dingtalk_sign_matches_the_documented_algorithm() {
        // Computed with DingTalk's documented Python sample (hmac/hashlib/base64) for
        // timestamp 1700000000000 and secret "secret".
        assert_eq!(
            dingtalk_sign("1700000000000", "secret"),
            "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY="
        );
    }

    #[test]
    fn platform_error_codes_are_refusals_naming_code_and_message() {
        let e = judge(
            RobotKind::Dingtalk,
            200,
            r#"{"errcode":310000,"errmsg":"sign not match"}"#,
        )
        .unwrap_err();
        assert_eq!(e, "answered errcode 310000: sign not match");
        assert!(judge(RobotKind::Dingtalk, 200, r#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        assert!(judge(RobotKind::Wecom, 200, r#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        let e = judge(
            RobotKind::Wecom,
            200,
            r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#,
        )
        .unwrap_err();
        assert!(e.contains("93000") && e.contains("invalid webhook url"), "{e}");
        assert!(judge(RobotKind::Feishu, 200, r#"{"code":0,"msg":"success","data":{}}"#).is_ok());
        assert!(judge(RobotKind::Feishu, 200, r#"{"StatusCode":0,"StatusMessage":"success"}"#).is_ok());
        let e = judge(RobotKind::Feishu, 200, r#"{"code":19021,"msg":"sign match fail"}"#).unwrap_err();
        assert!(e.contains("19021") && e.contains("sign match fail"), "{e}");
        assert!(judge(RobotKind::Slack, 200, "ok").is_ok());
        assert!(
            judge(RobotKind::Slack, 400, "invalid_payload")
                .unwrap_err()
                .contains("invalid_payload")
        );
        assert!(judge(RobotKind::Teams, 202, "").is_ok());
        assert!(judge(RobotKind::Teams, 400, "bad").is_err());
        assert!(judge(RobotKind::Dingtalk, 200, "<html>").is_err());
    }

    #[test]
    fn a_robot_url_is_https_or_loopback_http_and_no_refusal_quotes_it() {
        assert!(check_url("https://oapi.dingtalk.com/robot/send?access_token=T", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook", false).is_ok());
        assert!(check_url("http://[::1]:8080/hook", false).is_ok());
        assert!(check_url("http://localhost/hook", false).is_ok());
        assert!(check_url("http://10.0.0.5/hook", false).is_err());
        assert!(
            check_url("http://127.0.0.1/hook", true)
                .unwrap_err()
                .contains("ca_file")
        );
        assert!(check_url("ftp://x.example/hook", false).is_err());
        assert!(check_url("not a url", false).is_err());

        let config = |url: &str| RobotConfig {
            name: "r".into(),
            kind: RobotKind::Dingtalk,
            url: Some(Secret::new(url)),
            url_env: None,
            secret: Some(Secret::new("SECx")),
            secret_env: None,
            ca_file: None,
        };
        let e = Robot::build(
            2,
            &config("http://10.0.0.5/robot/send?access_token=TOKEN99"),
            None,
            Duration::from_secs(1),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("notify.robots[2].url") && !e.contains("TOKEN99"), "{e}");
        let mut unset = config("https://x.example/send");
        unset.url = None;
        unset.url_env = Some("GATEHOUSE_TEST_SURELY_UNSET_ROBOT_URL".into());
        let e = Robot::build(0, &unset, None, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("GATEHOUSE_TEST_SURELY_UNSET_ROBOT_URL"), "{e}");
        let mut unsigned = config("https://x.example/send");
        unsigned.secret = None;
        let e = Robot::build(0, &unsigned, None, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("notify.robots[0].secret"), "{e}");
        let robot = Robot::build(
            0,
            &config("https://x.example/send?access_token=TOKEN99"),
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{robot:?}").contains("TOKEN99"));
        assert_eq!(
            robot.scrub("failed for https://x.example/send?access_token=TOKEN99 and access_token=TOKEN99"),
            "failed for <robot> and <token>"
        );
    }

    #[test]
    fn wecom_content_is_cut_on_a_character_boundary() {
        let s = "事".repeat(2000); // 6000 bytes
        let cut = cut_bytes(&s, WECOM_MAX_BYTES);
        assert!(cut.len() <= WECOM_MAX_BYTES && cut.len() > WECOM_MAX_BYTES - 3);
        assert!(cut.chars().all(|c| c == '事'));
    }
}
