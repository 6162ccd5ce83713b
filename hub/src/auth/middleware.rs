//! Who is calling: the [`Authenticator`] turns a bearer token (configured, admin-made or a
//! session) or the session cookie into the request's `Arc<Principal>`, for the HTTP API
//! ([`authenticate`], a layer on every `/api/v1` route but login) and for the gRPC
//! `CommandCentre` ([`Authenticator::grpc`]). This is the one place a principal is made: an
//! OIDC sign-in would end here too, as a session of the user the identity provider names.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{error, warn};

use super::sessions::{API_TOKEN_PREFIX, COOKIE, SESSION_PREFIX, Throttle, ThrottleRules};
use super::{Principal, TokenTable, Via, queries, token_sha256};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::store::{Pool, StoreError};

/// `[auth]` in the hub config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a session lasts after sign-in, in minutes (default 720: a 12-hour shift).
    pub session_ttl_min: u32,
    /// Failed logins (per source address, and per user name) before refusals start.
    pub max_failed_logins: u32,
    /// How long those refusals last (and the window failures are counted in), in seconds.
    pub lockout_s: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl_min: 720,
            max_failed_logins: 5,
            lockout_s: 60,
        }
    }
}

/// Sign-in counters on `/metrics`.
#[derive(Debug, Default)]
pub struct AuthCounters {
    pub logins: AtomicU64,
    pub logins_failed: AtomicU64,
    pub logins_throttled: AtomicU64,
    /// Requests with a wrong, expired or ended credential (HTTP 401, gRPC UNAUTHENTICATED).
    pub credentials_refused: AtomicU64,
}

/// The session a request came with, so logout can end exactly it.
#[derive(Debug, Clone)]
pub struct SessionKey(pub String);

/// Turns credentials into principals.
pub struct Authenticator {
    pub pool: Pool,
    pub tokens: Arc<TokenTable>,
    pub clock: Arc<dyn Clock>,
    pub session_ttl_ms: i64,
    pub throttle: Throttle,
    pub counters: AuthCounters,
}

/// Why credentials did not give a principal.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("not signed in")]
    Missing,
    #[error("invalid or expired credentials")]
    Invalid,
    #[error("cannot check credentials now: {0}")]
    Store(#[from] StoreError),
}

impl Authenticator {
    pub fn new(pool: Pool, tokens: Arc<TokenTable>, clock: Arc<dyn Clock>, config: &AuthConfig) -> Self {
        Authenticator {
            pool,
            tokens,
            clock,
            session_ttl_ms: i64::from(config.session_ttl_min) * 60_000,
            throttle: Throttle::new(ThrottleRules {
                max_failures: config.max_failed_logins,
                lockout_ms: i64::from(config.lockout_s) * 1000,
            }),
            counters: AuthCounters::default(),
        }
    }

    /// The principal a bearer secret stands for: a configured token, a session or an
    /// admin-made token (by prefix).
    pub async fn bearer(&self, secret: &str) -> Result<Arc<Principal>, Refusal> {
        if let Some(p) = self.tokens.lookup(secret) {
            return Ok(p);
        }
        let now = self.clock.now_ms();
        let hash = token_sha256(secret);
        let found = if secret.starts_with(SESSION_PREFIX) {
            queries::session_principal(&self.pool, &hash, now).await?
        } else if secret.starts_with(API_TOKEN_PREFIX) {
            queries::token_principal(&self.pool, &hash, now).await?
        } else {
            None
        };
        found.map(Arc::new).ok_or(Refusal::Invalid)
    }

    /// From an HTTP request's headers: `Authorization: Bearer` first, else the session
    /// cookie. Answers the principal and, for a session, its key.
    pub async fn from_headers(&self, headers: &HeaderMap) -> Result<(Arc<Principal>, Option<SessionKey>), Refusal> {
        let secret = match bearer_of(headers) {
            Some(Ok(secret)) => secret,
            Some(Err(())) => return Err(Refusal::Invalid),
            None => cookie_of(headers).ok_or(Refusal::Missing)?,
        };
        let principal = self.bearer(&secret).await?;
        let key = (principal.via == Via::Session).then(|| SessionKey(token_sha256(&secret)));
        Ok((principal, key))
    }

