//! SMS through an HTTP gateway described by a template (`[notify.sms]`): the URL, headers and
//! body with `{to}`, `{text}` and `{env:NAME}` filled in, each escaped for where it goes —
//! percent-encoded in the URL, JSON-string-escaped in a JSON body, form-encoded in a form
//! body, as is in a header (where a line break is refused: it would start another header).
//!
//! A gateway answering 2xx accepted the message for sending: the row says `sent`. A reason
//! stored on a row never carries the URL (its query may hold an API key) nor a header value,
//! and the number only masked.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{HeaderName, HeaderValue};

use super::{ChannelSetupError, SendError, Sent};
use crate::notify::config::{Secret, SmsConfig};
use crate::notify::message::Message;
use crate::notify::outbox::WebhookResult;
use crate::notify::tls::{error_chain, install_ring_provider, is_tls_failure, load_ca_file};
use crate::privacy::mask;

/// RFC 3986 unreserved characters stay; everything else in a value is percent-encoded.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Where a value is substituted, which decides how it is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Url,
    JsonBody,
    FormBody,
    /// Headers and bodies of other content types: as is.
    Raw,
}

impl Place {
    /// The body's place for a `content_type`.
    pub fn for_body(content_type: &str) -> Place {
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Place::JsonBody,
            "application/x-www-form-urlencoded" => Place::FormBody,
            _ => Place::Raw,
        }
    }

    fn escape(self, value: &str) -> String {
        match self {
            Place::Url => utf8_percent_encode(value, URL_VALUE).to_string(),
            Place::JsonBody => {
                let quoted = serde_json::Value::String(value.to_owned()).to_string();
                quoted[1..quoted.len() - 1].to_owned()
            }
            Place::FormBody => url::form_urlencoded::byte_serialize(value.as_bytes()).collect(),
            Place::Raw => value.to_owned(),
        }
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Literal(&'a str),
    To,
    Text,
    Env(&'a str),
}

/// Splits a template into literals and placeholders. Any other `{` (a JSON body's braces) is
/// literal text.
pub fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    while let Some(off) = template[i..].find('{') {
        let at = i + off;
        let rest = &template[at + 1..];
        let found = if rest.starts_with("to}") {
            Some((Piece::To, 4))
        } else if rest.starts_with("text}") {
            Some((Piece::Text, 6))
        } else if let Some(after) = rest.strip_prefix("env:") {
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (name_len > 0 && after[name_len..].starts_with('}'))
                .then(|| (Piece::Env(&after[..name_len]), 4 + name_len + 2))
        } else {
            None
        };
        match found {
            Some((piece, len)) => {
                if literal_start < at {
                    out.push(Piece::Literal(&template[literal_start..at]));
                }
                out.push(piece);
                i = at + len;
                literal_start = i;
            }
            None => i = at + 1,
        }
    }
    if literal_start < template.len() {
        out.push(Piece::Literal(&template[literal_start..]));
    }
    out
}

/// The template with `to`, `text` and the environment's values substituted for `place`;
/// `Err(NAME)` when `{env:NAME}` has no value in `env`.
pub fn render<'t>(
    template: &'t str,
    place: Place,
    to: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, &'t str> {
    let mut out = String::with_capacity(template.len() + text.len());
    for piece in pieces(template) {
        match piece {
            Piece::Literal(s) => out.push_str(s),
            Piece::To => out.push_str(&place.escape(to)),
            Piece::Text => out.push_str(&place.escape(text)),
            Piece::Env(name) => out.push_str(&place.escape(&env(name).ok_or(name)?)),
        }
    }
    Ok(out)
}

/// Every template of the section (url, each header value, the body), named by its key.
fn templates(config: &SmsConfig) -> Vec<(String, &str)> {
    let mut out = vec![("notify.sms.url".to_owned(), config.url.as_str())];
    for (name, value) in &config.headers {
        out.push((format!("notify.sms.headers.{name}"), value.as_str()));
    }
    out.push(("notify.sms.body".to_owned(), config.body.as_str()));
    out
}

