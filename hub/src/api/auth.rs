//! Sign-in over HTTP: `POST /login`, `POST /logout`, `GET /me`; and the admin's users and
//! API tokens (`/users`, `/tokens`). Who may call them is the route table's decision
//! (`api/routes.rs`: admins only).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{ApiError, ApiPath, AppState};
use crate::audit::{Actor, AuditEntry};
use crate::auth::middleware::SessionKey;
use crate::auth::queries::{self, AuthWrite, NewUser, UserChange};
use crate::auth::sessions::{API_TOKEN_PREFIX, COOKIE, SESSION_PREFIX, new_secret};
use crate::auth::users::{self, check_name, check_password};
use crate::auth::{Caller, Peer, Principal, Role, Scope, token_sha256};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    user: String,
    password: String,
}

fn scope_json(scope: &Scope) -> (Vec<String>, Vec<String>) {
    match scope {
        Scope::All => (Vec::new(), Vec::new()),
        Scope::Some { regions, estates } => (regions.iter().cloned().collect(), estates.iter().cloned().collect()),
    }
}

fn principal_json(p: &Principal) -> Value {
    let (regions, estates) = scope_json(&p.scope);
    json!({
        "name": p.user,
        "role": p.role,
        "regions": regions,
        "estates": estates,
        "all_estates": p.scope == Scope::All,
        "guard_id": p.guard_id,
        "via": p.via,
    })
}

/// Records a sign-in or account event in the audit log (through the writer). A failure to
/// record is logged; the answer does not depend on it.
async fn audit(state: &AppState, actor: Actor, entry: AuditEntry) {
    if let Err(e) = state.writer.audit(actor, entry).await {
        warn!(error = %e, action = "audit", "cannot record a sign-in or account event in the audit log");
    }
}

fn refused_login() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "wrong user name or password", Value::Null)
}

/// `POST /login` `{"user", "password"}` → `{"token", "expires_at_ms", "user"}` and the
/// session cookie. An unknown user, a wrong password and a disabled user get the same answer
/// after the same work (argon2 runs against a dummy hash for an unknown name). Failures are
/// counted per source and per user name; past `auth.max_failed_logins` both are refused with
/// 429 for `auth.lockout_s`.
pub async fn login(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), "cannot read the request body", r.body_text().into()))?;
    let Login { user, password } = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("invalid JSON body", "expected {\"user\", \"password\"}"))?;
    let auth = state.auth.clone();
    let now = auth.clock.now_ms();
    let source = peer.map(|p| p.0.0.ip());
    let source_key = format!("source:{}", source.map(|s| s.to_string()).unwrap_or_default());
    // Bounded so a flood of long names cannot fill the throttle's memory.
    let name: String = user.trim().chars().take(64).collect();
    let user_key = format!("user:{name}");
    if auth.throttle.locked(&source_key, now) || auth.throttle.locked(&user_key, now) {
        auth.counters.logins_throttled.fetch_add(1, Ordering::Relaxed);
        warn!(user = %name, source = ?source, "sign-in refused: too many failed logins");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins; try again later",
            Value::Null,
        ));
    }
    let found = if check_name(&name).is_ok() {
        queries::find_user(&state.pool, &name).await?
    } else {
        None
    };
    let hash = found.as_ref().map(|(_, h)| h.clone());
    let ok = tokio::task::spawn_blocking(move || users::verify_password(&password, hash.as_deref()))
        .await
        .unwrap_or(false);
    let user = match found {
        Some((u, _)) if ok && !u.disabled => u,
        _ => {
            auth.counters.logins_failed.fetch_add(1, Ordering::Relaxed);
            auth.throttle.fail(&source_key, now);
            auth.throttle.fail(&user_key, now);
            warn!(user = %name, source = ?source, "failed sign-in");
            audit(
                &state,
                Actor::new(name.clone(), "none", source),
                AuditEntry::login_failed(&name, json!({})),
            )
            .await;
            return Err(refused_login());
        }
    };
    auth.throttle.clear(&user_key);
    let token = new_secret(SESSION_PREFIX).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot start a session",
            e.to_string().into(),
        )
    })?;
    let expires_at_ms = now + auth.session_ttl_ms;
    state
        .writer
        .auth(AuthWrite::StartSession {
            token_sha256: token_sha256(&token),
            user: user.name.clone(),
            expires_at_ms,
            source: source.map(|s| s.to_string()),
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot start a session",
                e.to_string().into(),
            )
        })?;
    auth.counters.logins.fetch_add(1, Ordering::Relaxed);
    info!(user = %user.name, role = user.role.as_str(), source = ?source, "signed in");
    audit(
        &state,
        Actor::new(user.name.clone(), user.role.as_str(), source),
        AuditEntry::login(&user.name, json!({"expires_at_ms": expires_at_ms})),
    )
    .await;
    let principal = user.principal(crate::auth::Via::Session);
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        auth.session_ttl_ms / 1000
    );
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, v);
    }
    let (regions, estates) = scope_json(&principal.scope);
    Ok((
        headers,
        Json(json!({
            "token": token,
            "expires_at_ms": expires_at_ms,
            "user": {"name": principal.user, "role": principal.role, "regions": regions, "estates": estates},
        })),
    )
        .into_response())
}

