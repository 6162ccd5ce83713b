//! `[notify]`: how notifications are delivered — retries, the default language and digest
//! interval, where links point, and the channels that need settings of their own: chat robots
//! (`[[notify.robots]]`), e-mail (`[notify.email]`) and SMS (`[notify.sms]`).
//!
//! A secret (a robot's signing secret or URL, an SMTP password, the SMS gateway's headers, the
//! answer links' key) is given in the file or, with the `*_env` key, named as an environment
//! variable read at start; [`Secret`] never prints its value.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::roles::Lang;

/// A secret from the configuration file: its `Debug` shows `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret given either in the file (`value`) or as the name of an environment variable
/// (`env`): `Ok(None)` when neither is set; an error names the key when both are, or when the
/// variable is not set.
pub fn resolve_secret(key: &str, value: Option<&Secret>, env: Option<&str>) -> Result<Option<Secret>, String> {
    match (value, env) {
        (Some(_), Some(_)) => Err(format!("{key} and {key}_env are both set: give one")),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(Secret(v))),
            _ => Err(format!("{key}_env names {var:?}, which is not set in the environment")),
        },
        (None, None) => Ok(None),
    }
}

/// `[notify]`: delivery of notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// HMAC-SHA256 key for webhook signatures (a roster entry's `secret` overrides it).
    pub webhook_secret: Option<String>,
    /// Or the environment variable holding it.
    pub webhook_secret_env: Option<String>,
    /// First retry after this long; doubled each attempt up to `retry_max_s`.
    pub retry_initial_s: u32,
    pub retry_max_s: u32,
    /// Attempts before a notification is marked failed.
    pub max_attempts: u32,
    /// Timeout of one webhook request.
    pub timeout_s: u32,
    /// https webhooks: a PEM file of CA certificates trusted besides the system's roots, for
    /// every channel without its own `ca_file`. Read at start.
    pub ca_file: Option<PathBuf>,
    /// The language of a recipient who names none (`zh-CN` or `en`).
    pub language: Lang,
    /// The address people open the board at from their phones (`https://centre.example.com`):
    /// the incident links and answer links of messages start with it. Default
    /// `http://<hub.http_listen>`.
    pub public_url: Option<String>,
    /// How long an answer link (acknowledge / on my way) works after it was sent.
    pub answer_link_ttl_s: u32,
    /// The key answer links are signed with (HMAC-SHA256, at least 32 characters). Default: a
    /// random key made at first start and kept in the database.
    pub link_secret: Option<Secret>,
    pub link_secret_env: Option<String>,
    /// At most one message per recipient per this many seconds (default 60); what changed
    /// meanwhile goes in one digest. P1 is never held; 0 turns digests off. A roster entry's
    /// `digest_interval_s` overrides it.
    pub digest_interval_s: u32,
    /// Chat-group robots, named by `robot:<name>` channels.
    pub robots: Vec<RobotConfig>,
    /// The SMTP server of `mailto:` channels.
    pub email: Option<EmailConfig>,
    /// The HTTP SMS gateway of `sms:` channels.
    pub sms: Option<SmsConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook_secret: None,
            webhook_secret_env: None,
            retry_initial_s: 5,
            retry_max_s: 300,
            max_attempts: 8,
            timeout_s: 10,
            ca_file: None,
            language: Lang::ZhCn,
            public_url: None,
            answer_link_ttl_s: 12 * 3600,
            link_secret: None,
            link_secret_env: None,
            digest_interval_s: 60,
            robots: Vec::new(),
            email: None,
            sms: None,
        }
    }
}

/// The chat platforms whose group robots we speak, each in its own message format and
/// signing scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RobotKind {
    /// WeCom (企业微信) group robot: markdown message; the key in the URL is the secret.
    Wecom,
    /// DingTalk (钉钉) custom robot: `timestamp` and `sign` query parameters.
    Dingtalk,
    /// Feishu / Lark custom bot: `timestamp` and `sign` in the body.
    Feishu,
    /// Slack incoming webhook: the URL is the secret.
    Slack,
    /// Microsoft Teams workflow webhook (an Adaptive Card): the URL is the secret.
    Teams,
}

impl RobotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RobotKind::Wecom => "wecom",
            RobotKind::Dingtalk => "dingtalk",
            RobotKind::Feishu => "feishu",
            RobotKind::Slack => "slack",
            RobotKind::Teams => "teams",
        }
    }

    /// Whether the platform signs requests with a secret besides the URL.
    pub fn signed(self) -> bool {
        matches!(self, RobotKind::Dingtalk | RobotKind::Feishu)
    }
}

/// `[[notify.robots]]`: one chat-group robot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotConfig {
    /// What `robot:<name>` channels call it.
    pub name: String,
    pub kind: RobotKind,
    /// The robot's webhook URL (it carries the access token: a secret), or `url_env`.
    pub url: Option<Secret>,
    pub url_env: Option<String>,
    /// DingTalk's `SEC…` secret, Feishu's signing secret (required for those two), or
    /// `secret_env`.
    pub secret: Option<Secret>,
    pub secret_env: Option<String>,
    /// A PEM file of CA certificates trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EmailSecurity {
    /// Plain connection upgraded by STARTTLS (port 587); refused if the server does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: a relay on loopback only.
    None,
}

/// `[notify.email]`: the SMTP server `mailto:` channels go through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub server: String,
    /// Default 587 (STARTTLS), 465 (TLS) or 25 (none).
    pub port: Option<u16>,
    #[serde(default)]
    pub security: EmailSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_env: Option<String>,
    /// `Gatehouse <gatehouse@example.com>`.
    pub from: String,
    /// A PEM file of CA certificates trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// `[notify.sms]`: an HTTP SMS gateway, as a template of the request. `{to}` and `{text}` are
/// replaced in `url` (percent-encoded), in `body` (escaped for `content_type`: JSON string
/// content or form-encoded) and in header values; `{env:NAME}` is the environment variable
/// NAME, read at start (API keys).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    pub url: String,
    #[serde(default = "default_sms_method")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Empty for a GET whose URL carries everything.
    #[serde(default)]
    pub body: String,
    #[serde(default = "default_sms_content_type")]
    pub content_type: String,
    /// Most characters of one message's text (longer text is cut, the links kept).
    #[serde(default = "default_sms_max_chars")]
    pub max_chars: usize,
    /// A PEM file of CA certificates trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Replies (`ACK <code>`) and delivery receipts come back to
    /// `POST /api/v1/notify/sms/inbound` with `Authorization: Bearer <inbound_token>`; unset:
    /// that endpoint is closed.
    pub inbound_token: Option<Secret>,
    pub inbound_token_env: Option<String>,
}

fn default_sms_method() -> String {
    "POST".into()
}
fn default_sms_content_type() -> String {
    "application/json".into()
}
fn default_sms_max_chars() -> usize {
    280
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_and_resolves_from_the_file_or_the_environment() {
        let s = Secret::new("SECabc");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(resolve_secret("k", Some(&s), None).unwrap(), Some(s.clone()));
        assert!(resolve_secret("k", Some(&s), Some("X")).unwrap_err().contains("k_env"));
        assert!(
            resolve_secret("k", None, Some("GATEHOUSE_TEST_SURELY_UNSET"))
                .unwrap_err()
                .contains("GATEHOUSE_TEST_SURELY_UNSET")
        );
        assert_eq!(resolve_secret("k", None, None).unwrap(), None);
    }
}
