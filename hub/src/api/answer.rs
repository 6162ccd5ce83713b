//! Answering a page without signing in: `GET /n/{token}` shows the incident and two buttons,
//! `POST /n/{token}` records the answer (acknowledged | on my way) through the writer, and
//! `POST /api/v1/notify/sms/inbound` takes an SMS gateway's forwarded reply (`ACK <code>`).
//! The token (or the gateway's bearer token) is the credential; no cookie is read or set.
//!
//! GET never acts: chat apps and mail scanners fetch links to preview them. Refusals: a
//! forged link 403, an expired one 410, one already used 409, a notification that is not
//! there 404 — a small page in the recipient's language, or JSON when the client asks
//! `Accept: application/json`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::audit::Actor;
use crate::error::OpError;
use crate::incidents::queries::{IncidentRow, get_incident};
use crate::net::Peer;
use crate::notify::address::Address;
use crate::notify::answer::{self, Answer, AnswerVia, LinkKey, Refusal};
use crate::notify::config::Secret;
use crate::notify::message::html_escape;
use crate::notify::queries::{self as nq, NotificationRow};
use crate::store::Context;
use crate::writer::ActionError;

/// The credentials of these routes, loaded at start.
#[derive(Debug, Clone)]
pub struct AnswerKeys {
    /// Verifies answer links (the key the notification shell signs them with).
    pub link_key: LinkKey,
    /// `notify.sms.inbound_token`: `None` closes the SMS inbound endpoint.
    pub sms_inbound_token: Option<Secret>,
}

/// Answers are a word or two; anything larger is not one.
const MAX_BODY: usize = 4096;
/// The audit log's role for someone acting through a notification.
const ROLE: &str = "notification";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Zh,
    En,
    Both,
}

fn lang_of(row: &NotificationRow) -> Lang {
    if row.language == "en" { Lang::En } else { Lang::Zh }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// A self-contained page: no external assets, not cached, not leaking the link as a
/// referrer, nothing but its own inline style and a form posting back to itself.
fn page(status: StatusCode, lang: Lang, title: &str, body: &str) -> Response {
    let html_lang = if lang == Lang::En { "en" } else { "zh-CN" };
    let html = format!(
        "<!doctype html><html lang=\"{html_lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:32rem;margin:1.5rem auto;padding:0 1rem;color:#111}}\
         dl{{display:grid;grid-template-columns:auto 1fr;gap:.3rem 1rem}}dt{{color:#555}}dd{{margin:0}}\
         button{{font-size:1.2rem;padding:.8rem 1.2rem;margin:.4rem .4rem 0 0;border-radius:.4rem;border:0;color:#fff}}\
         .ack{{background:#0a58ca}}.omw{{background:#198754}}.p1{{color:#b00020;font-weight:bold}}\
         </style></head><body>{body}</body></html>",
        title = html_escape(title),
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    r
}

/// Why an answer is refused, with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Forged,
    Expired,
    Used,
    Unknown,
}

impl Refused {
    fn status(self) -> StatusCode {
        match self {
            Refused::Forged => StatusCode::FORBIDDEN,
            Refused::Expired => StatusCode::GONE,
            Refused::Used => StatusCode::CONFLICT,
            Refused::Unknown => StatusCode::NOT_FOUND,
        }
    }

    fn en(self) -> &'static str {
        match self {
            Refused::Forged => "This link is not valid.",
            Refused::Expired => "This link has expired.",
            Refused::Used => "This link has already been used.",
            Refused::Unknown => "This notification does not exist.",
        }
    }

    fn zh(self) -> &'static str {
        match self {
            Refused::Forged => "此链接无效。",
            Refused::Expired => "此链接已过期。",
            Refused::Used => "此链接已使用过。",
            Refused::Unknown => "此通知不存在。",
        }
    }

    fn respond(self, json: bool, lang: Lang) -> Response {
        if json {
            return ApiError::new(self.status(), self.en(), Value::Null).into_response();
        }
        let text = match lang {
            Lang::En => self.en().to_owned(),
            Lang::Zh => self.zh().to_owned(),
            Lang::Both => format!("{}<br>{}", self.zh(), self.en()),
        };
        page(self.status(), lang, "Gatehouse", &format!("<h1>{text}</h1>"))
    }
}

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Forged => Refused::Forged,
            Refusal::Expired => Refused::Expired,
        }
    }
}