/// `POST /logout`: ends the session the request came with (cookie or bearer) and clears the
/// cookie. With an API token there is no session to end: 204 all the same.
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    key: Option<axum::Extension<SessionKey>>,
) -> Result<Response, ApiError> {
    if let Some(axum::Extension(SessionKey(hash))) = key {
        state
            .writer
            .auth(AuthWrite::EndSession { token_sha256: hash })
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot end the session",
                    e.to_string().into(),
                )
            })?;
        info!(user = %caller.user(), "signed out");
        audit(&state, caller.actor(), AuditEntry::logout(caller.user())).await;
    }
    let clear = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&clear) {
        headers.insert(header::SET_COOKIE, v);
    }
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// `GET /me`: who the caller is.
pub async fn me(caller: Caller) -> Json<Value> {
    Json(principal_json(&caller.principal))
}

/// Regions and estates named in a user or token must exist.
fn check_scope(state: &AppState, regions: &BTreeSet<String>, estates: &BTreeSet<String>) -> Result<(), ApiError> {
    if let Some(r) = regions.iter().find(|r| !state.estates.iter().any(|e| &e.region == *r)) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown region",
            Value::String(r.clone()),
        ));
    }
    if let Some(e) = estates.iter().find(|e| !state.estates.iter().any(|c| &c.id == *e)) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown estate",
            Value::String(e.clone()),
        ));
    }
    Ok(())
}

fn unprocessable(what: &str, e: users::Unacceptable) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, what.to_owned(), Value::String(e.0))
}

fn writer_error(e: crate::writer::WriterError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "cannot record the change now",
        e.to_string().into(),
    )
}

async fn hash(password: String) -> Result<String, ApiError> {
    check_password(&password).map_err(|e| unprocessable("unacceptable password", e))?;
    tokio::task::spawn_blocking(move || users::hash_password(&password))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot hash the password",
                e.to_string().into(),
            )
        })?
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot hash the password",
                e.0.into(),
            )
        })
}

fn body<T: serde::de::DeserializeOwned>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), "cannot read the request body", r.body_text().into()))?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid JSON body", e.to_string()))
}

/// `GET /users` (admin).
pub async fn list_users(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(queries::list_users(&state.pool).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    name: String,
    role: Role,
    #[serde(default)]
    regions: BTreeSet<String>,
    #[serde(default)]
    estates: BTreeSet<String>,
    #[serde(default)]
    guard_id: Option<String>,
    password: String,
}

/// `POST /users` `{name, role, regions?, estates?, guard_id?, password}` (admin) → 201.
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    raw: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let u: CreateUser = body(raw)?;
    check_name(&u.name).map_err(|e| unprocessable("invalid user name", e))?;
    check_scope(&state, &u.regions, &u.estates)?;
    if u.role == Role::Guard && u.guard_id.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a guard names their rota guard id",
            Value::Null,
        ));
    }
    let password_hash = hash(u.password).await?;
    let created = state
        .writer
        .auth(AuthWrite::CreateUser(NewUser {
            name: u.name.clone(),
            role: u.role,
            regions: u.regions,
            estates: u.estates,
            guard_id: u.guard_id,
            password_hash,
        }))
        .await
        .map_err(writer_error)?;
    if created == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "user exists",
            Value::String(u.name),
        ));
    }
    info!(by = %caller.user(), user = %u.name, role = u.role.as_str(), "user created");
    audit(
        &state,
        caller.actor(),
        AuditEntry::user_change(&u.name, "create", json!({"role": u.role.as_str()})),
    )
    .await;
    let user = queries::find_user(&state.pool, &u.name).await?.map(|(u, _)| u);
    Ok((StatusCode::CREATED, Json(json!(user))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeUser {
    role: Option<Role>,
    regions: Option<BTreeSet<String>>,
    estates: Option<BTreeSet<String>>,
    /// `null` clears it; absent keeps it.
    #[serde(default, deserialize_with = "present")]
    guard_id: Option<Option<String>>,
    password: Option<String>,
    disabled: Option<bool>,
}

/// A field that is present (maybe `null`) is `Some`; an absent one is `None` by default.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Users from the hub config are changed there (it is the truth for them at every start).
async fn changeable(state: &AppState, caller: &Caller, name: &str) -> Result<(), ApiError> {
    match queries::find_user(&state.pool, name).await? {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such user",
            Value::String(name.into()),
        )),
        Some((u, _)) if u.from_config => Err(ApiError::new(
            StatusCode::CONFLICT,
            "this user is defined in the hub config ([[users]]); change it there",
            Value::String(name.into()),
        )),
        Some(_) if name == caller.user() => Err(ApiError::new(
            StatusCode::CONFLICT,
            "an admin cannot change or delete their own user here",
            Value::String(name.into()),
        )),
        Some(_) => Ok(()),
    }
}