/// Whether `{to}` and `{text}` each appear in some template of the section.
pub fn names_to_and_text(config: &SmsConfig) -> bool {
    let all: Vec<Piece<'_>> = templates(config).into_iter().flat_map(|(_, t)| pieces(t)).collect();
    all.contains(&Piece::To) && all.contains(&Piece::Text)
}

/// The URL for a sample message, `{env:…}` standing for `x`: the configuration check (no
/// environment read there) and the start both parse it.
pub fn sample_url(url: &str) -> Result<url::Url, String> {
    let filled = render(url, Place::Url, "+8613800000000", "test", &|_| Some("x".to_owned()))
        .map_err(|name| format!("{{env:{name}}} has no value"))?;
    // The parser's message never includes the input: safe with a key in the query.
    url::Url::parse(&filled).map_err(|e| format!("does not parse as a URL once filled in: {e}"))
}

/// The SMS gateway of `[notify.sms]`.
pub struct SmsGateway {
    client: reqwest::Client,
    method: reqwest::Method,
    url: String,
    headers: Vec<(HeaderName, String)>,
    body: String,
    body_place: Place,
    content_type: HeaderValue,
    max_chars: usize,
    env: HashMap<String, Secret>,
}

impl std::fmt::Debug for SmsGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL and headers may carry API keys.
        f.debug_struct("SmsGateway")
            .field("method", &self.method)
            .field("max_chars", &self.max_chars)
            .finish_non_exhaustive()
    }
}

fn invalid(key: impl Into<String>, detail: impl Into<String>) -> ChannelSetupError {
    ChannelSetupError::Invalid {
        key: key.into(),
        detail: detail.into(),
    }
}

