//! Authorization of HTTP requests: each route of `api::routes` carries a [`Decision`] and is
//! wrapped in [`enforce`], which runs after authentication (the principal is in the
//! request's extensions) and before the handler.
//!
//! In order: no principal → 401; the role lacks the permission → 403; an id in the path that
//! is malformed → 400, names nothing → 404; the object's estate (or the `?estate=`, or the
//! body's estate/post/guard) outside the principal's scope → 403. A list answered to a
//! principal who does not see every estate is cut to its scope (array elements naming
//! another estate are dropped), so no handler can forget to.
//!
//! The estate of an object is found by `auth::objects`; the rota's posts, guards and
//! proposals by its committed model.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawPathParams, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{ApiError, AppState};
use crate::auth::objects::{self as queries, Object};
use crate::auth::policy::{self, Permission};
use crate::auth::{Principal, Role, Scope};
use crate::config::EstateConfig;

/// Where the estate a request touches is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EstateFrom {
    /// Touches no one estate (e.g. the principal's own data).
    Nothing,
    /// A list: `?estate=` (if given) must be in scope, and the answer is cut to the scope.
    List,
    /// Centre-wide figures that cannot be cut per estate: only for a scope of all estates.
    AllEstates,
    /// `{id}` in the path names an object of this kind.
    PathId(Object),
    /// `{id}` in the path is a cover proposal (`post@start~guard[~backfill]`).
    PathProposal,
    /// `{id}` in the path is a device of the body's `estate`.
    DeviceWithBodyEstate,
    /// `{id}` in the path is a device of the query's `estate`.
    DeviceWithQueryEstate,
    /// The body's `estate` field.
    BodyEstate,
    /// The body's `post` field (a rota post; its estate).
    BodyPost,
    /// The body's `guard` field (a rota guard; their home estate).
    BodyGuard,
    /// The body's `estates` array (empty: every estate).
    BodyEstates,
    /// A CSV body whose second column is the estate (`date,estate,post,shift,guard`).
    CsvEstates,
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Anyone (health, metrics, the board's files).
    Public,
    /// A principal with this permission, on an estate found so.
    Need(Permission, EstateFrom),
}

/// The largest body this layer reads to find an estate (the API's own body limit is
/// smaller by default; this is a second bound, not the configured one).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Ids in paths: bounded, and only characters ids are made of (no `/`, no `..`).
const MAX_ID: usize = 128;

/// A malformed id in a path (400), e.g. `../../etc/passwd`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && !id.contains("..")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '~'))
}

/// Whether `principal` may see `estate` (an estate the hub does not have is nobody's).
pub fn covers(principal: &Principal, estates: &[EstateConfig], estate: &str) -> bool {
    match &principal.scope {
        Scope::All => true,
        scope => estates
            .iter()
            .find(|e| e.id == estate)
            .is_some_and(|e| scope.covers(&e.id, &e.region)),
    }
}

/// The configured estates `principal` may see.
pub fn visible_estates(principal: &Principal, estates: &[EstateConfig]) -> HashSet<String> {
    estates
        .iter()
        .filter(|e| covers(principal, estates, &e.id))
        .map(|e| e.id.clone())
        .collect()
}

pub fn forbidden(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", Value::String(detail.into()))
}

fn not_found(what: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not found", Value::String(what.into()))
}

/// The middleware: see the module's documentation.
pub async fn enforce(
    State((state, decision)): State<(AppState, Decision)>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    let Decision::Need(permission, from) = decision else {
        return next.run(request).await;
    };
    // No principal: refused here too, so that no route depends on its handler taking `Caller`.
    let Some(principal) = request.extensions().get::<Arc<Principal>>().cloned() else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "not signed in", Value::Null).into_response();
    };
    if !policy::allows(principal.role, permission) {
        return forbidden(format!("a {} may not {permission:?}", principal.role.as_str())).into_response();
    }
    let id = params
        .ok()
        .and_then(|p| p.iter().find(|(k, _)| *k == "id").map(|(_, v)| v.to_owned()));
    match check(&state, &principal, from, id, request).await {
        Ok(request) => {
            let response = next.run(request).await;
            if from == EstateFrom::List && principal.scope != Scope::All {
                cut_to_scope(response, &visible_estates(&principal, &state.estates)).await
            } else {
                response
            }
        }
        Err(e) => e.into_response(),
    }
}

