//! The audit log (issue 12): every operator action, login, failed login, logout, user and
//! token change, appended to the `audit` table with who acted ([`Actor`]: user, role, source
//! address), what ([`AuditEntry`]: action, target, detail) and when, each row chained to the
//! previous by a SHA-256 hash so that an edited, deleted or reordered row is found.
//!
//! `chain.rs` (pure) is the hash and the verification walk; `queries.rs` every statement on
//! `audit`; `apply.rs` the shell: [`apply::record`] (inside the writer's transaction) and
//! [`apply::verify`] (a read-only walk over a pool).
//!
//! Invariant: rows are appended only by the writer, in the transaction of the action they
//! record (an action that rolls back leaves no row; no row exists without its action), so
//! the chain stays linear. Actions with no writer op of their own (logins) go through
//! `WriterHandle::audit`. Nothing updates or deletes a row.

pub mod apply;
pub mod chain;
pub mod queries;

use std::net::IpAddr;

use serde_json::Value;

/// Who acted: the signed-in user or API token, its role, and the address the request came
/// from. Built from `auth::Caller` (HTTP) or the gRPC request's principal, never from a
/// request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user: String,
    /// `auth::Role` in snake_case (`operator`, `admin`, ...).
    pub role: String,
    pub source: Option<IpAddr>,
}

impl Actor {
    pub fn new(user: impl Into<String>, role: impl Into<String>, source: Option<IpAddr>) -> Self {
        Actor {
            user: user.into(),
            role: role.into(),
            source,
        }
    }
}

/// What was done: `action` (`alarm.acknowledge`, `auth.login_failed`, ...), `target`
/// (`alarm:42`, `user:alice`) and a JSON object of details.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub action: String,
    pub target: String,
    pub detail: Value,
}

impl AuditEntry {
    pub fn new(action: impl Into<String>, target: impl Into<String>, detail: Value) -> Self {
        AuditEntry {
            action: action.into(),
            target: target.into(),
            detail,
        }
    }
}

/// The entries the sign-in and user administration record (`WriterHandle::audit`), so every
/// caller names them alike.
impl AuditEntry {
    /// A successful sign-in of `user` (the actor is the user who signed in).
    pub fn login(user: &str, detail: Value) -> Self {
        AuditEntry::new("auth.login", format!("user:{user}"), detail)
    }

    /// A refused sign-in for the name `user` (the actor is that name, role `none`);
    /// `detail` says why, never the password.
    pub fn login_failed(user: &str, detail: Value) -> Self {
        AuditEntry::new("auth.login_failed", format!("user:{user}"), detail)
    }

    pub fn logout(user: &str) -> Self {
        AuditEntry::new("auth.logout", format!("user:{user}"), Value::Object(Default::default()))
    }

    /// A user created, changed (role, scope, password) or removed: `change` is `create`,
    /// `update`, `password`, `delete`, ...
    pub fn user_change(user: &str, change: &str, detail: Value) -> Self {
        AuditEntry::new(format!("user.{change}"), format!("user:{user}"), detail)
    }

    /// An API token created or revoked: `change` is `create`, `revoke`, ...
    pub fn token_change(token: &str, change: &str, detail: Value) -> Self {
        AuditEntry::new(format!("token.{change}"), format!("token:{token}"), detail)
    }
}