impl SmsGateway {
    /// Reads the `{env:NAME}` variables (a missing one stops the start, named), checks the
    /// template with a sample message and builds the client (the system's roots plus
    /// `ca_file`, or `default_ca` = `notify.ca_file`).
    pub fn build(
        config: &SmsConfig,
        default_ca: Option<&Path>,
        timeout: Duration,
    ) -> Result<SmsGateway, ChannelSetupError> {
        install_ring_provider();
        let mut env = HashMap::new();
        for (key, template) in templates(config) {
            for piece in pieces(template) {
                if let Piece::Env(name) = piece
                    && !env.contains_key(name)
                {
                    match std::env::var(name) {
                        Ok(v) if !v.is_empty() => {
                            env.insert(name.to_owned(), Secret::new(v));
                        }
                        _ => {
                            return Err(invalid(
                                key,
                                format!("{{env:{name}}}: the environment variable {name} is not set"),
                            ));
                        }
                    }
                }
            }
        }
        let method = match config.method.to_ascii_uppercase().as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            other => return Err(invalid("notify.sms.method", format!("GET, POST or PUT, not {other:?}"))),
        };
        let url = sample_url(&config.url).map_err(|e| invalid("notify.sms.url", e))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("notify.sms.url", "must be an http:// or https:// URL"));
        }
        let content_type = HeaderValue::from_str(&config.content_type)
            .map_err(|_| invalid("notify.sms.content_type", "not a valid header value"))?;
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let key = format!("notify.sms.headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid(&key, "not a header name"))?;
            let sample = render(value, Place::Raw, "+8613800000000", "test", &|n| {
                env.get(n).map(|s| s.expose().to_owned())
            })
            .map_err(|n| invalid(&key, format!("{{env:{n}}} has no value")))?;
            // Never print the value: it is likely an API key.
            HeaderValue::from_str(&sample).map_err(|_| invalid(&key, "not a valid header value once filled in"))?;
            headers.push((header, value.clone()));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            // A redirect could carry the message and its key anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .use_rustls_tls();
        if let Some(ca) = config.ca_file.as_deref().or(default_ca) {
            for cert in load_ca_file(ca)? {
                let cert = reqwest::Certificate::from_der(cert.as_ref())
                    .map_err(|e| invalid("notify.sms.ca_file", format!("{}: {e}", ca.display())))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| {
            invalid(
                "notify.sms",
                format!("cannot build the HTTP client: {}", error_chain(&e)),
            )
        })?;
        Ok(SmsGateway {
            client,
            method,
            url: config.url.clone(),
            headers,
            body: config.body.clone(),
            body_place: Place::for_body(&config.content_type),
            content_type,
            max_chars: config.max_chars,
            env,
        })
    }

    /// Sends `msg.short`, cut to `max_chars` keeping its links, to `number`.
    pub async fn send(&self, number: &str, msg: &Message) -> Result<Sent, SendError> {
        let links: Vec<&str> = [&msg.incident_url, &msg.answer_url]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let text = cut(&msg.short, self.max_chars, &links);
        let env = |n: &str| self.env.get(n).map(|s| s.expose().to_owned());
        let missing = |n: &str| SendError::new(WebhookResult::Other, format!("{{env:{n}}} has no value"));
        let url = render(&self.url, Place::Url, number, &text, &env).map_err(missing)?;
        let url = url::Url::parse(&url).map_err(|_| {
            SendError::new(
                WebhookResult::Other,
                "the SMS gateway URL does not parse once filled in",
            )
        })?;
        let mut request = self.client.request(self.method.clone(), url);
        for (name, template) in &self.headers {
            let value = render(template, Place::Raw, number, &text, &env).map_err(missing)?;
            if value.contains(['\r', '\n']) {
                return Err(SendError::new(
                    WebhookResult::Other,
                    format!("header {name}: a line break cannot go in a header (the number or the text holds one)"),
                ));
            }
            let value = HeaderValue::from_str(&value).map_err(|_| {
                SendError::new(WebhookResult::Other, format!("header {name}: not a valid header value"))
            })?;
            request = request.header(name.clone(), value);
        }
        if !self.body.is_empty() {
            let body = render(&self.body, self.body_place, number, &text, &env).map_err(missing)?;
            request = request
                .header(reqwest::header::CONTENT_TYPE, self.content_type.clone())
                .body(body);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.classify(e, number)),
        };
        let status = response.status();
        if status.is_success() {
            Ok(Sent::Accepted)
        } else {
            Err(SendError::new(
                WebhookResult::Refused,
                format!(
                    "the SMS gateway answered HTTP {} for {}",
                    status.as_u16(),
                    mask::phone(number)
                ),
            ))
        }
    }

    fn classify(&self, e: reqwest::Error, number: &str) -> SendError {
        let timeout = e.is_timeout();
        let tls = is_tls_failure(&e);
        // reqwest's errors carry the URL, whose query may hold a key.
        let text = error_chain(&e.without_url()).replace(number, &mask::phone(number));
        if timeout {
            SendError::new(WebhookResult::Unreachable, "the SMS gateway did not answer in time")
        } else if tls {
            SendError::new(
                WebhookResult::Tls,
                format!(
                    "TLS handshake with the SMS gateway failed: {text}; its certificate must chain to the system's roots or to the ca_file"
                ),
            )
        } else {
            SendError::new(
                WebhookResult::Unreachable,
                format!("cannot reach the SMS gateway: {text}"),
            )
        }
    }
}