/// Checks the estate the request touches; gives the request back (its body re-made if read).
async fn check(
    state: &AppState,
    principal: &Principal,
    from: EstateFrom,
    id: Option<String>,
    request: Request,
) -> Result<Request, ApiError> {
    let in_scope = |estate: &str| -> Result<(), ApiError> {
        if covers(principal, &state.estates, estate) {
            Ok(())
        } else {
            Err(forbidden(format!("estate {estate:?} is outside your scope")))
        }
    };
    // A configured estate must be in scope; an unknown one is left to the handler's 400.
    let known_in_scope = |estate: &str| -> Result<(), ApiError> {
        if state.estates.iter().any(|e| e.id == estate) {
            in_scope(estate)
        } else {
            Ok(())
        }
    };
    match from {
        EstateFrom::Nothing => Ok(request),
        EstateFrom::List => {
            if let Some(e) = query_param(&request, "estate") {
                known_in_scope(&e)?;
            }
            Ok(request)
        }
        EstateFrom::AllEstates => match principal.scope {
            Scope::All => Ok(request),
            _ => Err(forbidden("these figures cover every estate; your scope does not")),
        },
        EstateFrom::PathId(object) => {
            let id = id.unwrap_or_default();
            let n: i64 = id
                .parse()
                .map_err(|_| ApiError::bad_request("invalid path parameter", format!("{id:?} is not an id")))?;
            match queries::estate_of(&state.pool, object, n).await? {
                Some(estate) => in_scope(&estate).map(|()| request),
                None => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("{} not found", object.name()),
                    Value::from(n),
                )),
            }
        }
        EstateFrom::PathProposal => {
            let id = path_id(id)?;
            let post = id.split(['@', '~']).next().unwrap_or_default();
            let estate = state
                .rota
                .as_ref()
                .and_then(|r| r.model.post(post).map(|p| p.estate.clone()))
                .ok_or_else(|| not_found(format!("proposal {id}")))?;
            in_scope(&estate).map(|()| request)
        }
        EstateFrom::DeviceWithBodyEstate | EstateFrom::DeviceWithQueryEstate => {
            let device = path_id(id)?;
            let (request, estate) = if from == EstateFrom::DeviceWithQueryEstate {
                let e = query_param(&request, "estate");
                (request, e)
            } else {
                let (request, body) = read_body(request).await?;
                (request, body_json(&body).and_then(|v| str_field(&v, "estate")))
            };
            // No estate, or one the hub does not have: the handler's 400 says which.
            let Some(estate) = estate.filter(|e| state.estates.iter().any(|c| c.id == *e)) else {
                return Ok(request);
            };
            in_scope(&estate)?;
            let kind = queries::device_kind(&state.pool, &estate, &device)
                .await?
                .ok_or_else(|| not_found(format!("no device {device:?} in estate {estate:?}")))?;
            if principal.role == Role::Facility && !policy::is_plant_kind(&kind) {
                return Err(forbidden(format!(
                    "a facility user works plant-room devices only, not a {kind}"
                )));
            }
            Ok(request)
        }
        EstateFrom::BodyEstate | EstateFrom::BodyPost | EstateFrom::BodyGuard | EstateFrom::BodyEstates => {
            let (request, body) = read_body(request).await?;
            let v = body_json(&body).unwrap_or(Value::Null);
            match from {
                EstateFrom::BodyEstate => {
                    if let Some(e) = str_field(&v, "estate") {
                        known_in_scope(&e)?;
                    }
                }
                EstateFrom::BodyPost => {
                    guard_is_self(principal, &v)?;
                    let post = str_field(&v, "post").unwrap_or_default();
                    if let Some(estate) = state
                        .rota
                        .as_ref()
                        .and_then(|r| r.model.post(&post).map(|p| p.estate.clone()))
                    {
                        in_scope(&estate)?;
                    }
                }
                EstateFrom::BodyGuard => {
                    guard_is_self(principal, &v)?;
                    let guard = str_field(&v, "guard").unwrap_or_default();
                    let home = state
                        .rota
                        .as_ref()
                        .and_then(|r| r.model.guard(&guard).map(|g| g.home_estate.clone()));
                    match home {
                        // A floating guard belongs to no estate: only a scope of all may.
                        Some(None) if principal.scope != Scope::All => {
                            return Err(forbidden(format!("guard {guard:?} floats between estates")));
                        }
                        Some(Some(estate)) => in_scope(&estate)?,
                        _ => {}
                    }
                }
                _ => {
                    let estates: Vec<String> = v
                        .get("estates")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default();
                    if estates.is_empty() && principal.scope != Scope::All {
                        return Err(forbidden("name the estates: your scope does not cover every estate"));
                    }
                    for e in &estates {
                        known_in_scope(e)?;
                    }
                }
            }
            Ok(request)
        }
        EstateFrom::CsvEstates => {
            let (request, body) = read_body(request).await?;
            if principal.scope != Scope::All {
                for line in String::from_utf8_lossy(&body).lines().skip(1) {
                    if let Some(e) = line.split(',').nth(1).map(|e| e.trim().trim_matches('"')) {
                        known_in_scope(e)?;
                    }
                }
            }
            Ok(request)
        }
    }
}