/// The link's notification and its incident, or why the link is refused. A token that is
/// ours but names a row whose link differs (another database under the same key) is forged.
async fn open_link(
    state: &AppState,
    key: &LinkKey,
    token: &str,
) -> Result<Result<(NotificationRow, IncidentRow), (Refused, Lang)>, ApiError> {
    let claim = match answer::verify(token, key, state.clock.now_ms()) {
        Ok(c) => c,
        Err(r) => return Ok(Err((r.into(), Lang::Both))),
    };
    let mut conn = state.pool.acquire().await.context(|| "reading an answer link".into())?;
    let Some(row) = nq::notification(&mut *conn, claim.notification_id).await? else {
        return Ok(Err((Refused::Unknown, Lang::Both)));
    };
    if row.link_expires_at_ms != Some(claim.expires_at_ms) {
        return Ok(Err((Refused::Forged, Lang::Both)));
    }
    let lang = lang_of(&row);
    if row.answer.is_some() {
        return Ok(Err((Refused::Used, lang)));
    }
    let Some(inc) = (match row.incident_id {
        Some(iid) => get_incident(&mut conn, iid).await?,
        None => None,
    }) else {
        return Ok(Err((Refused::Unknown, lang)));
    };
    Ok(Ok((row, inc)))
}

/// The path's token; one that is not even text (`%FF`) is as forged as any other garbage.
fn token_of(path: Result<Path<String>, PathRejection>) -> String {
    path.map(|Path(t)| t).unwrap_or_default()
}

fn keys(state: &AppState) -> &AnswerKeys {
    &state.answers
}

fn estate_name(state: &AppState, id: &str) -> String {
    state
        .estates
        .iter()
        .find(|e| e.id == id)
        .map_or_else(|| id.to_owned(), |e| e.name.clone())
}

fn incident_json(state: &AppState, inc: &IncidentRow) -> Value {
    json!({
        "id": inc.id,
        "estate": inc.estate_id,
        "estate_name": estate_name(state, &inc.estate_id),
        "priority": inc.priority,
        "title": inc.title,
        "area": inc.area,
        "state": inc.state,
        "acknowledged": inc.acknowledged_at_ms.is_some(),
    })
}

/// `GET /n/{token}`: the incident and two buttons. Records nothing.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    token: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let json = wants_json(&headers);
    let token = token_of(token);
    let (row, inc) = match open_link(&state, &keys(&state).link_key, &token).await? {
        Ok(found) => found,
        Err((r, lang)) => return Ok(r.respond(json, lang)),
    };
    if json {
        return Ok(axum::Json(json!({
            "notification_id": row.id,
            "recipient": row.recipient,
            "incident": incident_json(&state, &inc),
            "expires_at": row.link_expires_at_ms.map(crate::alarms::rfc3339),
            "answers": ["acknowledged", "on_the_way"],
        }))
        .into_response());
    }
    let lang = lang_of(&row);
    let [l_estate, l_priority, l_what, l_where, l_state, ack, omw, heading] = if lang == Lang::En {
        [
            "Estate",
            "Priority",
            "What",
            "Where",
            "State",
            "Acknowledge",
            "On my way",
            "Incident",
        ]
    } else {
        ["小区", "优先级", "内容", "位置", "状态", "确认", "正在赶来", "事件"]
    };
    let priority_class = if inc.priority == "P1" { " class=\"p1\"" } else { "" };
    let body = format!(
        "<h1>{heading} #{id}</h1><p>{recipient}</p><dl>\
         <dt>{l_estate}</dt><dd>{estate}</dd>\
         <dt>{l_priority}</dt><dd{priority_class}>{priority}</dd>\
         <dt>{l_what}</dt><dd>{title}</dd>\
         <dt>{l_where}</dt><dd>{area}</dd>\
         <dt>{l_state}</dt><dd>{istate}</dd></dl>\
         <form method=\"post\">\
         <button class=\"ack\" name=\"answer\" value=\"acknowledged\">{ack}</button>\
         <button class=\"omw\" name=\"answer\" value=\"on_the_way\">{omw}</button></form>",
        id = inc.id,
        recipient = html_escape(&row.recipient),
        estate = html_escape(&estate_name(&state, &inc.estate_id)),
        priority = html_escape(&inc.priority),
        title = html_escape(&inc.title),
        area = html_escape(&inc.area),
        istate = html_escape(&inc.state),
    );
    Ok(page(StatusCode::OK, lang, &format!("{heading} #{}", inc.id), &body))
}

