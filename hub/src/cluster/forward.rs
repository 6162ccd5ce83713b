//! A standby hub forwards an operator's change to the active hub: the writer is there, so
//! that is where the change is applied, checked and audited (as if the operator had asked the
//! active hub). The operator's own credentials go with it; the active hub authenticates and
//! authorizes the request itself, against the same database.
//!
//! Forwarded: every request that may write (anything but GET, HEAD, OPTIONS), and the reads
//! answered from the writer's memory rather than the database (the rota and coverage, see
//! [`reads_from_the_writer`]). Everything else a standby answers itself.
//!
//! A request is forwarded once: one that arrives forwarded ([`FORWARDED_BY`]) at a hub that is
//! itself a standby (the lease moved meanwhile) is refused 503, as is any change while no hub
//! holds the lease. Both carry `Retry-After: 1`: a takeover completes within the lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::warn;

use super::Role;

/// Names the standby that forwarded a request (its lease holder name).
pub const FORWARDED_BY: &str = "x-gatehouse-forwarded-by";

/// How long the active hub has to answer a forwarded change.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Why a forwarded action has no answer from the active hub.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no hub holds the writer lease now (a takeover is under way); try again")]
    NoActive,
    #[error("{0}")]
    Unanswered(String),
}

/// How often a standby checks that the active hub answers at its advertised address.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// What a standby forwards with.
pub struct Forwarder {
    role: Arc<Role>,
    client: reqwest::Client,
    max_body_bytes: usize,
    counts: Counts,
    /// The last probe of the active hub: whom, and whether it answered.
    probed: std::sync::Mutex<Option<(String, bool)>>,
}

#[derive(Default)]
struct Counts {
    forwarded: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

impl Forwarder {
    pub fn new(role: Arc<Role>, max_body_bytes: u64) -> Result<Forwarder, String> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            // A redirect from the active is the operator's to follow, not ours.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the forwarding HTTP client: {e}"))?;
        Ok(Forwarder {
            role,
            client,
            max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
            counts: Counts::default(),
            probed: std::sync::Mutex::new(None),
        })
    }

    /// On a standby, every [`PROBE_EVERY`]: does the active hub answer `GET /healthz` at the
    /// address it advertises? (A wrong `cluster.advertise_http` shows here, not first when an
    /// operator's change fails.) Runs until `stop`.
    pub async fn probe_active(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            if let Some(active) = self.role.writer_at() {
                let answered = matches!(
                    self.client
                        .get(format!("{}/healthz", active.http_url))
                        .timeout(PROBE_EVERY)
                        .send()
                        .await,
                    Ok(r) if r.status().is_success()
                );
                if !answered {
                    warn!(active = %active.holder, url = %active.http_url, "the active hub does not answer at its advertised address");
                }
                *self.probed.lock().unwrap_or_else(|e| e.into_inner()) = Some((active.holder, answered));
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(PROBE_EVERY) => {}
            }
        }
    }

    /// Whether the last probe found `holder` answering (false: not probed yet, or it did not).
    pub fn answers(&self, holder: &str) -> bool {
        matches!(&*self.probed.lock().unwrap_or_else(|e| e.into_inner()), Some((h, true)) if h == holder)
    }

    /// `gatehouse_hub_forwarded_requests_total{outcome}`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP gatehouse_hub_forwarded_requests_total Operator requests a standby forwarded to the active hub: \
             answered by it (forwarded), refused for want of an active hub (refused), or unanswered (failed).\n\
             # TYPE gatehouse_hub_forwarded_requests_total counter"
        );
        for (outcome, n) in [
            ("forwarded", &self.counts.forwarded),
            ("refused", &self.counts.refused),
            ("failed", &self.counts.failed),
        ] {
            let _ = writeln!(
                out,
                "gatehouse_hub_forwarded_requests_total{{outcome=\"{outcome}\"}} {}",
                n.load(Relaxed)
            );
        }
    }

    /// A console's action on a standby (`centre`): `POST path` with `body` to the active hub's
    /// HTTP API, as the caller (`authorization`, their bearer credential). The active's
    /// status and JSON answer, or why there is none.
    pub async fn post_json(
        &self,
        path: &str,
        authorization: Option<&str>,
        body: &Value,
    ) -> Result<(u16, Value), ForwardError> {
        let Some(active) = self.role.writer_at() else {
            self.counts.refused.fetch_add(1, Relaxed);
            return Err(ForwardError::NoActive);
        };
        let mut request = self
            .client
            .post(format!("{}{path}", active.http_url))
            .header(FORWARDED_BY, self.role.holder())
            .json(body);
        if let Some(a) = authorization {
            request = request.header(header::AUTHORIZATION, a);
        }
        let answered = async {
            let answer = request.send().await?;
            let status = answer.status().as_u16();
            let body = answer.json::<Value>().await.unwrap_or(Value::Null);
            Ok::<_, reqwest::Error>((status, body))
        };
        match answered.await {
            Ok(a) => {
                self.counts.forwarded.fetch_add(1, Relaxed);
                Ok(a)
            }
            Err(e) => {
                self.counts.failed.fetch_add(1, Relaxed);
                warn!(active = %active.holder, error = %e, "cannot forward a console's action to the active hub");
                Err(ForwardError::Unanswered(format!(
                    "the active hub ({}) did not answer: {e}",
                    active.holder
                )))
            }
        }
    }

    async fn forward(&self, url: &str, request: Request) -> Result<Response, String> {
        let (parts, body) = request.into_parts();
        let Ok(body) = axum::body::to_bytes(body, self.max_body_bytes).await else {
            // Too long, or cut off: the operator's to fix, as on the active hub.
            let detail = format!("at most {} bytes (limits.http.max_body_bytes)", self.max_body_bytes);
            let body = json!({"error": "request body too large", "detail": detail});
            return Ok((StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response());
        };
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).map_err(|e| e.to_string())?;
        let mut headers = end_to_end(&parts.headers);
        if let Ok(v) = HeaderValue::from_str(self.role.holder()) {
            headers.insert(HeaderName::from_static(FORWARDED_BY), v);
        }
        let answer = self
            .client
            .request(method, format!("{url}{path}"))
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{url} did not answer: {e}"))?;
        let status = StatusCode::from_u16(answer.status().as_u16()).map_err(|e| e.to_string())?;
        let headers = end_to_end(answer.headers());
        let body = answer
            .bytes()
            .await
            .map_err(|e| format!("reading the answer of {url}: {e}"))?;
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// The headers of one hop that must not be passed on (RFC 9110 §7.6.1), and the length the
/// client library sets again.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    const HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
    ];
    headers
        .iter()
        .filter(|(name, _)| !HOP.contains(&name.as_str()) && name.as_str() != FORWARDED_BY)
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// A read the standby cannot answer itself: the rota's state lives in the writer's memory.
pub fn reads_from_the_writer(path: &str) -> bool {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    under("/api/v1/rota") || under("/api/v1/coverage") || under("/api/v1/kpi/coverage")
}