/// A guard acts only as themselves: the body's `guard` must be their own rota id.
fn guard_is_self(principal: &Principal, body: &Value) -> Result<(), ApiError> {
    if principal.role != Role::Guard {
        return Ok(());
    }
    let named = str_field(body, "guard");
    if named.is_some() && named.as_deref() == principal.guard_id.as_deref() {
        Ok(())
    } else {
        Err(forbidden("a guard acts only as themselves"))
    }
}

fn path_id(id: Option<String>) -> Result<String, ApiError> {
    let id = id.unwrap_or_default();
    if valid_id(&id) {
        Ok(id)
    } else {
        Err(ApiError::bad_request(
            "invalid path parameter",
            format!("an id is 1 to {MAX_ID} letters, digits or - _ . : @ ~"),
        ))
    }
}

fn query_param(request: &Request, name: &str) -> Option<String> {
    let axum::extract::Query(q) =
        axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(request.uri()).ok()?;
    q.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

async fn read_body(request: Request) -> Result<(Request, Bytes), ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "cannot read the request body",
            e.to_string().into(),
        )
    })?;
    Ok((Request::from_parts(parts, Body::from(bytes.clone())), bytes))
}

/// The body as JSON (None: not JSON; the handler says why).
fn body_json(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

fn str_field(v: &Value, name: &str) -> Option<String> {
    v.get(name)
        .and_then(Value::as_str)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Keys by which an object in an answer names its estate.
const ESTATE_KEYS: [&str; 3] = ["estate", "estate_id", "home_estate"];

/// Drops, from every array of a JSON answer, the objects that name an estate outside
/// `visible`; a CSV answer (the rota export) loses its lines of other estates.
async fn cut_to_scope(response: Response, visible: &HashSet<String>) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let is_json = content_type.starts_with("application/json");
    let is_csv = content_type.starts_with("text/csv");
    if !is_json && !is_csv {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the answer", Value::Null).into_response();
    };
    let out: Vec<u8> = if is_json {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(mut v) => {
                retain_visible(&mut v, visible);
                serde_json::to_vec(&v).unwrap_or_default()
            }
            Err(_) => bytes.to_vec(),
        }
    } else {
        let text = String::from_utf8_lossy(&bytes);
        let mut kept = String::with_capacity(text.len());
        for (i, line) in text.lines().enumerate() {
            let estate = line.split(',').nth(1).map(|e| e.trim().trim_matches('"'));
            if i == 0 || estate.is_some_and(|e| visible.contains(e)) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        kept.into_bytes()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

/// See [`cut_to_scope`].
pub fn retain_visible(v: &mut Value, visible: &HashSet<String>) {
    match v {
        Value::Array(items) => {
            items.retain(|item| {
                ESTATE_KEYS
                    .iter()
                    .filter_map(|k| item.get(*k).and_then(Value::as_str))
                    .all(|e| visible.contains(e))
            });
            items.iter_mut().for_each(|i| retain_visible(i, visible));
        }
        Value::Object(map) => map.values_mut().for_each(|i| retain_visible(i, visible)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_in_paths_are_bounded_and_plain() {
        assert!(valid_id("door-1"));
        assert!(valid_id("north@1700000000000~g1"));
        assert!(!valid_id("../../etc/passwd"));
        assert!(!valid_id(".."));
        assert!(!valid_id(""));
        assert!(!valid_id(&"x".repeat(MAX_ID + 1)));
        assert!(!valid_id("a b"));
    }

    #[test]
    fn lists_lose_the_objects_of_other_estates() {
        let visible: HashSet<String> = ["east-1".to_owned()].into();
        let mut v = json!({"estates": [{"estate": "east-1"}, {"estate": "west-1"}],
                           "rows": [{"estate_id": "west-1"}, {"id": 3}]});
        retain_visible(&mut v, &visible);
        assert_eq!(v, json!({"estates": [{"estate": "east-1"}], "rows": [{"id": 3}]}));
    }
}
