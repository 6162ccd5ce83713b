//! Who is calling: the principal behind an HTTP request or a gRPC call (issue 12).
//!
//! This module is the contract every front door and every domain shares: [`Role`], [`Scope`]
//! (regions and estates), [`Principal`] (an authenticated user or API token) and [`Caller`]
//! (the principal plus the address it called from), which HTTP handlers take as an extractor
//! and which becomes the `Actor` recorded in the audit log.
//!
//! Invariant: a handler never trusts a name from a request body; who acted is the caller.

pub mod middleware;
pub mod objects;
pub mod policy;
pub mod queries;
pub mod sessions;
pub mod users;

pub use middleware::{AuthConfig, Authenticator};
pub use users::UserConfig;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::Actor;
use crate::error::ApiError;

/// What a user is for. The order is not a hierarchy: each role's rights are listed in
/// the permission table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A gate-house guard: checks in and out, records patrols, acknowledges handovers.
    Guard,
    /// A command-centre operator: acknowledges and shelves alarms, works incidents.
    Operator,
    /// A shift supervisor: operator's rights plus overrides, cover proposals, rota changes.
    Supervisor,
    /// The duty manager of a region: supervisor's rights across it.
    DutyManager,
    /// A facility (plant-room) technician: devices, readings and plant alarms.
    Facility,
    /// Users, tokens, gateways, the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guard => "guard",
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::DutyManager => "duty_manager",
            Role::Facility => "facility",
            Role::Admin => "admin",
        }
    }
}

/// Which estates a principal may see and act on: all of them, or those of some regions plus
/// some single estates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    All,
    Some {
        regions: BTreeSet<String>,
        estates: BTreeSet<String>,
    },
}

impl Scope {
    /// Whether an estate (of `region`) is inside this scope.
    pub fn covers(&self, estate: &str, region: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Some { regions, estates } => estates.contains(estate) || regions.contains(region),
        }
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Session,
    ApiToken,
}

/// An authenticated user or API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The login name (or the token's name): what the audit log and `acked_by` record.
    pub user: String,
    pub role: Role,
    pub scope: Scope,
    pub via: Via,
    /// For a guard: the rota guard id they are.
    pub guard_id: Option<String>,
}

pub use crate::net::Peer;

/// The principal behind a request and where it came from. Handlers take it as an
/// extractor; it is refused with 401 when the request carries no valid credentials.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<Principal>,
    pub source: Option<IpAddr>,
}

impl Caller {
    pub fn user(&self) -> &str {
        &self.principal.user
    }

    /// Who acted, as the audit log records it.
    pub fn actor(&self) -> Actor {
        self.principal.actor(self.source)
    }
}

impl Principal {
    /// This principal acting from `source`, as the audit log records it.
    pub fn actor(&self, source: Option<IpAddr>) -> Actor {
        Actor::new(self.user.clone(), self.role.as_str(), source)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let source = parts.extensions.get::<Peer>().map(|p| p.0.ip());
        match parts.extensions.get::<Arc<Principal>>() {
            Some(p) => Ok(Caller {
                principal: p.clone(),
                source,
            }),
            None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "not signed in", Value::Null)),
        }
    }
}

/// `[[api_tokens]]`: a token for an integration or a script. Only its SHA-256 is stored
/// (tokens are 256-bit random strings, so a fast hash is enough; passwords use argon2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    /// Who the token acts as (audit log, `acked_by`).
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub token_sha256: String,
    /// Regions and estates it may see and act on; both empty: every estate.
    #[serde(default)]
    pub regions: BTreeSet<String>,
    #[serde(default)]
    pub estates: BTreeSet<String>,
}

impl ApiTokenConfig {
    pub fn principal(&self) -> Principal {
        let scope = if self.regions.is_empty() && self.estates.is_empty() {
            Scope::All
        } else {
            Scope::Some {
                regions: self.regions.clone(),
                estates: self.estates.clone(),
            }
        };
        Principal {
            user: self.name.clone(),
            role: self.role,
            scope,
            via: Via::ApiToken,
            guard_id: None,
        }
    }
}

/// Hex SHA-256 of a token, as `[[api_tokens]] token_sha256` stores it.
pub fn token_sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The configured API tokens by hash.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    by_hash: std::collections::HashMap<String, Arc<Principal>>,
}

impl TokenTable {
    pub fn new(tokens: &[ApiTokenConfig]) -> Self {
        TokenTable {
            by_hash: tokens
                .iter()
                .map(|t| (t.token_sha256.to_ascii_lowercase(), Arc::new(t.principal())))
                .collect(),
        }
    }

    /// The configured tokens' principals (for `GET /tokens`), by name.
    pub fn principals(&self) -> Vec<Arc<Principal>> {
        let mut v: Vec<_> = self.by_hash.values().cloned().collect();
        v.sort_by(|a, b| a.user.cmp(&b.user));
        v
    }

    pub fn lookup(&self, token: &str) -> Option<Arc<Principal>> {
        self.by_hash.get(&token_sha256(token)).cloned()
    }
}