#[derive(Debug, Default, Deserialize)]
struct AnswerBody {
    #[serde(default)]
    answer: Option<String>,
}

/// `application/x-www-form-urlencoded` pairs (what a form posts), decoded.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// A bounded body, or why it is refused.
fn bounded(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), "cannot read the request body", r.body_text().into()))?;
    if body.len() > MAX_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
            Value::Null,
        ));
    }
    Ok(body)
}

/// A field of a JSON or form body.
fn field(headers: &HeaderMap, body: &[u8], name: &str) -> Result<Option<String>, ApiError> {
    if is_json(headers) {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid JSON body", e.to_string()))?;
        return Ok(v.get(name).and_then(Value::as_str).map(str::to_owned));
    }
    Ok(form_pairs(body).into_iter().find(|(k, _)| k == name).map(|(_, v)| v))
}

/// What the writer said to an answer, as a refusal.
fn refused_by_writer(e: ActionError) -> Result<Refused, ApiError> {
    match e {
        ActionError::Refused(OpError::NotFound(_)) => Ok(Refused::Unknown),
        ActionError::Refused(OpError::Conflict(_)) => Ok(Refused::Used),
        // The only thing the writer finds unacceptable in an answer is its time being up.
        ActionError::Refused(OpError::Unprocessable(_)) => Ok(Refused::Expired),
        e => Err(e.into()),
    }
}

/// `POST /n/{token}`: records the answer as the notification's recipient.
pub async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<axum::Extension<Peer>>,
    token: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let json = wants_json(&headers);
    let body = bounded(body)?;
    let given = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else if is_json(&headers) {
        serde_json::from_slice::<AnswerBody>(&body)
            .map_err(|e| ApiError::bad_request("invalid JSON body", e.to_string()))?
            .answer
    } else {
        field(&headers, &body, "answer")?
    };
    let Some(answer) = given.as_deref().and_then(Answer::parse) else {
        return Err(ApiError::bad_request(
            "invalid answer",
            "answer must be acknowledged or on_the_way",
        ));
    };
    let token = token_of(token);
    let (row, inc) = match open_link(&state, &keys(&state).link_key, &token).await? {
        Ok(found) => found,
        Err((r, lang)) => return Ok(r.respond(json, lang)),
    };
    let actor = Actor::new(row.recipient.clone(), ROLE, peer.map(|p| p.0.0.ip()));
    let op = crate::engine::Op::Answer {
        notification_id: row.id,
        answer,
        via: AnswerVia::Link,
    };
    if let Err(e) = state.writer.op(&actor, op).await {
        return Ok(refused_by_writer(e)?.respond(json, lang_of(&row)));
    }
    if json {
        return Ok(axum::Json(json!({
            "recorded": answer.as_str(),
            "via": "link",
            "notification_id": row.id,
            "incident_id": inc.id,
            "recipient": row.recipient,
        }))
        .into_response());
    }
    let lang = lang_of(&row);
    let text = match (lang, answer) {
        (Lang::En, Answer::Acknowledged) => format!("Recorded: you acknowledged incident #{}.", inc.id),
        (Lang::En, Answer::OnTheWay) => format!("Recorded: you are on the way to incident #{}.", inc.id),
        (_, Answer::Acknowledged) => format!("已记录：您已确认事件 #{}。", inc.id),
        (_, Answer::OnTheWay) => format!("已记录：您正在赶往事件 #{}。", inc.id),
    };
    Ok(page(
        StatusCode::OK,
        lang,
        "Gatehouse",
        &format!("<h1>{}</h1><p>{}</p>", html_escape(&text), html_escape(&inc.title)),
    ))
}