    /// The gRPC front door: the same bearer secrets in the `authorization` metadata.
    pub async fn grpc(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Arc<Principal>, tonic::Status> {
        let value = metadata.get("authorization").map(|v| v.to_str().map_err(|_| ()));
        let result = match value {
            None => Err(Refusal::Missing),
            Some(Err(())) => Err(Refusal::Invalid),
            Some(Ok(v)) => match strip_bearer(v) {
                Some(secret) => self.bearer(secret).await,
                None => Err(Refusal::Invalid),
            },
        };
        result.map_err(|r| {
            self.count_refusal(&r);
            match r {
                Refusal::Store(e) => {
                    error!(error = %e, "cannot check gRPC credentials");
                    tonic::Status::unavailable("cannot check credentials now")
                }
                r => tonic::Status::unauthenticated(r.to_string()),
            }
        })
    }

    fn count_refusal(&self, r: &Refusal) {
        if matches!(r, Refusal::Invalid) {
            self.counters.credentials_refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The sign-in counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let c = &self.counters;
        for (name, help, v) in [
            ("gatehouse_hub_logins_total", "Successful sign-ins.", &c.logins),
            (
                "gatehouse_hub_logins_failed_total",
                "Failed sign-ins (unknown user, wrong password, disabled user).",
                &c.logins_failed,
            ),
            (
                "gatehouse_hub_logins_throttled_total",
                "Sign-ins refused with 429 after too many failures of the source or user.",
                &c.logins_throttled,
            ),
            (
                "gatehouse_hub_credentials_refused_total",
                "Requests refused for a wrong, expired or ended token or session.",
                &c.credentials_refused,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
}

fn strip_bearer(v: &str) -> Option<&str> {
    let (scheme, rest) = v.trim().split_once(' ')?;
    let secret = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then_some(secret)
}

/// `Some(Err)`: an Authorization header that is not a usable bearer token.
fn bearer_of(headers: &HeaderMap) -> Option<Result<String, ()>> {
    let v = headers.get(header::AUTHORIZATION)?;
    Some(v.to_str().ok().and_then(strip_bearer).map(str::to_owned).ok_or(()))
}

/// The `gatehouse_session` cookie, if any.
pub fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A cookie is sent by the browser on its own, so a request that changes something on the
/// strength of the cookie alone must show it came from the board's own script: a content
/// type a cross-site form cannot send without a CORS preflight (which the hub never grants).
/// With SameSite=Strict this is the second of two guards against cross-site requests.
fn csrf_safe(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    matches!(content_type.as_deref(), Some("application/json" | "text/csv"))
}

/// The layer on `/api/v1`: no credentials or bad ones → 401 JSON; a cookie-authenticated
/// change without a JSON (or CSV) content type → 403.
pub async fn authenticate(State(auth): State<Arc<Authenticator>>, mut request: Request, next: Next) -> Response {
    let by_cookie = request.headers().get(header::AUTHORIZATION).is_none() && cookie_of(request.headers()).is_some();
    match auth.from_headers(request.headers()).await {
        Ok((principal, key)) => {
            if by_cookie && !csrf_safe(request.method(), request.headers()) {
                warn!(user = %principal.user, method = %request.method(), "refused a cookie-authenticated change without a JSON content type");
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "a change made with the session cookie must be sent as application/json",
                    serde_json::Value::Null,
                )
                .into_response();
            }
            request.extensions_mut().insert(principal);
            if let Some(key) = key {
                request.extensions_mut().insert(key);
            }
            next.run(request).await
        }
        Err(Refusal::Store(e)) => {
            error!(error = %e, "cannot check HTTP credentials");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check credentials now",
                serde_json::Value::Null,
            )
            .into_response()
        }
        Err(r) => {
            auth.count_refusal(&r);
            ApiError::new(StatusCode::UNAUTHORIZED, r.to_string(), serde_json::Value::Null).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_bearers_are_read() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=b; gatehouse_session=ghs_x ; c=d".parse().unwrap());
        assert_eq!(cookie_of(&h).as_deref(), Some("ghs_x"));
        h.insert(header::AUTHORIZATION, "Bearer  tok ".parse().unwrap());
        assert_eq!(bearer_of(&h), Some(Ok("tok".into())));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_of(&h), Some(Err(())));
    }

    #[test]
    fn cookie_changes_need_json() {
        let mut h = HeaderMap::new();
        assert!(csrf_safe(&Method::GET, &h));
        assert!(!csrf_safe(&Method::POST, &h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!csrf_safe(&Method::POST, &h));
        h.insert(header::CONTENT_TYPE, "application/json; charset=utf-8".parse().unwrap());
        assert!(csrf_safe(&Method::DELETE, &h));
    }
}