/// `PATCH /users/{name}` `{role?, regions?, estates?, guard_id?, password?, disabled?}`
/// (admin). Any change ends the user's sessions.
pub async fn change_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    raw: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let c: ChangeUser = body(raw)?;
    changeable(&state, &caller, &name).await?;
    check_scope(
        &state,
        c.regions.as_ref().unwrap_or(&BTreeSet::new()),
        c.estates.as_ref().unwrap_or(&BTreeSet::new()),
    )?;
    let password_hash = match c.password {
        Some(p) => Some(hash(p).await?),
        None => None,
    };
    let changed = state
        .writer
        .auth(AuthWrite::ChangeUser {
            name: name.clone(),
            change: UserChange {
                role: c.role,
                regions: c.regions,
                estates: c.estates,
                guard_id: c.guard_id,
                password_hash,
                disabled: c.disabled,
            },
        })
        .await
        .map_err(writer_error)?;
    if changed == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such user",
            Value::String(name),
        ));
    }
    info!(by = %caller.user(), user = %name, "user changed");
    audit(
        &state,
        caller.actor(),
        AuditEntry::user_change(&name, "change", json!({})),
    )
    .await;
    let user = queries::find_user(&state.pool, &name).await?.map(|(u, _)| u);
    Ok(Json(json!(user)))
}

/// `DELETE /users/{name}` (admin) → 204.
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    changeable(&state, &caller, &name).await?;
    let deleted = state
        .writer
        .auth(AuthWrite::DeleteUser { name: name.clone() })
        .await
        .map_err(writer_error)?;
    if deleted == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such user",
            Value::String(name),
        ));
    }
    info!(by = %caller.user(), user = %name, "user deleted");
    audit(
        &state,
        caller.actor(),
        AuditEntry::user_change(&name, "delete", json!({})),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    role: Role,
    #[serde(default)]
    regions: BTreeSet<String>,
    #[serde(default)]
    estates: BTreeSet<String>,
    expires_in_days: Option<u32>,
}

/// `POST /tokens` `{name, role, regions?, estates?, expires_in_days?}` (admin) → 201 with
/// the token, shown this once.
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    raw: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let t: CreateToken = body(raw)?;
    check_name(&t.name).map_err(|e| unprocessable("invalid token name", e))?;
    check_scope(&state, &t.regions, &t.estates)?;
    if t.role == Role::Guard {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a guard signs in as a user, not with an API token",
            Value::Null,
        ));
    }
    let expires_at_ms = match t.expires_in_days {
        None => None,
        Some(d @ 1..=3650) => Some(state.clock.now_ms() + i64::from(d) * 86_400_000),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "expires_in_days is 1 to 3650",
                Value::Null,
            ));
        }
    };
    let token = new_secret(API_TOKEN_PREFIX).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot make a token",
            e.to_string().into(),
        )
    })?;
    let id = state
        .writer
        .auth(AuthWrite::CreateToken {
            name: t.name.clone(),
            role: t.role,
            regions: t.regions.clone(),
            estates: t.estates.clone(),
            token_sha256: token_sha256(&token),
            created_by: caller.user().to_owned(),
            expires_at_ms,
        })
        .await
        .map_err(writer_error)?;
    info!(by = %caller.user(), token = %t.name, id, role = t.role.as_str(), "API token created");
    audit(
        &state,
        caller.actor(),
        AuditEntry::token_change(
            &id.to_string(),
            "create",
            json!({"name": t.name, "role": t.role.as_str()}),
        ),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": id,
            "token": token,
            "name": t.name,
            "role": t.role,
            "regions": t.regions,
            "estates": t.estates,
            "expires_at_ms": expires_at_ms,
        })),
    )
        .into_response())
}

/// `GET /tokens` (admin): the admin-made tokens (never their secrets) and the configured
/// ones (`"source": "config"`, no id: revoked by editing the config).
pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut out: Vec<Value> = queries::list_tokens(&state.pool)
        .await?
        .into_iter()
        .map(|t| {
            let mut v = json!(t);
            v["source"] = json!("api");
            v
        })
        .collect();
    for p in state.auth.tokens.principals() {
        let (regions, estates) = scope_json(&p.scope);
        out.push(json!({"id": null, "name": p.user, "role": p.role, "regions": regions, "estates": estates, "source": "config"}));
    }
    Ok(Json(Value::Array(out)))
}

/// `DELETE /tokens/{id}` (admin) → 204; the token is refused from then on.
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let revoked = state
        .writer
        .auth(AuthWrite::RevokeToken { id })
        .await
        .map_err(writer_error)?;
    if revoked == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such live token",
            Value::from(id),
        ));
    }
    info!(by = %caller.user(), id, "API token revoked");
    audit(
        &state,
        caller.actor(),
        AuditEntry::token_change(&id.to_string(), "revoke", json!({})),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