/// `text` in at most `max` characters, keeping each of `links` it holds whole: the rest is cut
/// (ending in `…`) and the links follow it, one a line. Links longer than `max` together are
/// kept all the same: a message without its link is no use.
pub fn cut(text: &str, max: usize, links: &[&str]) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: Vec<&str> = links
        .iter()
        .copied()
        .filter(|l| !l.is_empty() && text.contains(l))
        .collect();
    let mut rest = text.to_owned();
    for l in &kept {
        rest = rest.replace(l, "");
    }
    let rest = rest
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let links_len: usize = kept.iter().map(|l| l.chars().count() + 1).sum();
    let budget = max.saturating_sub(links_len);
    let mut out = if rest.chars().count() <= budget {
        rest
    } else if budget >= 1 {
        let mut s: String = rest.chars().take(budget - 1).collect();
        s.truncate(s.trim_end().len());
        s.push('…');
        s
    } else {
        String::new()
    };
    for l in kept {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn placeholders_are_found_and_json_braces_stay_literal() {
        let t = r#"{"to":"{to}","msg":"{text}","k":"{env:SMS_KEY}","x":"{other}"}"#;
        let p = pieces(t);
        assert!(p.contains(&Piece::To) && p.contains(&Piece::Text) && p.contains(&Piece::Env("SMS_KEY")));
        let out = render(t, Place::JsonBody, "+86 1", "a \"q\"\n中", &|n| {
            (n == "SMS_KEY").then(|| "k\"1".into())
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["to"], "+86 1");
        assert_eq!(v["msg"], "a \"q\"\n中");
        assert_eq!(v["k"], "k\"1");
        assert_eq!(v["x"], "{other}");
        assert_eq!(render("{env:NOPE}", Place::Raw, "", "", &no_env), Err("NOPE"));
    }

    #[test]
    fn each_place_escapes_its_own_way() {
        let text = "a&b=c d/é";
        assert_eq!(
            render("https://g/s?to={to}&m={text}", Place::Url, "+861", text, &no_env).unwrap(),
            "https://g/s?to=%2B861&m=a%26b%3Dc%20d%2F%C3%A9"
        );
        assert_eq!(
            render("to={to}&m={text}", Place::FormBody, "+861", text, &no_env).unwrap(),
            "to=%2B861&m=a%26b%3Dc+d%2F%C3%A9"
        );
        assert_eq!(render("{text}", Place::Raw, "", text, &no_env).unwrap(), text);
        assert_eq!(Place::for_body("application/json; charset=utf-8"), Place::JsonBody);
        assert_eq!(Place::for_body("application/x-www-form-urlencoded"), Place::FormBody);
        assert_eq!(Place::for_body("text/plain"), Place::Raw);
    }

    #[test]
    fn cutting_keeps_the_links_whole() {
        let link = "https://centre.example.com/#/incidents/42";
        let answer = "https://centre.example.com/n/abcdef";
        let long = format!("{} {}\n{link}\n{answer}", "火警".repeat(40), "x".repeat(50));
        let out = cut(&long, 100, &[link, answer]);
        assert!(out.chars().count() <= 100, "{out}");
        assert!(out.contains(link) && out.contains(answer), "{out}");
        assert!(out.starts_with("火警火警") && out.contains('…'), "{out}");
        assert_eq!(cut("short", 70, &[link]), "short");
        // Links alone over the limit are still sent whole.
        let out = cut(&format!("title {link}"), 10, &[link]);
        assert_eq!(out, link);
    }

    fn message(short: &str) -> Message {
        Message {
            language: crate::roles::Lang::En,
            title: "t".into(),
            facts: Vec::new(),
            text: short.into(),
            markdown: short.into(),
            html: short.into(),
            short: short.into(),
            incident_url: None,
            answer_url: None,
            reply_hint: None,
        }
    }

    #[tokio::test]
    async fn a_line_break_never_goes_into_a_header_and_a_missing_variable_is_named() {
        let config: SmsConfig =
            toml::from_str("url = \"http://127.0.0.1:9/s?to={to}\"\n[headers]\nX-Text = \"{text}\"\n").unwrap();
        let gw = SmsGateway::build(&config, None, Duration::from_secs(1)).unwrap();
        let e = gw
            .send("+8613812345678", &message("line one\nline two"))
            .await
            .unwrap_err();
        assert_eq!(e.result, WebhookResult::Other);
        assert!(
            e.reason.contains("line break") && e.reason.contains("x-text"),
            "{}",
            e.reason
        );

        let config: SmsConfig = toml::from_str(
            "url = \"https://sms.example.com/s?to={to}&m={text}&k={env:GATEHOUSE_TEST_SURELY_UNSET_SMS}\"\n",
        )
        .unwrap();
        let e = SmsGateway::build(&config, None, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("notify.sms.url") && e.contains("GATEHOUSE_TEST_SURELY_UNSET_SMS"),
            "{e}"
        );
    }
}