/// Digits and `+` of a number, so `+86 138-0000-0000` and `+8613800000000` are one.
fn number(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect()
}

/// `POST /api/v1/notify/sms/inbound` `{"from", "text"}` (or a form): an SMS reply
/// `ACK <code>` / `OMW <code>` / `确认 <code>`, answered as the person the code was sent to.
pub async fn sms_inbound(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<axum::Extension<Peer>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(expected) = keys(&state).sms_inbound_token.clone() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such endpoint", Value::Null));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !answer::same_secret(given.trim().as_bytes(), expected.expose().as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required",
            Value::Null,
        ));
    }
    let body = bounded(body)?;
    let from = field(&headers, &body, "from")?.unwrap_or_default();
    let text = field(&headers, &body, "text")?.unwrap_or_default();
    let Some((answer, code)) = answer::parse_reply(&text) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a reply",
            Value::String("expected ACK <code>, OMW <code> or 确认 <code>".into()),
        ));
    };
    let rows = nq::by_reply_code(&state.pool, &code).await?;
    if rows.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not found",
            Value::String(format!("no notification has reply code {code}")),
        ));
    }
    let sender = number(&from);
    let Some(row) = rows.into_iter().find(
        |r| matches!(Address::parse(&r.channel), Ok(Address::Sms(n)) if !sender.is_empty() && number(&n) == sender),
    ) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not found",
            Value::String(format!("reply code {code} was not sent to this number")),
        ));
    };
    let actor = Actor::new(row.recipient.clone(), ROLE, peer.map(|p| p.0.0.ip()));
    let op = crate::engine::Op::Answer {
        notification_id: row.id,
        answer,
        via: AnswerVia::SmsReply,
    };
    match state.writer.op(&actor, op).await {
        Ok(iid) => Ok(axum::Json(json!({
            "recorded": answer.as_str(),
            "via": "sms_reply",
            "notification_id": row.id,
            "incident_id": iid,
            "recipient": row.recipient,
        }))
        .into_response()),
        Err(e) => {
            let r = refused_by_writer(e)?;
            Err(ApiError::new(r.status(), r.en(), Value::Null))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        assert_eq!(
            form_pairs(b"answer=on_the_way&from=%2B8613800000000&text=ACK+7K3Q9P"),
            vec![
                ("answer".to_owned(), "on_the_way".to_owned()),
                ("from".to_owned(), "+8613800000000".to_owned()),
                ("text".to_owned(), "ACK 7K3Q9P".to_owned()),
            ]
        );
        assert_eq!(
            form_pairs(b"a=%&b=%4&c=%zz&d"),
            vec![
                ("a".to_owned(), "%".to_owned()),
                ("b".to_owned(), "%4".to_owned()),
                ("c".to_owned(), "%zz".to_owned()),
                ("d".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn pages_html_escape() {
        assert_eq!(html_escape("<a href='x'>&\""), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
    }

    #[test]
    fn numbers_compare_by_digits() {
        assert_eq!(number("+86 138-0000-0000"), number("+8613800000000"));
    }
}