fn must_forward(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || reads_from_the_writer(path)
}

/// The layer on the whole HTTP router: on a standby, changes (and writer-memory reads) go to
/// the active hub; on the active or the only hub, and for every other request, nothing happens.
pub async fn forward_on_standby(State(fwd): State<Arc<Forwarder>>, request: Request, next: Next) -> Response {
    if !fwd.role.is_standby() || !must_forward(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let again = request.headers().contains_key(FORWARDED_BY);
    let Some(active) = fwd.role.writer_at().filter(|_| !again) else {
        fwd.counts.refused.fetch_add(1, Relaxed);
        let why = if again {
            "this hub is a standby too: the writer lease moved; try again"
        } else {
            "no hub holds the writer lease now (a takeover is under way); try again"
        };
        return unavailable(why.into());
    };
    match fwd.forward(&active.http_url, request).await {
        Ok(response) => {
            fwd.counts.forwarded.fetch_add(1, Relaxed);
            response
        }
        Err(e) => {
            fwd.counts.failed.fetch_add(1, Relaxed);
            warn!(active = %active.holder, url = %active.http_url, error = %e, "cannot forward an operator's change to the active hub");
            unavailable(format!("the active hub ({}) did not answer: {e}", active.holder))
        }
    }
}

fn unavailable(detail: String) -> Response {
    let body = json!({"error": "standby", "detail": Value::String(detail)});
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_and_writer_memory_reads_are_forwarded() {
        assert!(must_forward(&Method::POST, "/api/v1/alarms/1/ack"));
        assert!(must_forward(&Method::DELETE, "/api/v1/rota/assignments/3"));
        assert!(must_forward(&Method::POST, "/login"));
        assert!(must_forward(&Method::GET, "/api/v1/rota/gaps"));
        assert!(must_forward(&Method::GET, "/api/v1/coverage"));
        assert!(must_forward(&Method::GET, "/api/v1/kpi/coverage"));
        assert!(!must_forward(&Method::GET, "/api/v1/alarms"));
        assert!(!must_forward(&Method::GET, "/api/v1/stream"));
        assert!(!must_forward(&Method::GET, "/api/v1/rotation"));
        assert!(!must_forward(&Method::GET, "/readyz"));
        assert!(!must_forward(&Method::HEAD, "/"));
    }

    #[test]
    fn hop_headers_and_a_forged_mark_are_not_passed_on() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        h.insert(header::HOST, HeaderValue::from_static("hub-b"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert(header::COOKIE, HeaderValue::from_static("gatehouse_session=s"));
        h.insert(HeaderName::from_static(FORWARDED_BY), HeaderValue::from_static("x"));
        let kept = end_to_end(&h);
        let names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(kept.contains_key(header::AUTHORIZATION) && kept.contains_key(header::COOKIE));
    }
}
